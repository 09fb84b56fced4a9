// transformer.h — TransformerEncoderLayer and TransformerEncoder, as torch.nn's (batch_first=True).
//
// Parameter names and layouts are torch's, so a PyTorch TransformerEncoder state_dict loads unchanged:
//   layers.0.self_attn.in_proj_weight (3d, d), layers.0.self_attn.in_proj_bias (3d),
//   layers.0.self_attn.out_proj.{weight,bias}, layers.0.linear1.{weight,bias} (ff, d) / (ff),
//   layers.0.linear2.{weight,bias} (d, ff) / (d), layers.0.norm1.{weight,bias}, layers.0.norm2.{weight,bias},
//   ... and "norm.{weight,bias}" when the encoder has a final norm.
// The dropout modules ("dropout", "dropout1", "dropout2") have no parameters, as in torch.
//
// Post-LN (norm_first = false, torch's default and BERT/RoBERTa's):
//   x = norm1(x + dropout1(self_attn(x)));  x = norm2(x + dropout2(ff(x)))
// Pre-LN (norm_first = true):
//   x = x + dropout1(self_attn(norm1(x)));  x = x + dropout2(ff(norm2(x)))
// with ff(x) = linear2(dropout(activation(linear1(x)))) and self_attn's attention dropout = dropout.
//
// Differences from torch, deliberately:
// - the default activation is GELU (BERT's), not torch's ReLU;
// - torch.nn.TransformerEncoder deep-copies ONE layer, so all its layers start with equal weights;
//   here each layer draws its own initial weights from the generator (loading a state_dict is unaffected);
// - torch's eval-mode fast path (nested tensors) returns zeros at padded positions; here padded
//   positions are computed like any other (their queries attend to the unpadded keys). Compare outputs
//   at unpadded positions only.
// What this is not: a decoder, causal masks, or torch's `bias=False` option (its LayerNorm has no bias).
#pragma once

#include <memory>
#include <vector>

#include "nn/attention.h"

namespace muxnet::nn {

struct TransformerEncoderLayerOptions {
  int64_t d_model = 0;
  int64_t heads = 0;
  int64_t dim_feedforward = 2048;  // torch's default
  double dropout = 0.1;
  Activation activation = Activation::Gelu;
  bool norm_first = false;
  double layer_norm_eps = 1e-5;
};

class TransformerEncoderLayer : public Module {
 public:
  // gen seeds the initialisation only (the default generator when null); dropout masks come from the
  // default generator unless set_dropout_generator() says otherwise.
  explicit TransformerEncoderLayer(const TransformerEncoderLayerOptions& options, Generator* gen = nullptr);
  TransformerEncoderLayer(int64_t d_model, int64_t heads, int64_t dim_feedforward, double dropout = 0.1,
                          Activation activation = Activation::Gelu, bool norm_first = false,
                          double layer_norm_eps = 1e-5, Generator* gen = nullptr);

  // x: (B, T, d_model); key_padding_mask: (B, T), nonzero = padded key, or undefined -> (B, T, d_model)
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) const;

  // Every dropout of this layer (attention, feed-forward, residuals) draws from gen (null = default).
  void set_dropout_generator(Generator* gen);

  TransformerEncoderLayerOptions options;
  std::shared_ptr<MultiHeadSelfAttention> self_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2;

 private:
  Tensor feed_forward(const Tensor& x) const;  // linear2(dropout(activation(linear1(x))))
};

// The role of torch.nn.ModuleList inside TransformerEncoder: the layers as children "0", "1", ...
class TransformerEncoderLayerList : public Module {
 public:
  void append(std::shared_ptr<TransformerEncoderLayer> layer);
  const std::vector<std::shared_ptr<TransformerEncoderLayer>>& items() const { return items_; }

 private:
  std::vector<std::shared_ptr<TransformerEncoderLayer>> items_;
};

class TransformerEncoder : public Module {
 public:
  // num_layers layers built from `layer`; final_norm adds torch's optional final LayerNorm ("norm").
  TransformerEncoder(const TransformerEncoderLayerOptions& layer, int64_t num_layers, Generator* gen = nullptr,
                     bool final_norm = false);

  // x: (B, T, d_model); key_padding_mask: (B, T), nonzero = padded key, or undefined -> (B, T, d_model)
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask = Tensor()) const;

  void set_dropout_generator(Generator* gen);  // on every layer

  int64_t num_layers() const { return int64_t(layers->items().size()); }
  const TransformerEncoderLayer& layer(int64_t i) const { return *layers->items().at(size_t(i)); }

  std::shared_ptr<TransformerEncoderLayerList> layers;
  std::shared_ptr<LayerNorm> norm;  // null unless final_norm
};

}  // namespace muxnet::nn
