// embed_mux.h — T-MUX's embedding and Hadamard multiplexing fused into one pass, for inference.
//
//   x[b, t] = (1/N) Σ_i v_i ⊙ LN(word[ids[b·N + i, t]] + pos[t])            (B, T, d)
//
// is what TMux computes with four separate ops (gather, + positions, LayerNorm, Multiplexer), each of
// which reads and writes a (B·N, T, d) tensor — 221 MB at B = 32, N = 40, T = 169 — so that stage
// costs about as much as a quarter of the encoder (RESULTS.md §8 measured the same in PyTorch). Here
// each output row is accumulated in cache from the N instance rows and nothing of size B·N·T·d is
// written. With LN(u) = γ ⊙ û + β, the sum is γ ⊙ Σ_i v'_i ⊙ û_i + β ⊙ Σ_i v'_i (v'_i = v_i / N).
// Leading positions whose tokens are the same in every mixed sequence (the index prefix
// [p_0 .. p_{N-1}, CLS]: the same N rows for every b) are computed once and copied to every b.

// No autograd: callers use it under NoGradGuard (TMux::encode does).
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace muxnet::mux {

// ids: (B·N)·T token ids, row b·N + i = instance i of mixed sequence b; word (V, d), pos (>= T, d),
// ln_weight / ln_bias (d), keys (N, d): f32 CPU tensors. Returns x (B, T, d) f32.
Tensor hadamard_embed_mux(const std::vector<int64_t>& ids, int64_t n, int64_t positions, const Tensor& word,
                          const Tensor& pos, const Tensor& ln_weight, const Tensor& ln_bias, double eps,
                          const Tensor& keys);

}  // namespace muxnet::mux
