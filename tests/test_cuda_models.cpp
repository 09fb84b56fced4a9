// test_cuda_models.cpp — module-level CPU vs CUDA parity: every nn layer, loss and mux model, one full
// T-MUX training step, optimizer state and gradient clipping on the device, checkpoints across devices.
//
// Pattern: build a model twice from the same seed, move one copy to the GPU, run forward and backward
// on both with the same inputs (and, for dropout, generators in the same state), then compare the
// outputs, every input gradient and every parameter gradient. The CPU is the reference.
//
// Every test is tagged [cuda]. Without a usable CUDA device the test main skips them (SKIPPED lines,
// tests/catch_main.cpp); with MUXNET_EMULATE_CUDA=1 the "cuda" device is host memory running the CPU kernels
// (tensor/device_emulation.cpp), so here a tensor left on the wrong device fails exactly as it would
// on a GPU while the numbers are the CPU's (the comparisons then hold exactly). On a real GPU the
// comparisons measure the CUDA kernels, with the tolerances below.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "mux/image_mux.h"
#include "mux/tmux.h"
#include "mux/vision_models.h"
#include "nn/checkpoint.h"
#include "nn/conv.h"
#include "nn/lenet.h"
#include "nn/loss.h"
#include "nn/mlp.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "nn/transformer.h"
#include "tensor/device.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;

namespace {

// |got - ref| <= atol * scale + rtol * |ref|, scale = max(1, max |ref|) over the tensor: an absolute
// floor relative to the tensor's magnitude, because a gradient element that is a sum of many terms of
// both signs can be tiny while its rounding error is not.
struct Tol {
  double rtol, atol;
};
// Copies, masks, index results: the same bits on both devices.
constexpr Tol kExact{0.0, 0.0};
// Elementwise ops and short reductions only: a few ulps (CUDA's expf/erff/tanhf may differ by an ulp).
constexpr Tol kElementwise{1e-5, 1e-6};
// Through GEMMs, convolutions, softmax / LayerNorm reductions: cuBLAS (TF32 off, the default) and the
// CUDA reductions sum in another order, which moves f32 results by ~1e-6 relative per layer; a few
// layers deep and through a backward pass 1e-4 relative leaves a wide margin.
constexpr Tol kMatmul{1e-4, 2e-5};
// After an optimizer step: AdamW divides by sqrt(v) + eps, which amplifies gradient differences on
// elements whose gradient is ~0; with lr 1e-2 an element moves by at most ~lr, so 1e-5 absolute is tight.
constexpr Tol kStep{1e-4, 1e-5};

void check_close(const std::string& what, const Tensor& ref, const Tensor& got, Tol tol) {
  INFO(what);
  REQUIRE(ref.defined() == got.defined());
  if (!ref.defined()) return;
  CHECK(ref.device() == Device::CPU);
  CHECK(got.device() == Device::CUDA);
  REQUIRE(ref.shape() == got.shape());
  REQUIRE(ref.dtype() == got.dtype());
  const std::vector<double> a = ref.to_vector<double>(), b = got.to(Device::CPU).to_vector<double>();
  double scale = 1.0;
  for (double v : a) scale = std::max(scale, std::abs(v));
  int64_t worst = -1, bad = 0;
  double worst_excess = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::abs(a[i] - b[i]);
    const double allowed = tol.atol * scale + tol.rtol * std::abs(a[i]);
    const bool ok = err <= allowed || (std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i];
    if (!ok) {
      ++bad;
      const double excess = std::isnan(err) ? INFINITY : err - allowed;
      if (worst < 0 || excess > worst_excess) {
        worst = int64_t(i);
        worst_excess = excess;
      }
    }
  }
  if (bad > 0) {
    std::ostringstream os;
    os << bad << " of " << a.size() << " elements differ; worst at flat index " << worst << ": cpu "
       << a[size_t(worst)] << ", cuda " << b[size_t(worst)] << " (rtol " << tol.rtol << ", atol " << tol.atol
       << " x " << scale << ")";
    FAIL_CHECK(os.str());
  }
}

// Builds two copies of a model from the same seed; the second is moved to the GPU.
template <typename M>
struct Twins {
  std::shared_ptr<M> cpu, dev;
};
template <typename M, typename Build>
Twins<M> twins(Build build) {
  Twins<M> t{build(), build()};
  t.dev->to(Device::CUDA);
  for (auto& [name, x] : t.dev->state()) {
    INFO(name);
    CHECK(x.device() == Device::CUDA);
  }
  return t;
}

// A scalar that weighs every output element differently (a fixed random projection), so the backward
// seed is not a constant that would hide a transposed or misplaced gradient.
Tensor project(const Tensor& out, uint64_t seed = 99) {
  Tensor w = test::random_tensor(out.shape(), out.dtype(), seed, -1.0, 1.0).to(out.device());
  return sum(mul(out, w));
}

void check_param_grads(const std::string& what, const nn::Module& cpu, const nn::Module& dev, Tol tol) {
  auto a = cpu.named_parameters(), b = dev.named_parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].first == b[i].first);
    CHECK(b[i].second.device() == Device::CUDA);
    check_close(what + ": grad of " + a[i].first, a[i].second.grad(), b[i].second.grad(), tol);
  }
}

void check_params(const std::string& what, const nn::Module& cpu, const nn::Module& dev, Tol tol) {
  auto a = cpu.state(), b = dev.state();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].first == b[i].first);
    check_close(what + ": " + a[i].first, a[i].second.detach(), b[i].second.detach(), tol);
  }
}

