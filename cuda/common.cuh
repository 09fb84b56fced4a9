// common.cuh — what every CUDA file shares: error checks that name the failing call, the one stream,
// the cuBLAS handle, launch geometry (grid_for, grid-stride loops), and the per-family registration
// functions register.cu calls.
//
// House rules for cuda/*.cu (STYLE.md): kernels first, then a `// launchers` banner, then the host
// launchers that the dispatch table points at (same signatures as tensor/cpu/, see tensor/dispatch.h),
// then register_cuda_<family>(). The op layer has validated shapes, dtypes and devices; launchers
// handle numel == 0 and launch on muxnet::cuda::stream(). Every launch is followed by
// CUDA_CHECK_LAUNCH("<kernel name>") so a bad launch names itself.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/check.h"
#include "tensor/dispatch.h"

namespace muxnet::cuda {

// Throw muxnet::Error: "<call>: <cuda error name>: <message> (cuda/file.cu:line)".
void check_cuda(cudaError_t status, const char* call, const char* file, int line);
void check_cublas(cublasStatus_t status, const char* call, const char* file, int line);

cudaStream_t stream();    // the one stream every kernel and copy runs on
cublasHandle_t cublas();  // created on first use, bound to stream(); math mode follows allow_tf32()

constexpr int kBlock = 256;  // threads per block for 1-d grids
// Blocks for n elements at kBlock threads, capped so grid-stride loops cover the rest.
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t blocks = (n + block - 1) / block;
  if (blocks > 65535LL * 16) blocks = 65535LL * 16;
  return unsigned(blocks < 1 ? 1 : blocks);
}

// First index and stride of a 1-d grid-stride loop (64-bit: tensors may exceed 2^31 elements).
__device__ __forceinline__ int64_t grid_first() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_step() { return int64_t(gridDim.x) * blockDim.x; }

}  // namespace muxnet::cuda

#define CUDA_CHECK(call) ::muxnet::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::muxnet::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define CUDA_CHECK_LAUNCH(name) ::muxnet::cuda::check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)

// A grid-stride loop over [0, n) in int64 (n may exceed 2^31): MUXNET_GRID_STRIDE(t, n) { ... t ... }.
#define MUXNET_GRID_STRIDE(t, n) \
  for (int64_t t = ::muxnet::cuda::grid_first(); t < (n); t += ::muxnet::cuda::grid_step())

namespace muxnet {
// One per cuda/<family>.cu; register.cu calls them all.
void register_cuda_runtime();      // runtime.cu: DeviceRuntime (allocator, copies, stream)
void register_cuda_copy();         // copy.cu: copy, fill
void register_cuda_elementwise();  // elementwise.cu: unary(+backward), binary, scalar, compare, where, masked_fill
void register_cuda_reduce();       // reduce.cu: reduce, argmax, sum_squares
void register_cuda_matmul();       // matmul.cu: matmul (cuBLAS)
void register_cuda_softmax();      // softmax.cu: softmax, softmax_backward
void register_cuda_layernorm();    // layernorm.cu: layer_norm, layer_norm_backward
void register_cuda_index();        // index.cu: embedding(+backward), index_select/add, gather, scatter_add
void register_cuda_conv();         // conv.cu: im2col, col2im
void register_cuda_pool();         // pool.cu: max_pool2d(+backward)
void register_cuda_optim();        // optim.cu: sgd_step, adamw_step
}  // namespace muxnet
