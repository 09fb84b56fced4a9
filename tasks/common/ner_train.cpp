// ner_train.cpp — NER instances, the training loop with best-on-dev selection, evaluation.
#include "tasks/common/ner_train.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>

#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tasks/common/cli.h"
#include "tensor/ops.h"

namespace muxnet::tasks {

std::string word_shape(const std::string& word) {
  int upper = 0, lower = 0, digit = 0;
  for (unsigned char c : word) {
    if (std::isdigit(c)) {
      digit++;
    } else if (std::isupper(c)) {
      upper++;
    } else if (std::islower(c) || c >= 0x80) {  // non-ASCII bytes count as lower-case letters
      lower++;
    }
  }
  if (digit) return "<unk:0>";
  if (upper + lower == 0) return "<unk:.>";
  if (upper == 0) return "<unk:a>";
  const bool first_upper = std::isupper(static_cast<unsigned char>(word[0])) != 0;
  if (lower == 0) return upper == 1 ? "<unk:Aa>" : "<unk:AA>";
  if (first_upper && upper == 1) return "<unk:Aa>";
  return "<unk:aA>";
}

Vocabulary build_ner_vocabulary(const std::vector<std::vector<std::string>>& sentences, int64_t min_count,
                                int64_t max_size) {
  std::map<std::string, int64_t> counts;
  for (const auto& s : sentences) {
    for (const auto& w : s) counts[w]++;
  }
  std::vector<std::vector<std::string>> mapped = sentences;
  for (auto& s : mapped) {
    for (auto& w : s) {
      if (counts[w] < min_count) w = word_shape(w);
    }
  }
  return Vocabulary::build(mapped, 1, max_size);
}

int64_t ner_word_id(const Vocabulary& vocab, const std::string& word) {
  const int64_t id = vocab.id(word);
  return id != Vocabulary::kUnk ? id : vocab.id(word_shape(word));
}

std::vector<std::vector<int64_t>> encode_ner_words(const Vocabulary& vocab,
                                                   const std::vector<std::vector<std::string>>& sentences) {
  std::vector<std::vector<int64_t>> out;
  out.reserve(sentences.size());
  for (const auto& s : sentences) {
    std::vector<int64_t> ids;
    ids.reserve(s.size());
    for (const auto& w : s) ids.push_back(ner_word_id(vocab, w));
    out.push_back(std::move(ids));
  }
  return out;
}

std::vector<std::vector<int64_t>> encode_ner_shapes(const Vocabulary& vocab,
                                                    const std::vector<std::vector<std::string>>& sentences) {
  std::vector<std::vector<int64_t>> out;
  out.reserve(sentences.size());
  for (const auto& s : sentences) {
    std::vector<int64_t> ids;
    ids.reserve(s.size());
    for (const auto& w : s) ids.push_back(vocab.id(word_shape(w)));
    out.push_back(std::move(ids));
  }
  return out;
}

NerInstances make_ner_instances(const std::vector<std::vector<int64_t>>& words,
                                const std::vector<std::vector<int64_t>>& tags, int64_t len, int64_t pad_id,
                                int64_t start, const std::vector<std::vector<int64_t>>& shapes) {
  MUXNET_CHECK(words.size() == tags.size(), "make_ner_instances: ", words.size(), " sentences but ", tags.size(),
               " tag lists");
  MUXNET_CHECK(shapes.empty() || shapes.size() == words.size(), "make_ner_instances: ", shapes.size(),
               " shape lists for ", words.size(), " sentences");
  MUXNET_CHECK(start >= 0 && start < len, "make_ner_instances: start ", start, " must be in [0, ", len, ")");
  NerInstances d;
  d.len = len;
  d.start = start;
  d.gold = tags;
  const int64_t room = len - start;
  for (size_t s = 0; s < words.size(); ++s) {
    const int64_t n = int64_t(words[s].size());
    MUXNET_CHECK(int64_t(tags[s].size()) == n && (shapes.empty() || int64_t(shapes[s].size()) == n),
                 "make_ner_instances: sentence ", s, " has ", n, " words, ", tags[s].size(), " tags and ",
                 shapes.empty() ? n : int64_t(shapes[s].size()), " shapes");
    for (int64_t off = 0; off < n; off += room) {
      std::vector<int64_t> ids(size_t(len), pad_id), labels(size_t(len), -100), shape(size_t(len), pad_id);
      for (int64_t t = 0; t < room && off + t < n; ++t) {
        ids[size_t(start + t)] = words[s][size_t(off + t)];
        labels[size_t(start + t)] = tags[s][size_t(off + t)];
        if (!shapes.empty()) shape[size_t(start + t)] = shapes[s][size_t(off + t)];
      }
      d.ids.insert(d.ids.end(), ids.begin(), ids.end());
      if (!shapes.empty()) d.shapes.insert(d.shapes.end(), shape.begin(), shape.end());
      d.labels.insert(d.labels.end(), labels.begin(), labels.end());
      d.sentence.push_back(int64_t(s));
      d.offset.push_back(off);
    }
  }
  return d;
}

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The rows `rows` of an (count, L) table as a (rows.size(), L) tensor.
Tensor gather_rows(const std::vector<int64_t>& table, int64_t len, const std::vector<int64_t>& rows) {
  std::vector<int64_t> out;
  out.reserve(rows.size() * size_t(len));
  for (int64_t r : rows) out.insert(out.end(), table.begin() + r * len, table.begin() + (r + 1) * len);
  return from_vector<int64_t>(out, {int64_t(rows.size()), len});
}

// Epoch-shuffled instance order: every instance once per epoch, a fresh permutation each epoch.
class Sampler {
 public:
  Sampler(int64_t count, uint64_t seed) : count_(count), gen_(seed) {}
  std::vector<int64_t> next(int64_t rows) {
    std::vector<int64_t> out;
    while (int64_t(out.size()) < rows) {
      if (cursor_ == order_.size()) shuffle();
      out.push_back(order_[cursor_++]);
    }
    return out;
  }

