// module.h — Module: the base of every layer and model.
//
// A Module owns named parameters (trainable tensors that require grad), named buffers (tensors saved
// with the model but not trained, e.g. fixed multiplexing keys) and named child modules. Names are
// dotted like PyTorch's state_dict keys ("encoder.layers.0.attn.q_proj.weight"), registration order
// is kept, and a layer's parameters have PyTorch's layouts (nn.Linear's weight is (out, in)), so
// weights move between the two engines with no transposes.
//
// Each layer class has its own forward(...) with the arguments it needs (there is no virtual
// forward: a Transformer layer takes a padding mask, a Linear does not).
//
// pack_parameters() moves every parameter into ONE contiguous arena and every gradient into a second
// one (views of them replace the tensors' storage in place, so layers keep their handles): zero_grad
// is one fill, optimizers run one fused loop over the arena, and a step allocates no gradient memory.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace muxnet::nn {

using NamedTensor = std::pair<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // All parameters / buffers of this module and its descendants, with dotted names, in registration
  // order (a module's own first, then each child's).
  std::vector<NamedTensor> named_parameters() const;
  std::vector<NamedTensor> named_buffers() const;
  std::vector<Tensor> parameters() const;
  // Parameters then buffers: what a checkpoint saves.
  std::vector<NamedTensor> state() const;
  int64_t num_parameters() const;  // number of trainable scalars

  // Training mode switches dropout on; eval mode off. Applies to all descendants.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Zeroes every parameter's gradient (one fill when packed).
  void zero_grad();

  // Moves parameters into one arena and gradients into another (see the header comment). Idempotent;
  // call after the model is built. All parameters must share one dtype and device.
  void pack_parameters();
  bool packed() const { return param_arena_.defined(); }
  const Tensor& param_arena() const { return param_arena_; }  // 1-d, every parameter's values
  const Tensor& grad_arena() const { return grad_arena_; }    // 1-d, every parameter's gradient

  // Converts every parameter and buffer to dtype in place (e.g. f64 for gradient checks). Unpacks.
  void to(DType dtype);
  // Moves every parameter and buffer to device in place (tensors keep their identity, so references
  // held by layers stay valid). Unpacks; build optimizers after moving, as in PyTorch.
  void to(Device device);

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 protected:
  // Registers a parameter (made to require grad) / buffer / child under a local name (no dots).
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, std::vector<NamedTensor>& out) const;

  std::vector<NamedTensor> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  Tensor param_arena_, grad_arena_;  // set on the root module by pack_parameters()
};

// Points t's TensorImpl at `storage` (contiguous at element `offset`), keeping every handle to t
// valid. Used by pack_parameters, Module::to and checkpoint loading.
void rebind_storage(const Tensor& t, const Tensor& storage, int64_t offset);

}  // namespace muxnet::nn
