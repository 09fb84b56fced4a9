// test_autograd_engine.cpp — engine semantics: shared subexpressions, accumulation, retain_graph,
// no_grad, detach, graph release, the view methods' gradients, error messages, and gradcheck itself.
//
// The functions used here are defined in this file with record() and raw ops, so these tests depend
// only on the engine, not on autograd/functions.
#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "tensor/allocator.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;

namespace {

// out = a * b (same shapes), recorded.
Tensor tmul(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard ng;
    out = ops::mul(a, b);
  }
  record(out, "tmul", {a, b}, [a, b](const Tensor& g) {
    // forward: out = a * b
    return std::vector<Tensor>{ops::mul(g, b), ops::mul(g, a)};
  });
  return out;
}

// out = a + b (same shapes), recorded.
Tensor tadd(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard ng;
    out = ops::add(a, b);
  }
  record(out, "tadd", {a, b}, [](const Tensor& g) { return std::vector<Tensor>{g, g}; });
  return out;
}

// Sum of all elements, recorded.
Tensor tsum(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard ng;
    out = ops::sum(x);
  }
  Shape shape = x.shape();
  record(out, "tsum", {x}, [shape](const Tensor& g) {
    // forward: out = sum_i x_i
    return std::vector<Tensor>{g.expand(shape).contiguous()};
  });
  return out;
}

Tensor leaf(std::vector<double> v, Shape shape) {
  Tensor t = from_vector<double>(v, shape);
  t.requires_grad_();
  return t;
}

}  // namespace

TEST_CASE("a value used several times receives the sum of its gradients", "[autograd]") {
  Tensor x = leaf({1, 2, 3}, {3});
  // y = sum(x * x + x): x is used three times; dy/dx = 2x + 1.
  Tensor y = tsum(tadd(tmul(x, x), x));
  y.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 5, 7});
  CHECK(y.grad_fn_name() == "tsum");
  CHECK(x.is_leaf());
  CHECK_FALSE(y.is_leaf());
}

TEST_CASE("a diamond graph runs each node once, after all its consumers", "[autograd]") {
  Tensor x = leaf({2}, {1});
  Tensor a = tmul(x, x);           // x^2
  Tensor b = tmul(a, x);           // x^3
  Tensor c = tmul(a, a);           // x^4
  Tensor y = tsum(tadd(b, c));     // x^3 + x^4: dy/dx = 3x^2 + 4x^3 = 12 + 32
  y.backward();
  CHECK(x.grad().item() == 44.0);
}

TEST_CASE("gradients accumulate: backward twice doubles them", "[autograd]") {
  Tensor x = leaf({1, -2}, {2});
  Tensor w = leaf({3, 4}, {2});
  for (int i = 0; i < 2; ++i) tsum(tmul(x, w)).backward();  // two forward passes
  CHECK(x.grad().to_vector<double>() == std::vector<double>{6, 8});
  CHECK(w.grad().to_vector<double>() == std::vector<double>{2, -4});

  x.zero_grad();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0});
  Tensor y = tsum(tmul(x, w));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();  // the same graph again
  CHECK(x.grad().to_vector<double>() == std::vector<double>{6, 8});
  REQUIRE_THROWS_WITH(y.backward(), "backward: the graph through tsum was freed by a previous backward(); "
                                    "pass retain_graph = true to run backward twice");
}

TEST_CASE("nothing is recorded under NoGradGuard; detach cuts the graph", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  {
    NoGradGuard ng;
    CHECK_FALSE(grad_enabled());
    Tensor y = tmul(x, x);
    CHECK_FALSE(y.requires_grad());
    CHECK(x.transpose(0, 0).grad_fn_name().empty());
    {
      NoGradGuard nested;
    }
    CHECK_FALSE(grad_enabled());  // restored to the outer guard's state
  }
  CHECK(grad_enabled());
  Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.storage() == x.storage());
  Tensor w = leaf({5, 7}, {2});
  tsum(tmul(d, w)).backward();
  CHECK_FALSE(x.grad().defined());  // no gradient reached x through the detached copy
  CHECK(w.grad().to_vector<double>() == std::vector<double>{1, 2});
}

