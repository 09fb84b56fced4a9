// optim.cpp — SGD and AdamW over a packed arena (one kernel call) or per parameter (see optim.h).
#include "nn/optim.h"

#include <cmath>
#include <set>

#include "tensor/grad_mode.h"

namespace muxnet::nn {

namespace {

// A parameter listed twice (tied weights) is optimized once, under its first name.
std::vector<NamedTensor> unique_params(const std::vector<NamedTensor>& list) {
  std::vector<NamedTensor> out;
  for (const auto& nt : list) {
    bool seen = false;
    for (const auto& q : out) seen = seen || q.second.is_same(nt.second);
    if (!seen) out.push_back(nt);
  }
  return out;
}

std::vector<NamedTensor> numbered(const std::vector<Tensor>& params) {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < params.size(); ++i) out.emplace_back(std::to_string(i), params[i]);
  return out;
}

double need_scalar(const std::map<std::string, double>& scalars, const std::string& key, const char* who) {
  auto it = scalars.find(key);
  MUXNET_CHECK(it != scalars.end(), who, "::load_state: missing scalar '", key, "'");
  return it->second;
}

}  // namespace

// ---------------------------------------------------------------- Optimizer

Optimizer::Optimizer(const char* name, double lr, const Module& module) : name_(name), lr_(lr) {
  MUXNET_CHECK(lr >= 0.0, name, ": invalid learning rate ", lr);
  params_ = unique_params(module.named_parameters());
  MUXNET_CHECK(!params_.empty(), name, ": the module has no parameters");
  if (!module.packed()) {
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& [pname, p] = params_[i];
      MUXNET_CHECK(p.is_contiguous(), name, ": parameter '", pname, "' is not contiguous");
      slots_.push_back(Slot{pname, p, Tensor(), {}, 0});
      slot_of_.push_back(i);
      offset_of_.push_back(0);
    }
    return;
  }
  // Packed: the parameters must be exactly the arena, in order (pack_parameters' layout).
  packed_ = true;
  const Tensor& arena = module.param_arena();
  int64_t off = 0;
  for (const auto& [pname, p] : params_) {
    MUXNET_CHECK(p.storage() == arena.storage() && p.offset() == arena.offset() + off && p.is_contiguous(),
                 name, ": parameter '", pname, "' is not where pack_parameters put it");
    slot_of_.push_back(0);
    offset_of_.push_back(off);
    off += p.numel();
  }
  MUXNET_CHECK(off == arena.numel(), name, ": the parameters cover ", off, " of the arena's ", arena.numel(),
               " elements");
  slots_.push_back(Slot{"parameter arena", arena, module.grad_arena(), {}, 0});
}

Optimizer::Optimizer(const char* name, double lr, const std::vector<NamedTensor>& params) : name_(name), lr_(lr) {
  MUXNET_CHECK(lr >= 0.0, name, ": invalid learning rate ", lr);
  params_ = unique_params(params);
  MUXNET_CHECK(!params_.empty(), name, ": got an empty parameter list");
  std::set<std::string> names;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    MUXNET_CHECK(p.defined(), name, ": parameter '", pname, "' is undefined");
    MUXNET_CHECK(names.insert(pname).second, name, ": parameter name '", pname, "' appears twice");
    MUXNET_CHECK(is_floating(p.dtype()), name, ": parameter '", pname, "' must be floating, got ", p.dtype());
    MUXNET_CHECK(p.is_contiguous(), name, ": parameter '", pname, "' is not contiguous");
    slots_.push_back(Slot{pname, p, Tensor(), {}, 0});
    slot_of_.push_back(i);
    offset_of_.push_back(0);
  }
}

void Optimizer::init_state() {
  const size_t nbuf = state_names().size();
  for (Slot& s : slots_) {
    s.buffers.clear();
    for (size_t k = 0; k < nbuf; ++k) s.buffers.push_back(zeros(s.param.shape(), s.param.dtype(), s.param.device()));
  }
}

