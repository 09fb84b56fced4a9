// pool.cpp — 2-d max pooling forward (with the winner's index saved) and its backward.
//
// Matches torch.nn.functional.max_pool2d(x, kernel, stride, padding, return_indices=True) with
// dilation 1 and ceil_mode=False:
//   - padding positions never win (they act as -inf); the op layer requires padding <= kernel / 2, as
//     PyTorch does, so every window holds at least one real pixel;
//   - argmax is the flat index h*W + w of the winner inside its (H, W) input plane;
//   - ties go to the first position in row-major window order (a later value wins only when strictly
//     greater);
//   - NaN wins and propagates. NOTE: as in PyTorch's kernels, a NaN replaces the running maximum
//     even when that maximum is already NaN, so with several NaNs the last one is the argmax.
// The backward scatters grad_out to grad_in[argmax], summing where overlapping windows (stride <
// kernel) chose the same pixel.
//
// What this is not: average pooling, dilation or ceil_mode. Operands must be contiguous (the op layer,
// tensor/ops_conv.cpp, ensures it). Work is split over the B*C planes, which makes the backward's
// accumulation race-free and every result independent of the thread count.
#include <algorithm>
#include <limits>

#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

// The outputs o in [0, out) whose input position o*stride + offset lies inside [0, size): [lo, hi).
inline void valid_outputs(int64_t offset, int64_t stride, int64_t size, int64_t out, int64_t& lo, int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = size - 1 - offset < 0 ? 0 : (size - 1 - offset) / stride + 1;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

// One plane x: (H, W) -> out, argmax: (oh, ow).
//
// A whole output row is updated at once: for each in-image window row y and column offset j, in
// row-major window order, every output column takes x[y, ox*sw - pw + j] if it is larger (or NaN). The loop over ox has
// no branches (the compiler turns the selects into vector blends), which matters because with random
// data a per-element branch mispredicts about half the time.
template <typename T>
void max_pool_plane(const T* x, const Pool2dGeom& g, int64_t oh, int64_t ow, T* out, int64_t* argmax) {
  const int64_t H = g.height, W = g.width, sw = g.stride_w;
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t y0 = oy * g.stride_h - g.pad_h;
    const int64_t ylo = std::max<int64_t>(y0, 0), yhi = std::min(y0 + g.kernel_h, H);
    T* best = out + oy * ow;
    int64_t* best_idx = argmax + oy * ow;
    for (int64_t ox = 0; ox < ow; ++ox) {
      best[ox] = -std::numeric_limits<T>::infinity();
      best_idx[ox] = ylo * W + std::max<int64_t>(ox * sw - g.pad_w, 0);  // the first real pixel
    }
    for (int64_t y = ylo; y < yhi; ++y) {
      const T* row = x + y * W;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t off = j - g.pad_w;  // output ox reads row[ox*sw + off]
        int64_t lo, hi;
        valid_outputs(off, sw, W, ow, lo, hi);
        for (int64_t ox = lo; ox < hi; ++ox) {
          const int64_t k = ox * sw + off;
          const T v = row[k];
          const bool take = (v > best[ox]) | (v != v);  // v != v: NaN wins, see the header
          best[ox] = take ? v : best[ox];
          best_idx[ox] = take ? y * W + k : best_idx[ox];
        }
      }
    }
  }
}

// x: (B, C, H, W) contiguous -> out, argmax: (B, C, oh, ow) contiguous.
void max_pool2d_cpu(const Tensor& x, const Pool2dGeom& g, const Tensor& out, const Tensor& argmax) {
  if (out.numel() == 0) return;
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t oh = g.out_h(), ow = g.out_w();
  const int64_t plane_in = g.height * g.width, plane_out = oh * ow;
  int64_t* ap = argmax.data<int64_t>();
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    parallel_for(planes, plane_out * g.kernel_h * g.kernel_w, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        max_pool_plane(xp + p * plane_in, g, oh, ow, op + p * plane_out, ap + p * plane_out);
      }
    });
  });
}

// grad_out, argmax: (B, C, oh, ow) contiguous -> grad_in: (B, C, H, W) contiguous, overwritten.
// argmax must come from max_pool2d with the same geometry (every index inside [0, H*W)).
void max_pool2d_backward_cpu(const Tensor& grad_out, const Tensor& argmax, const Pool2dGeom& g,
                             const Tensor& grad_in) {
  if (grad_in.numel() == 0) return;
  const int64_t planes = grad_in.size(0) * grad_in.size(1);
  const int64_t plane_in = g.height * g.width, plane_out = g.out_h() * g.out_w();
  const int64_t* ap = argmax.data<int64_t>();
  dispatch_floating(grad_in.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gp = grad_out.data<T>();
    T* ip = grad_in.data<T>();
    parallel_for(planes, plane_in + plane_out, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        T* gi = ip + p * plane_in;
        const T* go = gp + p * plane_out;
        const int64_t* am = ap + p * plane_out;
        std::fill(gi, gi + plane_in, T(0));
        for (int64_t k = 0; k < plane_out; ++k) gi[am[k]] += go[k];
      }
    });
  });
}

}  // namespace

void register_cpu_pool() {
  register_kernel<OpId::max_pool2d>(Device::CPU, max_pool2d_cpu);
  register_kernel<OpId::max_pool2d_backward>(Device::CPU, max_pool2d_backward_cpu);
}

}  // namespace muxnet
