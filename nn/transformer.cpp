// transformer.cpp — TransformerEncoderLayer and TransformerEncoder (nn/transformer.h).
#include "nn/transformer.h"

#include <string>

#include "nn/residual_norm_infer.h"
#include "tensor/ops.h"

namespace muxnet::nn {

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerEncoderLayerOptions& o, Generator* gen)
    : options(o) {
  MUXNET_CHECK(o.d_model > 0 && o.heads > 0 && o.dim_feedforward > 0,
               "TransformerEncoderLayer: d_model, heads and dim_feedforward must be positive, got d_model=",
               o.d_model, " heads=", o.heads, " dim_feedforward=", o.dim_feedforward);
  MUXNET_CHECK(o.dropout >= 0.0 && o.dropout <= 1.0, "TransformerEncoderLayer: dropout must be in [0, 1], got ",
               o.dropout);
  // Registration order = torch's state_dict order.
  self_attn = register_module(
      "self_attn", std::make_shared<MultiHeadSelfAttention>(o.d_model, o.heads, o.dropout, /*fused_qkv=*/true,
                                                            /*bias=*/true, gen));
  linear1 = register_module("linear1", std::make_shared<Linear>(o.d_model, o.dim_feedforward, true, gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(o.dropout));
  linear2 = register_module("linear2", std::make_shared<Linear>(o.dim_feedforward, o.d_model, true, gen));
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(o.d_model, o.layer_norm_eps));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(o.dropout));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(o.dropout));
}

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t heads, int64_t dim_feedforward,
                                                 double dropout_p, Activation activation, bool norm_first,
                                                 double layer_norm_eps, Generator* gen)
    : TransformerEncoderLayer(
          TransformerEncoderLayerOptions{d_model, heads, dim_feedforward, dropout_p, activation, norm_first,
                                         layer_norm_eps},
          gen) {}

void TransformerEncoderLayer::set_dropout_generator(Generator* gen) {
  self_attn->dropout_gen = gen;
  dropout->gen = gen;
  dropout1->gen = gen;
  dropout2->gen = gen;
}

Tensor TransformerEncoderLayer::feed_forward(const Tensor& x) const {
  Tensor h = linear1->forward(x);
  const Activation a = options.activation;
  if (!grad_enabled() && h.device() == Device::CPU && a != Activation::Identity) {
    // Inference: the activation in place, over the (B·T, ff) block the GEMM just wrote, instead of
    // into a second buffer of that size (the largest activation of the layer).
    ops::unary_(a == Activation::Relu   ? UnaryOp::Relu
                : a == Activation::Gelu ? UnaryOp::Gelu
                : a == Activation::Tanh ? UnaryOp::Tanh
                                        : UnaryOp::Sigmoid,
                h);
  } else {
    h = activate(a, h);
  }
  return linear2->forward(dropout->forward(h));
}

Tensor TransformerEncoderLayer::forward(const Tensor& x, const Tensor& key_padding_mask) const {
  MUXNET_CHECK(x.defined(), "TransformerEncoderLayer: the input is an undefined tensor");
  MUXNET_CHECK(x.ndim() == 3 && x.size(2) == options.d_model, "TransformerEncoderLayer: expected x of shape (B, T, ",
               options.d_model, "), got ", x.shape());
  if (options.norm_first) {
    Tensor h = add(x, dropout1->forward(self_attn->forward(norm1->forward(x), key_padding_mask)));
    return add(h, dropout2->forward(feed_forward(norm2->forward(h))));
  }
  const bool fused = !grad_enabled() && (options.dropout == 0.0 || !is_training()) && x.device() == Device::CPU &&
                     x.dtype() == DType::F32 && x.is_contiguous();
  if (fused) {
    // Inference: the residual add and LayerNorm in one pass (nn/residual_norm_infer.h), same result.
    Tensor h = add_layer_norm_inference(x, self_attn->forward(x, key_padding_mask).contiguous(), norm1->weight,
                                        norm1->bias, norm1->eps);
    return add_layer_norm_inference(h, feed_forward(h).contiguous(), norm2->weight, norm2->bias, norm2->eps);
  }
  Tensor h = norm1->forward(add(x, dropout1->forward(self_attn->forward(x, key_padding_mask))));
  return norm2->forward(add(h, dropout2->forward(feed_forward(h))));
}

void TransformerEncoderLayerList::append(std::shared_ptr<TransformerEncoderLayer> layer) {
  items_.push_back(register_module(std::to_string(items_.size()), std::move(layer)));
}

TransformerEncoder::TransformerEncoder(const TransformerEncoderLayerOptions& layer, int64_t num_layers,
                                       Generator* gen, bool final_norm) {
  MUXNET_CHECK(num_layers > 0, "TransformerEncoder: num_layers must be positive, got ", num_layers);
  layers = register_module("layers", std::make_shared<TransformerEncoderLayerList>());
  for (int64_t i = 0; i < num_layers; ++i) layers->append(std::make_shared<TransformerEncoderLayer>(layer, gen));
  if (final_norm) norm = register_module("norm", std::make_shared<LayerNorm>(layer.d_model, layer.layer_norm_eps));
}

Tensor TransformerEncoder::forward(const Tensor& x, const Tensor& key_padding_mask) const {
  Tensor h = x;
  for (const auto& l : layers->items()) h = l->forward(h, key_padding_mask);
  return norm ? norm->forward(h) : h;
}

void TransformerEncoder::set_dropout_generator(Generator* gen) {
  for (const auto& l : layers->items()) l->set_dropout_generator(gen);
}

}  // namespace muxnet::nn
