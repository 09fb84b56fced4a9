// layers.cpp — Linear, Embedding, PositionalEmbedding, LayerNorm, Dropout, activations.
#include "nn/layers.h"

#include <cmath>

namespace muxnet::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator* gen) : in_features(in), out_features(out) {
  MUXNET_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in=", in, " out=", out);
  const double bound = 1.0 / std::sqrt(double(in));
  weight = register_parameter("weight", uniform_init({out, in}, bound, gen));
  if (with_bias) bias = register_parameter("bias", uniform_init({out}, bound, gen));
}

Tensor Linear::forward(const Tensor& x) const {
  MUXNET_CHECK(x.ndim() >= 1 && x.size(-1) == in_features, "Linear: expected input (..., ", in_features,
               "), got ", x.shape());
  return linear(x, weight, bias);
}

Embedding::Embedding(int64_t num, int64_t d, int64_t pad, Generator* gen)
    : num_embeddings(num), dim(d), padding_idx(pad) {
  MUXNET_CHECK(num > 0 && d > 0, "Embedding: sizes must be positive, got ", num, " x ", d);
  MUXNET_CHECK(pad >= -1 && pad < num, "Embedding: padding_idx ", pad, " out of range for ", num, " rows");
  Tensor w = normal_init({num, d}, 1.0, gen);
  if (pad >= 0) w.select(0, pad).zero_();
  weight = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& idx) const { return embedding(weight, idx, padding_idx); }

PositionalEmbedding::PositionalEmbedding(int64_t len, int64_t d, Generator* gen) : max_len(len), dim(d) {
  MUXNET_CHECK(len > 0 && d > 0, "PositionalEmbedding: sizes must be positive, got ", len, " x ", d);
  weight = register_parameter("weight", normal_init({len, d}, 1.0, gen));
}

Tensor PositionalEmbedding::forward(const Tensor& x) const {
  MUXNET_CHECK(x.ndim() == 3 && x.size(2) == dim, "PositionalEmbedding: expected x of shape (B, T, ", dim,
               "), got ", x.shape());
  MUXNET_CHECK(x.size(1) <= max_len, "PositionalEmbedding: sequence length ", x.size(1), " exceeds max_len ",
               max_len);
  return add(x, weight.narrow(0, 0, x.size(1)));  // (T, dim) broadcasts over the batch
}

LayerNorm::LayerNorm(int64_t d, double e, bool affine) : dim(d), eps(e) {
  MUXNET_CHECK(d > 0, "LayerNorm: dim must be positive, got ", d);
  if (affine) {
    weight = register_parameter("weight", ones({d}));
    bias = register_parameter("bias", zeros({d}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  MUXNET_CHECK(x.ndim() >= 1 && x.size(-1) == dim, "LayerNorm: expected input (..., ", dim, "), got ", x.shape());
  return layer_norm(x, weight, bias, eps);
}

Dropout::Dropout(double p_, Generator* g) : p(p_), gen(g) {
  MUXNET_CHECK(p_ >= 0.0 && p_ <= 1.0, "Dropout: p must be in [0, 1], got ", p_);
}

Tensor Dropout::forward(const Tensor& x) const { return dropout(x, p, is_training(), gen); }

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::Relu;
  if (name == "gelu") return Activation::Gelu;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "identity") return Activation::Identity;
  MUXNET_FAIL("activation: unknown name '", name, "' (expected relu, gelu, tanh, sigmoid or identity)");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::Relu: return "relu";
    case Activation::Gelu: return "gelu";
    case Activation::Tanh: return "tanh";
    case Activation::Sigmoid: return "sigmoid";
    default: return "identity";
  }
}

Tensor activate(Activation a, const Tensor& x) {
  switch (a) {
    case Activation::Relu: return relu(x);
    case Activation::Gelu: return gelu(x);
    case Activation::Tanh: return tanh(x);
    case Activation::Sigmoid: return sigmoid(x);
    default: return x;
  }
}

}  // namespace muxnet::nn
