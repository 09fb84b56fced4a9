// elementwise.cu — CUDA kernels of the elementwise family: unary, unary_backward, binary, binary_scalar,
// compare, where, masked_fill. The oracle is tensor/cpu/elementwise.cpp; every formula below is the CPU
// kernel's, op for op and dtype for dtype:
//   - dtypes: unary Neg/Abs, binary, binary_scalar Add/Sub/RSub/Mul/Maximum/Minimum, compare, where and
//     masked_fill take f32, f64, i32, i64; the other unary ops, unary_backward, Div, RDiv and Pow take
//     f32 and f64 only and throw the CPU's message otherwise; integer division is rejected.
//   - integer add/sub/mul/neg/abs wrap around (two's complement, computed in unsigned arithmetic).
//   - maximum/minimum propagate NaN; relu(x) = 0 for x <= 0 (NaN passes) and relu'(0) = 0;
//     comparisons give 1/0 in the inputs' dtype; where/masked_fill treat any nonzero (or NaN) as true;
//     pow(x, s) special-cases s = 1, 2, 0.5, -1, 0 exactly as the CPU does (pow(x, 0) = 1 for NaN too).
//   - gelu is the exact (erf) form x Φ(x), PyTorch's default; its derivative is Φ(x) + x φ(x).
//     f64 uses the CPU's own expressions (erfc, with its clamps at ±40). f32 uses CUDA's normcdff
//     (max 5 ulp) for Φ, and for φ in gelu' expf of an exactly split x^2 (as vec_math.h does); f32 x is
//     clamped to [-20, 20], where every term has saturated, so that gelu(-inf) = 0, gelu'(-inf) = 0
//     and gelu'(+inf) = 1 (the CPU's values) instead of NaN from inf * 0.
//   - sigmoid is 1 / (1 + e) or e / (1 + e) with e = exp(-|x|) (no overflow), as the CPU computes it.
// Accuracy: f32/f64 sqrt, rsqrt (1 / sqrt) and division are correctly rounded on both devices (nvcc's
// default -prec-div/-prec-sqrt), so they match the CPU bit for bit; exp/log/tanh/pow/erfc use CUDA's
// libdevice (1-4 ulp for f32, 1-5 ulp for f64) where the CPU uses vec_math.h (f32) or glibc (f64):
// results agree to a few ulp, not bit for bit. nvcc contracts a * b + c into an FMA (as g++ may on the
// CPU), e.g. in tanh' = g (1 - y y): the last bit can differ there too.
//
// Each launcher switches on the op once on the host and launches launch_elementwise (elem_iter.cuh)
// with one functor per (op, dtype): the switch never runs per element.
//
// What this is not: validation or dtype promotion (ops_elementwise.cpp did that).
#include <cstdint>
#include <type_traits>

#include "cuda/elem_iter.cuh"
#include "tensor/cpu/kernels.h"

