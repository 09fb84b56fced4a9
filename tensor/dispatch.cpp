// dispatch.cpp — the kernel[OpId][Device] table and its lazy, one-time registration.
#include "tensor/dispatch.h"

#include <mutex>

namespace muxnet {

namespace {

detail::AnyKernel g_table[size_t(OpId::COUNT)][size_t(Device::COUNT)] = {};

}  // namespace

// Registration runs on the first lookup rather than in static initialisers, which a static library
// would silently drop when no symbol of the registering file is referenced.
void ensure_kernels_registered() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_cpu_kernels();
    register_cuda_kernels();
    if (cuda_emulation_requested()) {
      // The CPU kernels stand in for the CUDA column (see tensor/device_emulation.cpp).
      for (size_t i = 0; i < size_t(OpId::COUNT); ++i) g_table[i][size_t(Device::CUDA)] = g_table[i][size_t(Device::CPU)];
      install_cuda_emulation_runtime();
    }
  });
}

namespace detail {

AnyKernel lookup_kernel(OpId op, Device device) {
  ensure_kernels_registered();
  AnyKernel fn = g_table[size_t(op)][size_t(device)];
  if (!fn) {
    if (device == Device::CUDA) {
      MUXNET_FAIL(op_name(op), ": no CUDA kernel (built without CUDA?)");
    }
    MUXNET_FAIL(op_name(op), ": no ", device_name(device), " kernel registered");
  }
  return fn;
}

void set_kernel(OpId op, Device device, AnyKernel fn) { g_table[size_t(op)][size_t(device)] = fn; }

}  // namespace detail

bool has_kernel(OpId op, Device device) {
  ensure_kernels_registered();
  return g_table[size_t(op)][size_t(device)] != nullptr;
}

}  // namespace muxnet
