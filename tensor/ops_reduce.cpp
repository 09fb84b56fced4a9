// ops_reduce.cpp — the "reductions" section of tensor/ops.h: reduce, sum, mean, max, min, argmax,
// sum_to_shape. Validates dims and dtypes, allocates the keepdim-shaped output, calls the kernel
// (tensor/cpu/reduce.cpp) and squeezes the reduced dims away when keepdim is false.
//
// Semantics follow PyTorch's torch.sum/mean/amax/amin/argmax: negative dims count from the end, an
// empty dims list reduces every dim, a dim may not be named twice; sum/max/min accept every dtype and
// return the input's dtype (an integer sum is not promoted to i64, unlike PyTorch); mean needs a
// floating dtype. Over an empty dim sum is 0 and mean is NaN, while max, min and argmax throw.
// Inputs are read with their strides: no contiguous() copy is made.
// What this is not: differentiable (autograd/ builds sum/mean/max gradients on top of these).
#include <sstream>

#include "tensor/ops.h"

namespace muxnet::ops {

namespace {

const char* reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    default: MUXNET_FAIL("reduce: unknown op ", int(op));
  }
}

std::string dims_str(const std::vector<int>& dims) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  os << (dims.size() == 1 ? ",)" : ")");
  return os.str();
}

// The set of dims named by `dims` (every dim when empty); throws on out-of-range or repeated dims.
DimMask dims_mask(const char* op, const Tensor& x, const std::vector<int>& dims) {
  const int nd = x.ndim();
  if (dims.empty()) return nd == 0 ? DimMask(0) : DimMask((uint64_t(1) << nd) - 1);
  DimMask mask = 0;
  for (int d : dims) {
    int nd_d = normalize_dim(d, nd, op);
    MUXNET_CHECK(!(mask & (DimMask(1) << nd_d)), op, ": dim ", nd_d, " appears more than once in dims ",
                 dims_str(dims));
    mask |= DimMask(1) << nd_d;
  }
  return nd == 0 ? DimMask(0) : mask;  // a 0-d tensor accepts dim 0 / -1, and has nothing to reduce
}

Shape keepdim_shape(const Shape& shape, DimMask mask) {
  Shape out = shape;
  for (int d = 0; d < shape.ndim(); ++d) {
    if (mask & (DimMask(1) << d)) out[d] = 1;
  }
  return out;
}

Shape squeezed_shape(const Shape& shape, DimMask mask) {
  Shape out;
  for (int d = 0; d < shape.ndim(); ++d) {
    if (!(mask & (DimMask(1) << d))) out.push_back(shape[d]);
  }
  return out;
}

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  const char* name = reduce_name(op);
  DimMask mask = dims_mask(name, x, dims);
  if (op == ReduceOp::Mean) check_floating(name, x);
  if (op == ReduceOp::Max || op == ReduceOp::Min) {
    for (int d = 0; d < x.ndim(); ++d) {
      MUXNET_CHECK(!((mask & (DimMask(1) << d)) && x.size(d) == 0), name, ": cannot reduce over dim ", d,
                   " of size 0 (input shape ", x.shape(), "): ", name, " of an empty set has no value");
    }
  }
  Tensor out = empty(keepdim_shape(x.shape(), mask), x.dtype(), x.device());
  if (out.numel() > 0) kernel<OpId::reduce>(x.device())(op, x, mask, out);
  return keepdim ? out : out.view(squeezed_shape(x.shape(), mask));
}

Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return reduce(ReduceOp::Sum, x, dims, keepdim);
}
Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return reduce(ReduceOp::Mean, x, dims, keepdim);
}
Tensor max(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return reduce(ReduceOp::Max, x, dims, keepdim);
}
Tensor min(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return reduce(ReduceOp::Min, x, dims, keepdim);
}

Tensor argmax(const Tensor& x, int dim, bool keepdim) {
  const int d = normalize_dim(dim, x.ndim(), "argmax");
  if (x.ndim() == 0) return zeros(Shape{}, DType::I64, x.device());  // PyTorch: argmax of a scalar is 0
  MUXNET_CHECK(x.size(d) > 0, "argmax: cannot reduce over dim ", d, " of size 0 (input shape ", x.shape(),
               ")");
  const DimMask mask = DimMask(1) << d;
  Tensor out = empty(keepdim_shape(x.shape(), mask), DType::I64, x.device());
  if (out.numel() > 0) kernel<OpId::argmax>(x.device())(x, d, out);
  return keepdim ? out : out.view(squeezed_shape(x.shape(), mask));
}

// x: (..., broadcast of shape) -> shape. Leading dims of x that shape lacks are summed away, and dims
// where shape has size 1 but x does not are summed with keepdim. Returns x itself (or a view of it)
// when nothing needs summing.
Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  MUXNET_CHECK(shape.ndim() <= x.ndim(), "sum_to_shape: shape ", shape, " does not broadcast to ", x.shape());
  const int lead = x.ndim() - shape.ndim();
  std::vector<int> dims;
  for (int d = 0; d < x.ndim(); ++d) {
    const int64_t xs = x.size(d);
    if (d < lead) {
      if (xs != 1) dims.push_back(d);
      continue;
    }
    const int64_t want = shape[d - lead];
    MUXNET_CHECK(want == xs || want == 1, "sum_to_shape: shape ", shape, " does not broadcast to ", x.shape());
    if (want == 1 && xs != 1) dims.push_back(d);
  }
  if (dims.empty()) return x.shape() == shape ? x : x.view(shape);
  return sum(x, dims, true).view(shape);
}

}  // namespace muxnet::ops
