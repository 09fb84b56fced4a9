// bench_ops.cpp — op benchmark: muxnet's matmul against a direct cblas_sgemm call (through
// blas::sgemm, the one-line wrapper over the loaded OpenBLAS, see tensor/cpu/blas.h) on the
// transformer-shaped GEMMs of ../shared/bench/RESULTS.md, and the memory bandwidth of add, gelu,
// softmax and layer_norm on 4M floats against the copy bandwidth this same program measures.
//
// Targets (issue "Foundation"): matmul within 5% of the direct BLAS call; elementwise kernels at least
// 50% of the copy bandwidth. Every figure is the median of --reps samples; each sample repeats the
// call until it lasts --sample-ms, after a warm-up. muxnet and the direct call are sampled alternately
// so that machine load affects both alike.
//
//   build/bench_ops                 # all shapes, the default thread count
//   build/bench_ops --threads 1     # one thread
//   build/bench_ops --quick         # fewer samples, for a smoke run
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tensor/cpu/blas.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace muxnet;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Calls per sample so that one sample lasts about sample_s (after a short warm-up).
int calibrate(const std::function<void()>& fn, double sample_s) {
  double t0 = now_s();
  int calls = 0;
  do {
    fn();
    ++calls;
  } while (now_s() - t0 < 0.05 || calls < 2);
  double per_call = (now_s() - t0) / calls;
  return std::max(1, int(sample_s / per_call));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median seconds per call of each function, sampling them alternately.
std::vector<double> time_alternating(const std::vector<std::function<void()>>& fns, int reps, double sample_s) {
  std::vector<int> calls;
  for (const auto& fn : fns) calls.push_back(calibrate(fn, sample_s));
  std::vector<std::vector<double>> samples(fns.size());
  for (int r = 0; r < reps; ++r) {
    for (size_t f = 0; f < fns.size(); ++f) {
      double t0 = now_s();
      for (int i = 0; i < calls[f]; ++i) fns[f]();
      samples[f].push_back((now_s() - t0) / calls[f]);
    }
  }
  std::vector<double> out;
  for (const auto& s : samples) out.push_back(median(s));
  return out;
}

struct GemmShape {
  const char* name;
  int64_t m, n, k;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_ops: muxnet matmul vs direct cblas_sgemm, and elementwise bandwidth vs copy"};
  int threads = get_num_threads();
  int reps = 11;
  double sample_ms = 40;
  bool quick = false;
  app.add_option("--threads", threads, "threads for OpenMP and OpenBLAS")->capture_default_str();
  app.add_option("--reps", reps, "timed samples per measurement (median reported)")->capture_default_str();
  app.add_option("--sample-ms", sample_ms, "length of one sample in ms")->capture_default_str();
  app.add_flag("--quick", quick, "3 samples of 10 ms: a smoke run, not a measurement");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    reps = 3;
    sample_ms = 10;
  }

  try {
    set_num_threads(threads);
    std::printf("bench_ops: %d thread(s), OpenBLAS core %s (%s), median of %d samples of >= %.0f ms\n\n", threads,
                blas::core_name().c_str(), blas::library_path().c_str(), reps, sample_ms);

    // ---- GEMM: C (M, N) = A (M, K) @ B, B stored (K, N) [NN] or (N, K) [NT, the nn.Linear layout]
    const std::vector<GemmShape> shapes = {
        {"square", 256, 256, 256},    {"square", 512, 512, 512},     {"square", 1024, 1024, 1024},
        {"square", 2048, 2048, 2048}, {"ffn_up", 2048, 1024, 256},   {"ffn_down", 2048, 256, 1024},
        {"d768", 2048, 768, 768},     {"tmux_qkv", 2048, 768, 256},  {"tmux_out", 2048, 256, 256},
        {"demux1", 2048, 256, 512},   {"vocab", 2048, 5000, 256},
    };
    std::printf("%-9s %-16s %-3s %12s %12s %8s\n", "gemm", "MxNxK", "op", "muxnet GF/s", "cblas GF/s", "ratio");
    double worst_ratio = 1e9;
    Generator gen(1234);
    for (const GemmShape& s : shapes) {
      for (bool trans_b : {false, true}) {
        Tensor a = rand({s.m, s.k}, DType::F32, &gen, -0.5, 0.5);
        Tensor b = trans_b ? rand({s.n, s.k}, DType::F32, &gen, -0.5, 0.5) : rand({s.k, s.n}, DType::F32, &gen, -0.5, 0.5);
        Tensor c1 = zeros({s.m, s.n}), c2 = zeros({s.m, s.n});
        const float* pa = a.data<float>();
        const float* pb = b.data<float>();
        float* pc = c2.data<float>();
        auto ours = [&] { ops::matmul_out(a, b, c1, false, trans_b); };
        auto direct = [&] {
          blas::sgemm(false, trans_b, int(s.m), int(s.n), int(s.k), 1.0f, pa, int(s.k), pb, trans_b ? int(s.k) : int(s.n),
                      0.0f, pc, int(s.n));
        };
        std::vector<double> t = time_alternating({ours, direct}, reps, sample_ms / 1e3);
        double flop = 2.0 * double(s.m) * double(s.n) * double(s.k);
        double ratio = t[1] / t[0];
        worst_ratio = std::min(worst_ratio, ratio);
        char dims[32];
        std::snprintf(dims, sizeof dims, "%lldx%lldx%lld", (long long)s.m, (long long)s.n, (long long)s.k);
        std::printf("%-9s %-16s %-3s %12.1f %12.1f %8.3f\n", s.name, dims, trans_b ? "NT" : "NN",
                    flop / t[0] / 1e9, flop / t[1] / 1e9, ratio);
        if (!allclose(c1, c2, 1e-5, 1e-5)) {
          std::printf("error: matmul and cblas_sgemm results differ for %s\n", dims);
          return 1;
        }
      }
    }
    std::printf("worst matmul / cblas ratio: %.3f (target >= 0.95)\n\n", worst_ratio);

    // ---- bandwidth on 4M floats (16 MiB per tensor)
    const int64_t n = int64_t(1) << 22;
    Tensor x = rand({n}, DType::F32, &gen, -3, 3), y = rand({n}, DType::F32, &gen, -3, 3);
    Tensor dst = empty({n});
    Tensor rows = x.view({4096, 1024});      // softmax rows of 1024
    Tensor ln_rows = x.view({16384, 256});   // layer norm rows of d = 256
    Tensor w = rand({256}, DType::F32, &gen), bias = rand({256}, DType::F32, &gen);
    const float* px = x.data<float>();
    float* pd = dst.data<float>();
    const double bytes = double(n) * sizeof(float);

    struct BwCase {
      const char* name;
      double traffic;  // bytes moved per call, in units of one 16 MiB tensor
      std::function<void()> fn;
    };
    std::vector<BwCase> cases = {
        {"memcpy", 2, [&] { std::memcpy(pd, px, size_t(n) * sizeof(float)); }},
        {"copy_", 2, [&] { dst.copy_(x); }},
        {"add", 3, [&] { ops::add(x, y); }},
        {"gelu", 2, [&] { ops::gelu(x); }},
        {"softmax", 2, [&] { ops::softmax(rows); }},
        {"layer_norm", 2, [&] { ops::layer_norm(ln_rows, w, bias, 1e-5); }},
    };
    std::vector<std::function<void()>> fns;
    for (const auto& c : cases) fns.push_back(c.fn);
    std::vector<double> t = time_alternating(fns, reps, sample_ms / 1e3);
    // The copy bandwidth is the faster of memcpy (one thread) and muxnet's copy_ (all threads).
    const double copy_bw = std::max(cases[0].traffic * bytes / t[0], cases[1].traffic * bytes / t[1]) / 1e9;
    std::printf("%-11s %10s %10s %12s\n", "op (4M f32)", "ms/call", "GB/s", "% of copy");
    for (size_t i = 0; i < cases.size(); ++i) {
      double bw = cases[i].traffic * bytes / t[i] / 1e9;
      std::printf("%-11s %10.3f %10.2f %11.0f%%\n", cases[i].name, t[i] * 1e3, bw, 100.0 * bw / copy_bw);
    }
    std::printf("copy bandwidth = the faster of memcpy and copy_: %.2f GB/s (target: add and gelu >= 50%%)\n",
                copy_bw);
    std::printf("(GB/s counts each tensor read or written once; add moves 3 tensors, the others 2)\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
