// nn_test_util.h — gradient checks through a Module: with respect to its inputs AND every parameter.
//
// gradcheck() perturbs fresh leaf copies of the tensors it is given. To check a module's parameters,
// each parameter is bound to its leaf for the duration of the check: the parameter's TensorImpl is
// pointed at the leaf's storage and shares the leaf's autograd record, so the module computes with
// the perturbed values and its gradients land in the leaf. The parameters are restored afterwards.
#pragma once

#include <functional>
#include <vector>

#include "autograd/gradcheck.h"
#include "nn/module.h"

namespace muxnet::test {

// forward(inputs) runs the module; the module must already be f64 (module.to(DType::F64)).
inline GradcheckResult gradcheck_module(nn::Module& module, const std::vector<Tensor>& inputs,
                                        const std::function<Tensor(const std::vector<Tensor>&)>& forward,
                                        const GradcheckOptions& options = {}) {
  std::vector<Tensor> params = module.parameters();
  struct Saved {
    Tensor storage;  // a view of the parameter's original values
    std::shared_ptr<AutogradMeta> meta;
  };
  std::vector<Saved> saved;
  std::vector<Tensor> all = inputs;
  for (const Tensor& p : params) {
    MUXNET_CHECK(p.dtype() == DType::F64, "gradcheck_module: convert the module to f64 first");
    saved.push_back({p.detach(), p.autograd_meta()});
    all.push_back(p.detach().clone());
  }
  const size_t n_in = inputs.size();
  auto f = [&](const std::vector<Tensor>& leaves) {
    for (size_t k = 0; k < params.size(); ++k) {
      const Tensor& leaf = leaves[n_in + k];
      nn::rebind_storage(params[k], leaf.detach().view({leaf.numel()}), 0);
      params[k].set_autograd_meta(leaf.autograd_meta());
    }
    return forward(std::vector<Tensor>(leaves.begin(), leaves.begin() + long(n_in)));
  };
  GradcheckResult r = gradcheck(f, all, options);
  for (size_t k = 0; k < params.size(); ++k) {
    TensorImpl* impl = params[k].unsafe_impl();
    impl->storage = saved[k].storage.storage();
    impl->offset = saved[k].storage.offset();
    impl->strides = saved[k].storage.strides();
    params[k].set_autograd_meta(saved[k].meta);
  }
  return r;
}

}  // namespace muxnet::test

// CHECK_GRADCHECK_MODULE(module, {x}, [&](const std::vector<Tensor>& in) { ... }): inputs are passed
// unparenthesised so a braced list works; a list with commas needs parentheses: (std::vector<Tensor>{x, y}).
#define CHECK_GRADCHECK_MODULE(module, inputs, ...)                                       \
  do {                                                                                    \
    auto _r = ::muxnet::test::gradcheck_module((module), inputs, __VA_ARGS__);            \
    INFO(_r.report());                                                                    \
    CHECK(_r.ok);                                                                         \
  } while (0)
