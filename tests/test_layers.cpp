// test_layers.cpp — the nn layers: the basic ones of nn/layers.h (Linear, Embedding, PositionalEmbedding,
// LayerNorm, Dropout, activations) and Conv2d, MaxPool2d, MLP, the loss modules and LeNet.
//
// For each: hand-computed forward values, output shapes, parameter names (PyTorch's state_dict keys),
// seeded initialisation within PyTorch's bounds, a gradient check in f64 through the module with
// respect to its input AND every parameter (tests/nn_test_util.h), and the layer's error messages.
// LeNet is also checked against a direct-loop reference written here in double.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nn/conv.h"
#include "nn/layers.h"
#include "nn/lenet.h"
#include "nn/loss.h"
#include "nn/mlp.h"
#include "tensor/ops.h"
#include "tests/nn_test_util.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::nn;
using muxnet::test::random_tensor;
// NOTE: CHECK_GRADCHECK_MODULE parenthesises its arguments, so the inputs are passed as Tensors{...}
// (a bare braced list is not an expression), in extra parentheses when the list has a comma.
using Tensors = std::vector<Tensor>;

namespace {

std::vector<std::string> names(const Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}

// Overwrites a parameter's values in place (no autograd record), keeping its dtype.
void set_values(const Tensor& p, const std::vector<double>& values) {
  p.detach().copy_(from_vector<double>(values, p.shape()).to(p.dtype()));
}

Tensor f64(const std::vector<double>& values, const Shape& shape) { return from_vector<double>(values, shape); }

// Checks that the values of t look like draws of U(-bound, bound): inside the bound, reaching close to
// it, mean near 0 and variance near bound^2 / 3 (tolerances a few standard errors wide for n draws).
void check_uniform_init(const Tensor& t, double bound) {
  std::vector<double> v = t.to_vector<double>();
  const double n = double(v.size());
  double mean = 0, lo = 0, hi = 0;
  for (double x : v) {
    mean += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  mean /= n;
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  var /= n;
  INFO("bound " << bound << " n " << n << " min " << lo << " max " << hi << " mean " << mean << " var " << var);
  CHECK(hi <= bound);
  CHECK(lo >= -bound);
  // The largest of n uniform draws misses the bound by about 2 bound / n.
  CHECK(hi >= bound * (1.0 - 20.0 / n));
  CHECK(lo <= -bound * (1.0 - 20.0 / n));
  // Standard error of the mean: bound / sqrt(3 n); of the variance: about 0.9 bound^2 / (3 sqrt(n)).
  CHECK(std::fabs(mean) <= 5.0 * bound / std::sqrt(3.0 * n));
  CHECK(std::fabs(var - bound * bound / 3.0) <= 5.0 * 0.9 * bound * bound / (3.0 * std::sqrt(n)));
}

}  // namespace

// ---------------------------------------------------------------- Linear

TEST_CASE("Linear: hand-computed forward, names, shapes", "[nn][nn-layers]") {
  Linear l(3, 2);
  CHECK(names(l) == std::vector<std::string>{"weight", "bias"});
  CHECK(l.weight.shape() == Shape{2, 3});
  CHECK(l.bias.shape() == Shape{2});
  set_values(l.weight, {1, 2, 3, -1, 0, 1});
  set_values(l.bias, {0.5, -0.5});
  // y = x W^T + b: row (1, 1, 1) -> (6.5, -0.5); row (2, 0, -1) -> (-0.5, -3.5)
  Tensor y = l.forward(from_vector<float>({1, 1, 1, 2, 0, -1}, {2, 3}));
  CHECK(y.shape() == Shape{2, 2});
  CHECK(y.to_vector<float>() == std::vector<float>{6.5f, -0.5f, -0.5f, -3.5f});
  // Leading dims pass through.
  Tensor y3 = l.forward(from_vector<float>({1, 1, 1, 2, 0, -1}, {2, 1, 3}));
  CHECK(y3.shape() == Shape{2, 1, 2});
  CHECK(y3.to_vector<float>() == std::vector<float>{6.5f, -0.5f, -0.5f, -3.5f});

  Linear nb(3, 2, false);
  CHECK(names(nb) == std::vector<std::string>{"weight"});
  CHECK_FALSE(nb.bias.defined());
  set_values(nb.weight, {1, 2, 3, -1, 0, 1});
  CHECK(nb.forward(from_vector<float>({1, 1, 1}, {1, 3})).to_vector<float>() == std::vector<float>{6.f, 0.f});
}

TEST_CASE("Linear and Conv2d initialisation: seeded, within PyTorch's bound", "[nn][nn-layers]") {
  Generator g1(11), g2(11), g3(12);
  Linear a(200, 150, true, &g1), b(200, 150, true, &g2), c(200, 150, true, &g3);
  CHECK(allclose(a.weight, b.weight, 0, 0));
  CHECK(allclose(a.bias, b.bias, 0, 0));
  CHECK_FALSE(allclose(a.weight, c.weight, 0.01, 0));
  check_uniform_init(a.weight, 1.0 / std::sqrt(200.0));
  {
    // Bias: U(+-1/sqrt(in)) too, as nn.Linear (not zeros); 150 draws, so only the range is checked.
    std::vector<float> bv = a.bias.to_vector<float>();
    float lo = *std::min_element(bv.begin(), bv.end()), hi = *std::max_element(bv.begin(), bv.end());
    CHECK(hi <= float(1.0 / std::sqrt(200.0)));
    CHECK(lo >= -float(1.0 / std::sqrt(200.0)));
    CHECK(hi - lo > 0.8 * 2.0 / std::sqrt(200.0));
  }

  // Conv2d: fan_in = C * k * k.
  Generator g4(13), g5(13);
  Conv2d conv(8, 64, 3, 1, 0, true, &g4), conv2(8, 64, 3, 1, 0, true, &g5);
  CHECK(conv.weight.shape() == Shape{64, 8, 3, 3});
  CHECK(allclose(conv.weight, conv2.weight, 0, 0));
  check_uniform_init(conv.weight, 1.0 / std::sqrt(72.0));
  std::vector<float> bv = conv.bias.to_vector<float>();
  for (float v : bv) REQUIRE(std::fabs(v) <= float(1.0 / std::sqrt(72.0)));
  CHECK(*std::max_element(bv.begin(), bv.end()) - *std::min_element(bv.begin(), bv.end()) > 0.8 * 2.0 / std::sqrt(72.0));
}

TEST_CASE("Linear gradcheck through the module (non-contiguous 3-d input)", "[nn][nn-layers][grad]") {
  Generator gen(21);
  Linear l(4, 3, true, &gen);
  l.to(DType::F64);
  Tensor x = test::transposed_layout(random_tensor({2, 5, 4}, DType::F64, 22));
  REQUIRE_FALSE(x.is_contiguous());
  CHECK_GRADCHECK_MODULE(l, Tensors{x}, [&](const std::vector<Tensor>& in) { return l.forward(in[0]); });
  Linear nb(4, 3, false, &gen);
  nb.to(DType::F64);
  CHECK_GRADCHECK_MODULE(nb, Tensors{random_tensor({3, 4}, DType::F64, 23)},
                         [&](const std::vector<Tensor>& in) { return nb.forward(in[0]); });
}

TEST_CASE("Linear errors", "[nn][nn-layers]") {
  REQUIRE_THROWS_WITH(Linear(3, 0), "Linear: sizes must be positive, got in=3 out=0");
  Linear l(3, 2);
  REQUIRE_THROWS_WITH(l.forward(zeros({2, 4})), "Linear: expected input (..., 3), got (2, 4)");
  REQUIRE_THROWS_WITH(l.forward(zeros(Shape{})), "Linear: expected input (..., 3), got ()");
}

// ---------------------------------------------------------------- Embedding

TEST_CASE("Embedding: lookup by hand, padding row, N(0, 1) init", "[nn][nn-layers]") {
  Embedding e(4, 2);
  CHECK(names(e) == std::vector<std::string>{"weight"});
  set_values(e.weight, {0, 1, 10, 11, 20, 21, 30, 31});
  Tensor y = e.forward(from_vector<int64_t>({3, 0, 1, 1, 2, 3}, {2, 3}));
  CHECK(y.shape() == Shape{2, 3, 2});
  CHECK(y.to_vector<float>() == std::vector<float>{30, 31, 0, 1, 10, 11, 10, 11, 20, 21, 30, 31});
  CHECK(e.forward(from_vector<int32_t>({2}, {1})).to_vector<float>() == std::vector<float>{20, 21});

  // padding_idx: the row starts at zero, is still returned by the forward, and gets no gradient.
  Generator gen(31);
  Embedding p(5, 3, 2, &gen);
  CHECK(p.weight.select(0, 2).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(ops::sum(ops::abs(p.weight)).item() > 0);
  set_values(p.weight.select(0, 2), {7, 8, 9});  // as if it had been changed since
  Tensor idx = from_vector<int64_t>({2, 0, 2, 4, 0}, {5});
  Tensor out = p.forward(idx);
  CHECK(out.select(0, 0).to_vector<float>() == std::vector<float>{7, 8, 9});
  sum(out).backward();
  // Each row's gradient is its number of lookups (d sum / d w = 1 per lookup); none for the padding row.
  CHECK(p.weight.grad().to_vector<float>() ==
        std::vector<float>{2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1});

  // N(0, 1) as nn.Embedding; 16000 draws.
  Generator g2(32);
  Embedding big(1000, 16, -1, &g2);
  std::vector<double> v = big.weight.to_vector<double>();
  double mean = 0, var = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  for (double x : v) var += (x - mean) * (x - mean);
  var /= double(v.size());
  INFO("mean " << mean << " var " << var);
  CHECK(std::fabs(mean) < 0.04);
  CHECK(std::fabs(var - 1.0) < 0.06);
}

TEST_CASE("Embedding gradcheck and errors", "[nn][nn-layers][grad]") {
  Generator gen(33);
  Embedding e(6, 3, 5, &gen);  // padding row 5 is not looked up: the numerical gradient would see it
  e.to(DType::F64);
  Tensor idx = from_vector<int64_t>({1, 0, 4, 1, 3, 3}, {2, 3});
  CHECK_GRADCHECK_MODULE(e, Tensors{idx}, [&](const std::vector<Tensor>& in) { return e.forward(in[0]); });

  REQUIRE_THROWS_WITH(Embedding(0, 3), "Embedding: sizes must be positive, got 0 x 3");
  REQUIRE_THROWS_WITH(Embedding(5, 3, 5), "Embedding: padding_idx 5 out of range for 5 rows");
  REQUIRE_THROWS_WITH(Embedding(5, 3, -2), "Embedding: padding_idx -2 out of range for 5 rows");
  Embedding f(5, 3);
  REQUIRE_THROWS_WITH(f.forward(from_vector<int64_t>({1, 5}, {2})),
                      "embedding: index 5 out of range for 5 rows (at position 1)");
}

// ---------------------------------------------------------------- PositionalEmbedding

TEST_CASE("PositionalEmbedding: adds the first T rows", "[nn][nn-layers][grad]") {
  PositionalEmbedding pe(4, 2);
  CHECK(names(pe) == std::vector<std::string>{"weight"});
  CHECK(pe.weight.shape() == Shape{4, 2});
  set_values(pe.weight, {1, 2, 3, 4, 5, 6, 7, 8});
  // x (2, 3, 2): batch 0 all zeros, batch 1 all 10 -> the same rows 0..2 added to both.
  Tensor x = concat({zeros({1, 3, 2}), full({1, 3, 2}, 10.0)}, 0);
  CHECK(pe.forward(x).to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16});

  Generator gen(41);
  PositionalEmbedding g(5, 3, &gen);
  g.to(DType::F64);
  CHECK_GRADCHECK_MODULE(g, Tensors{test::strided_layout(random_tensor({2, 4, 3}, DType::F64, 42))},
                         [&](const std::vector<Tensor>& in) { return g.forward(in[0]); });

  REQUIRE_THROWS_WITH(PositionalEmbedding(0, 2), "PositionalEmbedding: sizes must be positive, got 0 x 2");
  REQUIRE_THROWS_WITH(pe.forward(zeros({2, 3, 3})), "PositionalEmbedding: expected x of shape (B, T, 2), got (2, 3, 3)");
  REQUIRE_THROWS_WITH(pe.forward(zeros({3, 2})), "PositionalEmbedding: expected x of shape (B, T, 2), got (3, 2)");
  REQUIRE_THROWS_WITH(pe.forward(zeros({1, 5, 2})), "PositionalEmbedding: sequence length 5 exceeds max_len 4");
}

// ---------------------------------------------------------------- LayerNorm

TEST_CASE("LayerNorm: hand-computed, with and without affine", "[nn][nn-layers][grad]") {
  LayerNorm ln(4);
  CHECK(names(ln) == std::vector<std::string>{"weight", "bias"});
  CHECK(ln.weight.to_vector<float>() == std::vector<float>{1, 1, 1, 1});
  CHECK(ln.bias.to_vector<float>() == std::vector<float>{0, 0, 0, 0});
  ln.to(DType::F64);
  // x = (1, 2, 3, 4): mean 2.5, biased variance 1.25 -> (x - 2.5) / sqrt(1.25 + 1e-5).
  const double s = 1.0 / std::sqrt(1.25 + 1e-5);
  Tensor x = f64({1, 2, 3, 4, 2, 2, 2, 2}, {2, 4});
  Tensor want = f64({-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s, 0, 0, 0, 0}, {2, 4});
  CHECK_CLOSE(ln.forward(x), want, 1e-12, 1e-12);
  set_values(ln.weight, {1, 2, -1, 0});
  set_values(ln.bias, {0, 1, 0, 5});
  CHECK_CLOSE(ln.forward(x), f64({-1.5 * s, 1 - 1.0 * s, -0.5 * s, 5, 0, 1, 0, 5}, {2, 4}), 1e-12, 1e-12);

  LayerNorm plain(4, 1e-3, false);
  CHECK(names(plain).empty());
  CHECK_FALSE(plain.weight.defined());
  const double s3 = 1.0 / std::sqrt(1.25 + 1e-3);
  CHECK_CLOSE(plain.forward(x), f64({-1.5 * s3, -0.5 * s3, 0.5 * s3, 1.5 * s3, 0, 0, 0, 0}, {2, 4}), 1e-12, 1e-12);

  Tensor xr = test::transposed_layout(random_tensor({3, 2, 4}, DType::F64, 51));
  set_values(ln.weight, random_tensor({4}, DType::F64, 52).to_vector<double>());
  set_values(ln.bias, random_tensor({4}, DType::F64, 53).to_vector<double>());
  CHECK_GRADCHECK_MODULE(ln, Tensors{xr}, [&](const std::vector<Tensor>& in) { return ln.forward(in[0]); });
  CHECK_GRADCHECK_MODULE(plain, Tensors{xr}, [&](const std::vector<Tensor>& in) { return plain.forward(in[0]); });

  REQUIRE_THROWS_WITH(LayerNorm(0), "LayerNorm: dim must be positive, got 0");
  REQUIRE_THROWS_WITH(ln.forward(zeros({2, 3}, DType::F64)), "LayerNorm: expected input (..., 4), got (2, 3)");
}

// ---------------------------------------------------------------- Dropout

TEST_CASE("Dropout: train zeroes about p and rescales, eval is the identity", "[nn][nn-layers][grad]") {
  Generator gen(61);
  Dropout d(0.3, &gen);
  CHECK(names(d).empty());
  Tensor x = ones({200, 100});
  Tensor y = d.forward(x);
  std::vector<float> v = y.to_vector<float>();
  int64_t zeros_count = 0;
  for (float e : v) {
    if (e == 0.f) {
      ++zeros_count;
    } else {
      REQUIRE(e == Approx(1.0 / 0.7).epsilon(1e-6));
    }
  }
  // 20000 Bernoulli(0.3) draws: standard deviation of the fraction about 0.0032.
  CHECK(std::fabs(double(zeros_count) / 20000.0 - 0.3) < 0.015);
  // A different mask next time (the generator advances).
  CHECK_FALSE(allclose(d.forward(x), y, 0, 0));
  d.eval();
  CHECK(allclose(d.forward(x), x, 0, 0));
  Dropout none(0.0);
  CHECK(allclose(none.forward(x), x, 0, 0));
  Dropout all(1.0, &gen);
  CHECK(ops::sum(ops::abs(all.forward(x))).item() == 0);

  // Gradient in training mode with a fixed mask: the generator is reseeded before every forward.
  Generator fixed(62);
  Dropout dg(0.4, &fixed);
  Tensor xr = random_tensor({4, 5}, DType::F64, 63);
  CHECK_GRADCHECK_MODULE(dg, Tensors{xr}, [&](const std::vector<Tensor>& in) {
    fixed.manual_seed(62);
    return dg.forward(in[0]);
  });
  fixed.manual_seed(62);
  Tensor xg = xr.detach().clone();
  xg.requires_grad_();
  Tensor out = dg.forward(xg);
  sum(out).backward();
  // d out / d x = mask / (1 - p): 0 where dropped, 1 / 0.6 where kept.
  std::vector<double> o = out.to_vector<double>(), gx = xg.grad().to_vector<double>(), xv = xr.to_vector<double>();
  for (size_t i = 0; i < o.size(); ++i) {
    if (o[i] == 0.0) {
      CHECK(gx[i] == 0.0);
    } else {
      CHECK(gx[i] == Approx(1.0 / 0.6));
      CHECK(o[i] == Approx(xv[i] / 0.6));
    }
  }

  REQUIRE_THROWS_WITH(Dropout(1.5), "Dropout: p must be in [0, 1], got 1.5");
  REQUIRE_THROWS_WITH(Dropout(-0.1), "Dropout: p must be in [0, 1], got -0.1");
}

// ---------------------------------------------------------------- activations

TEST_CASE("activations: names, hand-computed values, modules", "[nn][nn-layers][grad]") {
  for (Activation a : {Activation::Relu, Activation::Gelu, Activation::Tanh, Activation::Sigmoid, Activation::Identity})
    CHECK(parse_activation(activation_name(a)) == a);
  CHECK(std::string(activation_name(Activation::Gelu)) == "gelu");
  REQUIRE_THROWS_WITH(parse_activation("swish"),
                      "activation: unknown name 'swish' (expected relu, gelu, tanh, sigmoid or identity)");

  Tensor x = f64({-1.0, 0.0, 0.5, 1.0}, {4});
  auto values = [&](Activation a) { return activate(a, x).to_vector<double>(); };
  CHECK(values(Activation::Relu) == std::vector<double>{0, 0, 0.5, 1});
  CHECK(values(Activation::Identity) == std::vector<double>{-1, 0, 0.5, 1});
  // gelu(x) = x Phi(x): Phi(1) = 0.8413447460685429, Phi(0.5) = 0.6914624612740131.
  CHECK_CLOSE(activate(Activation::Gelu, x), f64({-1 + 0.8413447460685429, 0, 0.5 * 0.6914624612740131,
                                                  0.8413447460685429}, {4}), 1e-12, 1e-12);
  CHECK_CLOSE(activate(Activation::Tanh, x), f64({-0.7615941559557649, 0, 0.46211715726000974, 0.7615941559557649}, {4}),
              1e-12, 1e-12);
  CHECK_CLOSE(activate(Activation::Sigmoid, x), f64({0.2689414213699951, 0.5, 0.6224593312018546, 0.7310585786300049}, {4}),
              1e-12, 1e-12);

  ReLU relu_m;
  GELU gelu_m;
  Tanh tanh_m;
  CHECK(names(relu_m).empty());
  CHECK(relu_m.forward(x).to_vector<double>() == std::vector<double>{0, 0, 0.5, 1});
  CHECK_CLOSE(tanh_m.forward(x), activate(Activation::Tanh, x), 0, 0);
  ActivationModule sig(Activation::Sigmoid);
  CHECK(sig.forward(x).at({1}) == 0.5);

  // Gradients; the relu input is bounded away from its kink at 0.
  Tensor xr = random_tensor({3, 4}, DType::F64, 71);
  Tensor xpos = ops::add(ops::mul(ops::abs(xr), 1.0), 0.1);                       // >= 0.1
  Tensor xk = where(ops::lt(xr, zeros({3, 4}, DType::F64)), ops::neg(xpos), xpos);  // |x| >= 0.1, both signs
  CHECK_GRADCHECK_MODULE(relu_m, Tensors{xk}, [&](const std::vector<Tensor>& in) { return relu_m.forward(in[0]); });
  CHECK_GRADCHECK_MODULE(gelu_m, Tensors{xr}, [&](const std::vector<Tensor>& in) { return gelu_m.forward(in[0]); });
  CHECK_GRADCHECK_MODULE(tanh_m, Tensors{xr}, [&](const std::vector<Tensor>& in) { return tanh_m.forward(in[0]); });
  CHECK_GRADCHECK_MODULE(sig, Tensors{xr}, [&](const std::vector<Tensor>& in) { return sig.forward(in[0]); });
}

// ---------------------------------------------------------------- Conv2d, MaxPool2d

TEST_CASE("Conv2d: hand-computed forward with stride and padding, names, shapes", "[nn][nn-layers]") {
  Conv2d c(1, 2, 2, 2, 1);
  CHECK(names(c) == std::vector<std::string>{"weight", "bias"});
  CHECK(c.weight.shape() == Shape{2, 1, 2, 2});
  CHECK(c.bias.shape() == Shape{2});
  set_values(c.weight, {1, 0, 0, -1, 1, 1, 1, 1});
  set_values(c.bias, {0.5, -1});
  // x = 1..9 (3x3), zero-padded to 5x5; 2x2 windows at stride 2 start at rows/cols 0 and 2:
  //   [[0,0],[0,1]]  [[0,0],[2,3]]  [[0,4],[0,7]]  [[5,6],[8,9]]
  // kernel 0 (top-left minus bottom-right) + 0.5: -0.5 -2.5 -6.5 -3.5; kernel 1 (sum) - 1: 0 4 10 27.
  Tensor x = arange(1.0, 10.0, 1.0).view({1, 1, 3, 3});
  Tensor y = c.forward(x);
  CHECK(y.shape() == Shape{1, 2, 2, 2});
  CHECK(y.to_vector<float>() == std::vector<float>{-0.5f, -2.5f, -6.5f, -3.5f, 0, 4, 10, 27});

  Conv2d nb(3, 4, 3, 1, 0, false);
  CHECK(names(nb) == std::vector<std::string>{"weight"});
  CHECK_FALSE(nb.bias.defined());
  CHECK(nb.forward(zeros({2, 3, 7, 5})).shape() == Shape{2, 4, 5, 3});
  Conv2d sp(3, 4, 3, 2, 1);
  CHECK(sp.forward(zeros({2, 3, 7, 5})).shape() == Shape{2, 4, 4, 3});  // (7 + 2 - 3) / 2 + 1, (5 + 2 - 3) / 2 + 1
  CHECK(sp.num_parameters() == 4 * 3 * 9 + 4);
}

TEST_CASE("Conv2d gradcheck through the module", "[nn][nn-layers][grad]") {
  Generator gen(81);
  Conv2d c(2, 3, 3, 2, 1, true, &gen);
  c.to(DType::F64);
  // A channels-last (non-contiguous) input.
  Tensor x = random_tensor({2, 2, 5, 6}, DType::F64, 82).permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
  REQUIRE_FALSE(x.is_contiguous());
  CHECK_GRADCHECK_MODULE(c, Tensors{x}, [&](const std::vector<Tensor>& in) { return c.forward(in[0]); });
  Conv2d nb(2, 2, 2, 1, 0, false, &gen);
  nb.to(DType::F64);
  CHECK_GRADCHECK_MODULE(nb, Tensors{random_tensor({1, 2, 4, 3}, DType::F64, 83)},
                         [&](const std::vector<Tensor>& in) { return nb.forward(in[0]); });
}

TEST_CASE("Conv2d errors", "[nn][nn-layers]") {
  REQUIRE_THROWS_WITH(Conv2d(0, 3, 3), "Conv2d: channel counts must be positive, got in_channels=0 out_channels=3");
  REQUIRE_THROWS_WITH(Conv2d(1, 3, 0), "Conv2d: kernel_size must be positive, got 0");
  REQUIRE_THROWS_WITH(Conv2d(1, 3, 3, 0), "Conv2d: stride must be positive, got 0");
  REQUIRE_THROWS_WITH(Conv2d(1, 3, 3, 1, -1), "Conv2d: padding must be >= 0, got -1");
  Conv2d c(3, 4, 3);
  REQUIRE_THROWS_WITH(c.forward(zeros({2, 4, 5, 5})), "Conv2d: expected input (B, 3, H, W), got (2, 4, 5, 5)");
  REQUIRE_THROWS_WITH(c.forward(zeros({3, 5, 5})), "Conv2d: expected input (B, 3, H, W), got (3, 5, 5)");
  REQUIRE_THROWS_WITH(c.forward(zeros({1, 3, 2, 5})), Catch::Contains("does not fit a 2x5 input"));
}

TEST_CASE("MaxPool2d: hand-computed forward, gradcheck, errors", "[nn][nn-layers][grad]") {
  MaxPool2d p(2);
  CHECK(p.stride == 2);
  CHECK(names(p).empty());
  Tensor x = f64({1, 5, 2, 0, 9,
                  3, 4, 8, 1, 9,
                  0, 2, 1, 1, 9,
                  7, 6, 3, -9, 9}, {1, 1, 4, 5});
  Tensor y = p.forward(x);
  CHECK(y.shape() == Shape{1, 1, 2, 2});  // floor mode drops the last column
  CHECK(y.to_vector<double>() == std::vector<double>{5, 8, 7, 3});
  MaxPool2d s1(2, 1);
  CHECK(s1.forward(x).shape() == Shape{1, 1, 3, 4});
  CHECK(s1.forward(x).select(2, 2).to_vector<double>() == std::vector<double>{7, 6, 3, 9});
  // Padding 1: windows over the padded border; padded cells never win, even against negatives.
  MaxPool2d pad(2, 2, 1);
  Tensor neg = f64({-1, -2, -3, -4}, {1, 1, 2, 2});
  CHECK(pad.forward(neg).to_vector<double>() == std::vector<double>{-1, -2, -3, -4});

  Tensor xr = random_tensor({2, 3, 6, 5}, DType::F64, 91);
  MaxPool2d q(3, 2, 1);
  CHECK_GRADCHECK_MODULE(q, Tensors{xr}, [&](const std::vector<Tensor>& in) { return q.forward(in[0]); });
  CHECK_GRADCHECK_MODULE(p, Tensors{test::transposed_layout(xr)}, [&](const std::vector<Tensor>& in) { return p.forward(in[0]); });

  REQUIRE_THROWS_WITH(MaxPool2d(0), "MaxPool2d: kernel_size must be positive, got 0");
  REQUIRE_THROWS_WITH(MaxPool2d(2, -1), "MaxPool2d: stride must be positive (or 0 for the kernel size), got -1");
  REQUIRE_THROWS_WITH(MaxPool2d(2, 2, 2), "MaxPool2d: padding must be in [0, kernel_size / 2], got padding 2 for kernel_size 2");
  REQUIRE_THROWS_WITH(p.forward(zeros({4, 4})), "MaxPool2d: expected input (B, C, H, W), got (4, 4)");
}

// ---------------------------------------------------------------- MLP

TEST_CASE("MLP: layer names, hand-computed forward, activation placement", "[nn][nn-layers]") {
  Generator gen(101);
  MLP m({5, 8, 7, 3}, Activation::Relu, 0.0, Activation::Identity, &gen);
  CHECK(names(m) == std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                                             "layers.2.weight", "layers.2.bias"});
  CHECK(m.num_layers() == 3);
  CHECK(m.layer(0).weight.shape() == Shape{8, 5});
  CHECK(m.layer(2).weight.shape() == Shape{3, 7});
  CHECK(m.num_parameters() == (5 * 8 + 8) + (8 * 7 + 7) + (7 * 3 + 3));
  CHECK(m.forward(zeros({4, 2, 5})).shape() == Shape{4, 2, 3});
  // The layers are initialised in order from gen, like Linears built one after another.
  Generator again(101);
  Linear l0(5, 8, true, &again), l1(8, 7, true, &again);
  CHECK(allclose(m.layer(0).weight, l0.weight, 0, 0));
  CHECK(allclose(m.layer(1).bias, l1.bias, 0, 0));

