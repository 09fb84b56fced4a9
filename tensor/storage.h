// storage.h — Storage: one block of device memory shared by a tensor and all its views.
//
// CPU memory comes from the caching allocator (allocator.h). Other devices allocate through the
// DeviceRuntime their backend registers (tensor/device.h; the CUDA backend's is in cuda/runtime.cu);
// asking for memory on a device that is not available is an error that says why.
#pragma once

#include <cstddef>
#include <memory>

#include "tensor/types.h"

namespace muxnet {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_ = Device::CPU;
};

using StoragePtr = std::shared_ptr<Storage>;

}  // namespace muxnet
