// test_elementwise.cpp — the elementwise family: unary ops and their derivatives, binary ops with
// broadcasting (tensor, scalar and in-place forms), comparisons, where, masked_fill, and the
// vectorisable float math of tensor/cpu/vec_math.h.
//
// Every op is checked against a naive reference written here: loops over output indices in double
// (Tensor::at on the operand views, broadcasting done by hand), in f32 and f64, on contiguous,
// transposed, strided, sliced and expanded inputs, 0-d and empty tensors. Derivatives are also
// checked against central finite differences in f64, vec_math against the f64 std:: functions over
// dense sweeps (in ulps), and a few values by hand.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "tensor/cpu/vec_math.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::for_each_index;
using muxnet::test::random_tensor;
using muxnet::test::strided_layout;
using muxnet::test::transposed_layout;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const DType kFloatTypes[] = {DType::F32, DType::F64};

// Reference normal CDF through erf (the kernels use other formulas: erfc in f64, vec_math in f32).
double ref_phi(double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); }
double ref_gelu(double x) { return x * ref_phi(x); }
double ref_gelu_grad(double x) { return ref_phi(x) + x * std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }

// The index into an operand of shape s that output index idx reads under NumPy broadcasting.
std::vector<int64_t> bcast_index(const std::vector<int64_t>& idx, const Shape& s) {
  std::vector<int64_t> r(size_t(s.ndim()));
  const int lead = int(idx.size()) - s.ndim();
  for (int d = 0; d < s.ndim(); ++d) r[size_t(d)] = s[d] == 1 ? 0 : idx[size_t(d + lead)];
  return r;
}

// out[i] = f(x[i]) in double, as an f64 tensor of x's shape.
Tensor ref_map1(const Tensor& x, const std::function<double(double)>& f) {
  std::vector<double> v;
  for_each_index(x.shape(), [&](const std::vector<int64_t>& i) { v.push_back(f(x.at(i))); });
  return from_vector(v, x.shape());
}

// out[i] = f(a[i'], b[i'']) over out_shape with a and b broadcast by hand.
Tensor ref_map2(const Tensor& a, const Tensor& b, const Shape& out_shape,
                const std::function<double(double, double)>& f) {
  std::vector<double> v;
  for_each_index(out_shape, [&](const std::vector<int64_t>& i) {
    v.push_back(f(a.at(bcast_index(i, a.shape())), b.at(bcast_index(i, b.shape()))));
  });
  return from_vector(v, out_shape);
}

Tensor ref_map3(const Tensor& a, const Tensor& b, const Tensor& c, const Shape& out_shape,
                const std::function<double(double, double, double)>& f) {
  std::vector<double> v;
  for_each_index(out_shape, [&](const std::vector<int64_t>& i) {
    v.push_back(f(a.at(bcast_index(i, a.shape())), b.at(bcast_index(i, b.shape())),
                  c.at(bcast_index(i, c.shape()))));
  });
  return from_vector(v, out_shape);
}

// Views of random values in [lo, hi) covering the layouts a kernel meets: contiguous, transposed,
// strided, sliced, expanded (stride 0), 0-d and empty. Each is compared with a reference of itself.
std::vector<std::pair<std::string, Tensor>> unary_inputs(DType dt, uint64_t seed, double lo, double hi) {
  Tensor x = random_tensor({4, 5, 6}, dt, seed, lo, hi);
  return {
      {"contiguous", x},
      {"transposed", transposed_layout(x, 0, 2)},
      {"strided", strided_layout(x)},
      {"sliced", x.slice(1, 1, 5, 2).narrow(2, 1, 4)},
      {"expanded", random_tensor({4, 1, 6}, dt, seed + 1, lo, hi).expand({3, 4, 5, 6})},
      {"0-d", random_tensor({}, dt, seed + 2, lo, hi)},
      {"empty", random_tensor({0, 3}, dt, seed + 3, lo, hi)},
  };
}

struct BroadcastCase {
  Shape a, b, out;
};
const BroadcastCase kBroadcastCases[] = {
    {{4, 5}, {4, 5}, {4, 5}},          {{4, 5}, {5}, {4, 5}},
    {{4, 1}, {1, 5}, {4, 5}},          {{3, 1, 5}, {4, 5}, {3, 4, 5}},
    {{}, {4, 5}, {4, 5}},              {{2, 3}, {}, {2, 3}},
    {{}, {}, {}},                      {{2, 0, 3}, {3}, {2, 0, 3}},
    {{2, 1, 3, 1}, {4, 1, 5}, {2, 4, 3, 5}},
};

// (a, b) operand pairs for a binary op: every broadcast case contiguous, plus non-contiguous views.
std::vector<std::pair<Tensor, Tensor>> binary_inputs(DType dt, uint64_t seed, double lo_b = -2.0, double hi_b = 2.0) {
  std::vector<std::pair<Tensor, Tensor>> cases;
  for (const BroadcastCase& c : kBroadcastCases) {
    cases.push_back({random_tensor(c.a, dt, seed), random_tensor(c.b, dt, seed + 1, lo_b, hi_b)});
    seed += 2;
  }
  Tensor a = random_tensor({6, 7}, dt, seed++);
  Tensor b = random_tensor({6, 7}, dt, seed++, lo_b, hi_b);
  cases.push_back({transposed_layout(a), strided_layout(b)});
  cases.push_back({strided_layout(a), transposed_layout(b)});
  cases.push_back({a.slice(0, 1, 6, 2), random_tensor({1, 7}, dt, seed++, lo_b, hi_b).expand({3, 7})});
  cases.push_back({a.t(), random_tensor({6}, dt, seed++, lo_b, hi_b)});  // b broadcast along a's inner dim
  return cases;
}

// ulp of the float nearest to ref (2^-149 in the subnormal range).
double ulp_of(double ref) {
  const double a = std::fabs(ref);
  if (a < FLT_MIN) return std::ldexp(1.0, -149);
  int e;
  std::frexp(a, &e);
  return std::ldexp(1.0, e - 24);
}

struct UlpReport {
  double max_ulp = 0, max_abs = 0;
  float worst_x = 0;
  bool specials_ok = true;
};