// One input of a parity run: a tensor built on the cpu, and whether its gradient is checked.
struct In {
  Tensor value;
  bool grad;
};
In grad_in(const Tensor& t) { return {t, true}; }
In fixed_in(const Tensor& t) { return {t, false}; }

// Runs fn(module, inputs) on both twins with the same inputs, backpropagates project(out) on both and
// compares the output, the inputs' gradients and every parameter gradient.
template <typename M, typename Fn>
void check_parity(const std::string& what, Twins<M>& m, const std::vector<In>& inputs, Fn fn, Tol tol) {
  std::vector<Tensor> in_cpu, in_dev;
  for (const In& in : inputs) {
    Tensor c = in.value.clone(), d = in.value.to(Device::CUDA);
    if (in.grad) {
      c.requires_grad_();
      d.requires_grad_();
    }
    in_cpu.push_back(c);
    in_dev.push_back(d);
  }
  Tensor out_cpu = fn(*m.cpu, in_cpu), out_dev = fn(*m.dev, in_dev);
  check_close(what + ": output", out_cpu, out_dev, tol);
  project(out_cpu).backward();
  project(out_dev).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].grad) continue;
    check_close(what + ": grad of input " + std::to_string(i), in_cpu[i].grad(), in_dev[i].grad(), tol);
  }
  check_param_grads(what, *m.cpu, *m.dev, tol);
}

Tensor rnd(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return test::random_tensor(shape, DType::F32, seed, lo, hi);
}
Tensor ints(const Shape& shape, int64_t high, uint64_t seed) {
  Generator g(seed);
  return randint(0, high, shape, DType::I64, &g);
}

}  // namespace

// ---------------------------------------------------------------- random draws

TEST_CASE("random factories on cuda: the cpu's numbers, the same generator advance", "[cuda]") {
  Generator a(5), b(5);
  check_close("rand", rand({3, 7}, DType::F32, &a, -2.0, 3.0), rand({3, 7}, DType::F32, &b, -2.0, 3.0, Device::CUDA),
              kExact);
  check_close("randn", randn({5, 4}, DType::F64, &a, 1.0, 2.0), randn({5, 4}, DType::F64, &b, 1.0, 2.0, Device::CUDA),
              kExact);
  check_close("bernoulli", bernoulli({9}, 0.3, DType::F32, &a), bernoulli({9}, 0.3, DType::F32, &b, Device::CUDA),
              kExact);
  check_close("randint", randint(2, 11, {4, 4}, DType::I64, &a), randint(2, 11, {4, 4}, DType::I64, &b, Device::CUDA),
              kExact);
  CHECK(a.offset() == b.offset());
  CHECK(randint(0, 3, {2}, DType::I32, &b, Device::CUDA).dtype() == DType::I32);
}

// ---------------------------------------------------------------- nn layers

TEST_CASE("Linear on cuda matches the cpu (forward, input and parameter gradients)", "[cuda]") {
  auto m = twins<nn::Linear>([] {
    Generator g(1);
    return std::make_shared<nn::Linear>(7, 5, true, &g);
  });
  check_parity("Linear", m, {grad_in(rnd({2, 3, 7}, 2))},
               [](const nn::Linear& l, const std::vector<Tensor>& x) { return l.forward(x[0]); }, kMatmul);
  auto nb = twins<nn::Linear>([] {
    Generator g(3);
    return std::make_shared<nn::Linear>(4, 6, false, &g);
  });
  check_parity("Linear without bias, 1-d input", nb, {grad_in(rnd({4}, 4))},
               [](const nn::Linear& l, const std::vector<Tensor>& x) { return l.forward(x[0]); }, kMatmul);
}

TEST_CASE("Embedding on cuda matches the cpu (repeated rows, padding_idx)", "[cuda]") {
  auto m = twins<nn::Embedding>([] {
    Generator g(1);
    return std::make_shared<nn::Embedding>(6, 5, 0, &g);
  });
  Tensor idx = from_vector<int64_t>({0, 3, 3, 5, 1, 0, 3, 2}, {2, 4});
  check_parity("Embedding", m, {fixed_in(idx)},
               [](const nn::Embedding& e, const std::vector<Tensor>& x) { return e.forward(x[0]); }, kElementwise);
  CHECK(m.dev->weight.grad().to(Device::CPU).select(0, 0).to_vector<float>() == std::vector<float>(5, 0.0f));
  Tensor i32 = from_vector<int32_t>({4, 4, 1}, {3});
  check_parity("Embedding, i32 indices", m, {fixed_in(i32)},
               [](const nn::Embedding& e, const std::vector<Tensor>& x) { return e.forward(x[0]); }, kElementwise);
}

TEST_CASE("LayerNorm and PositionalEmbedding on cuda match the cpu", "[cuda]") {
  auto ln = twins<nn::LayerNorm>([] {
    auto l = std::make_shared<nn::LayerNorm>(8);
    NoGradGuard no_grad;  // non-trivial affine parameters, so their gradients are tested
    l->weight.copy_(rnd({8}, 11, 0.5, 1.5));
    l->bias.copy_(rnd({8}, 12));
    return l;
  });
  check_parity("LayerNorm", ln, {grad_in(rnd({3, 5, 8}, 13, -3.0, 3.0))},
               [](const nn::LayerNorm& l, const std::vector<Tensor>& x) { return l.forward(x[0]); }, kMatmul);
  auto plain = twins<nn::LayerNorm>([] { return std::make_shared<nn::LayerNorm>(6, 1e-5, false); });
  check_parity("LayerNorm without affine", plain, {grad_in(rnd({4, 6}, 14))},
               [](const nn::LayerNorm& l, const std::vector<Tensor>& x) { return l.forward(x[0]); }, kMatmul);
  auto pos = twins<nn::PositionalEmbedding>([] {
    Generator g(15);
    return std::make_shared<nn::PositionalEmbedding>(6, 4, &g);
  });
  check_parity("PositionalEmbedding", pos, {grad_in(rnd({2, 5, 4}, 16))},
               [](const nn::PositionalEmbedding& p, const std::vector<Tensor>& x) { return p.forward(x[0]); },
               kElementwise);
}

