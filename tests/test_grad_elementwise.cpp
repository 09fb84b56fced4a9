// test_grad_elementwise.cpp — the differentiable elementwise functions and reductions
// (autograd/functions/elementwise.cpp, autograd/functions/reduce.cpp).
//
// Covers: gradcheck (f64, central differences) of every function and operator on 2-d and 3-d shapes,
// contiguous and non-contiguous inputs; broadcasting for every binary op ((3, 1, 4) with (5, 4),
// (1,) and 0-d operands, both operands requiring grad or only one); reductions over one dim, several
// dims, all dims, keepdim both ways; the conventions at kinks (relu'(0) = abs'(0) = 0, ties of
// maximum/minimum and of max/min reductions split evenly) checked by hand; hand-computed forward
// values of every function; f32 forward (and backward) against the f64 one; errors raised through
// the functions and the absence of a graph when nothing requires grad.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "tensor/allocator.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using test::random_tensor;
using test::strided_layout;
using test::transposed_layout;

namespace {

using Fn1 = std::function<Tensor(const Tensor&)>;
using Fn2 = std::function<Tensor(const Tensor&, const Tensor&)>;

Tensor f64(std::vector<double> v, const Shape& shape) { return from_vector<double>(v, shape); }
Tensor f64(std::vector<double> v) { return from_vector<double>(v); }

Tensor leaf(std::vector<double> v, const Shape& shape) {
  Tensor t = from_vector<double>(v, shape);
  t.requires_grad_();
  return t;
}

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// Random f64 values in [lo, hi).
Tensor rnd(const Shape& shape, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  return random_tensor(shape, DType::F64, seed, lo, hi);
}

// Random f64 values with |v| in [0.3, 2): away from the kinks of relu/abs and from poles of 1/x.
Tensor rnd_away_from_zero(const Shape& shape, uint64_t seed) {
  std::vector<double> v = rnd(shape, seed, -1.7, 1.7).to_vector<double>();
  for (double& e : v) e += e >= 0 ? 0.3 : -0.3;
  return from_vector<double>(v, shape);
}

// The same values in three layouts: contiguous, transposed in memory, every second element.
std::vector<std::pair<const char*, Tensor>> layouts(const Tensor& x) {
  return {{"contiguous", x}, {"transposed", transposed_layout(x)}, {"strided", strided_layout(x)}};
}

void check_gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  INFO(r.report());
  CHECK(r.ok);
  CHECK(r.checked > 0);
}

// gradcheck of f(a, b) three ways: both differentiable, only a (b a constant), only b (a a constant).
void check_binary_grad(const Fn2& f, const Tensor& a, const Tensor& b) {
  {
    INFO("both operands require grad");
    check_gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {a, b});
  }
  {
    INFO("only a requires grad");
    check_gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], b); }, {a});
  }
  {
    INFO("only b requires grad");
    check_gradcheck([&](const std::vector<Tensor>& in) { return f(a, in[0]); }, {b});
  }
}

}  // namespace

// ================================================================ unary

TEST_CASE("unary functions: hand-computed forward values", "[grad][grad-elementwise]") {
  Tensor x = f64({-2, -0.5, 0, 0.5, 2});
  CHECK(vals(neg(x)) == std::vector<double>{2, 0.5, 0, -0.5, -2});
  CHECK(vals(abs(x)) == std::vector<double>{2, 0.5, 0, 0.5, 2});
  CHECK(vals(relu(x)) == std::vector<double>{0, 0, 0, 0.5, 2});
  CHECK(vals(-x) == std::vector<double>{2, 0.5, 0, -0.5, -2});
  CHECK_CLOSE(exp(x), f64({0.1353352832366127, 0.6065306597126334, 1.0, 1.6487212707001282, 7.38905609893065}),
              1e-15, 1e-14);
  CHECK_CLOSE(tanh(x), f64({-0.9640275800758169, -0.46211715726000974, 0.0, 0.46211715726000974, 0.9640275800758169}),
              1e-15, 1e-14);
  CHECK_CLOSE(sigmoid(x),
              f64({0.11920292202211755, 0.3775406687981454, 0.5, 0.6224593312018546, 0.8807970779778823}), 1e-15,
              1e-14);
  // gelu(x) = x Phi(x), exact erf form.
  CHECK_CLOSE(gelu(x),
              f64({-0.04550026389635842, -0.15426876936299344, 0.0, 0.34573123063700656, 1.9544997361036416}),
              1e-15, 1e-14);
  Tensor p = f64({0.25, 1, 4});
  CHECK_CLOSE(log(p), f64({-1.3862943611198906, 0.0, 1.3862943611198906}), 1e-15, 1e-14);
  CHECK(vals(sqrt(p)) == std::vector<double>{0.5, 1, 2});
  CHECK_CLOSE(rsqrt(p), f64({2, 1, 0.5}), 1e-15, 1e-14);
}