// Max error of f32 f against f64 g over xs, in ulps of g; non-finite results must match exactly.
template <typename F, typename G>
UlpReport measure_ulps(const std::vector<float>& xs, F f, G g) {
  UlpReport r;
  for (float x : xs) {
    const double want = g(double(x));
    const float got = f(x);
    if (std::isnan(want)) {
      r.specials_ok = r.specials_ok && std::isnan(got);
      continue;
    }
    if (std::isinf(float(want))) {
      r.specials_ok = r.specials_ok && double(got) == double(float(want));
      continue;
    }
    const double err = std::fabs(double(got) - want);
    r.max_abs = std::max(r.max_abs, err);
    if (err / ulp_of(want) > r.max_ulp) {
      r.max_ulp = err / ulp_of(want);
      r.worst_x = x;
    }
  }
  return r;
}

// Restores the thread count when a test ends, even on failure.
struct ThreadGuard {
  int saved = get_num_threads();
  ~ThreadGuard() { set_num_threads(saved); }
};

}  // namespace

// ---------------------------------------------------------------- unary

TEST_CASE("unary ops match a double reference on every layout", "[elementwise]") {
  struct Case {
    UnaryOp op;
    const char* name;
    double lo, hi;
    std::function<double(double)> ref;
  };
  const std::vector<Case> cases = {
      {UnaryOp::Neg, "neg", -5, 5, [](double x) { return -x; }},
      {UnaryOp::Exp, "exp", -10, 10, [](double x) { return std::exp(x); }},
      {UnaryOp::Log, "log", 0.01, 5, [](double x) { return std::log(x); }},
      {UnaryOp::Sqrt, "sqrt", 0, 5, [](double x) { return std::sqrt(x); }},
      {UnaryOp::Rsqrt, "rsqrt", 0.01, 5, [](double x) { return 1.0 / std::sqrt(x); }},
      {UnaryOp::Tanh, "tanh", -6, 6, [](double x) { return std::tanh(x); }},
      {UnaryOp::Sigmoid, "sigmoid", -12, 12, [](double x) { return 1.0 / (1.0 + std::exp(-x)); }},
      {UnaryOp::Relu, "relu", -3, 3, [](double x) { return x > 0 ? x : 0.0; }},
      {UnaryOp::Gelu, "gelu", -6, 6, ref_gelu},
      {UnaryOp::Abs, "abs", -5, 5, [](double x) { return std::fabs(x); }},
  };
  uint64_t seed = 100;
  for (DType dt : kFloatTypes) {
    for (const Case& c : cases) {
      for (const auto& [layout, x] : unary_inputs(dt, seed += 10, c.lo, c.hi)) {
        INFO(c.name << " " << dt << " " << layout << " " << x.shape());
        Tensor y = ops::unary(c.op, x);
        REQUIRE(y.dtype() == dt);
        REQUIRE(y.shape() == x.shape());
        CHECK_CLOSE_DT(y, ref_map1(x, c.ref));
      }
    }
  }
}

TEST_CASE("unary ops: hand-computed values", "[elementwise]") {
  for (DType dt : kFloatTypes) {
    INFO(dt);
    const double tol = dt == DType::F32 ? 1e-7 : 1e-14;
    auto one = [&](Tensor (*f)(const Tensor&), double x) { return f(scalar_tensor(x, dt)).item(); };
    CHECK(one(ops::gelu, 1.0) == Approx(0.8413447460685429).epsilon(tol));
    CHECK(one(ops::gelu, -1.0) == Approx(-0.15865525393145707).epsilon(tol));
    CHECK(one(ops::gelu, 2.0) == Approx(1.9544997361036416).epsilon(tol));
    CHECK(one(ops::gelu, -3.0) == Approx(-0.004049694094890287).epsilon(tol));
    CHECK(one(ops::gelu, 0.0) == 0.0);
    CHECK(one(ops::sigmoid, 0.0) == 0.5);
    CHECK(one(ops::sigmoid, 2.0) == Approx(0.8807970779778823).epsilon(tol));
    CHECK(one(ops::sigmoid, -2.0) == Approx(0.11920292202211755).epsilon(tol));
    CHECK(one(ops::tanh, 0.5) == Approx(0.46211715726000974).epsilon(tol));
    CHECK(one(ops::tanh, -2.0) == Approx(-0.9640275800758169).epsilon(tol));
    CHECK(one(ops::exp, 1.0) == Approx(2.718281828459045).epsilon(tol));
    CHECK(one(ops::exp, -3.5) == Approx(0.0301973834223185).epsilon(tol));
    CHECK(one(ops::log, 10.0) == Approx(2.302585092994046).epsilon(tol));
    CHECK(one(ops::sqrt, 4.0) == 2.0);
    CHECK(one(ops::rsqrt, 4.0) == 0.5);
    CHECK(one(ops::abs, -3.0) == 3.0);
    CHECK(one(ops::neg, 2.5) == -2.5);
    Tensor r = ops::relu(from_vector<double>({-1, 0, 2}).to(dt));
    CHECK(r.to_vector<double>() == std::vector<double>{0, 0, 2});
  }
}

TEST_CASE("unary ops: large magnitudes, infinities and NaN", "[elementwise]") {
  for (DType dt : kFloatTypes) {
    INFO(dt);
    auto f = [&](Tensor (*op)(const Tensor&), double x) { return op(scalar_tensor(x, dt)).item(); };
    CHECK(f(ops::exp, kInf) == kInf);
    CHECK(f(ops::exp, -kInf) == 0.0);
    CHECK(f(ops::exp, 1000.0) == kInf);
    CHECK(f(ops::exp, -1000.0) == 0.0);
    CHECK(f(ops::sigmoid, 100.0) == 1.0);
    CHECK(f(ops::sigmoid, -800.0) == 0.0);  // no exp overflow, no NaN
    CHECK(f(ops::sigmoid, -kInf) == 0.0);
    CHECK(f(ops::sigmoid, -80.0) == Approx(1.8048513878454153e-35).epsilon(1e-6));
    CHECK(f(ops::tanh, 30.0) == 1.0);
    CHECK(f(ops::tanh, -kInf) == -1.0);
    CHECK(f(ops::gelu, kInf) == kInf);
    CHECK(f(ops::gelu, -kInf) == 0.0);
    CHECK(f(ops::gelu, 50.0) == 50.0);
    CHECK(f(ops::gelu, -50.0) == 0.0);
    // The negative tail without 1 + erf cancellation: gelu(-10) = -10 Phi(-10).
    CHECK(f(ops::gelu, -10.0) == Approx(-7.619853024160593e-23).epsilon(1e-6));
    CHECK(f(ops::relu, -kInf) == 0.0);
    for (auto op : {ops::neg, ops::exp, ops::log, ops::sqrt, ops::rsqrt, ops::tanh, ops::sigmoid, ops::relu,
                    ops::gelu, ops::abs}) {
      CHECK(std::isnan(f(op, kNaN)));
    }
    CHECK(std::isnan(f(ops::log, -1.0)));
    CHECK(f(ops::log, 0.0) == -kInf);
    CHECK(f(ops::log, kInf) == kInf);
    CHECK(f(ops::log, 1e-40) == Approx(-92.10340371976183).epsilon(1e-6));  // subnormal in f32
    CHECK(std::isnan(f(ops::sqrt, -1.0)));
  }
}

