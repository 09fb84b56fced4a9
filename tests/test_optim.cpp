// test_optim.cpp — SGD and AdamW against hand-computed updates, packed (fused arena) vs per-parameter
// runs, thread-count independence, state export/import, LR schedules and gradient-norm clipping.
//
// What this is not: a PyTorch parity test (fixtures come later); the hand-computed values below follow
// torch.optim's documented update rules step by step.
#include <cmath>
#include <cstring>

#include "autograd/functions.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::nn;

namespace {

// Hand-computed f64 values: only the rounding of a few operations separates the kernel from the
// formula evaluated in the test.
constexpr double kHandTol = 1e-14;

// A scalar parameter (shape (1)) that requires grad.
Tensor scalar_param(double v, DType dtype = DType::F64) { return from_vector<double>({v}).to(dtype).requires_grad_(); }

void set_grad(const Tensor& p, double g) { p.set_grad(full(p.shape(), g, p.dtype())); }

double value(const Tensor& p) { return p.detach().to(DType::F64).item(); }

struct Mlp : Module {
  std::shared_ptr<Linear> fc1, fc2;
  Mlp(int64_t in, int64_t hidden, int64_t out, uint64_t seed) {
    Generator gen(seed);
    fc1 = register_module("fc1", std::make_shared<Linear>(in, hidden, true, &gen));
    fc2 = register_module("fc2", std::make_shared<Linear>(hidden, out, true, &gen));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(tanh(fc1->forward(x))); }
};

// One training step on a batch that depends only on the step index.
double train_step(Mlp& net, Optimizer& opt, int64_t in, int64_t out, int64_t step) {
  Tensor x = test::random_tensor({8, in}, DType::F32, 1000 + uint64_t(step));
  Tensor y = test::random_tensor({8, out}, DType::F32, 2000 + uint64_t(step));
  opt.zero_grad();
  Tensor loss = mse_loss(net.forward(x), y);
  loss.backward();
  opt.step();
  return loss.item();
}

// Every parameter of a and b is bit-identical.
bool same_bits(const Module& a, const Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i) {
    Tensor x = pa[i].second.detach().contiguous(), y = pb[i].second.detach().contiguous();
    if (x.shape() != y.shape() || std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * x.element_size()) != 0) {
      return false;
    }
  }
  return true;
}

// Restores the thread count when a test ends.
struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

}  // namespace

TEST_CASE("SGD without momentum: p -= lr * (g + wd * p)", "[nn][nn-optim]") {
  for (DType dt : {DType::F64, DType::F32}) {
    INFO("dtype " << dt);
    const double tol = dt == DType::F64 ? kHandTol : 1e-6;
    Tensor p = scalar_param(1.0, dt);
    SGD opt(std::vector<Tensor>{p}, /*lr=*/0.1);
    set_grad(p, 0.5);
    opt.step();
    CHECK(value(p) == Approx(0.95).margin(tol));  // 1 - 0.1 * 0.5
    set_grad(p, -0.25);
    opt.step();
    CHECK(value(p) == Approx(0.975).margin(tol));  // 0.95 + 0.1 * 0.25
    set_grad(p, 1.0);
    opt.step();
    CHECK(value(p) == Approx(0.875).margin(tol));  // 0.975 - 0.1
    CHECK(opt.step_count() == 3);
  }
}