 private:
  void shuffle() {
    order_.resize(size_t(count_));
    for (int64_t i = 0; i < count_; ++i) order_[size_t(i)] = i;
    for (int64_t i = count_ - 1; i > 0; --i) std::swap(order_[size_t(i)], order_[gen_.randint(uint64_t(i + 1))]);
    cursor_ = 0;
  }
  int64_t count_;
  Generator gen_;
  std::vector<int64_t> order_;
  size_t cursor_ = 0;
};

// Fraction of non-ignored targets that argmax(logits) gets right.
double accuracy(const Tensor& logits, const Tensor& targets) {
  NoGradGuard no_grad;
  Tensor valid = ops::ne(targets, scalar_tensor(-100, DType::I64).to(targets.device()));
  Tensor hit = ops::mul(ops::eq(ops::argmax(logits, -1), targets), valid);
  return ops::sum(hit).item() / std::max(1.0, ops::sum(valid).item());
}

}  // namespace

NerEval evaluate_ner(mux::TMux& model, const NerInstances& data, int64_t groups) {
  MUXNET_CHECK(model.config.max_len == data.len, "evaluate_ner: model length ", model.config.max_len,
               " but instances of length ", data.len);
  model.eval();
  const int64_t N = model.config.n, L = data.len, count = data.count();
  std::vector<std::vector<int64_t>> pred(data.gold.size());
  for (size_t s = 0; s < pred.size(); ++s) pred[s].assign(data.gold[s].size(), 0);
  const int64_t total_groups = (count + N - 1) / N;
  const Device device = module_device(model);
  for (int64_t g0 = 0; g0 < total_groups; g0 += groups) {
    const int64_t g = std::min(groups, total_groups - g0);
    std::vector<int64_t> rows;
    for (int64_t r = g0 * N; r < (g0 + g) * N; ++r) rows.push_back(r % count);  // the last group wraps around
    std::vector<int64_t> p = model.predict(gather_rows(data.ids, L, rows).to(device)).to_vector<int64_t>();
    for (int64_t k = 0; k < int64_t(rows.size()); ++k) {
      const int64_t r = g0 * N + k;
      if (r >= count) break;  // padding instances: predicted, never scored
      auto& out = pred[size_t(data.sentence[size_t(r)])];
      for (int64_t t = data.start; t < L; ++t) {
        const int64_t w = data.offset[size_t(r)] + t - data.start;
        if (w >= int64_t(out.size())) break;
        out[size_t(w)] = p[size_t(k * L + t)];
      }
    }
  }
  NerScorer scorer;
  int64_t right = 0, tokens = 0;
  const auto& names = ner_tags();
  for (size_t s = 0; s < pred.size(); ++s) {
    std::vector<std::string> gold, guess;
    for (size_t t = 0; t < pred[s].size(); ++t) {
      MUXNET_CHECK(pred[s][t] >= 0 && pred[s][t] < int64_t(names.size()), "evaluate_ner: predicted class ",
                   pred[s][t], " is not a tag id");
      gold.push_back(names[size_t(data.gold[s][t])]);
      guess.push_back(names[size_t(pred[s][t])]);
      right += pred[s][t] == data.gold[s][t];
      tokens++;
    }
    scorer.add(gold, guess);
  }
  NerEval e;
  e.total = scorer.total();
  e.per_type = scorer.per_type();
  e.token_accuracy = tokens ? double(right) / double(tokens) : 0.0;
  return e;
}