TEST_CASE("f32 transcendental kernels agree with f64 over a wide range", "[elementwise]") {
  // The f32 kernels run vec_math, the f64 ones libm: this ties the op layer to the accuracy sweeps.
  // atol: f32 results below FLT_MIN (gelu for x < -13) are subnormal or 0, with less precision.
  Tensor x64 = arange(-30.0, 30.0, 1.0 / 64, DType::F64);
  Tensor x32 = x64.to(DType::F32);
  for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Gelu}) {
    INFO("op " << int(op));
    CHECK_CLOSE(ops::unary(op, x32), ops::unary(op, x64), 1e-37, 5e-7);
  }
  Tensor g64 = ops::gelu_backward(ones_like(x64), x64);
  CHECK_CLOSE(ops::gelu_backward(ones_like(x32), x32), g64, 2e-7, 5e-7);
  Tensor p64 = ops::exp(arange(-100.0, 88.0, 1.0 / 16, DType::F64));
  CHECK_CLOSE(ops::log(p64.to(DType::F32)), ops::log(p64.to(DType::F32).to(DType::F64)), 0.0, 2e-7);
}

// ---------------------------------------------------------------- derivatives

TEST_CASE("unary_backward matches a double reference on every layout", "[elementwise]") {
  struct Case {
    UnaryGradOp op;
    const char* name;
    std::function<double(double, double)> ref;  // (grad_out, saved)
  };
  const std::vector<Case> cases = {
      {UnaryGradOp::Relu, "relu", [](double g, double x) { return x > 0 ? g : 0.0; }},
      {UnaryGradOp::Gelu, "gelu", [](double g, double x) { return g * ref_gelu_grad(x); }},
      {UnaryGradOp::Tanh, "tanh", [](double g, double y) { return g * (1 - y * y); }},
      {UnaryGradOp::Sigmoid, "sigmoid", [](double g, double y) { return g * y * (1 - y); }},
  };
  uint64_t seed = 300;
  for (DType dt : kFloatTypes) {
    for (const Case& c : cases) {
      for (const auto& [layout, saved] : unary_inputs(dt, seed += 10, -4, 4)) {
        INFO(c.name << "_backward " << dt << " " << layout);
        Tensor g = random_tensor(saved.shape(), dt, seed + 5);
        for (const Tensor& go : {g, transposed_layout(g)}) {
          Tensor got = ops::unary_backward(c.op, go, saved);
          CHECK_CLOSE_DT(got, ref_map2(go, saved, saved.shape(), c.ref));
        }
      }
    }
  }
}

TEST_CASE("unary_backward: hand-computed values and finite differences", "[elementwise]") {
  for (DType dt : kFloatTypes) {
    INFO(dt);
    const double tol = dt == DType::F32 ? 2e-7 : 1e-14;
    Tensor g = from_vector<double>({5, 6, 7}).to(dt);
    // relu: derivative 0 at x = 0 (PyTorch's choice), grad_out passes where x > 0.
    CHECK(ops::relu_backward(g, from_vector<double>({-1, 0, 2}).to(dt)).to_vector<double>() ==
          std::vector<double>{0, 0, 7});
    // gelu' = Phi(x) + x phi(x): 0.5 at 0; Phi(1) + phi(1) at 1; Phi(-1) - phi(-1) at -1.
    std::vector<double> gg = ops::gelu_backward(ones({3}, dt), from_vector<double>({0, 1, -1}).to(dt)).to_vector<double>();
    CHECK(gg[0] == 0.5);
    CHECK(gg[1] == Approx(1.0833154705876864).epsilon(tol));
    CHECK(gg[2] == Approx(-0.0833154705876864).margin(tol));
    // tanh' = 1 - y^2, sigmoid' = y (1 - y), from the forward output y.
    CHECK(ops::tanh_backward(scalar_tensor(2, dt), scalar_tensor(0.5, dt)).item() == 1.5);
    CHECK(ops::sigmoid_backward(scalar_tensor(2, dt), scalar_tensor(0.25, dt)).item() == 0.375);
  }
  // Central differences in f64: an independent check of each derivative formula.
  const double h = 1e-6;
  for (double x : {-4.0, -1.3, -0.75, -0.2, 0.0, 0.4, 1.0, 2.7}) {
    INFO("x = " << x);
    auto fd = [&](Tensor (*f)(const Tensor&)) {
      return (f(scalar_tensor(x + h, DType::F64)).item() - f(scalar_tensor(x - h, DType::F64)).item()) / (2 * h);
    };
    Tensor one = scalar_tensor(1.0, DType::F64), xt = scalar_tensor(x, DType::F64);
    CHECK(ops::gelu_backward(one, xt).item() == Approx(fd(ops::gelu)).margin(1e-8));
    CHECK(ops::tanh_backward(one, ops::tanh(xt)).item() == Approx(fd(ops::tanh)).margin(1e-8));
    CHECK(ops::sigmoid_backward(one, ops::sigmoid(xt)).item() == Approx(fd(ops::sigmoid)).margin(1e-8));
    if (x != 0.0) CHECK(ops::relu_backward(one, xt).item() == Approx(fd(ops::relu)).margin(1e-8));
  }
  // gelu' at +-inf and NaN: 1, 0, NaN (no inf * 0).
  for (DType dt : kFloatTypes) {
    Tensor gi = ops::gelu_backward(ones({3}, dt), from_vector<double>({kInf, -kInf, kNaN}).to(dt));
    std::vector<double> v = gi.to_vector<double>();
    CHECK(v[0] == 1.0);
    CHECK(v[1] == 0.0);
    CHECK(std::isnan(v[2]));
  }
}

