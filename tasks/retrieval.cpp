// retrieval.cpp — the DataMUX retrieval warm-up (PAPER.md §1.5): train T-MUX to recover, from the
// multiplexed representation, the token each instance had at each position.
//
// By default the N instances are synthetic token sequences (uniform over --vocab), so no data is
// needed; --data sst2 uses the SST-2 training sentences (word-level vocabulary built from the training
// split, saved with the checkpoint) and writes the warm-up checkpoint that the sst2/ner tasks start
// from. Each step samples, per mixed sequence and position, the instance to query (loss = mean
// cross-entropy over the queried tokens). Evaluation queries EVERY instance at every position of
// held-out sequences and reports accuracy overall and per instance slot, the median time of a
// training step (forward, backward, clip, AdamW and the step's metrics, read on the host, so the
// device has finished), then inference throughput.
//
//   build/retrieval                      # the default of `make run`: N = 5, synthetic, stops at 99%
//   build/retrieval --n 2,5,10,20        # a sweep: one row per N
//   build/retrieval --data sst2 --save runs/warmup_sst2.safetensors
//   build/retrieval --device cuda --n 10 --vocab 5000 --len 64 --d 256 --ff 1024 --layers 4 --batch 8
//       --steps 300 --target 0 --eval-every 1000   # step time of the ../shared/bench T-MUX config on a GPU
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>

#include "mux/tmux.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tasks/common/cli.h"
#include "tasks/common/metrics.h"
#include "tasks/common/progress.h"
#include "tasks/common/text_data.h"
#include "tasks/common/tmux_flags.h"
#include "tensor/device.h"
#include "tensor/ops.h"

using namespace muxnet;
using muxnet::tasks::InputError;

namespace {

struct Flags {
  std::string n = "5";
  int64_t vocab = 100, len = 16;
  tasks::TMuxArchFlags arch;  // d 128, 4 heads, ff 512, 2 layers, dropout 0, gaussian_hadamard norm 20, index
  bool learned_keys = false;
  int64_t batch = 32, steps = 3000, warmup = 100, eval_every = 100, eval_size = 512, throughput_batch = 32;
  double lr = 3e-3, weight_decay = 0.01, clip = 1.0, target = 0.995;
  uint64_t seed = 0;
  int threads = 0;
  tasks::DeviceFlags device;
  std::string save, load, data = "synthetic", data_dir, runs = "runs";
  int64_t min_count = 1, max_vocab = 20000;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The instance sequences training and evaluation draw from.
struct Source {
  bool synthetic = true;
  int64_t vocab = 0, len = 0;
  std::vector<std::vector<int64_t>> train, heldout;  // sst2: encoded sentences
  tasks::Vocabulary words;

