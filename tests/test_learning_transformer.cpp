// test_learning_transformer.cpp — end to end: a tiny Transformer classifier (Embedding +
// PositionalEmbedding + 2-layer TransformerEncoder + mean-pool + Linear) learns whether a sequence of
// 8 tokens from a vocabulary of 16 is sorted (non-decreasing), to >= 95% accuracy on held-out
// sequences never seen in training.
//
// The task needs attention: a position must compare its token with its neighbour's. Half the examples
// are sorted; the unsorted half are mostly NEAR-sorted (a sorted sequence with one adjacent pair
// swapped, or one token replaced so that exactly one place breaks the order), so counting tokens or
// looking at the ends does not solve it. Training batches are drawn fresh from a seeded generator,
// skipping the held-out sequences. The optimiser is a minimal Adam written inline over the packed
// parameter arena (no optimiser module exists yet).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_set>

#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::nn;

namespace {

constexpr int64_t kLen = 8, kVocab = 16;

struct SortedClassifier : Module {
  std::shared_ptr<Embedding> tok;
  std::shared_ptr<PositionalEmbedding> pos;
  std::shared_ptr<TransformerEncoder> encoder;
  std::shared_ptr<Linear> head;
  SortedClassifier(const TransformerEncoderLayerOptions& o, int64_t layers, Generator* gen) {
    tok = register_module("tok", std::make_shared<Embedding>(kVocab, o.d_model, -1, gen));
    pos = register_module("pos", std::make_shared<PositionalEmbedding>(kLen, o.d_model, gen));
    encoder = register_module("encoder", std::make_shared<TransformerEncoder>(o, layers, gen, /*final_norm=*/true));
    head = register_module("head", std::make_shared<Linear>(o.d_model, 2, true, gen));
  }
  // idx: (B, T) i64 -> logits (B, 2)
  Tensor forward(const Tensor& idx) const {
    return head->forward(mean(encoder->forward(pos->forward(tok->forward(idx))), {1}));
  }
};

using Seq = std::vector<int64_t>;

bool is_sorted_seq(const Seq& s) { return std::is_sorted(s.begin(), s.end()); }

uint64_t key_of(const Seq& s) {
  uint64_t k = 0;
  for (int64_t t : s) k = (k << 4) | uint64_t(t);
  return k;
}

Seq sorted_seq(Generator& g) {
  Seq s(static_cast<size_t>(kLen), 0);
  for (auto& t : s) t = int64_t(g.randint(kVocab));
  std::sort(s.begin(), s.end());
  return s;
}

// An unsorted sequence: 40% one adjacent swap of a sorted one, 30% one token of a sorted one replaced,
// 30% uniformly random; retried until it is really unsorted.
Seq unsorted_seq(Generator& g) {
  while (true) {
    Seq s = sorted_seq(g);
    const double kind = g.uniform();
    if (kind < 0.4) {
      const size_t i = size_t(g.randint(kLen - 1));
      std::swap(s[i], s[i + 1]);
    } else if (kind < 0.7) {
      s[size_t(g.randint(kLen))] = int64_t(g.randint(kVocab));
    } else {
      for (auto& t : s) t = int64_t(g.randint(kVocab));
    }
    if (!is_sorted_seq(s)) return s;
  }
}

// n examples, alternating sorted / unsorted; skips sequences in `exclude` and adds the ones made to
// `made` when given.
void make_batch(Generator& g, int64_t n, const std::unordered_set<uint64_t>& exclude, Tensor* idx, Tensor* y,
                std::unordered_set<uint64_t>* made = nullptr) {
  std::vector<int64_t> tokens, labels;
  for (int64_t i = 0; i < n; ++i) {
    const bool positive = i % 2 == 0;
    Seq s;
    do {
      s = positive ? sorted_seq(g) : unsorted_seq(g);
    } while (exclude.count(key_of(s)));
    if (made) made->insert(key_of(s));
    tokens.insert(tokens.end(), s.begin(), s.end());
    labels.push_back(positive ? 1 : 0);
  }
  *idx = from_vector<int64_t>(tokens, {n, kLen});
  *y = from_vector<int64_t>(labels, {n});
}

double accuracy(const SortedClassifier& model, const Tensor& idx, const Tensor& y) {
  NoGradGuard no_grad;
  Tensor correct = ops::eq(ops::argmax(model.forward(idx), -1), y);
  return ops::sum(correct).item() / double(y.numel());
}

}  // namespace

