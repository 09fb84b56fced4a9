// optim.h — SGD and AdamW, as torch.optim.SGD and torch.optim.AdamW, with one fused update loop.
//
// Built from a packed Module (Module::pack_parameters: one parameter arena, one gradient arena), an
// optimizer keeps each kind of state (momentum, or AdamW's m and v) in ONE arena of the same size, and
// step() is one kernel call over contiguous memory (OpId::sgd_step / OpId::adamw_step, parallel and
// deterministic). Built from an unpacked Module or a list of tensors, it keeps per-parameter state and
// runs the same kernel once per parameter; both give bit-identical results.
//
// Semantics (torch.optim, single-tensor implementation, one parameter group):
//   SGD(lr, momentum, weight_decay, nesterov): g += wd * p; b = mu * b + g (b = g on the first step);
//     g = nesterov ? g + mu * b : b; p -= lr * g.
//   AdamW(lr, betas, eps, weight_decay): p -= lr * wd * p (decoupled, first); m = beta1 m + (1-beta1) g;
//     v = beta2 v + (1-beta2) g^2; p -= lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - beta1^t),
//     v_hat = v / (1 - beta2^t), t = that parameter's own step count.
// A parameter without a gradient is skipped (its state and step count stay as they are). NOTE: in a
// packed model every parameter has a gradient (a view of the arena, zero when unused): like torch with
// zero_grad(set_to_none=False), an unused parameter still decays and keeps its momentum.
//
// State for checkpoints: state() exports named tensors ("<prefix><param>.exp_avg", ".exp_avg_sq",
// ".momentum_buffer", ".step") and scalars (lr, hyperparameters, step_count); load_state() checks and
// restores them. Names are per parameter in both modes, so a packed run resumes unpacked and back.
//
// What this is not: parameter groups, dampening, maximize, amsgrad, sparse gradients, or a holder of
// the Module: build the optimizer after pack_parameters()/to(dtype); step() detects a parameter that
// was moved since (Module::to, a re-pack) and says to build the optimizer again.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/dispatch.h"

namespace muxnet::nn {

// What an optimizer saves: named tensors and named scalars (scalars go to checkpoint metadata).
struct OptimizerState {
  std::vector<NamedTensor> tensors;
  std::map<std::string, double> scalars;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient. Runs under no-grad.
  void step();
  // Zeroes the gradients (one fill of the gradient arena when packed).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);
  // Number of step() calls so far (after load_state: the saved count).
  int64_t step_count() const { return step_count_; }
  bool fused() const { return packed_; }  // true when it updates a packed arena in one loop
  const char* name() const { return name_; }

  // Tensors are copies, named prefix + parameter name + "." + state name.
  OptimizerState state(const std::string& prefix = "optim.") const;
  // Restores everything state() exported. Checks every name, shape and dtype first (modifying nothing
  // on error); tensors in `state` without `prefix` are ignored, unknown ones with it are an error.
  void load_state(const OptimizerState& state, const std::string& prefix = "optim.");

 protected:
  // A contiguous range that is updated in one kernel call: a whole arena, or one parameter.
  struct Slot {
    std::string name;     // the parameter's name, or "parameter arena"
    Tensor param, grad;  // grad: the arena (packed) or undefined (read from param.grad() each step)
    std::vector<Tensor> buffers;  // one per state_names() entry, param's shape and dtype, zeros
    int64_t steps = 0;            // updates this slot has received
  };
  Optimizer(const char* name, double lr, const Module& module);
  Optimizer(const char* name, double lr, const std::vector<NamedTensor>& params);
  // Subclasses call this from their constructor (after which state_names() is usable).
  void init_state();
  virtual std::vector<std::string> state_names() const = 0;  // e.g. {"exp_avg", "exp_avg_sq"}
  // Runs the kernel on one slot; param and grad are contiguous, same numel and dtype.
  virtual void update(Slot& slot, const Tensor& grad) = 0;
  virtual void export_hyper(std::map<std::string, double>& scalars) const = 0;
  virtual void import_hyper(const std::map<std::string, double>& scalars) = 0;

  const char* name_;
  double lr_;
  int64_t step_count_ = 0;

 private:
  // Parameter i lives in slot slot_of_[i] at element offset_of_[i] (0 when unpacked).
  std::vector<NamedTensor> params_;
  std::vector<size_t> slot_of_;
  std::vector<int64_t> offset_of_;
  std::vector<Slot> slots_;
  bool packed_ = false;
  void check_not_moved() const;
};

class SGD : public Optimizer {
 public:
  SGD(const Module& module, double lr, double momentum = 0.0, double weight_decay = 0.0, bool nesterov = false);
  SGD(const std::vector<Tensor>& params, double lr, double momentum = 0.0, double weight_decay = 0.0,
      bool nesterov = false);
  SGD(const std::vector<NamedTensor>& params, double lr, double momentum = 0.0, double weight_decay = 0.0,
      bool nesterov = false);
  double momentum, weight_decay;
  bool nesterov;

 protected:
  std::vector<std::string> state_names() const override;
  void update(Slot& slot, const Tensor& grad) override;
  void export_hyper(std::map<std::string, double>& scalars) const override;
  void import_hyper(const std::map<std::string, double>& scalars) override;

 private:
  void validate() const;
};

class AdamW : public Optimizer {
 public:
  AdamW(const Module& module, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 1e-2);
  AdamW(const std::vector<Tensor>& params, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 1e-2);
  AdamW(const std::vector<NamedTensor>& params, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 1e-2);
  double beta1, beta2, eps, weight_decay;

 protected:
  std::vector<std::string> state_names() const override;
  void update(Slot& slot, const Tensor& grad) override;
  void export_hyper(std::map<std::string, double>& scalars) const override;
  void import_hyper(const std::map<std::string, double>& scalars) override;

 private:
  void validate() const;
};

}  // namespace muxnet::nn