TEST_CASE("Dropout in training mode on cuda: the cpu's mask from the same generator state", "[cuda]") {
  Generator gc(42), gd(42);
  auto m = twins<nn::Dropout>([] { return std::make_shared<nn::Dropout>(0.4); });
  m.cpu->gen = &gc;
  m.dev->gen = &gd;
  for (int round = 0; round < 2; ++round) {  // the second round checks that both generators advanced alike
    INFO("round " << round);
    // Inputs in [0.5, 1.5]: a kept element is >= 0.8, a dropped one 0, so agreement to a few ulps (the
    // 1 / (1 - p) scaling may round differently) means the very same mask.
    check_parity("Dropout", m, {grad_in(rnd({4, 33}, 17 + round, 0.5, 1.5))},
                 [](const nn::Dropout& d, const std::vector<Tensor>& x) { return d.forward(x[0]); }, kElementwise);
    CHECK(gc.offset() == gd.offset());
  }
  // Some elements kept, some dropped: the test saw a real mask.
  Tensor out = m.dev->forward(ones({200}, DType::F32, Device::CUDA));
  const double kept = ops::sum(ops::ne(out, zeros({200}, DType::F32, Device::CUDA))).item();
  CHECK(kept > 60);
  CHECK(kept < 180);
  m.dev->eval();
  Tensor x = rnd({3}, 5).to(Device::CUDA);
  CHECK(m.dev->forward(x).is_same(x));
  // p = 1: zeros, and a zero gradient on the device.
  nn::Dropout all(1.0);
  Tensor y = rnd({5}, 6).to(Device::CUDA).requires_grad_();
  Tensor z = all.forward(y);
  CHECK(z.device() == Device::CUDA);
  sum(z).backward();
  CHECK(y.grad().device() == Device::CUDA);
  CHECK(y.grad().to_vector<float>() == std::vector<float>(5, 0.0f));
}

TEST_CASE("MLP on cuda matches the cpu, dropout included", "[cuda]") {
  // The dropout generator is fixed at construction: one each, in the same state.
  Generator dc(8), dd(8);
  auto build = [](Generator* dropout_gen) {
    Generator g(7);
    return std::make_shared<nn::MLP>(std::vector<int64_t>{6, 16, 12, 3}, nn::Activation::Gelu, 0.25,
                                     nn::Activation::Tanh, &g, dropout_gen);
  };
  Twins<nn::MLP> m{build(&dc), build(&dd)};
  m.dev->to(Device::CUDA);
  check_parity("MLP (train)", m, {grad_in(rnd({5, 6}, 9))},
               [](const nn::MLP& l, const std::vector<Tensor>& x) { return l.forward(x[0]); }, kMatmul);
  CHECK(dc.offset() == dd.offset());
  m.cpu->eval();
  m.dev->eval();
  check_parity("MLP (eval)", m, {grad_in(rnd({2, 4, 6}, 10))},
               [](const nn::MLP& l, const std::vector<Tensor>& x) { return l.forward(x[0]); }, kMatmul);
}

TEST_CASE("MultiHeadSelfAttention on cuda matches the cpu (padding mask, attention dropout)", "[cuda]") {
  // Keys 3.. of sequence 0 and key 4 of sequence 1 are padded; every query keeps an unpadded key.
  Tensor mask = from_vector<float>({0, 0, 0, 1, 1, 0, 0, 0, 0, 1}, {2, 5});
  for (bool fused : {true, false}) {
    INFO("fused_qkv " << fused);
    Generator dc(21), dd(21);
    auto m = twins<nn::MultiHeadSelfAttention>([&] {
      Generator g(20);
      return std::make_shared<nn::MultiHeadSelfAttention>(8, 2, 0.3, fused, true, &g);
    });
    m.cpu->dropout_gen = &dc;
    m.dev->dropout_gen = &dd;
    auto fwd = [](const nn::MultiHeadSelfAttention& a, const std::vector<Tensor>& x) { return a.forward(x[0], x[1]); };
    check_parity("attention (train, dropout)", m, {grad_in(rnd({2, 5, 8}, 22)), fixed_in(mask)}, fwd, kMatmul);
    CHECK(dc.offset() == dd.offset());
    check_parity("attention (i64 mask)", m, {grad_in(rnd({2, 5, 8}, 23)), fixed_in(mask.to(DType::I64))}, fwd,
                 kMatmul);
    m.cpu->eval();
    m.dev->eval();
    check_parity("attention (eval, no mask)", m, {grad_in(rnd({3, 4, 8}, 24))},
                 [](const nn::MultiHeadSelfAttention& a, const std::vector<Tensor>& x) { return a.forward(x[0]); },
                 kMatmul);
    // Inference without autograd: the cpu takes its fused fast path (nn/attention_infer.h), the cuda
    // model the general one; both must agree.
    NoGradGuard no_grad;
    Tensor x = rnd({2, 6, 8}, 25);
    check_close("attention (no-grad inference)", m.cpu->forward(x), m.dev->forward(x.to(Device::CUDA)), kMatmul);
  }
}

