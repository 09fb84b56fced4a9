// conv.cpp — im2col and col2im: the data movement that turns a 2-d convolution into a matrix product.
//
// im2col lays out every receptive field of x: (B, C, H, W) as one column of cols: (B, C*kh*kw, oh*ow):
//
//     cols[b, c*kh*kw + i*kw + j, oy*ow + ox] = x[b, c, oy*sh - ph + i, ox*sw - pw + j]   (0 outside x)
//
// so that conv2d(x, weight) = weight.view(O, C*kh*kw) @ cols[b], the layout of PyTorch's Conv2d weight
// (O, C, kh, kw) and of torch.nn.functional.unfold. col2im is its adjoint (torch.nn.functional.fold):
// x = 0, then every element of cols is added back to the pixel it was read from, so pixels covered by
// several receptive fields receive the sum.
//
// What this is not: a convolution (the product is matmul's job, in autograd/), and not dilated or
// grouped. Both kernels need contiguous operands (the op layer, tensor/ops_conv.cpp, ensures it).
//
// Work is split over the B*C input planes: plane (b, c) owns rows c*kh*kw .. (c+1)*kh*kw - 1 of
// cols[b], so both directions are race-free and every output element is computed by one thread in a
// fixed order (results do not depend on the thread count).
#include <algorithm>

#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

// The outputs o in [0, out) whose input position o*stride + offset lies inside [0, size): [lo, hi).
// Used for rows (offset i - ph) and columns (offset j - pw); outside it a receptive field reads padding.
struct ValidRange {
  int64_t lo, hi;
};
inline ValidRange valid_outputs(int64_t offset, int64_t stride, int64_t size, int64_t out) {
  // want 0 <= ox*stride + offset < size, i.e. ox >= ceil(-offset / stride), ox <= (size - 1 - offset) / stride
  int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t hi = size - 1 - offset < 0 ? 0 : (size - 1 - offset) / stride + 1;
  lo = std::min(lo, out);
  hi = std::min(hi, out);
  if (hi < lo) hi = lo;
  return {lo, hi};
}

// One input plane x: (H, W) -> its kh*kw rows of cols, each (oh*ow).
template <typename T>
void im2col_plane(const T* x, const Conv2dGeom& g, int64_t oh, int64_t ow, T* cols) {
  const int64_t H = g.height, W = g.width, L = oh * ow, sh = g.stride_h, sw = g.stride_w;
  for (int64_t i = 0; i < g.kernel_h; ++i) {
    const int64_t yoff = i - g.pad_h;  // output row oy reads input row oy*sh + yoff
    const ValidRange vy = valid_outputs(yoff, sh, H, oh);
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      T* row = cols + (i * g.kernel_w + j) * L;
      const int64_t xoff = j - g.pad_w;  // output column ox reads input column ox*sw + xoff
      const ValidRange vx = valid_outputs(xoff, sw, W, ow);
      // Output rows that read the top / bottom padding are zero.
      std::fill(row, row + vy.lo * ow, T(0));
      std::fill(row + vy.hi * ow, row + L, T(0));
      if (vx.lo == 0 && vx.hi == ow && sw == 1) {
        // The common case (no horizontal padding, stride 1): plain row copies, no per-row branches.
        // NOTE: a loop rather than memcpy: rows are short (ow = 4..16 in the paper's CNN) and a
        // library call per row costs more than the copy.
        for (int64_t oy = vy.lo; oy < vy.hi; ++oy) {
          const T* src = x + (oy * sh + yoff) * W + xoff;
          T* dst = row + oy * ow;
          for (int64_t ox = 0; ox < ow; ++ox) dst[ox] = src[ox];
        }
        continue;
      }
      for (int64_t oy = vy.lo; oy < vy.hi; ++oy) {
        const T* src = x + (oy * sh + yoff) * W;  // src[ox*sw + xoff] is x[oy*sh - ph + i, ox*sw - pw + j]
        T* dst = row + oy * ow;
        std::fill(dst, dst + vx.lo, T(0));
        for (int64_t ox = vx.lo; ox < vx.hi; ++ox) dst[ox] = src[ox * sw + xoff];
        std::fill(dst + vx.hi, dst + ow, T(0));
      }
    }
  }
}

// The adjoint for one plane: x: (H, W) = sum over the plane's kh*kw rows of cols scattered back.
template <typename T>
void col2im_plane(const T* cols, const Conv2dGeom& g, int64_t oh, int64_t ow, T* x) {
  const int64_t H = g.height, W = g.width, L = oh * ow, sh = g.stride_h, sw = g.stride_w;
  std::fill(x, x + H * W, T(0));
  for (int64_t i = 0; i < g.kernel_h; ++i) {
    const int64_t yoff = i - g.pad_h;
    // Output rows outside vy read the zero padding: they have nothing to give back.
    const ValidRange vy = valid_outputs(yoff, sh, H, oh);
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      const T* row = cols + (i * g.kernel_w + j) * L;
      const int64_t xoff = j - g.pad_w;
      const ValidRange vx = valid_outputs(xoff, sw, W, ow);
      const int64_t n = vx.hi - vx.lo;
      if (n == 0) continue;  // every column of this row reads the side padding
      for (int64_t oy = vy.lo; oy < vy.hi; ++oy) {
        const T* src = row + oy * ow + vx.lo;
        T* dst = x + (oy * sh + yoff) * W + vx.lo * sw + xoff;  // x[oy*sh - ph + i, lo*sw - pw + j]
        if (sw == 1) {
          for (int64_t k = 0; k < n; ++k) dst[k] += src[k];
        } else {
          for (int64_t k = 0; k < n; ++k) dst[k * sw] += src[k];
        }
      }
    }
  }
}

// x: (B, C, H, W) contiguous -> cols: (B, C*kh*kw, oh*ow) contiguous.
void im2col_cpu(const Tensor& x, const Conv2dGeom& g, const Tensor& cols) {
  if (cols.numel() == 0) return;
  const int64_t planes = x.size(0) * g.channels;
  const int64_t oh = g.out_h(), ow = g.out_w();
  const int64_t plane_in = g.height * g.width, plane_out = g.kernel_h * g.kernel_w * oh * ow;
  dispatch_floating(x.dtype(), "im2col", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* cp = cols.data<T>();
    parallel_for(planes, plane_out, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) im2col_plane(xp + p * plane_in, g, oh, ow, cp + p * plane_out);
    });
  });
}

// cols: (B, C*kh*kw, oh*ow) contiguous -> x: (B, C, H, W) contiguous, overwritten.
void col2im_cpu(const Tensor& cols, const Conv2dGeom& g, const Tensor& x) {
  if (x.numel() == 0) return;
  const int64_t planes = x.size(0) * g.channels;
  const int64_t oh = g.out_h(), ow = g.out_w();
  const int64_t plane_in = g.height * g.width, plane_out = g.kernel_h * g.kernel_w * oh * ow;
  dispatch_floating(x.dtype(), "col2im", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* cp = cols.data<T>();
    T* xp = x.data<T>();
    parallel_for(planes, plane_out + plane_in, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) col2im_plane(cp + p * plane_out, g, oh, ow, xp + p * plane_in);
    });
  });
}

}  // namespace

void register_cpu_conv() {
  register_kernel<OpId::im2col>(Device::CPU, im2col_cpu);
  register_kernel<OpId::col2im>(Device::CPU, col2im_cpu);
}

}  // namespace muxnet