TEST_CASE("unary functions: hand-computed gradients", "[grad][grad-elementwise]") {
  // d/dx at x = 0: exp 1, tanh 1, sigmoid 1/4, gelu Phi(0) = 1/2; at x = 4: log 1/4, sqrt 1/(2*2),
  // rsqrt -1/2 * 4^(-3/2) = -1/16.
  struct Case {
    const char* name;
    Fn1 f;
    double x, grad;
  };
  std::vector<Case> cases = {
      {"exp", [](const Tensor& t) { return exp(t); }, 0.0, 1.0},
      {"tanh", [](const Tensor& t) { return tanh(t); }, 0.0, 1.0},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, 0.0, 0.25},
      {"gelu", [](const Tensor& t) { return gelu(t); }, 0.0, 0.5},
      {"log", [](const Tensor& t) { return log(t); }, 4.0, 0.25},
      {"sqrt", [](const Tensor& t) { return sqrt(t); }, 4.0, 0.25},
      {"rsqrt", [](const Tensor& t) { return rsqrt(t); }, 4.0, -0.0625},
      {"neg", [](const Tensor& t) { return neg(t); }, 3.0, -1.0},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Tensor x = leaf({c.x}, {1});
    Tensor y = c.f(x);
    CHECK(y.grad_fn_name() == c.name);
    y.backward();
    CHECK(x.grad().item() == Approx(c.grad).epsilon(1e-14));
  }
  // gelu'(1) = Phi(1) + phi(1) = 0.8413447460685429 + 0.24197072451914337
  Tensor x = leaf({1.0}, {1});
  gelu(x).backward();
  CHECK(x.grad().item() == Approx(0.8413447460685429 + 0.24197072451914337).epsilon(1e-14));
}

TEST_CASE("unary functions: gradcheck on 2-d and 3-d, contiguous and not", "[grad][grad-elementwise]") {
  struct Case {
    const char* name;
    Fn1 f;
    bool positive;  // domain x > 0 (log, sqrt, rsqrt)
  };
  std::vector<Case> cases = {
      {"neg", [](const Tensor& t) { return neg(t); }, false},
      {"exp", [](const Tensor& t) { return exp(t); }, false},
      {"log", [](const Tensor& t) { return log(t); }, true},
      {"sqrt", [](const Tensor& t) { return sqrt(t); }, true},
      {"rsqrt", [](const Tensor& t) { return rsqrt(t); }, true},
      {"tanh", [](const Tensor& t) { return tanh(t); }, false},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, false},
      {"relu", [](const Tensor& t) { return relu(t); }, false},
      {"gelu", [](const Tensor& t) { return gelu(t); }, false},
      {"abs", [](const Tensor& t) { return abs(t); }, false},
      {"operator-", [](const Tensor& t) { return -t; }, false},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    for (const Shape& shape : {Shape{3, 4}, Shape{2, 3, 4}}) {
      ++seed;
      // relu and abs are checked away from their kink at 0 (the kink has its own test).
      Tensor x = c.positive ? rnd(shape, seed, 0.3, 3.0) : rnd_away_from_zero(shape, seed);
      for (auto& [layout, xl] : layouts(x)) {
        INFO(c.name << " on " << shape << ", " << layout);
        check_gradcheck([&](const std::vector<Tensor>& in) { return c.f(in[0]); }, {xl});
      }
    }
  }
}

TEST_CASE("relu and abs at 0: gradient 0, as PyTorch", "[grad][grad-elementwise]") {
  Tensor x = leaf({-1, 0, 2}, {3});
  relu(x).backward(f64({1, 1, 1}));
  CHECK(vals(x.grad()) == std::vector<double>{0, 0, 1});
  Tensor y = leaf({-1, 0, 2}, {3});
  abs(y).backward(f64({3, 3, 3}));
  CHECK(vals(y.grad()) == std::vector<double>{-3, 0, 3});
}

// ================================================================ binary with broadcasting

namespace {

struct BinaryCase {
  const char* name;
  Fn2 f;
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
      {"operator+", [](const Tensor& a, const Tensor& b) { return a + b; }},
      {"operator-", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"operator*", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"operator/", [](const Tensor& a, const Tensor& b) { return a / b; }},
  };
}

}  // namespace

TEST_CASE("binary functions: hand-computed forward values with broadcasting", "[grad][grad-elementwise]") {
  Tensor a = f64({1, -2, 3, 4}, {2, 2});
  Tensor b = f64({2, 4}, {2});  // broadcast over a's rows
  CHECK(vals(add(a, b)) == std::vector<double>{3, 2, 5, 8});
  CHECK(vals(sub(a, b)) == std::vector<double>{-1, -6, 1, 0});
  CHECK(vals(mul(a, b)) == std::vector<double>{2, -8, 6, 16});
  CHECK(vals(div(a, b)) == std::vector<double>{0.5, -0.5, 1.5, 1});
  CHECK(vals(maximum(a, b)) == std::vector<double>{2, 4, 3, 4});
  CHECK(vals(minimum(a, b)) == std::vector<double>{1, -2, 2, 4});
  CHECK(vals(a + b) == vals(add(a, b)));
  CHECK(vals(b - a) == std::vector<double>{1, 6, -1, 0});
  CHECK(vals(a * b) == vals(mul(a, b)));
  CHECK(vals(b / a) == std::vector<double>{2, -2, 2.0 / 3.0, 1});
  CHECK(add(a, b).shape() == Shape{2, 2});
  CHECK(add(f64({1, 2, 3}, {3, 1}), f64({10, 20}, {2})).shape() == Shape{3, 2});
}