TEST_CASE("TransformerEncoder on cuda matches the cpu (post-LN and pre-LN, mask, dropout)", "[cuda]") {
  Tensor mask = from_vector<int64_t>({0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0}, {2, 6});
  for (bool norm_first : {false, true}) {
    INFO("norm_first " << norm_first);
    Generator dc(31), dd(31);
    auto m = twins<nn::TransformerEncoder>([&] {
      Generator g(30);
      nn::TransformerEncoderLayerOptions o;
      o.d_model = 16;
      o.heads = 4;
      o.dim_feedforward = 32;
      o.dropout = 0.1;
      o.norm_first = norm_first;
      return std::make_shared<nn::TransformerEncoder>(o, 2, &g, /*final_norm=*/norm_first);
    });
    m.cpu->set_dropout_generator(&dc);
    m.dev->set_dropout_generator(&dd);
    check_parity("encoder", m, {grad_in(rnd({2, 6, 16}, 32)), fixed_in(mask)},
                 [](const nn::TransformerEncoder& e, const std::vector<Tensor>& x) { return e.forward(x[0], x[1]); },
                 kMatmul);
    CHECK(dc.offset() == dd.offset());
  }
}

TEST_CASE("Conv2d, MaxPool2d and LeNet on cuda match the cpu", "[cuda]") {
  auto conv = twins<nn::Conv2d>([] {
    Generator g(40);
    return std::make_shared<nn::Conv2d>(3, 4, 3, 2, 1, true, &g);
  });
  check_parity("Conv2d", conv, {grad_in(rnd({2, 3, 9, 9}, 41))},
               [](const nn::Conv2d& c, const std::vector<Tensor>& x) { return c.forward(x[0]); }, kMatmul);
  auto pool = twins<nn::MaxPool2d>([] { return std::make_shared<nn::MaxPool2d>(3, 2, 1); });
  check_parity("MaxPool2d", pool, {grad_in(rnd({2, 3, 9, 8}, 42))},
               // Overlapping windows: an input's gradient sums up to 4 window gradients, in any order.
               [](const nn::MaxPool2d& p, const std::vector<Tensor>& x) { return p.forward(x[0]); }, kElementwise);
  auto lenet = twins<nn::LeNet>([] {
    Generator g(43);
    return std::make_shared<nn::LeNet>(1, 6, 10, &g);
  });
  Tensor targets = from_vector<int64_t>({3, 9, 0}, {3});
  check_parity("LeNet + cross-entropy", lenet, {grad_in(rnd({3, 1, 20, 20}, 44, 0.0, 1.0)), fixed_in(targets)},
               [](const nn::LeNet& l, const std::vector<Tensor>& x) {
                 return cross_entropy(l.forward(x[0]), x[1]);
               },
               kMatmul);
}

TEST_CASE("losses on cuda match the cpu (cross-entropy with ignore_index, MSE)", "[cuda]") {
  auto ce = twins<nn::CrossEntropyLoss>([] { return std::make_shared<nn::CrossEntropyLoss>(-100); });
  Tensor targets = from_vector<int64_t>({4, -100, 0, 2, 2, 1}, {2, 3});
  check_parity("CrossEntropyLoss", ce, {grad_in(rnd({2, 3, 5}, 50, -3.0, 3.0)), fixed_in(targets)},
               [](const nn::CrossEntropyLoss& l, const std::vector<Tensor>& x) { return l.forward(x[0], x[1]); },
               kMatmul);
  check_parity("CrossEntropyLoss, i32 targets, every target ignored", ce,
               {grad_in(rnd({3, 4}, 51)), fixed_in(full({3}, -100, DType::I32))},
               [](const nn::CrossEntropyLoss& l, const std::vector<Tensor>& x) { return l.forward(x[0], x[1]); },
               kExact);
  auto mse = twins<nn::MSELoss>([] { return std::make_shared<nn::MSELoss>(); });
  check_parity("MSELoss", mse, {grad_in(rnd({4, 3}, 52)), grad_in(rnd({4, 3}, 53))},
               [](const nn::MSELoss& l, const std::vector<Tensor>& x) { return l.forward(x[0], x[1]); }, kMatmul);
}

// ---------------------------------------------------------------- mux models

TEST_CASE("Multiplexer variants on cuda match the cpu", "[cuda]") {
  struct Case {
    mux::MuxKind kind;
    bool learned;
  };
  for (Case c : {Case{mux::MuxKind::GaussianHadamard, false}, Case{mux::MuxKind::GaussianHadamard, true},
                 Case{mux::MuxKind::BinaryHadamard, false}, Case{mux::MuxKind::RandomOrtho, false},
                 Case{mux::MuxKind::RandomOrtho, true}}) {
    INFO(mux::mux_kind_name(c.kind) << (c.learned ? " (learned)" : " (fixed)"));
    auto m = twins<mux::Multiplexer>([&] {
      Generator g(60);
      mux::MuxOptions o;
      o.kind = c.kind;
      o.n = 3;
      o.dim = 8;
      o.learned = c.learned;
      o.norm = 2.0;
      o.epsilon = 0.5;
      return std::make_shared<mux::Multiplexer>(o, &g);
    });
    check_parity("Multiplexer", m, {grad_in(rnd({6, 4, 8}, 61))},
                 [](const mux::Multiplexer& x, const std::vector<Tensor>& in) { return x.forward(in[0]); }, kMatmul);
  }
}