TEST_CASE("a tiny Transformer learns whether a sequence is sorted", "[nn][nn-transformer][learning]") {
  const auto start = std::chrono::steady_clock::now();
  Generator data_gen(2025), init_gen(7), dropout_gen(3);

  // Held-out sets, half sorted, never training examples: 500 to decide when to stop, 1000 to test.
  Tensor val_idx, val_y, test_idx, test_y;
  std::unordered_set<uint64_t> held_out;
  make_batch(data_gen, 500, {}, &val_idx, &val_y, &held_out);
  make_batch(data_gen, 1000, {}, &test_idx, &test_y, &held_out);
  // And the hardest negatives alone: 300 sorted sequences with one adjacent pair swapped (the only
  // descent in the sequence), also held out.
  std::vector<int64_t> swapped_tokens;
  for (int i = 0; i < 300; ++i) {
    Seq s;
    do {
      s = sorted_seq(data_gen);
      const size_t j = size_t(data_gen.randint(kLen - 1));
      std::swap(s[j], s[j + 1]);
    } while (is_sorted_seq(s));
    held_out.insert(key_of(s));
    swapped_tokens.insert(swapped_tokens.end(), s.begin(), s.end());
  }
  Tensor swapped_idx = from_vector<int64_t>(swapped_tokens, {300, kLen});
  Tensor swapped_y = zeros({300}, DType::I64);

  TransformerEncoderLayerOptions o;
  o.d_model = 32;
  o.heads = 4;
  o.dim_feedforward = 64;
  o.dropout = 0.1;
  o.norm_first = true;
  SortedClassifier model(o, 2, &init_gen);
  model.encoder->set_dropout_generator(&dropout_gen);
  model.pack_parameters();
  const Tensor& params = model.param_arena();
  const Tensor& grads = model.grad_arena();

  // Adam (Kingma & Ba) over the one parameter arena: m and v are arenas of the same size.
  const double lr = 3e-3, beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  Tensor m = zeros_like(params), v = zeros_like(params);
  auto adam_step = [&](int t) {
    NoGradGuard no_grad;
    ops::binary_(BinaryOp::Mul, m, scalar_tensor(beta1));
    ops::add_(m, ops::mul(grads, 1.0 - beta1));
    ops::binary_(BinaryOp::Mul, v, scalar_tensor(beta2));
    ops::add_(v, ops::mul(ops::mul(grads, grads), 1.0 - beta2));
    const double bc1 = 1.0 - std::pow(beta1, t), bc2 = 1.0 - std::pow(beta2, t);
    // p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
    Tensor denom = ops::add(ops::sqrt(ops::mul(v, 1.0 / bc2)), adam_eps);
    ops::binary_(BinaryOp::Sub, params, ops::div(ops::mul(m, lr / bc1), denom));
  };

  const int64_t batch = 64;
  const int max_steps = 3000;
  double val_acc = 0, loss_value = 0;
  int steps = 0, good_evals = 0;
  for (steps = 1; steps <= max_steps; ++steps) {
    model.train();
    Tensor idx, y;
    make_batch(data_gen, batch, held_out, &idx, &y);
    Tensor loss = cross_entropy(model.forward(idx), y);
    model.zero_grad();
    loss.backward();
    adam_step(steps);
    loss_value = loss.item();
    if (steps % 50 == 0) {
      model.eval();
      val_acc = accuracy(model, val_idx, val_y);
      good_evals = val_acc >= 0.99 ? good_evals + 1 : 0;
      if (good_evals == 2) break;  // two evaluations in a row: not a lucky fluctuation
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  model.eval();
  const double acc = accuracy(model, test_idx, test_y);
  const double swapped_acc = accuracy(model, swapped_idx, swapped_y);
  INFO("stopped after " << steps << " steps (" << seconds << " s): last batch loss " << loss_value
                        << ", held-out accuracy " << acc << ", on one-swap negatives " << swapped_acc);
  CHECK(acc >= 0.95);
  CHECK(swapped_acc >= 0.9);
}
