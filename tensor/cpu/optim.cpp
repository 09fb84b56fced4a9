// optim.cpp — CPU kernels of the fused optimizer updates (OpId::sgd_step, OpId::adamw_step) and of the
// f64 sum of squares behind gradient-norm clipping (OpId::sum_squares).
//
// Each update is one pass over contiguous memory: a whole parameter arena when the model is packed
// (nn/module.h), else one parameter. Every element is updated independently from its own parameter,
// gradient and state, so results do not depend on how parallel_for splits the range.
//
// Semantics are torch.optim's single-tensor (for-loop) implementations, with the same operation order
// in the tensor's dtype, so f32 results track PyTorch's to a few ulps:
//   SGD:   g = grad + wd * p;  b = first ? g : mu * b + g;  g = nesterov ? g + mu * b : b;  p += -lr * g
//   AdamW: p *= 1 - lr * wd;  m = lerp(m, g, 1 - beta1);  v = v * beta2 + (1 - beta2) * g * g;
//          p += -(lr / bc1) * (m / (sqrt(v) / sqrt(bc2) + eps)),  bc_k = 1 - beta_k^step
// What this is not: dampening, maximize, amsgrad or foreach/fused multi-tensor variants of torch.
// NOTE: the compiler may contract a * b + c into an FMA (g++'s default); results then differ from an
// unfused evaluation in the last bit, identically for every element and thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

// Rough element operations per update, for parallel_for's threshold.
constexpr int64_t kUpdateCost = 16;

// The per-element update over [begin, end), with restrict pointers and the two structural switches as
// template parameters so that the loop vectorises (the other switches are loop-invariant selects).
template <typename T, bool kDecay, bool kMomentum>
void sgd_range(T* __restrict p, const T* __restrict g, T* __restrict b, int64_t begin, int64_t end, T wd, T mu,
               T neg_lr, bool first, bool nesterov) {
  for (int64_t i = begin; i < end; ++i) {
    T d = g[i];
    if (kDecay) d = d + wd * p[i];  // torch: grad.add(param, alpha=weight_decay)
    if (kMomentum) {
      const T bi = first ? d : mu * b[i] + d;  // torch: buf = clone(grad), then buf.mul_(mu).add_(grad)
      b[i] = bi;
      d = nesterov ? d + mu * bi : bi;
    }
    p[i] = p[i] + neg_lr * d;  // torch: param.add_(grad, alpha=-lr)
  }
}

template <typename T, bool kDecay, bool kMomentum>
void sgd_run(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdStepArgs& a) {
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* b = kMomentum ? buf.data<T>() : nullptr;
  const T wd = T(a.weight_decay), mu = T(a.momentum), neg_lr = T(-a.lr);
  parallel_for(param.numel(), kUpdateCost, [&](int64_t begin, int64_t end) {
    sgd_range<T, kDecay, kMomentum>(p, g, b, begin, end, wd, mu, neg_lr, a.first_step, a.nesterov);
  });
}

template <typename T>
void sgd_typed(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdStepArgs& a) {
  // torch skips the decay term when weight_decay == 0 (0 * inf would be NaN).
  const bool decay = a.weight_decay != 0.0, momentum = a.momentum != 0.0;
  if (decay && momentum) sgd_run<T, true, true>(param, grad, buf, a);
  else if (decay) sgd_run<T, true, false>(param, grad, buf, a);
  else if (momentum) sgd_run<T, false, true>(param, grad, buf, a);
  else sgd_run<T, false, false>(param, grad, buf, a);
}

void sgd_step_cpu(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdStepArgs& a) {
  dispatch_floating(param.dtype(), "sgd_step", [&](auto tag) {
    using T = typename decltype(tag)::type;
    sgd_typed<T>(param, grad, buf, a);
  });
}

// The per-element update over [begin, end). A function of its own, with restrict pointers and the lerp
// form as a template parameter, so that the loop has no branch and vectorises.
template <typename T>
struct AdamWConsts {
  T decay, w1, one_minus_w1, beta2, w2, bc2_sqrt, eps, neg_step_size;
};

