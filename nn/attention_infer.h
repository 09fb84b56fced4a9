// attention_infer.h — multi-head self-attention for inference, fused per (sequence, head).
//
// MultiHeadSelfAttention's general path copies q, k, v head-major (split_heads), stores every
// (B, H, T, T) score and probability tensor, runs one multi-threaded GEMM per (b, h) in turn, and
// copies the context back (merge_heads). Without autograd none of that has to be materialised: here
// each (b, h) reads its q, k, v straight from the projection output (BLAS with leading dimension 3d),
// keeps its T x T scores in a cache-sized buffer, and writes its context columns straight into the
// (B, T, d) result. The (b, h) blocks run in parallel, one single-threaded GEMM pair each.
// Same maths as scaled_dot_product_attention without mask or dropout (softmax: ops::softmax).
// CPU, f32, no gradient: MultiHeadSelfAttention::forward takes this path only under NoGradGuard.
#pragma once

#include "tensor/tensor.h"

namespace muxnet::nn {

// qkv: (B, T, 3d) contiguous f32 CPU, columns [q | k | v], each (H, dh) head-major as torch's in_proj.
// Returns softmax(q k^T / sqrt(dh)) v per head, heads concatenated: (B, T, d).
Tensor self_attention_inference(const Tensor& qkv, int64_t heads);

}  // namespace muxnet::nn
