// elementwise.cpp — the differentiable elementwise functions of autograd/functions.h: unary maps
// (neg, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu, abs), binary ops with broadcasting (add,
// sub, mul, div, maximum, minimum), their scalar forms, pow, where, masked_fill and the operators.
//
// Each forward runs the raw op of tensor/ops.h under a NoGradGuard and, when an input requires grad,
// records a closure that computes the input gradients with raw ops. A closure saves only what its
// backward reads: detached inputs (they share storage with the inputs, so they cost no memory) or the
// output where the derivative is cheaper from it (exp, sqrt, tanh, sigmoid). A broadcast operand's
// gradient is summed back to its shape with ops::sum_to_shape.
//
// What this is not: a place for kernels (the derivative kernels relu/gelu/tanh/sigmoid_backward live
// in tensor/cpu/elementwise.cpp), and not twice differentiable (closures run without recording).
//
// PyTorch conventions matched at the kinks: relu'(0) = 0; abs'(0) = 0 (sign(x)); maximum/minimum give
// each operand half of the gradient where a == b (torch.maximum's rule); pow(x, 0) has gradient 0
// everywhere; where/masked_fill give no gradient to the condition / mask, and masked_fill none to the
// filled positions.
#include "autograd/functions.h"
#include "tensor/ops.h"

namespace muxnet {

namespace {

using Grads = std::vector<Tensor>;

// A 0-d zero of t's dtype on t's device: the "else" operand for where() in the backward.
Tensor zero_like_scalar(const Tensor& t) { return zeros(Shape{}, t.dtype(), t.device()); }

// Records a one-input function whose backward is fn(g).
template <typename Fn>
void record_unary(const Tensor& out, const char* name, const Tensor& x, Fn&& fn) {
  if (!needs_grad({x})) return;
  record(out, name, {x}, [fn = std::forward<Fn>(fn)](const Tensor& g) { return Grads{fn(g)}; });
}

}  // namespace

// ---------------------------------------------------------------- unary

Tensor neg(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::neg(x);
  }
  // forward: out = -x
  record_unary(out, "neg", x, [](const Tensor& g) { return ops::neg(g); });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::exp(x);
  }
  // forward: y = e^x, so dy/dx = y (the saved output; no exp recomputed).
  record_unary(out, "exp", x, [y = out.detach()](const Tensor& g) { return ops::mul(g, y); });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::log(x);
  }
  // forward: y = log x, dy/dx = 1 / x
  record_unary(out, "log", x, [x = x.detach()](const Tensor& g) { return ops::div(g, x); });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::sqrt(x);
  }
  // forward: y = sqrt(x), dy/dx = 1 / (2 y)
  record_unary(out, "sqrt", x, [y = out.detach()](const Tensor& g) { return ops::mul(ops::div(g, y), 0.5); });
  return out;
}

Tensor rsqrt(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::rsqrt(x);
  }
  // forward: y = x^(-1/2), dy/dx = -1/2 x^(-3/2) = -0.5 y / x
  record_unary(out, "rsqrt", x, [x = x.detach(), y = out.detach()](const Tensor& g) {
    return ops::mul(ops::div(ops::mul(g, y), x), -0.5);
  });
  return out;
}

Tensor tanh(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::tanh(x);
  }
  // forward: y = tanh x, dy/dx = 1 - y^2 (fused kernel, from the output)
  record_unary(out, "tanh", x, [y = out.detach()](const Tensor& g) { return ops::tanh_backward(g, y); });
  return out;
}

Tensor sigmoid(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::sigmoid(x);
  }
  // forward: y = 1 / (1 + e^-x), dy/dx = y (1 - y) (fused kernel, from the output)
  record_unary(out, "sigmoid", x, [y = out.detach()](const Tensor& g) { return ops::sigmoid_backward(g, y); });
  return out;
}

Tensor relu(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::relu(x);
  }
  // forward: y = max(x, 0), dy/dx = [x > 0] (0 at x = 0, as PyTorch)
  record_unary(out, "relu", x, [x = x.detach()](const Tensor& g) { return ops::relu_backward(g, x); });
  return out;
}

