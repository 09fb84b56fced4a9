// layernorm.cpp — CPU kernels for OpId::layer_norm and OpId::layer_norm_backward over the last dim.
//
// x is viewed as (R, C) rows (contiguous; the op layer, tensor/ops_norm.cpp, ensures it). Matches
// torch.nn.functional.layer_norm with normalized_shape = (C,):
//   mean = sum(x) / C,  var = sum((x - mean)^2) / C  (biased, as PyTorch),  rstd = 1 / sqrt(var + eps),
//   y = (x - mean) * rstd * w + b   (w and b optional).
// Statistics use two passes over the row in double (for f32 too), so a large mean does not eat the
// variance; y is also formed in double and rounded once.
//
// Backward, with xhat = (x - mean) * rstd and gh = grad_y * w (or grad_y without w):
//   grad_x = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))     (written, =)
//   grad_w += sum over rows of grad_y * xhat,  grad_b += sum over rows of grad_y   (accumulated, +=)
// Rows run in parallel. grad_w / grad_b are reduced over rows through per-block partial sums: the rows
// are cut into a number of blocks that depends on R only (never on the thread count), each block sums
// its rows in order, and the blocks are added in order, so results are identical for any thread count.
// What this is not: a normalisation over several trailing dims (callers flatten them into C), nor
// RMSNorm.
#include <cmath>
#include <vector>

#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

// Row blocks for the grad_w / grad_b partial sums: at most this many (fixed, not the thread count).
constexpr int64_t kMaxRowBlocks = 64;

// x, y: (R, C); w, b: (C) or null; mean, rstd: (R).
template <typename T>
void layer_norm_rows(const T* x, const T* w, const T* b, double eps, T* y, T* mean, T* rstd, int64_t rows,
                     int64_t cols) {
  parallel_for(rows, 4 * cols, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      // NOTE: C = 0 gives 0 / 0 = NaN statistics (and an empty y), as PyTorch.
      const MeanVar st = lane_mean_var(cols, [xr](int64_t c) { return double(xr[c]); });
      const double m = st.mean, rs = 1.0 / std::sqrt(st.var + eps);
      mean[r] = T(m);
      rstd[r] = T(rs);
      if (w && b) {
        for (int64_t c = 0; c < cols; ++c) yr[c] = T((double(xr[c]) - m) * rs * double(w[c]) + double(b[c]));
      } else if (w) {
        for (int64_t c = 0; c < cols; ++c) yr[c] = T((double(xr[c]) - m) * rs * double(w[c]));
      } else if (b) {
        for (int64_t c = 0; c < cols; ++c) yr[c] = T((double(xr[c]) - m) * rs + double(b[c]));
      } else {
        for (int64_t c = 0; c < cols; ++c) yr[c] = T((double(xr[c]) - m) * rs);
      }
    }
  });
}

// The data of an optional (possibly undefined) tensor, or null.
template <typename T> T* data_or_null(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

// x, y: (R, C) contiguous; w, b: (C) contiguous or undefined; mean, rstd: (R).
void layer_norm_cpu(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                    const Tensor& mean, const Tensor& rstd) {
  const int64_t rows = x.size(0), cols = x.size(1);
  if (rows == 0) return;
  dispatch_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_rows<T>(x.data<T>(), data_or_null<T>(w), data_or_null<T>(b), eps, y.data<T>(), mean.data<T>(),
                       rstd.data<T>(), rows, cols);
  });
}

