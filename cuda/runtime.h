// runtime.h — what the CUDA runtime (cuda/runtime.cu) tells plain C++ code about its caching allocator.
//
// Plain C++ on purpose (no CUDA headers), so task binaries and tests compiled by g++ can print the
// numbers. These functions exist only in builds with the CUDA backend (MUXNET_WITH_CUDA is defined);
// they answer without touching the GPU, so they are safe to call on a machine that has none.
#pragma once

#include <cstddef>
#include <cstdint>

namespace muxnet {

struct CudaAllocatorStats {
  size_t bytes_in_use = 0;       // handed out and not yet released (size-class bytes)
  size_t peak_bytes_in_use = 0;  // high-water mark of bytes_in_use
  size_t bytes_cached = 0;       // released blocks kept for reuse (still held from the driver)
  uint64_t requests = 0;         // allocations of n > 0 bytes
  uint64_t cache_hits = 0;       // requests served from the cache
  uint64_t device_allocs = 0;    // requests that called cudaMalloc
};

CudaAllocatorStats cuda_allocator_stats();
// The size a request of nbytes is rounded up to: multiples of 512 bytes up to 4 KiB, then four steps
// per power of two (2^k x {1, 1.25, 1.5, 1.75}), so a block wastes at most 25%.
size_t cuda_size_class(size_t nbytes);

}  // namespace muxnet