  // By hand: 2 -> 2 -> 1 with relu between. W0 = [[1, -1], [2, 1]], b0 = (0, -1); W1 = [[1, -3]], b1 = 0.5.
  //   x = (1, 2): h = relu((-1, 3)) = (0, 3); out = 0 - 9 + 0.5 = -8.5
  //   x = (3, -2): h = relu((5, 3)) = (5, 3); out = 5 - 9 + 0.5 = -3.5
  MLP small({2, 2, 1});
  set_values(small.layer(0).weight, {1, -1, 2, 1});
  set_values(small.layer(0).bias, {0, -1});
  set_values(small.layer(1).weight, {1, -3});
  set_values(small.layer(1).bias, {0.5});
  Tensor x = from_vector<float>({1, 2, 3, -2}, {2, 2});
  CHECK(small.forward(x).to_vector<float>() == std::vector<float>{-8.5f, -3.5f});
  // No activation after the last layer unless asked: a final relu clips both outputs to 0; a tanh
  // hidden activation changes the hidden values.
  MLP clipped({2, 2, 1}, Activation::Relu, 0.0, Activation::Relu);
  MLP tanh_mlp({2, 2, 1}, Activation::Tanh);
  for (MLP* q : {&clipped, &tanh_mlp}) {
    for (size_t i = 0; i < 2; ++i) {
      q->layer(i).weight.detach().copy_(small.layer(i).weight.detach());
      q->layer(i).bias.detach().copy_(small.layer(i).bias.detach());
    }
  }
  CHECK(clipped.forward(x).to_vector<float>() == std::vector<float>{0.f, 0.f});
  const double t1 = std::tanh(-1.0), t3 = std::tanh(3.0), t5 = std::tanh(5.0);
  CHECK_CLOSE(tanh_mlp.forward(x), from_vector<float>({float(t1 - 3 * t3 + 0.5), float(t5 - 3 * t3 + 0.5)}, {2, 1}),
              1e-6, 1e-6);
  // A single layer is a plain Linear with the final activation.
  MLP one({2, 1}, Activation::Relu, 0.5, Activation::Tanh);
  set_values(one.layer(0).weight, {1, -3});
  set_values(one.layer(0).bias, {0.5});
  CHECK_CLOSE(one.forward(x), from_vector<float>({float(std::tanh(-4.5)), float(std::tanh(9.5))}, {2, 1}), 1e-6, 1e-6);
}