void Optimizer::set_lr(double lr) {
  MUXNET_CHECK(lr >= 0.0, name_, ": invalid learning rate ", lr);
  lr_ = lr;
}

void Optimizer::check_not_moved() const {
  const char* hint = " (Module::to or pack_parameters after the optimizer was built? build the optimizer again)";
  if (packed_) {
    const Slot& s = slots_[0];
    for (size_t i = 0; i < params_.size(); ++i) {
      const Tensor& p = params_[i].second;
      MUXNET_CHECK(p.storage() == s.param.storage() && p.offset() == s.param.offset() + offset_of_[i], name_,
                   ": parameter '", params_[i].first, "' is no longer in the arena", hint);
    }
    return;
  }
  for (const Slot& s : slots_) {
    MUXNET_CHECK(s.param.is_contiguous(), name_, ": parameter '", s.name, "' is no longer contiguous", hint);
    MUXNET_CHECK(s.buffers.empty() || s.buffers[0].dtype() == s.param.dtype(), name_, ": parameter '", s.name,
                 "' is now ", s.param.dtype(), ", its state ", s.buffers[0].dtype(), hint);
    // Module::to(Device) keeps the parameter's identity but not its device: the state stayed behind.
    MUXNET_CHECK(s.buffers.empty() || s.buffers[0].device() == s.param.device(), name_, ": parameter '", s.name,
                 "' is now on ", s.param.device(), ", its state on ", s.buffers[0].device(), hint);
  }
}

void Optimizer::step() {
  NoGradGuard no_grad;
  check_not_moved();
  for (Slot& s : slots_) {
    Tensor g = packed_ ? s.grad : s.param.grad();
    if (!g.defined()) continue;  // no gradient reached this parameter: skipped, as torch
    MUXNET_CHECK(g.shape() == s.param.shape() && g.dtype() == s.param.dtype() && g.device() == s.param.device(),
                 name_, ": gradient of '", s.name, "' is ", g.dtype(), " ", g.shape(), " on ", g.device(),
                 ", expected ", s.param.dtype(), " ", s.param.shape(), " on ", s.param.device());
    if (!g.is_contiguous()) g = g.contiguous();
    ++s.steps;
    update(s, g);
  }
  ++step_count_;
}

void Optimizer::zero_grad() {
  NoGradGuard no_grad;
  if (packed_) {
    slots_[0].grad.zero_();
    return;
  }
  for (const auto& [pname, p] : params_) p.zero_grad();
}

OptimizerState Optimizer::state(const std::string& prefix) const {
  NoGradGuard no_grad;
  OptimizerState st;
  const std::vector<std::string> names = state_names();
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    const Slot& s = slots_[slot_of_[i]];
    for (size_t k = 0; k < names.size(); ++k) {
      Tensor b = packed_ ? s.buffers[k].narrow(0, offset_of_[i], p.numel()).view(p.shape()) : s.buffers[k];
      st.tensors.emplace_back(prefix + pname + "." + names[k], b.clone());
    }
    st.tensors.emplace_back(prefix + pname + ".step", scalar_tensor(double(s.steps), DType::I64));
  }
  st.scalars["lr"] = lr_;
  st.scalars["step_count"] = double(step_count_);
  export_hyper(st.scalars);
  return st;
}