NerTrainResult train_ner(mux::TMux& model, const NerInstances& train, const NerInstances& dev,
                         const NerTrainOptions& o) {
  MUXNET_CHECK(train.count() > 0, "train_ner: no training instances");
  MUXNET_CHECK(model.config.max_len == train.len, "train_ner: model length ", model.config.max_len,
               " but instances of length ", train.len);
  const int64_t rows = o.batch * model.config.n;
  Sampler sampler(train.count(), o.seed + 1);
  Generator k_gen(o.seed + 2), drop_gen(o.seed + 3);
  MUXNET_CHECK(o.word_dropout == 0 || !train.shapes.empty(), "train_ner: word dropout needs the shape ids");
  NerTrainResult res;
  const Device device = module_device(model);  // the caller moved the model; batches follow it
  const double t0 = now_s();
  auto draw = [&](Tensor& ids, Tensor& labels) {
    std::vector<int64_t> r = sampler.next(rows);
    std::vector<int64_t> w;
    w.reserve(r.size() * size_t(train.len));
    for (int64_t row : r) {
      for (int64_t t = row * train.len; t < (row + 1) * train.len; ++t) {
        const bool drop =
            o.word_dropout > 0 && train.labels[size_t(t)] != -100 && drop_gen.uniform() < o.word_dropout;
        w.push_back(drop ? train.shapes[size_t(t)] : train.ids[size_t(t)]);
      }
    }
    ids = from_vector<int64_t>(w, {int64_t(r.size()), train.len}).to(device);
    labels = gather_rows(train.labels, train.len, r).to(device);
  };
  model.train();

  // One AdamW step on loss (with clipping), and the progress bar's moving averages.
  auto optimise = [&](nn::AdamW& opt, const Tensor& loss) {
    opt.zero_grad();
    loss.backward();
    if (o.clip > 0) nn::clip_grad_norm(model, o.clip);
    opt.step();
  };
  auto smooth = [](int64_t step, double loss, double acc, double& loss_ema, double& acc_ema) {
    loss_ema = step == 1 ? loss : 0.95 * loss_ema + 0.05 * loss;
    acc_ema = step == 1 ? acc : 0.95 * acc_ema + 0.05 * acc;
  };

  // ---- retrieval warm-up: retrieval loss only, its own optimizer and schedule
  if (o.warmup_steps > 0) {
    if (!model.retrieval) throw InputError("--warmup-steps needs a retrieval head (N > 1)");
    nn::AdamW opt(model, o.lr, 0.9, 0.999, 1e-8, o.weight_decay);
    auto sched = nn::LRSchedule::linear_warmup(o.lr, std::min(o.lr_warmup, o.warmup_steps), o.warmup_steps);
    double loss_ema = 0, acc_ema = 0;
    for (int64_t step = 1; step <= o.warmup_steps; ++step) {
      sched.apply(opt);
      Tensor ids, labels;
      draw(ids, labels);
      mux::TMuxOutput out = model.forward(ids, labels, &k_gen);
      optimise(opt, out.retrieval_loss);
      smooth(step, out.retrieval_loss.item(), accuracy(out.retrieval_logits, out.retrieval_targets), loss_ema, acc_ema);
      if (o.on_step) o.on_step("warmup", step, loss_ema, acc_ema);
      res.warmup_steps_run = step;
    }
  }

  // ---- the task: best dev F1 wins
  nn::AdamW opt(model, o.lr, 0.9, 0.999, 1e-8, o.weight_decay);
  auto sched = nn::LRSchedule::linear_warmup(o.lr, o.lr_warmup, std::max<int64_t>(o.steps, 1));
  std::vector<Tensor> best;
  double loss_ema = 0, acc_ema = 0;
  res.best_dev_f1 = -1;
  const double task_t0 = now_s();
  for (int64_t step = 1; step <= o.steps; ++step) {
    sched.apply(opt);
    Tensor ids, labels;
    draw(ids, labels);
    mux::TMuxOutput out = model.forward(ids, labels, &k_gen);
    optimise(opt, out.loss);
    smooth(step, out.loss.item(), accuracy(out.task_logits, labels), loss_ema, acc_ema);
    if (o.on_step) o.on_step("task", step, loss_ema, acc_ema);
    res.steps_run = step;
    const bool out_of_time = o.max_seconds > 0 && now_s() - task_t0 > o.max_seconds;
    if (dev.count() > 0 && (step % o.eval_every == 0 || step == o.steps || out_of_time)) {
      NerEval e = evaluate_ner(model, dev);
      model.train();
      if (o.on_eval) o.on_eval(step, loss_ema, e);
      if (e.total.f1() > res.best_dev_f1) {
        res.best_dev_f1 = e.total.f1();
        res.best_step = step;
        res.best_dev = e;
        best.clear();
        for (auto& [name, t] : model.state()) best.push_back(t.clone());
      }
    }
    if (out_of_time) break;
  }
  if (best.empty() && dev.count() > 0) {  // no task step evaluated (steps = 0): score what there is
    res.best_dev = evaluate_ner(model, dev);
    res.best_dev_f1 = res.best_dev.total.f1();
  }
  if (!best.empty()) {  // put the best parameters back
    NoGradGuard no_grad;
    auto state = model.state();
    for (size_t i = 0; i < state.size(); ++i) state[i].second.copy_(best[i]);
  }
  if (res.best_dev_f1 < 0) res.best_dev_f1 = 0;
  model.eval();
  res.train_seconds = now_s() - t0;
  return res;
}

}  // namespace muxnet::tasks
