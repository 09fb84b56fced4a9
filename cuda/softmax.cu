// softmax.cu — CUDA kernels for OpId::softmax (softmax and log_softmax over the last dim) and
// OpId::softmax_backward. The oracle is tensor/cpu/softmax.cpp; the semantics are the same:
//   - numerically stable: the row max m is subtracted first, y = exp(x - m) / sum exp(x - m), and
//     log_softmax = (x - m) - log(sum exp(x - m));
//   - -inf entries get probability 0 (log-probability -inf); a row that is all -inf gives NaN
//     everywhere (m = -inf, -inf - (-inf) = NaN), and a NaN anywhere makes the whole row NaN (NaN never
//     wins the max comparison, but exp(NaN - m) is NaN);
//   - backward, from the forward output y: softmax gx = y * (g - sum(g * y));
//     log_softmax gx = g - exp(y) * sum(g).
// Row sums accumulate in double for f32 too, and the same values are rounded to T at the same
// places as on the CPU, so results agree to the rounding of the (differently ordered) sums.
//
// Layout: x, y, g, gx are contiguous and viewed as (R, C) rows. A row is owned by one warp when C is
// small (several rows per block, no __syncthreads) and by one block otherwise. Each thread strides over
// the row's columns; reductions are warp shuffles (plus one shared-memory step across warps), combined
// in a fixed order, so a result does not depend on scheduling. The machinery is cuda/row_reduce.cuh.
// What this is not: a softmax over another dim (the op layer would permute), nor a fused cross-entropy.
#include <algorithm>
#include <cmath>

#include "cuda/row_reduce.cuh"