TEST_CASE("MLP: dropout between hidden layers in training only", "[nn][nn-layers][grad]") {
  Generator gen(111), masks(112);
  MLP m({4, 64, 2}, Activation::Tanh, 0.5, Activation::Identity, &gen, &masks);
  Tensor x = random_tensor({3, 4}, DType::F32, 113);
  Tensor train_a = m.forward(x).detach(), train_b = m.forward(x).detach();
  CHECK_FALSE(allclose(train_a, train_b, 1e-6, 0));  // fresh masks each call
  m.eval();
  Tensor eval_a = m.forward(x);
  CHECK(allclose(eval_a, m.forward(x), 0, 0));
  CHECK(allclose(eval_a, m.layer(1).forward(tanh(m.layer(0).forward(x))), 0, 0));
  // Training output with a known mask: the hidden tanh values times mask / (1 - p).
  m.train();
  masks.manual_seed(5);
  Tensor got = m.forward(x);
  Generator replay(5);
  Tensor mask = bernoulli({3, 64}, 0.5, DType::F32, &replay);
  Tensor want = m.layer(1).forward(ops::mul(ops::mul(tanh(m.layer(0).forward(x)), mask), 2.0));
  CHECK_CLOSE(got, want, 1e-6, 1e-6);

  // Gradcheck: eval, and training with the mask generator reseeded before every forward.
  m.to(DType::F64);
  Tensor xr = random_tensor({3, 4}, DType::F64, 114);
  m.eval();
  CHECK_GRADCHECK_MODULE(m, Tensors{xr}, [&](const std::vector<Tensor>& in) { return m.forward(in[0]); });
  m.train();
  CHECK_GRADCHECK_MODULE(m, Tensors{xr}, [&](const std::vector<Tensor>& in) {
    masks.manual_seed(7);
    return m.forward(in[0]);
  });
}