TEST_CASE("Demultiplexer and RetrievalHead variants on cuda match the cpu", "[cuda]") {
  const int64_t n = 3, d = 8, B = 2, Lp = 7;
  for (mux::DemuxKind kind : {mux::DemuxKind::Index, mux::DemuxKind::Mlp}) {
    for (bool token : {false, true}) {
      INFO(mux::demux_kind_name(kind) << (token ? " token" : " sequence"));
      auto m = twins<mux::Demultiplexer>([&] {
        Generator g(70);
        mux::DemuxOptions o;
        o.kind = kind;
        o.n = n;
        o.dim = d;
        o.num_classes = 4;
        o.token_level = token;
        return std::make_shared<mux::Demultiplexer>(o, &g);
      });
      check_parity("Demultiplexer", m, {grad_in(rnd({B, Lp, d}, 71))},
                   [](const mux::Demultiplexer& x, const std::vector<Tensor>& in) { return x.forward(in[0]); },
                   kMatmul);
    }
    INFO(mux::demux_kind_name(kind) << " retrieval");
    auto r = twins<mux::RetrievalHead>([&] {
      Generator g(72);
      return std::make_shared<mux::RetrievalHead>(kind, n, d, 11, &g);
    });
    check_parity("RetrievalHead", r, {grad_in(rnd({B, Lp, d}, 73)), fixed_in(ints({B, Lp}, n, 74))},
                 [](const mux::RetrievalHead& x, const std::vector<Tensor>& in) { return x.forward(in[0], in[1]); },
                 kMatmul);
    check_parity("RetrievalHead::forward_all", r, {grad_in(rnd({B, Lp, d}, 75))},
                 [](const mux::RetrievalHead& x, const std::vector<Tensor>& in) { return x.forward_all(in[0]); },
                 kMatmul);
  }
}

namespace {

mux::TMuxConfig tmux_config(mux::DemuxKind demux, const std::string& task, mux::MuxKind kind, bool learned,
                            double dropout) {
  mux::TMuxConfig c;
  c.vocab = 13;
  c.max_len = 5;
  c.n = 3;
  c.d_model = 16;
  c.heads = 2;
  c.dim_feedforward = 32;
  c.layers = 2;
  c.dropout = dropout;
  c.mux = kind;
  c.learned_keys = learned;
  c.key_norm = 2.0;
  c.mux_epsilon = 0.25;
  c.demux = demux;
  c.task = task;
  c.num_classes = 4;
  c.pad_id = 0;
  if (task != "retrieval") {
    c.task_coeff = 0.7;
    c.retrieval_coeff = 0.3;
  }
  return c;
}

Twins<mux::TMux> tmux_twins(const mux::TMuxConfig& c, uint64_t seed) {
  return twins<mux::TMux>([&] {
    Generator g(seed);
    return std::make_shared<mux::TMux>(c, &g);
  });
}

// Labels for the task of c: sequence (B·N), token (B·N, L) with some -100.
Tensor tmux_labels(const mux::TMuxConfig& c, int64_t rows, uint64_t seed) {
  if (c.task == "sequence") return ints({rows}, c.num_classes, seed);
  if (c.task == "token") {
    Tensor l = ints({rows, c.max_len}, c.num_classes, seed);
    l.narrow(1, c.max_len - 1, 1).fill_(-100);
    return l;
  }
  return Tensor();
}

// Forward on both twins with the same dropout draws (default generator) and queried instances (k_gen),
// compares every output; returns both outputs.
std::pair<mux::TMuxOutput, mux::TMuxOutput> tmux_forward_both(Twins<mux::TMux>& m, const Tensor& ids,
                                                              const Tensor& labels, uint64_t seed) {
  Generator kc(seed), kd(seed);
  manual_seed(seed + 1);
  mux::TMuxOutput a = m.cpu->forward(ids, labels, &kc);
  manual_seed(seed + 1);
  mux::TMuxOutput b = m.dev->forward(ids.to(Device::CUDA), labels.defined() ? labels.to(Device::CUDA) : labels, &kd);
  CHECK(kc.offset() == kd.offset());
  check_close("task logits", a.task_logits, b.task_logits, kMatmul);
  check_close("retrieval logits", a.retrieval_logits, b.retrieval_logits, kMatmul);
  check_close("retrieval targets", a.retrieval_targets, b.retrieval_targets, kExact);
  check_close("queried instances", a.instance, b.instance, kExact);
  check_close("task loss", a.task_loss, b.task_loss, kMatmul);
  check_close("retrieval loss", a.retrieval_loss, b.retrieval_loss, kMatmul);
  check_close("loss", a.loss, b.loss, kMatmul);
  return {a, b};
}

}  // namespace