TEST_CASE("unary_backward rejects mismatched operands", "[elementwise]") {
  Tensor g = zeros({2, 3});
  REQUIRE_THROWS_WITH(ops::relu_backward(g, zeros({3, 2})), "relu_backward: grad_out (2, 3) and x (3, 2) differ in shape");
  REQUIRE_THROWS_WITH(ops::tanh_backward(g, zeros({3})), "tanh_backward: grad_out (2, 3) and y (3,) differ in shape");
  REQUIRE_THROWS_WITH(ops::gelu_backward(g, zeros({2, 3}, DType::F64)), "gelu_backward: dtypes differ: f32 and f64");
  REQUIRE_THROWS_WITH(ops::sigmoid_backward(zeros({2}, DType::I64), zeros({2}, DType::I64)),
                      "sigmoid_backward: expected a floating tensor (f32 or f64), got i64");
}

// ---------------------------------------------------------------- binary

TEST_CASE("binary ops broadcast like NumPy and match a double reference", "[elementwise]") {
  struct Case {
    BinaryOp op;
    const char* name;
    std::function<double(double, double)> ref;
  };
  const std::vector<Case> cases = {
      {BinaryOp::Add, "add", [](double a, double b) { return a + b; }},
      {BinaryOp::Sub, "sub", [](double a, double b) { return a - b; }},
      {BinaryOp::Mul, "mul", [](double a, double b) { return a * b; }},
      {BinaryOp::Div, "div", [](double a, double b) { return a / b; }},
      {BinaryOp::Maximum, "maximum", [](double a, double b) { return a > b ? a : b; }},
      {BinaryOp::Minimum, "minimum", [](double a, double b) { return a < b ? a : b; }},
  };
  uint64_t seed = 500;
  for (DType dt : kFloatTypes) {
    for (const Case& c : cases) {
      // div: keep b away from 0 so that the relative tolerance means something.
      const double lo_b = c.op == BinaryOp::Div ? 0.5 : -2.0;
      for (const auto& [a, b] : binary_inputs(dt, seed += 40, lo_b, 2.5)) {
        Shape want_shape = broadcast_shapes(a.shape(), b.shape(), "test");
        INFO(c.name << " " << dt << " a " << a.shape() << " strides " << a.strides() << ", b " << b.shape()
                    << " strides " << b.strides());
        Tensor got = ops::binary(c.op, a, b);
        REQUIRE(got.shape() == want_shape);
        REQUIRE(got.dtype() == dt);
        CHECK_CLOSE_DT(got, ref_map2(a, b, want_shape, c.ref));
      }
    }
  }
}

TEST_CASE("binary ops: hand-computed broadcasting and NaN propagation", "[elementwise]") {
  for (DType dt : kFloatTypes) {
    Tensor col = from_vector<double>({1, 2}, {2, 1}).to(dt);
    Tensor row = from_vector<double>({10, 20, 30}).to(dt);
    CHECK(ops::add(col, row).to_vector<double>() == std::vector<double>{11, 21, 31, 12, 22, 32});
    CHECK(ops::sub(row, col).to_vector<double>() == std::vector<double>{9, 19, 29, 8, 18, 28});
    CHECK(ops::mul(col, scalar_tensor(3, dt)).to_vector<double>() == std::vector<double>{3, 6});
    CHECK(ops::div(row, col).to_vector<double>() == std::vector<double>{10, 20, 30, 5, 10, 15});
    // maximum/minimum propagate NaN from either side (PyTorch), unlike std::max.
    Tensor a = from_vector<double>({1, kNaN, 3, kNaN}).to(dt);
    Tensor b = from_vector<double>({kNaN, 2, 1, kNaN}).to(dt);
    for (Tensor r : {ops::maximum(a, b), ops::minimum(a, b), ops::maximum(b, a), ops::minimum(b, a)}) {
      std::vector<double> v = r.to_vector<double>();
      CHECK(std::isnan(v[0]));
      CHECK(std::isnan(v[1]));
      CHECK(std::isnan(v[3]));
    }
    CHECK(ops::maximum(a, b).to_vector<double>()[2] == 3);
    CHECK(ops::minimum(a, b).to_vector<double>()[2] == 1);
    CHECK(std::isnan(ops::maximum(a, kNaN).to_vector<double>()[0]));
    CHECK(ops::maximum(a, 2.0).to_vector<double>()[0] == 2);
  }
}

TEST_CASE("scalar ops match a double reference", "[elementwise]") {
  struct Case {
    ScalarOp op;
    double s;
    std::function<double(double, double)> ref;  // (x, s)
  };
  const std::vector<Case> cases = {
      {ScalarOp::Add, 2.5, [](double x, double s) { return x + s; }},
      {ScalarOp::Sub, 1.25, [](double x, double s) { return x - s; }},
      {ScalarOp::RSub, 3.5, [](double x, double s) { return s - x; }},
      {ScalarOp::Mul, -1.5, [](double x, double s) { return x * s; }},
      {ScalarOp::Div, 4.0, [](double x, double s) { return x / s; }},
      {ScalarOp::Div, 0.75, [](double x, double s) { return x / s; }},
      {ScalarOp::RDiv, 2.0, [](double x, double s) { return s / x; }},
      {ScalarOp::Maximum, 1.0, [](double x, double s) { return x > s ? x : s; }},
      {ScalarOp::Minimum, 1.0, [](double x, double s) { return x < s ? x : s; }},
      // pow: the fast paths (1, 2, 0.5, -1, 0) and the general std::pow path.
      {ScalarOp::Pow, 1.0, [](double x, double) { return x; }},
      {ScalarOp::Pow, 2.0, [](double x, double) { return x * x; }},
      {ScalarOp::Pow, 0.5, [](double x, double) { return std::sqrt(x); }},
      {ScalarOp::Pow, -1.0, [](double x, double) { return 1.0 / x; }},
      {ScalarOp::Pow, 0.0, [](double, double) { return 1.0; }},
      {ScalarOp::Pow, 3.0, [](double x, double) { return x * x * x; }},
      {ScalarOp::Pow, 1.5, [](double x, double) { return x * std::sqrt(x); }},
      {ScalarOp::Pow, -2.5, [](double x, double) { return 1.0 / (x * x * std::sqrt(x)); }},
  };
  uint64_t seed = 900;
  for (DType dt : kFloatTypes) {
    for (const Case& c : cases) {
      // Positive x (pow, rdiv), as every layout below.
      for (const auto& [layout, x] : unary_inputs(dt, seed += 10, 0.25, 3.0)) {
        INFO("scalar op " << int(c.op) << " s=" << c.s << " " << dt << " " << layout);
        Tensor got = ops::binary_scalar(c.op, x, c.s);
        REQUIRE(got.shape() == x.shape());
        CHECK_CLOSE_DT(got, ref_map1(x, [&](double v) { return c.ref(v, c.s); }));
      }
    }
  }
  // The named wrappers.
  Tensor x = from_vector<double>({1, 2, 4});
  CHECK(ops::add(x, 1.0).to_vector<double>() == std::vector<double>{2, 3, 5});
  CHECK(ops::sub(x, 1.0).to_vector<double>() == std::vector<double>{0, 1, 3});
  CHECK(ops::mul(x, 0.5).to_vector<double>() == std::vector<double>{0.5, 1, 2});
  CHECK(ops::div(x, 2.0).to_vector<double>() == std::vector<double>{0.5, 1, 2});
  CHECK(ops::rsub(1.0, x).to_vector<double>() == std::vector<double>{0, -1, -3});
  CHECK(ops::rdiv(4.0, x).to_vector<double>() == std::vector<double>{4, 2, 1});
  CHECK(ops::pow(x, 2.0).to_vector<double>() == std::vector<double>{1, 4, 16});
  CHECK(ops::maximum(x, 2.0).to_vector<double>() == std::vector<double>{2, 2, 4});
  CHECK(ops::minimum(x, 2.0).to_vector<double>() == std::vector<double>{1, 2, 2});
  CHECK(ops::pow(scalar_tensor(kNaN), 0.0).item() == 1.0);  // PyTorch: x^0 = 1 even for NaN
  CHECK(std::isnan(ops::pow(scalar_tensor(-4.0), 0.5).item()));
}

