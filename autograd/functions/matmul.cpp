// matmul.cpp — the differentiable matmul and linear (nn.Linear): forward and backward together.
//
// matmul(a, b, trans_a, trans_b) = op(a) @ op(b), op = transpose of the last two dims when the flag is
// set, with the batch rules of ops::matmul: equal batch dims, or one side 2-d and shared by every batch
// entry (torch.matmul restricted to those cases). linear(x, weight, bias) = x @ weightᵀ + bias, as
// torch.nn.functional.linear: x (..., in), weight (out, in), bias (out) or undefined.
//
// Backward. For C = Ã·B̃ with Ã = op(a), B̃ = op(b): dÃ = dC·B̃ᵀ and dB̃ = Ãᵀ·dC; when a flag is set the
// input's gradient is the transpose of these (da = dÃᵀ = B̃·dCᵀ). Each of the four flag combinations is
// ONE matmul whose own flags absorb every transpose, so no transposed copy is ever made. A 2-d operand
// shared across a batch gets the SUM over the batch of its per-entry gradients; that sum is folded into
// one GEMM over all batch·rows (for x (B, T, in) @ Wᵀ: dW = gᵀ·x over the B·T rows of the reshaped
// views), not B GEMMs followed by a reduction.
//
// What this is not: torch.matmul's 1-d (vector) cases or general batch broadcasting (ops::matmul
// rejects those with a message naming matmul); higher-order gradients (the engine has none).
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

namespace {

// x: (..., R, C) -> (batch·R, C). A view when x's strides allow it, else a contiguous copy.
Tensor fold_rows(const Tensor& x) {
  int64_t rows = 1;
  for (int d = 0; d < x.ndim() - 1; ++d) rows *= x.size(d);
  return x.reshape(Shape{rows, x.size(-1)});
}

// x: (..., R, P), y: (..., R, Q), equal batch dims -> (P, Q) = sum over batch entries i of x_iᵀ·y_i,
// computed as ONE GEMM over all batch·R rows: fold(x)ᵀ·fold(y).
// NOTE: the fold is free when both operands are row-major over their batch·R rows (the common case: a
// (B, T, C) activation and its gradient). Otherwise reshape copies that operand once, which costs
// O(size) against the GEMM's O(size·Q) and still beats B small GEMMs.
Tensor batch_sum_tn(const Tensor& x, const Tensor& y) {
  return ops::matmul(fold_rows(x), fold_rows(y), /*trans_a=*/true, /*trans_b=*/false);
}

// x: (..., R, C) -> (..., C, R), a view.
Tensor mT(const Tensor& x) { return x.transpose(-1, -2); }

// Gradient of a in out = op(a) @ op(b). g: out's shape (..., M, N); b as in the forward.
// a_shared: a was 2-d while b was batched, so a's gradient sums over b's batch.
Tensor matmul_grad_a(const Tensor& g, const Tensor& b, bool trans_a, bool trans_b, bool a_shared) {
  if (!a_shared) {
    // dÃ = g·B̃ᵀ; with trans_a, da = dÃᵀ = B̃·gᵀ.
    return trans_a ? ops::matmul(b, g, trans_b, true) : ops::matmul(g, b, false, !trans_b);
  }
  // dÃ = Σ_i g_i·B̃_iᵀ = Σ_i (g_iᵀ)ᵀ·(B̃_iᵀ), folded over the N rows of every g_iᵀ.
  // With trans_a, da = Σ_i B̃_i·g_iᵀ = Σ_i (B̃_iᵀ)ᵀ·g_iᵀ.
  Tensor bt = trans_b ? b : mT(b);  // B̃ᵀ: (..., N, K)
  return trans_a ? batch_sum_tn(bt, mT(g)) : batch_sum_tn(mT(g), bt);
}

// Gradient of b in out = op(a) @ op(b). b_shared: b was 2-d while a was batched.
Tensor matmul_grad_b(const Tensor& g, const Tensor& a, bool trans_a, bool trans_b, bool b_shared) {
  if (!b_shared) {
    // dB̃ = Ãᵀ·g; with trans_b, db = dB̃ᵀ = gᵀ·Ã.
    return trans_b ? ops::matmul(g, a, true, trans_a) : ops::matmul(a, g, !trans_a, false);
  }
  // dB̃ = Σ_i Ã_iᵀ·g_i, folded over the M rows of every Ã_i; with trans_b, db = Σ_i g_iᵀ·Ã_i.
  Tensor at = trans_a ? mT(a) : a;  // Ã: (..., M, K)
  return trans_b ? batch_sum_tn(g, at) : batch_sum_tn(at, g);
}

}  // namespace