void Optimizer::load_state(const OptimizerState& st, const std::string& prefix) {
  std::map<std::string, Tensor> by_name;
  for (const auto& [n, t] : st.tensors) {
    if (n.compare(0, prefix.size(), prefix) == 0) by_name[n] = t;
  }
  auto find = [&](const std::string& n) -> const Tensor& {
    auto it = by_name.find(n);
    MUXNET_CHECK(it != by_name.end(), name_, "::load_state: missing tensor '", n, "'");
    return it->second;
  };
  // Check everything before changing anything.
  const std::vector<std::string> names = state_names();
  std::vector<std::vector<Tensor>> values(params_.size());
  std::vector<int64_t> steps(params_.size());
  std::set<std::string> used;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    for (const std::string& k : names) {
      const std::string n = prefix + pname + "." + k;
      const Tensor& t = find(n);
      MUXNET_CHECK(t.defined() && t.shape() == p.shape() && t.dtype() == p.dtype(), name_, "::load_state: '", n,
                   "' is ", t.dtype(), " ", t.shape(), ", expected ", p.dtype(), " ", p.shape());
      values[i].push_back(t);
      used.insert(n);
    }
    const std::string n = prefix + pname + ".step";
    const Tensor& t = find(n);
    MUXNET_CHECK(t.defined() && t.ndim() == 0 && t.dtype() == DType::I64, name_, "::load_state: '", n,
                 "' must be a 0-d i64 tensor, got ", t.dtype(), " ", t.shape());
    steps[i] = t.item<int64_t>();
    MUXNET_CHECK(steps[i] >= 0, name_, "::load_state: '", n, "' is negative (", steps[i], ")");
    if (packed_) {
      MUXNET_CHECK(steps[i] == steps[0], name_, "::load_state: a packed optimizer has one step count, but '",
                   prefix, params_[0].first, ".step' is ", steps[0], " and '", n, "' is ", steps[i]);
    }
    used.insert(n);
  }
  for (const auto& [n, t] : by_name) {
    MUXNET_CHECK(used.count(n), name_, "::load_state: unexpected tensor '", n, "'");
  }
  const double lr = need_scalar(st.scalars, "lr", name_);
  const double count = need_scalar(st.scalars, "step_count", name_);
  MUXNET_CHECK(lr >= 0.0, name_, "::load_state: invalid learning rate ", lr);
  MUXNET_CHECK(count >= 0.0 && count == std::floor(count), name_, "::load_state: invalid step_count ", count);
  import_hyper(st.scalars);  // validates its own keys before assigning

  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Slot& s = slots_[slot_of_[i]];
    const Tensor& p = params_[i].second;
    for (size_t k = 0; k < names.size(); ++k) {
      Tensor dst = packed_ ? s.buffers[k].narrow(0, offset_of_[i], p.numel()).view(p.shape()) : s.buffers[k];
      dst.copy_(values[i][k].to(dst.device()));
    }
    s.steps = steps[i];
  }
  lr_ = lr;
  step_count_ = int64_t(count);
}

// ---------------------------------------------------------------- SGD

SGD::SGD(const Module& module, double lr, double mu, double wd, bool nest)
    : Optimizer("SGD", lr, module), momentum(mu), weight_decay(wd), nesterov(nest) {
  validate();
  init_state();
}

SGD::SGD(const std::vector<Tensor>& params, double lr, double mu, double wd, bool nest)
    : SGD(numbered(params), lr, mu, wd, nest) {}

SGD::SGD(const std::vector<NamedTensor>& params, double lr, double mu, double wd, bool nest)
    : Optimizer("SGD", lr, params), momentum(mu), weight_decay(wd), nesterov(nest) {
  validate();
  init_state();
}

void SGD::validate() const {
  MUXNET_CHECK(momentum >= 0.0, "SGD: invalid momentum ", momentum);
  MUXNET_CHECK(weight_decay >= 0.0, "SGD: invalid weight_decay ", weight_decay);
  MUXNET_CHECK(!nesterov || momentum > 0.0, "SGD: nesterov needs a momentum > 0");
}

std::vector<std::string> SGD::state_names() const {
  if (momentum == 0.0) return {};
  return {"momentum_buffer"};
}

void SGD::update(Slot& slot, const Tensor& grad) {
  // The buffers were made for the momentum given at construction.
  MUXNET_CHECK(momentum == 0.0 || !slot.buffers.empty(), "SGD: momentum was 0 when the optimizer was built");
  validate();
  SgdStepArgs a;
  a.lr = lr_;
  a.momentum = momentum;
  a.weight_decay = weight_decay;
  a.nesterov = nesterov;
  a.first_step = slot.steps == 1;
  kernel<OpId::sgd_step>(slot.param.device())(slot.param, grad, momentum != 0.0 ? slot.buffers[0] : Tensor(), a);
}

