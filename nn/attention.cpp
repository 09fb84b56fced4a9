// attention.cpp — MultiHeadSelfAttention (nn/attention.h).
//
// Data movement per forward, and why: the projection GEMM writes rows (B*T, groups*d) with the heads
// interleaved; the batched attention GEMMs need each (b, h) block as one matrix with a single batch
// stride over (B, H), which that layout never has (b steps T*groups*d, h steps dh). Handing the
// strided views to the attention would make ops::matmul copy q, k and v once per GEMM (three times
// in the forward, three more in the backward), so split_heads copies them ONCE into a head-major
// (groups, B, H, T, dh) block, and merge_heads copies the attention output ONCE back to (B, T, d)
// for out_proj. Their backwards are the mirror copies and hand the attention a contiguous gradient.
#include "nn/attention.h"

#include <cmath>

#include "autograd/functions.h"
#include "nn/attention_infer.h"

namespace muxnet::nn {

namespace {

// t: (B, T, groups*H*dh) -> (groups, B, H, T, dh) contiguous, or (B, H, T, dh) when groups == 1.
// One recorded copy; the backward writes the gradient back through the inverse permutation.
Tensor split_heads(const Tensor& t, int64_t groups, int64_t H) {
  const int64_t B = t.size(0), T = t.size(1), dh = t.size(2) / (groups * H);
  const Shape split_shape{B, T, groups, H, dh};
  const std::vector<int> to_heads{2, 0, 3, 1, 4};  // (B, T, groups, H, dh) -> (groups, B, H, T, dh)
  Tensor out = empty({groups, B, H, T, dh}, t.dtype(), t.device());
  {
    NoGradGuard no_grad;
    out.copy_(t.reshape(split_shape).permute(to_heads));
  }
  if (groups == 1) out = out.view({B, H, T, dh});  // before recording: no extra node for the view
  if (needs_grad({t})) {
    const Shape t_shape = t.shape();
    record(out, "split_heads", {t}, [t_shape, split_shape, to_heads, groups, B, H, T, dh](const Tensor& g) {
      // forward: out = permute(t viewed as (B, T, groups, H, dh)), made contiguous
      Tensor dt = empty(t_shape, g.dtype(), g.device());
      dt.view(split_shape).permute(to_heads).copy_(g.reshape({groups, B, H, T, dh}));
      return std::vector<Tensor>{dt};
    });
  }
  return out;
}

// ctx: (B, H, T, dh) -> (B, T, H*dh) contiguous. One recorded copy each way; the gradient it hands
// back is contiguous, so the attention backward's GEMMs read it without copying.
Tensor merge_heads(const Tensor& ctx) {
  const int64_t B = ctx.size(0), H = ctx.size(1), T = ctx.size(2), dh = ctx.size(3);
  Tensor out = empty({B, T, H * dh}, ctx.dtype(), ctx.device());
  {
    NoGradGuard no_grad;
    out.view({B, T, H, dh}).copy_(ctx.permute({0, 2, 1, 3}));
  }
  if (needs_grad({ctx})) {
    record(out, "merge_heads", {ctx}, [B, H, T, dh](const Tensor& g) {
      // forward: out = ctx permuted to (B, T, H, dh), flattened over (H, dh)
      Tensor dctx = empty({B, H, T, dh}, g.dtype(), g.device());
      dctx.permute({0, 2, 1, 3}).copy_(g.reshape({B, T, H, dh}));
      return std::vector<Tensor>{dctx};
    });
  }
  return out;
}

}  // namespace

MultiHeadSelfAttention::MultiHeadSelfAttention(int64_t d, int64_t h, double dropout, bool fused, bool bias,
                                               Generator* gen)
    : d_model(d), heads(h), head_dim(0), dropout_p(dropout), fused_qkv(fused) {
  MUXNET_CHECK(d > 0 && h > 0, "MultiHeadSelfAttention: d_model and heads must be positive, got d_model=", d,
               " heads=", h);
  MUXNET_CHECK(d % h == 0, "MultiHeadSelfAttention: d_model ", d, " is not divisible by heads ", h);
  MUXNET_CHECK(dropout >= 0.0 && dropout <= 1.0, "MultiHeadSelfAttention: dropout must be in [0, 1], got ",
               dropout);
  head_dim = d / h;
  if (fused) {
    // torch.nn.MultiheadAttention._reset_parameters: xavier_uniform_ on the whole (3d, d) matrix
    // (fan_in d, fan_out 3d), zero biases; out_proj keeps nn.Linear's default weight init.
    const double bound = std::sqrt(6.0 / double(d + 3 * d));
    in_proj_weight = register_parameter("in_proj_weight", uniform_init({3 * d, d}, bound, gen));
    if (bias) in_proj_bias = register_parameter("in_proj_bias", zeros({3 * d}));
    out_proj = register_module("out_proj", std::make_shared<Linear>(d, d, bias, gen));
    if (bias) {
      NoGradGuard no_grad;
      out_proj->bias.zero_();
    }
  } else {
    q_proj = register_module("q_proj", std::make_shared<Linear>(d, d, bias, gen));
    k_proj = register_module("k_proj", std::make_shared<Linear>(d, d, bias, gen));
    v_proj = register_module("v_proj", std::make_shared<Linear>(d, d, bias, gen));
    out_proj = register_module("out_proj", std::make_shared<Linear>(d, d, bias, gen));
  }
}

Tensor MultiHeadSelfAttention::forward(const Tensor& x, const Tensor& key_padding_mask) const {
  MUXNET_CHECK(x.defined(), "MultiHeadSelfAttention: the input is an undefined tensor");
  MUXNET_CHECK(x.ndim() == 3 && x.size(2) == d_model, "MultiHeadSelfAttention: expected x of shape (B, T, ",
               d_model, "), got ", x.shape());
  const int64_t B = x.size(0), T = x.size(1);
  if (key_padding_mask.defined()) {
    MUXNET_CHECK(key_padding_mask.shape() == Shape({B, T}),
                 "MultiHeadSelfAttention: key_padding_mask must have shape (B, T) = ", Shape({B, T}), ", got ",
                 key_padding_mask.shape());
  }
  if (!grad_enabled() && fused_qkv && !key_padding_mask.defined() && (dropout_p == 0.0 || !is_training()) &&
      x.device() == Device::CPU && x.dtype() == DType::F32) {
    // Inference: no head-major copies, no stored (B, H, T, T) tensors (nn/attention_infer.h).
    return out_proj->forward(self_attention_inference(linear(x, in_proj_weight, in_proj_bias), heads));
  }
  Tensor ctx;  // (B, H, T, dh)
  if (fused_qkv) {
    // One GEMM for q, k and v: (B, T, 3d) with the q columns first, as torch's in_proj.
    Tensor qkv = split_heads(linear(x, in_proj_weight, in_proj_bias), 3, heads);  // (3, B, H, T, dh)
    ctx = scaled_dot_product_attention(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2), key_padding_mask,
                                       dropout_p, is_training(), dropout_gen);
  } else {
    ctx = scaled_dot_product_attention(split_heads(q_proj->forward(x), 1, heads),
                                       split_heads(k_proj->forward(x), 1, heads),
                                       split_heads(v_proj->forward(x), 1, heads), key_padding_mask, dropout_p,
                                       is_training(), dropout_gen);
  }
  return out_proj->forward(merge_heads(ctx));
}

}  // namespace muxnet::nn