TEST_CASE("MLP errors", "[nn][nn-layers]") {
  REQUIRE_THROWS_WITH(MLP({4}), "MLP: expected at least 2 sizes {in, ..., out}, got {4}");
  REQUIRE_THROWS_WITH(MLP({4, 0, 2}), "MLP: sizes must be positive, got {4, 0, 2}");
  REQUIRE_THROWS_WITH(MLP({4, 2}, Activation::Relu, 1.5), "MLP: dropout must be in [0, 1], got 1.5");
  MLP m({4, 3, 2});
  REQUIRE_THROWS_WITH(m.forward(zeros({2, 5})), "MLP: expected input (..., 4), got (2, 5)");
}

// ---------------------------------------------------------------- losses

TEST_CASE("CrossEntropyLoss and MSELoss: hand-computed values, gradcheck, errors", "[nn][nn-layers][grad]") {
  CrossEntropyLoss ce;
  CHECK(ce.ignore_index == -100);
  CHECK(names(ce).empty());
  // logits (0, 0) target 0: log 2; logits (0, ln 3) target 1: -log(3/4) = log(4/3).
  Tensor logits = f64({0, 0, 0, std::log(3.0)}, {2, 2});
  Tensor t = from_vector<int64_t>({0, 1}, {2});
  Tensor loss = ce.forward(logits, t);
  CHECK(loss.ndim() == 0);
  CHECK(loss.item() == Approx((std::log(2.0) + std::log(4.0 / 3.0)) / 2).epsilon(1e-12));
  CHECK(ce.forward(logits, from_vector<int64_t>({0, -100}, {2})).item() == Approx(std::log(2.0)).epsilon(1e-12));
  CrossEntropyLoss ignore1(1);
  CHECK(ignore1.forward(logits, t).item() == Approx(std::log(2.0)).epsilon(1e-12));
  // The class dim is the last one: logits (2, 1, 2), targets (2, 1).
  CHECK(ce.forward(logits.view({2, 1, 2}), t.view({2, 1})).item() == Approx(loss.item()).epsilon(1e-12));

  MSELoss mse;
  // ((1-1)^2 + (2-0)^2 + (3-0)^2) / 3 = 13 / 3
  CHECK(mse.forward(f64({1, 2, 3}, {3}), f64({1, 0, 0}, {3})).item() == Approx(13.0 / 3.0).epsilon(1e-12));

  Tensor lr = random_tensor({4, 5}, DType::F64, 121);
  Tensor tr = from_vector<int64_t>({4, 0, -100, 2}, {4});
  CHECK_GRADCHECK_MODULE(ce, (Tensors{lr, tr}),
                         [&](const std::vector<Tensor>& in) { return ce.forward(in[0], in[1]); });
  Tensor pr = random_tensor({3, 4}, DType::F64, 122), target = random_tensor({3, 4}, DType::F64, 123);
  CHECK_GRADCHECK_MODULE(mse, (Tensors{test::transposed_layout(pr), target}),
                         [&](const std::vector<Tensor>& in) { return mse.forward(in[0], in[1]); });

  REQUIRE_THROWS_WITH(ce.forward(lr, from_vector<int64_t>({0, 1, 2}, {3})),
                      "cross_entropy: targets must have shape (4,) (logits (4, 5) without the class dim), got (3,)");
  REQUIRE_THROWS_WITH(ce.forward(lr, from_vector<int64_t>({0, 1, 5, 2}, {4})),
                      "cross_entropy: target 5 at position (2,) is out of range for 5 classes (expected [0, 5) or "
                      "ignore_index -100)");
  REQUIRE_THROWS_WITH(mse.forward(pr, zeros({4, 3}, DType::F64)),
                      "mse_loss: pred shape (3, 4) differs from target shape (4, 3)");
}