TEST_CASE("T-MUX on cuda matches the cpu for each multiplexer and demultiplexer variant", "[cuda]") {
  struct Case {
    mux::DemuxKind demux;
    const char* task;
    mux::MuxKind mux;
    bool learned;
    double dropout;
  };
  const Case cases[] = {
      {mux::DemuxKind::Index, "retrieval", mux::MuxKind::GaussianHadamard, false, 0.0},
      {mux::DemuxKind::Index, "sequence", mux::MuxKind::BinaryHadamard, false, 0.1},
      {mux::DemuxKind::Mlp, "sequence", mux::MuxKind::GaussianHadamard, true, 0.1},
      {mux::DemuxKind::Index, "token", mux::MuxKind::RandomOrtho, false, 0.0},
      {mux::DemuxKind::Mlp, "token", mux::MuxKind::RandomOrtho, true, 0.1},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    ++seed;
    INFO(mux::demux_kind_name(c.demux) << " demux, " << c.task << " task, " << mux::mux_kind_name(c.mux)
                                       << (c.learned ? " learned" : "") << ", dropout " << c.dropout);
    const mux::TMuxConfig cfg = tmux_config(c.demux, c.task, c.mux, c.learned, c.dropout);
    auto m = tmux_twins(cfg, seed);
    const int64_t rows = 2 * cfg.n;
    Tensor ids = ints({rows, cfg.max_len}, cfg.vocab, seed + 10);
    Tensor labels = tmux_labels(cfg, rows, seed + 20);
    auto [a, b] = tmux_forward_both(m, ids, labels, seed + 30);
    a.loss.backward();
    b.loss.backward();
    check_param_grads("T-MUX", *m.cpu, *m.dev, kMatmul);

    // Evaluation without autograd: the cpu model takes its fused embedding + multiplexer and
    // attention fast paths, the cuda model the general ones.
    m.cpu->eval();
    m.dev->eval();
    NoGradGuard no_grad;
    check_close("encode (eval, no grad)", m.cpu->encode(ids), m.dev->encode(ids.to(Device::CUDA)), kMatmul);
    if (m.dev->retrieval) {
      Tensor r = m.dev->retrieve_all(ids.to(Device::CUDA));
      CHECK(r.device() == Device::CUDA);
      CHECK(r.shape() == m.cpu->retrieve_all(ids).shape());
    }
    if (m.dev->demux) {
      Tensor p = m.dev->predict(ids.to(Device::CUDA));
      CHECK(p.device() == Device::CUDA);
      CHECK(p.shape() == m.cpu->predict(ids).shape());
    }
  }
}

TEST_CASE("vision mux models on cuda match the cpu (ImageMux kinds, CnnMux, MlpMux, HadamardMux)", "[cuda]") {
  for (mux::ImageMuxKind kind : {mux::ImageMuxKind::Gaussian, mux::ImageMuxKind::Learnable,
                                 mux::ImageMuxKind::Nonlinear, mux::ImageMuxKind::NonlinearExpand,
                                 mux::ImageMuxKind::Ortho}) {
    INFO(mux::image_mux_kind_name(kind));
    auto m = twins<mux::ImageMux>([&] {
      Generator g(80);
      mux::ImageMuxOptions o;
      o.kind = kind;
      o.n = 2;
      o.in_channels = 2;
      o.height = 5;
      o.width = 6;
      o.hidden_channels = 3;
      o.expand_channels = 4;
      return std::make_shared<mux::ImageMux>(o, &g);
    });
    check_parity("ImageMux", m, {grad_in(rnd({4, 2, 5, 6}, 81))},
                 [](const mux::ImageMux& x, const std::vector<Tensor>& in) { return x.forward(in[0]); }, kMatmul);
  }
  Tensor targets = from_vector<int64_t>({1, 0, 7, 9}, {4});
  auto cnn = twins<mux::CnnMux>([] {
    Generator g(82);
    return std::make_shared<mux::CnnMux>(2, mux::ImageMuxKind::Gaussian, &g);
  });
  check_parity("CnnMux + cross-entropy", cnn, {grad_in(rnd({4, 1, 20, 20}, 83, 0.0, 1.0)), fixed_in(targets)},
               [](const mux::CnnMux& x, const std::vector<Tensor>& in) {
                 return cross_entropy(x.forward(in[0]), in[1]);
               },
               kMatmul);
  auto mlp = twins<mux::MlpMux>([] {
    Generator g(84);
    mux::MlpMuxOptions o;
    o.n = 2;
    o.in_features = 16;
    o.hidden = 8;
    o.num_classes = 10;
    return std::make_shared<mux::MlpMux>(o, &g);
  });
  check_parity("MlpMux (B·N, 1, 4, 4) input", mlp, {grad_in(rnd({4, 1, 4, 4}, 85))},
               [](const mux::MlpMux& x, const std::vector<Tensor>& in) { return x.forward(in[0]); }, kMatmul);
  auto had = twins<mux::HadamardMux>([] {
    Generator g(86);
    return std::make_shared<mux::HadamardMux>(3, 5, &g);
  });
  check_parity("HadamardMux", had, {grad_in(rnd({6, 5}, 87))},
               [](const mux::HadamardMux& x, const std::vector<Tensor>& in) { return x.forward(in[0]); }, kMatmul);
}

// ---------------------------------------------------------------- gradient checks computed on the device

