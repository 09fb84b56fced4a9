// ops_norm.cpp — the "softmax and layer norm" section of tensor/ops.h: softmax, log_softmax and their
// backward, layer_norm and layer_norm_backward. Validates shapes, dtypes and devices, makes inputs
// contiguous (the kernels work on dense rows), allocates the outputs and calls the kernels in
// tensor/cpu/softmax.cpp and tensor/cpu/layernorm.cpp.
//
// Semantics follow PyTorch: softmax / log_softmax over dim=-1 (a fully -inf row gives NaN);
// layer_norm = torch.nn.functional.layer_norm(x, (C,), weight, bias, eps) with the biased variance,
// returning the saved mean and rstd = 1 / sqrt(var + eps) as well. Floating dtypes only, and every
// tensor of one call shares x's dtype and device.
// What this is not: differentiable (autograd/ pairs each forward with its backward here).
#include "tensor/ops.h"

namespace muxnet::ops {

namespace {

Tensor softmax_impl(const char* op, const Tensor& x, bool log) {
  check_floating(op, x);
  MUXNET_CHECK(x.ndim() >= 1, op, ": expected at least 1 dim, got a 0-d tensor");
  Tensor xc = x.contiguous();
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) kernel<OpId::softmax>(x.device())(xc, out, log);
  return out;
}

Tensor softmax_backward_impl(const char* op, const Tensor& grad_out, const Tensor& y, bool log) {
  check_floating(op, y);
  MUXNET_CHECK(y.ndim() >= 1, op, ": expected at least 1 dim, got a 0-d tensor");
  check_same_device(op, grad_out, y);
  MUXNET_CHECK(grad_out.dtype() == y.dtype(), op, ": grad_out dtype ", grad_out.dtype(), " differs from y dtype ",
               y.dtype());
  MUXNET_CHECK(grad_out.shape() == y.shape(), op, ": grad_out shape ", grad_out.shape(), " differs from y shape ",
               y.shape());
  Tensor gc = grad_out.contiguous(), yc = y.contiguous();
  Tensor grad_in = empty(y.shape(), y.dtype(), y.device());
  if (grad_in.numel() > 0) kernel<OpId::softmax_backward>(y.device())(gc, yc, grad_in, log);
  return grad_in;
}

// x's shape without its last dim: the shape of mean and rstd.
Shape row_shape(const Shape& shape) {
  Shape s = shape;
  s.erase(s.ndim() - 1);
  return s;
}

// A (C) parameter of layer_norm: checks shape, dtype and device against x.
void check_param(const char* op, const char* name, const Tensor& p, const Tensor& x) {
  const int64_t cols = x.size(-1);
  MUXNET_CHECK(p.shape() == Shape{cols}, op, ": ", name, " must have shape ", Shape{cols}, " (the last dim of x ",
               x.shape(), "), got ", p.shape());
  MUXNET_CHECK(p.dtype() == x.dtype(), op, ": ", name, " dtype ", p.dtype(), " differs from x dtype ", x.dtype());
  check_same_device(op, x, p);
}

}  // namespace

Tensor softmax(const Tensor& x) { return softmax_impl("softmax", x, false); }
Tensor log_softmax(const Tensor& x) { return softmax_impl("log_softmax", x, true); }
Tensor softmax_backward(const Tensor& grad_out, const Tensor& y) {
  return softmax_backward_impl("softmax_backward", grad_out, y, false);
}
Tensor log_softmax_backward(const Tensor& grad_out, const Tensor& y) {
  return softmax_backward_impl("log_softmax_backward", grad_out, y, true);
}

// x: (..., C); weight, bias: (C) or undefined -> y: (..., C), mean, rstd: (...).
LayerNormResult layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "layer_norm";
  check_floating(op, x);
  MUXNET_CHECK(x.ndim() >= 1, op, ": expected at least 1 dim, got a 0-d tensor");
  MUXNET_CHECK(eps >= 0, op, ": eps must be non-negative, got ", eps);
  if (weight.defined()) check_param(op, "weight", weight, x);
  if (bias.defined()) check_param(op, "bias", bias, x);
  const int64_t cols = x.size(-1);
  const int64_t rows = row_shape(x.shape()).numel();
  LayerNormResult r;
  r.y = empty(x.shape(), x.dtype(), x.device());
  r.mean = empty(row_shape(x.shape()), x.dtype(), x.device());
  r.rstd = empty(row_shape(x.shape()), x.dtype(), x.device());
  if (rows == 0) return r;
  Tensor x2 = x.contiguous().view({rows, cols});
  Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  kernel<OpId::layer_norm>(x.device())(x2, w, b, eps, r.y.view({rows, cols}), r.mean.view({rows}),
                                       r.rstd.view({rows}));
  return r;
}

// grad_y, x: (..., C); weight: (C) or undefined; mean, rstd: (...) from layer_norm.
// The bias gradient is always returned (sum of grad_y over rows): this function cannot know whether
// the forward had a bias, and the caller drops it when it had none.
LayerNormGrads layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd) {
  const char* op = "layer_norm_backward";
  check_floating(op, x);
  MUXNET_CHECK(x.ndim() >= 1, op, ": expected at least 1 dim, got a 0-d tensor");
  MUXNET_CHECK(grad_y.shape() == x.shape(), op, ": grad_y shape ", grad_y.shape(), " differs from x shape ",
               x.shape());
  const Shape rs = row_shape(x.shape());
  MUXNET_CHECK(mean.shape() == rs, op, ": mean must have shape ", rs, " (x shape ", x.shape(),
               " without its last dim), got ", mean.shape());
  MUXNET_CHECK(rstd.shape() == rs, op, ": rstd must have shape ", rs, " (x shape ", x.shape(),
               " without its last dim), got ", rstd.shape());
  for (const Tensor* t : {&grad_y, &mean, &rstd}) {
    MUXNET_CHECK(t->dtype() == x.dtype(), op, ": dtype ", t->dtype(), " of ",
                 t == &grad_y ? "grad_y" : t == &mean ? "mean" : "rstd", " differs from x dtype ", x.dtype());
    check_same_device(op, x, *t);
  }
  if (weight.defined()) check_param(op, "weight", weight, x);
  const int64_t cols = x.size(-1), rows = rs.numel();
  LayerNormGrads grads;
  grads.x = empty(x.shape(), x.dtype(), x.device());
  if (weight.defined()) grads.weight = zeros(Shape{cols}, x.dtype(), x.device());
  grads.bias = zeros(Shape{cols}, x.dtype(), x.device());
  if (rows == 0) return grads;
  Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  kernel<OpId::layer_norm_backward>(x.device())(grad_y.contiguous().view({rows, cols}),
                                                x.contiguous().view({rows, cols}), w,
                                                mean.contiguous().view({rows}), rstd.contiguous().view({rows}),
                                                grads.x.view({rows, cols}), grads.weight, grads.bias);
  return grads;
}

}  // namespace muxnet::ops
