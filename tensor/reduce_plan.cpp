// reduce_plan.cpp — the host-side planning of a reduction (see reduce_plan.h), shared by the CPU and
// CUDA reduce kernels.
#include "tensor/reduce_plan.h"

#include <utility>

namespace muxnet {

void ReduceNest::sort_and_coalesce() {
  for (int i = 1; i < ndim; ++i) {
    for (int j = i; j > 0 && strides[0][j - 1] < strides[0][j]; --j) {
      std::swap(shape[j - 1], shape[j]);
      std::swap(strides[0][j - 1], strides[0][j]);
      std::swap(strides[1][j - 1], strides[1][j]);
    }
  }
  int m = 0;
  for (int d = 0; d < ndim; ++d) {
    if (m > 0 && strides[0][m - 1] == strides[0][d] * shape[d] && strides[1][m - 1] == strides[1][d] * shape[d]) {
      shape[m - 1] *= shape[d];
      strides[0][m - 1] = strides[0][d];
      strides[1][m - 1] = strides[1][d];
      continue;
    }
    shape[m] = shape[d];
    strides[0][m] = strides[0][d];
    strides[1][m] = strides[1][d];
    ++m;
  }
  ndim = m;
}

int64_t split_reduce_dims(const Tensor& x, DimMask dims, const Tensor& out, ReduceNest& kept, ReduceNest& red) {
  int64_t count = 1;
  for (int d = 0; d < x.ndim(); ++d) {
    const int64_t sz = x.size(d);
    if (dims & (DimMask(1) << d)) {
      count *= sz;
      if (sz != 1) red.push(sz, x.stride(d), 0);
    } else if (sz != 1) {
      kept.push(sz, x.stride(d), out.stride(d));
    }
  }
  return count;
}

ReduceNest argmax_kept_dims(const Tensor& x, int dim, const Tensor& out) {
  ReduceNest kept;
  for (int d = 0; d < x.ndim(); ++d) {
    if (d != dim && x.size(d) != 1) kept.push(x.size(d), x.stride(d), out.stride(d));
  }
  kept.sort_and_coalesce();
  return kept;
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    default: return "reduce";
  }
}

}  // namespace muxnet