namespace muxnet {

namespace {

// ---------------------------------------------------------------- scalar math per type

__device__ __forceinline__ float d_exp(float x) { return ::expf(x); }
__device__ __forceinline__ double d_exp(double x) { return ::exp(x); }
__device__ __forceinline__ float d_log(float x) { return ::logf(x); }
__device__ __forceinline__ double d_log(double x) { return ::log(x); }
__device__ __forceinline__ float d_tanh(float x) { return ::tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float d_sqrt(float x) { return ::sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float d_fabs(float x) { return ::fabsf(x); }
__device__ __forceinline__ double d_fabs(double x) { return ::fabs(x); }
__device__ __forceinline__ float d_pow(float x, float y) { return ::powf(x, y); }
__device__ __forceinline__ double d_pow(double x, double y) { return ::pow(x, y); }

template <typename T>
__device__ __forceinline__ T d_sigmoid(T x) {
  const T e = d_exp(-d_fabs(x));  // <= 1: no overflow for either sign
  return (x >= T(0) ? T(1) : e) / (T(1) + e);
}

// NOTE: the clamps are written as `x < c ? c : x` (not fminf/fmaxf) so that NaN passes through.
__device__ __forceinline__ float d_gelu(float x) {
  const float xc = x < -20.0f ? -20.0f : x;  // Φ(-20) underflows: -20 * 0 = -0, and -inf * 0 is avoided
  return xc * ::normcdff(xc);
}
__device__ __forceinline__ double d_gelu(double x) {
  const double xc = x < -40.0 ? -40.0 : x;
  return 0.5 * xc * ::erfc(-xc * 0.7071067811865476);
}

__device__ __forceinline__ float d_gelu_grad(float x) {
  const float xc = x < -20.0f ? -20.0f : x > 20.0f ? 20.0f : x;
  // NOTE: x^2 = hi + lo exactly; exp(-hi/2) (-hi/2 is exact) times (1 - lo/2): rounding x^2 first
  // would cost up to ~80 ulp in exp(-x^2/2) near |x| = 13.
  const float hi = xc * xc;
  const float lo = ::fmaf(xc, xc, -hi);
  float e = ::expf(-0.5f * hi);
  e = ::fmaf(e, -0.5f * lo, e);
  return ::fmaf(xc * e, 0.3989422804014327f, ::normcdff(xc));  // Φ(x) + x φ(x), φ(x) = e / sqrt(2 pi)
}
__device__ __forceinline__ double d_gelu_grad(double x) {
  const double xc = x < -40.0 ? -40.0 : x > 40.0 ? 40.0 : x;
  return 0.5 * ::erfc(-xc * 0.7071067811865476) + xc * ::exp(-0.5 * xc * xc) * 0.3989422804014327;
}

// Integer add/sub/mul in unsigned arithmetic: wraps like PyTorch instead of signed-overflow UB.
template <typename T>
__device__ __forceinline__ T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(a) + U(b));
  } else {
    return a + b;
  }
}
template <typename T>
__device__ __forceinline__ T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(a) - U(b));
  } else {
    return a - b;
  }
}
template <typename T>
__device__ __forceinline__ T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(a) * U(b));
  } else {
    return a * b;
  }
}
// NaN-propagating max/min (for integers the a != a test folds away).
template <typename T>
__device__ __forceinline__ T max_nan(T a, T b) {
  return (a > b || a != a) ? a : b;
}
template <typename T>
__device__ __forceinline__ T min_nan(T a, T b) {
  return (a < b || a != a) ? a : b;
}

// ---------------------------------------------------------------- functors (one per op and dtype)

template <typename T, UnaryOp op> struct UnaryFn {
  __device__ T operator()(T x) const {
    if constexpr (std::is_integral_v<T>) {
      static_assert(op == UnaryOp::Neg || op == UnaryOp::Abs, "integer unary: Neg and Abs only");
      if constexpr (op == UnaryOp::Neg) return wrap_sub(T(0), x);
      else return x < 0 ? wrap_sub(T(0), x) : x;
    } else {
      if constexpr (op == UnaryOp::Neg) return -x;
      else if constexpr (op == UnaryOp::Exp) return d_exp(x);
      else if constexpr (op == UnaryOp::Log) return d_log(x);
      else if constexpr (op == UnaryOp::Sqrt) return d_sqrt(x);
      else if constexpr (op == UnaryOp::Rsqrt) return T(1) / d_sqrt(x);
      else if constexpr (op == UnaryOp::Tanh) return d_tanh(x);
      else if constexpr (op == UnaryOp::Sigmoid) return d_sigmoid(x);
      else if constexpr (op == UnaryOp::Relu) return x <= T(0) ? T(0) : x;
      else if constexpr (op == UnaryOp::Gelu) return d_gelu(x);
      else {
        static_assert(op == UnaryOp::Abs, "unhandled UnaryOp");
        return d_fabs(x);
      }
    }
  }
};

// (grad_out, saved) -> grad_in; saved is x for Relu and Gelu, y for Tanh and Sigmoid.
template <typename T, UnaryGradOp op> struct UnaryGradFn {
  __device__ T operator()(T g, T s) const {
    if constexpr (op == UnaryGradOp::Relu) return s <= T(0) ? T(0) : g;
    else if constexpr (op == UnaryGradOp::Gelu) return g * d_gelu_grad(s);
    else if constexpr (op == UnaryGradOp::Tanh) return g * (T(1) - s * s);
    else {
      static_assert(op == UnaryGradOp::Sigmoid, "unhandled UnaryGradOp");
      return g * (s * (T(1) - s));
    }
  }
};

