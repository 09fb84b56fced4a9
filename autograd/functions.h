// functions.h — the differentiable functions: muxnet's user-facing math.
//
// Each function computes its forward with the raw ops of tensor/ops.h and, when an input requires
// grad (and no NoGradGuard is alive), records a backward closure (autograd/engine.h). Forward and
// backward of a family live together in autograd/functions/<family>.cpp; each backward cites the
// forward line it differentiates. Shapes follow PyTorch; errors name the function.
//
// Tensor's own view methods (reshape, transpose, permute, narrow, slice, select, expand, squeeze,
// unsqueeze, flatten, contiguous, clone, to) are differentiable too; the free functions below with
// the same names are provided for symmetry.
#pragma once

#include <vector>

#include "autograd/engine.h"
#include "tensor/dispatch.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace muxnet {

// ---- elementwise (autograd/functions/elementwise.cpp) ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);  // gradient 0 at x = 0, as PyTorch
Tensor gelu(const Tensor& x);  // exact erf form
Tensor abs(const Tensor& x);   // gradient sign(x), 0 at 0
// Binary ops broadcast; the gradient of a broadcast operand is summed back to its shape.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties split the gradient evenly, as PyTorch
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& x, double s);
Tensor sub(const Tensor& x, double s);
Tensor mul(const Tensor& x, double s);
Tensor div(const Tensor& x, double s);
Tensor rsub(double s, const Tensor& x);  // s - x
Tensor rdiv(double s, const Tensor& x);  // s / x
Tensor pow(const Tensor& x, double exponent);
// cond != 0 ? a : b (no gradient to cond); x with value where mask != 0 (no gradient there).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& x, double s);
Tensor operator-(const Tensor& x, double s);
Tensor operator*(const Tensor& x, double s);
Tensor operator/(const Tensor& x, double s);
Tensor operator+(double s, const Tensor& x);
Tensor operator-(double s, const Tensor& x);
Tensor operator*(double s, const Tensor& x);
Tensor operator/(double s, const Tensor& x);

// ---- reductions (autograd/functions/reduce.cpp) ----
// dims empty = all dims. max/min: the gradient is split evenly among tied extrema (PyTorch's amax).
Tensor sum(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int dim, bool keepdim = false);  // not differentiable (i64)

// ---- matmul (autograd/functions/matmul.cpp) ----
// a: (..., M, K), b: (..., K, N) -> (..., M, N); trans_a / trans_b transpose the last two dims.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x: (..., in), weight: (out, in) as nn.Linear, bias: (out) or undefined -> (..., out).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- views and joins (autograd/functions/shape.cpp) ----
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor view(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x, int start_dim = 0, int end_dim = -1);
Tensor transpose(const Tensor& x, int dim0, int dim1);
Tensor permute(const Tensor& x, const std::vector<int>& dims);
Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& x, int dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int dim);
Tensor unsqueeze(const Tensor& x, int dim);
Tensor contiguous(const Tensor& x);
Tensor concat(const std::vector<Tensor>& xs, int dim);
Tensor stack(const std::vector<Tensor>& xs, int dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);
Tensor index_select(const Tensor& x, int dim, const Tensor& idx);  // gradient: index_add
Tensor gather(const Tensor& x, int dim, const Tensor& idx);        // gradient: scatter_add

// ---- softmax, normalisation, embedding, dropout (autograd/functions/{softmax,layernorm,embedding,dropout}.cpp) ----
Tensor softmax(const Tensor& x, int dim = -1);
Tensor log_softmax(const Tensor& x, int dim = -1);
// Over the last dim; weight and bias (C) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// weight: (V, D), idx: any shape i32/i64 -> idx.shape + (D). Rows equal to padding_idx get no gradient.
Tensor embedding(const Tensor& weight, const Tensor& idx, int64_t padding_idx = -1);
// Zeroes each element with probability p and scales the rest by 1 / (1 - p); identity when !training
// or p == 0. The mask comes from gen (the default generator when null).
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// ---- losses (autograd/functions/loss.cpp) ----
// logits: (N, C) or (..., C); targets: logits' shape without the last dim, i32/i64 in [0, C) or
// ignore_index. Mean over the targets that are not ignored (0 when all are ignored, as a 0-d tensor).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& pred, const Tensor& target);  // mean of squared differences

// ---- attention (autograd/functions/attention.cpp) ----
// q, k, v: (B, H, T, dh); key_padding_mask: (B, T) with nonzero = padded key (ignored), or undefined.
// softmax(q k^T / sqrt(dh) + mask) v, with dropout on the attention weights when training.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_padding_mask = Tensor(), double dropout_p = 0.0,
                                    bool training = false, Generator* gen = nullptr);

// ---- convolution and pooling (autograd/functions/conv_pool.cpp) ----
// x: (B, C, H, W), weight: (O, C, kh, kw), bias: (O) or undefined -> (B, O, oh, ow); im2col + GEMM.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride = 1, int64_t padding = 0);
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);  // stride 0 = kernel

}  // namespace muxnet
