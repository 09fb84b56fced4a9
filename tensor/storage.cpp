// storage.cpp — Storage allocation through the per-device allocators.
#include "tensor/storage.h"

#include "tensor/allocator.h"
#include "tensor/check.h"
#include "tensor/device.h"

namespace muxnet {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    default: return "?";
  }
}

const char* device_name(Device d) {
  switch (d) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
    default: return "?";
  }
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device == Device::CPU) {
    data_ = cpu_allocate(nbytes);
    return;
  }
  std::string why = device_unavailable_reason(device);
  MUXNET_CHECK(why.empty(), "Storage: cannot allocate on ", device, ": ", why);
  data_ = nbytes ? device_runtime(device)->allocate(nbytes) : nullptr;
}

Storage::~Storage() {
  if (!data_) return;
  if (device_ == Device::CPU) {
    cpu_release(data_, nbytes_);
  } else {
    device_runtime(device_)->release(data_, nbytes_);
  }
}

}  // namespace muxnet