// ---------------------------------------------------------------- in place

TEST_CASE("unary_ writes op(x) into x, on dense and strided x", "[elementwise]") {
  for (DType dt : kFloatTypes) {
    INFO(dt);
    for (UnaryOp op : {UnaryOp::Gelu, UnaryOp::Relu, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Neg}) {
      INFO(int(op));
      Tensor x = random_tensor({5, 37}, dt, 1200 + uint64_t(op));
      Tensor want = ops::unary(op, x);
      const void* data = x.data_ptr();
      ops::unary_(op, x);
      CHECK(x.data_ptr() == data);
      CHECK_CLOSE_DT(x, want);  // the same kernel: equal up to the dtype's tolerance (in fact bit-equal)
      // A transposed view writes through to its storage, in the view's own layout.
      Tensor base = random_tensor({6, 4}, dt, 1250 + uint64_t(op));
      Tensor view = base.t();
      Tensor want_view = ops::unary(op, view);
      ops::unary_(op, view);
      CHECK_CLOSE_DT(base.t(), want_view);
    }
  }
  // By hand: relu in place.
  Tensor x = from_vector<float>({-1.0f, 0.5f, -0.0f, 2.0f}, {4});
  ops::unary_(UnaryOp::Relu, x);
  CHECK(x.to_vector<float>() == std::vector<float>{0.0f, 0.5f, 0.0f, 2.0f});
  REQUIRE_THROWS_WITH(ops::unary_(UnaryOp::Gelu, from_vector<float>({1.0f}, {1}).expand({3})),
                      Catch::Contains("gelu_: x is a broadcast (expanded) view"));
  REQUIRE_THROWS_WITH(ops::unary_(UnaryOp::Gelu, zeros({2}, DType::I64)), Catch::Contains("gelu"));
}

TEST_CASE("add_ and binary_ write in place with broadcasting", "[elementwise]") {
  for (DType dt : kFloatTypes) {
    INFO(dt);
    uint64_t seed = 1300;
    // b broadcast along rows, along columns, and as a 0-d tensor.
    for (const Shape& bs : {Shape{4}, Shape{3, 1}, Shape{}, Shape{3, 4}, Shape{1, 4}}) {
      Tensor a = random_tensor({3, 4}, dt, seed++);
      Tensor b = random_tensor(bs, dt, seed++);
      Tensor want = ref_map2(a, b, a.shape(), [](double x, double y) { return x + y; });
      const void* data = a.data_ptr();
      ops::add_(a, b);
      CHECK(a.data_ptr() == data);
      CHECK_CLOSE_DT(a, want);
    }
    // A non-contiguous a: the write lands in the underlying storage.
    Tensor base = random_tensor({4, 3}, dt, seed++);
    Tensor before = base.clone();
    Tensor at = base.t();  // (3, 4) view
    Tensor b = random_tensor({4}, dt, seed++);
    ops::add_(at, b);
    for_each_index(base.shape(), [&](const std::vector<int64_t>& i) {
      CHECK(base.at(i) == Approx(before.at(i) + b.at({i[0]})).epsilon(1e-6));
    });
    // Exact aliasing (a += a) and overlap in another layout (a += a^T, cloned first).
    Tensor sq = random_tensor({5, 5}, dt, seed++);
    Tensor sq0 = sq.clone();
    ops::add_(sq, sq);
    CHECK_CLOSE_DT(sq, ref_map1(sq0, [](double v) { return 2 * v; }));
    Tensor m = random_tensor({5, 5}, dt, seed++);
    Tensor m0 = m.clone();
    ops::add_(m, m.t());
    CHECK_CLOSE_DT(m, ref_map2(m0, m0.t(), m0.shape(), [](double x, double y) { return x + y; }));
    // Other ops through binary_.
    Tensor c = from_vector<double>({2, 4, 6, 8}, {2, 2}).to(dt);
    ops::binary_(BinaryOp::Mul, c, from_vector<double>({10, 100}).to(dt));
    CHECK(c.to_vector<double>() == std::vector<double>{20, 400, 60, 800});
    ops::binary_(BinaryOp::Div, c, from_vector<double>({2, 4}, {2, 1}).to(dt));
    CHECK(c.to_vector<double>() == std::vector<double>{10, 200, 15, 200});
    ops::binary_(BinaryOp::Sub, c, scalar_tensor(5, dt));
    CHECK(c.to_vector<double>() == std::vector<double>{5, 195, 10, 195});
    ops::binary_(BinaryOp::Minimum, c, scalar_tensor(100, dt));
    CHECK(c.to_vector<double>() == std::vector<double>{5, 100, 10, 100});
  }
  Tensor ai = from_vector<int64_t>({1, 2, 3});
  ops::add_(ai, from_vector<int64_t>({10}));
  CHECK(ai.to_vector<int64_t>() == std::vector<int64_t>{11, 12, 13});
  // Errors: the result must keep a's shape; an expanded a cannot be written.
  REQUIRE_THROWS_WITH(ops::add_(zeros({4}), zeros({3, 4})),
                      "add_: b (3, 4) does not broadcast to a's shape (4,) (the result would be (3, 4))");
  REQUIRE_THROWS_WITH(ops::add_(zeros({2, 3}), zeros({4})), "add_: shapes (2, 3) and (4,) do not broadcast");
  REQUIRE_THROWS_WITH(ops::add_(zeros({1, 3}).expand({2, 3}), zeros({3})),
                      Catch::Contains("add_: a is a broadcast (expanded) view") &&
                          Catch::Contains("cannot write to it in place"));
  REQUIRE_THROWS_WITH(ops::binary_(BinaryOp::Div, zeros({2}, DType::I32), zeros({2}, DType::I32)),
                      "div_: integer division is not supported (got i32); convert to f32 or f64 first");
}

