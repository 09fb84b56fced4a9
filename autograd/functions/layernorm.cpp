// layernorm.cpp — differentiable layer_norm over the last dim (autograd/functions.h).
//
// Matches torch.nn.functional.layer_norm(x, (C,), weight, bias, eps): y = (x - mean) * rstd * w + b
// per row of the last dim, with the biased variance and rstd = 1 / sqrt(var + eps); weight and bias
// are optional (undefined tensors). The forward saves what the fused backward kernel needs: x (a
// contiguous, detached copy only when x was not contiguous already), mean and rstd.
// What this is not: normalisation over several trailing dims, or RMSNorm / BatchNorm.
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

namespace {
bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
}  // namespace

// x: (..., C); weight, bias: (C) or undefined -> (..., C)
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  MUXNET_CHECK(x.defined(), "layer_norm: x is an undefined tensor");
  Tensor xc;
  ops::LayerNormResult r;
  {
    NoGradGuard no_grad;
    // The kernel reads dense rows: the contiguous x is made once here and reused by the backward.
    xc = x.contiguous();
    r = ops::layer_norm(xc, weight, bias, eps);
  }
  if (needs_grad({x, weight, bias})) {
    record(r.y, "layer_norm", {x, weight, bias},
           [xs = xc.detach(), w = weight.defined() ? weight.detach() : Tensor(), mean = r.mean, rstd = r.rstd,
            gx = wants_grad(x), gw = wants_grad(weight), gb = wants_grad(bias)](const Tensor& g) {
             // forward: y = (x - mean) * rstd * w + b
             // NOTE: layer_norm_backward always returns a bias gradient (the row sum of g); it is
             // dropped here when the forward had no bias (gb is false then).
             ops::LayerNormGrads grads = ops::layer_norm_backward(g, xs, w, mean, rstd);
             return std::vector<Tensor>{gx ? grads.x : Tensor(), gw ? grads.weight : Tensor(),
                                        gb ? grads.bias : Tensor()};
           });
  }
  return r.y;
}

}  // namespace muxnet
