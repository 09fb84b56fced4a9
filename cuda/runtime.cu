// runtime.cu — the CUDA device runtime: error checks, the one stream, the cuBLAS handle, a caching
// allocator, host<->device copies, and register_cuda_runtime(), which installs all of it as the
// DeviceRuntime of Device::CUDA (tensor/device.h).
//
// No kernels live here: the runtime only calls the CUDA runtime API, so it builds and answers
// questions ("is there a GPU?") on a machine without a GPU or even without a driver.
//
// The allocator. cudaMalloc and cudaFree are slow (cudaFree synchronises the whole device), and a
// training step asks for the same shapes every iteration, so released blocks are kept in free lists
// keyed by size class (cuda_size_class: 512-byte steps up to 4 KiB, then four steps per power of two)
// and handed out again; cudaMalloc runs only on a miss. A block goes back to the driver only on
// empty_cache(), or when cudaMalloc runs out of memory: then the cache is emptied and the
// allocation retried once before "out of memory" is thrown.
//
// Why a released block may be reused at once, with no synchronisation: every kernel, cuBLAS call
// and copy in muxnet runs on ONE stream, stream(). When a tensor's storage is released, the kernels
// that read or write it may still be queued, but any kernel that gets the block next is enqueued
// later on the same stream, so the GPU runs it only after those have finished. Stream order makes
// the reuse safe. (The stream is a plain cudaStreamCreate stream, not a non-blocking one, so even
// work that strays onto the legacy default stream stays ordered with it.)
#include "cuda/runtime.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/common.cuh"
#include "tensor/device.h"

namespace muxnet::cuda {

void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  // Reset the "last error" so a later CUDA_CHECK_LAUNCH does not report this failure again (errors
  // that poison the context stay sticky regardless).
  cudaGetLastError();
  MUXNET_FAIL(call, ": ", cudaGetErrorName(status), ": ", cudaGetErrorString(status), " (", file, ":", line, ")");
}

void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  MUXNET_FAIL(call, ": ", cublasGetStatusName(status), ": ", cublasGetStatusString(status), " (", file, ":", line,
              ")");
}

namespace {
// Set once the GPU holds state of ours (a stream, a cuBLAS handle, memory): selecting another GPU
// after that would leave those on the old one.
std::atomic<bool> g_in_use{false};
}  // namespace

cudaStream_t stream() {
  // A function-local static: created on first use, thread-safe; if creation throws, the next call
  // tries again.
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    CUDA_CHECK(cudaStreamCreate(&created));
    g_in_use = true;
    return created;
  }();
  return s;
}

