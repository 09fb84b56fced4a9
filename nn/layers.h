// layers.h — the basic layers: Linear, Embedding, PositionalEmbedding, LayerNorm, Dropout and the
// activation modules. Each matches the PyTorch module of the same name (parameter names, layouts,
// default initialisation, semantics), so a PyTorch state_dict loads into it unchanged.
#pragma once

#include "autograd/functions.h"
#include "nn/init.h"
#include "nn/module.h"

namespace muxnet::nn {

// y = x W^T + b; weight (out, in), bias (out). Init U(+-1/sqrt(in)) for both, as nn.Linear.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // x: (..., in) -> (..., out)
  int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when bias = false
};

// Rows of a (num, dim) table; weight init N(0, 1) as nn.Embedding. The padding row (if any) starts at
// zero and gets no gradient.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx = -1, Generator* gen = nullptr);
  Tensor forward(const Tensor& idx) const;  // idx: any shape, i32/i64 -> idx.shape + (dim)
  int64_t num_embeddings, dim, padding_idx;
  Tensor weight;
};

// Learned absolute positions: adds weight[0:T] to x (B, T, dim). weight (max_len, dim), init N(0, 1).
class PositionalEmbedding : public Module {
 public:
  PositionalEmbedding(int64_t max_len, int64_t dim, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // x: (B, T, dim), T <= max_len
  int64_t max_len, dim;
  Tensor weight;
};

// Normalises over the last dim; weight ones, bias zeros (elementwise_affine as nn.LayerNorm).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) const;
  int64_t dim;
  double eps;
  Tensor weight, bias;
};

// Zeroes elements with probability p in training mode (scaling the rest by 1/(1-p)); identity in eval.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.1, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;
  double p;
  Generator* gen;  // null: the default generator
};

enum class Activation { Relu, Gelu, Tanh, Sigmoid, Identity };
Activation parse_activation(const std::string& name);  // "relu", "gelu", "tanh", "sigmoid", "identity"
const char* activation_name(Activation a);
Tensor activate(Activation a, const Tensor& x);

class ActivationModule : public Module {
 public:
  explicit ActivationModule(Activation a) : kind(a) {}
  Tensor forward(const Tensor& x) const { return activate(kind, x); }
  Activation kind;
};
class ReLU : public ActivationModule {
 public:
  ReLU() : ActivationModule(Activation::Relu) {}
};
class GELU : public ActivationModule {
 public:
  GELU() : ActivationModule(Activation::Gelu) {}
};
class Tanh : public ActivationModule {
 public:
  Tanh() : ActivationModule(Activation::Tanh) {}
};

}  // namespace muxnet::nn
