// elementwise.cpp — CPU kernels of the elementwise family: unary, unary_backward, binary,
// binary_scalar, compare, where, masked_fill.
//
// One loop template, elementwise_loop<Out, In...>(iter, f), walks an ElemIter (tensor/iter.h handles
// broadcasting, strides and threads) and computes out = f(in...) with three paths per innermost run:
// every operand dense (the loop gcc vectorises), one input of a binary op broadcast along the run
// (stride 0: a row times a column, a tensor plus a 0-d tensor), and a generic strided loop. Each
// kernel switches on its op code once, outside the loop, and instantiates the template with a lambda.
//
// f32 exp/log/tanh/sigmoid/gelu use vec_math.h (vectorisable, a few ulp); f64 uses the std::
// functions, the exact path that finite-difference gradient checks rely on. sqrt, rsqrt and the
// generic pow call libm on both (sqrt is exact; gcc keeps it scalar because of errno).
//
// What this is not: validation or dtype promotion. ops_elementwise.cpp has checked shapes, dtypes and
// devices; every operand here has the output's dtype except cond/mask of where/masked_fill.
//
// PyTorch semantics matched: maximum/minimum propagate NaN; relu(x) = 0 for x <= 0 and relu'(0) = 0
// (threshold form: NaN passes through relu and its gradient); pow(x, 0) = 1 even for NaN; integer
// add/sub/mul/neg/abs wrap around in two's complement (computed in unsigned arithmetic, never UB);
// where/masked_fill treat any nonzero (and NaN) condition as true.
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tensor/cpu/kernels.h"
#include "tensor/cpu/vec_math.h"

namespace muxnet {

namespace {

// ---------------------------------------------------------------- the loop

// out[i] = f(in[i]...) over n dense elements. flatten inlines f and everything it calls (gcc would
// otherwise keep a large body such as gelu as a call, and a call in the loop stops vectorisation).
template <typename Out, typename F, typename... In>
__attribute__((flatten)) inline void dense_loop(Out* out, int64_t n, const F& f, const In*... in) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(in[i]...);
}

// One innermost run of n elements: p[0] is the output, p[k + 1] input k; s[] are byte strides.
template <typename Out, typename... In, typename F, size_t... I>
inline void run_elementwise(char* const* p, const int64_t* s, int64_t n, const F& f,
                            std::index_sequence<I...>) {
  Out* out = reinterpret_cast<Out*>(p[0]);
  const bool out_dense = s[0] == int64_t(sizeof(Out));
  if (out_dense && ((s[I + 1] == int64_t(sizeof(In))) && ...)) {
    dense_loop(out, n, f, reinterpret_cast<const In*>(p[I + 1])...);
    return;
  }
  if constexpr (sizeof...(In) == 2) {
    // One input is the same element along the whole run: hoist it so the loop still vectorises.
    using A = std::tuple_element_t<0, std::tuple<In...>>;
    using B = std::tuple_element_t<1, std::tuple<In...>>;
    const A* a = reinterpret_cast<const A*>(p[1]);
    const B* b = reinterpret_cast<const B*>(p[2]);
    if (out_dense && s[1] == int64_t(sizeof(A)) && s[2] == 0) {
      const B bv = *b;
      dense_loop(out, n, [&f, bv](A av) { return f(av, bv); }, a);
      return;
    }
    if (out_dense && s[1] == 0 && s[2] == int64_t(sizeof(B))) {
      const A av = *a;
      dense_loop(out, n, [&f, av](B bv) { return f(av, bv); }, b);
      return;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    *reinterpret_cast<Out*>(p[0] + i * s[0]) = f(*reinterpret_cast<const In*>(p[I + 1] + i * s[I + 1])...);
  }
}

// out = f(in...) elementwise over it (operand 0 = out, then the inputs in order).
template <typename Out, typename... In, typename F>
void elementwise_loop(const ElemIter& it, const F& f) {
  for_each_run(it, [&f](char* const* p, const int64_t* s, int64_t n) {
    run_elementwise<Out, In...>(p, s, n, f, std::index_sequence_for<In...>{});
  });
}

// ---------------------------------------------------------------- scalar math per type

// f32: vectorisable approximations (a few ulp, see vec_math.h); f64: libm.
inline float f_exp(float x) { return vm::exp(x); }
inline double f_exp(double x) { return std::exp(x); }
inline float f_log(float x) { return vm::log(x); }
inline double f_log(double x) { return std::log(x); }
inline float f_tanh(float x) { return vm::tanh(x); }
inline double f_tanh(double x) { return std::tanh(x); }
inline float f_sigmoid(float x) { return vm::sigmoid(x); }
inline double f_sigmoid(double x) {
  const double e = std::exp(-std::fabs(x));  // <= 1: no overflow for either sign
  return (x >= 0.0 ? 1.0 : e) / (1.0 + e);
}
inline float f_gelu(float x) { return vm::gelu(x); }
inline double f_gelu(double x) {
  // NOTE: x Phi(x) via erfc(-x / sqrt 2): no 1 + erf cancellation for negative x. Below -40, Phi
  // has underflowed; the clamp keeps gelu(-inf) = -0 instead of -inf * 0 = NaN.
  const double xc = x < -40.0 ? -40.0 : x;
  return 0.5 * xc * std::erfc(-xc * 0.7071067811865476);
}
inline float f_gelu_grad(float x) { return vm::gelu_grad(x); }
inline double f_gelu_grad(double x) {
  // Phi(x) + x phi(x); clamped where both terms have saturated (avoids inf * 0 at +-inf).
  const double xc = x < -40.0 ? -40.0 : x > 40.0 ? 40.0 : x;
  return 0.5 * std::erfc(-xc * 0.7071067811865476) + xc * std::exp(-0.5 * xc * xc) * 0.3989422804014327;
}

// Integer add/sub/mul/neg in unsigned arithmetic: wraps like PyTorch instead of signed-overflow UB.
template <typename T> inline T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(a) + U(b));
  } else {
    return a + b;
  }
}
template <typename T> inline T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(a) - U(b));
  } else {
    return a - b;
  }
}
template <typename T> inline T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(a) * U(b));
  } else {
    return a * b;
  }
}
// NaN-propagating max/min (for integers the a != a test folds away).
template <typename T> inline T max_nan(T a, T b) { return (a > b || a != a) ? a : b; }
template <typename T> inline T min_nan(T a, T b) { return (a < b || a != a) ? a : b; }