// ---------------------------------------------------------------- LeNet

namespace {

// A direct-loop LeNet forward in double for one image, reading the module's parameters with at().
struct Planes {
  int64_t c, h, w;
  std::vector<double> v;
  Planes(int64_t c_, int64_t h_, int64_t w_) : c(c_), h(h_), w(w_), v(size_t(c_ * h_ * w_), 0.0) {}
  double& at(int64_t ci, int64_t y, int64_t x) { return v[size_t((ci * h + y) * w + x)]; }
};

Planes conv_tanh_ref(Planes& in, const Conv2d& conv) {
  const int64_t k = conv.kernel_size;
  Planes out(conv.out_channels, in.h - k + 1, in.w - k + 1);
  for (int64_t o = 0; o < out.c; ++o)
    for (int64_t y = 0; y < out.h; ++y)
      for (int64_t x = 0; x < out.w; ++x) {
        double acc = conv.bias.at({o});
        for (int64_t c = 0; c < in.c; ++c)
          for (int64_t i = 0; i < k; ++i)
            for (int64_t j = 0; j < k; ++j) acc += conv.weight.at({o, c, i, j}) * in.at(c, y + i, x + j);
        out.at(o, y, x) = std::tanh(acc);
      }
  return out;
}

Planes pool2_ref(Planes& in) {
  Planes out(in.c, in.h / 2, in.w / 2);
  for (int64_t c = 0; c < in.c; ++c)
    for (int64_t y = 0; y < out.h; ++y)
      for (int64_t x = 0; x < out.w; ++x)
        out.at(c, y, x) = std::max(std::max(in.at(c, 2 * y, 2 * x), in.at(c, 2 * y, 2 * x + 1)),
                                   std::max(in.at(c, 2 * y + 1, 2 * x), in.at(c, 2 * y + 1, 2 * x + 1)));
  return out;
}

std::vector<double> linear_ref(const std::vector<double>& in, const Linear& l, bool apply_tanh) {
  std::vector<double> out(size_t(l.out_features));
  for (int64_t o = 0; o < l.out_features; ++o) {
    double acc = l.bias.at({o});
    for (int64_t i = 0; i < l.in_features; ++i) acc += l.weight.at({o, i}) * in[size_t(i)];
    out[size_t(o)] = apply_tanh ? std::tanh(acc) : acc;
  }
  return out;
}

// x: (B, C, 20, 20) -> {features (B, 84), logits (B, classes)} in f64
std::pair<Tensor, Tensor> lenet_ref(const LeNet& net, const Tensor& x) {
  const int64_t B = x.size(0);
  std::vector<double> feats, logits;
  for (int64_t b = 0; b < B; ++b) {
    Planes img(x.size(1), x.size(2), x.size(3));
    for (int64_t c = 0; c < img.c; ++c)
      for (int64_t y = 0; y < img.h; ++y)
        for (int64_t xx = 0; xx < img.w; ++xx) img.at(c, y, xx) = x.at({b, c, y, xx});
    Planes h1 = conv_tanh_ref(img, *net.c1);
    Planes p1 = pool2_ref(h1);
    Planes h3 = conv_tanh_ref(p1, *net.c3);
    Planes p3 = pool2_ref(h3);
    Planes h5 = conv_tanh_ref(p3, *net.c5);
    REQUIRE(h5.h == 1);
    std::vector<double> f = linear_ref(h5.v, *net.f6, true);
    std::vector<double> o = linear_ref(f, *net.ol, false);
    feats.insert(feats.end(), f.begin(), f.end());
    logits.insert(logits.end(), o.begin(), o.end());
  }
  return {f64(feats, {B, LeNet::kF6}), f64(logits, {B, net.num_classes})};
}

}  // namespace

