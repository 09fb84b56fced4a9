// layernorm.cu — CUDA kernels for OpId::layer_norm and OpId::layer_norm_backward over the last dim.
// The oracle is tensor/cpu/layernorm.cpp; the semantics are the same
// (torch.nn.functional.layer_norm with normalized_shape = (C,)):
//   mean = sum(x) / C,  var = sum((x - mean)^2) / C  (biased),  rstd = 1 / sqrt(var + eps),
//   y = (x - mean) * rstd * w + b   (w and b optional; C = 0 gives NaN statistics, as PyTorch).
// Statistics use two passes over the row in double (for f32 too), and y is formed in double and
// rounded once, as on the CPU.
//
// Backward, with xhat = (x - mean) * rstd and gh = grad_y * w (or grad_y without w):
//   grad_x = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))     (written, =)
//   grad_w += sum over rows of grad_y * xhat,  grad_b += sum over rows of grad_y   (accumulated, +=)
//
// Layout: x, y, grad_y, grad_x are contiguous (R, C) rows. Row work (statistics, y, grad_x) gives a
// row to one warp when C is small and to one block otherwise; reductions are warp shuffles plus one
// shared-memory step, in a fixed order. grad_w / grad_b are column sums over rows, done without atomics
// in two deterministic stages: the rows are cut into chunks (a number that depends on R and C only),
// a thread per (column, chunk) sums its chunk's rows in order into an f64 partial, and a thread per
// column adds the chunks' partials in order to grad_w / grad_b. Results are identical run to run.
// What this is not: a normalisation over several trailing dims (callers flatten them into C), nor
// RMSNorm.
#include <algorithm>
#include <cmath>

#include "cuda/row_reduce.cuh"

