// iter.cpp — building an ElemIter: broadcast strides, drop size-1 dims, merge contiguous dims.
#include "tensor/iter.h"

namespace muxnet {

ElemIter make_elem_iter(const Tensor& out, std::initializer_list<const Tensor*> inputs) {
  ElemIter it;
  it.noperands = 1 + int(inputs.size());
  MUXNET_CHECK(it.noperands <= ElemIter::kMaxOperands, "make_elem_iter: at most ",
               ElemIter::kMaxOperands - 1, " inputs");
  const Shape& shape = out.shape();
  const int nd = shape.ndim();
  it.numel = shape.numel();

  const Tensor* ops[ElemIter::kMaxOperands];
  ops[0] = &out;
  int k = 1;
  for (const Tensor* t : inputs) ops[k++] = t;

  // Byte strides of each operand in the output's index space, broadcast dims get stride 0.
  int64_t full_strides[ElemIter::kMaxOperands][kMaxDims];
  for (k = 0; k < it.noperands; ++k) {
    const Tensor& t = *ops[k];
    MUXNET_CHECK(t.device() == out.device(), "elementwise: operand ", k, " is on ", t.device(),
                 ", expected ", out.device());
    const int tnd = t.ndim();
    MUXNET_CHECK(tnd <= nd, "elementwise: operand shape ", t.shape(), " does not broadcast to ", shape);
    const int64_t es = int64_t(t.element_size());
    for (int d = 0; d < nd; ++d) {
      int td = d - (nd - tnd);
      if (td < 0) {
        full_strides[k][d] = 0;
        continue;
      }
      int64_t size = t.size(td);
      MUXNET_CHECK(size == shape[d] || size == 1, "elementwise: operand shape ", t.shape(),
                   " does not broadcast to ", shape);
      full_strides[k][d] = (size == 1 && shape[d] != 1) ? 0 : t.stride(td) * es;
    }
    it.data[k] = static_cast<char*>(t.data_ptr());
  }

  // Keep non-trivial dims, merging dim d into the previous kept one when every operand allows it.
  int m = 0;
  for (int d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    if (m > 0) {
      bool mergeable = true;
      for (k = 0; k < it.noperands; ++k) {
        if (it.strides[k][m - 1] != full_strides[k][d] * shape[d]) {
          mergeable = false;
          break;
        }
      }
      if (mergeable) {
        it.shape[m - 1] *= shape[d];
        for (k = 0; k < it.noperands; ++k) it.strides[k][m - 1] = full_strides[k][d];
        continue;
      }
    }
    it.shape[m] = shape[d];
    for (k = 0; k < it.noperands; ++k) it.strides[k][m] = full_strides[k][d];
    ++m;
  }
  it.ndim = m;
  return it;
}

}  // namespace muxnet
