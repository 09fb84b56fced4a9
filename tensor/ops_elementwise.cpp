// ops_elementwise.cpp — the eager elementwise ops: unary functions and their derivatives, binary ops
// with broadcasting (and their scalar and in-place forms), comparisons, where and masked_fill.
//
// Each op validates its inputs (dtype, device, broadcastable shapes), allocates the output and calls
// the kernel for the inputs' device (tensor/cpu/elementwise.cpp on the CPU). Inputs may be any
// strided view: the kernels read strides directly, so nothing is made contiguous here.
//
// What this is not: differentiable (autograd/ wraps these), and there is no type promotion: the
// tensor operands of one op share a dtype, and a scalar must fit the tensor's dtype (an integer
// tensor takes only integral scalars).
//
// PyTorch semantics matched: NumPy broadcasting; comparisons give 1/0 in the inputs' dtype (PyTorch
// gives bool); maximum/minimum propagate NaN; div is true division (floating dtypes only here).
#include <cmath>

#include "tensor/ops.h"

namespace muxnet::ops {

namespace {

const char* unary_name(UnaryOp op) {
  static const char* const names[] = {"neg", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "abs"};
  static_assert(sizeof(names) / sizeof(names[0]) == size_t(UnaryOp::COUNT), "a name per UnaryOp");
  MUXNET_CHECK(op < UnaryOp::COUNT, "unary: invalid op code ", int(op));
  return names[size_t(op)];
}

const char* unary_grad_name(UnaryGradOp op) {
  static const char* const names[] = {"relu_backward", "gelu_backward", "tanh_backward", "sigmoid_backward"};
  static_assert(sizeof(names) / sizeof(names[0]) == size_t(UnaryGradOp::COUNT), "a name per UnaryGradOp");
  MUXNET_CHECK(op < UnaryGradOp::COUNT, "unary_backward: invalid op code ", int(op));
  return names[size_t(op)];
}

const char* binary_name(BinaryOp op) {
  static const char* const names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
  static_assert(sizeof(names) / sizeof(names[0]) == size_t(BinaryOp::COUNT), "a name per BinaryOp");
  MUXNET_CHECK(op < BinaryOp::COUNT, "binary: invalid op code ", int(op));
  return names[size_t(op)];
}

const char* binary_inplace_name(BinaryOp op) {
  static const char* const names[] = {"add_", "sub_", "mul_", "div_", "maximum_", "minimum_"};
  static_assert(sizeof(names) / sizeof(names[0]) == size_t(BinaryOp::COUNT), "a name per BinaryOp");
  MUXNET_CHECK(op < BinaryOp::COUNT, "binary_: invalid op code ", int(op));
  return names[size_t(op)];
}

const char* scalar_name(ScalarOp op) {
  static const char* const names[] = {"add", "sub", "rsub", "mul", "div", "rdiv", "pow", "maximum", "minimum"};
  static_assert(sizeof(names) / sizeof(names[0]) == size_t(ScalarOp::COUNT), "a name per ScalarOp");
  MUXNET_CHECK(op < ScalarOp::COUNT, "binary_scalar: invalid op code ", int(op));
  return names[size_t(op)];
}

const char* compare_name(CompareOp op) {
  static const char* const names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
  static_assert(sizeof(names) / sizeof(names[0]) == size_t(CompareOp::COUNT), "a name per CompareOp");
  MUXNET_CHECK(op < CompareOp::COUNT, "compare: invalid op code ", int(op));
  return names[size_t(op)];
}

// Division is true division: integer tensors would need a rounding rule, which we do not pick.
void check_not_integer_division(const char* op, DType dtype) {
  MUXNET_CHECK(is_floating(dtype), op, ": integer division is not supported (got ", dtype,
               "); convert to f32 or f64 first");
}

// A scalar applied to an integer tensor must be an integer that the dtype can hold (no promotion).
void check_scalar_fits(const char* op, const char* what, double s, DType dtype) {
  if (!is_integral(dtype)) return;
  MUXNET_CHECK(std::isfinite(s) && s == std::trunc(s), op, ": ", what, " ", s,
               " is not an integer, but the tensor has dtype ", dtype);
  // [-2^31, 2^31) for i32, [-2^63, 2^63) for i64 (both bounds exact in double).
  const double limit = dtype == DType::I32 ? 2147483648.0 : 9223372036854775808.0;
  MUXNET_CHECK(s >= -limit && s < limit, op, ": ", what, " ", s, " is out of range for dtype ", dtype);
}

// The broadcast shape of a and b, after checking that they can meet in one kernel.
Shape check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_same_device(op, a, b);
  check_same_dtype(op, a, b);
  return broadcast_shapes(a.shape(), b.shape(), op);
}

// True when writing through `dst` could change an element of `src` before it is read elsewhere:
// they share storage but are not the very same view (exact aliasing is safe elementwise).
bool overlaps_differently(const Tensor& dst, const Tensor& src) {
  if (dst.storage() != src.storage()) return false;
  return !(dst.offset() == src.offset() && dst.shape() == src.shape() && dst.strides() == src.strides());
}

}  // namespace

