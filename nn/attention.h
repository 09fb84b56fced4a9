// attention.h — MultiHeadSelfAttention: multi-head self-attention over a (B, T, d_model) sequence.
//
// Two parameter layouts, both with the names PyTorch users know:
// - fused_qkv = true: exactly torch.nn.MultiheadAttention's (the layout torch.nn.TransformerEncoderLayer
//   stores as "self_attn"): "in_proj_weight" (3d, d) with the q rows first, then k, then v,
//   "in_proj_bias" (3d), and the "out_proj" Linear ("out_proj.weight" (d, d), "out_proj.bias" (d)).
//   Init as torch: in_proj_weight xavier-uniform over the whole (3d, d) matrix, both biases zero,
//   out_proj.weight nn.Linear's default. One GEMM computes q, k and v together.
// - fused_qkv = false: four Linear children "q_proj", "k_proj", "v_proj", "out_proj" (the layout of
//   most Hugging Face encoders: "q_proj.weight" ...), each with nn.Linear's default init.
// bias = false drops every bias (torch's bias=False).
//
// forward(x (B, T, d), key_padding_mask (B, T) nonzero = padded key, or undefined) -> (B, T, d):
// project, split into H heads of dh = d / H, softmax(q k^T / sqrt(dh)) v per head
// (muxnet::scaled_dot_product_attention, attention dropout only in training mode), merge the heads,
// out_proj. Matches torch.nn.MultiheadAttention(d, H, dropout, batch_first=True) called as
// mha(x, x, x, key_padding_mask=mask, need_weights=False)[0].
// NOTE: a sequence whose keys are ALL padded gives NaN (as PyTorch's math path); keep one key unmasked.
//
// What this is not: cross-attention (different query and key/value inputs), causal or additive
// attention masks, or a returner of the attention weights.
#pragma once

#include <memory>

#include "nn/layers.h"

namespace muxnet::nn {

class MultiHeadSelfAttention : public Module {
 public:
  // gen seeds the initialisation only (the default generator when null); see dropout_gen.
  MultiHeadSelfAttention(int64_t d_model, int64_t heads, double dropout = 0.0, bool fused_qkv = false,
                         bool bias = true, Generator* gen = nullptr);

  // x: (B, T, d_model); key_padding_mask: (B, T) of any dtype, nonzero = padded key; -> (B, T, d_model)
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) const;

  int64_t d_model, heads, head_dim;
  double dropout_p;  // on the attention probabilities, training mode only
  bool fused_qkv;
  // Where attention-dropout masks come from: the default generator when null. Not the init generator,
  // which need not outlive the constructor.
  Generator* dropout_gen = nullptr;

  Tensor in_proj_weight, in_proj_bias;               // fused_qkv only (bias undefined when bias = false)
  std::shared_ptr<Linear> q_proj, k_proj, v_proj;    // separate projections only
  std::shared_ptr<Linear> out_proj;
};

}  // namespace muxnet::nn
