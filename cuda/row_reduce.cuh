// row_reduce.cuh — the row machinery shared by the row kernels (softmax.cu, layernorm.cu): a row of a
// contiguous (R, C) matrix is owned by one warp when C is small (several rows per block, no
// __syncthreads) and by one block otherwise; each thread strides over the row's columns, and row-wide
// reductions are warp shuffles plus one shared-memory step across warps, combined in a fixed order, so
// a result does not depend on scheduling.
//
// Launch shape: kRowThreads threads per block, row_blocks(R, warp_row) blocks, and the kernel
// templated on kWarpRow = (C <= kWarpRowMaxCols).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cuda/common.cuh"

// A namespace of its own, so that a row kernel file takes it all with one using-directive.
namespace muxnet::cuda::row {

constexpr int kWarp = 32;
constexpr int kRowThreads = 256;                     // threads per block, in both launch shapes
constexpr int kWarpsPerBlock = kRowThreads / kWarp;  // rows per block when a warp owns a row
constexpr int64_t kWarpRowMaxCols = 1024;            // up to this C a warp owns a row
constexpr int64_t kRowMaxBlocks = 65535LL * 16;      // grid cap; the row loops cover the rest

struct SumOp {
  template <typename A> __device__ A operator()(A acc, A v) const { return acc + v; }
};

// The reduction of v over the threads that own one row: the warp (kWarpRow) or the whole block.
// Every thread of the group gets the same value (lane 0's, broadcast). In block mode every thread of
// the block must call it (it holds two __syncthreads); shared needs kRowThreads / kWarp slots.
template <bool kWarpRow, typename A, typename Op>
__device__ A row_reduce(A v, Op op, A* shared) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
  if constexpr (kWarpRow) {
    return __shfl_sync(0xffffffffu, v, 0);
  } else {
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    __syncthreads();  // a previous row_reduce may still be reading shared
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    A r = shared[0];
    for (int w = 1; w < int(blockDim.x) / kWarp; ++w) r = op(r, shared[w]);
    return r;
  }
}

// Where this thread starts in the rows and columns, and how far it steps: the warp-per-row shape puts
// kWarpsPerBlock rows in a block (row = block * kWarpsPerBlock + warp), the block-per-row shape one.
template <bool kWarpRow>
struct RowWalk {
  int64_t first_row, row_step;
  int lane, lanes;
  __device__ RowWalk() {
    if constexpr (kWarpRow) {
      first_row = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
      row_step = int64_t(gridDim.x) * (blockDim.x / kWarp);
      lane = threadIdx.x % kWarp;
      lanes = kWarp;
    } else {
      first_row = blockIdx.x;
      row_step = gridDim.x;
      lane = threadIdx.x;
      lanes = blockDim.x;
    }
  }
};

// Blocks for R rows: one per row, or one per kWarpsPerBlock rows when a warp owns a row.
inline unsigned row_blocks(int64_t rows, bool warp_row) {
  const int64_t per_block = warp_row ? kWarpsPerBlock : 1;
  return unsigned(std::max<int64_t>(1, std::min((rows + per_block - 1) / per_block, kRowMaxBlocks)));
}

}  // namespace muxnet::cuda::row
