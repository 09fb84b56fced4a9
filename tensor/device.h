// device.h — the runtime a non-CPU backend installs: memory, host<->device copies, synchronisation.
//
// tensor/ never includes CUDA headers: the CUDA backend (cuda/runtime.cu) fills one DeviceRuntime of
// function pointers when the dispatch table is first filled (register_cuda_kernels), and everything
// in tensor/, nn/ and tasks/ reaches the GPU through these functions. In a build without nvcc no runtime
// is registered, and every function below answers with a sentence saying so.
//
// Semantics: every CUDA kernel and copy runs on ONE stream, in order. Copies to the host synchronise
// (the data is there when the call returns); copies to the device may return before they finish, but
// the source buffer may be reused at once (the runtime stages it). device_synchronize waits for all
// queued work (benchmarks call it before reading the clock).
#pragma once

#include <cstddef>
#include <string>

#include "tensor/types.h"

namespace muxnet {

struct DeviceRuntime {
  // nullptr when the device is usable, else why not ("no CUDA GPU: cudaGetDeviceCount returned ...").
  const char* (*unavailable_reason)() = nullptr;
  // A human line for banners: "NVIDIA H200 (sm_90, 139.8 GiB)".
  std::string (*describe)() = nullptr;
  int (*device_count)() = nullptr;
  void (*select)(int index) = nullptr;  // which GPU later allocations and kernels use
  void* (*allocate)(size_t nbytes) = nullptr;  // caching; never returns null for nbytes > 0 (throws)
  void (*release)(void* ptr, size_t nbytes) = nullptr;
  void (*empty_cache)() = nullptr;             // gives cached blocks back to the driver
  void (*copy_from_host)(void* dst_device, const void* src_host, size_t nbytes) = nullptr;
  void (*copy_to_host)(void* dst_host, const void* src_device, size_t nbytes) = nullptr;
  void (*synchronize)() = nullptr;
};

// Installs the runtime of a non-CPU device (called by the CUDA backend at registration).
void register_device_runtime(Device device, const DeviceRuntime& runtime);
// The runtime of device, or nullptr (always nullptr for the CPU).
const DeviceRuntime* device_runtime(Device device);

// True for the CPU; for CUDA, true when the build has the backend AND a GPU is present.
bool device_available(Device device);
// "" when available, else the sentence that says why (built without CUDA / no GPU present / ...).
std::string device_unavailable_reason(Device device);
// Throws muxnet::Error naming `who` and the reason when device is not available.
void require_device(Device device, const char* who);
void device_synchronize(Device device);  // no-op for the CPU
std::string device_describe(Device device);  // "cpu" or the GPU's banner line
void select_device_index(Device device, int index);  // CUDA only; throws for a bad index

// "cpu" | "cuda" | "cuda:1" -> the device (and selects the GPU index for "cuda:K"); throws with the
// text on anything else.
Device parse_device(const std::string& text);

// TF32 tensor-core GEMMs on CUDA: off by default (f32 results then match the CPU to rounding).
void set_allow_tf32(bool on);
bool allow_tf32();

}  // namespace muxnet