TEST_CASE("the graph and its saved tensors are freed after backward", "[autograd]") {
  Tensor x = leaf(std::vector<double>(1 << 16, 0.5), {1 << 16});
  x.backward(ones({1 << 16}, DType::F64));  // gives x a gradient buffer before measuring
  size_t before = cpu_allocator_stats().bytes_in_use;
  {
    Tensor y = tsum(tmul(tmul(x, x), x));  // the outer tmul saves x * x: one activation-sized tensor
    size_t during = cpu_allocator_stats().bytes_in_use;
    CHECK(during >= before + (size_t(1) << 16) * sizeof(double));
    y.backward();
    // y is still alive, but the closures and what they saved are gone.
    CHECK(cpu_allocator_stats().bytes_in_use <= before + 4096);
  }
  CHECK(cpu_allocator_stats().bytes_in_use == before);
}

TEST_CASE("a leaf can be the root; explicit grad_output", "[autograd]") {
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  x.backward(from_vector<double>({1, 0, 0, 2}, {2, 2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 0, 0, 2});
}

TEST_CASE("engine errors name the problem", "[autograd]") {
  Tensor plain = from_vector<double>({1, 2});
  REQUIRE_THROWS_WITH(plain.backward(), "backward: tensor does not require grad");
  Tensor x = leaf({1, 2}, {2});
  Tensor y = tmul(x, x);
  REQUIRE_THROWS_WITH(y.backward(), "backward: a gradient can be created implicitly only for a one-element "
                                    "output, got shape (2,) (pass grad_output)");
  REQUIRE_THROWS_WITH(y.backward(ones({3}, DType::F64)), "backward: grad_output has shape (3,), expected (2,)");
  REQUIRE_THROWS_WITH(y.backward(ones({2}, DType::F32)), "backward: grad_output has dtype f32, expected f64");
  REQUIRE_THROWS_WITH(y.requires_grad_(false), "requires_grad_: only leaf tensors can change requires_grad "
                                               "(this one was made by tmul); use detach()");
  REQUIRE_THROWS_WITH(arange(3).requires_grad_(), "requires_grad_: only floating tensors can require grad, got i64");
  REQUIRE_THROWS_WITH(x.fill_(0), "fill_: in-place write to a tensor that requires grad "
                                  "(initialise parameters inside a NoGradGuard)");
  {
    NoGradGuard ng;
    x.fill_(3.0);  // allowed: this is how parameters are initialised
  }
  CHECK(x.at({1}) == 3.0);

  // A backward that returns a gradient of the wrong shape is caught at the edge it feeds.
  Tensor z;
  {
    NoGradGuard ng;
    z = ops::mul(x, 2.0);
  }
  record(z, "broken", {x}, [](const Tensor& g) { return std::vector<Tensor>{ops::sum(g, {0}, true)}; });
  REQUIRE_THROWS_WITH(z.backward(ones({2}, DType::F64)),
                      "backward of broken: gradient for input 0 has shape (1,), expected (2,)");
}

TEST_CASE("Tensor's view methods are differentiable", "[autograd]") {
  Generator gen(3);
  Tensor base = rand({2, 3, 4}, DType::F64, &gen);
  Tensor w = rand({4, 3, 2}, DType::F64, &gen);
  auto check = [&](const char* what, const std::function<Tensor(const Tensor&)>& view_of) {
    INFO(what);
    GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) {
      Tensor v = view_of(in[0]);
      Tensor ww = w.reshape(v.shape().numel() == w.numel() ? v.shape() : Shape{v.numel()});
      return tsum(tmul(v.reshape({v.numel()}), ww.reshape({v.numel()})));
    }, {base});
    INFO(r.report());
    CHECK(r.ok);
  };
  check("transpose", [](const Tensor& x) { return x.transpose(0, 2); });
  check("permute", [](const Tensor& x) { return x.permute({1, 2, 0}); });
  check("reshape of a transpose", [](const Tensor& x) { return x.transpose(1, 2).reshape({6, 4}); });
  check("view", [](const Tensor& x) { return x.view({4, 6}); });
  check("flatten", [](const Tensor& x) { return x.flatten(); });
  check("unsqueeze+squeeze", [](const Tensor& x) { return x.unsqueeze(1).squeeze(1).unsqueeze(3); });
  check("contiguous of a permute", [](const Tensor& x) { return x.permute({2, 1, 0}).contiguous(); });
  check("clone", [](const Tensor& x) { return x.clone(); });
  // Views that select part of x: compare against a weight of the view's size.
  auto check_part = [&](const char* what, const std::function<Tensor(const Tensor&)>& view_of) {
    INFO(what);
    GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) {
      Tensor v = view_of(in[0]);
      Generator fixed(9);  // the same weights on every call of f
      Tensor ww = rand({v.numel()}, DType::F64, &fixed);
      return tsum(tmul(v.contiguous().reshape({v.numel()}), ww));
    }, {base});
    INFO(r.report());
    CHECK(r.ok);
  };
  check_part("narrow", [](const Tensor& x) { return x.narrow(2, 1, 2); });
  check_part("slice with step", [](const Tensor& x) { return x.slice(2, 0, 4, 3); });
  check_part("select", [](const Tensor& x) { return x.select(1, 2); });
  check_part("expand", [](const Tensor& x) { return x.narrow(0, 0, 1).expand({3, 3, 4}); });
}

