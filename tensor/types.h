// types.h — element types and devices.
//
// f32 is the working type everywhere; f64 exists on the CPU so gradient checks can use finite
// differences without float round-off; i32/i64 hold indices (token ids, class targets, argmax).
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>

namespace muxnet {

enum class DType : uint8_t { F32, F64, I32, I64, COUNT };
enum class Device : uint8_t { CPU, CUDA, COUNT };

constexpr size_t dtype_size(DType t) {
  return t == DType::F32 ? 4 : t == DType::F64 ? 8 : t == DType::I32 ? 4 : 8;
}
constexpr bool is_floating(DType t) { return t == DType::F32 || t == DType::F64; }
constexpr bool is_integral(DType t) { return t == DType::I32 || t == DType::I64; }

const char* dtype_name(DType t);    // "f32", "f64", "i32", "i64"
const char* device_name(Device d);  // "cpu", "cuda"

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }
inline std::ostream& operator<<(std::ostream& os, Device d) { return os << device_name(d); }

// The C++ type behind a DType, and back.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };

}  // namespace muxnet
