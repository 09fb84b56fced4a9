// conv.cu — CUDA im2col and col2im, the data movement that turns a 2-d convolution into a matmul.
// The oracle is tensor/cpu/conv.cpp; the layout is the same (PyTorch's unfold / fold):
//
//     cols[b, c*kh*kw + i*kw + j, oy*ow + ox] = x[b, c, oy*sh - ph + i, ox*sw - pw + j]   (0 outside x)
//
// im2col: one thread per element of cols, which reads its one pixel (or writes 0 for padding).
// col2im (the adjoint): one thread per pixel of x, which sums every element of cols that was read
// from it. Each pixel is owned by one thread, so there are no atomics, x needs no zeroing first (it is
// overwritten), and the result is deterministic. The thread adds its terms in the CPU's order (kernel
// row i, then kernel column j, both ascending, starting from 0), so the sums match the CPU bit for bit.
//
// Operands are contiguous (tensor/ops_conv.cpp ensures it) and floating (f32, f64), as on the CPU.
// Index math is int64: B*C*kh*kw*oh*ow can exceed 2^31.
#include <cstdint>

#include "cuda/common.cuh"
#include "tensor/dtype_dispatch.h"

namespace muxnet {

namespace {

// The geometry as plain int64 scalars, passed by value to the kernels.
struct ConvDims {
  int64_t H, W, kh, kw, sh, sw, ph, pw, oh, ow;
};

// x: (P, H, W) with P = B*C planes -> cols: (P, kh*kw, oh*ow), i.e. (B, C*kh*kw, oh*ow);
// t = ((p*kh + i)*kw + j)*(oh*ow) + oy*ow + ox.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols, int64_t total, ConvDims g) {
  MUXNET_GRID_STRIDE(t, total) {
    int64_t r = t;
    const int64_t ox = r % g.ow;
    r /= g.ow;
    const int64_t oy = r % g.oh;
    r /= g.oh;
    const int64_t j = r % g.kw;
    r /= g.kw;
    const int64_t i = r % g.kh;
    const int64_t p = r / g.kh;
    const int64_t y = oy * g.sh - g.ph + i, xx = ox * g.sw - g.pw + j;
    const bool inside = y >= 0 && y < g.H && xx >= 0 && xx < g.W;
    cols[t] = inside ? x[(p * g.H + y) * g.W + xx] : T(0);
  }
}

// cols: (P, kh*kw, oh*ow) -> x: (P, H, W) overwritten; t = (p*H + y)*W + xx.
// Output row oy reads input row y through kernel row i = y + ph - oy*sh, which must lie in [0, kh):
// oy in [oy_lo, oy_hi). Columns likewise. Looping oy (and ox) downwards makes i (and j) ascend,
// which is the CPU's summation order.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ cols, T* __restrict__ x, int64_t total, ConvDims g) {
  const int64_t L = g.oh * g.ow;
  MUXNET_GRID_STRIDE(t, total) {
    const int64_t xx = t % g.W, r = t / g.W;
    const int64_t y = r % g.H, p = r / g.H;
    const int64_t yp = y + g.ph, xp = xx + g.pw;  // >= 0: positions in the padded image
    // i = yp - oy*sh < kh  <=>  oy > (yp - kh) / sh;  i >= 0  <=>  oy <= yp / sh.
    const int64_t oy_lo = yp < g.kh ? 0 : (yp - g.kh) / g.sh + 1;
    const int64_t oy_hi = yp / g.sh + 1 < g.oh ? yp / g.sh + 1 : g.oh;
    const int64_t ox_lo = xp < g.kw ? 0 : (xp - g.kw) / g.sw + 1;
    const int64_t ox_hi = xp / g.sw + 1 < g.ow ? xp / g.sw + 1 : g.ow;
    const T* plane = cols + p * g.kh * g.kw * L;
    T sum = T(0);
    for (int64_t oy = oy_hi - 1; oy >= oy_lo; --oy) {
      const int64_t i = yp - oy * g.sh;
      for (int64_t ox = ox_hi - 1; ox >= ox_lo; --ox) {
        const int64_t j = xp - ox * g.sw;
        sum += plane[(i * g.kw + j) * L + oy * g.ow + ox];
      }
    }
    x[t] = sum;
  }
}

// ---------------------------------------------------------------- launchers

ConvDims conv_dims(const Conv2dGeom& g) {
  return {g.height, g.width, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.out_h(), g.out_w()};
}

// x: (B, C, H, W) contiguous -> cols: (B, C*kh*kw, oh*ow) contiguous.
void im2col_cuda(const Tensor& x, const Conv2dGeom& g, const Tensor& cols) {
  const int64_t total = cols.numel();
  if (total == 0) return;
  dispatch_floating(x.dtype(), "im2col", [&](auto tag) {
    using T = typename decltype(tag)::type;
    im2col_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(x.data<T>(), cols.data<T>(),
                                                                                 total, conv_dims(g));
    CUDA_CHECK_LAUNCH("im2col_kernel");
  });
}

// cols: (B, C*kh*kw, oh*ow) contiguous -> x: (B, C, H, W) contiguous, overwritten.
void col2im_cuda(const Tensor& cols, const Conv2dGeom& g, const Tensor& x) {
  const int64_t total = x.numel();
  if (total == 0) return;
  dispatch_floating(x.dtype(), "col2im", [&](auto tag) {
    using T = typename decltype(tag)::type;
    col2im_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(cols.data<T>(), x.data<T>(),
                                                                                 total, conv_dims(g));
    CUDA_CHECK_LAUNCH("col2im_kernel");
  });
}

}  // namespace

void register_cuda_conv() {
  register_kernel<OpId::im2col>(Device::CUDA, im2col_cuda);
  register_kernel<OpId::col2im>(Device::CUDA, col2im_cuda);
}

}  // namespace muxnet
