// test_module.cpp — Module mechanics: dotted names, buffers, children, train/eval, parameter count,
// the parameter/gradient arenas, dtype conversion, seeded initialisation, registration errors.
#include "nn/layers.h"
#include "tensor/ops.h"
#include "tests/nn_test_util.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::nn;

namespace {

struct Block : Module {
  std::shared_ptr<Linear> proj;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Dropout> drop;
  Tensor key;
  Block(int64_t in, int64_t out, Generator* gen) {
    proj = register_module("proj", std::make_shared<Linear>(in, out, true, gen));
    norm = register_module("norm", std::make_shared<LayerNorm>(out));
    drop = register_module("drop", std::make_shared<Dropout>(0.5));
    key = register_buffer("key", arange(1.0, double(out) + 1.0, 1.0));
  }
  Tensor forward(const Tensor& x) const { return drop->forward(norm->forward(proj->forward(x))) * key; }
};

struct Net : Module {
  Tensor scale;
  std::vector<std::shared_ptr<Block>> layers;
  explicit Net(Generator* gen) {
    scale = register_parameter("scale", ones({3}));
    layers.push_back(register_module("0", std::make_shared<Block>(4, 3, gen)));
    layers.push_back(register_module("1", std::make_shared<Block>(3, 3, gen)));
  }
  Tensor forward(const Tensor& x) const { return layers[1]->forward(layers[0]->forward(x)) * scale; }
};

std::vector<std::string> names(const std::vector<NamedTensor>& list) {
  std::vector<std::string> out;
  for (auto& [n, t] : list) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("parameters and buffers have dotted PyTorch-style names", "[nn][module]") {
  Generator gen(1);
  Net net(&gen);
  CHECK(names(net.named_parameters()) ==
        std::vector<std::string>{"scale", "0.proj.weight", "0.proj.bias", "0.norm.weight", "0.norm.bias",
                                 "1.proj.weight", "1.proj.bias", "1.norm.weight", "1.norm.bias"});
  CHECK(names(net.named_buffers()) == std::vector<std::string>{"0.key", "1.key"});
  CHECK(net.state().size() == 11);
  CHECK(net.num_parameters() == 3 + (12 + 3 + 3 + 3) + (9 + 3 + 3 + 3));
  for (const Tensor& p : net.parameters()) CHECK(p.requires_grad());
  CHECK_FALSE(net.layers[0]->key.requires_grad());
  CHECK(net.layers[0]->proj->weight.shape() == Shape{3, 4});  // nn.Linear layout (out, in)
}

TEST_CASE("train and eval reach every descendant", "[nn][module]") {
  Generator gen(2);
  Net net(&gen);
  CHECK(net.layers[1]->drop->is_training());
  net.eval();
  CHECK_FALSE(net.layers[1]->drop->is_training());
  Tensor x = randn({5, 4}, DType::F32, &gen);
  CHECK(allclose(net.forward(x), net.forward(x), 0, 0));  // eval: dropout off, deterministic
  net.train();
  CHECK(net.layers[0]->drop->is_training());
}

TEST_CASE("initialisation is seeded", "[nn][module]") {
  Generator g1(7), g2(7), g3(8);
  Linear a(16, 8, true, &g1), b(16, 8, true, &g2), c(16, 8, true, &g3);
  CHECK(allclose(a.weight, b.weight, 0, 0));
  CHECK_FALSE(allclose(a.weight, c.weight, 0.1, 0));
  // U(-1/sqrt(16), 1/sqrt(16)) as nn.Linear.
  std::vector<float> w = a.weight.to_vector<float>();
  for (float v : w) REQUIRE(std::fabs(v) <= 0.25f);
}

TEST_CASE("pack_parameters puts values and gradients in two arenas", "[nn][module]") {
  Generator gen(3);
  Net net(&gen);
  net.eval();
  Tensor x = randn({5, 4}, DType::F32, &gen);
  Tensor before = net.forward(x).detach().clone();
  std::vector<Tensor> before_params;
  for (const Tensor& p : net.parameters()) before_params.push_back(p.detach().clone());
  net.pack_parameters();
  REQUIRE(net.packed());
  CHECK(net.param_arena().numel() == net.num_parameters());
  std::vector<Tensor> params = net.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(params[i].storage() == net.param_arena().storage());  // the layers' own handles moved
    CHECK(allclose(params[i], before_params[i], 0, 0));
    CHECK(params[i].grad().storage() == net.grad_arena().storage());
  }
  CHECK(allclose(net.forward(x), before, 0, 0));

  sum(net.forward(x)).backward();
  CHECK(ops::sum(ops::abs(net.grad_arena())).item() > 0);
  CHECK(net.layers[0]->proj->weight.grad().storage() == net.grad_arena().storage());  // accumulated in place
  net.zero_grad();
  CHECK(ops::sum(ops::abs(net.grad_arena())).item() == 0);
  net.pack_parameters();  // idempotent
  CHECK(net.param_arena().numel() == net.num_parameters());
}

TEST_CASE("to(f64) converts parameters and buffers in place", "[nn][module]") {
  Generator gen(4);
  Net net(&gen);
  Tensor w32 = net.layers[0]->proj->weight.detach().clone();
  net.to(DType::F64);
  for (auto& [name, t] : net.state()) {
    INFO(name);
    CHECK(t.dtype() == DType::F64);
  }
  CHECK(net.layers[0]->proj->weight.requires_grad());
  CHECK(allclose(net.layers[0]->proj->weight, w32.to(DType::F64), 0, 0));
  net.eval();
  Tensor y = net.forward(randn({2, 4}, DType::F64, &gen));
  CHECK(y.dtype() == DType::F64);
}

TEST_CASE("registration errors", "[nn][module]") {
  struct Bad : Module {
    void dup() {
      register_parameter("w", ones({2}));
      register_buffer("w", ones({2}));
    }
    void dotted() { register_parameter("a.b", ones({2})); }
    void integral() { register_parameter("i", arange(3)); }
  };
  Bad b;
  REQUIRE_THROWS_WITH(b.dup(), "Module: name 'w' is already registered");
  REQUIRE_THROWS_WITH(b.dotted(), "Module: invalid name 'a.b' (must be non-empty and contain no '.')");
  REQUIRE_THROWS_WITH(b.integral(), "Module: parameter 'i' must be floating, got i64");
  REQUIRE_THROWS_WITH(Linear(0, 3), "Linear: sizes must be positive, got in=0 out=3");
  Linear l(4, 2);
  REQUIRE_THROWS_WITH(l.forward(zeros({3, 5})), "Linear: expected input (..., 4), got (3, 5)");
}

TEST_CASE("gradcheck_module checks inputs and every parameter", "[nn][module]") {
  Generator gen(5);
  Net net(&gen);
  net.eval();
  net.to(DType::F64);
  Tensor x = randn({3, 4}, DType::F64, &gen);
  Tensor w_before = net.layers[0]->proj->weight.detach().clone();
  auto r = test::gradcheck_module(net, {x}, [&](const std::vector<Tensor>& in) { return net.forward(in[0]); });
  INFO(r.report());
  CHECK(r.ok);
  CHECK(r.checked == 4 * 3 + net.num_parameters());
  // The parameters are restored afterwards, with their own gradient records.
  CHECK(allclose(net.layers[0]->proj->weight, w_before, 0, 0));
  CHECK(net.layers[0]->proj->weight.is_leaf());
  CHECK(net.layers[0]->proj->weight.requires_grad());
}