// ---------------------------------------------------------------- unary

Tensor unary(UnaryOp op, const Tensor& x) {
  const char* name = unary_name(op);
  if (op != UnaryOp::Neg && op != UnaryOp::Abs) check_floating(name, x);
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  kernel<OpId::unary>(x.device())(op, x, out);
  return out;
}

void unary_(UnaryOp op, const Tensor& x) {
  const char* name = unary_name(op);
  if (op != UnaryOp::Neg && op != UnaryOp::Abs) check_floating(name, x);
  for (int d = 0; d < x.ndim(); ++d) {
    MUXNET_CHECK(x.stride(d) != 0 || x.size(d) <= 1, name, "_: x is a broadcast (expanded) view with shape ",
                 x.shape(), " and strides ", x.strides(), "; cannot write to it in place");
  }
  // Every kernel reads element i before it writes element i, so x may be both input and output.
  kernel<OpId::unary>(x.device())(op, x, x);
}

Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::Rsqrt, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::Tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, x); }
Tensor gelu(const Tensor& x) { return unary(UnaryOp::Gelu, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, x); }

// grad_out, saved: the same shape (saved is x for relu/gelu, y for tanh/sigmoid).
Tensor unary_backward(UnaryGradOp op, const Tensor& grad_out, const Tensor& saved) {
  const char* name = unary_grad_name(op);
  const char* saved_name = (op == UnaryGradOp::Relu || op == UnaryGradOp::Gelu) ? "x" : "y";
  check_same_device(name, grad_out, saved);
  check_same_dtype(name, grad_out, saved);
  check_floating(name, grad_out);
  MUXNET_CHECK(grad_out.shape() == saved.shape(), name, ": grad_out ", grad_out.shape(), " and ", saved_name,
               " ", saved.shape(), " differ in shape");
  Tensor grad_in = empty(grad_out.shape(), grad_out.dtype(), grad_out.device());
  kernel<OpId::unary_backward>(grad_out.device())(op, grad_out, saved, grad_in);
  return grad_in;
}

Tensor relu_backward(const Tensor& grad_out, const Tensor& x) { return unary_backward(UnaryGradOp::Relu, grad_out, x); }
Tensor gelu_backward(const Tensor& grad_out, const Tensor& x) { return unary_backward(UnaryGradOp::Gelu, grad_out, x); }
Tensor tanh_backward(const Tensor& grad_out, const Tensor& y) { return unary_backward(UnaryGradOp::Tanh, grad_out, y); }
Tensor sigmoid_backward(const Tensor& grad_out, const Tensor& y) {
  return unary_backward(UnaryGradOp::Sigmoid, grad_out, y);
}

// ---------------------------------------------------------------- binary

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  Shape shape = check_binary(name, a, b);
  if (op == BinaryOp::Div) check_not_integer_division(name, a.dtype());
  Tensor out = empty(shape, a.dtype(), a.device());
  kernel<OpId::binary>(a.device())(op, a, b, out);
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Minimum, a, b); }

