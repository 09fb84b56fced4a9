// allocator.cpp — caching CPU allocator (see allocator.h for why and how).
#include "tensor/allocator.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "tensor/check.h"

namespace muxnet {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kHugeThreshold = size_t(2) << 20;  // 2 MiB: one transparent huge page

struct CpuCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // size class -> cached blocks
  AllocatorStats stats;
};

CpuCache& cache() {
  // Leaked on purpose: tensors held in static objects may be released after main returns.
  static CpuCache* c = new CpuCache();
  return *c;
}

void* os_allocate(size_t cls) {
  if (cls >= kHugeThreshold) {
    // Over-map by 2 MiB so the block can start on a huge-page boundary, then trim both ends.
    size_t len = cls + kHugeThreshold;
    void* raw = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = (start + kHugeThreshold - 1) & ~(kHugeThreshold - 1);
    if (aligned > start) munmap(raw, aligned - start);
    size_t tail = (start + len) - (aligned + cls);
    if (tail) munmap(reinterpret_cast<void*>(aligned + cls), tail);
    madvise(reinterpret_cast<void*>(aligned), cls, MADV_HUGEPAGE);
    return reinterpret_cast<void*>(aligned);
  }
  return std::aligned_alloc(kAlign, cls);
}

void os_free(void* p, size_t cls) {
  if (cls >= kHugeThreshold) {
    munmap(p, cls);
  } else {
    std::free(p);
  }
}

}  // namespace

size_t cpu_size_class(size_t n) {
  if (n == 0) return 0;
  if (n <= 512) return (n + kAlign - 1) / kAlign * kAlign;
  // Largest power of two <= n, then round up to the next quarter step above it.
  size_t p = size_t(1) << (63 - __builtin_clzll(n - 1));
  size_t quarter = p / 4;
  return (n + quarter - 1) / quarter * quarter;
}

void* cpu_allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  size_t cls = cpu_size_class(nbytes);
  CpuCache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.stats.requests++;
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.stats.cache_hits++;
      c.stats.bytes_cached -= cls;
      c.stats.bytes_in_use += cls;
      if (c.stats.bytes_in_use > c.stats.peak_bytes_in_use) c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
      return p;
    }
  }
  void* p = os_allocate(cls);
  if (!p) {
    // Give the cache back and retry once before reporting out-of-memory.
    cpu_empty_cache();
    p = os_allocate(cls);
  }
  MUXNET_CHECK(p != nullptr, "cpu_allocate: out of memory allocating ", nbytes, " bytes");
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.os_allocs++;
  c.stats.bytes_in_use += cls;
  if (c.stats.bytes_in_use > c.stats.peak_bytes_in_use) c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
  return p;
}

void cpu_release(void* ptr, size_t nbytes) {
  if (!ptr) return;
  size_t cls = cpu_size_class(nbytes);
  CpuCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.free_blocks[cls].push_back(ptr);
  c.stats.bytes_in_use -= cls;
  c.stats.bytes_cached += cls;
}

void cpu_empty_cache() {
  CpuCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [cls, blocks] : c.free_blocks) {
    for (void* p : blocks) os_free(p, cls);
    blocks.clear();
  }
  c.free_blocks.clear();
  c.stats.bytes_cached = 0;
}

AllocatorStats cpu_allocator_stats() {
  CpuCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void cpu_reset_peak() {
  CpuCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
}

}  // namespace muxnet
