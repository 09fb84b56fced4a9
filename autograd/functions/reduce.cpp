// reduce.cpp — the differentiable reductions of autograd/functions.h: sum, mean, max, min over any
// set of dims (empty = all), with or without keepdim, and argmax (not differentiable).
//
// The backward of each brings the output gradient g back to the input's shape: the reduced dims are
// re-inserted as size 1 (when keepdim was false) and g is expanded over them. The expanded gradient is
// returned as a stride-0 view, not a copy (as PyTorch's sum backward): consumers read strides, and a
// leaf copies it into its own gradient buffer.
//
// PyTorch semantics matched: sum/mean as torch.sum/mean; max/min as torch.amax/amin, whose gradient is
// split EVENLY among the elements tied for the extremum (not given to one of them, as torch.max(dim)
// does); argmax returns i64 indices of the first maximum and records nothing.
// What this is not: the reduction kernels (tensor/cpu/reduce.cpp) or their validation (tensor/ops_reduce.cpp:
// the forward throws there on bad dims before anything here runs).
#include <algorithm>

#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

namespace {

// The reduced dims of an ndim-d input, normalised and sorted; all dims when `dims` is empty. Only
// called after the forward op has validated dims.
std::vector<int> reduced_dims(const std::vector<int>& dims, int ndim) {
  std::vector<int> out;
  if (ndim == 0) return out;  // a 0-d tensor has nothing to reduce (dim 0 / -1 is accepted by ops)
  if (dims.empty()) {
    for (int d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int d : dims) out.push_back(normalize_dim(d, ndim, "reduce"));
  std::sort(out.begin(), out.end());
  return out;
}

// g: the output's shape -> the keepdim shape (reduced dims as size 1). A view, never a copy.
Tensor with_kept_dims(const Tensor& g, const std::vector<int>& rdims, bool keepdim) {
  if (keepdim) return g;
  Tensor t = g;
  for (int d : rdims) t = t.unsqueeze(d);  // ascending: each d is already its final position
  return t;
}

// Number of input elements that fold into one output element.
int64_t reduced_count(const Shape& shape, const std::vector<int>& rdims) {
  int64_t n = 1;
  for (int d : rdims) n *= shape[d];
  return n;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::sum(x, dims, keepdim);
  }
  if (needs_grad({x})) {
    record(out, "sum", {x}, [shape = x.shape(), rdims = reduced_dims(dims, x.ndim()), keepdim](const Tensor& g) {
      // forward: out = sum over rdims of x, so every x element receives its output's g.
      return std::vector<Tensor>{with_kept_dims(g, rdims, keepdim).expand(shape)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::mean(x, dims, keepdim);
  }
  if (needs_grad({x})) {
    const std::vector<int> rdims = reduced_dims(dims, x.ndim());
    const int64_t count = reduced_count(x.shape(), rdims);
    record(out, "mean", {x}, [shape = x.shape(), rdims, keepdim, count](const Tensor& g) {
      // forward: out = (sum over rdims of x) / count, so every x element receives g / count.
      // An empty reduction (count = 0) has an empty input: its gradient has no elements.
      if (count == 0) return std::vector<Tensor>{zeros(shape, g.dtype(), g.device())};
      return std::vector<Tensor>{with_kept_dims(ops::div(g, double(count)), rdims, keepdim).expand(shape)};
    });
  }
  return out;
}

namespace {

// amax (is_max) or amin over dims. The gradient of one output element is split evenly among the input
// elements equal to it: grad_x = [x == out] * g / (number of ties).
Tensor extremum_reduce(const Tensor& x, const std::vector<int>& dims, bool keepdim, bool is_max) {
  const char* name = is_max ? "max" : "min";
  Tensor out;
  {
    NoGradGuard no_grad;
    out = is_max ? ops::max(x, dims, keepdim) : ops::min(x, dims, keepdim);
  }
  if (needs_grad({x})) {
    const std::vector<int> rdims = reduced_dims(dims, x.ndim());
    // The output in keepdim form (a view), so that it broadcasts against x in the backward.
    record(out, name, {x}, [x = x.detach(), out_k = with_kept_dims(out.detach(), rdims, keepdim), rdims,
                            keepdim](const Tensor& g) {
      // forward: out = max over rdims of x (or min); d out/dx = [x == out] / ties.
      // NOTE: a NaN in x makes out NaN and no element equal to it: ties = 0 and the gradient of that
      // reduction is NaN (0 * inf), which flags the NaN rather than hiding it.
      Tensor is_ext = ops::eq(x, out_k);                                  // x's shape, 1 / 0
      Tensor ties = rdims.empty() ? is_ext : ops::sum(is_ext, rdims, true);  // keepdim shape
      Tensor share = ops::div(with_kept_dims(g, rdims, keepdim), ties);   // keepdim shape
      return std::vector<Tensor>{ops::mul(is_ext, share)};
    });
  }
  return out;
}

}  // namespace

Tensor max(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return extremum_reduce(x, dims, keepdim, true);
}

Tensor min(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return extremum_reduce(x, dims, keepdim, false);
}

Tensor argmax(const Tensor& x, int dim, bool keepdim) {
  NoGradGuard no_grad;  // an integer result: nothing to record
  return ops::argmax(x, dim, keepdim);
}

}  // namespace muxnet