TEST_CASE("SGD with momentum and weight decay, hand-computed over 3 steps", "[nn][nn-optim]") {
  // lr 0.1, momentum 0.9, weight_decay 0.1; gradients 0.5, -0.25, 1.0; p0 = 1.
  //   step 1: d = 0.5 + 0.1 * 1 = 0.6;            b = d = 0.6 (first step);       p = 1 - 0.06 = 0.94
  //   step 2: d = -0.25 + 0.1 * 0.94 = -0.156;    b = 0.9 * 0.6 - 0.156 = 0.384;   p = 0.94 - 0.0384 = 0.9016
  //   step 3: d = 1 + 0.1 * 0.9016 = 1.09016;     b = 0.9 * 0.384 + 1.09016 = 1.43576;  p = 0.9016 - 0.143576 = 0.758024
  // A second scalar q0 = -2 with gradients 1, 1, 1 and the same settings:
  //   step 1: d = 1 - 0.2 = 0.8;     b = 0.8;                  q = -2 - 0.08 = -2.08
  //   step 2: d = 1 - 0.208 = 0.792; b = 0.72 + 0.792 = 1.512; q = -2.08 - 0.1512 = -2.2312
  //   step 3: d = 1 - 0.22312 = 0.77688; b = 1.3608 + 0.77688 = 2.13768; q = -2.2312 - 0.213768 = -2.444968
  for (DType dt : {DType::F64, DType::F32}) {
    INFO("dtype " << dt);
    const double tol = dt == DType::F64 ? kHandTol : 2e-6;
    Tensor p = scalar_param(1.0, dt), q = scalar_param(-2.0, dt);
    SGD opt(std::vector<Tensor>{p, q}, 0.1, /*momentum=*/0.9, /*weight_decay=*/0.1);
    const double gp[] = {0.5, -0.25, 1.0};
    const double want_p[] = {0.94, 0.9016, 0.758024}, want_q[] = {-2.08, -2.2312, -2.444968};
    for (int s = 0; s < 3; ++s) {
      set_grad(p, gp[s]);
      set_grad(q, 1.0);
      opt.step();
      CHECK(value(p) == Approx(want_p[s]).margin(tol));
      CHECK(value(q) == Approx(want_q[s]).margin(tol));
    }
    OptimizerState st = opt.state();
    CHECK(st.tensors[0].first == "optim.0.momentum_buffer");
    CHECK(st.tensors[0].second.item() == Approx(1.43576).margin(tol));
    CHECK(st.tensors[1].first == "optim.0.step");
    CHECK(st.tensors[1].second.item<int64_t>() == 3);
  }
}

TEST_CASE("SGD with Nesterov momentum, hand-computed over 3 steps", "[nn][nn-optim]") {
  // lr 0.1, momentum 0.9, nesterov; gradients 0.5, -0.25, 1.0; p0 = 1.
  //   step 1: b = 0.5;                 d = 0.5 + 0.9 * 0.5 = 0.95;     p = 1 - 0.095 = 0.905
  //   step 2: b = 0.45 - 0.25 = 0.2;   d = -0.25 + 0.18 = -0.07;       p = 0.905 + 0.007 = 0.912
  //   step 3: b = 0.18 + 1 = 1.18;     d = 1 + 1.062 = 2.062;          p = 0.912 - 0.2062 = 0.7058
  // Plain momentum on the same gradients: p = 0.95, 0.93, 0.812 (b = 0.5, 0.2, 1.18).
  Tensor p = scalar_param(1.0), q = scalar_param(1.0);
  SGD nest(std::vector<Tensor>{p}, 0.1, 0.9, 0.0, /*nesterov=*/true);
  SGD plain(std::vector<Tensor>{q}, 0.1, 0.9);
  const double g[] = {0.5, -0.25, 1.0};
  const double want_nest[] = {0.905, 0.912, 0.7058}, want_plain[] = {0.95, 0.93, 0.812};
  for (int s = 0; s < 3; ++s) {
    set_grad(p, g[s]);
    set_grad(q, g[s]);
    nest.step();
    plain.step();
    CHECK(value(p) == Approx(want_nest[s]).margin(kHandTol));
    CHECK(value(q) == Approx(want_plain[s]).margin(kHandTol));
  }
}

