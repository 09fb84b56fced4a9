// test_vision_task.cpp — the vision task's shared code (tasks/common/vision_train.h): the loss formulas
// against hand computation, the sampler, the slot-wise test protocol, the config's checkpoint
// round trip, and short learning runs of MlpMux and CnnMux at N = 2 on a generated "bars" data set
// through the same train_step / evaluate_slots the binary uses.
#include <omp.h>

#include <cmath>
#include <set>

#include "nn/checkpoint.h"
#include "tasks/common/cli.h"
#include "tasks/common/vision_train.h"
#include "tensor/cpu/blas.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::tasks;

namespace {

// 20x20 u8 images of 10 classes: class c < 5 is a horizontal bar (2 px thick) at row 2 + 4c, class
// c >= 5 a vertical one at column 2 + 4(c − 5); the bar's position jitters by ±1 px and its extent
// along the bar varies; background noise in [0, 60], bar pixels in [180, 255].
ImageSplit make_bars(int64_t count, Generator& gen) {
  ImageSplit s;
  s.images.count = count;
  s.images.rows = s.images.cols = 20;
  s.images.pixels.resize(size_t(count * 400));
  for (int64_t k = 0; k < count; ++k) {
    const int c = int(gen.randint(10));
    s.labels.push_back(uint8_t(c));
    uint8_t* im = s.images.pixels.data() + k * 400;
    for (int p = 0; p < 400; ++p) im[p] = uint8_t(gen.randint(61));
    const int at = 2 + 4 * (c % 5) + int(gen.randint(3)) - 1, from = int(gen.randint(5)), to = 15 + int(gen.randint(6));
    for (int t = from; t < to; ++t) {
      for (int w = 0; w < 2; ++w) {
        const int r = c < 5 ? at + w : t, col = c < 5 ? t : at + w;
        im[r * 20 + col] = uint8_t(180 + gen.randint(76));
      }
    }
  }
  return s;
}

// Small GEMMs run faster on one BLAS thread on a loaded 2-core machine (see test_learning_cnn.cpp).
struct SingleThreadBlas {
  SingleThreadBlas() { blas::set_num_threads(1); }
  ~SingleThreadBlas() { blas::set_num_threads(omp_get_max_threads()); }
};

VisionConfig bars_config(const std::string& model, const std::string& mux, const std::string& loss) {
  VisionConfig c;
  c.model = model;
  c.n = 2;
  c.mux = mux;
  c.loss = loss;
  c.rows = c.cols = 20;
  c.crop = 0;
  c.hidden = 64;
  c.c1 = 6;
  return c;
}

// Trains `steps` steps of 32 mixed examples and returns the slot accuracies on the test split.
SlotAccuracy train_bars(const VisionConfig& cfg, nn::Optimizer* optim_in, VisionNet& net, int64_t steps,
                        const ImageSplit& train, const ImageSplit& test, Generator& gen) {
  EpochSampler sampler(train.images.count, gen);
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<int64_t> idx = sampler.next(32 * cfg.n);
    train_step(net, *optim_in, image_batch(train.images, idx, cfg.crop), label_batch(train.labels, idx));
  }
  return evaluate_slots(net, test);
}

}  // namespace

TEST_CASE("image batches crop, scale and keep the instance order", "[tasks][vision]") {
  IdxImages im;
  im.count = 2;
  im.rows = im.cols = 4;
  for (int k = 0; k < 32; ++k) im.pixels.push_back(uint8_t(k * 8));
  Tensor x = image_batch(im, {1, 0}, 1);
  REQUIRE(x.shape() == Shape{2, 1, 2, 2});
  // image 1, rows 1..2, cols 1..2: pixels 16 + {5, 6, 9, 10}, times 8, over 255
  CHECK_THAT(x.to_vector<float>(), Catch::Matchers::Approx(std::vector<float>{
                                       168 / 255.f, 176 / 255.f, 200 / 255.f, 208 / 255.f,  //
                                       40 / 255.f, 48 / 255.f, 72 / 255.f, 80 / 255.f}));
  CHECK(label_batch({3, 7, 1}, {2, 0}).to_vector<int64_t>() == std::vector<int64_t>{1, 3});
}