template <typename T, BinaryOp op> struct BinaryFn {
  __device__ T operator()(T x, T y) const {
    if constexpr (op == BinaryOp::Add) return wrap_add(x, y);
    else if constexpr (op == BinaryOp::Sub) return wrap_sub(x, y);
    else if constexpr (op == BinaryOp::Mul) return wrap_mul(x, y);
    else if constexpr (op == BinaryOp::Div) {
      static_assert(std::is_floating_point_v<T>, "Div: floating dtypes only");
      return x / y;
    } else if constexpr (op == BinaryOp::Maximum) return max_nan(x, y);
    else {
      static_assert(op == BinaryOp::Minimum, "unhandled BinaryOp");
      return min_nan(x, y);
    }
  }
};

// x (op) v for every ScalarOp but Pow (PowFn below).
template <typename T, ScalarOp op> struct ScalarFn {
  T v;
  __device__ T operator()(T x) const {
    if constexpr (op == ScalarOp::Add) return wrap_add(x, v);
    else if constexpr (op == ScalarOp::Sub) return wrap_sub(x, v);
    else if constexpr (op == ScalarOp::RSub) return wrap_sub(v, x);
    else if constexpr (op == ScalarOp::Mul) return wrap_mul(x, v);
    else if constexpr (op == ScalarOp::Maximum) return max_nan(x, v);
    else if constexpr (op == ScalarOp::Minimum) return min_nan(x, v);
    else if constexpr (op == ScalarOp::Div) return x / v;
    else {
      static_assert(op == ScalarOp::RDiv, "unhandled ScalarOp");
      return v / x;
    }
  }
};

// x^v, with the CPU's special cases of the exponent as plain arithmetic (floating T only).
enum class PowCase { One, Two, Half, MinusOne, Zero, General };
template <typename T, PowCase c> struct PowFn {
  T v;
  __device__ T operator()(T x) const {
    if constexpr (c == PowCase::One) return x;
    else if constexpr (c == PowCase::Two) return x * x;
    else if constexpr (c == PowCase::Half) return d_sqrt(x);
    else if constexpr (c == PowCase::MinusOne) return T(1) / x;
    else if constexpr (c == PowCase::Zero) return T(1);
    else return d_pow(x, v);
  }
};

template <typename T, CompareOp op> struct CompareFn {
  __device__ T operator()(T x, T y) const {
    if constexpr (op == CompareOp::Eq) return T(x == y);
    else if constexpr (op == CompareOp::Ne) return T(x != y);
    else if constexpr (op == CompareOp::Lt) return T(x < y);
    else if constexpr (op == CompareOp::Le) return T(x <= y);
    else if constexpr (op == CompareOp::Gt) return T(x > y);
    else {
      static_assert(op == CompareOp::Ge, "unhandled CompareOp");
      return T(x >= y);
    }
  }
};

template <typename T, typename C> struct WhereFn {
  __device__ T operator()(C c, T x, T y) const { return c != C(0) ? x : y; }
};

template <typename T, typename M> struct MaskedFillFn {
  T v;
  __device__ T operator()(T a, M m) const { return m != M(0) ? v : a; }
};

// ---------------------------------------------------------------- launchers

template <typename T, UnaryOp op>
void launch_unary(const ElemIter& it) {
  cuda::launch_elementwise<UnaryFn<T, op>, T, T>(it, UnaryFn<T, op>{}, "unary");
}

template <typename T>
void unary_typed(UnaryOp op, const ElemIter& it) {
  if constexpr (std::is_integral_v<T>) {
    switch (op) {
      case UnaryOp::Neg: return launch_unary<T, UnaryOp::Neg>(it);
      case UnaryOp::Abs: return launch_unary<T, UnaryOp::Abs>(it);
      default: MUXNET_FAIL("unary: op ", int(op), " needs a floating dtype (f32 or f64), got ", dtype_of<T>::value);
    }
  } else {
    switch (op) {
      case UnaryOp::Neg: return launch_unary<T, UnaryOp::Neg>(it);
      case UnaryOp::Exp: return launch_unary<T, UnaryOp::Exp>(it);
      case UnaryOp::Log: return launch_unary<T, UnaryOp::Log>(it);
      case UnaryOp::Sqrt: return launch_unary<T, UnaryOp::Sqrt>(it);
      case UnaryOp::Rsqrt: return launch_unary<T, UnaryOp::Rsqrt>(it);
      case UnaryOp::Tanh: return launch_unary<T, UnaryOp::Tanh>(it);
      case UnaryOp::Sigmoid: return launch_unary<T, UnaryOp::Sigmoid>(it);
      case UnaryOp::Relu: return launch_unary<T, UnaryOp::Relu>(it);
      case UnaryOp::Gelu: return launch_unary<T, UnaryOp::Gelu>(it);
      case UnaryOp::Abs: return launch_unary<T, UnaryOp::Abs>(it);
      default: MUXNET_FAIL("unary: invalid op code ", int(op));
    }
  }
}