// ---------------------------------------------------------------- comparisons, selection

TEST_CASE("comparisons give a 1/0 mask in the inputs' dtype", "[elementwise]") {
  struct Case {
    CompareOp op;
    const char* name;
    std::function<bool(double, double)> ref;
  };
  const std::vector<Case> cases = {
      {CompareOp::Eq, "eq", [](double a, double b) { return a == b; }},
      {CompareOp::Ne, "ne", [](double a, double b) { return a != b; }},
      {CompareOp::Lt, "lt", [](double a, double b) { return a < b; }},
      {CompareOp::Le, "le", [](double a, double b) { return a <= b; }},
      {CompareOp::Gt, "gt", [](double a, double b) { return a > b; }},
      {CompareOp::Ge, "ge", [](double a, double b) { return a >= b; }},
  };
  uint64_t seed = 1600;
  for (DType dt : {DType::F32, DType::F64, DType::I32, DType::I64}) {
    for (const Case& c : cases) {
      for (const BroadcastCase& bc : kBroadcastCases) {
        // Small integers, so that equal pairs occur.
        Generator gen(seed++);
        Tensor a = randint(-2, 3, bc.a, DType::I64, &gen).to(dt);
        Tensor b = randint(-2, 3, bc.b, DType::I64, &gen).to(dt);
        for (const auto& [av, bv] : std::vector<std::pair<Tensor, Tensor>>{{a, b}, {transposed_layout(a), strided_layout(b)}}) {
          INFO(c.name << " " << dt << " " << av.shape() << " vs " << bv.shape());
          Tensor got = ops::compare(c.op, av, bv);
          REQUIRE(got.dtype() == dt);
          CHECK_CLOSE(got, ref_map2(av, bv, bc.out, [&](double x, double y) { return c.ref(x, y) ? 1.0 : 0.0; }), 0.0, 0.0);
        }
      }
    }
  }
  Tensor x = from_vector<float>({1, 2, kNaN});
  Tensor y = from_vector<float>({1, 3, kNaN});
  CHECK(ops::eq(x, y).to_vector<float>() == std::vector<float>{1, 0, 0});
  CHECK(ops::ne(x, y).to_vector<float>() == std::vector<float>{0, 1, 1});
  CHECK(ops::lt(x, y).to_vector<float>() == std::vector<float>{0, 1, 0});
  CHECK(ops::le(x, y).to_vector<float>() == std::vector<float>{1, 1, 0});
  CHECK(ops::gt(x, y).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(ops::ge(x, y).to_vector<float>() == std::vector<float>{1, 0, 0});
}

TEST_CASE("where selects with a condition of any dtype, all three broadcast", "[elementwise]") {
  uint64_t seed = 1900;
  struct Case {
    Shape c, a, b, out;
  };
  const Case cases[] = {
      {{4, 5}, {4, 5}, {4, 5}, {4, 5}},  {{4, 1}, {1, 5}, {}, {4, 5}},    {{5}, {3, 4, 5}, {4, 1}, {3, 4, 5}},
      {{}, {2, 3}, {2, 3}, {2, 3}},      {{2, 0}, {1}, {2, 1}, {2, 0}},  {{}, {}, {}, {}},
  };
  for (DType dt : kFloatTypes) {
    for (DType ct : {DType::F32, DType::F64, DType::I32, DType::I64}) {
      for (const Case& k : cases) {
        Generator gen(seed++);
        Tensor cond = randint(-1, 2, k.c, DType::I64, &gen).to(ct);  // -1 and 1 are both true
        Tensor a = random_tensor(k.a, dt, seed++);
        Tensor b = random_tensor(k.b, dt, seed++);
        for (const Tensor& cv : {cond, transposed_layout(cond)}) {
          INFO("where " << dt << " cond " << ct << " " << cv.shape() << " a " << a.shape() << " b " << b.shape());
          Tensor got = ops::where(cv, a, b);
          REQUIRE(got.shape() == k.out);
          CHECK_CLOSE(got, ref_map3(cv, a, b, k.out, [](double c, double x, double y) { return c != 0 ? x : y; }),
                      0.0, 0.0);
        }
      }
    }
  }
  // A NaN condition counts as true (nonzero), like bool(NaN) in PyTorch.
  Tensor w = ops::where(from_vector<float>({kNaN, 0}), from_vector<float>({1, 1}), from_vector<float>({2, 2}));
  CHECK(w.to_vector<float>() == std::vector<float>{1, 2});
  REQUIRE_THROWS_WITH(ops::where(zeros({2}), zeros({2}), zeros({2}, DType::F64)), "where: dtypes differ: f32 and f64");
  REQUIRE_THROWS_WITH(ops::where(zeros({2, 3}), zeros({4}), zeros({4})), "where: shapes (2, 3) and (4,) do not broadcast");
}

TEST_CASE("masked_fill writes value where the broadcast mask is nonzero", "[elementwise]") {
  uint64_t seed = 2200;
  for (DType dt : kFloatTypes) {
    for (DType mt : {DType::F32, DType::I32, DType::I64}) {
      for (const Shape& ms : {Shape{2, 3, 4}, Shape{3, 4}, Shape{3, 1}, Shape{1, 4}, Shape{}}) {
        Generator gen(seed++);
        Tensor mask = randint(0, 2, ms, DType::I64, &gen).to(mt);
        Tensor x = random_tensor({2, 3, 4}, dt, seed++);
        for (const Tensor& xv : {x, transposed_layout(x)}) {
          INFO("masked_fill " << dt << " mask " << mt << " " << ms);
          Tensor got = ops::masked_fill(xv, mask, -kInf);
          REQUIRE(got.shape() == xv.shape());
          CHECK_CLOSE(got, ref_map2(xv, mask, xv.shape(), [](double v, double m) { return m != 0 ? -kInf : v; }),
                      0.0, 0.0);
        }
      }
    }
  }
  // The attention-mask use: (B, 1, 1, L) key padding over (B, H, L, L) scores.
  Tensor scores = zeros({2, 2, 3, 3});
  Tensor pad = from_vector<int64_t>({0, 0, 1, 0, 1, 1}, {2, 1, 1, 3});
  Tensor masked = ops::masked_fill(scores, pad, -1e9);
  CHECK(masked.at({0, 1, 2, 2}) == -1e9);
  CHECK(masked.at({0, 1, 2, 1}) == 0);
  CHECK(masked.at({1, 0, 0, 1}) == -1e9);
  CHECK(masked.at({1, 0, 0, 0}) == 0);
  REQUIRE_THROWS_WITH(ops::masked_fill(zeros({3, 4}), zeros({2, 3, 4}), 1.0),
                      "masked_fill: mask (2, 3, 4) does not broadcast to x's shape (3, 4)");
  REQUIRE_THROWS_WITH(ops::masked_fill(zeros({3, 4}), zeros({3}), 1.0),
                      "masked_fill: shapes (3, 4) and (3,) do not broadcast");
  REQUIRE_THROWS_WITH(ops::masked_fill(zeros({3}, DType::I64), ones({3}), 0.5),
                      "masked_fill: value 0.5 is not an integer, but the tensor has dtype i64");
}

// ---------------------------------------------------------------- integer dtypes

TEST_CASE("integer dtypes: exact arithmetic, wrap-around, comparisons", "[elementwise]") {
  const int32_t mx = std::numeric_limits<int32_t>::max(), mn = std::numeric_limits<int32_t>::min();
  Tensor a = from_vector<int32_t>({1, -2, 3, mx});
  Tensor b = from_vector<int32_t>({5, 7, -3, 1});
  using V = std::vector<int32_t>;
  CHECK(ops::add(a, b).to_vector<int32_t>() == V{6, 5, 0, mn});  // wraps like PyTorch
  CHECK(ops::sub(a, b).to_vector<int32_t>() == V{-4, -9, 6, mx - 1});
  CHECK(ops::mul(a, b).to_vector<int32_t>() == V{5, -14, -9, mx});
  CHECK(ops::maximum(a, b).to_vector<int32_t>() == V{5, 7, 3, mx});
  CHECK(ops::minimum(a, b).to_vector<int32_t>() == V{1, -2, -3, 1});
  CHECK(ops::neg(a).to_vector<int32_t>() == V{-1, 2, -3, -mx});
  CHECK(ops::abs(a).to_vector<int32_t>() == V{1, 2, 3, mx});
  CHECK(ops::neg(from_vector<int32_t>({mn})).to_vector<int32_t>() == V{mn});
  CHECK(ops::abs(from_vector<int32_t>({mn})).to_vector<int32_t>() == V{mn});
  CHECK(ops::add(a, 10.0).to_vector<int32_t>() == V{11, 8, 13, mn + 9});
  CHECK(ops::mul(a, -2.0).to_vector<int32_t>() == V{-2, 4, -6, 2});
  CHECK(ops::rsub(1.0, a).to_vector<int32_t>() == V{0, 3, -2, 1 - mx});
  CHECK(ops::maximum(a, 0.0).to_vector<int32_t>() == V{1, 0, 3, mx});
  CHECK(ops::minimum(a, 0.0).to_vector<int32_t>() == V{0, -2, 0, 0});
  CHECK(ops::lt(a, b).to_vector<int32_t>() == V{1, 1, 0, 0});
  CHECK(ops::lt(a, b).dtype() == DType::I32);
  CHECK(ops::where(ops::gt(a, b), a, b).to_vector<int32_t>() == V{5, 7, 3, mx});
  CHECK(ops::masked_fill(a, from_vector<int32_t>({0, 1, 0, 1}), -7).to_vector<int32_t>() == V{1, -7, 3, -7});
  // i64 with broadcasting and a large value (beyond double's 53 bits).
  const int64_t big = (int64_t(1) << 60) + 1;
  Tensor c = from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor d = from_vector<int64_t>({big, -1, 0});
  CHECK(ops::add(c, d).to_vector<int64_t>() == std::vector<int64_t>{big + 1, 1, 3, big + 4, 4, 6});
  CHECK(ops::mul(c.t(), from_vector<int64_t>({10, 100})).to_vector<int64_t>() ==
        std::vector<int64_t>{10, 400, 20, 500, 30, 600});
  CHECK(ops::sub(c, 1.0).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  // Errors: no promotion, no integer division, floating-only functions.
  REQUIRE_THROWS_WITH(ops::add(a, 2.5), "add: scalar 2.5 is not an integer, but the tensor has dtype i32");
  REQUIRE_THROWS_WITH(ops::add(a, 3e9), "add: scalar 3e+09 is out of range for dtype i32");
  REQUIRE_THROWS_WITH(ops::div(a, b), "div: integer division is not supported (got i32); convert to f32 or f64 first");
  REQUIRE_THROWS_WITH(ops::div(a, 2.0), "div: integer division is not supported (got i32); convert to f32 or f64 first");
  REQUIRE_THROWS_WITH(ops::rdiv(2.0, c), "rdiv: integer division is not supported (got i64); convert to f32 or f64 first");
  REQUIRE_THROWS_WITH(ops::pow(a, 2.0), "pow: expected a floating tensor (f32 or f64), got i32");
  REQUIRE_THROWS_WITH(ops::exp(a), "exp: expected a floating tensor (f32 or f64), got i32");
  REQUIRE_THROWS_WITH(ops::gelu(c), "gelu: expected a floating tensor (f32 or f64), got i64");
}

// ---------------------------------------------------------------- errors

TEST_CASE("binary ops name the op, the shapes and the dtypes in their errors", "[elementwise]") {
  REQUIRE_THROWS_WITH(ops::add(zeros({2, 3}), zeros({4})), "add: shapes (2, 3) and (4,) do not broadcast");
  REQUIRE_THROWS_WITH(ops::maximum(zeros({2, 3}), zeros({3, 2})), "maximum: shapes (2, 3) and (3, 2) do not broadcast");
  REQUIRE_THROWS_WITH(ops::add(zeros({2}), zeros({2}, DType::F64)), "add: dtypes differ: f32 and f64");
  REQUIRE_THROWS_WITH(ops::mul(zeros({2}, DType::I32), zeros({2}, DType::I64)), "mul: dtypes differ: i32 and i64");
  REQUIRE_THROWS_WITH(ops::ge(zeros({2}), zeros({2}, DType::I64)), "ge: dtypes differ: f32 and i64");
  REQUIRE_THROWS_WITH(ops::eq(zeros({2, 3}), zeros({4})), "eq: shapes (2, 3) and (4,) do not broadcast");
  REQUIRE_THROWS_WITH(ops::unary(UnaryOp::COUNT, zeros({2})), "unary: invalid op code 10");
}

// ---------------------------------------------------------------- vec_math accuracy

TEST_CASE("vec_math: f32 functions within a few ulp of the f64 std:: functions", "[elementwise]") {
  // Dense sweep over [-20, 20], tiny magnitudes of both signs, the exp range, and special values.
  std::vector<float> xs;
  for (int i = -20 * 2048; i <= 20 * 2048; ++i) xs.push_back(float(i) / 2048.0f);
  for (double a = 1e-30; a < 1e-2; a *= 1.05) {
    xs.push_back(float(a));
    xs.push_back(float(-a));
  }
  for (float s : {0.0f, -0.0f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, FLT_MIN, float(kInf), float(-kInf), float(kNaN)}) {
    xs.push_back(s);
  }
  std::vector<float> xs_exp = xs;
  for (int i = -110 * 128; i <= 110 * 128; ++i) xs_exp.push_back(float(i) / 128.0f + 1.0f / 1024.0f);

  auto check = [](const char* name, const UlpReport& r, double bound) {
    INFO(name << ": max " << r.max_ulp << " ulp at x = " << r.worst_x << " (bound " << bound << ")");
    CHECK(r.specials_ok);
    CHECK(r.max_ulp <= bound);
  };
  check("exp", measure_ulps(xs_exp, [](float x) { return vm::exp(x); }, [](double x) { return std::exp(x); }), 1.5);
  check("sigmoid", measure_ulps(xs_exp, [](float x) { return vm::sigmoid(x); },
                                [](double x) { return 1.0 / (1.0 + std::exp(-x)); }), 2.5);
  check("tanh", measure_ulps(xs, [](float x) { return vm::tanh(x); }, [](double x) { return std::tanh(x); }), 2.0);
  std::vector<float> xs_log;
  for (int i = -149 * 256; i <= 128 * 256; ++i) xs_log.push_back(float(std::exp2(i / 256.0)));
  for (int i = 0; i <= 65536; ++i) xs_log.push_back(0.5f + float(i) / 43690.0f);
  for (float s : {0.0f, -0.0f, -1.0f, float(kInf), float(-kInf), float(kNaN), FLT_MAX}) xs_log.push_back(s);
  check("log", measure_ulps(xs_log, [](float x) { return vm::log(x); }, [](double x) { return std::log(x); }), 1.0);
  auto phi = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  // The grid gives ~3.1 / 3.4 ulp for normal_cdf / gelu (3.4 / 3.8 without FMA); random inputs
  // find up to 4.5 just below x = 0 (vec_math.h).
  check("normal_cdf", measure_ulps(xs, [](float x) { return vm::normal_cdf(x); }, phi), 4.0);
  auto gelu = [&](double x) { return std::isinf(x) && x < 0 ? 0.0 : x * phi(x); };
  check("gelu", measure_ulps(xs, [](float x) { return vm::gelu(x); }, gelu), 4.0);
  // gelu' crosses zero at x = -0.7518 (its relative error is unbounded there): ulps away from it,
  // an absolute bound everywhere.
  auto gelu_grad = [&](double x) {
    const double xc = std::max(-40.0, std::min(40.0, x));
    return phi(xc) + xc * std::exp(-0.5 * xc * xc) / std::sqrt(2.0 * M_PI);
  };
  std::vector<float> away;
  for (float x : xs) {
    if (!(x > -1.5f && x < -0.25f)) away.push_back(x);
  }
  check("gelu_grad", measure_ulps(away, [](float x) { return vm::gelu_grad(x); }, gelu_grad), 4.0);
  UlpReport all = measure_ulps(xs, [](float x) { return vm::gelu_grad(x); }, gelu_grad);
  INFO("gelu_grad max abs error " << all.max_abs);
  CHECK(all.max_abs <= 2e-7);
  // Gradual underflow is rounded once: exp at the bottom of the subnormal range.
  CHECK(vm::exp(-103.0f) == float(std::exp(-103.0)));
  CHECK(vm::exp(-88.0f) == Approx(std::exp(-88.0)).epsilon(2e-7));
  CHECK(vm::exp(88.72f) == Approx(std::exp(double(88.72f))).epsilon(2e-7));
  CHECK(vm::exp(88.73f) == float(kInf));
  CHECK(vm::gelu(-13.5f) == float(-13.5 * phi(-13.5)));
}

// ---------------------------------------------------------------- threads

TEST_CASE("elementwise results do not depend on the thread count", "[elementwise]") {
  ThreadGuard guard;
  Tensor x = random_tensor({500, 400}, DType::F32, 2500, -5, 5);  // 200k elements: split over threads
  Tensor row = random_tensor({400}, DType::F32, 2501);
  Tensor mask = randint(0, 2, {500, 1}, DType::I64);
  auto run_all = [&]() {
    std::vector<std::vector<float>> r;
    r.push_back(ops::gelu(x).to_vector<float>());
    r.push_back(ops::exp(transposed_layout(x)).to_vector<float>());
    r.push_back(ops::add(x, row).to_vector<float>());
    r.push_back(ops::mul(strided_layout(x), row).to_vector<float>());
    r.push_back(ops::gelu_backward(x, x).to_vector<float>());
    r.push_back(ops::where(ops::gt(x, row), x, row).to_vector<float>());
    r.push_back(ops::masked_fill(x, mask, -1.0).to_vector<float>());
    Tensor acc = x.clone();
    ops::add_(acc, row);
    r.push_back(acc.to_vector<float>());
    return r;
  };
  set_num_threads(1);
  auto one = run_all();
  set_num_threads(2);
  auto two = run_all();
  REQUIRE(one.size() == two.size());
  for (size_t k = 0; k < one.size(); ++k) {
    INFO("result " << k);
    CHECK(one[k] == two[k]);
  }
}