TEST_CASE("the sampler draws without replacement within a pass", "[tasks][vision]") {
  Generator gen(5);
  EpochSampler s(10, gen);
  std::set<int64_t> seen;
  for (int i = 0; i < 3; ++i) {
    for (int64_t k : s.next(3)) seen.insert(k);
  }
  CHECK(seen.size() == 9);                     // 9 distinct of 10
  CHECK(s.next(3).size() == 3);                // the 1 left over is skipped: a fresh permutation
  REQUIRE_THROWS_AS(s.next(11), InputError);
}

TEST_CASE("train_step's losses are the paper's sum over slots of per-slot means", "[tasks][vision]") {
  Generator gen(3);
  ImageSplit data = make_bars(8, gen);
  for (const std::string loss : {"mse", "ce"}) {
    VisionConfig cfg = bars_config("mlp", "gaussian_hadamard", loss);
    VisionNet net(cfg, &gen);
    std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5, 6, 7};  // B = 4 mixed examples, N = 2
    Tensor x = image_batch(data.images, idx, 0), y = label_batch(data.labels, idx);
    std::vector<float> z;
    {
      NoGradGuard no_grad;
      z = net.logits(x).to_vector<float>();
    }
    nn::SGD frozen(net.module(), 0.0);
    StepResult r = train_step(net, frozen, x, y);
    // By hand: slot i's mean over its 4 rows (x 10 classes for mse), summed over the 2 slots.
    double want = 0;
    for (int64_t i = 0; i < 2; ++i) {
      double slot = 0;
      for (int64_t b = 0; b < 4; ++b) {
        const int64_t row = b * 2 + i, label = data.labels[size_t(row)];
        const float* zr = z.data() + row * 10;
        if (loss == "mse") {
          for (int c = 0; c < 10; ++c) slot += 0.5 * std::pow((c == label ? 1.0 : -1.0) - std::tanh(zr[c]), 2) / 40.0;
        } else {
          double m = zr[0], sum = 0;
          for (int c = 0; c < 10; ++c) m = std::max(m, double(zr[c]));
          for (int c = 0; c < 10; ++c) sum += std::exp(zr[c] - m);
          slot += (m + std::log(sum) - zr[label]) / 4.0;
        }
      }
      want += slot;
    }
    CHECK(r.loss == Approx(want).epsilon(1e-5));
    CHECK(r.count == 8);
  }
}

TEST_CASE("evaluate_slots gives slot i the i-th contiguous block of the test split", "[tasks][vision]") {
  // A test split whose labels are the block index: an untrained net's accuracy is whatever it is,
  // so the check is on the protocol through an MLP forced to predict class 0 (zero weights, cls bias
  // 1 on class 0): slot i is right exactly when block i is labelled 0.
  ImageSplit split;
  split.images.count = 7;
  split.images.rows = split.images.cols = 2;
  split.images.pixels.assign(28, 10);
  split.labels = {0, 0, 0, 1, 1, 1, 0};  // N = 2: blocks {0, 1, 2} and {3, 4, 5}; image 6 is left out
  VisionConfig cfg;
  cfg.model = "mlp";
  cfg.n = 2;
  cfg.mux = "gaussian_hadamard";
  cfg.rows = cfg.cols = 2;
  cfg.crop = 0;
  cfg.hidden = 4;
  VisionNet net(cfg);
  NoGradGuard no_grad;
  for (auto& p : net.module().named_parameters()) p.second.copy_(zeros(p.second.shape()));
  std::vector<float> bias(10, 0.0f);
  bias[0] = 1.0f;
  net.mlp->cls->bias.copy_(from_vector<float>(bias));
  SlotAccuracy a = evaluate_slots(net, split, 2);
  CHECK(a.per_slot_images == 3);
  CHECK(a.per_slot == std::vector<double>{1.0, 0.0});
  CHECK(a.mean == 0.5);
}