TEST_CASE("binary functions: hand-computed broadcast gradients", "[grad][grad-elementwise]") {
  // a: (2, 2), b: (2,) broadcast over rows; g = ones.
  Tensor a = leaf({1, -2, 3, 4}, {2, 2});
  Tensor b = leaf({2, 4}, {2});
  mul(a, b).backward(ones({2, 2}, DType::F64));
  CHECK(vals(a.grad()) == std::vector<double>{2, 4, 2, 4});     // b broadcast
  CHECK(vals(b.grad()) == std::vector<double>{4, 2});           // column sums of a
  CHECK(b.grad().shape() == Shape{2});

  Tensor c = leaf({1, -2, 3, 4}, {2, 2});
  Tensor d = leaf({2}, {});  // 0-d
  div(c, d).backward(ones({2, 2}, DType::F64));
  CHECK(vals(c.grad()) == std::vector<double>{0.5, 0.5, 0.5, 0.5});
  CHECK(d.grad().shape() == Shape{});
  CHECK(d.grad().item() == Approx(-(1 - 2 + 3 + 4) / 4.0).epsilon(1e-15));  // -sum(a) / d^2

  Tensor e = leaf({1, 2, 3}, {3});
  Tensor s = leaf({5}, {1});
  sub(e, s).backward(f64({1, 2, 3}));
  CHECK(vals(e.grad()) == std::vector<double>{1, 2, 3});
  CHECK(vals(s.grad()) == std::vector<double>{-6});
}

TEST_CASE("binary functions: gradcheck with broadcasting, one or both operands", "[grad][grad-elementwise]") {
  struct Shapes {
    Shape a, b;
  };
  // (3, 1, 4) with (5, 4) -> (3, 5, 4); a (1,) and a 0-d operand; broadcast on the left operand too.
  const std::vector<Shapes> shapes = {{{3, 1, 4}, {5, 4}}, {{2, 3}, {1}},   {{2, 3}, {}},
                                      {{4}, {2, 3, 4}},    {{3, 1}, {1, 4}}, {{2, 3, 4}, {2, 3, 4}}};
  uint64_t seed = 200;
  for (const BinaryCase& c : binary_cases()) {
    for (const Shapes& s : shapes) {
      seed += 2;
      const bool is_div = std::string(c.name) == "div" || std::string(c.name) == "operator/";
      Tensor a = rnd(s.a, seed);
      Tensor b = is_div ? rnd_away_from_zero(s.b, seed + 1) : rnd(s.b, seed + 1);
      INFO(c.name << ": a " << s.a << ", b " << s.b);
      check_binary_grad(c.f, a, b);
    }
  }
}

TEST_CASE("binary functions: gradcheck on non-contiguous operands", "[grad][grad-elementwise]") {
  uint64_t seed = 300;
  for (const BinaryCase& c : binary_cases()) {
    seed += 2;
    Tensor a = rnd({2, 3, 4}, seed);
    Tensor b = rnd_away_from_zero({3, 4}, seed + 1);
    INFO(c.name << ": transposed a (2, 3, 4), strided b (3, 4)");
    check_binary_grad(c.f, transposed_layout(a), strided_layout(b));
    INFO(c.name << ": transposed b broadcast into a (3, 1, 4)");
    check_binary_grad(c.f, rnd({3, 1, 4}, seed + 7), transposed_layout(b));
  }
}

TEST_CASE("a value used as both operands gets both gradients", "[grad][grad-elementwise]") {
  Tensor x = leaf({1, -2, 3}, {3});
  mul(x, x).backward(ones({3}, DType::F64));
  CHECK(vals(x.grad()) == std::vector<double>{2, -4, 6});  // 2x
  Tensor y = leaf({1, -2, 3}, {3});
  sub(y, y).backward(ones({3}, DType::F64));
  CHECK(vals(y.grad()) == std::vector<double>{0, 0, 0});
  Tensor z = leaf({1, -2, 3}, {3});
  maximum(z, z).backward(ones({3}, DType::F64));  // every element tied: 1/2 + 1/2
  CHECK(vals(z.grad()) == std::vector<double>{1, 1, 1});
}

