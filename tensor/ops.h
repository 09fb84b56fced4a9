// ops.h — the eager tensor operations (no autograd): validate, allocate the output, call the kernel.
//
// These are what autograd/ builds its differentiable functions on, and what the kernel tests call.
// Each function checks shapes, dtypes and devices and throws muxnet::Error naming the op, the
// expected and the actual ("matmul: inner dims differ: a=(4, 3) b=(5, 2)"); then it picks the kernel
// for the inputs' device from the dispatch table. Inputs may be any strided view: elementwise ops read
// strides directly, the others call contiguous() on inputs whose kernels need dense rows.
//
// Float ops accept f32 and f64 and return the inputs' dtype (inputs of one op must share a dtype:
// there is no implicit promotion). Comparisons return a 1/0 mask in the inputs' dtype.
#pragma once

#include <vector>

#include "tensor/dispatch.h"
#include "tensor/tensor.h"

namespace muxnet::ops {

// ---- elementwise unary (tensor/ops_elementwise.cpp, tensor/cpu/elementwise.cpp) ----
Tensor unary(UnaryOp op, const Tensor& x);
// In place: x = op(x) (x must not be an expanded view). For inference, where the input is not needed
// again: the result then stays in the cache lines just read instead of a second buffer.
void unary_(UnaryOp op, const Tensor& x);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default
Tensor abs(const Tensor& x);
// Derivative kernels: grad_out * f'(.); relu/gelu take the input x, tanh/sigmoid the output y.
Tensor unary_backward(UnaryGradOp op, const Tensor& grad_out, const Tensor& saved);
Tensor relu_backward(const Tensor& grad_out, const Tensor& x);
Tensor gelu_backward(const Tensor& grad_out, const Tensor& x);
Tensor tanh_backward(const Tensor& grad_out, const Tensor& y);
Tensor sigmoid_backward(const Tensor& grad_out, const Tensor& y);

// ---- elementwise binary with broadcasting ----
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor binary_scalar(ScalarOp op, const Tensor& x, double s);
Tensor add(const Tensor& x, double s);
Tensor sub(const Tensor& x, double s);
Tensor mul(const Tensor& x, double s);
Tensor div(const Tensor& x, double s);
Tensor rsub(double s, const Tensor& x);  // s - x
Tensor rdiv(double s, const Tensor& x);  // s / x
Tensor pow(const Tensor& x, double exponent);
Tensor maximum(const Tensor& x, double s);
Tensor minimum(const Tensor& x, double s);
// In place: a (op)= b, b broadcast to a's shape (a is written; used to accumulate gradients).
void binary_(BinaryOp op, const Tensor& a, const Tensor& b);
void add_(const Tensor& a, const Tensor& b);

// ---- comparisons, selection ----
Tensor compare(CompareOp op, const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
// cond != 0 ? a : b, all three broadcast together; cond may be any dtype.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// mask != 0 ? value : x; mask broadcasts to x.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// ---- reductions (tensor/ops_reduce.cpp, tensor/cpu/reduce.cpp) ----
// dims may be negative; an empty dims list reduces every dim. Sums of f32 accumulate in f64.
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, bool keepdim = false);
Tensor sum(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
// Index (i64) of the first maximum along dim.
Tensor argmax(const Tensor& x, int dim, bool keepdim = false);
// Sums a gradient of a broadcast result back to the shape of the operand that was broadcast.
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- matmul (tensor/ops_matmul.cpp, tensor/cpu/matmul.cpp) ----
// a: (..., M, K), b: (..., K, N) -> (..., M, N); trans_a / trans_b take the last two dims of a / b
// transposed. Batch dims must match, or one side may be 2-d (shared across the batch). Transposed
// views are passed to BLAS as transposes, without copies.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// out = alpha * op(a) @ op(b) + beta * out, into an existing out (beta = 1 accumulates).
void matmul_out(const Tensor& a, const Tensor& b, const Tensor& out, bool trans_a = false, bool trans_b = false,
                double alpha = 1.0, double beta = 0.0);

// ---- softmax and layer norm (tensor/ops_norm.cpp, tensor/cpu/softmax.cpp, tensor/cpu/layernorm.cpp) ----
// Over the last dim, numerically stable (the row max is subtracted first).
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);
Tensor softmax_backward(const Tensor& grad_out, const Tensor& y);      // y = softmax(x)
Tensor log_softmax_backward(const Tensor& grad_out, const Tensor& y);  // y = log_softmax(x)

struct LayerNormResult {
  Tensor y;     // x's shape
  Tensor mean;  // x's shape without the last dim
  Tensor rstd;  // 1 / sqrt(var + eps), biased variance as PyTorch
};
// Normalises over the last dim; weight and bias (C) may be undefined tensors.
LayerNormResult layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
struct LayerNormGrads {
  Tensor x, weight, bias;  // weight undefined when the forward had none; bias always (sum of grad_y)
};
LayerNormGrads layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd);

// ---- indexing and joins (tensor/ops_index.cpp, tensor/cpu/index.cpp) ----
// weight: (V, D); idx: any shape of i32/i64 in [0, V) -> idx.shape + (D).
Tensor embedding(const Tensor& weight, const Tensor& idx);
// grad_weight[idx] += grad_out (rows equal to padding_idx skipped; -1 for none).
void embedding_backward_(const Tensor& grad_weight, const Tensor& grad_out, const Tensor& idx,
                         int64_t padding_idx = -1);
Tensor index_select(const Tensor& x, int dim, const Tensor& idx);  // idx 1-d
void index_add_(const Tensor& out, int dim, const Tensor& idx, const Tensor& src);
Tensor gather(const Tensor& x, int dim, const Tensor& idx);
void scatter_add_(const Tensor& out, int dim, const Tensor& idx, const Tensor& src);
Tensor concat(const std::vector<Tensor>& xs, int dim);
Tensor stack(const std::vector<Tensor>& xs, int dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int dim);  // views; last may be shorter
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);

// ---- convolution helpers and pooling (tensor/ops_conv.cpp, tensor/cpu/conv.cpp, tensor/cpu/pool.cpp) ----
// x: (B, C, H, W) -> (B, C*kh*kw, oh*ow)
Tensor im2col(const Tensor& x, const Conv2dGeom& g);
// cols: (B, C*kh*kw, oh*ow) -> (B, C, H, W), overlapping patches summed.
Tensor col2im(const Tensor& cols, const Conv2dGeom& g);
struct MaxPoolResult {
  Tensor out;     // (B, C, oh, ow)
  Tensor argmax;  // (B, C, oh, ow) i64: flat index h * W + w of the winner in its input plane
};
MaxPoolResult max_pool2d(const Tensor& x, const Pool2dGeom& g);
Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& argmax, const Pool2dGeom& g,
                           const Shape& input_shape);

// ---- shared checks used by every op file ----
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& x);
void check_index_dtype(const char* op, const Tensor& idx);

}  // namespace muxnet::ops