Tensor gelu(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::gelu(x);
  }
  // forward: y = x Phi(x), dy/dx = Phi(x) + x phi(x) (fused kernel, from the input)
  record_unary(out, "gelu", x, [x = x.detach()](const Tensor& g) { return ops::gelu_backward(g, x); });
  return out;
}

Tensor abs(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::abs(x);
  }
  // forward: y = |x|, dy/dx = sign(x) = [x > 0] - [x < 0] (0 at x = 0, as PyTorch)
  record_unary(out, "abs", x, [x = x.detach()](const Tensor& g) {
    const Tensor zero = zero_like_scalar(x);
    return ops::mul(g, ops::sub(ops::gt(x, zero), ops::lt(x, zero)));
  });
  return out;
}

// ---------------------------------------------------------------- binary, broadcasting
// In each backward, g has the broadcast shape of the output; sum_to_shape folds it back onto the
// operand's shape (a no-op without broadcasting).

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::add(a, b);
  }
  if (needs_grad({a, b})) {
    record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape(), ga = a.requires_grad(), gb = b.requires_grad()]
                               (const Tensor& g) {
      // forward: out = a + b
      return Grads{ga ? ops::sum_to_shape(g, sa) : Tensor(), gb ? ops::sum_to_shape(g, sb) : Tensor()};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::sub(a, b);
  }
  if (needs_grad({a, b})) {
    record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape(), ga = a.requires_grad(), gb = b.requires_grad()]
                               (const Tensor& g) {
      // forward: out = a - b (b's gradient negated after the sum: fewer elements to negate)
      return Grads{ga ? ops::sum_to_shape(g, sa) : Tensor(), gb ? ops::neg(ops::sum_to_shape(g, sb)) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::mul(a, b);
  }
  if (needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    // Each gradient reads the other operand: save b only for a's gradient and a only for b's.
    record(out, "mul", {a, b}, [a_saved = gb ? a.detach() : Tensor(), b_saved = ga ? b.detach() : Tensor(),
                                sa = a.shape(), sb = b.shape(), ga, gb](const Tensor& g) {
      // forward: out = a * b
      return Grads{ga ? ops::sum_to_shape(ops::mul(g, b_saved), sa) : Tensor(),
                   gb ? ops::sum_to_shape(ops::mul(g, a_saved), sb) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::div(a, b);
  }
  if (needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record(out, "div", {a, b}, [a_saved = gb ? a.detach() : Tensor(), b = b.detach(), sa = a.shape(),
                                sb = b.shape(), ga, gb](const Tensor& g) {
      // forward: out = a / b, so d/da = 1 / b and d/db = -a / b^2 = -(g / b) * a / b.
      // NOTE: (g / b) * a / b rather than g * a / (b * b): b * b can overflow or underflow where the
      // quotients do not.
      Tensor g_over_b = ops::div(g, b);
      Tensor grad_b = gb ? ops::neg(ops::sum_to_shape(ops::div(ops::mul(g_over_b, a_saved), b), sb)) : Tensor();
      return Grads{ga ? ops::sum_to_shape(g_over_b, sa) : Tensor(), grad_b};
    });
  }
  return out;
}

namespace {

// maximum (is_max) or minimum of a and b; the gradient goes to the operand that won, half to each on
// a tie: a's share is ([a > b] + [a >= b]) / 2 for maximum, ([a < b] + [a <= b]) / 2 for minimum.
Tensor extremum(const Tensor& a, const Tensor& b, bool is_max) {
  const char* name = is_max ? "maximum" : "minimum";
  Tensor out;
  {
    NoGradGuard no_grad;
    out = is_max ? ops::maximum(a, b) : ops::minimum(a, b);
  }
  if (needs_grad({a, b})) {
    record(out, name, {a, b}, [a = a.detach(), b = b.detach(), ga = a.requires_grad(), gb = b.requires_grad(),
                               is_max](const Tensor& g) {
      // forward: out = max(a, b) (or min): d out/da = [a wins] + [a == b] / 2, d out/db = 1 - d out/da.
      Tensor wins_twice = is_max ? ops::add(ops::gt(a, b), ops::ge(a, b)) : ops::add(ops::lt(a, b), ops::le(a, b));
      Tensor grad_a_full = ops::mul(ops::mul(g, wins_twice), 0.5);  // g * share_a, out's shape
      Tensor grad_a = ga ? ops::sum_to_shape(grad_a_full, a.shape()) : Tensor();
      Tensor grad_b = gb ? ops::sum_to_shape(ops::sub(g, grad_a_full), b.shape()) : Tensor();
      return Grads{grad_a, grad_b};
    });
  }
  return out;
}

}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(a, b, false); }

// ---------------------------------------------------------------- with a scalar

Tensor add(const Tensor& x, double s) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::add(x, s);
  }
  // forward: out = x + s
  record_unary(out, "add", x, [](const Tensor& g) { return g; });
  return out;
}