// ---------------------------------------------------------------- unary

template <typename T>
void unary_typed(UnaryOp op, const ElemIter& it) {
  if constexpr (std::is_integral_v<T>) {
    switch (op) {
      case UnaryOp::Neg: return elementwise_loop<T, T>(it, [](T x) { return wrap_sub(T(0), x); });
      case UnaryOp::Abs: return elementwise_loop<T, T>(it, [](T x) { return x < 0 ? wrap_sub(T(0), x) : x; });
      default: MUXNET_FAIL("unary: op ", int(op), " needs a floating dtype (f32 or f64), got ", dtype_of<T>::value);
    }
  } else {
    switch (op) {
      case UnaryOp::Neg: return elementwise_loop<T, T>(it, [](T x) { return -x; });
      case UnaryOp::Exp: return elementwise_loop<T, T>(it, [](T x) { return f_exp(x); });
      case UnaryOp::Log: return elementwise_loop<T, T>(it, [](T x) { return f_log(x); });
      case UnaryOp::Sqrt: return elementwise_loop<T, T>(it, [](T x) { return std::sqrt(x); });
      case UnaryOp::Rsqrt: return elementwise_loop<T, T>(it, [](T x) { return T(1) / std::sqrt(x); });
      case UnaryOp::Tanh: return elementwise_loop<T, T>(it, [](T x) { return f_tanh(x); });
      case UnaryOp::Sigmoid: return elementwise_loop<T, T>(it, [](T x) { return f_sigmoid(x); });
      case UnaryOp::Relu: return elementwise_loop<T, T>(it, [](T x) { return x <= T(0) ? T(0) : x; });
      case UnaryOp::Gelu: return elementwise_loop<T, T>(it, [](T x) { return f_gelu(x); });
      case UnaryOp::Abs: return elementwise_loop<T, T>(it, [](T x) { return std::fabs(x); });
      default: MUXNET_FAIL("unary: invalid op code ", int(op));
    }
  }
}