// x and out: same shape and dtype.
void unary_cuda(UnaryOp op, const Tensor& x, const Tensor& out) {
  const ElemIter it = make_elem_iter(out, {&x});
  dispatch_all(out.dtype(), "unary", [&](auto tag) { unary_typed<typename decltype(tag)::type>(op, it); });
}

template <typename T, UnaryGradOp op>
void launch_unary_grad(const ElemIter& it) {
  cuda::launch_elementwise<UnaryGradFn<T, op>, T, T, T>(it, UnaryGradFn<T, op>{}, "unary_backward");
}

// grad_out, saved, grad_in: same shape, floating dtype. saved is x (Relu, Gelu) or y (Tanh, Sigmoid).
void unary_backward_cuda(UnaryGradOp op, const Tensor& grad_out, const Tensor& saved, const Tensor& grad_in) {
  const ElemIter it = make_elem_iter(grad_in, {&grad_out, &saved});
  dispatch_floating(grad_in.dtype(), "unary_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case UnaryGradOp::Relu: return launch_unary_grad<T, UnaryGradOp::Relu>(it);
      case UnaryGradOp::Gelu: return launch_unary_grad<T, UnaryGradOp::Gelu>(it);
      case UnaryGradOp::Tanh: return launch_unary_grad<T, UnaryGradOp::Tanh>(it);
      case UnaryGradOp::Sigmoid: return launch_unary_grad<T, UnaryGradOp::Sigmoid>(it);
      default: MUXNET_FAIL("unary_backward: invalid op code ", int(op));
    }
  });
}

template <typename T, BinaryOp op>
void launch_binary(const ElemIter& it) {
  cuda::launch_elementwise<BinaryFn<T, op>, T, T, T>(it, BinaryFn<T, op>{}, "binary");
}

// a, b broadcast to out; all three share out's dtype. out may be a itself (in-place binary_).
void binary_cuda(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const ElemIter it = make_elem_iter(out, {&a, &b});
  dispatch_all(out.dtype(), "binary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case BinaryOp::Add: return launch_binary<T, BinaryOp::Add>(it);
      case BinaryOp::Sub: return launch_binary<T, BinaryOp::Sub>(it);
      case BinaryOp::Mul: return launch_binary<T, BinaryOp::Mul>(it);
      case BinaryOp::Div:
        if constexpr (std::is_floating_point_v<T>) {
          return launch_binary<T, BinaryOp::Div>(it);
        } else {
          MUXNET_FAIL("div: integer division is not supported (got ", dtype_of<T>::value, ")");
        }
      case BinaryOp::Maximum: return launch_binary<T, BinaryOp::Maximum>(it);
      case BinaryOp::Minimum: return launch_binary<T, BinaryOp::Minimum>(it);
      default: MUXNET_FAIL("binary: invalid op code ", int(op));
    }
  });
}

template <typename T, ScalarOp op>
void launch_scalar(const ElemIter& it, T v) {
  cuda::launch_elementwise<ScalarFn<T, op>, T, T>(it, ScalarFn<T, op>{v}, "binary_scalar");
}

template <typename T, PowCase c>
void launch_pow(const ElemIter& it, T v) {
  cuda::launch_elementwise<PowFn<T, c>, T, T>(it, PowFn<T, c>{v}, "binary_scalar");
}