TEST_CASE("AdamW hand-computed over 3 steps (decoupled weight decay, bias correction)", "[nn][nn-optim]") {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1; p0 = 1; gradients 0.5, -0.25, 1.0.
  // Each step: p *= 1 - lr * wd = 0.99;  m = 0.9 m + 0.1 g;  v = 0.999 v + 0.001 g^2;
  //            p -= lr * (m / (1 - 0.9^t)) / (sqrt(v / (1 - 0.999^t)) + eps).
  //   step 1: m = 0.05;  v = 0.00025;                       m_hat = 0.5;          v_hat = 0.25
  //   step 2: m = 0.045 - 0.025 = 0.02;  v = 0.00024975 + 0.0000625 = 0.00031225;  bc1 = 0.19, bc2 = 0.001999
  //   step 3: m = 0.018 + 0.1 = 0.118;   v = 0.00031193775 + 0.001 = 0.00131193775;  bc1 = 0.271, bc2 = 0.002997001
  const double eps = 1e-8;
  const double p1 = 1.0 * 0.99 - 0.1 * 0.5 / (std::sqrt(0.25) + eps);
  const double p2 = p1 * 0.99 - 0.1 * (0.02 / 0.19) / (std::sqrt(0.00031225 / 0.001999) + eps);
  const double p3 = p2 * 0.99 - 0.1 * (0.118 / 0.271) / (std::sqrt(0.00131193775 / 0.002997001) + eps);
  // A second scalar q0 = -3 with gradient 2 every step: m = 0.2, 0.38, 0.542; v = 0.004, 0.007996, 0.011988004.
  const double q1 = -3.0 * 0.99 - 0.1 * (0.2 / 0.1) / (std::sqrt(0.004 / 0.001) + eps);
  const double q2 = q1 * 0.99 - 0.1 * (0.38 / 0.19) / (std::sqrt(0.007996 / 0.001999) + eps);
  const double q3 = q2 * 0.99 - 0.1 * (0.542 / 0.271) / (std::sqrt(0.011988004 / 0.002997001) + eps);
  const double want_p[] = {p1, p2, p3}, want_q[] = {q1, q2, q3};
  const double gp[] = {0.5, -0.25, 1.0};
  for (DType dt : {DType::F64, DType::F32}) {
    INFO("dtype " << dt);
    const double tol = dt == DType::F64 ? 1e-13 : 2e-6;
    Tensor p = scalar_param(1.0, dt), q = scalar_param(-3.0, dt);
    AdamW opt(std::vector<Tensor>{p, q}, 0.1, 0.9, 0.999, eps, 0.1);
    for (int s = 0; s < 3; ++s) {
      set_grad(p, gp[s]);
      set_grad(q, 2.0);
      opt.step();
      CHECK(value(p) == Approx(want_p[s]).margin(tol));
      CHECK(value(q) == Approx(want_q[s]).margin(tol));
    }
    OptimizerState st = opt.state();
    REQUIRE(st.tensors.size() == 6);
    CHECK(st.tensors[0].first == "optim.0.exp_avg");
    CHECK(st.tensors[0].second.item() == Approx(0.118).margin(tol));
    CHECK(st.tensors[1].first == "optim.0.exp_avg_sq");
    CHECK(st.tensors[1].second.item() == Approx(0.00131193775).margin(tol * 1e-2));
    CHECK(st.scalars.at("lr") == 0.1);
    CHECK(st.scalars.at("step_count") == 3.0);
  }
}

TEST_CASE("AdamW defaults are torch.optim.AdamW's", "[nn][nn-optim]") {
  Tensor p = scalar_param(1.0);
  AdamW opt(std::vector<Tensor>{p});
  CHECK(opt.lr() == 1e-3);
  CHECK(opt.beta1 == 0.9);
  CHECK(opt.beta2 == 0.999);
  CHECK(opt.eps == 1e-8);
  CHECK(opt.weight_decay == 1e-2);
  // One step with g = 1: p = 1 * (1 - 1e-5) - 1e-3 * 1 / (1 + 1e-8).
  set_grad(p, 1.0);
  opt.step();
  CHECK(value(p) == Approx(1.0 - 1e-5 - 1e-3 / (1.0 + 1e-8)).margin(kHandTol));
}

TEST_CASE("parameters without a gradient are skipped, with their own step count", "[nn][nn-optim]") {
  Tensor p = scalar_param(1.0), q = scalar_param(5.0);
  AdamW opt(std::vector<Tensor>{p, q}, 0.1, 0.9, 0.999, 1e-8, 0.0);
  for (int s = 0; s < 2; ++s) {
    set_grad(p, 1.0);
    opt.step();
  }
  CHECK(value(q) == 5.0);  // q never had a gradient
  OptimizerState st = opt.state();
  CHECK(st.tensors[2].first == "optim.0.step");
  CHECK(st.tensors[2].second.item<int64_t>() == 2);
  CHECK(st.tensors[5].first == "optim.1.step");
  CHECK(st.tensors[5].second.item<int64_t>() == 0);
  // q's first update uses ITS step 1 bias correction: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps).
  set_grad(q, 4.0);
  opt.step();
  CHECK(value(q) == Approx(5.0 - 0.1 * 4.0 / (4.0 + 1e-8)).margin(kHandTol));
  CHECK(opt.step_count() == 3);
}

