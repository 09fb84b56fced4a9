// demultiplexer.h — demultiplexers and the retrieval head (PAPER.md §1.4, §1.5, §6).
//
// Input h: (B, L', d), the backbone's output for B mixed sequences. Two variants:
//
// index  (the reference's default). Every instance row got the prefix [p_0 .. p_{N-1}, CLS] (N + 1
//        positions; p_j is instance j's index token in row j and a shared fill token elsewhere), so
//        h[:, i] (i < N) is instance i's "index embedding" and h[:, N] the CLS slot.
//   sequence: z_i = LN(GELU(W1 [h_i ; h_N] + b1)); logits_i = Wo GELU(W2 z_i + b2) + bo  -> (B·N, C)
//   token:    z_it = LN(GELU(W1 [h_i ; h_t] + b1)); logits = Wd z_it + bd, t = N+1 .. L'-1 -> (B·N, L'-N-1, C)
//   names: dense_in (Linear 2d -> d), norm (LayerNorm d), dense (Linear d -> d, sequence only),
//          out_proj (Linear d -> C)
// mlp    No prefix (position 0 holds CLS). Instance i has its own z = LN_i(GELU(W_i h_t)).
//   sequence: t = 0; logits_i = Wo LN(GELU(W2 z_i))                                     -> (B·N, C)
//   token:    every t; logits = Wo z                                                    -> (B·N, L', C)
//   names: instance_weight (N, d, d), instance_bias (N, d), instance_norm_weight (N, d),
//          instance_norm_bias (N, d); sequence adds dense (d -> d), norm (d); out_proj (d -> C)
//
// Rows of the outputs are ordered b·N + i, like the multiplexer's input.
// [W1 h_i ; h_t] is computed factored, W1a h_i + W1b h_t (the same maths with N + L' rows of
// GEMM instead of N · L'), broadcast to (B, N, L', d).
// The index variants need L' >= N + 1 (the prefix); the mlp sequence variant needs L' >= 1.
// No dropout is applied: the reference's index demuxer declares one it never uses, and the mlp
// demuxer's dropout on h_t is left out (see demultiplexer.cpp).
#pragma once

#include <memory>
#include <string>

#include "nn/layers.h"
#include "nn/module.h"

namespace muxnet::mux {

enum class DemuxKind { Index, Mlp };
DemuxKind parse_demux_kind(const std::string& name);  // "index" | "mlp"
const char* demux_kind_name(DemuxKind kind);

struct DemuxOptions {
  DemuxKind kind = DemuxKind::Index;
  int64_t n = 1;
  int64_t dim = 0;
  int64_t num_classes = 2;
  bool token_level = false;  // token classification (NER) instead of sequence classification
};

class Demultiplexer : public nn::Module {
 public:
  explicit Demultiplexer(const DemuxOptions& options, Generator* gen = nullptr);
  // h: (B, L', d) -> sequence: (B·N, C); token: index (B·N, L'-N-1, C), mlp (B·N, L', C)
  Tensor forward(const Tensor& h) const;
  DemuxOptions options;

 private:
  std::shared_ptr<nn::Linear> dense_in_, dense_, out_proj_;  // undefined where the variant has none
  std::shared_ptr<nn::LayerNorm> norm_;
  Tensor instance_weight_, instance_bias_, instance_norm_weight_, instance_norm_bias_;  // mlp only
};

// The retrieval head: for each mixed sequence b and position t, predicts the token that instance
// k[b, t] had at position t (PAPER.md §1.5).
//   index: r_t = W_V LN(GELU(W [h_k ; h_t] + b)) + b_V          names: dense_in, norm, decoder
//   mlp:   z = LN_k(GELU(W_k h_t)); r = W_V LN(GELU(W_pre z)) + b_V
//          names: instance_weight, instance_bias, instance_norm_weight, instance_norm_bias, dense, norm, decoder
class RetrievalHead : public nn::Module {
 public:
  RetrievalHead(DemuxKind kind, int64_t n, int64_t dim, int64_t vocab, Generator* gen = nullptr);
  // h: (B, L', d); k: (B, L') i64 (or i32) in [0, N) -> logits (B, L', vocab). Only the B·L' queried
  // rows go through GELU / LN / decoder; mlp groups the rows by instance (one GEMM per instance).
  // k is read on the host (range check, row indices).
  Tensor forward(const Tensor& h, const Tensor& k) const;
  // Every instance at every position (evaluation): h (B, L', d) -> (B, N, L', vocab)
  Tensor forward_all(const Tensor& h) const;
  DemuxKind kind;
  int64_t n, dim, vocab;

 private:
  std::shared_ptr<nn::Linear> dense_in_, dense_, decoder_;  // dense_in: index only; dense: mlp only
  std::shared_ptr<nn::LayerNorm> norm_;
  Tensor instance_weight_, instance_bias_, instance_norm_weight_, instance_norm_bias_;  // mlp only
};

}  // namespace muxnet::mux