TEST_CASE("a dtype conversion passes the gradient back in the source dtype", "[autograd]") {
  Tensor x = leaf({1.5, -2.0}, {2});
  Tensor y = x.to(DType::F32);
  CHECK(y.grad_fn_name() == "to");
  y.backward(from_vector<float>({2.0f, 3.0f}));
  CHECK(x.grad().dtype() == DType::F64);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2.0, 3.0});
}

TEST_CASE("gradcheck catches a wrong gradient and reports the worst coordinate", "[autograd][gradcheck]") {
  auto wrong_square = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor out;
    {
      NoGradGuard ng;
      out = ops::mul(x, x);
    }
    record(out, "wrong_square", {x}, [x](const Tensor& g) {
      return std::vector<Tensor>{ops::mul(ops::mul(g, x), 2.001)};  // 0.05% too large
    });
    return out;
  };
  GradcheckResult r = gradcheck(wrong_square, {from_vector<double>({1.0, -3.0, 20.0})});
  CHECK_FALSE(r.ok);
  CHECK(r.worst_input == 0);
  CHECK(r.margin < 0);
  CHECK(r.report().find("gradcheck FAILED: 3 coordinates; worst: input 0") == 0);

  auto right_square = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor out;
    {
      NoGradGuard ng;
      out = ops::mul(x, x);
    }
    record(out, "square", {x}, [x](const Tensor& g) { return std::vector<Tensor>{ops::mul(ops::mul(g, x), 2.0)}; });
    return out;
  };
  // Non-contiguous input: a transposed f64 view is perturbed through its strides.
  Tensor xt = test::transposed_layout(test::random_tensor({3, 4}, DType::F64, 11));
  REQUIRE_FALSE(xt.is_contiguous());
  GradcheckResult ok = gradcheck(right_square, {xt});
  INFO(ok.report());
  CHECK(ok.ok);
  CHECK(ok.checked == 12);
  REQUIRE_THROWS_WITH(gradcheck(right_square, {from_vector<float>({1.0f})}), "gradcheck: inputs must be f64, got f32");
}

TEST_CASE("operations that cannot carry a gradient say so", "[autograd]") {
  Tensor x = leaf({1.5, 2.7}, {2});
  Tensor buf = zeros({2, 2}, DType::F64);
  REQUIRE_THROWS_WITH(buf.select(0, 0).copy_(x),
                      "copy_: the source requires grad, and copy_ does not record a gradient; build the tensor "
                      "with concat/stack, or copy src.detach() explicitly");
  buf.select(0, 0).copy_(x.detach());  // explicit: allowed
  CHECK(buf.at({0, 1}) == 2.7);
  CHECK_FALSE(x.to(DType::I64).requires_grad());  // rounding to integers has no gradient

  Tensor y = tmul(x, x);
  REQUIRE_THROWS_WITH(x.requires_grad_(false), "requires_grad_: this leaf is used by a recorded graph; use "
                                               "detach() for a copy that does not require grad");
  Tensor z = leaf({1.0}, {1});
  z.requires_grad_(false);  // not used by any graph: allowed
  CHECK_FALSE(z.requires_grad());
}