template <typename T, bool kLerpFromM>
void adamw_range(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t begin,
                 int64_t end, const AdamWConsts<T> c) {
  for (int64_t i = begin; i < end; ++i) {
    const T gi = g[i];
    const T pi = p[i] * c.decay;  // decoupled weight decay first: param.mul_(1 - lr * wd)
    // torch's lerp(m, g, w) takes the form that is exact at its nearer end.
    const T mi = kLerpFromM ? m[i] + c.w1 * (gi - m[i]) : gi - (gi - m[i]) * c.one_minus_w1;
    const T vi = v[i] * c.beta2 + c.w2 * gi * gi;  // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
    const T denom = std::sqrt(vi) / c.bc2_sqrt + c.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + c.neg_step_size * (mi / denom);  // param.addcdiv_(m, denom, value=-lr / bc1)
  }
}

template <typename T, bool kLerpFromM>
void adamw_run(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const AdamWStepArgs& a) {
  // The scalars are computed in double, as torch does in Python, then rounded to T once.
  const double bc1 = 1.0 - std::pow(a.beta1, double(a.step));
  const double bc2 = 1.0 - std::pow(a.beta2, double(a.step));
  AdamWConsts<T> c;
  c.decay = T(1.0 - a.lr * a.weight_decay);
  c.w1 = T(1.0 - a.beta1);
  c.one_minus_w1 = T(1) - c.w1;
  c.beta2 = T(a.beta2);
  c.w2 = T(1.0 - a.beta2);
  c.bc2_sqrt = T(std::sqrt(bc2));
  c.eps = T(a.eps);
  c.neg_step_size = T(-(a.lr / bc1));
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* m = exp_avg.data<T>();
  T* v = exp_avg_sq.data<T>();
  parallel_for(param.numel(), kUpdateCost,
               [&](int64_t begin, int64_t end) { adamw_range<T, kLerpFromM>(p, g, m, v, begin, end, c); });
}

template <typename T>
void adamw_typed(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const AdamWStepArgs& a) {
  if ((1.0 - a.beta1) < 0.5) {
    adamw_run<T, true>(param, grad, exp_avg, exp_avg_sq, a);
  } else {
    adamw_run<T, false>(param, grad, exp_avg, exp_avg_sq, a);
  }
}

void adamw_step_cpu(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                    const AdamWStepArgs& a) {
  dispatch_floating(param.dtype(), "adamw_step", [&](auto tag) {
    using T = typename decltype(tag)::type;
    adamw_typed<T>(param, grad, exp_avg, exp_avg_sq, a);
  });
}

// Blocks of a fixed size (a function of nothing but this constant): partial sums per block run in
// parallel and are added in block order, so the result does not depend on the thread count.
constexpr int64_t kSquaresBlock = 16384;

double sum_squares_cpu(const Tensor& x) {
  double total = 0.0;
  dispatch_floating(x.dtype(), "sum_squares", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* d = x.data<T>();
    const int64_t n = x.numel();
    const int64_t nblocks = (n + kSquaresBlock - 1) / kSquaresBlock;
    std::vector<double> partial(size_t(nblocks), 0.0);
    parallel_for(nblocks, kSquaresBlock, [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk) {
        const T* s = d + blk * kSquaresBlock;
        const int64_t len = std::min(kSquaresBlock, n - blk * kSquaresBlock);
        partial[size_t(blk)] = lane_sum(len, [s](int64_t i) {
          const double v = double(s[i]);
          return v * v;
        });
      }
    });
    for (double s : partial) total += s;
  });
  return total;
}

}  // namespace

void register_cpu_optim() {
  register_kernel<OpId::sgd_step>(Device::CPU, sgd_step_cpu);
  register_kernel<OpId::adamw_step>(Device::CPU, adamw_step_cpu);
  register_kernel<OpId::sum_squares>(Device::CPU, sum_squares_cpu);
}

}  // namespace muxnet
