// storage.cpp — Storage allocation through the per-device allocators.
#include "tensor/storage.h"

#include "tensor/allocator.h"
#include "tensor/check.h"

namespace muxnet {

namespace {
DeviceAllocator g_allocators[size_t(Device::COUNT)];
}

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

void register_device_allocator(Device device, DeviceAllocator allocator) {
  g_allocators[size_t(device)] = allocator;
}

bool has_device_allocator(Device device) {
  return device == Device::CPU || g_allocators[size_t(device)].allocate != nullptr;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device == Device::CPU) {
    data_ = cpu_allocate(nbytes);
    return;
  }
  const DeviceAllocator& a = g_allocators[size_t(device)];
  MUXNET_CHECK(a.allocate != nullptr, "Storage: no allocator for device ", device,
               " (built without CUDA, or no GPU present)");
  data_ = nbytes ? a.allocate(nbytes) : nullptr;
}

Storage::~Storage() {
  if (!data_) return;
  if (device_ == Device::CPU) {
    cpu_release(data_, nbytes_);
  } else {
    g_allocators[size_t(device_)].release(data_, nbytes_);
  }
}

}  // namespace muxnet
