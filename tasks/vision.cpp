// vision.cpp — DataMUX on images: the multiplexed MLP and CNN (mux/vision_models.h) trained on MNIST or
// Fashion-MNIST, with test accuracy per instance slot (tasks/common/vision_train.h has the protocol).
//
// Recipes (the defaults of each --model; every one can be overridden by its flag):
//   cnn  PAPER.md §1.7 / §2.4: 20x20 centre crops, /255, mux nonlinear_expand (expand 8), LeNet with
//        C1 = 10 channels, tanh, N stacked demux heads; ±1 targets with MSE on tanh outputs; SGD lr 0.1,
//        no momentum; 32 mixed examples per step (32·N images, without replacement); one epoch =
//        train count / 32 = 1875 steps at every N, as the notebook. The paper trains 15 epochs; the
//        default here is 3 so a run fits on 2 cores (see --epochs).
//   mlp  shared/bench/torch_vision.py's MuxMLP: the flattened 28x28 image, Gaussian Hadamard keys,
//        784 -> 512 -> N heads 512 -> 10 (ReLU); cross-entropy; AdamW lr 1e-3 (weight decay 0.01)
//        decayed linearly to 0 over the run (constant lr 1e-3 for 10 epochs gave 97.75% at N = 1, the
//        last epochs' test accuracy wandering by ±0.4); 32 mixed examples per step; 6 epochs (the peer
//        is a timing benchmark and has no epoch count).
//
//   build/vision                                   # cnn, mnist, N = 1
//   build/vision --model cnn --n 1,2,4,8 --epochs 15
//   build/vision --model mlp --dataset fashion --n 1,2,4
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tasks/common/cli.h"
#include "tasks/common/metrics.h"
#include "tasks/common/progress.h"
#include "tasks/common/vision_train.h"

using namespace muxnet;
using muxnet::tasks::InputError;