TEST_CASE("maximum and minimum split the gradient evenly on ties", "[grad][grad-elementwise]") {
  Tensor a = leaf({1, 2, 3}, {3});
  Tensor b = leaf({1, 5, 0}, {3});
  maximum(a, b).backward(f64({2, 2, 2}));
  CHECK(vals(a.grad()) == std::vector<double>{1, 0, 2});  // tie, b wins, a wins
  CHECK(vals(b.grad()) == std::vector<double>{1, 2, 0});

  Tensor c = leaf({1, 2, 3}, {3});
  Tensor d = leaf({1, 5, 0}, {3});
  minimum(c, d).backward(f64({2, 2, 2}));
  CHECK(vals(c.grad()) == std::vector<double>{1, 2, 0});
  CHECK(vals(d.grad()) == std::vector<double>{1, 0, 2});

  // A tie against a broadcast 0-d operand: its halves are summed.
  Tensor m = leaf({1, 1, 1, 2}, {2, 2});
  Tensor s = leaf({1}, {});
  maximum(m, s).backward(ones({2, 2}, DType::F64));
  CHECK(vals(m.grad()) == std::vector<double>{0.5, 0.5, 0.5, 1});
  CHECK(s.grad().item() == 1.5);
}

// ================================================================ scalars, pow, operators

TEST_CASE("scalar forms and operators: hand-computed forward values", "[grad][grad-elementwise]") {
  Tensor x = f64({1, 2, 4});
  CHECK(vals(add(x, 1.5)) == std::vector<double>{2.5, 3.5, 5.5});
  CHECK(vals(sub(x, 1)) == std::vector<double>{0, 1, 3});
  CHECK(vals(mul(x, -2)) == std::vector<double>{-2, -4, -8});
  CHECK(vals(div(x, 4)) == std::vector<double>{0.25, 0.5, 1});
  CHECK(vals(rsub(1, x)) == std::vector<double>{0, -1, -3});
  CHECK(vals(rdiv(8, x)) == std::vector<double>{8, 4, 2});
  CHECK(vals(pow(x, 2)) == std::vector<double>{1, 4, 16});
  CHECK_CLOSE(pow(x, 0.5), f64({1, std::sqrt(2.0), 2}), 1e-15, 1e-15);
  CHECK(vals(pow(x, -1)) == std::vector<double>{1, 0.5, 0.25});
  CHECK(vals(pow(x, 0)) == std::vector<double>{1, 1, 1});
  CHECK(vals(x + 1.0) == std::vector<double>{2, 3, 5});
  CHECK(vals(x - 1.0) == std::vector<double>{0, 1, 3});
  CHECK(vals(x * 3.0) == std::vector<double>{3, 6, 12});
  CHECK(vals(x / 2.0) == std::vector<double>{0.5, 1, 2});
  CHECK(vals(1.0 + x) == std::vector<double>{2, 3, 5});
  CHECK(vals(1.0 - x) == std::vector<double>{0, -1, -3});
  CHECK(vals(3.0 * x) == std::vector<double>{3, 6, 12});
  CHECK(vals(4.0 / x) == std::vector<double>{4, 2, 1});
}

TEST_CASE("scalar forms and operators: gradcheck", "[grad][grad-elementwise]") {
  struct Case {
    const char* name;
    Fn1 f;
    bool positive;  // fractional / negative powers need x > 0
  };
  std::vector<Case> cases = {
      {"add", [](const Tensor& t) { return add(t, 1.5); }, false},
      {"sub", [](const Tensor& t) { return sub(t, -0.5); }, false},
      {"mul", [](const Tensor& t) { return mul(t, -3.0); }, false},
      {"div", [](const Tensor& t) { return div(t, 0.7); }, false},
      {"rsub", [](const Tensor& t) { return rsub(2.0, t); }, false},
      {"rdiv", [](const Tensor& t) { return rdiv(-1.5, t); }, false},
      {"pow 2", [](const Tensor& t) { return pow(t, 2.0); }, false},
      {"pow 3", [](const Tensor& t) { return pow(t, 3.0); }, false},
      {"pow 1", [](const Tensor& t) { return pow(t, 1.0); }, false},
      {"pow 0", [](const Tensor& t) { return pow(t, 0.0); }, false},
      {"pow -2", [](const Tensor& t) { return pow(t, -2.0); }, false},
      {"pow 0.5", [](const Tensor& t) { return pow(t, 0.5); }, true},
      {"pow -1.5", [](const Tensor& t) { return pow(t, -1.5); }, true},
      {"x + s", [](const Tensor& t) { return t + 2.0; }, false},
      {"x - s", [](const Tensor& t) { return t - 2.0; }, false},
      {"x * s", [](const Tensor& t) { return t * 2.5; }, false},
      {"x / s", [](const Tensor& t) { return t / 2.5; }, false},
      {"s + x", [](const Tensor& t) { return 2.0 + t; }, false},
      {"s - x", [](const Tensor& t) { return 2.0 - t; }, false},
      {"s * x", [](const Tensor& t) { return 2.5 * t; }, false},
      {"s / x", [](const Tensor& t) { return 2.5 / t; }, false},
  };
  uint64_t seed = 400;
  for (const Case& c : cases) {
    ++seed;
    Tensor x = c.positive ? rnd({2, 3, 4}, seed, 0.3, 3.0) : rnd_away_from_zero({2, 3, 4}, seed);
    for (auto& [layout, xl] : layouts(x)) {
      INFO(c.name << ", " << layout);
      check_gradcheck([&](const std::vector<Tensor>& in) { return c.f(in[0]); }, {xl});
    }
  }
}