TEST_CASE("non-contiguous gradients and empty parameters", "[nn][nn-optim]") {
  // The same gradient stored transposed or strided gives the same update as a contiguous one.
  Tensor g = test::random_tensor({2, 3}, DType::F64, 9);
  for (int layout = 0; layout < 2; ++layout) {
    INFO("layout " << layout);
    Tensor p = test::random_tensor({2, 3}, DType::F64, 8).requires_grad_();
    Tensor q = p.detach().clone().requires_grad_();
    Tensor e = zeros({0, 3}, DType::F64).requires_grad_();
    AdamW op(std::vector<Tensor>{p, e}, 0.1), oq(std::vector<Tensor>{q}, 0.1);
    for (int s = 0; s < 2; ++s) {
      Tensor gp = layout == 0 ? test::transposed_layout(g) : test::strided_layout(g);
      REQUIRE_FALSE(gp.is_contiguous());
      p.set_grad(gp);
      e.set_grad(zeros({0, 3}, DType::F64));
      q.set_grad(g.clone());
      op.step();
      oq.step();
    }
    CHECK(allclose(p, q, 0, 0));
    CHECK(e.numel() == 0);
  }
  // clip_grad_norm scales a strided gradient in place.
  Tensor p = zeros({2, 3}, DType::F64).requires_grad_();
  p.set_grad(test::strided_layout(full({2, 3}, 2.0, DType::F64)));  // norm sqrt(6 * 4)
  CHECK(clip_grad_norm({p}, 1.0) == Approx(std::sqrt(24.0)).epsilon(1e-15));
  for (double v : p.grad().to_vector<double>()) CHECK(v == Approx(2.0 / (std::sqrt(24.0) + 1e-6)).epsilon(1e-15));
}

TEST_CASE("a packed model (one fused loop) matches the per-parameter run bit for bit", "[nn][nn-optim]") {
  for (int which = 0; which < 3; ++which) {
    INFO("optimizer #" << which);
    Mlp a(5, 12, 3, 7), b(5, 12, 3, 7);
    b.pack_parameters();
    REQUIRE(same_bits(a, b));
    std::unique_ptr<Optimizer> oa, ob;
    if (which == 0) {
      oa = std::make_unique<AdamW>(a, 0.01, 0.8, 0.99, 1e-6, 0.05);
      ob = std::make_unique<AdamW>(b, 0.01, 0.8, 0.99, 1e-6, 0.05);
    } else if (which == 1) {
      oa = std::make_unique<SGD>(a, 0.05, 0.9, 0.01, true);
      ob = std::make_unique<SGD>(b, 0.05, 0.9, 0.01, true);
    } else {
      oa = std::make_unique<SGD>(a, 0.05);
      ob = std::make_unique<SGD>(b, 0.05);
    }
    CHECK_FALSE(oa->fused());
    CHECK(ob->fused());
    for (int64_t s = 0; s < 5; ++s) {
      const double la = train_step(a, *oa, 5, 3, s), lb = train_step(b, *ob, 5, 3, s);
      CHECK(la == lb);
    }
    CHECK(same_bits(a, b));
    // The packed parameters still live in the arena.
    CHECK(b.fc1->weight.storage() == b.param_arena().storage());
    // The exported state has the same names and values in both modes.
    OptimizerState sa = oa->state(), sb = ob->state();
    REQUIRE(sa.tensors.size() == sb.tensors.size());
    for (size_t i = 0; i < sa.tensors.size(); ++i) {
      CHECK(sa.tensors[i].first == sb.tensors[i].first);
      CHECK(allclose(sa.tensors[i].second, sb.tensors[i].second, 0, 0));
    }
  }
}

