// optim.cu — CUDA kernels of the fused optimizer updates (OpId::sgd_step, OpId::adamw_step).
// The oracle is tensor/cpu/optim.cpp; sum_squares (gradient-norm clipping) lives in cuda/reduce.cu.
//
// Each update is one grid-stride pass over contiguous memory: a whole parameter arena when the model is
// packed (nn/module.h), else one parameter. Every element is updated independently from its own
// parameter, gradient and state.
//
// Semantics are torch.optim's single-tensor implementations, with the CPU kernel's operation order in
// the tensor's dtype, and the scalars computed on the host in double and rounded to T once:
//   SGD:   g = grad + wd * p;  b = first ? g : mu * b + g;  g = nesterov ? g + mu * b : b;  p += -lr * g
//   AdamW: p *= 1 - lr * wd;  m = lerp(m, g, 1 - beta1);  v = v * beta2 + (1 - beta2) * g * g;
//          p += -(lr / bc1) * (m / (sqrt(v) / sqrt(bc2) + eps)),  bc_k = 1 - beta_k^step
// NOTE: nvcc contracts a * b + c into an FMA (its default, as for PyTorch's CUDA kernels); results then
// differ from an unfused evaluation in the last bit. sqrt and division are IEEE (no fast math).
// What this is not: dampening, maximize, amsgrad or multi-tensor variants of torch.
#include <cmath>

#include "cuda/common.cuh"

namespace muxnet {

namespace {

__device__ inline float sqrt_t(float v) { return sqrtf(v); }
__device__ inline double sqrt_t(double v) { return sqrt(v); }

// p, g, b: (n) contiguous; b is null unless kMomentum. The two structural switches are template
// parameters; first and nesterov are uniform selects.
template <typename T, bool kDecay, bool kMomentum>
__global__ void sgd_kernel(T* p, const T* g, T* b, int64_t n, T wd, T mu, T neg_lr, bool first, bool nesterov) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
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

// The AdamW scalars, rounded to T once on the host.
template <typename T>
struct AdamWConsts {
  T decay, w1, one_minus_w1, beta2, w2, bc2_sqrt, eps, neg_step_size;
};

// p, g, m, v: (n) contiguous. kLerpFromM picks the form of torch's lerp that is exact at its nearer end.
template <typename T, bool kLerpFromM>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, const AdamWConsts<T> c) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const T gi = g[i];
    const T pi = p[i] * c.decay;  // decoupled weight decay first: param.mul_(1 - lr * wd)
    const T mi = kLerpFromM ? m[i] + c.w1 * (gi - m[i]) : gi - (gi - m[i]) * c.one_minus_w1;
    const T vi = v[i] * c.beta2 + c.w2 * gi * gi;  // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
    const T denom = sqrt_t(vi) / c.bc2_sqrt + c.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + c.neg_step_size * (mi / denom);  // param.addcdiv_(m, denom, value=-lr / bc1)
  }
}

// ---------------------------------------------------------------- launchers

template <typename T, bool kDecay, bool kMomentum>
void sgd_run(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdStepArgs& a) {
  const int64_t n = param.numel();
  T* b = kMomentum ? buf.data<T>() : nullptr;
  sgd_kernel<T, kDecay, kMomentum><<<cuda::grid_for(n), cuda::kBlock, 0, cuda::stream()>>>(
      param.data<T>(), grad.data<T>(), b, n, T(a.weight_decay), T(a.momentum), T(-a.lr), a.first_step, a.nesterov);
  CUDA_CHECK_LAUNCH("sgd_kernel");
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

// param, grad, momentum_buf: contiguous, same dtype and numel; momentum_buf undefined when momentum == 0.
void sgd_step_cuda(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdStepArgs& a) {
  if (param.numel() == 0) return;
  switch (param.dtype()) {
    case DType::F32: sgd_typed<float>(param, grad, buf, a); return;
    case DType::F64: sgd_typed<double>(param, grad, buf, a); return;
    default: MUXNET_FAIL("sgd_step (CUDA): expected a floating dtype (f32 or f64), got ", param.dtype());
  }
}

template <typename T>
void adamw_typed(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
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
  const int64_t n = param.numel();
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* m = exp_avg.data<T>();
  T* v = exp_avg_sq.data<T>();
  if ((1.0 - a.beta1) < 0.5) {
    adamw_kernel<T, true><<<cuda::grid_for(n), cuda::kBlock, 0, cuda::stream()>>>(p, g, m, v, n, c);
  } else {
    adamw_kernel<T, false><<<cuda::grid_for(n), cuda::kBlock, 0, cuda::stream()>>>(p, g, m, v, n, c);
  }
  CUDA_CHECK_LAUNCH("adamw_kernel");
}

// param, grad, exp_avg, exp_avg_sq: contiguous, same dtype and numel.
void adamw_step_cuda(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                     const AdamWStepArgs& a) {
  if (param.numel() == 0) return;
  switch (param.dtype()) {
    case DType::F32: adamw_typed<float>(param, grad, exp_avg, exp_avg_sq, a); return;
    case DType::F64: adamw_typed<double>(param, grad, exp_avg, exp_avg_sq, a); return;
    default: MUXNET_FAIL("adamw_step (CUDA): expected a floating dtype (f32 or f64), got ", param.dtype());
  }
}

}  // namespace

void register_cuda_optim() {
  register_kernel<OpId::sgd_step>(Device::CUDA, sgd_step_cuda);
  register_kernel<OpId::adamw_step>(Device::CUDA, adamw_step_cuda);
}

}  // namespace muxnet