TEST_CASE("scalar forms: hand-computed gradients; pow(x, 0) has gradient 0", "[grad][grad-elementwise]") {
  Tensor x = leaf({0, 2, -1}, {3});
  pow(x, 0.0).backward(ones({3}, DType::F64));
  CHECK(vals(x.grad()) == std::vector<double>{0, 0, 0});  // PyTorch: 0 even at x = 0
  Tensor y = leaf({1, 2, -1}, {3});
  pow(y, 3.0).backward(ones({3}, DType::F64));
  CHECK(vals(y.grad()) == std::vector<double>{3, 12, 3});  // 3 x^2
  Tensor z = leaf({1, 2, -4}, {3});
  rdiv(4.0, z).backward(ones({3}, DType::F64));
  CHECK(vals(z.grad()) == std::vector<double>{-4, -1, -0.25});  // -4 / x^2
  Tensor w = leaf({1, 2}, {2});
  (3.0 - w * 2.0).backward(ones({2}, DType::F64));
  CHECK(vals(w.grad()) == std::vector<double>{-2, -2});
  Tensor u = leaf({1, 2}, {2});
  (u / 4.0).backward(ones({2}, DType::F64));
  CHECK(vals(u.grad()) == std::vector<double>{0.25, 0.25});
}

TEST_CASE("operators record the function they call", "[grad][grad-elementwise]") {
  Tensor a = leaf({1, 2}, {2});
  Tensor b = leaf({3, 4}, {2});
  CHECK((-a).grad_fn_name() == "neg");
  CHECK((a + b).grad_fn_name() == "add");
  CHECK((a - b).grad_fn_name() == "sub");
  CHECK((a * b).grad_fn_name() == "mul");
  CHECK((a / b).grad_fn_name() == "div");
  CHECK((a + 1.0).grad_fn_name() == "add");
  CHECK((1.0 + a).grad_fn_name() == "add");
  CHECK((a - 1.0).grad_fn_name() == "sub");
  CHECK((1.0 - a).grad_fn_name() == "rsub");
  CHECK((2.0 * a).grad_fn_name() == "mul");
  CHECK((a / 2.0).grad_fn_name() == "div");
  CHECK((2.0 / a).grad_fn_name() == "rdiv");
  CHECK(maximum(a, b).grad_fn_name() == "maximum");
  CHECK(minimum(a, b).grad_fn_name() == "minimum");
  CHECK(pow(a, 2.0).grad_fn_name() == "pow");
}

// ================================================================ where, masked_fill

TEST_CASE("where: forward, gradients by hand, no gradient to cond", "[grad][grad-elementwise]") {
  Tensor cond = f64({1, 0, 0, 1}, {2, 2});
  cond.requires_grad_();  // a differentiable-looking cond still gets nothing
  Tensor a = leaf({1, 2, 3, 4}, {2, 2});
  Tensor b = leaf({10, 20}, {2});  // broadcast over rows
  Tensor out = where(cond, a, b);
  CHECK(vals(out) == std::vector<double>{1, 20, 10, 4});
  out.backward(f64({1, 2, 3, 4}, {2, 2}));
  CHECK(vals(a.grad()) == std::vector<double>{1, 0, 0, 4});
  CHECK(vals(b.grad()) == std::vector<double>{3, 2});
  CHECK_FALSE(cond.grad().defined());

  // Only cond requires grad: nothing is recorded.
  Tensor plain_a = f64({1, 2, 3, 4}, {2, 2});
  CHECK_FALSE(where(cond, plain_a, plain_a).requires_grad());

  // An integer cond.
  Tensor icond = from_vector<int64_t>({0, 5}, {2});
  Tensor x = leaf({1, 2}, {2});
  Tensor y = leaf({7}, {});
  Tensor r = where(icond, x, y);
  CHECK(vals(r) == std::vector<double>{7, 2});
  r.backward(f64({1, 1}));
  CHECK(vals(x.grad()) == std::vector<double>{0, 1});
  CHECK(y.grad().item() == 1.0);
}

TEST_CASE("where: gradcheck with broadcasting of cond, a and b", "[grad][grad-elementwise]") {
  Tensor cond = from_vector<double>({1, 0, 1}, {3, 1});  // broadcast over columns
  const Fn2 f = [&](const Tensor& a, const Tensor& b) { return where(cond, a, b); };
  check_binary_grad(f, rnd({3, 4}, 501), rnd({4}, 502));
  check_binary_grad(f, rnd({1, 4}, 503), rnd({}, 504));
  check_binary_grad(f, rnd({2, 3, 4}, 505), transposed_layout(rnd({3, 4}, 506)));
  Tensor cond3 = from_vector<double>({1, 0, 0, 1, 1, 0, 1, 0}, {2, 1, 4});
  check_binary_grad([&](const Tensor& a, const Tensor& b) { return where(cond3, a, b); },
                    strided_layout(rnd({3, 4}, 507)), rnd({2, 3, 1}, 508));
}

