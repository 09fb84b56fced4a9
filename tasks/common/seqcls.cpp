// seqcls.cpp — T-MUX sentence classification: configuration, training loop, grouped evaluation.
#include "tasks/common/seqcls.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>

#include "nn/optim.h"
#include "nn/schedule.h"
#include "tasks/common/cli.h"
#include "tasks/common/progress.h"
#include "tensor/ops.h"

namespace muxnet::tasks {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The sentences rows[0..] as one (rows.size(), L) id tensor and their labels.
std::pair<Tensor, Tensor> gather(const SeqClsData& data, const std::vector<int64_t>& rows, int64_t len) {
  std::vector<int64_t> ids, labels;
  ids.reserve(rows.size() * size_t(len));
  for (int64_t r : rows) {
    ids.insert(ids.end(), data.ids[size_t(r)].begin(), data.ids[size_t(r)].end());
    labels.push_back(data.labels[size_t(r)]);
  }
  return {from_vector<int64_t>(ids, {int64_t(rows.size()), len}), from_vector<int64_t>(labels, {int64_t(rows.size())})};
}

void apply_task(mux::TMuxConfig& c, const SeqClsModelOptions& opt) {
  c.task = "sequence";
  c.num_classes = opt.num_classes;
  c.dropout = opt.arch.dropout;
  c.task_coeff = c.multiplex ? 1.0 - opt.retrieval_coeff : 1.0;
  c.retrieval_coeff = c.multiplex ? opt.retrieval_coeff : 0.0;
}

}  // namespace

mux::TMuxConfig seqcls_config(const SeqClsModelOptions& opt, int64_t vocab, int64_t len, int64_t n, int64_t pad_id) {
  mux::TMuxConfig c;
  c.vocab = vocab;
  c.max_len = len;
  c.n = n;
  apply_tmux_arch(opt.arch, c);
  c.multiplex = n > 1;  // N = 1: the plain classifier, no multiplexer
  c.pad_id = pad_id;
  apply_task(c, opt);
  c.validate();
  return c;
}

mux::TMuxConfig seqcls_config_from_warmup(const nn::Metadata& meta, const SeqClsModelOptions& opt) {
  mux::TMuxConfig c = mux::TMuxConfig::from_metadata(meta);
  apply_task(c, opt);
  c.validate();
  return c;
}

std::vector<int64_t> seqcls_predict(const mux::TMux& model, const SeqClsData& data, int64_t mixed_batch) {
  const int64_t N = model.config.n, L = model.config.max_len, rows = data.size();
  std::vector<int64_t> out;
  if (rows == 0) return out;
  const int64_t groups = (rows + N - 1) / N;
  const Device device = module_device(model);
  for (int64_t g0 = 0; g0 < groups; g0 += mixed_batch) {
    const int64_t g1 = std::min(groups, g0 + mixed_batch);
    std::vector<int64_t> idx;
    // Instance slot i of group g holds sentence g·N + i; past the end, a dummy (a real sentence, so
    // the mixture looks like the ones in training) whose prediction is dropped below.
    for (int64_t r = g0 * N; r < g1 * N; ++r) idx.push_back(r < rows ? r : r % rows);
    Tensor pred = model.predict(gather(data, idx, L).first.to(device));
    std::vector<int64_t> p = pred.to_vector<int64_t>();  // copies to the host
    for (int64_t k = 0; k < int64_t(p.size()) && g0 * N + k < rows; ++k) out.push_back(p[size_t(k)]);
  }
  return out;
}

double seqcls_accuracy(const mux::TMux& model, const SeqClsData& data, int64_t mixed_batch) {
  std::vector<int64_t> pred = seqcls_predict(model, data, mixed_batch);
  int64_t hit = 0;
  for (size_t k = 0; k < pred.size(); ++k) hit += pred[k] == data.labels[k];
  return pred.empty() ? 0.0 : double(hit) / double(pred.size());
}

SeqClsResult train_seqcls(mux::TMux& model, const SeqClsData& train, const SeqClsData& dev,
                          const SeqClsTrainOptions& opt) {
  const int64_t N = model.config.n, L = model.config.max_len, per_step = opt.batch * N;
  MUXNET_CHECK(train.size() >= per_step, "train_seqcls: ", train.size(), " training sentences, one step needs ",
               per_step, " (batch ", opt.batch, " x N ", N, ")");
  Generator data_gen(opt.seed + 1), query_gen(opt.seed + 2);
  const Device device = module_device(model);  // the caller moved the model; batches follow it
  model.pack_parameters();
  model.train();
  nn::AdamW optim(model, opt.lr, 0.9, 0.999, 1e-8, opt.weight_decay);
  nn::LRSchedule schedule = nn::LRSchedule::linear_warmup(opt.lr, opt.warmup, std::max<int64_t>(opt.steps, 1));

  std::vector<int64_t> order(size_t(train.size()));
  size_t cursor = order.size();  // reshuffle before the first step
  auto next_rows = [&] {
    std::vector<int64_t> rows;
    while (int64_t(rows.size()) < per_step) {
      if (cursor == order.size()) {  // a new epoch: Fisher-Yates with the data generator
        std::iota(order.begin(), order.end(), 0);
        for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[data_gen.randint(i + 1)]);
        cursor = 0;
      }
      rows.push_back(order[cursor++]);
    }
    return rows;
  };

  SeqClsResult res;
  std::unique_ptr<ProgressBar> bar;
  if (opt.progress) bar = std::make_unique<ProgressBar>(opt.steps, opt.label, std::max<int64_t>(1, opt.steps / 20));
  const double t0 = now_s();
  double eval_s = 0;  // dev evaluations are not training time
  for (int64_t step = 1; step <= opt.steps; ++step) {
    schedule.apply(optim);
    auto [host_ids, host_labels] = gather(train, next_rows(), L);
    const Tensor ids = host_ids.to(device), labels = host_labels.to(device);
    mux::TMuxOutput out = model.forward(ids, labels, &query_gen);
    optim.zero_grad();
    out.loss.backward();
    if (opt.clip > 0) nn::clip_grad_norm(model, opt.clip);
    optim.step();
    {
      NoGradGuard no_grad;
      double acc = ops::sum(ops::eq(ops::argmax(out.task_logits, -1), labels)).item() / double(per_step);
      double loss = out.loss.item();
      res.train_acc = step == 1 ? acc : 0.98 * res.train_acc + 0.02 * acc;
      res.train_loss = step == 1 ? loss : 0.98 * res.train_loss + 0.02 * loss;
    }
    if (bar) bar->update(step, res.train_loss, res.train_acc);
    if (step % opt.eval_every == 0 || step == opt.steps) {
      const double e0 = now_s();
      model.eval();
      res.dev_acc = seqcls_accuracy(model, dev);
      model.train();
      eval_s += now_s() - e0;
      if (res.best_step == 0 || res.dev_acc > res.best_dev_acc) {
        res.best_dev_acc = res.dev_acc;
        res.best_step = step;
      }
      if (opt.on_eval) {
        opt.on_eval({{"step", step}, {"loss", res.train_loss}, {"train_acc", res.train_acc}, {"dev_acc", res.dev_acc}});
      }
    }
    res.steps = step;
  }
  if (bar) bar->finish();
  res.train_s = now_s() - t0 - eval_s;
  model.eval();
  if (opt.steps == 0) {
    res.dev_acc = res.best_dev_acc = seqcls_accuracy(model, dev);
  }
  return res;
}

}  // namespace muxnet::tasks