// x (op) s for the ops that need a floating T.
template <typename T>
void scalar_floating(ScalarOp op, const ElemIter& it, double s) {
  const T v = T(s);
  switch (op) {
    case ScalarOp::Div: return launch_scalar<T, ScalarOp::Div>(it, v);
    case ScalarOp::RDiv: return launch_scalar<T, ScalarOp::RDiv>(it, v);
    case ScalarOp::Pow:
      // The same tests on s (the double) as the CPU kernel.
      if (s == 1.0) return launch_pow<T, PowCase::One>(it, v);
      if (s == 2.0) return launch_pow<T, PowCase::Two>(it, v);
      if (s == 0.5) return launch_pow<T, PowCase::Half>(it, v);
      if (s == -1.0) return launch_pow<T, PowCase::MinusOne>(it, v);
      if (s == 0.0) return launch_pow<T, PowCase::Zero>(it, v);
      return launch_pow<T, PowCase::General>(it, v);
    default: MUXNET_FAIL("binary_scalar: invalid op code ", int(op));
  }
}

// x and out: same shape and dtype. For integer dtypes s is an integer in range (checked by the op).
void binary_scalar_cuda(ScalarOp op, const Tensor& x, double s, const Tensor& out) {
  const ElemIter it = make_elem_iter(out, {&x});
  dispatch_all(out.dtype(), "binary_scalar", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = T(s);
    switch (op) {
      case ScalarOp::Add: return launch_scalar<T, ScalarOp::Add>(it, v);
      case ScalarOp::Sub: return launch_scalar<T, ScalarOp::Sub>(it, v);
      case ScalarOp::RSub: return launch_scalar<T, ScalarOp::RSub>(it, v);
      case ScalarOp::Mul: return launch_scalar<T, ScalarOp::Mul>(it, v);
      case ScalarOp::Maximum: return launch_scalar<T, ScalarOp::Maximum>(it, v);
      case ScalarOp::Minimum: return launch_scalar<T, ScalarOp::Minimum>(it, v);
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

template <typename T, CompareOp op>
void launch_compare(const ElemIter& it) {
  cuda::launch_elementwise<CompareFn<T, op>, T, T, T>(it, CompareFn<T, op>{}, "compare");
}

// a, b broadcast to out; out is a 1/0 mask in the inputs' dtype.
void compare_cuda(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const ElemIter it = make_elem_iter(out, {&a, &b});
  dispatch_all(out.dtype(), "compare", [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case CompareOp::Eq: return launch_compare<T, CompareOp::Eq>(it);
      case CompareOp::Ne: return launch_compare<T, CompareOp::Ne>(it);
      case CompareOp::Lt: return launch_compare<T, CompareOp::Lt>(it);
      case CompareOp::Le: return launch_compare<T, CompareOp::Le>(it);
      case CompareOp::Gt: return launch_compare<T, CompareOp::Gt>(it);
      case CompareOp::Ge: return launch_compare<T, CompareOp::Ge>(it);
      default: MUXNET_FAIL("compare: invalid op code ", int(op));
    }
  });
}

// cond (any dtype), a, b broadcast to out; a, b and out share a dtype.
void where_cuda(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const ElemIter it = make_elem_iter(out, {&cond, &a, &b});
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_all(cond.dtype(), "where", [&](auto ctag) {
      using C = typename decltype(ctag)::type;
      cuda::launch_elementwise<WhereFn<T, C>, T, C, T, T>(it, WhereFn<T, C>{}, "where");
    });
  });
}

// mask (any dtype) broadcast to x; out has x's shape and dtype; value already fits x's dtype.
void masked_fill_cuda(const Tensor& x, const Tensor& mask, double value, const Tensor& out) {
  const ElemIter it = make_elem_iter(out, {&x, &mask});
  dispatch_all(out.dtype(), "masked_fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = T(value);
    dispatch_all(mask.dtype(), "masked_fill", [&](auto mtag) {
      using M = typename decltype(mtag)::type;
      cuda::launch_elementwise<MaskedFillFn<T, M>, T, T, M>(it, MaskedFillFn<T, M>{v}, "masked_fill");
    });
  });
}

}  // namespace

void register_cuda_elementwise() {
  register_kernel<OpId::unary>(Device::CUDA, unary_cuda);
  register_kernel<OpId::unary_backward>(Device::CUDA, unary_backward_cuda);
  register_kernel<OpId::binary>(Device::CUDA, binary_cuda);
  register_kernel<OpId::binary_scalar>(Device::CUDA, binary_scalar_cuda);
  register_kernel<OpId::compare>(Device::CUDA, compare_cuda);
  register_kernel<OpId::where>(Device::CUDA, where_cuda);
  register_kernel<OpId::masked_fill>(Device::CUDA, masked_fill_cuda);
}

}  // namespace muxnet
