// attention.cpp — differentiable scaled dot-product attention, one recorded function with a fused
// backward (autograd/functions.h).
//
// Matches torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p) with a key
// padding mask: out = dropout(softmax(q k^T / sqrt(dh), with -inf at padded keys)) v.
//   q: (B, H, Tq, dh), k: (B, H, Tk, dh), v: (B, H, Tk, dv) -> out: (B, H, Tq, dv)
//   key_padding_mask: (B, Tk), nonzero = padded key (its score becomes -inf), or undefined.
// Dropout (training and dropout_p > 0) zeroes attention probabilities with probability dropout_p and
// scales the rest by 1 / (1 - dropout_p); the keep mask is drawn from `gen` (the default generator when
// null) on the host and moved to q's device. dropout_p == 1 gives zeros.
// NOTE: a query whose keys are ALL padded has a softmax row of -inf only, which gives NaN (0 / 0), as
// in PyTorch's math implementation; the NaN reaches that query's output and, in the backward, the
// gradients of q, k and v of that (batch, head). Mask at least one key per sequence.
//
// The forward is written with raw ops (matmul with transpose flags and alpha, masked_fill, softmax)
// and saves q, k, v, the probabilities P and the scaled dropout mask; the backward is
//   dv = Pd^T dO, dPd = dO v^T, dP = dPd * keep, dS = softmax_backward(dP, P),
//   dq = dS k / sqrt(dh), dk = dS^T q / sqrt(dh)      (Pd = P * keep, the dropped-out probabilities).
// What this is not: a memory-efficient (flash) kernel — the (B, H, Tq, Tk) matrix is materialised —
// or a general additive attn_mask / causal mask.
#include <cmath>

#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

namespace {
bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_padding_mask, double dropout_p, bool training,
                                    Generator* gen) {
  const char* fn = "scaled_dot_product_attention";
  MUXNET_CHECK(q.defined() && k.defined() && v.defined(), fn, ": q, k and v must be defined tensors");
  MUXNET_CHECK(q.ndim() == 4, fn, ": q must be 4-d (B, H, Tq, dh), got shape ", q.shape());
  MUXNET_CHECK(k.ndim() == 4, fn, ": k must be 4-d (B, H, Tk, dh), got shape ", k.shape());
  MUXNET_CHECK(v.ndim() == 4, fn, ": v must be 4-d (B, H, Tk, dv), got shape ", v.shape());
  MUXNET_CHECK(is_floating(q.dtype()), fn, ": q must be f32 or f64, got ", q.dtype());
  MUXNET_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), fn, ": q, k and v must share a dtype, got ",
               q.dtype(), ", ", k.dtype(), " and ", v.dtype());
  ops::check_same_device(fn, q, k);
  ops::check_same_device(fn, q, v);
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), dh = q.size(3), Tk = k.size(2);
  MUXNET_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == dh, fn, ": q ", q.shape(), " and k ", k.shape(),
               " must agree in B, H and dh");
  MUXNET_CHECK(v.size(0) == B && v.size(1) == H && v.size(2) == Tk, fn, ": k ", k.shape(), " and v ", v.shape(),
               " must agree in B, H and Tk");
  MUXNET_CHECK(dh > 0, fn, ": head dim dh must be positive, got q shape ", q.shape());
  if (key_padding_mask.defined()) {
    MUXNET_CHECK(key_padding_mask.shape() == Shape({B, Tk}), fn, ": key_padding_mask must have shape ",
                 Shape({B, Tk}), " (B, Tk), got ", key_padding_mask.shape());
    ops::check_same_device(fn, q, key_padding_mask);
  }
  MUXNET_CHECK(dropout_p >= 0.0 && dropout_p <= 1.0, fn, ": dropout_p must be in [0, 1], got ", dropout_p);
  const bool use_dropout = training && dropout_p > 0.0;
  const double scale = 1.0 / std::sqrt(double(dh));

  Tensor P, keep, out;  // P: (B, H, Tq, Tk) softmax probabilities; keep: mask / (1 - p) or undefined
  {
    NoGradGuard no_grad;
    Tensor S = empty({B, H, Tq, Tk}, q.dtype(), q.device());
    ops::matmul_out(q, k, S, false, true, scale, 0.0);  // S = q k^T / sqrt(dh)
    if (key_padding_mask.defined()) {
      S = ops::masked_fill(S, key_padding_mask.unsqueeze(1).unsqueeze(1), -INFINITY);  // (B, 1, 1, Tk)
    }
    P = ops::softmax(S);
    Tensor Pd = P;
    if (use_dropout) {
      if (dropout_p == 1.0) {
        keep = zeros(P.shape(), P.dtype(), P.device());
      } else {
        keep = ops::mul(bernoulli(P.shape(), 1.0 - dropout_p, P.dtype(), gen, P.device()), 1.0 / (1.0 - dropout_p));
      }
      Pd = ops::mul(P, keep);
    }
    out = ops::matmul(Pd, v);  // out = Pd v
  }
  if (needs_grad({q, k, v})) {
    record(out, fn, {q, k, v},
           [q = q.detach(), k = k.detach(), v = v.detach(), P, keep, scale, gq = wants_grad(q), gk = wants_grad(k),
            gv = wants_grad(v)](const Tensor& dO) {
             Tensor dq, dk, dv;
             if (gv) {
               // forward: out = Pd v with Pd = P * keep  =>  dv = Pd^T dO
               Tensor Pd = keep.defined() ? ops::mul(P, keep) : P;
               dv = ops::matmul(Pd, dO, true, false);
             }
             if (gq || gk) {
               Tensor dP = ops::matmul(dO, v, false, true);  // out = Pd v  =>  dPd = dO v^T
               if (keep.defined()) ops::binary_(BinaryOp::Mul, dP, keep);  // Pd = P * keep
               // P = softmax(S); padded keys have P = 0, so their dS is 0 and no gradient flows there.
               Tensor dS = ops::softmax_backward(dP, P);
               if (gq) {  // S = q k^T / sqrt(dh)  =>  dq = dS k / sqrt(dh)
                 dq = empty(q.shape(), q.dtype(), q.device());
                 ops::matmul_out(dS, k, dq, false, false, scale, 0.0);
               }
               if (gk) {  // dk = dS^T q / sqrt(dh)
                 dk = empty(k.shape(), k.dtype(), k.device());
                 ops::matmul_out(dS, q, dk, true, false, scale, 0.0);
               }
             }
             return std::vector<Tensor>{dq, dk, dv};
           });
  }
  return out;
}

}  // namespace muxnet