cublasHandle_t cublas() {
  static cublasHandle_t handle = [] {
    cublasHandle_t created = nullptr;
    CUBLAS_CHECK(cublasCreate(&created));
    CUBLAS_CHECK(cublasSetStream(created, stream()));
    CUBLAS_CHECK(cublasSetMathMode(created, CUBLAS_DEFAULT_MATH));
    g_in_use = true;
    return created;
  }();
  // The math mode follows set_allow_tf32(), which may change between calls; set it only on a change.
  static std::mutex mu;
  static bool tf32 = false;
  const bool want = allow_tf32();
  std::lock_guard<std::mutex> lock(mu);
  if (want != tf32) {
    CUBLAS_CHECK(cublasSetMathMode(handle, want ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    tf32 = want;
  }
  return handle;
}

}  // namespace muxnet::cuda

namespace muxnet {

using cuda::stream;

size_t cuda_size_class(size_t n) {
  if (n == 0) return 0;
  if (n <= 4096) return (n + 511) / 512 * 512;
  // Largest power of two below n (at least 4096), then round up to the next quarter step above it;
  // the steps (>= 1024 bytes) stay multiples of 512.
  const size_t p = size_t(1) << (63 - __builtin_clzll(n - 1));
  const size_t quarter = p / 4;
  return (n + quarter - 1) / quarter * quarter;
}

namespace {

// ---------------------------------------------------------------- device queries

// Why CUDA cannot be used, or "" when it can. Asked once: the answer does not change while the
// process runs, and cudaGetDeviceCount is slow the first time (it loads the driver).
const std::string& unavailable_text() {
  static const std::string why = []() -> std::string {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      cudaGetLastError();  // the failed call is also the "last error"; a later launch check must not see it
      std::string text = std::string("no CUDA GPU found (cudaGetDeviceCount: ") + cudaGetErrorName(status) + ": " +
                         cudaGetErrorString(status);
      int driver = 0;
      if (status == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0) {
        text += "; no NVIDIA driver is loaded";
      }
      return text + ")";
    }
    if (count < 1) return "no CUDA GPU found (cudaGetDeviceCount reported 0 devices)";
    return "";
  }();
  return why;
}

const char* rt_unavailable_reason() {
  const std::string& why = unavailable_text();
  return why.empty() ? nullptr : why.c_str();
}

int rt_device_count() {
  if (!unavailable_text().empty()) return 0;
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  return count;
}

std::string version_text(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string rt_describe() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  int driver = 0, runtime = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  char gib[32];
  std::snprintf(gib, sizeof gib, "%.1f", double(prop.totalGlobalMem) / double(size_t(1) << 30));
  std::string text = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
                     ", " + gib + " GiB, driver " + version_text(driver) + ", runtime " + version_text(runtime);
  const int count = rt_device_count();
  if (count > 1) text += ", GPU " + std::to_string(dev) + " of " + std::to_string(count);
  return text + ")";
}

void rt_select(int index) {
  int current = 0;
  CUDA_CHECK(cudaGetDevice(&current));
  if (index == current) return;
  MUXNET_CHECK(!cuda::g_in_use, "select cuda:", index, ": the GPU cuda:", current,
               " already holds muxnet memory or streams; choose the GPU before creating CUDA tensors");
  // cudaSetDevice applies to the calling thread: muxnet issues all CUDA work from the thread that
  // selects (the main thread).
  CUDA_CHECK(cudaSetDevice(index));
}

// ---------------------------------------------------------------- caching allocator

struct CudaCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // size class -> cached blocks
  CudaAllocatorStats stats;
};

CudaCache& cache() {
  // Leaked on purpose: tensors held in static objects may be released after main returns, and
  // release() must then still find the cache (it makes no CUDA call, so a torn-down context is fine).
  static CudaCache* c = new CudaCache();
  return *c;
}

void note_in_use(CudaCache& c, size_t cls) {  // caller holds c.mu
  c.stats.bytes_in_use += cls;
  if (c.stats.bytes_in_use > c.stats.peak_bytes_in_use) c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
}

void rt_empty_cache() {
  CudaCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.stats.bytes_cached == 0) return;  // nothing to free: touch no CUDA API (there may be no GPU)
  // Queued kernels may still use a cached block (see the header comment): wait for them first.
  CUDA_CHECK(cudaStreamSynchronize(stream()));
  for (auto& [cls, blocks] : c.free_blocks) {
    for (void* p : blocks) CUDA_CHECK(cudaFree(p));
  }
  c.free_blocks.clear();
  c.stats.bytes_cached = 0;
}

void* rt_allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t cls = cuda_size_class(nbytes);
  CudaCache& c = cache();
  size_t in_use = 0, cached = 0;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.stats.requests++;
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.stats.cache_hits++;
      c.stats.bytes_cached -= cls;
      note_in_use(c, cls);
      return p;
    }
    in_use = c.stats.bytes_in_use;
    cached = c.stats.bytes_cached;
  }
  cuda::g_in_use = true;
  void* p = nullptr;
  cudaError_t status = cudaMalloc(&p, cls);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it, or the next CUDA_CHECK_LAUNCH would report this stale failure
    rt_empty_cache();
    status = cudaMalloc(&p, cls);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      MUXNET_FAIL("cuda allocator: out of memory allocating ", nbytes, " bytes (in use ", in_use, ", cached ",
                  cached, ")");
    }
  }
  CUDA_CHECK(status);
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.device_allocs++;
  note_in_use(c, cls);
  return p;
}

void rt_release(void* ptr, size_t nbytes) {
  if (!ptr) return;
  const size_t cls = cuda_size_class(nbytes);
  CudaCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  // No synchronisation: the next user of this block runs after its last one (stream order).
  c.free_blocks[cls].push_back(ptr);
  c.stats.bytes_in_use -= cls;
  c.stats.bytes_cached += cls;
}

// ---------------------------------------------------------------- copies

// Both directions wait for the copy: the host buffer may be freed or reused as soon as the call
// returns (and pageable host memory would be staged synchronously anyway).
void rt_copy_from_host(void* dst_device, const void* src_host, size_t nbytes) {
  if (nbytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst_device, src_host, nbytes, cudaMemcpyHostToDevice, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void rt_copy_to_host(void* dst_host, const void* src_device, size_t nbytes) {
  if (nbytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst_host, src_device, nbytes, cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void rt_synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream())); }

}  // namespace

CudaAllocatorStats cuda_allocator_stats() {
  CudaCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void register_cuda_runtime() {
  DeviceRuntime rt;
  rt.unavailable_reason = rt_unavailable_reason;
  rt.describe = rt_describe;
  rt.device_count = rt_device_count;
  rt.select = rt_select;
  rt.allocate = rt_allocate;
  rt.release = rt_release;
  rt.empty_cache = rt_empty_cache;
  rt.copy_from_host = rt_copy_from_host;
  rt.copy_to_host = rt_copy_to_host;
  rt.synchronize = rt_synchronize;
  register_device_runtime(Device::CUDA, rt);
}

}  // namespace muxnet