// x and out: same shape and dtype.
void unary_cpu(UnaryOp op, const Tensor& x, const Tensor& out) {
  ElemIter it = make_elem_iter(out, {&x});
  dispatch_all(out.dtype(), "unary", [&](auto tag) { unary_typed<typename decltype(tag)::type>(op, it); });
}

// grad_out, saved, grad_in: same shape, floating dtype. saved is x (Relu, Gelu) or y (Tanh, Sigmoid).
void unary_backward_cpu(UnaryGradOp op, const Tensor& grad_out, const Tensor& saved, const Tensor& grad_in) {
  ElemIter it = make_elem_iter(grad_in, {&grad_out, &saved});
  dispatch_floating(grad_in.dtype(), "unary_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case UnaryGradOp::Relu:
        return elementwise_loop<T, T, T>(it, [](T g, T x) { return x <= T(0) ? T(0) : g; });
      case UnaryGradOp::Gelu:
        return elementwise_loop<T, T, T>(it, [](T g, T x) { return g * f_gelu_grad(x); });
      case UnaryGradOp::Tanh:
        return elementwise_loop<T, T, T>(it, [](T g, T y) { return g * (T(1) - y * y); });
      case UnaryGradOp::Sigmoid:
        return elementwise_loop<T, T, T>(it, [](T g, T y) { return g * (y * (T(1) - y)); });
      default: MUXNET_FAIL("unary_backward: invalid op code ", int(op));
    }
  });
}

// ---------------------------------------------------------------- binary

// a, b broadcast to out; all three share out's dtype. out may be a itself (in-place binary_).
void binary_cpu(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  ElemIter it = make_elem_iter(out, {&a, &b});
  dispatch_all(out.dtype(), "binary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case BinaryOp::Add: return elementwise_loop<T, T, T>(it, [](T x, T y) { return wrap_add(x, y); });
      case BinaryOp::Sub: return elementwise_loop<T, T, T>(it, [](T x, T y) { return wrap_sub(x, y); });
      case BinaryOp::Mul: return elementwise_loop<T, T, T>(it, [](T x, T y) { return wrap_mul(x, y); });
      case BinaryOp::Div:
        if constexpr (std::is_floating_point_v<T>) {
          return elementwise_loop<T, T, T>(it, [](T x, T y) { return x / y; });
        } else {
          MUXNET_FAIL("div: integer division is not supported (got ", dtype_of<T>::value, ")");
        }
      case BinaryOp::Maximum: return elementwise_loop<T, T, T>(it, [](T x, T y) { return max_nan(x, y); });
      case BinaryOp::Minimum: return elementwise_loop<T, T, T>(it, [](T x, T y) { return min_nan(x, y); });
      default: MUXNET_FAIL("binary: invalid op code ", int(op));
    }
  });
}

// x (op) s for floating T, with pow's common exponents as plain arithmetic.
template <typename T>
void scalar_floating(ScalarOp op, const ElemIter& it, double s) {
  const T v = T(s);
  switch (op) {
    case ScalarOp::Div: return elementwise_loop<T, T>(it, [v](T x) { return x / v; });
    case ScalarOp::RDiv: return elementwise_loop<T, T>(it, [v](T x) { return v / x; });
    case ScalarOp::Pow:
      if (s == 1.0) return elementwise_loop<T, T>(it, [](T x) { return x; });
      if (s == 2.0) return elementwise_loop<T, T>(it, [](T x) { return x * x; });
      if (s == 0.5) return elementwise_loop<T, T>(it, [](T x) { return std::sqrt(x); });
      if (s == -1.0) return elementwise_loop<T, T>(it, [](T x) { return T(1) / x; });
      if (s == 0.0) return elementwise_loop<T, T>(it, [](T) { return T(1); });
      return elementwise_loop<T, T>(it, [v](T x) { return std::pow(x, v); });
    default: MUXNET_FAIL("binary_scalar: invalid op code ", int(op));
  }
}