TEST_CASE("optimizer steps give the same bits on 1 and 2 threads", "[nn][nn-optim]") {
  ThreadsGuard guard;
  // 64 * 64 + 64 + 64 * 8 + 8 = 4680 parameters: above the parallel threshold of the update loop.
  auto run = [](int threads, bool adamw) {
    set_num_threads(threads);
    auto net = std::make_unique<Mlp>(64, 64, 8, 3);
    net->pack_parameters();
    std::unique_ptr<Optimizer> opt;
    if (adamw) {
      opt = std::make_unique<AdamW>(*net, 0.01);
    } else {
      opt = std::make_unique<SGD>(*net, 0.01, 0.9, 1e-3);
    }
    for (int64_t s = 0; s < 3; ++s) train_step(*net, *opt, 64, 8, s);
    return net;
  };
  for (bool adamw : {true, false}) {
    auto one = run(1, adamw), two = run(2, adamw);
    CHECK(same_bits(*one, *two));
  }
}

TEST_CASE("optimizer state export and import resume the same trajectory", "[nn][nn-optim]") {
  // Train 3 steps, export; a second optimizer on a copy of the weights (packed this time) imports the
  // state; both continue for 3 steps and must agree bit for bit.
  Mlp a(4, 6, 2, 11), b(4, 6, 2, 99);
  AdamW oa(a, 0.02, 0.85, 0.995, 1e-7, 0.03);
  for (int64_t s = 0; s < 3; ++s) train_step(a, oa, 4, 2, s);
  {
    NoGradGuard no_grad;
    auto pa = a.parameters(), pb = b.parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  b.pack_parameters();
  AdamW ob(b);  // default hyperparameters: load_state restores the saved ones, as torch does
  ob.load_state(oa.state());
  CHECK(ob.lr() == 0.02);
  CHECK(ob.beta1 == 0.85);
  CHECK(ob.beta2 == 0.995);
  CHECK(ob.eps == 1e-7);
  CHECK(ob.weight_decay == 0.03);
  CHECK(ob.step_count() == 3);
  for (int64_t s = 3; s < 6; ++s) CHECK(train_step(a, oa, 4, 2, s) == train_step(b, ob, 4, 2, s));
  CHECK(same_bits(a, b));
}

TEST_CASE("optimizer load_state names what is wrong and changes nothing", "[nn][nn-optim]") {
  Tensor p = scalar_param(1.0), q = from_vector<double>({1, 2}).requires_grad_();
  AdamW opt(std::vector<Tensor>{p, q}, 0.1);
  set_grad(p, 1.0);
  set_grad(q, 1.0);
  opt.step();
  OptimizerState good = opt.state();

  OptimizerState missing = good;
  missing.tensors.erase(missing.tensors.begin() + 1);
  CHECK_THROWS_WITH(opt.load_state(missing), "AdamW::load_state: missing tensor 'optim.0.exp_avg_sq'");

  OptimizerState shape = good;
  shape.tensors[3].second = zeros({3}, DType::F64);
  CHECK_THROWS_WITH(opt.load_state(shape), "AdamW::load_state: 'optim.1.exp_avg' is f64 (3,), expected f64 (2,)");

  OptimizerState extra = good;
  extra.tensors.emplace_back("optim.2.exp_avg", zeros({1}, DType::F64));
  extra.tensors.emplace_back("model.weight", zeros({1}, DType::F64));  // no prefix: ignored
  CHECK_THROWS_WITH(opt.load_state(extra), "AdamW::load_state: unexpected tensor 'optim.2.exp_avg'");

  OptimizerState no_lr = good;
  no_lr.scalars.erase("lr");
  CHECK_THROWS_WITH(opt.load_state(no_lr), "AdamW::load_state: missing scalar 'lr'");

  SGD sgd(std::vector<Tensor>{p, q}, 0.1, 0.9);
  CHECK_THROWS_WITH(sgd.load_state(good), "SGD::load_state: missing tensor 'optim.0.momentum_buffer'");

  // Nothing was changed by the failed loads.
  OptimizerState now = opt.state();
  for (size_t i = 0; i < now.tensors.size(); ++i) CHECK(allclose(now.tensors[i].second, good.tensors[i].second, 0, 0));
  CHECK(opt.step_count() == 1);
}

TEST_CASE("optimizer construction and step errors", "[nn][nn-optim]") {
  Tensor p = scalar_param(1.0);
  CHECK_THROWS_WITH(SGD(std::vector<Tensor>{p}, 0.1, 0.0, 0.0, true), "SGD: nesterov needs a momentum > 0");
  CHECK_THROWS_WITH(SGD(std::vector<Tensor>{p}, -1.0), "SGD: invalid learning rate -1");
  CHECK_THROWS_WITH(AdamW(std::vector<Tensor>{p}, 0.1, 1.0), "AdamW: invalid beta1 1 (must be in [0, 1))");
  CHECK_THROWS_WITH(AdamW(std::vector<Tensor>{}), "AdamW: got an empty parameter list");
  CHECK_THROWS_WITH(SGD(std::vector<Tensor>{p.detach().expand({3})}, 0.1),
                    "SGD: parameter '0' is not contiguous");
  SGD opt(std::vector<Tensor>{p}, 0.1);
  CHECK_THROWS_WITH(opt.set_lr(-0.5), "SGD: invalid learning rate -0.5");

  // A packed model converted after the optimizer was built: step() says so instead of writing to the
  // old arena.
  Mlp net(3, 4, 2, 5);
  net.pack_parameters();
  AdamW adam(net);
  net.to(DType::F64);
  CHECK_THROWS_WITH(adam.step(), Catch::Contains("AdamW: parameter 'fc1.weight' is no longer in the arena"));
}

TEST_CASE("zero_grad clears the arena or each gradient", "[nn][nn-optim]") {
  Mlp a(3, 4, 2, 1), b(3, 4, 2, 1);
  b.pack_parameters();
  SGD oa(a, 0.1), ob(b, 0.1);
  train_step(a, oa, 3, 2, 0);
  train_step(b, ob, 3, 2, 0);
  CHECK(ops::sum(ops::abs(b.grad_arena())).item() > 0);
  oa.zero_grad();
  ob.zero_grad();
  CHECK(ops::sum(ops::abs(b.grad_arena())).item() == 0);
  for (const Tensor& p : a.parameters()) CHECK(ops::sum(ops::abs(p.grad())).item() == 0);
}

TEST_CASE("LR schedules: constant and linear warmup then linear decay (HF semantics)", "[nn][nn-optim]") {
  LRSchedule c = LRSchedule::constant(0.3);
  CHECK(c.lr_at(0) == 0.3);
  CHECK(c.lr_at(1000) == 0.3);
  // peak 1.0, warmup 4, total 10: step/4 for step < 4, then (10 - step) / 6, 0 from step 10 on.
  LRSchedule s = LRSchedule::linear_warmup(1.0, 4, 10);
  CHECK(s.lr_at(0) == 0.0);
  CHECK(s.lr_at(1) == 0.25);
  CHECK(s.lr_at(3) == 0.75);
  CHECK(s.lr_at(4) == 1.0);
  CHECK(s.lr_at(5) == Approx(5.0 / 6.0).epsilon(1e-15));
  CHECK(s.lr_at(7) == Approx(0.5).epsilon(1e-15));
  CHECK(s.lr_at(10) == 0.0);
  CHECK(s.lr_at(25) == 0.0);
  // peak 2e-3 scales every value; no warmup starts at the peak.
  LRSchedule n = LRSchedule::linear_warmup(2e-3, 0, 4);
  CHECK(n.lr_at(0) == 2e-3);
  CHECK(n.lr_at(1) == Approx(1.5e-3).epsilon(1e-15));
  CHECK(n.lr_at(4) == 0.0);
  // apply() sets the lr of the optimizer's next step from its step count.
  Tensor p = scalar_param(1.0);
  SGD opt(std::vector<Tensor>{p}, 123.0);
  s.apply(opt);
  CHECK(opt.lr() == 0.0);
  for (int i = 0; i < 5; ++i) {
    set_grad(p, 1.0);
    opt.step();
  }
  s.apply(opt);
  CHECK(opt.lr() == Approx(5.0 / 6.0).epsilon(1e-15));
  CHECK_THROWS_WITH(s.lr_at(-1), "LRSchedule::lr_at: negative step -1");
  CHECK_THROWS_WITH(LRSchedule::linear_warmup(1.0, -1, 5),
                    "LRSchedule::linear_warmup: step counts must be >= 0, got warmup -1 and total 5");
}

TEST_CASE("clip_grad_norm: total L2 norm, scaling by max_norm / (norm + 1e-6)", "[nn][nn-optim]") {
  // Gradients (3, 4) and (12): norm = sqrt(9 + 16 + 144) = 13.
  Tensor a = from_vector<double>({0, 0}).requires_grad_(), b = from_vector<double>({0}).requires_grad_();
  Tensor none = from_vector<double>({7}).requires_grad_();  // no gradient: skipped
  a.set_grad(from_vector<double>({3, 4}));
  b.set_grad(from_vector<double>({12}));
  CHECK(grad_norm({a, b, none}) == 13.0);
  const double norm = clip_grad_norm({a, b, none}, 6.5);
  CHECK(norm == 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  CHECK(a.grad().at({0}) == Approx(3 * coef).epsilon(1e-15));
  CHECK(a.grad().at({1}) == Approx(4 * coef).epsilon(1e-15));
  CHECK(b.grad().at({0}) == Approx(12 * coef).epsilon(1e-15));
  CHECK(grad_norm({a, b}) == Approx(6.5).epsilon(1e-6));

  // Below max_norm: the gradients are untouched, bit for bit.
  a.set_grad(from_vector<double>({3, 4}));
  b.set_grad(from_vector<double>({12}));
  CHECK(clip_grad_norm({a, b}, 13.5) == 13.0);
  CHECK(a.grad().to_vector<double>() == std::vector<double>{3, 4});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{12});

  // f32 gradients: the norm is accumulated in f64.
  Tensor c = from_vector<float>({0, 0}).requires_grad_();
  c.set_grad(from_vector<float>({1e20f, 1e20f}));  // squares overflow f32, not f64
  CHECK(grad_norm({c}) == Approx(std::sqrt(2.0) * double(1e20f)).epsilon(1e-15));
  CHECK_THROWS_WITH(clip_grad_norm({a}, -1.0), "clip_grad_norm: max_norm must be >= 0, got -1");
}

TEST_CASE("clip_grad_norm on a module: packed arena and per-parameter agree", "[nn][nn-optim]") {
  Mlp a(6, 10, 3, 21), b(6, 10, 3, 21);
  b.pack_parameters();
  for (Mlp* m : {&a, &b}) {
    Tensor loss = mse_loss(m->forward(test::random_tensor({5, 6}, DType::F32, 1)),
                           test::random_tensor({5, 3}, DType::F32, 2));
    loss.backward();
  }
  // Naive reference: the sum of squares of every gradient element, in double.
  double ref = 0;
  for (const Tensor& p : a.parameters()) {
    for (double g : p.grad().to_vector<double>()) ref += g * g;
  }
  ref = std::sqrt(ref);
  const double na = clip_grad_norm(a, 0.5 * ref), nb = clip_grad_norm(b, 0.5 * ref);
  CHECK(na == Approx(ref).epsilon(1e-14));
  CHECK(nb == Approx(ref).epsilon(1e-14));
  CHECK(grad_norm(a) == Approx(0.5 * ref).epsilon(1e-6));
  CHECK(grad_norm(b) == Approx(0.5 * ref).epsilon(1e-6));
}

TEST_CASE("the squared norm is thread-count independent on large gradients", "[nn][nn-optim]") {
  ThreadsGuard guard;
  Tensor p = zeros({40000}).requires_grad_();
  p.set_grad(test::random_tensor({40000}, DType::F32, 77));
  double ref = 0;
  for (double g : p.grad().to_vector<double>()) ref += g * g;
  set_num_threads(1);
  const double n1 = grad_norm({p});
  set_num_threads(2);
  const double n2 = grad_norm({p});
  CHECK(n1 == n2);
  CHECK(n1 == Approx(std::sqrt(ref)).epsilon(1e-13));
}