namespace muxnet {

namespace {

using namespace cuda::row;  // kWarp, kRowThreads, kWarpRowMaxCols, SumOp, row_reduce, RowWalk, row_blocks


__device__ inline float exp_t(float v) { return expf(v); }
__device__ inline double exp_t(double v) { return exp(v); }

struct MaxOp {
  // The CPU's rule: a candidate replaces the running max only when it compares greater, so NaN never
  // enters (the running maxima start at -inf) and the combination order does not matter.
  template <typename A> __device__ A operator()(A acc, A v) const { return v > acc ? v : acc; }
};

// x, y: (R, C) contiguous. The row loop's bounds are uniform over the group that owns a row, so every
// thread of the group reaches each row_reduce.
template <typename T, bool kWarpRow>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool log_mode) {
  __shared__ T shared_max[kRowThreads / kWarp];
  __shared__ double shared_sum[kRowThreads / kWarp];
  const RowWalk<kWarpRow> walk;
  for (int64_t r = walk.first_row; r < rows; r += walk.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = T(-INFINITY);
    for (int64_t c = walk.lane; c < cols; c += walk.lanes) m = MaxOp()(m, xr[c]);
    m = row_reduce<kWarpRow>(m, MaxOp(), shared_max);
    // NOTE: when m = -inf (a fully masked row) x - m is NaN, so the row becomes NaN like PyTorch.
    double s = 0.0;
    for (int64_t c = walk.lane; c < cols; c += walk.lanes) {
      const T e = exp_t(T(xr[c] - m));
      if (!log_mode) yr[c] = e;  // read back below by this same thread: no barrier needed
      s += double(e);
    }
    s = row_reduce<kWarpRow>(s, SumOp(), shared_sum);
    if (log_mode) {
      const double log_s = log(s);
      for (int64_t c = walk.lane; c < cols; c += walk.lanes) yr[c] = T(double(T(xr[c] - m)) - log_s);
    } else {
      // One rounding of 1/s to T, then one product, as the CPU kernel.
      const T inv = T(1.0 / s);
      for (int64_t c = walk.lane; c < cols; c += walk.lanes) yr[c] = yr[c] * inv;
    }
  }
}

// g, y, gx: (R, C) contiguous; y is the forward output (log-probabilities when log_mode).
template <typename T, bool kWarpRow>
__global__ void softmax_backward_kernel(const T* g, const T* y, T* gx, int64_t rows, int64_t cols, bool log_mode) {
  __shared__ double shared_sum[kRowThreads / kWarp];
  const RowWalk<kWarpRow> walk;
  for (int64_t r = walk.first_row; r < rows; r += walk.row_step) {
    const T* gr = g + r * cols;
    const T* yr = y + r * cols;
    T* gxr = gx + r * cols;
    if (log_mode) {
      // in the forward pass: y = x - m - log(sum exp(x - m)), so softmax(x) = exp(y).
      double s = 0.0;
      for (int64_t c = walk.lane; c < cols; c += walk.lanes) s += double(gr[c]);
      s = row_reduce<kWarpRow>(s, SumOp(), shared_sum);
      for (int64_t c = walk.lane; c < cols; c += walk.lanes) {
        const T p = exp_t(yr[c]);
        gxr[c] = T(double(gr[c]) - double(p) * s);
      }
    } else {
      // in the forward pass: y = exp(x - m) / sum exp(x - m); dy_i/dx_j = y_i (delta_ij - y_j).
      double dot = 0.0;
      for (int64_t c = walk.lane; c < cols; c += walk.lanes) dot += double(gr[c]) * double(yr[c]);
      dot = row_reduce<kWarpRow>(dot, SumOp(), shared_sum);
      for (int64_t c = walk.lane; c < cols; c += walk.lanes) gxr[c] = T(double(yr[c]) * (double(gr[c]) - dot));
    }
  }
}

// ---------------------------------------------------------------- launchers

template <typename T>
void softmax_typed(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  const bool warp_row = cols <= kWarpRowMaxCols;
  const unsigned blocks = row_blocks(rows, warp_row);
  if (warp_row) {
    softmax_kernel<T, true><<<blocks, kRowThreads, 0, cuda::stream()>>>(x, y, rows, cols, log);
  } else {
    softmax_kernel<T, false><<<blocks, kRowThreads, 0, cuda::stream()>>>(x, y, rows, cols, log);
  }
  CUDA_CHECK_LAUNCH(log ? "log_softmax_kernel" : "softmax_kernel");
}

// x, out: same shape, contiguous; rows over the last dim.
void softmax_cuda(const Tensor& x, const Tensor& out, bool log) {
  if (x.numel() == 0) return;
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  switch (x.dtype()) {
    case DType::F32: softmax_typed<float>(x.data<float>(), out.data<float>(), rows, cols, log); return;
    case DType::F64: softmax_typed<double>(x.data<double>(), out.data<double>(), rows, cols, log); return;
    default:
      MUXNET_FAIL(log ? "log_softmax" : "softmax", " (CUDA): expected a floating dtype (f32 or f64), got ",
                  x.dtype());
  }
}

template <typename T>
void softmax_backward_typed(const T* g, const T* y, T* gx, int64_t rows, int64_t cols, bool log) {
  const bool warp_row = cols <= kWarpRowMaxCols;
  const unsigned blocks = row_blocks(rows, warp_row);
  if (warp_row) {
    softmax_backward_kernel<T, true><<<blocks, kRowThreads, 0, cuda::stream()>>>(g, y, gx, rows, cols, log);
  } else {
    softmax_backward_kernel<T, false><<<blocks, kRowThreads, 0, cuda::stream()>>>(g, y, gx, rows, cols, log);
  }
  CUDA_CHECK_LAUNCH(log ? "log_softmax_backward_kernel" : "softmax_backward_kernel");
}

// grad_out, y, grad_in: same shape, contiguous.
void softmax_backward_cuda(const Tensor& grad_out, const Tensor& y, const Tensor& grad_in, bool log) {
  if (y.numel() == 0) return;
  const int64_t cols = y.size(-1), rows = y.numel() / cols;
  switch (y.dtype()) {
    case DType::F32:
      softmax_backward_typed<float>(grad_out.data<float>(), y.data<float>(), grad_in.data<float>(), rows, cols, log);
      return;
    case DType::F64:
      softmax_backward_typed<double>(grad_out.data<double>(), y.data<double>(), grad_in.data<double>(), rows, cols,
                                     log);
      return;
    default:
      MUXNET_FAIL(log ? "log_softmax_backward" : "softmax_backward",
                  " (CUDA): expected a floating dtype (f32 or f64), got ", y.dtype());
  }
}

}  // namespace

void register_cuda_softmax() {
  register_kernel<OpId::softmax>(Device::CUDA, softmax_cuda);
  register_kernel<OpId::softmax_backward>(Device::CUDA, softmax_backward_cuda);
}

}  // namespace muxnet