  // rows sequences of length len, as (rows, len) i64.
  Tensor batch(int64_t rows, Generator& gen, bool from_heldout, int64_t first = -1) const {
    if (synthetic) return randint(0, vocab, {rows, len}, DType::I64, &gen);
    const auto& pool = from_heldout ? heldout : train;
    std::vector<int64_t> ids;
    for (int64_t r = 0; r < rows; ++r) {
      size_t k = first >= 0 ? size_t(first + r) % pool.size() : size_t(gen.randint(pool.size()));
      ids.insert(ids.end(), pool[k].begin(), pool[k].end());
    }
    return from_vector<int64_t>(ids, {rows, len});
  }
};

struct Eval {
  double accuracy = 0;
  std::vector<double> per_slot;
  int64_t tokens = 0;
};

// Queries every instance at every position of `rows` held-out mixed sequences.
Eval evaluate(const mux::TMux& model, const Source& src, int64_t mixed_rows, uint64_t seed) {
  const int64_t N = model.config.n;
  Generator gen(seed);
  Tensor ids = src.batch(mixed_rows * N, gen, true, 0);  // on the host: read below
  std::vector<int64_t> pred = model.retrieve_all(ids.to(tasks::module_device(model))).to_vector<int64_t>();
  std::vector<int64_t> want = ids.to_vector<int64_t>();
  std::vector<int64_t> correct(size_t(N), 0), total(size_t(N), 0);
  const int64_t L = model.config.max_len;
  for (size_t k = 0; k < want.size(); ++k) {
    int64_t row = int64_t(k) / L, t = int64_t(k) % L;
    if (want[k] == model.config.pad_id) continue;
    if (model.config.demux == mux::DemuxKind::Mlp && t == 0) continue;  // overwritten by CLS
    int64_t slot = row % N;
    total[size_t(slot)]++;
    correct[size_t(slot)] += pred[k] == want[k];
  }
  Eval e;
  int64_t c = 0;
  for (int64_t i = 0; i < N; ++i) {
    e.per_slot.push_back(total[size_t(i)] ? double(correct[size_t(i)]) / double(total[size_t(i)]) : 0.0);
    c += correct[size_t(i)];
    e.tokens += total[size_t(i)];
  }
  e.accuracy = e.tokens ? double(c) / double(e.tokens) : 0.0;
  return e;
}

// Inference instances/s: the retrieval forward (all instances, all positions) on a fixed batch.
// On a GPU the clock is read after device_synchronize: kernels run asynchronously.
double throughput(mux::TMux& model, const Source& src, int64_t mixed_rows) {
  Generator gen(99);
  const Device device = tasks::module_device(model);
  Tensor ids = src.batch(mixed_rows * model.config.n, gen, true, 0).to(device);
  model.eval();
  model.retrieve_all(ids);  // warm-up: fills the allocator cache
  device_synchronize(device);
  std::vector<double> t;
  for (int i = 0; i < 5; ++i) {
    double t0 = now_s();
    model.retrieve_all(ids);
    device_synchronize(device);
    t.push_back(now_s() - t0);
  }
  model.train();
  std::sort(t.begin(), t.end());
  return double(mixed_rows * model.config.n) / t[2];
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"retrieval: the DataMUX retrieval warm-up — train T-MUX to recover each multiplexed instance's tokens",
               "retrieval"};
  app.add_option("--n", f.n, "instances per mixed sequence; a list (2,5,10) runs a sweep")->capture_default_str();
  app.add_option("--data", f.data, "synthetic | sst2")->check(CLI::IsMember({"synthetic", "sst2"}))->capture_default_str();
  app.add_option("--data-dir", f.data_dir, "data directory (default: $MUXNET_DATA, else ./data)");
  app.add_option("--vocab", f.vocab, "synthetic vocabulary size")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--len", f.len, "instance length L (tokens)")->check(tasks::kPositive)->capture_default_str();
  tasks::add_tmux_arch_flags(app, f.arch);
  app.add_flag("--learned-keys", f.learned_keys, "train the multiplexing keys");
  app.add_option("--batch", f.batch, "mixed sequences per step (B·N instances)")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--steps", f.steps, "maximum training steps")->check(tasks::kNonNegative)->capture_default_str();
  app.add_option("--lr", f.lr, "AdamW peak learning rate")->capture_default_str();
  app.add_option("--warmup", f.warmup, "linear warmup steps (then linear decay)")->capture_default_str();
  app.add_option("--weight-decay", f.weight_decay, "AdamW weight decay")->capture_default_str();
  app.add_option("--clip", f.clip, "global gradient-norm clip (0: off)")->capture_default_str();
  app.add_option("--eval-every", f.eval_every, "held-out evaluation interval (steps)")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--eval-size", f.eval_size, "held-out mixed sequences")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--target", f.target, "stop once held-out accuracy reaches this (0: run all steps)")->capture_default_str();
  app.add_option("--throughput-batch", f.throughput_batch, "mixed sequences per inference pass")->capture_default_str();
  app.add_option("--min-count", f.min_count, "sst2: minimum word count for the vocabulary")->capture_default_str();
  app.add_option("--max-vocab", f.max_vocab, "sst2: maximum vocabulary size")->capture_default_str();
  app.add_option("--seed", f.seed, "seed of the weights, data and queries")->capture_default_str();
  app.add_option("--threads", f.threads, "threads (default: all cores)");
  tasks::add_device_flags(app, f.device);
  app.add_option("--save", f.save, "write a checkpoint (a sweep adds _n<N> before the extension)");
  app.add_option("--load", f.load, "start from a checkpoint (its architecture wins over the flags)");
  app.add_option("--runs", f.runs, "directory for metrics (runs/retrieval.jsonl); empty: none")->capture_default_str();

