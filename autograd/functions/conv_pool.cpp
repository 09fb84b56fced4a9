// conv_pool.cpp — conv2d (im2col + GEMM) and max_pool2d, forward and backward.
//
// conv2d matches torch.nn.functional.conv2d with dilation 1 and groups 1: weight (O, C, kh, kw),
// square stride and padding. The forward unfolds x into columns (B, C*kh*kw, oh*ow), so the
// convolution is one GEMM per image, weight (O, C*kh*kw) @ cols; the backward is two GEMMs and a fold.
// max_pool2d matches torch.nn.functional.max_pool2d (ceil_mode False); the gradient goes to the
// position that won each window (the first in row-major order on ties).
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding) {
  MUXNET_CHECK(x.defined() && x.ndim() == 4, "conv2d: expected x of shape (B, C, H, W), got ",
               x.defined() ? x.shape().str() : "undefined");
  MUXNET_CHECK(weight.defined() && weight.ndim() == 4, "conv2d: expected weight of shape (O, C, kh, kw), got ",
               weight.defined() ? weight.shape().str() : "undefined");
  MUXNET_CHECK(weight.size(1) == x.size(1), "conv2d: weight ", weight.shape(), " expects ", weight.size(1),
               " input channels, x ", x.shape(), " has ", x.size(1));
  const int64_t B = x.size(0), O = weight.size(0);
  if (bias.defined()) {
    MUXNET_CHECK(bias.shape() == Shape{O}, "conv2d: bias has shape ", bias.shape(), ", expected (", O, ",)");
  }
  Conv2dGeom g;
  g.channels = x.size(1);
  g.height = x.size(2);
  g.width = x.size(3);
  g.kernel_h = weight.size(2);
  g.kernel_w = weight.size(3);
  g.stride_h = g.stride_w = stride;
  g.pad_h = g.pad_w = padding;
  const int64_t K = g.channels * g.kernel_h * g.kernel_w;

  Tensor out, cols;
  {
    NoGradGuard no_grad;
    cols = ops::im2col(x, g);                        // (B, K, P)
    Tensor w2 = weight.contiguous().view({O, K});    // (O, K)
    out = ops::matmul(w2, cols);                     // (B, O, P)
    if (bias.defined()) ops::add_(out, bias.view({1, O, 1}));
    out = out.view({B, O, g.out_h(), g.out_w()});
  }
  if (needs_grad({x, weight, bias})) {
    record(out, "conv2d", {x, weight, bias},
           [cols, w = weight.detach(), g, B, O, K, gx = x.requires_grad(), gw = weight.requires_grad(),
            gb = bias.defined() && bias.requires_grad()](const Tensor& grad) {
             // forward: out[b] = w2 @ cols[b] + bias, with cols = im2col(x)
             Tensor g3 = grad.contiguous().view({B, O, -1});  // (B, O, P)
             Tensor dx, dw, db;
             if (gw) dw = ops::sum(ops::matmul(g3, cols, false, true), {0}).view(w.shape());  // sum_b g3[b] cols[b]^T
             if (gx) dx = ops::col2im(ops::matmul(w.contiguous().view({O, K}), g3, true, false), g);  // fold(w2^T g3[b])
             if (gb) db = ops::sum(g3, {0, 2});
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return out;
}

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  MUXNET_CHECK(x.defined() && x.ndim() == 4, "max_pool2d: expected x of shape (B, C, H, W), got ",
               x.defined() ? x.shape().str() : "undefined");
  Pool2dGeom g;
  g.height = x.size(2);
  g.width = x.size(3);
  g.kernel_h = g.kernel_w = kernel;
  g.stride_h = g.stride_w = stride == 0 ? kernel : stride;
  g.pad_h = g.pad_w = padding;
  ops::MaxPoolResult r;
  {
    NoGradGuard no_grad;
    r = ops::max_pool2d(x, g);
  }
  if (needs_grad({x})) {
    record(r.out, "max_pool2d", {x}, [argmax = r.argmax, g, shape = x.shape()](const Tensor& grad) {
      // forward: out[p] = x[argmax[p]]
      return std::vector<Tensor>{ops::max_pool2d_backward(grad, argmax, g, shape)};
    });
  }
  return r.out;
}

}  // namespace muxnet
