// dropout.cpp — differentiable dropout (autograd/functions.h).
//
// Matches torch.nn.functional.dropout(x, p, training): each element is kept with probability 1 - p
// and scaled by 1 / (1 - p), so the expectation is unchanged; with !training or p == 0 the input
// itself is returned (same tensor, no copy, no random draw); p == 1 gives zeros (and a zero
// gradient); p outside [0, 1] is an error. The keep mask is bernoulli(1 - p) drawn from `gen` (the
// default generator when null), so a fixed generator reproduces the mask exactly. The mask is drawn
// on the host (tensor/random.h) and moved to x's device.
// What this is not: in-place dropout, or a dropout that shares a mask across dims (Dropout2d).
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MUXNET_CHECK(x.defined(), "dropout: x is an undefined tensor");
  MUXNET_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got ", p);  // NaN fails too
  if (!training || p == 0.0) return x;
  ops::check_floating("dropout", x);
  Tensor out, scaled_mask;  // scaled_mask: mask / (1 - p), undefined when p == 1
  {
    NoGradGuard no_grad;
    if (p == 1.0) {
      out = zeros(x.shape(), x.dtype(), x.device());
    } else {
      Tensor mask = bernoulli(x.shape(), 1.0 - p, x.dtype(), gen, x.device());
      scaled_mask = ops::mul(mask, 1.0 / (1.0 - p));
      out = ops::mul(x, scaled_mask);
    }
  }
  if (needs_grad({x})) {
    record(out, "dropout", {x}, [scaled_mask, shape = x.shape(), dtype = x.dtype(), device = x.device()](
                                    const Tensor& g) {
      // forward: out = x * mask / (1 - p)   (out = 0 when p == 1)
      return std::vector<Tensor>{scaled_mask.defined() ? ops::mul(g, scaled_mask) : zeros(shape, dtype, device)};
    });
  }
  return out;
}

}  // namespace muxnet