  return tasks::run_task(app, argc, argv, [&] {
    if (f.threads > 0) set_num_threads(f.threads);
    const Device device = tasks::resolve_device(f.device);
    std::vector<int64_t> ns = tasks::parse_n_list(f.n);
    if (!f.load.empty() && ns.size() > 1) throw InputError("--load works with a single --n");

    // ---- data
    Source src;
    src.len = f.len;
    if (f.data == "sst2") {
      std::string dir = tasks::data_dir(f.data_dir);
      tasks::LabeledSentences train = tasks::read_sst2(dir + "/sst2/train.tsv");
      tasks::LabeledSentences dev = tasks::read_sst2(dir + "/sst2/dev.tsv");
      src.synthetic = false;
      // A checkpoint's own vocabulary wins: token ids must mean what they meant when it was trained.
      nn::Metadata meta = f.load.empty() ? nn::Metadata() : nn::read_safetensors(f.load).metadata;
      src.words = meta.count("vocab.json") ? tasks::Vocabulary::from_json(meta.at("vocab.json"))
                                           : tasks::Vocabulary::build(train.tokens, f.min_count, f.max_vocab);
      for (auto& s : train.tokens) src.train.push_back(src.words.encode(s, f.len));
      for (auto& s : dev.tokens) src.heldout.push_back(src.words.encode(s, f.len));
      src.vocab = src.words.size();
      std::printf("sst2: %zu train / %zu dev sentences, vocabulary %lld words, length %lld\n", src.train.size(),
                  src.heldout.size(), (long long)src.vocab, (long long)f.len);
    } else {
      src.vocab = f.vocab;
    }
    std::printf("retrieval: device %s, %d threads\n", tasks::device_banner(device).c_str(), get_num_threads());

    std::printf("%-4s %7s %9s %8s %10s %10s  %-s\n", "N", "steps", "train s", "step ms", "held-out", "inst/s",
                "per-slot accuracy");
    for (int64_t n : ns) {
      // ---- model
      mux::TMuxConfig cfg;
      cfg.vocab = src.vocab;
      cfg.max_len = f.len;
      cfg.n = n;
      tasks::apply_tmux_arch(f.arch, cfg);
      cfg.learned_keys = f.learned_keys;
      cfg.pad_id = src.synthetic ? -1 : tasks::Vocabulary::kPad;
      nn::Metadata loaded_meta;
      if (!f.load.empty()) {
        loaded_meta = nn::read_safetensors(f.load).metadata;
        cfg = mux::TMuxConfig::from_metadata(loaded_meta);
        if (cfg.vocab != src.vocab || cfg.max_len != f.len) {
          throw InputError(f.load + ": checkpoint has vocab " + std::to_string(cfg.vocab) + " and length " +
                           std::to_string(cfg.max_len) + ", the data has " + std::to_string(src.vocab) + " and " +
                           std::to_string(f.len));
        }
      }
      Generator init_gen(f.seed), data_gen(f.seed + 1), query_gen(f.seed + 2);
      mux::TMux model(cfg, &init_gen);
      if (!f.load.empty()) nn::load_checkpoint(f.load, model);
      model.to(device);  // built and loaded on the cpu; the optimizer comes after the move
      model.pack_parameters();
      nn::AdamW optim(model, f.lr, 0.9, 0.999, 1e-8, f.weight_decay);
      nn::LRSchedule schedule = nn::LRSchedule::linear_warmup(f.lr, f.warmup, std::max<int64_t>(f.steps, 1));

      // ---- train
      tasks::ProgressBar bar(f.steps, "N=" + std::to_string(n), std::max<int64_t>(1, f.steps / 20));
      double t0 = now_s(), acc_ema = 0, loss_ema = 0;
      int64_t step = 0;
      Eval last;
      std::vector<double> step_s;  // each step alone: its metrics are read on the host, so it has finished
      for (step = 1; step <= f.steps; ++step) {
        const double s0 = now_s();
        schedule.apply(optim);
        Tensor ids = src.batch(f.batch * n, data_gen, false).to(device);
        mux::TMuxOutput out = model.forward(ids, Tensor(), &query_gen);
        optim.zero_grad();
        out.loss.backward();
        if (f.clip > 0) nn::clip_grad_norm(model, f.clip);
        optim.step();
        {  // accuracy on this step's queried tokens
          NoGradGuard no_grad;
          Tensor valid = ops::ne(out.retrieval_targets, scalar_tensor(-100, DType::I64).to(device));
          Tensor hit = ops::mul(ops::eq(ops::argmax(out.retrieval_logits, -1), out.retrieval_targets), valid);
          double acc = ops::sum(hit).item() / std::max(1.0, ops::sum(valid).item());
          const double loss = out.loss.item();
          acc_ema = step == 1 ? acc : 0.95 * acc_ema + 0.05 * acc;
          loss_ema = step == 1 ? loss : 0.95 * loss_ema + 0.05 * loss;
        }
        step_s.push_back(now_s() - s0);
        bar.update(step, loss_ema, acc_ema);
        if (step % f.eval_every == 0 || step == f.steps) {
          model.eval();
          last = evaluate(model, src, std::min<int64_t>(f.eval_size, 128), f.seed + 1000);
          model.train();
          tasks::append_metrics(f.runs, "retrieval", {{"event", "eval"}, {"n", n}, {"step", step},
                                                      {"loss", loss_ema}, {"train_acc", acc_ema},
                                                      {"heldout_acc", last.accuracy}, {"data", f.data}});
          if (f.target > 0 && last.accuracy >= f.target) break;
        }
      }
      bar.finish();
      const double train_s = now_s() - t0;
      const int64_t steps_run = std::min(step, f.steps);
      double step_med = 0;  // the median: robust to the first steps, which fill the allocator cache
      if (!step_s.empty()) {
        std::sort(step_s.begin(), step_s.end());
        step_med = step_s[step_s.size() / 2];
      }

      // ---- evaluate on the full held-out set, then throughput
      model.eval();
      Eval e = evaluate(model, src, f.eval_size, f.seed + 1000);
      double ips = throughput(model, src, f.throughput_batch);
      std::string slots;
      for (double a : e.per_slot) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%s%.3f", slots.empty() ? "" : " ", a);
        slots += buf;
      }
      std::printf("%-4lld %7lld %9.1f %8.2f %9.2f%% %10.0f  %s\n", (long long)n, (long long)steps_run, train_s,
                  step_med * 1e3, 100.0 * e.accuracy, ips, slots.c_str());
      std::fflush(stdout);
      nlohmann::json cfg_json;
      for (auto& [k, v] : cfg.to_metadata()) cfg_json[k] = v;
      tasks::append_metrics(f.runs, "retrieval", {{"event", "result"}, {"n", n}, {"steps", steps_run},
                                                  {"train_s", train_s}, {"step_s_med", step_med},
                                                  {"batch", f.batch}, {"heldout_acc", e.accuracy},
                                                  {"per_slot_acc", e.per_slot}, {"heldout_tokens", e.tokens},
                                                  {"instances_per_s", ips}, {"threads", get_num_threads()},
                                                  {"device", device_name(device)},
                                                  {"device_name", device_describe(device)}, {"tf32", allow_tf32()},
                                                  {"data", f.data}, {"config", cfg_json}});
      if (!f.save.empty()) {
        nn::Metadata meta = cfg.to_metadata();
        meta["task"] = "retrieval";
        meta["data"] = f.data;
        if (!src.synthetic) meta["vocab.json"] = src.words.to_json();
        std::string path = tasks::with_n_suffix(f.save, n, ns.size() > 1);
        nn::save_checkpoint(path, model, meta);
        std::printf("saved %s\n", path.c_str());
      }
    }
  });
}
