// ops_conv.cpp — the eager convolution helpers (im2col, col2im) and 2-d max pooling: validation,
// allocation, dispatch.
//
// im2col matches torch.nn.functional.unfold (with a batch of planes laid out as (B, C*kh*kw, oh*ow),
// rows ordered c, i, j as PyTorch's Conv2d weight (O, C, kh, kw)); col2im matches fold. max_pool2d
// matches torch.nn.functional.max_pool2d(..., return_indices=True) with dilation 1, ceil_mode=False.
// The kernels are in tensor/cpu/conv.cpp and tensor/cpu/pool.cpp; see their headers for the details.
//
// What this is not: conv2d itself (im2col + matmul, composed in autograd/) nor the autograd wiring.
// Output sizes follow floor((size + 2*pad - kernel) / stride) + 1.
#include <sstream>
#include <string>

#include "tensor/ops.h"

namespace muxnet::ops {

namespace {

// "5x5", or "1x2" for a non-square pair.
std::string pair_str(int64_t a, int64_t b) {
  std::ostringstream os;
  os << a << "x" << b;
  return os.str();
}

// "0" when both paddings are equal, "1x2" otherwise.
std::string pad_str(int64_t ph, int64_t pw) { return ph == pw ? std::to_string(ph) : pair_str(ph, pw); }

// Kernel, stride and padding are sane and the kernel fits the padded image (output size >= 1).
void check_window(const char* op, int64_t height, int64_t width, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                  int64_t ph, int64_t pw) {
  MUXNET_CHECK(kh >= 1 && kw >= 1, op, ": kernel size must be >= 1, got ", pair_str(kh, kw));
  MUXNET_CHECK(sh >= 1 && sw >= 1, op, ": stride must be >= 1, got ", pair_str(sh, sw));
  MUXNET_CHECK(ph >= 0 && pw >= 0, op, ": padding must be >= 0, got ", pair_str(ph, pw));
  MUXNET_CHECK(height >= 0 && width >= 0, op, ": image size must be >= 0, got ", pair_str(height, width));
  // NOTE: checked directly rather than through out_h() >= 1: C++ division truncates toward zero, so
  // (3 - 4) / 2 + 1 would claim one output row for a kernel that does not fit.
  MUXNET_CHECK(height + 2 * ph >= kh && width + 2 * pw >= kw, op, ": kernel ", pair_str(kh, kw),
               " with padding ", pad_str(ph, pw), " does not fit a ", pair_str(height, width), " input");
}

void check_conv_geom(const char* op, const Conv2dGeom& g) {
  MUXNET_CHECK(g.channels >= 0, op, ": geometry has a negative channel count ", g.channels);
  check_window(op, g.height, g.width, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w);
}

void check_pool_geom(const char* op, const Pool2dGeom& g) {
  check_window(op, g.height, g.width, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w);
  // As PyTorch: larger padding could make a window of padding only, which has no maximum to pick.
  MUXNET_CHECK(2 * g.pad_h <= g.kernel_h && 2 * g.pad_w <= g.kernel_w, op, ": padding ", pad_str(g.pad_h, g.pad_w),
               " must be at most half the kernel size ", pair_str(g.kernel_h, g.kernel_w));
}

void check_4d(const char* op, const char* name, const Tensor& t) {
  MUXNET_CHECK(t.defined(), op, ": ", name, " is an undefined tensor");
  MUXNET_CHECK(t.ndim() == 4, op, ": expected ", name, " of shape (B, C, H, W), got ", t.shape());
}

}  // namespace

// x: (B, C, H, W) -> cols: (B, C*kh*kw, oh*ow)
Tensor im2col(const Tensor& x, const Conv2dGeom& g) {
  check_4d("im2col", "x", x);
  check_floating("im2col", x);
  check_conv_geom("im2col", g);
  MUXNET_CHECK(x.size(1) == g.channels && x.size(2) == g.height && x.size(3) == g.width,
               "im2col: geometry is for (C, H, W) = ", Shape{g.channels, g.height, g.width}, ", got x of shape ",
               x.shape());
  Tensor xc = x.contiguous();
  Tensor cols = empty({x.size(0), g.channels * g.kernel_h * g.kernel_w, g.out_h() * g.out_w()}, x.dtype(),
                      x.device());
  kernel<OpId::im2col>(x.device())(xc, g, cols);
  return cols;
}

// cols: (B, C*kh*kw, oh*ow) -> x: (B, C, H, W)
Tensor col2im(const Tensor& cols, const Conv2dGeom& g) {
  MUXNET_CHECK(cols.defined(), "col2im: cols is an undefined tensor");
  check_floating("col2im", cols);
  check_conv_geom("col2im", g);
  MUXNET_CHECK(cols.ndim() == 3, "col2im: expected cols of shape (B, C*kh*kw, oh*ow), got ", cols.shape());
  const Shape want{cols.size(0), g.channels * g.kernel_h * g.kernel_w, g.out_h() * g.out_w()};
  MUXNET_CHECK(cols.shape() == want, "col2im: expected cols of shape ", want, " for C=", g.channels, ", kernel ",
               pair_str(g.kernel_h, g.kernel_w), " and a ", pair_str(g.out_h(), g.out_w()), " output, got ",
               cols.shape());
  Tensor cc = cols.contiguous();
  Tensor x = empty({cols.size(0), g.channels, g.height, g.width}, cols.dtype(), cols.device());
  kernel<OpId::col2im>(cols.device())(cc, g, x);
  return x;
}

// x: (B, C, H, W) -> out, argmax: (B, C, oh, ow)
MaxPoolResult max_pool2d(const Tensor& x, const Pool2dGeom& g) {
  check_4d("max_pool2d", "x", x);
  check_floating("max_pool2d", x);
  check_pool_geom("max_pool2d", g);
  MUXNET_CHECK(x.size(2) == g.height && x.size(3) == g.width, "max_pool2d: geometry is for a ",
               pair_str(g.height, g.width), " input, got x of shape ", x.shape());
  Tensor xc = x.contiguous();
  const Shape out_shape{x.size(0), x.size(1), g.out_h(), g.out_w()};
  MaxPoolResult r{empty(out_shape, x.dtype(), x.device()), empty(out_shape, DType::I64, x.device())};
  kernel<OpId::max_pool2d>(x.device())(xc, g, r.out, r.argmax);
  return r;
}

// grad_out, argmax: (B, C, oh, ow) -> grad_in: input_shape = (B, C, H, W)
// argmax must come from max_pool2d with this geometry: its values are trusted (not range-checked, so
// that the backward costs no extra pass; an index outside [0, H*W) would write outside the plane).
Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& argmax, const Pool2dGeom& g,
                           const Shape& input_shape) {
  const char* op = "max_pool2d_backward";
  check_4d(op, "grad_out", grad_out);
  check_4d(op, "argmax", argmax);
  check_floating(op, grad_out);
  MUXNET_CHECK(argmax.dtype() == DType::I64, op, ": expected argmax of dtype i64, got ", argmax.dtype());
  check_same_device(op, grad_out, argmax);
  check_pool_geom(op, g);
  MUXNET_CHECK(input_shape.ndim() == 4 && input_shape[2] == g.height && input_shape[3] == g.width, op,
               ": input shape ", input_shape, " does not match the geometry's ", pair_str(g.height, g.width),
               " input");
  MUXNET_CHECK(input_shape[0] >= 0 && input_shape[1] >= 0, op, ": negative size in input shape ", input_shape);
  const Shape out_shape{input_shape[0], input_shape[1], g.out_h(), g.out_w()};
  MUXNET_CHECK(grad_out.shape() == out_shape, op, ": expected grad_out of shape ", out_shape, ", got ",
               grad_out.shape());
  MUXNET_CHECK(argmax.shape() == out_shape, op, ": expected argmax of shape ", out_shape, ", got ",
               argmax.shape());
  Tensor gc = grad_out.contiguous(), ac = argmax.contiguous();
  Tensor grad_in = empty(input_shape, grad_out.dtype(), grad_out.device());
  kernel<OpId::max_pool2d_backward>(grad_out.device())(gc, ac, g, grad_in);
  return grad_in;
}

}  // namespace muxnet::ops