Tensor binary_scalar(ScalarOp op, const Tensor& x, double s) {
  const char* name = scalar_name(op);
  if (op == ScalarOp::Div || op == ScalarOp::RDiv) {
    check_not_integer_division(name, x.dtype());
  } else if (op == ScalarOp::Pow) {
    check_floating(name, x);
  } else {
    check_scalar_fits(name, "scalar", s, x.dtype());
  }
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  kernel<OpId::binary_scalar>(x.device())(op, x, s, out);
  return out;
}

Tensor add(const Tensor& x, double s) { return binary_scalar(ScalarOp::Add, x, s); }
Tensor sub(const Tensor& x, double s) { return binary_scalar(ScalarOp::Sub, x, s); }
Tensor mul(const Tensor& x, double s) { return binary_scalar(ScalarOp::Mul, x, s); }
Tensor div(const Tensor& x, double s) { return binary_scalar(ScalarOp::Div, x, s); }
Tensor rsub(double s, const Tensor& x) { return binary_scalar(ScalarOp::RSub, x, s); }
Tensor rdiv(double s, const Tensor& x) { return binary_scalar(ScalarOp::RDiv, x, s); }
Tensor pow(const Tensor& x, double exponent) { return binary_scalar(ScalarOp::Pow, x, exponent); }
Tensor maximum(const Tensor& x, double s) { return binary_scalar(ScalarOp::Maximum, x, s); }
Tensor minimum(const Tensor& x, double s) { return binary_scalar(ScalarOp::Minimum, x, s); }

// a (op)= b: b broadcasts to a's shape; a is written in place.
void binary_(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_inplace_name(op);
  Shape shape = check_binary(name, a, b);
  if (op == BinaryOp::Div) check_not_integer_division(name, a.dtype());
  MUXNET_CHECK(shape == a.shape(), name, ": b ", b.shape(), " does not broadcast to a's shape ", a.shape(),
               " (the result would be ", shape, ")");
  // An expanded a would write one memory location from several elements.
  for (int d = 0; d < a.ndim(); ++d) {
    MUXNET_CHECK(a.stride(d) != 0 || a.size(d) <= 1, name, ": a is a broadcast (expanded) view with shape ",
                 a.shape(), " and strides ", a.strides(), "; cannot write to it in place");
  }
  // b overlapping a in another layout (b = a.t(), a shifted slice) would read already-written values.
  const Tensor src = overlaps_differently(a, b) ? b.clone() : b;
  kernel<OpId::binary>(a.device())(op, a, src, a);
}

void add_(const Tensor& a, const Tensor& b) { binary_(BinaryOp::Add, a, b); }

// ---------------------------------------------------------------- comparisons, selection

Tensor compare(CompareOp op, const Tensor& a, const Tensor& b) {
  const char* name = compare_name(op);
  Shape shape = check_binary(name, a, b);
  Tensor out = empty(shape, a.dtype(), a.device());
  kernel<OpId::compare>(a.device())(op, a, b, out);
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return compare(CompareOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(CompareOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(CompareOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(CompareOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(CompareOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(CompareOp::Ge, a, b); }

// cond: any dtype, nonzero = true; a, b: one dtype; all three broadcast together.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  check_same_dtype("where", a, b);
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty(shape, a.dtype(), a.device());
  kernel<OpId::where>(a.device())(cond, a, b, out);
  return out;
}

// mask: any dtype, broadcast to x's shape; the result has x's shape and dtype.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_same_device("masked_fill", x, mask);
  Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  MUXNET_CHECK(shape == x.shape(), "masked_fill: mask ", mask.shape(), " does not broadcast to x's shape ",
               x.shape());
  check_scalar_fits("masked_fill", "value", value, x.dtype());
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  kernel<OpId::masked_fill>(x.device())(x, mask, value, out);
  return out;
}

}  // namespace muxnet::ops
