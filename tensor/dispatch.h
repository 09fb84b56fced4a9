// dispatch.h — the kernel table: kernel[OpId][Device].
//
// Every tier-1 kernel has one OpId, one name and one signature, listed once in MUXNET_OP_LIST below.
// The CPU column is filled by register_cpu_kernels() (tensor/cpu/register.cpp), the CUDA column by
// register_cuda_kernels() (cuda/register.cu). CPU and CUDA kernels of an op have the same signature.
// The op layer (tensor/ops.h) validates shapes, allocates outputs and then calls
//
//     kernel<OpId::unary>(x.device())(UnaryOp::Exp, x, out);
//
// A missing entry throws: "softmax: no CUDA kernel (built without CUDA?)".
//
// Kernel contract: the op layer has already checked every shape, dtype and device, and outputs are
// allocated with the right shape and dtype. Elementwise kernels accept any strides (they iterate with
// tensor/iter.h); the others document which inputs must be contiguous, and the op layer ensures it.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace muxnet {

// ---- op codes of the families that share a kernel ----
enum class UnaryOp : uint8_t { Neg, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, Abs, COUNT };
// grad_in = grad_out * f'(.): Relu and Gelu read the input x; Tanh and Sigmoid read the output y.
enum class UnaryGradOp : uint8_t { Relu, Gelu, Tanh, Sigmoid, COUNT };
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Maximum, Minimum, COUNT };
// out = x (op) s; RSub is s - x, RDiv is s / x, Pow is x^s.
enum class ScalarOp : uint8_t { Add, Sub, RSub, Mul, Div, RDiv, Pow, Maximum, Minimum, COUNT };
// Comparisons produce a mask of 1 and 0 in the dtype of the inputs.
enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, COUNT };
enum class ReduceOp : uint8_t { Sum, Mean, Max, Min, COUNT };

// Geometry of a 2-d convolution over x: (B, C, H, W), as im2col/col2im see it.
struct Conv2dGeom {
  int64_t channels = 0, height = 0, width = 0;  // input C, H, W
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
};

// Geometry of a 2-d max pooling over x: (B, C, H, W). Padding positions never win the max.
struct Pool2dGeom {
  int64_t height = 0, width = 0;
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t out_h() const { return (height + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w - kernel_w) / stride_w + 1; }
};

// Which dims a reduction runs over (bit d set = reduce dim d).
using DimMask = uint32_t;

// Hyperparameters of one fused optimizer update (nn/optim.h holds the semantics, torch.optim's).
struct SgdStepArgs {
  double lr = 0, momentum = 0, weight_decay = 0;
  bool nesterov = false;
  bool first_step = false;  // the momentum buffer starts as the gradient (torch: buf = clone(g))
};
struct AdamWStepArgs {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  int64_t step = 1;  // this update's 1-based count, for the bias corrections
};