// x and out: same shape and dtype. For integer dtypes s is an integer in range (checked by the op).
void binary_scalar_cpu(ScalarOp op, const Tensor& x, double s, const Tensor& out) {
  ElemIter it = make_elem_iter(out, {&x});
  dispatch_all(out.dtype(), "binary_scalar", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = T(s);
    switch (op) {
      case ScalarOp::Add: return elementwise_loop<T, T>(it, [v](T a) { return wrap_add(a, v); });
      case ScalarOp::Sub: return elementwise_loop<T, T>(it, [v](T a) { return wrap_sub(a, v); });
      case ScalarOp::RSub: return elementwise_loop<T, T>(it, [v](T a) { return wrap_sub(v, a); });
      case ScalarOp::Mul: return elementwise_loop<T, T>(it, [v](T a) { return wrap_mul(a, v); });
      case ScalarOp::Maximum: return elementwise_loop<T, T>(it, [v](T a) { return max_nan(a, v); });
      case ScalarOp::Minimum: return elementwise_loop<T, T>(it, [v](T a) { return min_nan(a, v); });
      default:
        if constexpr (std::is_floating_point_v<T>) {
          return scalar_floating<T>(op, it, s);
        } else {
          MUXNET_FAIL("binary_scalar: op ", int(op), " needs a floating dtype (f32 or f64), got ",
                      dtype_of<T>::value);
        }
    }
  });
}

// ---------------------------------------------------------------- comparisons, selection

// a, b broadcast to out; out is a 1/0 mask in the inputs' dtype.
void compare_cpu(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  ElemIter it = make_elem_iter(out, {&a, &b});
  dispatch_all(out.dtype(), "compare", [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case CompareOp::Eq: return elementwise_loop<T, T, T>(it, [](T x, T y) { return T(x == y); });
      case CompareOp::Ne: return elementwise_loop<T, T, T>(it, [](T x, T y) { return T(x != y); });
      case CompareOp::Lt: return elementwise_loop<T, T, T>(it, [](T x, T y) { return T(x < y); });
      case CompareOp::Le: return elementwise_loop<T, T, T>(it, [](T x, T y) { return T(x <= y); });
      case CompareOp::Gt: return elementwise_loop<T, T, T>(it, [](T x, T y) { return T(x > y); });
      case CompareOp::Ge: return elementwise_loop<T, T, T>(it, [](T x, T y) { return T(x >= y); });
      default: MUXNET_FAIL("compare: invalid op code ", int(op));
    }
  });
}

// cond (any dtype), a, b broadcast to out; a, b and out share a dtype.
void where_cpu(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  ElemIter it = make_elem_iter(out, {&cond, &a, &b});
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_all(cond.dtype(), "where", [&](auto ctag) {
      using C = typename decltype(ctag)::type;
      elementwise_loop<T, C, T, T>(it, [](C c, T x, T y) { return c != C(0) ? x : y; });
    });
  });
}

// mask (any dtype) broadcast to x; out has x's shape and dtype; value already fits x's dtype.
void masked_fill_cpu(const Tensor& x, const Tensor& mask, double value, const Tensor& out) {
  ElemIter it = make_elem_iter(out, {&x, &mask});
  dispatch_all(out.dtype(), "masked_fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = T(value);
    dispatch_all(mask.dtype(), "masked_fill", [&](auto mtag) {
      using M = typename decltype(mtag)::type;
      elementwise_loop<T, T, M>(it, [v](T a, M m) { return m != M(0) ? v : a; });
    });
  });
}

}  // namespace

void register_cpu_elementwise() {
  register_kernel<OpId::unary>(Device::CPU, unary_cpu);
  register_kernel<OpId::unary_backward>(Device::CPU, unary_backward_cpu);
  register_kernel<OpId::binary>(Device::CPU, binary_cpu);
  register_kernel<OpId::binary_scalar>(Device::CPU, binary_scalar_cpu);
  register_kernel<OpId::compare>(Device::CPU, compare_cpu);
  register_kernel<OpId::where>(Device::CPU, where_cpu);
  register_kernel<OpId::masked_fill>(Device::CPU, masked_fill_cpu);
}

}  // namespace muxnet