void SGD::export_hyper(std::map<std::string, double>& s) const {
  s["momentum"] = momentum;
  s["weight_decay"] = weight_decay;
  s["nesterov"] = nesterov ? 1.0 : 0.0;
}

void SGD::import_hyper(const std::map<std::string, double>& s) {
  const double mu = need_scalar(s, "momentum", "SGD");
  const double wd = need_scalar(s, "weight_decay", "SGD");
  const double nest = need_scalar(s, "nesterov", "SGD");
  MUXNET_CHECK((mu == 0.0) == (momentum == 0.0), "SGD::load_state: saved momentum ", mu,
               " and this optimizer's ", momentum, " differ in whether there is a momentum buffer");
  momentum = mu;
  weight_decay = wd;
  nesterov = nest != 0.0;
  validate();
}

// ---------------------------------------------------------------- AdamW

AdamW::AdamW(const Module& module, double lr, double b1, double b2, double e, double wd)
    : Optimizer("AdamW", lr, module), beta1(b1), beta2(b2), eps(e), weight_decay(wd) {
  validate();
  init_state();
}

AdamW::AdamW(const std::vector<Tensor>& params, double lr, double b1, double b2, double e, double wd)
    : AdamW(numbered(params), lr, b1, b2, e, wd) {}

AdamW::AdamW(const std::vector<NamedTensor>& params, double lr, double b1, double b2, double e, double wd)
    : Optimizer("AdamW", lr, params), beta1(b1), beta2(b2), eps(e), weight_decay(wd) {
  validate();
  init_state();
}

void AdamW::validate() const {
  MUXNET_CHECK(beta1 >= 0.0 && beta1 < 1.0, "AdamW: invalid beta1 ", beta1, " (must be in [0, 1))");
  MUXNET_CHECK(beta2 >= 0.0 && beta2 < 1.0, "AdamW: invalid beta2 ", beta2, " (must be in [0, 1))");
  MUXNET_CHECK(eps >= 0.0, "AdamW: invalid eps ", eps);
  MUXNET_CHECK(weight_decay >= 0.0, "AdamW: invalid weight_decay ", weight_decay);
}

std::vector<std::string> AdamW::state_names() const { return {"exp_avg", "exp_avg_sq"}; }

void AdamW::update(Slot& slot, const Tensor& grad) {
  validate();
  AdamWStepArgs a;
  a.lr = lr_;
  a.beta1 = beta1;
  a.beta2 = beta2;
  a.eps = eps;
  a.weight_decay = weight_decay;
  a.step = slot.steps;
  kernel<OpId::adamw_step>(slot.param.device())(slot.param, grad, slot.buffers[0], slot.buffers[1], a);
}

void AdamW::export_hyper(std::map<std::string, double>& s) const {
  s["beta1"] = beta1;
  s["beta2"] = beta2;
  s["eps"] = eps;
  s["weight_decay"] = weight_decay;
}

void AdamW::import_hyper(const std::map<std::string, double>& s) {
  const double b1 = need_scalar(s, "beta1", "AdamW"), b2 = need_scalar(s, "beta2", "AdamW");
  const double e = need_scalar(s, "eps", "AdamW"), wd = need_scalar(s, "weight_decay", "AdamW");
  MUXNET_CHECK(b1 >= 0.0 && b1 < 1.0 && b2 >= 0.0 && b2 < 1.0 && e >= 0.0 && wd >= 0.0,
               "AdamW::load_state: invalid hyperparameters beta1=", b1, " beta2=", b2, " eps=", e,
               " weight_decay=", wd);
  beta1 = b1;
  beta2 = b2;
  eps = e;
  weight_decay = wd;
}

}  // namespace muxnet::nn