// ---- kernel signatures (outputs are passed as const Tensor&: a Tensor is a handle) ----
namespace sig {
using Copy = void (*)(const Tensor& src, const Tensor& dst);  // src broadcast to dst; casts dtype
using Fill = void (*)(const Tensor& dst, double value);
using Unary = void (*)(UnaryOp op, const Tensor& x, const Tensor& out);
using UnaryGrad = void (*)(UnaryGradOp op, const Tensor& grad_out, const Tensor& saved, const Tensor& grad_in);
using Binary = void (*)(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
using Scalar = void (*)(ScalarOp op, const Tensor& x, double s, const Tensor& out);
using Compare = void (*)(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out);
using Where = void (*)(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);
using MaskedFill = void (*)(const Tensor& x, const Tensor& mask, double value, const Tensor& out);
// out has x's shape with the reduced dims kept as size 1.
using Reduce = void (*)(ReduceOp op, const Tensor& x, DimMask dims, const Tensor& out);
using Argmax = void (*)(const Tensor& x, int dim, const Tensor& out);  // out: i64, keepdim shape
// a: (Bt, M, K) or (Bt, K, M) when trans_a; b: (Bt, K, N) or (Bt, N, K) when trans_b; out: (Bt, M, N).
// Every operand is 3-d; each 2-d matrix has one unit stride (row- or column-major); a batch stride of
// 0 shares one matrix across the batch. out = alpha * op(a) @ op(b) + beta * out.
using Matmul = void (*)(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a, bool trans_b,
                        double alpha, double beta);
// Row-wise over the last dim of contiguous x.
using Softmax = void (*)(const Tensor& x, const Tensor& out, bool log);
// grad_in from grad_out and the forward output y (softmax or log_softmax when log).
using SoftmaxBackward = void (*)(const Tensor& grad_out, const Tensor& y, const Tensor& grad_in, bool log);
// x: (R, C) contiguous; w, b: (C) or undefined; mean, rstd: (R).
using LayerNorm = void (*)(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
                           const Tensor& mean, const Tensor& rstd);
// Writes grad_x (=), accumulates grad_w and grad_b (+=) when they are defined.
using LayerNormBackward = void (*)(const Tensor& grad_y, const Tensor& x, const Tensor& w, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& grad_x, const Tensor& grad_w,
                                   const Tensor& grad_b);
// weight: (V, D) contiguous; idx: any shape, i32/i64, contiguous; out: idx.shape + (D).
using Embedding = void (*)(const Tensor& weight, const Tensor& idx, const Tensor& out);
// grad_weight[idx[i]] += grad_out[i], skipping rows equal to padding_idx (pass -1 for none).
using EmbeddingBackward = void (*)(const Tensor& grad_out, const Tensor& idx, int64_t padding_idx,
                                   const Tensor& grad_weight);
// out = x.index_select(dim, idx) for 1-d idx; x and out contiguous.
using IndexSelect = void (*)(const Tensor& x, int dim, const Tensor& idx, const Tensor& out);
// out.index_select(dim, idx) += src (the backward of index_select).
using IndexAdd = void (*)(const Tensor& src, int dim, const Tensor& idx, const Tensor& out);
// out[..i..] = x[..idx[..i..]..] along dim (torch.gather); idx has out's shape.
using Gather = void (*)(const Tensor& x, int dim, const Tensor& idx, const Tensor& out);
// out[..idx[..i..]..] += src[..i..] along dim (the backward of gather).
using ScatterAdd = void (*)(const Tensor& src, int dim, const Tensor& idx, const Tensor& out);
// x: (B, C, H, W) contiguous -> cols: (B, C*kh*kw, out_h*out_w).
using Im2col = void (*)(const Tensor& x, const Conv2dGeom& g, const Tensor& cols);
// cols: (B, C*kh*kw, out_h*out_w) -> x: (B, C, H, W), overlapping patches summed (x is overwritten).
using Col2im = void (*)(const Tensor& cols, const Conv2dGeom& g, const Tensor& x);
// x: (B, C, H, W) contiguous -> out, argmax: (B, C, oh, ow); argmax (i64) is the flat h*W+w index.
using MaxPool2d = void (*)(const Tensor& x, const Pool2dGeom& g, const Tensor& out, const Tensor& argmax);
// grad_in (B, C, H, W) = 0, then grad_in[argmax] += grad_out.
using MaxPool2dBackward = void (*)(const Tensor& grad_out, const Tensor& argmax, const Pool2dGeom& g,
                                   const Tensor& grad_in);
// In-place optimizer updates: every tensor contiguous, floating, same dtype and numel (a parameter
// arena, or one parameter); momentum_buf is undefined when momentum == 0.
using SgdStep = void (*)(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdStepArgs& a);
using AdamWStep = void (*)(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                           const AdamWStepArgs& a);
// Sum of x^2 over contiguous floating x, accumulated in f64 (gradient-norm clipping).
using SumSquares = double (*)(const Tensor& x);
}  // namespace sig

// X(id, signature): the one list of kernels. Names come from the ids, so none can be missing.
#define MUXNET_OP_LIST(X)                         \
  X(copy, sig::Copy)                              \
  X(fill, sig::Fill)                              \
  X(unary, sig::Unary)                            \
  X(unary_backward, sig::UnaryGrad)               \
  X(binary, sig::Binary)                          \
  X(binary_scalar, sig::Scalar)                   \
  X(compare, sig::Compare)                        \
  X(where, sig::Where)                            \
  X(masked_fill, sig::MaskedFill)                 \
  X(reduce, sig::Reduce)                          \
  X(argmax, sig::Argmax)                          \
  X(matmul, sig::Matmul)                          \
  X(softmax, sig::Softmax)                        \
  X(softmax_backward, sig::SoftmaxBackward)       \
  X(layer_norm, sig::LayerNorm)                   \
  X(layer_norm_backward, sig::LayerNormBackward)  \
  X(embedding, sig::Embedding)                    \
  X(embedding_backward, sig::EmbeddingBackward)   \
  X(index_select, sig::IndexSelect)               \
  X(index_add, sig::IndexAdd)                     \
  X(gather, sig::Gather)                          \
  X(scatter_add, sig::ScatterAdd)                 \
  X(im2col, sig::Im2col)                          \
  X(col2im, sig::Col2im)                          \
  X(max_pool2d, sig::MaxPool2d)                   \
  X(max_pool2d_backward, sig::MaxPool2dBackward)  \
  X(sgd_step, sig::SgdStep)                       \
  X(adamw_step, sig::AdamWStep)                   \
  X(sum_squares, sig::SumSquares)

enum class OpId : uint16_t {
#define MUXNET_OP_ENUM(id, fn) id,
  MUXNET_OP_LIST(MUXNET_OP_ENUM)
#undef MUXNET_OP_ENUM
  COUNT
};

inline constexpr const char* kOpNames[] = {
#define MUXNET_OP_NAME(id, fn) #id,
    MUXNET_OP_LIST(MUXNET_OP_NAME)
#undef MUXNET_OP_NAME
};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == size_t(OpId::COUNT),
              "every OpId needs a name in kOpNames");

