// mlp.h — MLP: a stack of Linear layers with an activation (and optional dropout) between them.
//
// MLP({in, h1, ..., out}) holds len(sizes) - 1 Linear layers in a child list named "layers", so the
// parameter names are "layers.0.weight", "layers.0.bias", "layers.1.weight", ... — the state_dict of a
// PyTorch module that keeps its Linears in `self.layers = nn.ModuleList([...])` (activations and
// dropout carry no parameters and are applied functionally). These names go into checkpoints: keep
// them stable.
//
// forward: h = x; for each layer but the last: h = dropout(act(layer(h))); then h = final_act(last(h)).
// Dropout (probability p, active in training mode only) follows every hidden activation, never the
// output. Each Linear is initialised as nn.Linear, in layer order, from `gen`.
// What this is not: normalisation layers, residual connections, per-layer activations.
#pragma once

#include <memory>
#include <vector>

#include "nn/layers.h"

namespace muxnet::nn {

class MLP : public Module {
 public:
  // The child that owns the Linear layers under the names "0", "1", ... (PyTorch's nn.ModuleList).
  class LayerList : public Module {
   public:
    std::shared_ptr<Linear> append(std::shared_ptr<Linear> layer) {
      items.push_back(register_module(std::to_string(items.size()), std::move(layer)));
      return items.back();
    }
    std::vector<std::shared_ptr<Linear>> items;
  };

  // sizes: {in, h1, ..., out}, at least two entries, all positive. dropout_gen supplies the dropout
  // masks (the default generator when null) and must outlive the module; gen only initialises.
  MLP(const std::vector<int64_t>& sizes, Activation activation = Activation::Relu, double dropout = 0.0,
      Activation final_activation = Activation::Identity, Generator* gen = nullptr,
      Generator* dropout_gen = nullptr);
  Tensor forward(const Tensor& x) const;  // x: (..., in) -> (..., out)

  const Linear& layer(size_t i) const { return *layers->items.at(i); }
  size_t num_layers() const { return layers->items.size(); }

  std::vector<int64_t> sizes;
  Activation activation, final_activation;
  double dropout_p;
  Generator* dropout_gen;
  std::shared_ptr<LayerList> layers;
};

}  // namespace muxnet::nn
