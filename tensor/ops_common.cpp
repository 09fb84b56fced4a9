// ops_common.cpp — checks shared by every op file.
#include "tensor/ops.h"

namespace muxnet::ops {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  MUXNET_CHECK(a.device() == b.device(), op, ": expected tensors on the same device, got ", a.device(),
               " and ", b.device());
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  MUXNET_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ: ", a.dtype(), " and ", b.dtype());
}

void check_floating(const char* op, const Tensor& x) {
  MUXNET_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor (f32 or f64), got ", x.dtype());
}

void check_index_dtype(const char* op, const Tensor& idx) {
  MUXNET_CHECK(is_integral(idx.dtype()), op, ": expected an index tensor (i32 or i64), got ", idx.dtype());
}

}  // namespace muxnet::ops