TEST_CASE("LeNet: parameter names and shapes", "[nn][nn-layers]") {
  LeNet net;
  std::vector<std::pair<std::string, Shape>> want = {
      {"c1.weight", {6, 1, 3, 3}},   {"c1.bias", {6}},  {"c3.weight", {16, 6, 4, 4}}, {"c3.bias", {16}},
      {"c5.weight", {120, 16, 3, 3}}, {"c5.bias", {120}}, {"f6.weight", {84, 120}},     {"f6.bias", {84}},
      {"ol.weight", {10, 84}},        {"ol.bias", {10}}};
  auto got = net.named_parameters();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK(got[i].first == want[i].first);
    CHECK(got[i].second.shape() == want[i].second);
  }
  CHECK(net.num_parameters() == 60 + 1552 + 17400 + 10164 + 850);
  LeNet mux(8, 10, 4);
  CHECK(mux.c1->weight.shape() == Shape{10, 8, 3, 3});
  CHECK(mux.c3->weight.shape() == Shape{16, 10, 4, 4});
  CHECK(mux.ol->weight.shape() == Shape{4, 84});
  // Seeded; the conv init bound is 1 / sqrt(C k k) (C3: 1 / sqrt(6 * 16)).
  Generator g1(131), g2(131);
  LeNet a(1, 6, 10, &g1), b(1, 6, 10, &g2);
  for (size_t i = 0; i < want.size(); ++i) CHECK(allclose(a.parameters()[i], b.parameters()[i], 0, 0));
  CHECK(ops::max(ops::abs(a.c3->weight)).item() <= 1.0 / std::sqrt(96.0));
  CHECK(ops::max(ops::abs(a.c3->weight)).item() > 0.9 / std::sqrt(96.0));
}