// a: (..., M, K) or (..., K, M) with trans_a; b: (..., K, N) or (..., N, K) with trans_b -> (..., M, N)
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::matmul(a, b, trans_a, trans_b);
  }
  if (needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    const bool a_shared = a.ndim() == 2 && b.ndim() > 2, b_shared = b.ndim() == 2 && a.ndim() > 2;
    // da needs only b and db only a: save just what the requested gradients use.
    record(out, "matmul", {a, b},
           [a = gb ? a.detach() : Tensor(), b = ga ? b.detach() : Tensor(), ga, gb, trans_a, trans_b, a_shared,
            b_shared](const Tensor& g) {
             // forward: out = op(a) @ op(b)
             return std::vector<Tensor>{ga ? matmul_grad_a(g, b, trans_a, trans_b, a_shared) : Tensor(),
                                        gb ? matmul_grad_b(g, a, trans_a, trans_b, b_shared) : Tensor()};
           });
  }
  return out;
}

// x: (..., in), weight: (out, in), bias: (out) or undefined -> (..., out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MUXNET_CHECK(x.defined(), "linear: the input is an undefined tensor");
  MUXNET_CHECK(weight.defined(), "linear: the weight is an undefined tensor");
  MUXNET_CHECK(x.ndim() >= 1, "linear: expected an input of shape (..., in), got a 0-d tensor");
  ops::check_floating("linear", x);
  ops::check_same_dtype("linear", x, weight);
  ops::check_same_device("linear", x, weight);
  const int64_t in = x.size(-1);
  MUXNET_CHECK(weight.ndim() == 2 && weight.size(1) == in, "linear: weight has shape ", weight.shape(),
               ", expected (out, ", in, ") for input ", x.shape());
  const int64_t out_features = weight.size(0);
  if (bias.defined()) {
    ops::check_same_dtype("linear", x, bias);
    ops::check_same_device("linear", x, bias);
    MUXNET_CHECK(bias.ndim() == 1 && bias.size(0) == out_features, "linear: bias has shape ", bias.shape(),
                 ", expected (", out_features, ",) for weight ", weight.shape());
  }

  Shape shape = x.shape();
  shape[shape.ndim() - 1] = out_features;
  Tensor out = empty(shape, x.dtype(), x.device());
  {
    NoGradGuard no_grad;
    // As addmm: out starts as the broadcast bias and the GEMM accumulates onto it (beta = 1), so the
    // bias costs no extra pass. A 1-d x is a one-row matrix.
    Tensor x2 = x.ndim() == 1 ? x.unsqueeze(0) : x;
    Tensor out2 = x.ndim() == 1 ? out.unsqueeze(0) : out;
    if (bias.defined()) out2.copy_(bias);
    ops::matmul_out(x2, weight, out2, /*trans_a=*/false, /*trans_b=*/true, 1.0, bias.defined() ? 1.0 : 0.0);
  }
  if (needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.requires_grad();
    const bool gbias = bias.defined() && bias.requires_grad();
    Shape x_shape = x.shape();
    record(out, "linear", {x, weight, bias},
           [x = gw ? x.detach() : Tensor(), weight = gx ? weight.detach() : Tensor(), x_shape, gx, gw,
            gbias](const Tensor& g) {
             // forward: out = x @ weightᵀ + bias, over all rows of x at once
             Tensor gf = fold_rows(g);  // (rows, out)
             Tensor dx, dw, db;
             if (gx) dx = ops::matmul(gf, weight).view(x_shape);                     // g @ weight
             if (gw) dw = ops::matmul(gf, fold_rows(x), /*trans_a=*/true, false);  // Σ_rows gᵀ x
             if (gbias) db = ops::sum(gf, {0});                                       // Σ_rows g
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return out;
}

}  // namespace muxnet
