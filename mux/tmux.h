// tmux.h — T-MUX: the multiplexed Transformer of DataMUX (PAPER.md §1.2–1.6, §6).
//
// ids (B·N, L), rows b·N + i = instance i of mixed sequence b
//   -> prefix (index demux: [p_0 .. p_{N-1}, CLS] + ids, L' = L + N + 1; mlp demux: ids with
//      position 0 replaced by CLS, L' = L)
//   -> e = LN(word[ids'] + pos[0:L'])                                   (B·N, L', d)
//   -> x = Multiplexer(e); x = LN(x + pos[0:L'])  (the reference re-embeds the mixture with the same
//      position table and LayerNorm, "reembed")                         (B, L', d)
//   -> h = TransformerEncoder(x), post-LN, GELU, no attention mask      (B, L', d)
//   -> task logits = Demultiplexer(h)          (sequence: (B·N, C); token: (B·N, L, C))
//   -> retrieval logits = RetrievalHead(h, k)  (B, L', vocab), k[b, t] ~ U{0..N-1}
//   loss = task_coeff · CE(task) + retrieval_coeff · CE(retrieval)
// Special ids follow the regular vocabulary: fill = vocab, CLS = vocab + 1, index token j = vocab + 2 + j.
// With multiplex = false (N = 1 only) the multiplexer and the re-embedding are skipped: x = e.
// Deviations from the reference, on purpose: no token-type embedding (a constant learned vector before
// the LayerNorm), positions counted from 0 in both passes (PAPER.md §6 leaves this open).
#pragma once

#include <map>
#include <string>

#include "mux/demultiplexer.h"
#include "mux/multiplexer.h"
#include "nn/layers.h"
#include "nn/transformer.h"

namespace muxnet::mux {

struct TMuxConfig {
  int64_t vocab = 100;     // regular token ids [0, vocab)
  int64_t max_len = 16;    // L, the instance length
  int64_t n = 5;           // instances per mixed sequence
  int64_t d_model = 128, heads = 4, dim_feedforward = 512, layers = 2;
  double dropout = 0.0;
  bool multiplex = true;   // false: no multiplexer (N = 1 only)
  bool reembed = true;     // add positions + LayerNorm again after multiplexing (the reference does)
  MuxKind mux = MuxKind::GaussianHadamard;
  bool learned_keys = false;
  double key_norm = 20.0;  // gaussian_hadamard norm (20 in the reference's retrieval warm-up)
  double mux_epsilon = 0.0;
  DemuxKind demux = DemuxKind::Index;
  std::string task = "retrieval";  // "retrieval" (warm-up only), "sequence" or "token"
  int64_t num_classes = 2;
  double task_coeff = 0.0, retrieval_coeff = 1.0;
  int64_t pad_id = -1;     // a regular id used as padding (never a retrieval target), -1 for none

  int64_t prefix_len() const { return demux == DemuxKind::Index ? n + 1 : 0; }
  int64_t seq_len() const { return max_len + prefix_len(); }  // L'
  int64_t fill_id() const { return vocab; }
  int64_t cls_id() const { return vocab + 1; }
  int64_t index_id(int64_t j) const { return vocab + 2 + j; }
  int64_t embedding_rows() const { return vocab + 2 + n; }
  void validate() const;
  // Checkpoint metadata (strings) and back; the keys are "tmux.<field>".
  std::map<std::string, std::string> to_metadata() const;
  static TMuxConfig from_metadata(const std::map<std::string, std::string>& meta);
};

struct TMuxOutput {
  Tensor task_logits;        // undefined when task == "retrieval"
  Tensor retrieval_logits;   // (B, L', vocab), undefined when retrieval_coeff == 0 and not requested
  Tensor retrieval_targets;  // (B, L') i64, -100 where ignored
  Tensor instance;           // (B, L') i64: k, the instance queried at each position
  Tensor loss, task_loss, retrieval_loss;  // 0-d; task_loss/retrieval_loss undefined when unused
};

class TMux : public nn::Module {
 public:
  explicit TMux(const TMuxConfig& config, Generator* gen = nullptr);

  // ids (B·N, L) -> (B·N, L') with the prefix / CLS of the demux variant, on ids' device.
  Tensor prefixed_ids(const Tensor& ids) const;
  // The backbone's output h (B, L', d) for instance-grouped ids (B·N, L).
  Tensor encode(const Tensor& ids) const;
  // Forward with losses. labels: sequence (B·N), token (B·N, L) with -100 ignored, or undefined.
  // k_gen draws the queried instance per position (the default generator when null).
  TMuxOutput forward(const Tensor& ids, const Tensor& labels = Tensor(), Generator* k_gen = nullptr) const;
  // Retrieval predictions of every instance at every position: (B·N, L) i64 of argmax tokens, for
  // evaluation (positions the variant overwrites hold -1).
  Tensor retrieve_all(const Tensor& ids) const;
  // Task predictions (argmax classes): sequence (B·N), token (B·N, L).
  Tensor predict(const Tensor& ids) const;

  TMuxConfig config;
  std::shared_ptr<nn::Embedding> word;
  std::shared_ptr<nn::PositionalEmbedding> pos;
  std::shared_ptr<nn::LayerNorm> emb_norm;
  std::shared_ptr<nn::Dropout> emb_dropout;
  std::shared_ptr<Multiplexer> mux;  // null when !multiplex
  std::shared_ptr<nn::TransformerEncoder> encoder;
  std::shared_ptr<Demultiplexer> demux;       // null for the retrieval task
  std::shared_ptr<RetrievalHead> retrieval;   // null when retrieval_coeff == 0 and task != retrieval

 private:
  Tensor embed(const Tensor& ids) const;  // LN(word + pos), dropout
};

}  // namespace muxnet::mux
