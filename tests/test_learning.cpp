// test_learning.cpp — end to end: a 2-layer MLP written with the differentiable functions and plain
// SGD learns two interleaved spirals (a problem no linear model separates).
#include <cmath>

#include "autograd/functions.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;

TEST_CASE("a 2-layer MLP with plain SGD learns two interleaved spirals", "[grad][learning]") {
  // Two spirals of 1.5 turns each, the second rotated by pi; slight noise. 200 points per class.
  const int64_t per_class = 200, n = 2 * per_class;
  Generator gen(2024);
  std::vector<float> xy;
  std::vector<int64_t> labels;
  for (int64_t k = 0; k < 2; ++k) {
    for (int64_t i = 0; i < per_class; ++i) {
      double t = 0.15 + 0.85 * double(i) / double(per_class);
      double angle = 3.0 * M_PI * t + double(k) * M_PI;
      xy.push_back(float(t * std::cos(angle) + 0.02 * (gen.uniform() - 0.5)));
      xy.push_back(float(t * std::sin(angle) + 0.02 * (gen.uniform() - 0.5)));
      labels.push_back(k);
    }
  }
  Tensor x = from_vector<float>(xy, {n, 2});
  Tensor y = from_vector<int64_t>(labels, {n});

  const int64_t hidden = 64;
  // Wide first-layer weights and random biases spread the tanh units' boundaries over the plane (with
  // zero biases every boundary would pass through the origin).
  Tensor w1 = randn({hidden, 2}, DType::F32, &gen, 0.0, 4.0), b1 = randn({hidden}, DType::F32, &gen, 0.0, 2.0);
  Tensor w2 = randn({2, hidden}, DType::F32, &gen, 0.0, 1.0 / std::sqrt(double(hidden))), b2 = zeros({2});
  std::vector<Tensor> params = {w1, b1, w2, b2};
  for (const Tensor& p : params) p.requires_grad_();

  const double lr = 1.0;
  double accuracy = 0, loss_value = 0;
  int steps = 0;
  for (steps = 1; steps <= 600; ++steps) {
    Tensor logits = linear(tanh(linear(x, w1, b1)), w2, b2);
    Tensor loss = cross_entropy(logits, y);
    zero_grad(params);
    loss.backward();
    {
      NoGradGuard no_grad;
      for (const Tensor& p : params) ops::binary_(BinaryOp::Sub, p, ops::mul(p.grad(), lr));
    }
    loss_value = loss.item();
    Tensor correct = ops::eq(ops::argmax(logits, -1), y);
    accuracy = ops::sum(correct).item() / double(n);
    if (accuracy >= 0.97) break;
  }
  INFO("stopped after " << steps << " steps: loss " << loss_value << ", training accuracy " << accuracy);
  CHECK(accuracy >= 0.95);
  CHECK(steps <= 600);
}
