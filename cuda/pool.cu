// pool.cu — CUDA 2-d max pooling forward (with the winner's index saved) and its backward.
// The oracle is tensor/cpu/pool.cpp; the semantics are the same (PyTorch's max_pool2d with
// return_indices, dilation 1, ceil_mode off):
//   - padding positions never win: a window scans only its in-image pixels (the op layer keeps the
//     padding at most half the kernel, so there is at least one);
//   - argmax (i64) is the flat index y*W + x of the winner inside its (H, W) input plane;
//   - the scan is row-major over the window and a value replaces the running maximum only when it is
//     strictly greater, so ties go to the first position; NaN always replaces it (NaN propagates; with
//     several NaNs the last one is the argmax, as on the CPU);
//   - a window whose pixels are all -inf keeps the CPU's starting index, its first in-image pixel.
// The backward zeroes grad_in and adds grad_out[k] to grad_in[argmax[k]] with atomics, since
// overlapping windows (stride < kernel) may pick the same pixel. NOTE: so f32 / f64 sums of three or
// more contributions to one pixel may differ from the CPU's (in-order) sum in the last bits.
//
// Operands are contiguous (tensor/ops_conv.cpp ensures it) and floating (f32, f64), as on the CPU.
// One thread per output element, grid-stride, int64 index math.
#include <cmath>
#include <cstdint>

#include "cuda/common.cuh"
#include "tensor/dtype_dispatch.h"

namespace muxnet {

namespace {

// The geometry as plain int64 scalars, passed by value to the kernels.
struct PoolDims {
  int64_t H, W, kh, kw, sh, sw, ph, pw, oh, ow;
};

// x: (P, H, W) with P = B*C planes -> out, argmax: (P, oh, ow); t = (p*oh + oy)*ow + ox.
template <typename T>
__global__ void max_pool2d_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t* __restrict__ argmax,
                                  int64_t total, PoolDims g) {
  MUXNET_GRID_STRIDE(t, total) {
    const int64_t ox = t % g.ow, r = t / g.ow;
    const int64_t oy = r % g.oh, p = r / g.oh;
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;  // window origin, may be in the padding
    const int64_t ylo = y0 > 0 ? y0 : 0, yhi = y0 + g.kh < g.H ? y0 + g.kh : g.H;
    const int64_t xlo = x0 > 0 ? x0 : 0, xhi = x0 + g.kw < g.W ? x0 + g.kw : g.W;
    const T* plane = x + p * g.H * g.W;
    T best = T(-INFINITY);
    int64_t best_idx = ylo * g.W + xlo;  // the first real pixel, as the CPU starts
    for (int64_t y = ylo; y < yhi; ++y) {
      for (int64_t xx = xlo; xx < xhi; ++xx) {
        const T v = plane[y * g.W + xx];
        if (v > best || v != v) {  // v != v: NaN wins, see the header
          best = v;
          best_idx = y * g.W + xx;
        }
      }
    }
    out[t] = best;
    argmax[t] = best_idx;
  }
}

// grad_out, argmax: (P, oh, ow) -> grad_in: (P, H, W), zeroed beforehand; t = p*plane_out + k.
template <typename T>
__global__ void max_pool2d_backward_kernel(const T* __restrict__ grad_out, const int64_t* __restrict__ argmax,
                                           T* __restrict__ grad_in, int64_t total, int64_t plane_out,
                                           int64_t plane_in) {
  MUXNET_GRID_STRIDE(t, total) {
    const int64_t p = t / plane_out;
    atomicAdd(grad_in + p * plane_in + argmax[t], grad_out[t]);
  }
}

// ---------------------------------------------------------------- launchers

PoolDims pool_dims(const Pool2dGeom& g) {
  return {g.height, g.width, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.out_h(), g.out_w()};
}

// x: (B, C, H, W) contiguous -> out, argmax: (B, C, oh, ow) contiguous.
void max_pool2d_cuda(const Tensor& x, const Pool2dGeom& g, const Tensor& out, const Tensor& argmax) {
  const int64_t total = out.numel();
  if (total == 0) return;
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        x.data<T>(), out.data<T>(), argmax.data<int64_t>(), total, pool_dims(g));
    CUDA_CHECK_LAUNCH("max_pool2d_kernel");
  });
}

// grad_out, argmax: (B, C, oh, ow) contiguous -> grad_in: (B, C, H, W) contiguous, overwritten.
// argmax must come from max_pool2d with the same geometry (every index inside [0, H*W)).
void max_pool2d_backward_cuda(const Tensor& grad_out, const Tensor& argmax, const Pool2dGeom& g,
                              const Tensor& grad_in) {
  if (grad_in.numel() == 0) return;
  const int64_t total = grad_out.numel();
  const int64_t plane_in = g.height * g.width, plane_out = g.out_h() * g.out_w();
  dispatch_floating(grad_in.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* gi = grad_in.data<T>();
    // All-zero bits are 0.0 for f32 and f64.
    CUDA_CHECK(cudaMemsetAsync(gi, 0, size_t(grad_in.numel()) * sizeof(T), cuda::stream()));
    if (total == 0) return;
    max_pool2d_backward_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream()>>>(
        grad_out.data<T>(), argmax.data<int64_t>(), gi, total, plane_out, plane_in);
    CUDA_CHECK_LAUNCH("max_pool2d_backward_kernel");
  });
}

}  // namespace

void register_cuda_pool() {
  register_kernel<OpId::max_pool2d>(Device::CUDA, max_pool2d_cuda);
  register_kernel<OpId::max_pool2d_backward>(Device::CUDA, max_pool2d_backward_cuda);
}

}  // namespace muxnet
