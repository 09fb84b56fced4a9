// softmax.cpp — CPU kernels for OpId::softmax (softmax and log_softmax over the last dim) and
// OpId::softmax_backward.
//
// Inputs and outputs are contiguous (the op layer, tensor/ops_norm.cpp, ensures it) and viewed as
// rows of C = last-dim elements; rows run in parallel, each row on one thread, so results do not
// depend on the thread count. Row sums accumulate in double (for f32 too), with a fixed number of
// independent lanes so the loops vectorise with a fixed summation order.
//
// Semantics (PyTorch's torch.softmax / log_softmax, dim=-1):
//   - numerically stable: the row max m is subtracted first, y = exp(x - m) / sum exp(x - m), and
//     log_softmax = (x - m) - log(sum exp(x - m)). Rows like [1000, 1001, 1002] give the same result
//     as [0, 1, 2].
//   - -inf entries (masked attention logits) get probability 0 (log-probability -inf).
//   - a row that is all -inf gives NaN everywhere, as in PyTorch: m = -inf and -inf - (-inf) = NaN.
//     A NaN anywhere in a row makes the whole row NaN.
//   - backward, from y = the forward output: softmax gx = y * (g - sum(g * y));
//     log_softmax gx = g - exp(y) * sum(g).
// What this is not: a softmax over another dim (the op layer would permute), nor a fused
// cross-entropy.
#include <cmath>
#include <limits>

#include "tensor/cpu/kernels.h"
#include "tensor/cpu/vec_math.h"

namespace muxnet {

namespace {

constexpr int kLanes = 8;  // independent lanes of row_max

// v[i] = exp(v[i]) for a row: the vectorised exp of tensor/cpu/vec_math.h for f32 (max error 1 ulp),
// std::exp for f64 (the exact path gradient checks rely on).
inline void exp_inplace(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = vm::exp(v[i]);
}
inline void exp_inplace(double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = std::exp(v[i]);
}

// max over a row in kLanes independent lanes, so the compiler can vectorise it (a single running
// max is a serial dependency chain). NaN never wins a comparison; a row holding NaN still ends up
// NaN because exp(NaN - m) is NaN.
template <typename T>
T row_max(const T* x, int64_t n) {
  T lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) lanes[k] = x[i + k] > lanes[k] ? x[i + k] : lanes[k];
  }
  for (; i < n; ++i) lanes[0] = x[i] > lanes[0] ? x[i] : lanes[0];
  T m = lanes[0];
  for (int k = 1; k < kLanes; ++k) m = lanes[k] > m ? lanes[k] : m;
  return m;
}

// x, y: (R, C) contiguous.
template <typename T>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, 4 * cols, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const T m = row_max(xr, cols);
      // NOTE: when m = -inf (a fully masked row) x - m is NaN, so the row becomes NaN like PyTorch.
      for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] - m;
      exp_inplace(yr, cols);
      const double s = lane_sum(cols, [yr](int64_t c) { return double(yr[c]); });  // row sum in f64
      if (log) {
        const double log_s = std::log(s);
        for (int64_t c = 0; c < cols; ++c) yr[c] = T(double(xr[c] - m) - log_s);
      } else {
        // One rounding of 1/s to T, then one product: at most 1 ulp more than dividing in f64.
        const T inv = T(1.0 / s);
        for (int64_t c = 0; c < cols; ++c) yr[c] *= inv;
      }
    }
  });
}

// x, out: same shape, contiguous; rows over the last dim.
void softmax_cpu(const Tensor& x, const Tensor& out, bool log) {
  if (x.numel() == 0) return;
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  dispatch_floating(x.dtype(), log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_rows<T>(x.data<T>(), out.data<T>(), rows, cols, log);
  });
}

// g, y, gx: (R, C) contiguous.
template <typename T>
void softmax_backward_rows(const T* g, const T* y, T* gx, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, 4 * cols, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* gr = g + r * cols;
      const T* yr = y + r * cols;
      T* gxr = gx + r * cols;
      if (log) {
        // in the forward pass: y = x - m - log(sum exp(x - m)), so softmax(x) = exp(y).
        const double s = lane_sum(cols, [gr](int64_t c) { return double(gr[c]); });
        for (int64_t c = 0; c < cols; ++c) gxr[c] = yr[c];
        exp_inplace(gxr, cols);
        for (int64_t c = 0; c < cols; ++c) gxr[c] = T(double(gr[c]) - double(gxr[c]) * s);
      } else {
        // in the forward pass: y = exp(x - m) / sum exp(x - m); dy_i/dx_j = y_i (delta_ij - y_j).
        const double dot = lane_sum(cols, [gr, yr](int64_t c) { return double(gr[c]) * double(yr[c]); });
        for (int64_t c = 0; c < cols; ++c) gxr[c] = T(double(yr[c]) * (double(gr[c]) - dot));
      }
    }
  });
}

// grad_out, y, grad_in: same shape, contiguous.
void softmax_backward_cpu(const Tensor& grad_out, const Tensor& y, const Tensor& grad_in, bool log) {
  if (y.numel() == 0) return;
  const int64_t cols = y.size(-1), rows = y.numel() / cols;
  dispatch_floating(y.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_backward_rows<T>(grad_out.data<T>(), y.data<T>(), grad_in.data<T>(), rows, cols, log);
  });
}

}  // namespace

void register_cpu_softmax() {
  register_kernel<OpId::softmax>(Device::CPU, softmax_cpu);
  register_kernel<OpId::softmax_backward>(Device::CPU, softmax_backward_cpu);
}

}  // namespace muxnet