TEST_CASE("LeNet: forward and features against a direct-loop reference", "[nn][nn-layers]") {
  Generator gen(141);
  LeNet net(2, 3, 5, &gen);
  Tensor x = random_tensor({3, 2, 20, 20}, DType::F32, 142, 0.0, 1.0);
  Tensor feats = net.features(x), logits = net.forward(x);
  CHECK(feats.shape() == Shape{3, 84});
  CHECK(logits.shape() == Shape{3, 5});
  CHECK(ops::max(ops::abs(feats)).item() < 1.0);  // tanh'd
  auto [want_feats, want_logits] = lenet_ref(net, x.to(DType::F64));
  CHECK_CLOSE(feats, want_feats, 1e-5, 1e-5);
  CHECK_CLOSE(logits, want_logits, 1e-5, 1e-5);
  // The f64 module agrees with the reference to rounding.
  net.to(DType::F64);
  Tensor x64 = x.to(DType::F64);
  CHECK_CLOSE(net.forward(x64), want_logits, 1e-12, 1e-12);
  CHECK_CLOSE(net.features(x64), want_feats, 1e-12, 1e-12);
}

TEST_CASE("LeNet gradcheck (sampled coordinates) and errors", "[nn][nn-layers][grad]") {
  Generator gen(151);
  LeNet net(2, 3, 4, &gen);
  net.to(DType::F64);
  Tensor x = random_tensor({2, 2, 20, 20}, DType::F64, 152, 0.0, 1.0);
  GradcheckOptions opt;
  opt.max_coords = 40;  // per input: 11 tensors, ~440 coordinates, 2 forwards each
  auto r = test::gradcheck_module(net, {x}, [&](const std::vector<Tensor>& in) { return net.forward(in[0]); }, opt);
  INFO(r.report());
  CHECK(r.ok);
  auto rf = test::gradcheck_module(net, {x}, [&](const std::vector<Tensor>& in) { return net.features(in[0]); }, opt);
  INFO(rf.report());
  CHECK(rf.ok);

  REQUIRE_THROWS_WITH(LeNet(1, 0), "LeNet: sizes must be positive, got in_channels=1 c1=0 num_classes=10");
  REQUIRE_THROWS_WITH(net.forward(zeros({1, 2, 28, 28}, DType::F64)), "LeNet: expected input (B, 2, 20, 20), got (1, 2, 28, 28)");
  REQUIRE_THROWS_WITH(net.features(zeros({1, 1, 20, 20}, DType::F64)), "LeNet: expected input (B, 2, 20, 20), got (1, 1, 20, 20)");
  REQUIRE_THROWS_WITH(net.forward(zeros({2, 20, 20}, DType::F64)), "LeNet: expected input (B, 2, 20, 20), got (2, 20, 20)");
}
