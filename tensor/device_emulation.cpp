// device_emulation.cpp — MUXNET_EMULATE_CUDA=1: a stand-in "cuda" device made of host memory and the
// CPU kernels, for testing the device PLUMBING on a machine without a GPU.
//
// Why: the CUDA kernels can only be checked on a GPU, but most device bugs are elsewhere — a tensor
// created on the cpu inside an op, a task that forgets to move a batch, an optimizer state left
// behind, a host read of device memory through .item(). Under emulation every such mistake fails
// exactly as on a GPU ("expected tensors on the same device, got cuda and cpu"), so the parity tests
// and the task binaries can run `--device cuda` here. The numbers are the CPU kernels' numbers: a
// pass under emulation says nothing about the CUDA kernels themselves.
//
// The dispatch table's registration copies the CPU column into the CUDA column, and this file installs
// a runtime whose allocations are ordinary host blocks. It is never on unless the environment asks for it.
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "tensor/device.h"
#include "tensor/dispatch.h"

namespace muxnet {

namespace {

void* emulated_allocate(size_t nbytes) {
  void* p = std::aligned_alloc(64, (nbytes + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return p;
}
void emulated_release(void* ptr, size_t) { std::free(ptr); }
void emulated_copy(void* dst, const void* src, size_t nbytes) { std::memcpy(dst, src, nbytes); }
void emulated_nothing() {}
const char* emulated_available() { return nullptr; }
std::string emulated_describe() { return "emulated cuda (MUXNET_EMULATE_CUDA=1: host memory and the CPU kernels)"; }
int emulated_count() { return 1; }
void emulated_select(int) {}

}  // namespace

bool cuda_emulation_requested() {
  const char* v = std::getenv("MUXNET_EMULATE_CUDA");
  return v && *v && std::string(v) != "0";
}

// Called by ensure_kernels_registered() after it copied the CPU column into the CUDA column.
void install_cuda_emulation_runtime() {
  DeviceRuntime rt;
  rt.unavailable_reason = emulated_available;
  rt.describe = emulated_describe;
  rt.device_count = emulated_count;
  rt.select = emulated_select;
  rt.allocate = emulated_allocate;
  rt.release = emulated_release;
  rt.empty_cache = emulated_nothing;
  rt.copy_from_host = emulated_copy;
  rt.copy_to_host = emulated_copy;
  rt.synchronize = emulated_nothing;
  register_device_runtime(Device::CUDA, rt);
}

}  // namespace muxnet