namespace muxnet {

namespace {

using namespace cuda::row;  // kWarp, kRowThreads, kWarpRowMaxCols, SumOp, row_reduce, RowWalk, row_blocks

// Row chunks of the grad_w / grad_b partial sums: at most this many, and at most kMaxPartials
// partial values per parameter (so a huge C does not allocate R-proportional scratch).
constexpr int64_t kMaxChunks = 256;
constexpr int64_t kMaxPartials = int64_t(1) << 22;

// x, y: (R, C); w, b: (C) or null; mean, rstd: (R). The row loop's bounds are uniform over the group
// that owns a row, so every thread of the group reaches each row_reduce.
template <typename T, bool kWarpRow>
__global__ void layer_norm_kernel(const T* x, const T* w, const T* b, double eps, T* y, T* mean, T* rstd,
                                  int64_t rows, int64_t cols) {
  __shared__ double shared[kRowThreads / kWarp];
  const RowWalk<kWarpRow> walk;
  for (int64_t r = walk.first_row; r < rows; r += walk.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    double s = 0.0;
    for (int64_t c = walk.lane; c < cols; c += walk.lanes) s += double(xr[c]);
    // NOTE: C = 0 gives 0 / 0 = NaN statistics (and an empty y), as PyTorch.
    const double m = row_reduce<kWarpRow>(s, SumOp(), shared) / double(cols);
    double q = 0.0;
    for (int64_t c = walk.lane; c < cols; c += walk.lanes) {
      const double d = double(xr[c]) - m;
      q += d * d;
    }
    const double var = row_reduce<kWarpRow>(q, SumOp(), shared) / double(cols);
    const double rs = 1.0 / sqrt(var + eps);
    if (walk.lane == 0) {
      mean[r] = T(m);
      rstd[r] = T(rs);
    }
    for (int64_t c = walk.lane; c < cols; c += walk.lanes) {
      double v = (double(xr[c]) - m) * rs;
      if (w) v *= double(w[c]);
      if (b) v += double(b[c]);
      yr[c] = T(v);
    }
  }
}

// g, x, gx: (R, C); w: (C) or null; mean, rstd: (R). Writes gx (=).
template <typename T, bool kWarpRow>
__global__ void layer_norm_grad_x_kernel(const T* g, const T* x, const T* w, const T* mean, const T* rstd, T* gx,
                                         int64_t rows, int64_t cols) {
  __shared__ double shared[kRowThreads / kWarp];
  const RowWalk<kWarpRow> walk;
  for (int64_t r = walk.first_row; r < rows; r += walk.row_step) {
    const T* gr = g + r * cols;
    const T* xr = x + r * cols;
    T* gxr = gx + r * cols;
    // NOTE: the saved mean is in T; for f32 inputs with |mean| >> std its rounding limits xhat.
    const double m = double(mean[r]), rs = double(rstd[r]);
    double s_gh = 0.0, s_ghx = 0.0;
    for (int64_t c = walk.lane; c < cols; c += walk.lanes) {
      const double xh = (double(xr[c]) - m) * rs;
      const double gh = w ? double(gr[c]) * double(w[c]) : double(gr[c]);
      s_gh += gh;
      s_ghx += gh * xh;
    }
    const double mean_gh = row_reduce<kWarpRow>(s_gh, SumOp(), shared) / double(cols);
    const double mean_ghx = row_reduce<kWarpRow>(s_ghx, SumOp(), shared) / double(cols);
    // in the forward pass: y = xhat * w + b with xhat = (x - mean) * rstd.
    for (int64_t c = walk.lane; c < cols; c += walk.lanes) {
      const double xh = (double(xr[c]) - m) * rs;
      const double gh = w ? double(gr[c]) * double(w[c]) : double(gr[c]);
      gxr[c] = T(rs * (gh - mean_gh - xh * mean_ghx));
    }
  }
}

// Stage 1 of grad_w / grad_b: the thread of (column c = blockIdx.x * blockDim.x + threadIdx.x,
// chunk k = blockIdx.y) sums rows [k * chunk_rows, (k + 1) * chunk_rows) of column c in order, into
// pw[k * C + c] (grad_y * xhat) and pb[k * C + c] (grad_y); pw / pb null when not wanted.
template <typename T>
__global__ void layer_norm_param_partial_kernel(const T* g, const T* x, const T* mean, const T* rstd, double* pw,
                                                double* pb, int64_t rows, int64_t cols, int64_t chunk_rows) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;  // no barrier in this kernel, so an early exit is safe
  const int64_t k = blockIdx.y;
  const int64_t r0 = k * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  double sw = 0.0, sb = 0.0;
  for (int64_t r = r0; r < r1; ++r) {
    const double gv = double(g[r * cols + c]);
    if (pw) sw += gv * ((double(x[r * cols + c]) - double(mean[r])) * double(rstd[r]));
    sb += gv;
  }
  if (pw) pw[k * cols + c] = sw;
  if (pb) pb[k * cols + c] = sb;
}

// Stage 2: gw[c] += sum over chunks of pw[k * C + c] (chunks in order), likewise gb; null skips.
template <typename T>
__global__ void layer_norm_param_finish_kernel(const double* pw, const double* pb, T* gw, T* gb, int64_t cols,
                                               int64_t chunks) {
  MUXNET_GRID_STRIDE(c, cols) {
    if (gw) {
      double s = 0.0;
      for (int64_t k = 0; k < chunks; ++k) s += pw[k * cols + c];
      gw[c] = T(double(gw[c]) + s);
    }
    if (gb) {
      double s = 0.0;
      for (int64_t k = 0; k < chunks; ++k) s += pb[k * cols + c];
      gb[c] = T(double(gb[c]) + s);
    }
  }
}

// ---------------------------------------------------------------- launchers

// The data of an optional (possibly undefined) tensor, or null.
template <typename T> T* data_or_null(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

// x, y: (R, C) contiguous; w, b: (C) contiguous or undefined; mean, rstd: (R).
template <typename T>
void layer_norm_typed(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                      const Tensor& mean, const Tensor& rstd) {
  const int64_t rows = x.size(0), cols = x.size(1);
  const bool warp_row = cols <= kWarpRowMaxCols;
  const unsigned blocks = row_blocks(rows, warp_row);
  const T* xp = x.data<T>();
  const T* wp = data_or_null<T>(w);
  const T* bp = data_or_null<T>(b);
  if (warp_row) {
    layer_norm_kernel<T, true><<<blocks, kRowThreads, 0, cuda::stream()>>>(xp, wp, bp, eps, y.data<T>(), mean.data<T>(),
                                                                           rstd.data<T>(), rows, cols);
  } else {
    layer_norm_kernel<T, false><<<blocks, kRowThreads, 0, cuda::stream()>>>(
        xp, wp, bp, eps, y.data<T>(), mean.data<T>(), rstd.data<T>(), rows, cols);
  }
  CUDA_CHECK_LAUNCH("layer_norm_kernel");
}

void layer_norm_cuda(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                     const Tensor& mean, const Tensor& rstd) {
  if (x.size(0) == 0) return;
  switch (x.dtype()) {
    case DType::F32: layer_norm_typed<float>(x, w, b, eps, y, mean, rstd); return;
    case DType::F64: layer_norm_typed<double>(x, w, b, eps, y, mean, rstd); return;
    default: MUXNET_FAIL("layer_norm (CUDA): expected a floating dtype (f32 or f64), got ", x.dtype());
  }
}

// grad_y, x, grad_x: (R, C) contiguous; w: (C) or undefined; mean, rstd: (R);
// grad_w, grad_b: (C) or undefined, accumulated into.
template <typename T>
void layer_norm_backward_typed(const Tensor& grad_y, const Tensor& x, const Tensor& w, const Tensor& mean,
                               const Tensor& rstd, const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b) {
  const int64_t rows = x.size(0), cols = x.size(1);
  const T* gp = grad_y.data<T>();
  const T* xp = x.data<T>();
  const T* wp = data_or_null<T>(w);
  const T* mp = mean.data<T>();
  const T* rp = rstd.data<T>();
  const bool warp_row = cols <= kWarpRowMaxCols;
  const unsigned blocks = row_blocks(rows, warp_row);
  if (warp_row) {
    layer_norm_grad_x_kernel<T, true><<<blocks, kRowThreads, 0, cuda::stream()>>>(gp, xp, wp, mp, rp,
                                                                                  grad_x.data<T>(), rows, cols);
  } else {
    layer_norm_grad_x_kernel<T, false><<<blocks, kRowThreads, 0, cuda::stream()>>>(gp, xp, wp, mp, rp,
                                                                                   grad_x.data<T>(), rows, cols);
  }
  CUDA_CHECK_LAUNCH("layer_norm_grad_x_kernel");

  T* gw = data_or_null<T>(grad_w);
  T* gb = data_or_null<T>(grad_b);
  if (!gw && !gb) return;
  // Chunks of rows: as many as kMaxChunks allows, fewer when C is so large that the partials would
  // exceed kMaxPartials; chunk_rows is then rounded up and the chunk count recomputed so that no
  // chunk is empty. Depends on R and C only, so the summation order is fixed.
  int64_t chunks = std::min({rows, kMaxChunks, std::max<int64_t>(1, kMaxPartials / cols)});
  const int64_t chunk_rows = (rows + chunks - 1) / chunks;
  chunks = (rows + chunk_rows - 1) / chunk_rows;
  // f64 scratch from the caching allocator; freeing it after the launches is safe because every
  // later user of the block runs on the same stream, after these kernels.
  Tensor pw = gw ? empty(Shape{chunks, cols}, DType::F64, Device::CUDA) : Tensor();
  Tensor pb = gb ? empty(Shape{chunks, cols}, DType::F64, Device::CUDA) : Tensor();
  double* pwp = data_or_null<double>(pw);
  double* pbp = data_or_null<double>(pb);
  const int64_t col_blocks = (cols + cuda::kBlock - 1) / cuda::kBlock;
  MUXNET_CHECK(col_blocks <= int64_t(0x7fffffff), "layer_norm_backward (CUDA): C = ", cols, " is too large");
  const dim3 grid{unsigned(col_blocks), unsigned(chunks)};
  layer_norm_param_partial_kernel<T><<<grid, cuda::kBlock, 0, cuda::stream()>>>(gp, xp, mp, rp, pwp, pbp, rows, cols,
                                                                                chunk_rows);
  CUDA_CHECK_LAUNCH("layer_norm_param_partial_kernel");
  layer_norm_param_finish_kernel<T><<<cuda::grid_for(cols), cuda::kBlock, 0, cuda::stream()>>>(pwp, pbp, gw, gb, cols,
                                                                                               chunks);
  CUDA_CHECK_LAUNCH("layer_norm_param_finish_kernel");
}

void layer_norm_backward_cuda(const Tensor& grad_y, const Tensor& x, const Tensor& w, const Tensor& mean,
                              const Tensor& rstd, const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b) {
  if (x.size(0) == 0 || x.size(1) == 0) return;
  switch (x.dtype()) {
    case DType::F32: layer_norm_backward_typed<float>(grad_y, x, w, mean, rstd, grad_x, grad_w, grad_b); return;
    case DType::F64: layer_norm_backward_typed<double>(grad_y, x, w, mean, rstd, grad_x, grad_w, grad_b); return;
    default: MUXNET_FAIL("layer_norm_backward (CUDA): expected a floating dtype (f32 or f64), got ", x.dtype());
  }
}

}  // namespace

void register_cuda_layernorm() {
  register_kernel<OpId::layer_norm>(Device::CUDA, layer_norm_cuda);
  register_kernel<OpId::layer_norm_backward>(Device::CUDA, layer_norm_backward_cuda);
}

}  // namespace muxnet
