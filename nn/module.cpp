// module.cpp — parameter registry, dotted names, train/eval, the parameter and gradient arenas, dtype and
// device moves.
#include "nn/module.h"

#include "autograd/engine.h"
#include "tensor/device.h"

namespace muxnet::nn {

void Module::check_new_name(const std::string& name) const {
  MUXNET_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: invalid name '", name,
               "' (must be non-empty and contain no '.')");
  auto taken = [&](const auto& list) {
    for (const auto& item : list) {
      if (item.first == name) return true;
    }
    return false;
  };
  MUXNET_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "Module: name '", name,
               "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name);
  MUXNET_CHECK(value.defined(), "Module: parameter '", name, "' is undefined");
  MUXNET_CHECK(is_floating(value.dtype()), "Module: parameter '", name, "' must be floating, got ", value.dtype());
  if (!value.requires_grad()) value.requires_grad_(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  MUXNET_CHECK(value.defined(), "Module: buffer '", name, "' is undefined");
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  MUXNET_CHECK(module != nullptr, "Module: child '", name, "' is null");
  module->train(training_);
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool params, std::vector<NamedTensor>& out) const {
  for (const auto& [name, t] : params ? params_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, out);
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", true, out);
  return out;
}

std::vector<NamedTensor> Module::named_buffers() const {
  std::vector<NamedTensor> out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<NamedTensor> Module::state() const {
  std::vector<NamedTensor> out = named_parameters();
  for (auto& nt : named_buffers()) out.push_back(nt);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  NoGradGuard no_grad;
  if (packed()) {
    grad_arena_.zero_();
    return;
  }
  for (const Tensor& p : parameters()) p.zero_grad();
}

void rebind_storage(const Tensor& t, const Tensor& storage, int64_t offset) {
  TensorImpl* impl = t.unsafe_impl();
  MUXNET_CHECK(storage.dtype() == t.dtype(), "rebind_storage: dtype ", storage.dtype(), " vs ", t.dtype());
  MUXNET_CHECK(offset + t.numel() <= storage.numel(), "rebind_storage: ", t.numel(), " elements at offset ",
               offset, " do not fit ", storage.numel());
  impl->storage = storage.storage();
  impl->strides = contiguous_strides(impl->shape);
  impl->offset = storage.offset() + offset;
}

void Module::pack_parameters() {
  if (packed()) return;
  // A parameter shared by two modules (tied weights) is packed once.
  std::vector<NamedTensor> params;
  for (auto& nt : named_parameters()) {
    bool seen = false;
    for (auto& q : params) seen = seen || q.second.is_same(nt.second);
    if (!seen) params.push_back(nt);
  }
  if (params.empty()) return;
  const DType dtype = params[0].second.dtype();
  const Device device = params[0].second.device();
  int64_t total = 0;
  for (const auto& [name, p] : params) {
    MUXNET_CHECK(p.dtype() == dtype && p.device() == device, "pack_parameters: parameter '", name, "' is ",
                 p.dtype(), " on ", p.device(), ", expected ", dtype, " on ", device, " like the others");
    total += p.numel();
  }
  Tensor values = empty({total}, dtype, device);
  Tensor grads = zeros({total}, dtype, device);
  NoGradGuard no_grad;
  int64_t off = 0;
  for (const auto& [name, p] : params) {
    const int64_t n = p.numel();
    values.narrow(0, off, n).view(p.shape()).copy_(p.detach());
    Tensor old_grad = p.grad();
    rebind_storage(p, values, off);
    Tensor g = grads.narrow(0, off, n).view(p.shape());
    if (old_grad.defined()) g.copy_(old_grad);
    p.set_grad(g);
    off += n;
  }
  param_arena_ = values;
  grad_arena_ = grads;
}

void Module::to(DType dtype) {
  NoGradGuard no_grad;
  for (auto* list : {&params_, &buffers_}) {
    for (auto& [name, t] : *list) {
      if (t.dtype() == dtype || !is_floating(t.dtype())) continue;
      Tensor converted = t.detach().to(dtype).contiguous();
      Tensor old = t;
      TensorImpl* impl = t.unsafe_impl();
      impl->dtype = dtype;
      rebind_storage(t, converted.view({converted.numel()}), 0);
      if (old.requires_grad()) t.set_grad(Tensor());  // the old gradient has the wrong dtype
    }
  }
  for (auto& [name, child] : children_) child->to(dtype);
  param_arena_ = Tensor();
  grad_arena_ = Tensor();
}

void Module::to(Device device) {
  // Nothing to move: keep everything as it is, packed arenas included (model.to(cpu) on a cpu model is
  // a no-op).
  bool any = false;
  for (const auto& nt : state()) any = any || nt.second.device() != device;
  if (!any) return;
  require_device(device, "Module::to");  // refuse before moving anything, not halfway through
  NoGradGuard no_grad;
  for (auto* list : {&params_, &buffers_}) {
    for (auto& [name, t] : *list) {
      // Already there: nothing to do (also how a tensor shared by two modules moves only once).
      if (t.device() == device) continue;
      // A contiguous copy with the same dtype and shape on the other device; t then points at it, so
      // layers holding t see the moved values.
      Tensor moved = t.detach().to(device).contiguous();
      rebind_storage(t, moved.view({moved.numel()}), 0);
      if (t.requires_grad()) t.set_grad(Tensor());  // the old gradient lives on the other device
    }
  }
  for (auto& [name, child] : children_) child->to(device);
  // The arenas (if packed) stay on the old device and no longer back the parameters.
  param_arena_ = Tensor();
  grad_arena_ = Tensor();
}

}  // namespace muxnet::nn