TEST_CASE("masked_fill: forward, gradient 0 where masked, gradcheck", "[grad][grad-elementwise]") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor mask = from_vector<double>({0, 1, 0}, {3});  // broadcast over rows
  Tensor out = masked_fill(x, mask, -9.0);
  CHECK(vals(out) == std::vector<double>{1, -9, 3, 4, -9, 6});
  CHECK(out.grad_fn_name() == "masked_fill");
  out.backward(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  CHECK(vals(x.grad()) == std::vector<double>{1, 0, 3, 4, 0, 6});

  Tensor imask = from_vector<int32_t>({1, 0, 0, 1, 0, 1, 1, 0}, {2, 1, 4});
  for (auto& [layout, xl] : layouts(rnd({2, 3, 4}, 601))) {
    INFO(layout);
    check_gradcheck([&](const std::vector<Tensor>& in) { return masked_fill(in[0], imask, 0.5); }, {xl});
  }
}

// ================================================================ reductions

TEST_CASE("reductions: hand-computed forward values", "[grad][grad-elementwise]") {
  Tensor x = f64({1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(vals(sum(x, {0})) == std::vector<double>{5, 7, 9});
  CHECK(vals(sum(x, {1})) == std::vector<double>{9, 12});
  CHECK(sum(x).item() == 21);
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(x, {}, true).shape() == Shape{1, 1});
  CHECK(sum(x, {-1}, true).shape() == Shape{2, 1});
  CHECK(vals(mean(x, {1})) == std::vector<double>{3, 4});
  CHECK(mean(x).item() == 3.5);
  CHECK(vals(max(x, {0})) == std::vector<double>{4, 5, 6});
  CHECK(vals(max(x, {1})) == std::vector<double>{5, 6});
  CHECK(max(x).item() == 6);
  CHECK(vals(min(x, {1})) == std::vector<double>{1, 2});
  CHECK(min(x, {0, 1}).item() == 1);
  CHECK(min(x, {0}, true).shape() == Shape{1, 3});
  Tensor am = argmax(x, 1);
  CHECK(am.dtype() == DType::I64);
  CHECK(am.to_vector<int64_t>() == std::vector<int64_t>{1, 2});
  CHECK(argmax(x, 0, true).shape() == Shape{1, 3});
  CHECK(argmax(x, 0, true).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
}

TEST_CASE("reductions: hand-computed gradients, keepdim both ways", "[grad][grad-elementwise]") {
  for (bool keepdim : {false, true}) {
    INFO("keepdim " << keepdim);
    Tensor x = leaf({1, 5, 3, 4, 2, 6}, {2, 3});
    Tensor g = keepdim ? f64({2, 3}, {2, 1}) : f64({2, 3});
    sum(x, {1}, keepdim).backward(g);
    CHECK(vals(x.grad()) == std::vector<double>{2, 2, 2, 3, 3, 3});

    Tensor y = leaf({1, 5, 3, 4, 2, 6}, {2, 3});
    Tensor gm = keepdim ? f64({3, 6, 9}, {1, 3}) : f64({3, 6, 9});
    mean(y, {0}, keepdim).backward(gm);
    CHECK(vals(y.grad()) == std::vector<double>{1.5, 3, 4.5, 1.5, 3, 4.5});

    Tensor z = leaf({1, 5, 3, 4, 2, 6}, {2, 3});
    Tensor gx = keepdim ? f64({2, 3}, {2, 1}) : f64({2, 3});
    max(z, {1}, keepdim).backward(gx);
    CHECK(vals(z.grad()) == std::vector<double>{0, 2, 0, 0, 0, 3});

    Tensor w = leaf({1, 5, 3, 4, 2, 6}, {2, 3});
    min(w, {1}, keepdim).backward(gx);
    CHECK(vals(w.grad()) == std::vector<double>{2, 0, 0, 0, 3, 0});
  }
  // mean over several dims of a (2, 3, 4): every element gets g / 8.
  Tensor x3 = leaf(std::vector<double>(24, 1.0), {2, 3, 4});
  mean(x3, {0, 2}).backward(f64({8, 16, 24}));
  std::vector<double> want;
  for (int i = 0; i < 2; ++i)
    for (double v : {1.0, 2.0, 3.0})
      for (int k = 0; k < 4; ++k) want.push_back(v);
  CHECK(vals(x3.grad()) == want);
  // Over everything: the 0-d gradient spreads to every element.
  Tensor xa = leaf({1, 2, 3, 4}, {2, 2});
  mean(xa).backward();
  CHECK(vals(xa.grad()) == std::vector<double>{0.25, 0.25, 0.25, 0.25});
}

TEST_CASE("max and min reductions split the gradient evenly among ties", "[grad][grad-elementwise]") {
  Tensor x = leaf({1, 3, 3, 2, 2, 2}, {2, 3});
  max(x, {1}).backward(f64({2, 6}));
  CHECK(vals(x.grad()) == std::vector<double>{0, 1, 1, 2, 2, 2});

  Tensor y = leaf({1, 3, 3, 2, 2, 2}, {2, 3});
  max(y).backward();  // the two 3s share
  CHECK(vals(y.grad()) == std::vector<double>{0, 0.5, 0.5, 0, 0, 0});

  Tensor z = leaf({1, 3, 3, 2, 2, 2}, {2, 3});
  min(z, {1}, true).backward(f64({3, 3}, {2, 1}));
  CHECK(vals(z.grad()) == std::vector<double>{3, 0, 0, 1, 1, 1});

  Tensor w = leaf({1, 3, 1, 2, 1, 2}, {2, 3});
  min(w, {0, 1}).backward();  // three 1s share
  std::vector<double> got = vals(w.grad());
  std::vector<double> want = {1.0 / 3, 0, 1.0 / 3, 0, 1.0 / 3, 0};
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(1e-15));
}

TEST_CASE("reductions: gradcheck over single dims, several dims, all dims", "[grad][grad-elementwise]") {
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&, const std::vector<int>&, bool)> f;
  };
  std::vector<Case> cases = {
      {"sum", [](const Tensor& t, const std::vector<int>& d, bool k) { return sum(t, d, k); }},
      {"mean", [](const Tensor& t, const std::vector<int>& d, bool k) { return mean(t, d, k); }},
      {"max", [](const Tensor& t, const std::vector<int>& d, bool k) { return max(t, d, k); }},
      {"min", [](const Tensor& t, const std::vector<int>& d, bool k) { return min(t, d, k); }},
  };
  const std::vector<std::vector<int>> dims_list = {{}, {0}, {1}, {-1}, {0, 2}, {2, 0}, {1, 2}, {0, 1, 2}};
  uint64_t seed = 700;
  for (const Case& c : cases) {
    for (const std::vector<int>& dims : dims_list) {
      for (bool keepdim : {false, true}) {
        ++seed;
        // Continuous random values: no ties (ties have their own test).
        Tensor x = rnd({2, 3, 4}, seed);
        for (auto& [layout, xl] : layouts(x)) {
          std::string d;
          for (int v : dims) d += std::to_string(v) + " ";
          INFO(c.name << " dims {" << d << "} keepdim " << keepdim << ", " << layout);
          check_gradcheck([&](const std::vector<Tensor>& in) { return c.f(in[0], dims, keepdim); }, {xl});
        }
      }
    }
    // 2-d input and a 0-d input.
    Tensor x2 = rnd({3, 5}, seed + 50);
    check_gradcheck([&](const std::vector<Tensor>& in) { return c.f(in[0], {1}, false); }, {transposed_layout(x2)});
    Tensor x0 = rnd({}, seed + 51);
    check_gradcheck([&](const std::vector<Tensor>& in) { return c.f(in[0], {}, false); }, {x0});
  }
}

