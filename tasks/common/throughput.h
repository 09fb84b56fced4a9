// throughput.h — the pieces of the DataMUX throughput protocol that tests can check: the analytic
// FLOP count of sentence classification (../shared/bench/RESULTS.md §8, torch_tmux.py's cls_flops) with
// the FLOP ceiling of a multiplier, and the plain (un-multiplexed) classifier the multipliers are
// measured against.
//
// FLOPs (2 per multiply-accumulate, matmuls only), B sequences, T positions, d model, f feed-forward:
//   backbone      layers · B · (8·T·d² + 4·T·d·f + 4·T²·d)
//   T-MUX head    B·N·(4·d² + 2·d² + 2·d·C)   (the peer's concat demux W1 [h_i ; h_N], then W2, W_out)
//   plain head    B·(2·d² + 2·d·C)            (pooler d -> d on token 0, classifier d -> C)
// T = L + N + 1 for T-MUX (index prefix), T = L for the plain classifier.
// ceiling of the multiplier of N vs a reference = FLOPs per instance of the reference / FLOPs per
// instance at N: what the multiplier would be if every pass ran at the same FLOP rate.
#pragma once

#include <memory>

#include "nn/layers.h"
#include "nn/transformer.h"

namespace muxnet::tasks {

struct ClsShape {
  int64_t len = 128, d = 256, ff = 1024, layers = 4, classes = 2;
};

// Encoder forward FLOPs for `batch` sequences of `positions` tokens.
double backbone_flops(const ClsShape& s, int64_t positions, int64_t batch);
// Forward FLOPs of one pass over `batch` sequences: T-MUX with n instances each (plain = false), or
// the plain classifier (plain = true, n ignored). `factored` counts the index demux as this library
// computes it (W1a h_i + W1b h_N: B·(N+1)·2d² instead of B·N·4d²); the ceiling uses the peer's count.
double cls_pass_flops(const ClsShape& s, int64_t n, int64_t batch, bool plain, bool factored = false);
// FLOPs per instance (the pass FLOPs over batch·n instances).
double cls_flops_per_instance(const ClsShape& s, int64_t n, bool plain);
// The FLOP ceiling of the multiplier of T-MUX at n against the plain classifier (ref_plain = true) or
// against T-MUX at N = 1.
double cls_ceiling(const ClsShape& s, int64_t n, bool ref_plain);

// The plain Transformer classifier: no prefix, no multiplexing, T = L, token 0 is CLS (BERT-style):
//   logits = W_out tanh(W_pool h_0 + b_pool) + b_out,  h = Encoder(LN(word[ids] + pos[0:L]))
// Token ids: regular [0, vocab), pad = vocab, CLS = vocab + 1 (as T-MUX's special ids).
// Children: word, pos, emb_norm, encoder, pool, out_proj.
class PlainClassifier : public nn::Module {
 public:
  PlainClassifier(int64_t vocab, const ClsShape& shape, int64_t heads, Generator* gen = nullptr);
  Tensor forward(const Tensor& ids) const;  // ids (B, L) integer -> logits (B, C)
  Tensor predict(const Tensor& ids) const;  // argmax classes (B) i64, under NoGradGuard
  int64_t cls_id() const { return vocab + 1; }

  int64_t vocab;
  ClsShape shape;
  std::shared_ptr<nn::Embedding> word;
  std::shared_ptr<nn::PositionalEmbedding> pos;
  std::shared_ptr<nn::LayerNorm> emb_norm;
  std::shared_ptr<nn::TransformerEncoder> encoder;
  std::shared_ptr<nn::Linear> pool, out_proj;
};

}  // namespace muxnet::tasks
