// throughput.cpp — the DataMUX throughput protocol for T-MUX sentence classification
// (../shared/bench/RESULTS.md §8, the PyTorch peer torch_tmux.py --task cls).
//
// For each N: a T-MUX sentence classifier (index demux with the N + 1 prefix, Gaussian Hadamard mux,
// 4-layer post-LN GELU encoder, d = 256, 4 heads, FFN 1024, vocabulary 5000, C = 2) classifies B
// mixed sequences = B·N random sentences of L tokens per pass: forward + argmax under NoGradGuard.
// The plain classifier (no prefix, no mux, T = L, BERT-style head on token 0) classifies B sentences
// per pass. Each pass is timed alone; after --warmup passes, the median of --repeats passes gives
// instances/s. Printed per N: the multiplier vs the plain classifier and vs N = 1, the FLOP ceiling of
// each multiplier (tasks/common/throughput.h) and the measured fraction of it.
// The weights are random unless --load gives them: the FLOPs, not the weights, set the time.
// --device cuda: models and batches live on the GPU (built on the cpu, then moved); a pass is timed
// from its launch to device_synchronize (kernels run asynchronously), and the printed table is the
// same. The GPU wants bigger passes than the cpu default: tasks/peer/gpu_check.sh uses --batch 256.
//
//   build/throughput                                  # L = 128, N = 1,2,5,10,20,40 and plain
//   build/throughput --len 64 --threads 2             # the peer's RESULTS.md shape
//   build/throughput --n 20 --repeats 5 --save runs/thru.safetensors
//   build/throughput --device cuda --batch 256        # on a GPU
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sys/stat.h>

#include "mux/tmux.h"
#include "nn/checkpoint.h"
#include "tasks/common/cli.h"
#include "tasks/common/metrics.h"
#include "tasks/common/throughput.h"
#include "tensor/device.h"

using namespace muxnet;
using muxnet::tasks::InputError;