namespace {

struct Flags {
  std::string model = "cnn", dataset = "mnist", n = "1", mux, loss, optim, schedule;
  double lr = 0, weight_decay = 0.01, max_train_s = 0;
  int64_t batch = 32, epochs = -1, steps_per_epoch = 0, crop = -1, hidden = 512, c1 = 10, expand = 8,
          mux_hidden = 16, eval_batch = 250;
  bool eval_each_epoch = true;
  uint64_t seed = 0;
  int threads = 0;
  tasks::DeviceFlags device;
  std::string save, load, data_dir, images_dir, runs = "runs";
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The directory holding the four IDX files: --images-dir, else <data dir>/mnist for mnist; for fashion
// <data dir>/fashion-mnist when it exists, else Debian's dataset-fashion-mnist.
std::string dataset_dir(const Flags& f) {
  if (!f.images_dir.empty()) return f.images_dir;
  if (f.dataset == "mnist") return tasks::data_dir(f.data_dir) + "/mnist";
  const char* env = std::getenv("MUXNET_DATA");
  std::string base = !f.data_dir.empty() ? f.data_dir : env && *env ? env : "";
  struct stat st;
  if (!base.empty() && stat((base + "/fashion-mnist").c_str(), &st) == 0) return base + "/fashion-mnist";
  return "/usr/share/datasets/fashion-mnist";
}

std::string slots_text(const std::vector<double>& per_slot) {
  std::string s;
  for (double a : per_slot) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%.2f", s.empty() ? "" : " ", 100.0 * a);
    s += buf;
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"vision: DataMUX image classification — N images multiplexed into one MLP/CNN pass, accuracy per slot",
               "vision"};
  app.add_option("--model", f.model, "mlp | cnn")->check(CLI::IsMember({"mlp", "cnn"}))->capture_default_str();
  app.add_option("--dataset", f.dataset, "mnist | fashion")->check(CLI::IsMember({"mnist", "fashion"}))->capture_default_str();
  app.add_option("--n", f.n, "instances per mixed example; a list (1,2,4) runs a sweep")->capture_default_str();
  app.add_option("--mux", f.mux,
                 "cnn: none|gaussian|learnable|nonlinear|nonlinear_expand|ortho (default nonlinear_expand); "
                 "mlp: none|gaussian_hadamard (default gaussian_hadamard)");
  app.add_option("--loss", f.loss, "mse (±1 targets on tanh outputs) | ce (default: cnn mse, mlp ce)")
      ->check(CLI::IsMember({"mse", "ce"}));
  app.add_option("--optim", f.optim, "sgd (no momentum) | adamw (default: cnn sgd, mlp adamw)")
      ->check(CLI::IsMember({"sgd", "adamw"}));
  app.add_option("--lr", f.lr, "learning rate (default: sgd 0.1, adamw 1e-3)");
  app.add_option("--schedule", f.schedule, "constant | linear (decay to 0 over the run) (default: cnn constant, mlp linear)")
      ->check(CLI::IsMember({"constant", "linear"}));
  app.add_option("--weight-decay", f.weight_decay, "adamw weight decay")->capture_default_str();
  app.add_option("--batch", f.batch, "mixed examples per step (batch·N images)")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--epochs", f.epochs, "epochs (default: cnn 3, mlp 10; the paper's cnn: 15)")->check(tasks::kNonNegative);
  app.add_option("--steps-per-epoch", f.steps_per_epoch, "steps per epoch (default: train images / batch, as the paper)")
      ->check(tasks::kNonNegative);
  app.add_option("--max-train-s", f.max_train_s, "stop training after this many seconds (0: no limit)")->capture_default_str();
  app.add_option("--crop", f.crop, "pixels cut off every border (default: cnn 4 -> 20x20, mlp 0)");
  app.add_option("--hidden", f.hidden, "mlp: hidden width")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--c1", f.c1, "cnn: LeNet C1 channels")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--expand", f.expand, "cnn: nonlinear_expand output channels")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--mux-hidden", f.mux_hidden, "cnn: nonlinear mux hidden channels")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--eval-batch", f.eval_batch, "mixed examples per evaluation pass")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--eval-each-epoch", f.eval_each_epoch, "evaluate on the test split after every epoch")->capture_default_str();
  app.add_option("--data-dir", f.data_dir, "data directory (default: $MUXNET_DATA, else ./data); mnist is <dir>/mnist");
  app.add_option("--images-dir", f.images_dir,
                 "the directory of the four IDX files (default: <data dir>/mnist, or for fashion <data dir>/fashion-mnist "
                 "if present, else /usr/share/datasets/fashion-mnist)");
  app.add_option("--seed", f.seed, "seed of the weights, keys and batches")->capture_default_str();
  app.add_option("--threads", f.threads, "threads (default: all cores)");
  tasks::add_device_flags(app, f.device);
  app.add_option("--save", f.save, "write a checkpoint (a sweep adds _n<N> before the extension)");
  app.add_option("--load", f.load, "start from a checkpoint (its model options win over the flags; --epochs 0: evaluate only)");
  app.add_option("--runs", f.runs, "directory for metrics (runs/vision.jsonl); empty: none")->capture_default_str();

