// softmax.cpp — differentiable softmax and log_softmax over any dim (the "softmax" part of
// autograd/functions.h).
//
// Matches torch.softmax(x, dim) / torch.log_softmax(x, dim): numerically stable (the row max is
// subtracted first), a row that is entirely -inf gives NaN. The raw kernels (ops::softmax,
// ops::log_softmax and their backward) work over the last dim; for another dim the input is viewed
// with that dim swapped to the end, and the result is the same swap of the kernel's output, so it
// is a non-contiguous view (no copy back). The backward uses the fused softmax_backward kernels and
// saves only the forward OUTPUT.
// What this is not: a masked or temperature softmax (compose them), or double-backward.
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

namespace {

Tensor softmax_over_dim(const char* name, const Tensor& x, int dim, bool log) {
  MUXNET_CHECK(x.defined(), name, ": got an undefined tensor");
  MUXNET_CHECK(x.ndim() >= 1, name, ": expected at least 1 dim, got a 0-d tensor");
  const int d = normalize_dim(dim, x.ndim(), name);
  const int last = x.ndim() - 1;
  Tensor y_last, out;  // y_last: x with dim d swapped to the end, normalised over its last dim
  {
    NoGradGuard no_grad;
    Tensor x_last = d == last ? x : x.transpose(d, last);
    y_last = log ? ops::log_softmax(x_last) : ops::softmax(x_last);
    out = d == last ? y_last : y_last.transpose(d, last);
  }
  if (needs_grad({x})) {
    record(out, name, {x}, [y = y_last.detach(), d, last, log](const Tensor& g) {
      // forward: y_last = (log_)softmax(x.transpose(d, last)); out = y_last.transpose(d, last)
      Tensor g_last = d == last ? g : g.transpose(d, last);
      Tensor gx = log ? ops::log_softmax_backward(g_last, y) : ops::softmax_backward(g_last, y);
      return std::vector<Tensor>{d == last ? gx : gx.transpose(d, last)};
    });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int dim) { return softmax_over_dim("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int dim) { return softmax_over_dim("log_softmax", x, dim, true); }

}  // namespace muxnet
