// dtype_dispatch.h — turning a runtime DType into a compile-time element type, for the CPU kernels
// (tensor/cpu/) and the CUDA launchers (cuda/) alike.
//
// Each helper calls f(TypeTag<T>{}) with the C++ type of the dtype, or throws muxnet::Error naming the
// op and the dtype it got. Plain host C++ (no BLAS, no CUDA), so nvcc-compiled launchers include it too.
#pragma once

#include <cstdint>

#include "tensor/check.h"
#include "tensor/types.h"

namespace muxnet {

template <typename T> struct TypeTag { using type = T; };

// Calls f(TypeTag<T>{}) with T = float or double for a floating dtype; throws for any other.
template <typename F>
void dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32: f(TypeTag<float>{}); return;
    case DType::F64: f(TypeTag<double>{}); return;
    default: MUXNET_FAIL(op, ": expected a floating dtype (f32 or f64), got ", dtype);
  }
}

// Calls f(TypeTag<T>{}) for any of the four dtypes.
template <typename F>
void dispatch_all(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::F32: f(TypeTag<float>{}); return;
    case DType::F64: f(TypeTag<double>{}); return;
    case DType::I32: f(TypeTag<int32_t>{}); return;
    case DType::I64: f(TypeTag<int64_t>{}); return;
    default: MUXNET_FAIL(op, ": unsupported dtype ", dtype);
  }
}

// Calls f(TypeTag<T>{}) with T = int32_t or int64_t for an index dtype.
template <typename F>
void dispatch_index(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::I32: f(TypeTag<int32_t>{}); return;
    case DType::I64: f(TypeTag<int64_t>{}); return;
    default: MUXNET_FAIL(op, ": expected an index dtype (i32 or i64), got ", dtype);
  }
}

// Calls f(TypeTag<T>{}, TypeTag<I>{}) for a value dtype (any of the four) and an index dtype (i32 or
// i64), as dispatch_all around dispatch_index: the value dtype is checked first.
template <typename F>
void dispatch_value_index(DType value, DType index, const char* op, F&& f) {
  dispatch_all(value, op, [&](auto tt) { dispatch_index(index, op, [&](auto it) { f(tt, it); }); });
}

}  // namespace muxnet