namespace {

struct Flags {
  std::string n = "1,2,5,10,20,40";
  bool skip_plain = false, no_reembed = false;
  int64_t len = 128, batch = 32, warmup = 3, repeats = 21;
  int64_t vocab = 5000, d = 256, heads = 4, ff = 1024, layers = 4, classes = 2;
  uint64_t seed = 0;
  int threads = 0;
  std::string save, load, runs = "runs";
  tasks::DeviceFlags device_flags;
  Device device = Device::CPU;  // resolved from device_flags
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a;
  in >> a;
  return a.empty() ? "?" : a;
}

// path + "_plain" or "_n<N>" before the extension: one checkpoint per model.
std::string model_path(const std::string& path, const std::string& tag) {
  size_t dot = path.rfind('.'), slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path + "_" + tag;
  return path.substr(0, dot) + "_" + tag + path.substr(dot);
}

struct Point {
  bool plain = false;
  int64_t n = 1, positions = 0, instances = 0;  // instances per pass
  double med = 0, min = 0, max = 0;
  int64_t predictions = 0;  // of the last pass: checked against instances
  double ips() const { return double(instances) / med; }
};

// Times `pass` (which returns the number of predictions made): warm-up, then each pass alone, up to
// device_synchronize (a GPU pass has only been queued when `pass` returns; a no-op on the cpu).
// Progress: a line per quarter of the passes with the latest pass time.
template <typename Pass>
Point time_passes(Point p, const Flags& f, const std::string& label, Pass pass) {
  const int64_t total = f.warmup + f.repeats, every = std::max<int64_t>(1, total / 4);
  std::vector<double> t;
  for (int64_t s = 0; s < total; ++s) {
    double t0 = now_s();
    p.predictions = pass(s);
    device_synchronize(f.device);
    double dt = now_s() - t0;
    if (s >= f.warmup) t.push_back(dt);
    if ((s + 1) % every == 0 || s + 1 == total) {
      std::printf("  %-6s pass %3lld/%lld %s %8.1f ms\n", label.c_str(), (long long)(s + 1), (long long)total,
                  s < f.warmup ? "(warm-up)" : "         ", dt * 1e3);
      std::fflush(stdout);
    }
  }
  std::sort(t.begin(), t.end());
  p.med = t[t.size() / 2];
  p.min = t.front();
  p.max = t.back();
  MUXNET_CHECK(p.predictions == p.instances, "throughput: a pass made ", p.predictions, " predictions for ",
               p.instances, " instances");
  return p;
}

// A pass classifies one of three fixed random batches, in turn (as the peer does). Drawn on the cpu
// (the same ids on every device), then moved to `device` before any pass is timed.
std::vector<Tensor> random_batches(int64_t rows, int64_t len, int64_t vocab, int64_t cls_id, uint64_t seed,
                                   Device device) {
  Generator gen(seed);
  std::vector<Tensor> out;
  for (int k = 0; k < 3; ++k) {
    Tensor ids = randint(0, vocab, {rows, len}, DType::I64, &gen);
    if (cls_id >= 0) ids.narrow(1, 0, 1).fill_(double(cls_id));  // plain: token 0 is CLS
    out.push_back(ids.to(device));
  }
  return out;
}

void check_loadable(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw InputError("--load: checkpoint '" + path + "' does not exist");
}

// Before anything is timed: every checkpoint --load names exists and was saved for these flags.
void check_checkpoints(const Flags& f, const std::vector<int64_t>& ns) {
  if (!f.skip_plain) {
    const std::string path = model_path(f.load, "plain");
    check_loadable(path);
    nn::Metadata meta = nn::read_safetensors(path).metadata;
    if (meta["model"] != "plain" || meta["len"] != std::to_string(f.len)) {
      throw InputError(path + ": not a plain classifier of length " + std::to_string(f.len) + " (model '" +
                       meta["model"] + "', len '" + meta["len"] + "')");
    }
  }
  for (int64_t n : ns) {
    const std::string path = model_path(f.load, "n" + std::to_string(n));
    check_loadable(path);
    mux::TMuxConfig saved = mux::TMuxConfig::from_metadata(nn::read_safetensors(path).metadata);
    if (saved.n != n || saved.max_len != f.len || saved.vocab != f.vocab) {
      throw InputError(path + ": checkpoint has N " + std::to_string(saved.n) + ", length " +
                       std::to_string(saved.max_len) + ", vocab " + std::to_string(saved.vocab) +
                       "; the flags ask for " + std::to_string(n) + ", " + std::to_string(f.len) + ", " +
                       std::to_string(f.vocab));
    }
  }
}

Point run_plain(const Flags& f, const tasks::ClsShape& shape) {
  Generator init_gen(f.seed);
  tasks::PlainClassifier model(f.vocab, shape, f.heads, &init_gen);
  const std::string path = model_path(f.load.empty() ? f.save : f.load, "plain");
  if (!f.load.empty()) nn::load_checkpoint(path, model);  // checked by check_checkpoints
  model.to(f.device);
  model.eval();
  std::vector<Tensor> data = random_batches(f.batch, f.len, f.vocab, model.cls_id(), f.seed + 1, f.device);
  Point p;
  p.plain = true;
  p.positions = f.len;
  p.instances = f.batch;
  p = time_passes(p, f, "plain", [&](int64_t s) { return model.predict(data[size_t(s % 3)]).numel(); });
  if (!f.save.empty()) {
    nn::save_checkpoint(path, model, {{"task", "throughput"}, {"model", "plain"}, {"len", std::to_string(f.len)}});
  }
  return p;
}

Point run_tmux(const Flags& f, int64_t n) {
  mux::TMuxConfig cfg;
  cfg.vocab = f.vocab;
  cfg.max_len = f.len;
  cfg.n = n;
  cfg.d_model = f.d;
  cfg.heads = f.heads;
  cfg.dim_feedforward = f.ff;
  cfg.layers = f.layers;
  cfg.dropout = 0.0;
  cfg.reembed = !f.no_reembed;
  cfg.mux = mux::MuxKind::GaussianHadamard;
  cfg.key_norm = std::sqrt(double(f.d));  // the peer's keys: unit vectors scaled by sqrt(d)
  cfg.demux = mux::DemuxKind::Index;
  cfg.task = "sequence";
  cfg.num_classes = f.classes;
  cfg.task_coeff = 1.0;
  cfg.retrieval_coeff = 0.0;  // inference: no retrieval head
  const std::string path = model_path(f.load.empty() ? f.save : f.load, "n" + std::to_string(n));
  if (!f.load.empty()) cfg = mux::TMuxConfig::from_metadata(nn::read_safetensors(path).metadata);  // checked
  Generator init_gen(f.seed);
  mux::TMux model(cfg, &init_gen);
  if (!f.load.empty()) nn::load_checkpoint(path, model);
  model.to(f.device);
  model.eval();
  std::vector<Tensor> data = random_batches(f.batch * n, f.len, f.vocab, -1, f.seed + 1, f.device);
  Point p;
  p.n = n;
  p.positions = cfg.seq_len();
  p.instances = f.batch * n;
  p = time_passes(p, f, "N=" + std::to_string(n), [&](int64_t s) { return model.predict(data[size_t(s % 3)]).numel(); });
  if (!f.save.empty()) {
    nn::Metadata meta = cfg.to_metadata();
    meta["task"] = "throughput";
    nn::save_checkpoint(path, model, meta);
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"throughput: inference instances/s of T-MUX sentence classification vs the plain classifier "
               "(the DataMUX throughput protocol, ../shared/bench/RESULTS.md §8)",
               "throughput"};
  app.add_option("--n", f.n, "instances per mixed sequence, a list")->capture_default_str();
  app.add_flag("--skip-plain", f.skip_plain, "do not time the plain classifier (no multipliers vs plain)");
  app.add_option("--len", f.len, "sentence length L (tokens); T-MUX runs T = L + N + 1 positions")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))->capture_default_str();
  app.add_option("--batch", f.batch, "mixed sequences per pass (B·N instances; plain: B sentences)")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))->capture_default_str();
  app.add_option("--warmup", f.warmup, "untimed passes first")->check(tasks::kNonNegative)->capture_default_str();
  app.add_option("--repeats", f.repeats, "timed passes (the median is reported)")
      ->check(tasks::kPositive)->capture_default_str();
  app.add_option("--vocab", f.vocab, "vocabulary size")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--d", f.d, "model width")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--heads", f.heads, "attention heads")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--ff", f.ff, "feed-forward width")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--layers", f.layers, "encoder layers")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--classes", f.classes, "classes C")->check(CLI::Range(int64_t(2), int64_t(1000)))->capture_default_str();
  app.add_flag("--no-reembed", f.no_reembed,
               "skip T-MUX's second position add + LayerNorm after the mux (the peer has none)");
  app.add_option("--seed", f.seed, "seed of the weights and the random sentences")->capture_default_str();
  app.add_option("--threads", f.threads, "threads (default: all cores)");
  tasks::add_device_flags(app, f.device_flags);
  app.add_option("--save", f.save, "write each timed model (adds _plain / _n<N> before the extension)");
  app.add_option("--load", f.load, "time the models saved by --save under this name instead of random ones");
  app.add_option("--runs", f.runs, "directory for metrics (runs/throughput.jsonl); empty: none")->capture_default_str();

  return tasks::run_task(app, argc, argv, [&] {
    if (f.threads > 0) set_num_threads(f.threads);
    f.device = tasks::resolve_device(f.device_flags);
    if (f.d % f.heads != 0) throw InputError("--d " + std::to_string(f.d) + " must be a multiple of --heads " + std::to_string(f.heads));
    std::vector<int64_t> ns = tasks::parse_int_list(f.n, "--n");
    for (int64_t n : ns) {
      if (n < 1 || n > 256) throw InputError("--n: each N must be in [1, 256], got " + std::to_string(n));
    }
    tasks::ClsShape shape;
    shape.len = f.len;
    shape.d = f.d;
    shape.ff = f.ff;
    shape.layers = f.layers;
    shape.classes = f.classes;
    std::printf("throughput: L=%lld B=%lld d=%lld heads=%lld ff=%lld layers=%lld V=%lld, %d threads, "
                "%lld warm-up + %lld timed passes, load %s\n",
                (long long)f.len, (long long)f.batch, (long long)f.d, (long long)f.heads, (long long)f.ff,
                (long long)f.layers, (long long)f.vocab, get_num_threads(), (long long)f.warmup,
                (long long)f.repeats, load_average().c_str());
    const std::string device_name_line = tasks::device_banner(f.device);
    std::printf("device: %s\n", device_name_line.c_str());
    std::fflush(stdout);

    if (!f.load.empty()) check_checkpoints(f, ns);
    std::vector<Point> points;
    const double t_start = now_s();
    if (!f.skip_plain) points.push_back(run_plain(f, shape));
    for (int64_t n : ns) points.push_back(run_tmux(f, n));

    const Point* plain = nullptr;
    const Point* n1 = nullptr;
    for (const Point& p : points) {
      if (p.plain) plain = &p;
      if (!p.plain && p.n == 1) n1 = &p;
    }
    std::printf("\n%-6s %4s %22s %9s %8s %8s %11s %11s %9s %7s\n", "model", "T", "pass ms med [min-max]",
                "inst/s", "x plain", "x N=1", "ceil plain", "ceil N=1", "of ceil", "GFLOP/s");
    for (const Point& p : points) {
      const double flops = tasks::cls_pass_flops(shape, p.n, f.batch, p.plain, !p.plain);  // what ran
      const double gflops = flops / p.med / 1e9;
      const double x_plain = plain ? p.ips() / plain->ips() : 0, x_n1 = n1 ? p.ips() / n1->ips() : 0;
      const double c_plain = p.plain ? 1.0 : tasks::cls_ceiling(shape, p.n, true);
      const double c_n1 = p.plain ? 1.0 / tasks::cls_ceiling(shape, 1, true) : tasks::cls_ceiling(shape, p.n, false);
      char range[64], xp[16] = "-", xn[16] = "-", frac[16] = "-";
      std::snprintf(range, sizeof range, "%.1f [%.1f-%.1f]", p.med * 1e3, p.min * 1e3, p.max * 1e3);
      if (plain) std::snprintf(xp, sizeof xp, "%.2f", x_plain);
      if (n1) std::snprintf(xn, sizeof xn, "%.2f", x_n1);
      if (plain && !p.plain) std::snprintf(frac, sizeof frac, "%.0f%%", 100 * x_plain / c_plain);
      std::string name = p.plain ? "plain" : "N=" + std::to_string(p.n);
      std::printf("%-6s %4lld %22s %9.0f %8s %8s %11.2f %11.2f %9s %7.1f\n", name.c_str(), (long long)p.positions,
                  range, p.ips(), xp, xn, c_plain, c_n1, frac, gflops);
      nlohmann::json rec = {{"event", "result"}, {"model", p.plain ? "plain" : "tmux"}, {"n", p.n},
                            {"L", f.len}, {"T", p.positions}, {"B", f.batch}, {"instances_per_pass", p.instances},
                            {"threads", get_num_threads()}, {"warmup", f.warmup}, {"repeats", f.repeats},
                            {"time_med_s", p.med}, {"time_min_s", p.min}, {"time_max_s", p.max},
                            {"inst_per_s", p.ips()}, {"ceiling_vs_plain", c_plain}, {"ceiling_vs_n1", c_n1},
                            {"gflop_pass", flops / 1e9}, {"gflops", gflops}, {"reembed", !f.no_reembed},
                            {"seed", f.seed}, {"loadavg", load_average()}, {"device", device_name(f.device)},
                            {"device_name", device_name_line}, {"tf32", allow_tf32()}};
      if (plain) rec["x_vs_plain"] = x_plain;
      if (n1) rec["x_vs_n1"] = x_n1;
      if (plain && !p.plain) rec["frac_of_ceiling_vs_plain"] = x_plain / c_plain;
      tasks::append_metrics(f.runs, "throughput", rec);
    }
    std::printf("(%.0f s; ceilings: FLOPs per instance of the reference / at N, the peer's FLOP count; GFLOP/s: "
                "this library's count)\n", now_s() - t_start);
  });
}
