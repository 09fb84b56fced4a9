// storage.h — Storage: one block of device memory shared by a tensor and all its views.
//
// CPU memory comes from the caching allocator (allocator.h). Other devices register an
// allocate/release pair at start-up (the CUDA backend does, in cuda/); asking for memory on a device
// nobody registered is an error that says so.
#pragma once

#include <cstddef>
#include <memory>

#include "tensor/types.h"

namespace muxnet {

struct DeviceAllocator {
  void* (*allocate)(size_t nbytes) = nullptr;
  void (*release)(void* ptr, size_t nbytes) = nullptr;
};

// Installs the allocator for a non-CPU device (called by the CUDA backend).
void register_device_allocator(Device device, DeviceAllocator allocator);
bool has_device_allocator(Device device);

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