// g, x, gx: (R, C); w: (C) or null; mean, rstd: (R); gw, gb: (C) or null (accumulated).
template <typename T>
void layer_norm_backward_rows(const T* g, const T* x, const T* w, const T* mean, const T* rstd, T* gx, T* gw,
                              T* gb, int64_t rows, int64_t cols) {
  const bool param_grads = gw || gb;
  const int64_t nblocks = std::min(rows, kMaxRowBlocks);
  const int64_t block_rows = (rows + nblocks - 1) / nblocks;
  // partial_w[blk * C + c], partial_b[blk * C + c]: this block's sums over its rows.
  std::vector<double> partial_w(gw ? size_t(nblocks * cols) : 0), partial_b(gb ? size_t(nblocks * cols) : 0);

  parallel_for(nblocks, block_rows * cols * 8, [&](int64_t bb, int64_t be) {
    std::vector<double> xhat(static_cast<size_t>(cols)), gh(static_cast<size_t>(cols));
    for (int64_t blk = bb; blk < be; ++blk) {
      double* pw = gw ? partial_w.data() + blk * cols : nullptr;
      double* pb = gb ? partial_b.data() + blk * cols : nullptr;
      const int64_t r1 = std::min(rows, (blk + 1) * block_rows);
      for (int64_t r = blk * block_rows; r < r1; ++r) {
        const T* gr = g + r * cols;
        const T* xr = x + r * cols;
        T* gxr = gx + r * cols;
        // NOTE: the saved mean is in T; for f32 inputs with |mean| >> std its rounding limits xhat.
        const double m = double(mean[r]), rs = double(rstd[r]);
        for (int64_t c = 0; c < cols; ++c) xhat[size_t(c)] = (double(xr[c]) - m) * rs;
        if (w) {
          for (int64_t c = 0; c < cols; ++c) gh[size_t(c)] = double(gr[c]) * double(w[c]);
        } else {
          for (int64_t c = 0; c < cols; ++c) gh[size_t(c)] = double(gr[c]);
        }
        const double* xh = xhat.data();
        const double* ghp = gh.data();
        const double mean_gh = lane_sum(cols, [ghp](int64_t c) { return ghp[c]; }) / double(cols);
        const double mean_ghx = lane_sum(cols, [ghp, xh](int64_t c) { return ghp[c] * xh[c]; }) / double(cols);
        // in the forward pass: y = xhat * w + b with xhat = (x - mean) * rstd.
        for (int64_t c = 0; c < cols; ++c) gxr[c] = T(rs * (ghp[c] - mean_gh - xh[c] * mean_ghx));
        if (pw) {
          for (int64_t c = 0; c < cols; ++c) pw[c] += double(gr[c]) * xh[c];
        }
        if (pb) {
          for (int64_t c = 0; c < cols; ++c) pb[c] += double(gr[c]);
        }
      }
    }
  });
  if (!param_grads) return;
  // Blocks are added in order: the result does not depend on which thread summed which block.
  parallel_for(cols, nblocks * 2, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      if (gw) {
        double s = 0.0;
        for (int64_t blk = 0; blk < nblocks; ++blk) s += partial_w[size_t(blk * cols + c)];
        gw[c] = T(double(gw[c]) + s);
      }
      if (gb) {
        double s = 0.0;
        for (int64_t blk = 0; blk < nblocks; ++blk) s += partial_b[size_t(blk * cols + c)];
        gb[c] = T(double(gb[c]) + s);
      }
    }
  });
}

// grad_y, x, grad_x: (R, C) contiguous; w: (C) or undefined; mean, rstd: (R);
// grad_w, grad_b: (C) or undefined, accumulated into.
void layer_norm_backward_cpu(const Tensor& grad_y, const Tensor& x, const Tensor& w, const Tensor& mean,
                             const Tensor& rstd, const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b) {
  const int64_t rows = x.size(0), cols = x.size(1);
  if (rows == 0 || cols == 0) return;
  dispatch_floating(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_backward_rows<T>(grad_y.data<T>(), x.data<T>(), data_or_null<T>(w), mean.data<T>(), rstd.data<T>(),
                                grad_x.data<T>(), data_or_null<T>(grad_w), data_or_null<T>(grad_b),
                                rows, cols);
  });
}

}  // namespace

void register_cpu_layernorm() {
  register_kernel<OpId::layer_norm>(Device::CPU, layer_norm_cpu);
  register_kernel<OpId::layer_norm_backward>(Device::CPU, layer_norm_backward_cpu);
}

}  // namespace muxnet