TEST_CASE("the vision config round-trips through checkpoint metadata and rejects bad values", "[tasks][vision]") {
  VisionConfig c = bars_config("cnn", "nonlinear_expand", "mse");
  c.n = 4;
  c.expand = 5;
  VisionConfig d = VisionConfig::from_metadata(c.to_metadata());
  CHECK(d.to_metadata() == c.to_metadata());
  nn::Metadata m = c.to_metadata();
  m.erase("vision.expand");
  REQUIRE_THROWS_WITH(VisionConfig::from_metadata(m),
                      "checkpoint metadata: missing 'vision.expand' (not a vision checkpoint?)");
  m = c.to_metadata();
  m["vision.n"] = "four";
  REQUIRE_THROWS_WITH(VisionConfig::from_metadata(m), "checkpoint metadata: 'vision.n' should be an integer, got 'four'");
  VisionConfig bad = c;
  bad.mux = "gaussian_hadamard";
  REQUIRE_THROWS_WITH(bad.validate(), "--mux: the cnn takes none, gaussian, learnable, nonlinear, nonlinear_expand or "
                                      "ortho, got 'gaussian_hadamard'");
  bad = c;
  bad.rows = bad.cols = 28;
  REQUIRE_THROWS_WITH(bad.validate(), "--crop: the cnn needs 20x20 inputs; 28x28 images cropped by 0 give 28x28");
  bad = bars_config("mlp", "ortho", "ce");
  REQUIRE_THROWS_WITH(bad.validate(), "--mux: the mlp takes none or gaussian_hadamard, got 'ortho'");
  bad = bars_config("mlp", "none", "ce");
  REQUIRE_THROWS_WITH(bad.validate(), "--mux none needs --n 1, got 2");
}

TEST_CASE("MlpMux and CnnMux at N = 2 learn generated bars well above chance", "[tasks][vision][learning]") {
  SingleThreadBlas single_thread_blas;
  Generator gen(11);
  const ImageSplit train = make_bars(2048, gen), test = make_bars(512, gen);
  // ~1.5 s on an idle core (6 s measured with the 2 cores at load 7); time is not checked.

  SECTION("mlp, gaussian Hadamard keys, cross-entropy, AdamW") {
    VisionConfig cfg = bars_config("mlp", "gaussian_hadamard", "ce");
    VisionNet net(cfg, &gen);
    net.module().pack_parameters();
    nn::AdamW optim(net.module(), 1e-3);
    SlotAccuracy a = train_bars(cfg, &optim, net, 200, train, test, gen);
    INFO("per-slot " << a.per_slot[0] << " " << a.per_slot[1]);
    CHECK(a.per_slot[0] > 0.8);  // chance 0.1
    CHECK(a.per_slot[1] > 0.8);
  }
  // The cheap gaussian mux and cross-entropy: the paper's nonlinear_expand + MSE recipe sits on a
  // plateau for its first ~1000 steps on MNIST (measured), too long for a unit test; the MSE formula
  // itself is checked above.
  SECTION("cnn, gaussian mux, cross-entropy, SGD 0.1") {
    VisionConfig cfg = bars_config("cnn", "gaussian", "ce");
    VisionNet net(cfg, &gen);
    net.module().pack_parameters();
    nn::SGD optim(net.module(), 0.1);
    SlotAccuracy a = train_bars(cfg, &optim, net, 150, train, test, gen);
    INFO("per-slot " << a.per_slot[0] << " " << a.per_slot[1]);
    CHECK(a.per_slot[0] > 0.6);
    CHECK(a.per_slot[1] > 0.6);
  }
}

TEST_CASE("a sweep's checkpoints get _n<N> before the extension", "[tasks][vision]") {
  CHECK(with_n_suffix("runs/m.safetensors", 4, true) == "runs/m_n4.safetensors");
  CHECK(with_n_suffix("runs/m", 2, true) == "runs/m_n2");
  CHECK(with_n_suffix("runs/m.safetensors", 4, false) == "runs/m.safetensors");
}