Tensor sub(const Tensor& x, double s) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::sub(x, s);
  }
  // forward: out = x - s
  record_unary(out, "sub", x, [](const Tensor& g) { return g; });
  return out;
}

Tensor mul(const Tensor& x, double s) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::mul(x, s);
  }
  // forward: out = x * s
  record_unary(out, "mul", x, [s](const Tensor& g) { return ops::mul(g, s); });
  return out;
}

Tensor div(const Tensor& x, double s) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::div(x, s);
  }
  // forward: out = x / s
  record_unary(out, "div", x, [s](const Tensor& g) { return ops::div(g, s); });
  return out;
}

Tensor rsub(double s, const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::rsub(s, x);
  }
  // forward: out = s - x
  record_unary(out, "rsub", x, [](const Tensor& g) { return ops::neg(g); });
  return out;
}

Tensor rdiv(double s, const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::rdiv(s, x);
  }
  // forward: out = s / x, d out/dx = -s / x^2 (divided twice by x: x^2 could overflow)
  record_unary(out, "rdiv", x, [s, x = x.detach()](const Tensor& g) {
    return ops::div(ops::div(ops::mul(g, -s), x), x);
  });
  return out;
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::pow(x, exponent);
  }
  // forward: out = x^p, d out/dx = p x^(p-1); p = 0 gives 0 (even at x = 0, as PyTorch).
  record_unary(out, "pow", x, [p = exponent, x = x.detach()](const Tensor& g) {
    if (p == 0.0) return zeros(x.shape(), g.dtype(), g.device());
    if (p == 1.0) return g;
    if (p == 2.0) return ops::mul(ops::mul(g, x), 2.0);
    return ops::mul(ops::mul(g, ops::pow(x, p - 1.0)), p);
  });
  return out;
}

// ---------------------------------------------------------------- selection

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::where(cond, a, b);
  }
  if (needs_grad({a, b})) {  // cond never receives a gradient
    record(out, "where", {a, b}, [cond = cond.detach(), sa = a.shape(), sb = b.shape(), ga = a.requires_grad(),
                                  gb = b.requires_grad()](const Tensor& g) {
      // forward: out = cond ? a : b. g has the broadcast shape of all three, so cond broadcasts to it.
      Tensor grad_a = ga ? ops::sum_to_shape(ops::where(cond, g, zero_like_scalar(g)), sa) : Tensor();
      Tensor grad_b = gb ? ops::sum_to_shape(ops::masked_fill(g, cond, 0.0), sb) : Tensor();
      return Grads{grad_a, grad_b};
    });
  }
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = ops::masked_fill(x, mask, value);
  }
  // forward: out = mask ? value : x (out has x's shape): the filled positions get no gradient.
  record_unary(out, "masked_fill", x, [mask = mask.detach()](const Tensor& g) { return ops::masked_fill(g, mask, 0.0); });
  return out;
}

// ---------------------------------------------------------------- operators

Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& x, double s) { return add(x, s); }
Tensor operator-(const Tensor& x, double s) { return sub(x, s); }
Tensor operator*(const Tensor& x, double s) { return mul(x, s); }
Tensor operator/(const Tensor& x, double s) { return div(x, s); }
Tensor operator+(double s, const Tensor& x) { return add(x, s); }
Tensor operator-(double s, const Tensor& x) { return rsub(s, x); }
Tensor operator*(double s, const Tensor& x) { return mul(x, s); }
Tensor operator/(double s, const Tensor& x) { return rdiv(s, x); }

}  // namespace muxnet
