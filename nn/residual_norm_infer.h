// residual_norm_infer.h — a post-LN Transformer layer's residual step, LayerNorm(x + r), in one pass
// for inference.
//
// A post-LN layer (BERT's, the default here) computes norm(add(x, sublayer(x))) twice. The general
// path writes the (B, T, d) sum, reads it back for the statistics and again for the output, and keeps
// mean and rstd for a backward that never comes under NoGradGuard. Here each row of x + r is added into
// a per-thread buffer (f32, rounded as ops::add rounds it) and normalised as the layer_norm kernel does
// (statistics in double over the same lanes, y formed in double and rounded once), so the result
// equals norm(add(x, r)) and one (B, T, d) tensor is never written to memory.
// CPU, f32, contiguous x and r of the same shape; weight and bias (d) or undefined; no gradient:
// TransformerEncoderLayer::forward takes this path only when autograd is off.
#pragma once

#include "tensor/tensor.h"

namespace muxnet::nn {

Tensor add_layer_norm_inference(const Tensor& x, const Tensor& r, const Tensor& weight, const Tensor& bias,
                                double eps);

}  // namespace muxnet::nn
