// allocator.h — the caching CPU allocator behind every tensor's storage.
//
// Why it exists: on these machines the first touch of a fresh 4 KiB page costs ~12 us
// (../shared/bench/RESULTS.md §2), so an engine that frees its activations to the OS after each step
// and faults them in again on the next spends most of its time in the kernel. This allocator keeps
// every freed block in a free list keyed by its size class and hands it out again; memory only goes
// back to the OS on cpu_empty_cache().
//
// Size classes: requests are rounded up to a multiple of 64 bytes below 512 B, and above that to one
// of four steps per power of two (2^k x {1, 1.25, 1.5, 1.75}), so a block wastes at most 25% and a
// training step that asks for the same shapes every iteration is served entirely from the cache.
// Every block is 64-byte aligned; blocks of 2 MiB and more are mmap-ed 2 MiB-aligned with
// MADV_HUGEPAGE, which makes their first touch ~50x cheaper than 4 KiB pages here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace muxnet {

struct AllocatorStats {
  size_t bytes_in_use = 0;       // handed out and not yet released (size-class bytes)
  size_t peak_bytes_in_use = 0;  // high-water mark of bytes_in_use
  size_t bytes_cached = 0;       // released blocks kept for reuse
  uint64_t requests = 0;         // calls to cpu_allocate with n > 0
  uint64_t cache_hits = 0;       // requests served from the cache
  uint64_t os_allocs = 0;        // requests that had to ask the OS for memory
};

// Returns a 64-byte aligned block of at least nbytes (nullptr for 0 bytes).
void* cpu_allocate(size_t nbytes);
// Gives a block back to the cache; nbytes must be the size passed to cpu_allocate.
void cpu_release(void* ptr, size_t nbytes);
// Returns every cached block to the OS.
void cpu_empty_cache();
AllocatorStats cpu_allocator_stats();
void cpu_reset_peak();
// The size class a request of nbytes is rounded up to (exposed for tests).
size_t cpu_size_class(size_t nbytes);

}  // namespace muxnet