  return tasks::run_task(app, argc, argv, [&] {
    if (f.threads > 0) set_num_threads(f.threads);
    const Device device = tasks::resolve_device(f.device);
    const bool cnn = f.model == "cnn";
    std::vector<int64_t> ns = tasks::parse_int_list(f.n, "--n");
    for (int64_t n : ns) {
      if (n < 1 || n > 64) throw InputError("--n: each N must be in [1, 64], got " + std::to_string(n));
    }
    if (!f.load.empty() && ns.size() > 1) throw InputError("--load works with a single --n");

    // The model options of each N (the data's image size is filled in once it is read); checked before
    // the data is loaded so a bad flag fails at once.
    auto make_config = [&](int64_t n) {
      tasks::VisionConfig cfg;
      if (!f.load.empty()) return tasks::VisionConfig::from_metadata(nn::read_safetensors(f.load).metadata);
      cfg.model = f.model;
      cfg.n = n;
      cfg.mux = !f.mux.empty() ? f.mux : cnn ? "nonlinear_expand" : "gaussian_hadamard";
      cfg.loss = !f.loss.empty() ? f.loss : cnn ? "mse" : "ce";
      cfg.crop = f.crop >= 0 ? f.crop : cnn ? 4 : 0;
      cfg.hidden = f.hidden;
      cfg.c1 = f.c1;
      cfg.expand = f.expand;
      cfg.mux_hidden = f.mux_hidden;
      cfg.validate_choices();
      return cfg;
    };
    for (int64_t n : ns) make_config(n);

    // ---- data
    const std::string dir = dataset_dir(f);
    double t_load = now_s();
    tasks::ImageDataset data = tasks::load_image_dataset(dir);
    std::printf("%s: %lld train / %lld test images of %lldx%lld from %s (%.1f s); device %s, %d threads\n",
                f.dataset.c_str(), (long long)data.train.images.count, (long long)data.test.images.count,
                (long long)data.train.images.rows, (long long)data.train.images.cols, dir.c_str(), now_s() - t_load,
                tasks::device_banner(device).c_str(), get_num_threads());
    const int64_t steps_per_epoch = f.steps_per_epoch > 0 ? f.steps_per_epoch : data.train.images.count / f.batch;

    std::printf("%-4s %-16s %7s %9s %8s  %-s\n", "N", "mux", "steps", "train s", "test %", "per-slot test accuracy %");
    for (int64_t n_flag : ns) {
      // ---- model (a checkpoint's options win over the flags, its model's recipe defaults too)
      tasks::VisionConfig cfg = make_config(n_flag);
      if (f.load.empty()) {
        cfg.rows = data.train.images.rows;
        cfg.cols = data.train.images.cols;
      }
      const int64_t n = cfg.n;
      const bool is_cnn = cfg.model == "cnn";
      const std::string optim_name = !f.optim.empty() ? f.optim : is_cnn ? "sgd" : "adamw";
      const double lr = f.lr > 0 ? f.lr : optim_name == "sgd" ? 0.1 : 1e-3;
      const int64_t epochs = f.epochs >= 0 ? f.epochs : is_cnn ? 3 : 6;
      const std::string schedule_name = !f.schedule.empty() ? f.schedule : is_cnn ? "constant" : "linear";
      if (cfg.rows != data.train.images.rows || cfg.cols != data.train.images.cols) {
        throw InputError(f.load + ": the checkpoint expects " + std::to_string(cfg.rows) + "x" + std::to_string(cfg.cols) +
                         " images, " + dir + " has " + std::to_string(data.train.images.rows) + "x" +
                         std::to_string(data.train.images.cols));
      }
      Generator init_gen(f.seed), data_gen(f.seed + 1);
      tasks::VisionNet net(cfg, &init_gen);
      if (!f.load.empty()) nn::load_checkpoint(f.load, net.module());
      net.module().to(device);  // built and loaded on the cpu; the optimizer comes after the move
      net.module().pack_parameters();
      std::unique_ptr<nn::Optimizer> optim;
      if (optim_name == "sgd") {
        optim = std::make_unique<nn::SGD>(net.module(), lr);
      } else {
        optim = std::make_unique<nn::AdamW>(net.module(), lr, 0.9, 0.999, 1e-8, f.weight_decay);
      }

      // ---- train
      const int64_t total = epochs * steps_per_epoch;
      nn::LRSchedule schedule = schedule_name == "constant" ? nn::LRSchedule::constant(lr)
                                                            : nn::LRSchedule::linear_warmup(lr, 0, std::max<int64_t>(total, 1));
      tasks::ProgressBar bar(total, "N=" + std::to_string(n), std::max<int64_t>(1, total / 50));
      tasks::EpochSampler sampler(data.train.images.count, data_gen);
      double t0 = now_s(), loss_ema = 0, acc_ema = 0, eval_s = 0;
      int64_t step = 0;
      bool out_of_time = false;
      for (int64_t epoch = 1; epoch <= epochs && !out_of_time; ++epoch) {
        for (int64_t s = 0; s < steps_per_epoch; ++s) {
          std::vector<int64_t> idx = sampler.next(f.batch * n);
          schedule.apply(*optim);
          tasks::StepResult r = tasks::train_step(net, *optim, tasks::image_batch(data.train.images, idx, cfg.crop),
                                                  tasks::label_batch(data.train.labels, idx));
          const double acc = double(r.correct) / double(r.count);
          loss_ema = step == 0 ? r.loss : 0.98 * loss_ema + 0.02 * r.loss;
          acc_ema = step == 0 ? acc : 0.98 * acc_ema + 0.02 * acc;
          bar.update(++step, loss_ema, acc_ema);
          if (f.max_train_s > 0 && now_s() - t0 - eval_s > f.max_train_s) {
            out_of_time = true;
            break;
          }
        }
        if (f.eval_each_epoch && epoch < epochs && !out_of_time) {
          double te = now_s();
          tasks::SlotAccuracy a = tasks::evaluate_slots(net, data.test, f.eval_batch);
          eval_s += now_s() - te;
          std::printf("\n  epoch %lld: test %.2f%% (%s)\n", (long long)epoch, 100.0 * a.mean,
                      slots_text(a.per_slot).c_str());
          std::fflush(stdout);
          tasks::append_metrics(f.runs, "vision", {{"event", "eval"}, {"model", cfg.model}, {"dataset", f.dataset},
                                                   {"mux", cfg.mux}, {"n", n}, {"epoch", epoch}, {"step", step},
                                                   {"train_loss", loss_ema}, {"train_acc", acc_ema},
                                                   {"test_acc", a.mean}, {"per_slot_acc", a.per_slot}});
        }
      }
      bar.finish();
      const double train_s = now_s() - t0 - eval_s;

      // ---- evaluate
      tasks::SlotAccuracy a = tasks::evaluate_slots(net, data.test, f.eval_batch);
      std::printf("%-4lld %-16s %7lld %9.1f %8.2f  %s%s\n", (long long)n, cfg.mux.c_str(), (long long)step, train_s,
                  100.0 * a.mean, slots_text(a.per_slot).c_str(), out_of_time ? "  (stopped by --max-train-s)" : "");
      std::fflush(stdout);
      nlohmann::json cfg_json;
      for (auto& [k, v] : cfg.to_metadata()) cfg_json[k.substr(7)] = v;
      tasks::append_metrics(
          f.runs, "vision",
          {{"event", "result"}, {"model", cfg.model}, {"dataset", f.dataset}, {"mux", cfg.mux}, {"n", n},
           {"loss", cfg.loss}, {"optim", optim_name}, {"lr", lr}, {"schedule", schedule_name}, {"batch", f.batch},
           {"epochs", double(step) / double(std::max<int64_t>(steps_per_epoch, 1))}, {"steps", step},
           {"stopped_early", out_of_time}, {"train_s", train_s}, {"threads", get_num_threads()},
           {"device", device_name(device)},
           {"test_acc", a.mean}, {"per_slot_acc", a.per_slot}, {"per_slot_images", a.per_slot_images},
           {"seed", f.seed}, {"config", cfg_json}});
      if (!f.save.empty()) {
        nn::Metadata meta = cfg.to_metadata();
        meta["task"] = "vision";
        meta["dataset"] = f.dataset;
        std::string path = tasks::with_n_suffix(f.save, n, ns.size() > 1);
        nn::save_checkpoint(path, net.module(), meta);
        std::printf("saved %s\n", path.c_str());
      }
    }
  });
}