TEST_CASE("gradcheck (f64) of functions computed on cuda", "[cuda]") {
  // gradcheck perturbs cpu leaves; f moves them over (differentiably) and computes on the device.
  auto on = [](const Tensor& t) { return t.to(Device::CUDA); };
  auto f64 = [](const Shape& shape, uint64_t seed) { return test::random_tensor(shape, DType::F64, seed, -1.0, 1.0); };
  Tensor mask = from_vector<int64_t>({0, 0, 1, 0, 0, 0}, {2, 3});
  GradcheckResult att = gradcheck(
      [&](const std::vector<Tensor>& in) { return scaled_dot_product_attention(on(in[0]), on(in[1]), on(in[2]), on(in[3])); },
      {f64({2, 2, 3, 4}, 1), f64({2, 2, 3, 4}, 2), f64({2, 2, 3, 5}, 3), mask});
  INFO(att.report());
  CHECK(att.ok);
  Tensor targets = from_vector<int64_t>({2, -100, 0, 1}, {4});
  GradcheckResult ln = gradcheck(
      [&](const std::vector<Tensor>& in) {
        Tensor h = gelu(layer_norm(on(in[0]), on(in[1]), on(in[2])));
        return cross_entropy(linear(h, on(in[3]), Tensor()), on(in[4]));
      },
      {f64({4, 6}, 4), f64({6}, 5), f64({6}, 6), f64({3, 6}, 7), targets});
  INFO(ln.report());
  CHECK(ln.ok);
  GradcheckResult conv = gradcheck(
      [&](const std::vector<Tensor>& in) {
        return max_pool2d(tanh(conv2d(on(in[0]), on(in[1]), on(in[2]), 1, 1)), 2);
      },
      {f64({2, 2, 5, 5}, 8), f64({3, 2, 3, 3}, 9), f64({3}, 10)});
  INFO(conv.report());
  CHECK(conv.ok);
}

// ---------------------------------------------------------------- training on the device

TEST_CASE("one full T-MUX training step on cuda matches the cpu (loss, all gradients, clipping, AdamW)",
          "[cuda]") {
  const mux::TMuxConfig cfg =
      tmux_config(mux::DemuxKind::Index, "sequence", mux::MuxKind::GaussianHadamard, true, 0.1);
  auto m = tmux_twins(cfg, 200);
  m.cpu->pack_parameters();
  m.dev->pack_parameters();  // the arenas are allocated on the parameters' device
  REQUIRE(m.dev->param_arena().device() == Device::CUDA);
  REQUIRE(m.dev->grad_arena().device() == Device::CUDA);
  nn::AdamW oc(*m.cpu, 1e-2, 0.9, 0.999, 1e-8, 0.01), od(*m.dev, 1e-2, 0.9, 0.999, 1e-8, 0.01);
  CHECK(od.fused());
  const int64_t rows = 4 * cfg.n;
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    Tensor ids = ints({rows, cfg.max_len}, cfg.vocab, 210 + step);
    Tensor labels = tmux_labels(cfg, rows, 220 + step);
    oc.zero_grad();
    od.zero_grad();
    auto [a, b] = tmux_forward_both(m, ids, labels, 230 + step);
    a.loss.backward();
    b.loss.backward();
    check_param_grads("T-MUX step", *m.cpu, *m.dev, kMatmul);
    // Clip hard enough that the clipping changes every gradient.
    const double nc = nn::clip_grad_norm(*m.cpu, 0.1), nd = nn::clip_grad_norm(*m.dev, 0.1);
    CHECK(nc > 0.1);
    CHECK(std::abs(nd - nc) <= 1e-4 * nc);
    CHECK(nn::grad_norm(*m.dev) == Approx(nn::grad_norm(*m.cpu)).epsilon(1e-4));
    check_param_grads("T-MUX step, clipped", *m.cpu, *m.dev, kMatmul);
    // Both optimizers step from the SAME gradients (the device's, copied to the cpu; a no-op under
    // emulation): some gradients are pure rounding noise on both devices — e.g. the attention's key
    // bias, whose exact gradient is 0 because softmax ignores a per-row shift — and AdamW turns noise
    // of either sign into a full ±lr step. The gradients themselves were compared just above.
    {
      NoGradGuard no_grad;
      m.cpu->grad_arena().copy_(m.dev->grad_arena());
    }
    oc.step();
    od.step();
    check_params("after the AdamW step", *m.cpu, *m.dev, kStep);
  }
  // The optimizer's state lives on the device and equals the cpu's.
  nn::OptimizerState sc = oc.state(), sd = od.state();
  REQUIRE(sc.tensors.size() == sd.tensors.size());
  for (size_t i = 0; i < sc.tensors.size(); ++i) {
    const std::string& name = sc.tensors[i].first;
    REQUIRE(name == sd.tensors[i].first);
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".step") == 0) {
      CHECK(sd.tensors[i].second.item<int64_t>() == 2);
      continue;
    }
    check_close("optimizer state " + name, sc.tensors[i].second, sd.tensors[i].second, kStep);
  }
}

