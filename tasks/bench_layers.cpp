// bench_layers.cpp — training-step time of the T-MUX backbone and of the LeNet CNN, to compare with
// PyTorch running the same step (tasks/peer/torch_layers.py; tasks/peer/compare_layers.sh runs both
// back to back and prints the ratio muxnet / PyTorch).
//
// Backbone: the config of ../shared/bench/RESULTS.md — TransformerEncoder, 4 post-LN layers, d = 256,
// 4 heads, FFN 1024, GELU, dropout 0 — on B = 8 muxed sequences of T = 64 + N + 1 positions.
// Step = forward, MSE against a fixed random target, backward, AdamW (lr 1e-4, torch's defaults).
// CNN: LeNet of PAPER.md §1.7 (C1 with 10 channels, as ../shared/bench/torch_vision.py) on a batch of
// 128 images 20x20, cross-entropy, backward, AdamW. Inputs are fixed random tensors (timing only).
//
// --device cuda: the models and inputs are moved to the GPU (built on the cpu first) and each step is
// timed up to device_synchronize.
//
//   build/bench_layers                      # both models, 2 threads
//   build/bench_layers --threads 1 --json   # one JSON line per measurement
//   build/bench_layers --device cuda --steps 50
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "nn/lenet.h"
#include "nn/optim.h"
#include "nn/transformer.h"
#include "tensor/allocator.h"
#include "tensor/cpu/blas.h"
#include "tensor/device.h"

using namespace muxnet;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Timing {
  double median, min, max;
};

Timing time_steps(const std::function<void()>& step, int warmup, int steps, Device device) {
  for (int i = 0; i < warmup; ++i) step();
  device_synchronize(device);  // a no-op on the cpu
  std::vector<double> t;
  for (int i = 0; i < steps; ++i) {
    double t0 = now_s();
    step();
    device_synchronize(device);
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), t.back()};
}

void report(bool json, const char* model, int threads, int64_t n, const Timing& t, double gflop, Device device) {
  if (json) {
    std::printf("{\"engine\": \"muxnet\", \"model\": \"%s\", \"threads\": %d, \"n\": %lld, \"step_s\": %.6f, "
                "\"min_s\": %.6f, \"max_s\": %.6f, \"gflops\": %.1f, \"blas_core\": \"%s\", \"device\": \"%s\"}\n",
                model, threads, (long long)n, t.median, t.min, t.max, gflop / t.median, blas::core_name().c_str(),
                device_name(device));
  } else {
    std::printf("%-9s %2d thr  N=%-3lld step %8.2f ms [%.2f-%.2f]  %6.1f GFLOP/s\n", model, threads, (long long)n,
                t.median * 1e3, t.min * 1e3, t.max * 1e3, gflop / t.median);
  }
}

// Matmul FLOPs of one backbone training step (forward + 2x for backward), 2 FLOP per multiply-add.
double backbone_gflop(int64_t B, int64_t T, int64_t d, int64_t ff, int64_t layers) {
  double per_layer = 2.0 * T * d * 3 * d + 2.0 * T * d * d + 2.0 * 2 * T * d * ff + 2.0 * 2 * T * T * d;
  return 3.0 * B * layers * per_layer / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_layers: training-step time of the T-MUX backbone and the LeNet CNN"};
  int threads = get_num_threads(), warmup = 3, steps = 11;
  std::vector<int64_t> ns = {1, 10, 40};
  std::string models = "backbone,cnn";
  bool json = false, tf32 = false;
  std::string device_text = "cpu";
  app.add_option("--threads", threads, "threads for OpenMP and OpenBLAS")->capture_default_str();
  app.add_option("--steps", steps, "timed steps (median reported)")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--n", ns, "backbone: multiplexing widths N (sequence length 64 + N + 1)")->delimiter(',');
  app.add_option("--models", models, "comma-separated: backbone, cnn")->capture_default_str();
  app.add_flag("--json", json, "one JSON line per measurement");
  // The task binaries' --device / --tf32 (tasks/common/cli.h), by hand: benchmarks link only the library.
  app.add_option("--device", device_text, "cpu | cuda | cuda:K")->capture_default_str();
  app.add_flag("--tf32", tf32, "cuda: TF32 tensor-core matmuls");
  CLI11_PARSE(app, argc, argv);

  Device device = Device::CPU;
  try {
    const bool cuda = device_text == "cuda" || device_text.rfind("cuda:", 0) == 0;
    if (!cuda && device_text != "cpu") throw Error("--device: expected cpu, cuda or cuda:K, got '" + device_text + "'");
    if (cuda) {
      const std::string why = device_unavailable_reason(Device::CUDA);
      if (!why.empty()) throw Error("--device " + device_text + " is not available: " + why);
    }
    device = parse_device(device_text);
    if (tf32 && device == Device::CPU) throw Error("--tf32 applies to cuda devices only");
    set_allow_tf32(tf32);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }

  try {
    set_num_threads(threads);
    if (!json) {
      std::printf("bench_layers: %d thread(s), OpenBLAS core %s, device %s%s\n", threads, blas::core_name().c_str(),
                  device_describe(device).c_str(), tf32 ? ", tf32" : "");
    }
    Generator gen(1234);
    if (models.find("backbone") != std::string::npos) {
      for (int64_t n : ns) {
        const int64_t B = 8, T = 64 + n + 1, d = 256, ff = 1024, layers = 4;
        nn::TransformerEncoderLayerOptions opt;
        opt.d_model = d;
        opt.heads = 4;
        opt.dim_feedforward = ff;
        opt.dropout = 0.0;
        nn::TransformerEncoder model(opt, layers, &gen);
        model.to(device);
        model.pack_parameters();
        nn::AdamW optim(model, 1e-4);
        Tensor x = randn({B, T, d}, DType::F32, &gen).to(device), target = randn({B, T, d}, DType::F32, &gen).to(device);
        auto step = [&] {
          optim.zero_grad();
          Tensor loss = mse_loss(model.forward(x), target);
          loss.backward();
          optim.step();
        };
        report(json, "backbone", threads, n, time_steps(step, warmup, steps, device), backbone_gflop(B, T, d, ff, layers),
               device);
      }
    }
    if (models.find("cnn") != std::string::npos) {
      const int64_t B = 128;
      nn::LeNet model(1, 10, 10, &gen);
      model.to(device);
      model.pack_parameters();
      nn::AdamW optim(model, 1e-4);
      Tensor x = randn({B, 1, 20, 20}, DType::F32, &gen).to(device), y = randint(0, 10, {B}, DType::I64, &gen).to(device);
      auto step = [&] {
        optim.zero_grad();
        Tensor loss = cross_entropy(model.forward(x), y);
        loss.backward();
        optim.step();
      };
      // conv FLOPs: C1 18x18x10x9, C3 6x6x16x160, C5 1x1x120x144... per image, x3 for fwd+bwd
      double per_image = 2.0 * (18 * 18 * 10 * 9 + 6 * 6 * 16 * 160 + 120 * 144 + 120 * 84 + 84 * 10);
      report(json, "cnn", threads, 1, time_steps(step, warmup, steps, device), 3.0 * B * per_image / 1e9, device);
    }
    if (!json) {
      AllocatorStats s = cpu_allocator_stats();
      std::printf("allocator: %llu requests, %llu from the OS, peak %.1f MB in use\n", (unsigned long long)s.requests,
                  (unsigned long long)s.os_allocs, s.peak_bytes_in_use / 1e6);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
