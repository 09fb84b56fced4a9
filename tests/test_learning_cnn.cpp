// test_learning_cnn.cpp — end to end: the LeNet CNN (nn/lenet.h) with plain minibatch SGD learns to
// tell four kinds of line segments apart in noisy 20x20 images, and generalises to held-out images.
//
// The task: each image holds one bright segment (intensity 1, length 6..10 pixels) at a random
// position — horizontal, vertical, diagonal or anti-diagonal (the class) — on Gaussian noise
// (std 0.25). Position varies, so the network must learn the orientation, not a pixel template; each
// step trains on a fresh batch and accuracy is measured on 512 held-out images.
// The update is one fused loop over the parameter arena (pack_parameters): p -= lr * grad.
#include <omp.h>

#include <chrono>
#include <vector>

#include "nn/lenet.h"
#include "nn/loss.h"
#include "tensor/cpu/blas.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::nn;

namespace {

struct Images {
  Tensor x;  // (N, 1, 20, 20) f32
  Tensor y;  // (N) i64, class in [0, 4)
};

Images make_segments(int64_t n, Generator& gen) {
  const int64_t S = LeNet::kImageSize;
  std::vector<float> pixels(size_t(n * S * S), 0.0f);
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = i % 4;
    const int64_t len = 6 + int64_t(gen.randint(5));
    // Start (r0, c0) so that every pixel of the segment lies inside the image.
    const int64_t span_r = (k == 0) ? S : S - len + 1, span_c = (k == 1) ? S : S - len + 1;
    const int64_t r0 = int64_t(gen.randint(uint64_t(span_r))), c0 = int64_t(gen.randint(uint64_t(span_c)));
    for (int64_t t = 0; t < len; ++t) {
      int64_t r = r0, c = c0;
      if (k == 0) c += t;                      // horizontal
      if (k == 1) r += t;                      // vertical
      if (k == 2) r += t, c += t;              // diagonal
      if (k == 3) r += t, c += len - 1 - t;    // anti-diagonal
      pixels[size_t((i * S + r) * S + c)] = 1.0f;
    }
    labels[size_t(i)] = k;
  }
  Tensor clean = from_vector<float>(pixels, {n, 1, S, S});
  return {ops::add(clean, randn({n, 1, S, S}, DType::F32, &gen, 0.0, 0.25)), from_vector<int64_t>(labels, {n})};
}

// NOTE: the GEMMs here are tiny (e.g. (6, 9) x (9, 324) for C1); OpenBLAS's OpenMP threads spin-wait
// between them, and on a loaded 2-core machine that made this test 10-40x slower (96 s instead of
// 2.5 s measured). It runs them on one thread and restores the default (OpenBLAS's OpenMP build uses
// omp_get_max_threads()) afterwards; OpenBLAS splits GEMMs over rows/columns, so results do not change.
struct SingleThreadBlas {
  SingleThreadBlas() { blas::set_num_threads(1); }
  ~SingleThreadBlas() { blas::set_num_threads(omp_get_max_threads()); }
};

double accuracy(const LeNet& net, const Images& data) {
  NoGradGuard no_grad;
  Tensor correct = ops::eq(ops::argmax(net.forward(data.x), -1), data.y);
  return ops::sum(correct).item() / double(data.y.numel());
}

}  // namespace

TEST_CASE("LeNet with plain SGD learns the orientation of noisy line segments", "[nn][nn-layers][learning]") {
  SingleThreadBlas single_thread_blas;
  Generator gen(2025);
  const Images held_out = make_segments(512, gen);
  LeNet net(1, 6, 4, &gen);
  net.pack_parameters();
  CrossEntropyLoss loss_fn;

  // Every step trains on a fresh batch (an endless stream of images), so held-out accuracy measures
  // what was learned about orientation rather than memorised pixels.
  const int64_t batch = 32;
  const double lr = 0.2;
  const int max_steps = 3000, eval_every = 50;
  double test_acc = 0, loss_value = 0;
  int steps = 0;
  const auto start = std::chrono::steady_clock::now();
  for (steps = 1; steps <= max_steps; ++steps) {
    const Images b = make_segments(batch, gen);
    Tensor loss = loss_fn.forward(net.forward(b.x), b.y);
    net.zero_grad();
    loss.backward();
    {
      NoGradGuard no_grad;
      ops::binary_(BinaryOp::Sub, net.param_arena(), ops::mul(net.grad_arena(), lr));
    }
    loss_value = loss.item();
    if (steps % eval_every == 0) {
      test_acc = accuracy(net, held_out);
      if (test_acc >= 0.97) break;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("stopped after " << steps << " steps of " << batch << " fresh images in " << seconds
                        << " s: last batch loss " << loss_value << ", held-out accuracy " << test_acc);
  CHECK(test_acc >= 0.95);
  CHECK(steps <= max_steps);
}