TEST_CASE("SGD with momentum and unpacked AdamW keep their state on cuda; gradient clipping on cuda", "[cuda]") {
  auto build = [] {
    Generator g(300);
    return std::make_shared<nn::MLP>(std::vector<int64_t>{5, 12, 4}, nn::Activation::Relu, 0.0,
                                     nn::Activation::Identity, &g);
  };
  for (bool adamw : {false, true}) {
    INFO((adamw ? "AdamW" : "SGD"));
    auto m = twins<nn::MLP>(build);
    std::unique_ptr<nn::Optimizer> oc, od;
    if (adamw) {
      oc = std::make_unique<nn::AdamW>(*m.cpu, 5e-3);
      od = std::make_unique<nn::AdamW>(*m.dev, 5e-3);
    } else {
      oc = std::make_unique<nn::SGD>(*m.cpu, 0.05, 0.9, 1e-3, true);
      od = std::make_unique<nn::SGD>(*m.dev, 0.05, 0.9, 1e-3, true);
    }
    CHECK_FALSE(od->fused());
    for (int step = 0; step < 3; ++step) {
      INFO("step " << step);
      oc->zero_grad();
      od->zero_grad();
      Tensor x = rnd({6, 5}, 310 + step);
      project(m.cpu->forward(x)).backward();
      project(m.dev->forward(x.to(Device::CUDA))).backward();
      const std::vector<Tensor> pc = m.cpu->parameters(), pd = m.dev->parameters();
      const double nc = nn::clip_grad_norm(pc, 0.5), nd = nn::clip_grad_norm(pd, 0.5);
      CHECK(std::abs(nd - nc) <= 1e-4 * nc);
      check_param_grads("clipped", *m.cpu, *m.dev, kMatmul);
      oc->step();
      od->step();
      check_params("after the step", *m.cpu, *m.dev, kStep);
    }
    for (const auto& [name, t] : od->state().tensors) {
      INFO(name);
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".step") == 0) continue;
      CHECK(t.device() == Device::CUDA);
    }
  }
  // An optimizer built before the model moved holds state on the old device: step() says so.
  auto late = build();
  nn::SGD stale(*late, 0.1, 0.9);
  late->to(Device::CUDA);
  project(late->forward(rnd({2, 5}, 320).to(Device::CUDA))).backward();
  REQUIRE_THROWS_WITH(stale.step(), Catch::Contains("is now on cuda, its state on cpu"));
}

// ---------------------------------------------------------------- checkpoints across devices

TEST_CASE("checkpoints move between cuda and cpu models unchanged (weights and training state)", "[cuda]") {
  const mux::TMuxConfig cfg = tmux_config(mux::DemuxKind::Mlp, "sequence", mux::MuxKind::RandomOrtho, false, 0.0);
  const std::string path = "/tmp/muxnet_test_cuda_models.safetensors";
  auto build = [&](uint64_t seed) {
    Generator g(seed);
    return std::make_shared<mux::TMux>(cfg, &g);
  };
  auto check_same_state = [](const std::string& what, const nn::Module& a, const nn::Module& b) {
    auto sa = a.state(), sb = b.state();
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      INFO(what << ": " << sa[i].first);
      REQUIRE(sa[i].first == sb[i].first);
      CHECK(sa[i].second.to_vector<double>() == sb[i].second.to_vector<double>());
    }
  };
  {  // cuda -> cpu
    auto dev = build(400);
    dev->to(Device::CUDA);
    nn::save_checkpoint(path, *dev, {{"from", "cuda"}});
    auto cpu = build(401);
    nn::LoadedCheckpoint l = nn::load_checkpoint(path, *cpu);
    CHECK(l.metadata.at("from") == "cuda");
    check_same_state("cuda -> cpu", *dev, *cpu);
    for (auto& [name, t] : cpu->state()) CHECK(t.device() == Device::CPU);
  }
  {  // cpu -> cuda
    auto cpu = build(402);
    nn::save_checkpoint(path, *cpu);
    auto dev = build(403);
    dev->to(Device::CUDA);
    nn::load_checkpoint(path, *dev);
    check_same_state("cpu -> cuda", *cpu, *dev);
    for (auto& [name, t] : dev->state()) CHECK(t.device() == Device::CUDA);
    nn::PartialLoad p = nn::load_matching(path, *dev);
    CHECK(p.fresh.empty());
    CHECK(p.mismatched.empty());
    check_same_state("cpu -> cuda (load_matching)", *cpu, *dev);
  }
  {  // a training checkpoint written on cuda resumes on the cpu, and back
    auto dev = build(404);
    dev->to(Device::CUDA);
    dev->pack_parameters();
    nn::AdamW od(*dev, 1e-2);
    Tensor ids = ints({2 * cfg.n, cfg.max_len}, cfg.vocab, 405);
    Tensor labels = tmux_labels(cfg, 2 * cfg.n, 406);
    Generator kg(407);
    dev->forward(ids.to(Device::CUDA), labels.to(Device::CUDA), &kg).loss.backward();
    od.step();
    nn::save_training_checkpoint(path, *dev, od, {{"k", &kg}});
    auto cpu = build(408);
    nn::AdamW oc(*cpu, 1e-3);
    Generator kc(0);
    nn::load_training_checkpoint(path, *cpu, oc, {{"k", &kc}});
    check_same_state("training checkpoint cuda -> cpu", *dev, *cpu);
    CHECK(kc.offset() == kg.offset());
    CHECK(oc.step_count() == 1);
    auto sc = oc.state(), sd = od.state();
    REQUIRE(sc.tensors.size() == sd.tensors.size());
    for (size_t i = 0; i < sc.tensors.size(); ++i) {
      INFO(sc.tensors[i].first);
      CHECK(sc.tensors[i].second.to_vector<double>() == sd.tensors[i].second.to_vector<double>());
    }
    // And back onto a fresh cuda model and optimizer.
    nn::save_training_checkpoint(path, *cpu, oc);
    auto dev2 = build(409);
    dev2->to(Device::CUDA);
    nn::AdamW od2(*dev2, 1e-3);
    nn::load_training_checkpoint(path, *dev2, od2);
    check_same_state("training checkpoint cpu -> cuda", *cpu, *dev2);
    auto sd2 = od2.state();
    for (size_t i = 0; i < sc.tensors.size(); ++i) {
      INFO(sc.tensors[i].first);
      CHECK(sc.tensors[i].second.to_vector<double>() == sd2.tensors[i].second.to_vector<double>());
    }
  }
  std::remove(path.c_str());
}