TEST_CASE("argmax is not differentiable and records nothing", "[grad][grad-elementwise]") {
  Tensor x = leaf({1, 7, 3, 9, 2, 0}, {2, 3});
  Tensor idx = argmax(x, -1);
  CHECK_FALSE(idx.requires_grad());
  CHECK(idx.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
}

// ================================================================ compositions, f32, errors

TEST_CASE("compositions: gradcheck through broadcast and reduced gradients", "[grad][grad-elementwise]") {
  // The reductions hand expanded (stride-0) gradients to the functions below them.
  Tensor a = rnd({2, 3, 4}, 801);
  Tensor b = rnd({3, 4}, 802);
  Tensor c = rnd({4}, 803);
  check_gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor h = tanh(in[0] * in[1] + in[2]);
        return mean(sigmoid(h) * exp(h), {1}) - max(gelu(h), {0, 1}) / 3.0;
      },
      {transposed_layout(a), b, strided_layout(c)});
  check_gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor p = sqrt(abs(in[0]) + 1.0);
        return sum(maximum(p, in[1]) - minimum(in[1], 2.0 / p), {0, 2});
      },
      {rnd_away_from_zero({2, 3, 4}, 804), rnd({3, 1}, 805)});
}

TEST_CASE("expanded (stride-0) gradients of sum/mean flow through the view methods", "[grad][grad-elementwise]") {
  check_gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor x = in[0];  // (2, 3, 4)
        Tensor a = sum(x.transpose(0, 2).reshape({4, 6}).view({2, 2, 6}) * 2.0, {1});
        Tensor b = mean(x.narrow(1, 1, 2).select(0, 1).unsqueeze(0).expand({3, 2, 4}), {0, 2}, true);
        return a.flatten() + sum(b.squeeze(), {}) + sum(x.permute({1, 2, 0}), {2}).flatten();
      },
      {rnd({2, 3, 4}, 811)});
}

