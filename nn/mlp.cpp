// mlp.cpp — MLP (nn/mlp.h).
#include "nn/mlp.h"

#include <sstream>

namespace muxnet::nn {

namespace {

std::string sizes_str(const std::vector<int64_t>& sizes) {
  std::ostringstream os;
  os << "{";
  for (size_t i = 0; i < sizes.size(); ++i) os << (i ? ", " : "") << sizes[i];
  os << "}";
  return os.str();
}

}  // namespace

MLP::MLP(const std::vector<int64_t>& sizes_, Activation act, double p, Activation final_act, Generator* gen,
         Generator* dgen)
    : sizes(sizes_), activation(act), final_activation(final_act), dropout_p(p), dropout_gen(dgen) {
  MUXNET_CHECK(sizes.size() >= 2, "MLP: expected at least 2 sizes {in, ..., out}, got ", sizes_str(sizes));
  for (int64_t s : sizes) MUXNET_CHECK(s > 0, "MLP: sizes must be positive, got ", sizes_str(sizes));
  MUXNET_CHECK(p >= 0.0 && p <= 1.0, "MLP: dropout must be in [0, 1], got ", p);  // NaN fails too
  layers = register_module("layers", std::make_shared<LayerList>());
  for (size_t i = 0; i + 1 < sizes.size(); ++i) layers->append(std::make_shared<Linear>(sizes[i], sizes[i + 1], true, gen));
}

Tensor MLP::forward(const Tensor& x) const {
  MUXNET_CHECK(x.defined() && x.ndim() >= 1 && x.size(-1) == sizes.front(), "MLP: expected input (..., ",
               sizes.front(), "), got ", x.defined() ? x.shape().str() : "an undefined tensor");
  Tensor h = x;
  const size_t n = layers->items.size();
  for (size_t i = 0; i + 1 < n; ++i) {
    h = activate(activation, layers->items[i]->forward(h));
    if (dropout_p > 0.0) h = dropout(h, dropout_p, is_training(), dropout_gen);
  }
  return activate(final_activation, layers->items[n - 1]->forward(h));
}

}  // namespace muxnet::nn