inline const char* op_name(OpId op) { return kOpNames[size_t(op)]; }

// The signature type of each op.
template <OpId op> struct OpSignature;
#define MUXNET_OP_SIG(id, fn) \
  template <> struct OpSignature<OpId::id> { using type = fn; };
MUXNET_OP_LIST(MUXNET_OP_SIG)
#undef MUXNET_OP_SIG

namespace detail {
using AnyKernel = void (*)();
AnyKernel lookup_kernel(OpId op, Device device);  // throws when missing
void set_kernel(OpId op, Device device, AnyKernel fn);
}  // namespace detail

// The kernel for op on device; throws "<op>: no <device> kernel ..." when none is registered.
template <OpId op>
typename OpSignature<op>::type kernel(Device device) {
  return reinterpret_cast<typename OpSignature<op>::type>(detail::lookup_kernel(op, device));
}

template <OpId op>
void register_kernel(Device device, typename OpSignature<op>::type fn) {
  detail::set_kernel(op, device, reinterpret_cast<detail::AnyKernel>(fn));
}

bool has_kernel(OpId op, Device device);

// Fills the table (and installs device runtimes) once; lookups call it, so callers rarely need to.
void ensure_kernels_registered();

// Fill the CPU / CUDA columns (called once, on first lookup).
void register_cpu_kernels();
void register_cuda_kernels();  // a no-op in a build without CUDA

// MUXNET_EMULATE_CUDA=1 (tensor/device_emulation.cpp): the cuda device becomes host memory running
// the CPU kernels, to test device plumbing without a GPU. Checked once, at registration.
bool cuda_emulation_requested();
void install_cuda_emulation_runtime();

}  // namespace muxnet