TEST_CASE("closures save only what their backward needs", "[grad][grad-elementwise]") {
  const int64_t n = 1 << 14;
  Tensor x = rnd({n}, 821);
  x.requires_grad_();
  Tensor c = rnd({n}, 822);
  size_t one;  // bytes of one (n) f64 tensor, as the allocator counts them
  {
    size_t b0 = cpu_allocator_stats().bytes_in_use;
    Tensor t = empty({n}, DType::F64);
    one = cpu_allocator_stats().bytes_in_use - b0;
  }
  const std::vector<std::pair<const char*, Fn1>> fns = {
      {"add", [](const Tensor& h) { return add(h, h); }},
      {"sub", [](const Tensor& h) { return sub(h, h); }},
      {"mul by a constant", [&c](const Tensor& h) { return mul(h, c); }},  // saves c, not h
      {"div by a scalar", [](const Tensor& h) { return h / 3.0; }},
      {"rsub", [](const Tensor& h) { return 1.0 - h; }},
      {"sum", [](const Tensor& h) { return sum(h, {0}, true); }},
      {"mean", [](const Tensor& h) { return mean(h, {0}, true); }},
  };
  for (auto& [name, f] : fns) {
    INFO(name);
    size_t before = cpu_allocator_stats().bytes_in_use;
    Tensor y;
    {
      Tensor h = x * 2.0;  // an intermediate: freed when dropped unless y's closure kept it
      y = f(h);
    }
    const size_t y_bytes = y.numel() == n ? one : cpu_allocator_stats().bytes_in_use - before;
    CHECK(cpu_allocator_stats().bytes_in_use == before + y_bytes);
    CHECK(y_bytes < one + 1);
  }
}

TEST_CASE("f32 forward and backward match f64", "[grad][grad-elementwise]") {
  Tensor a64 = rnd({4, 5}, 901), b64 = rnd_away_from_zero({5}, 902);
  Tensor a32 = a64.to(DType::F32), b32 = b64.to(DType::F32);
  const std::vector<std::pair<const char*, Fn2>> fns = {
      {"gelu", [](const Tensor& a, const Tensor& b) { return gelu(a); }},
      {"tanh", [](const Tensor& a, const Tensor& b) { return tanh(a); }},
      {"sigmoid", [](const Tensor& a, const Tensor& b) { return sigmoid(a); }},
      {"exp", [](const Tensor& a, const Tensor& b) { return exp(a); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"where", [](const Tensor& a, const Tensor& b) { return where(ops::gt(a, zeros({}, a.dtype())), a, b); }},
      {"mean", [](const Tensor& a, const Tensor& b) { return mean(a * b, {1}); }},
      {"max", [](const Tensor& a, const Tensor& b) { return max(a, {0}); }},
  };
  for (auto& [name, f] : fns) {
    INFO(name);
    Tensor y64 = f(a64, b64), y32 = f(a32, b32);
    CHECK(y32.dtype() == DType::F32);
    CHECK_CLOSE(y32, y64, test::kF32Atol, test::kF32Rtol);
  }
  // Backward in f32 produces f32 gradients close to the f64 ones.
  Tensor x64 = a64.clone(), x32 = a32.clone();
  x64.requires_grad_();
  x32.requires_grad_();
  auto f = [](const Tensor& x) { return sum(tanh(x) * gelu(x), {1}) / 5.0; };
  f(x64).backward(ones({4}, DType::F64));
  f(x32).backward(ones({4}, DType::F32));
  CHECK(x32.grad().dtype() == DType::F32);
  CHECK_CLOSE(x32.grad(), x64.grad(), test::kF32Atol, test::kF32Rtol);
}

TEST_CASE("nothing is recorded without grad; errors raise through the functions", "[grad][grad-elementwise]") {
  Tensor a = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  {
    NoGradGuard no_grad;
    CHECK_FALSE((a * 2.0 + a).requires_grad());
    CHECK_FALSE(sum(exp(a)).requires_grad());
  }
  CHECK_FALSE(add(f64({1}), f64({2})).requires_grad());

  Tensor b = leaf({1, 2, 3, 4}, {4});
  REQUIRE_THROWS_WITH(add(a, b), "add: shapes (2, 3) and (4,) do not broadcast");
  REQUIRE_THROWS_WITH(a * b, "mul: shapes (2, 3) and (4,) do not broadcast");
  REQUIRE_THROWS_WITH(maximum(a, a.to(DType::F32)), Catch::Contains("maximum"));
  REQUIRE_THROWS_WITH(sum(a, {2}), "sum: dim 2 out of range for a 2-d tensor (expected -2 to 1)");
  REQUIRE_THROWS_WITH(max(a, {0, -2}), Catch::Contains("max: dim 0 appears more than once"));
  REQUIRE_THROWS_WITH(masked_fill(a, from_vector<double>({1, 0}, {2}), 0.0),
                      Catch::Contains("masked_fill"));
}
