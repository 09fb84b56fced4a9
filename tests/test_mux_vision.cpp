// test_mux_vision.cpp — the image multiplexers (mux/image_mux.h) and the multiplexed MLP / CNN
// (mux/vision_models.h): shapes for N = 1, 2, 4; forwards against naive loop references and against
// hand-computed numbers; gradchecks in f64 through every mux and both models; which tensors are
// trained; Haar matrices; N = 1 without muxing equals the plain models; error messages; and a short
// learning run (CnnMux, N = 2, gaussian mux) on noisy line segments.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <set>
#include <vector>

#include "mux/image_mux.h"
#include "mux/vision_models.h"
#include "nn/lenet.h"
#include "nn/loss.h"
#include "nn/mlp.h"
#include "nn/optim.h"
#include "tensor/cpu/blas.h"
#include "tensor/ops.h"
#include "tests/nn_test_util.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::mux;

namespace {

const std::vector<ImageMuxKind> kMuxKinds = {ImageMuxKind::Gaussian, ImageMuxKind::Learnable, ImageMuxKind::Nonlinear,
                                             ImageMuxKind::NonlinearExpand, ImageMuxKind::Ortho};

ImageMuxOptions mux_options(ImageMuxKind kind, int64_t n, int64_t c, int64_t h, int64_t w, int64_t hidden = 16,
                            int64_t expand = 8) {
  ImageMuxOptions o;
  o.kind = kind;
  o.n = n;
  o.in_channels = c;
  o.height = h;
  o.width = w;
  o.hidden_channels = hidden;
  o.expand_channels = expand;
  return o;
}

// The naive references, in double on flat row-major vectors.
// x: (Cin, H, W), w: (Cout, Cin, 3, 3) -> (Cout, H, W); cross-correlation with zero padding 1 (PyTorch's conv2d).
std::vector<double> conv3x3_ref(const std::vector<double>& x, int64_t cin, int64_t H, int64_t W,
                                const std::vector<double>& w, int64_t cout) {
  std::vector<double> out(size_t(cout * H * W), 0.0);
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < W; ++c) {
        double s = 0;
        for (int64_t ci = 0; ci < cin; ++ci)
          for (int64_t u = 0; u < 3; ++u)
            for (int64_t v = 0; v < 3; ++v) {
              const int64_t rr = r + u - 1, cc = c + v - 1;
              if (rr < 0 || rr >= H || cc < 0 || cc >= W) continue;
              s += w[size_t(((o * cin + ci) * 3 + u) * 3 + v)] * x[size_t((ci * H + rr) * W + cc)];
            }
        out[size_t((o * H + r) * W + c)] = s;
      }
  return out;
}

std::vector<double> slice_vec(const std::vector<double>& v, int64_t start, int64_t len) {
  return std::vector<double>(v.begin() + start, v.begin() + start + len);
}

// The mux of PAPER.md §1.7 written as loops: for mixed image b, Σ_i φ_i(x[b·N + i]) -> (B, C', H, W).
Tensor image_mux_ref(const ImageMux& m, const Tensor& x) {
  const ImageMuxOptions& o = m.options;
  const int64_t n = o.n, C = o.in_channels, H = x.size(2), W = x.size(3), B = x.size(0) / n, hw = H * W;
  const int64_t Co = m.output_channels(), Hd = o.hidden_channels;
  const std::vector<double> xv = x.to_vector<double>();
  std::vector<double> out(size_t(B * Co * hw), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<double> xi = slice_vec(xv, (b * n + i) * C * hw, C * hw);
      std::vector<double> y(size_t(Co * hw), 0.0);
      if (o.kind == ImageMuxKind::Gaussian || o.kind == ImageMuxKind::Learnable) {
        const std::vector<double> k = slice_vec(m.kernels.to_vector<double>(), i * 9, 9);
        for (int64_t c = 0; c < C; ++c) {
          const std::vector<double> yc = conv3x3_ref(slice_vec(xi, c * hw, hw), 1, H, W, k, 1);
          std::copy(yc.begin(), yc.end(), y.begin() + c * hw);
        }
      } else if (o.kind == ImageMuxKind::Ortho) {
        const std::vector<double> R = slice_vec(m.rotations.to_vector<double>(), i * hw * hw, hw * hw);
        for (int64_t c = 0; c < C; ++c)
          for (int64_t q = 0; q < hw; ++q) {
            double s = 0;
            for (int64_t p = 0; p < hw; ++p) s += xi[size_t(c * hw + p)] * R[size_t(p * hw + q)];
            y[size_t(c * hw + q)] = s;
          }
      } else {
        const std::vector<double> A = slice_vec(m.a.to_vector<double>(), i * Hd * C * 9, Hd * C * 9);
        const std::vector<double> Bw = slice_vec(m.b.to_vector<double>(), i * Co * Hd * 9, Co * Hd * 9);
        std::vector<double> h = conv3x3_ref(xi, C, H, W, A, Hd);
        for (double& v : h) v = std::tanh(v);
        y = conv3x3_ref(h, Hd, H, W, Bw, Co);
        for (double& v : y) v = std::tanh(v);
      }
      for (size_t e = 0; e < y.size(); ++e) out[size_t(b * Co * hw) + e] += y[e];
    }
  return from_vector<double>(out, {B, Co, H, W});
}

void copy_parameters(const nn::Module& from, const nn::Module& to) {
  NoGradGuard no_grad;
  std::vector<nn::NamedTensor> src = from.named_parameters(), dst = to.named_parameters();
  REQUIRE(src.size() == dst.size());
  for (size_t k = 0; k < src.size(); ++k) {
    REQUIRE(src[k].second.shape() == dst[k].second.shape());
    dst[k].second.copy_(src[k].second);
  }
}

std::set<std::string> names_of(const std::vector<nn::NamedTensor>& named) {
  std::set<std::string> s;
  for (const auto& [name, t] : named) s.insert(name);
  return s;
}

}  // namespace

TEST_CASE("image mux kinds parse and print", "[mux][mux-vision]") {
  for (ImageMuxKind k : kMuxKinds) CHECK(parse_image_mux_kind(image_mux_kind_name(k)) == k);
  CHECK(parse_image_mux_kind("none") == ImageMuxKind::None);
  CHECK(std::string(image_mux_kind_name(ImageMuxKind::NonlinearExpand)) == "nonlinear_expand");
  CHECK(parse_flat_mux_kind("gaussian_hadamard") == FlatMuxKind::GaussianHadamard);
  CHECK(parse_flat_mux_kind(flat_mux_kind_name(FlatMuxKind::None)) == FlatMuxKind::None);
  REQUIRE_THROWS_WITH(parse_image_mux_kind("Gaussian"),
                      "image mux: unknown kind 'Gaussian' (expected none, gaussian, learnable, nonlinear, "
                      "nonlinear_expand or ortho)");
  REQUIRE_THROWS_WITH(parse_flat_mux_kind("ortho"),
                      "flat mux: unknown kind 'ortho' (expected none or gaussian_hadamard)");
}

TEST_CASE("image muxes: output shapes for N = 1, 2, 4", "[mux][mux-vision]") {
  Generator gen(1);
  for (ImageMuxKind kind : kMuxKinds)
    for (int64_t n : {1, 2, 4})
      for (int64_t c : {1, 2}) {
        ImageMux m(mux_options(kind, n, c, 20, 20), &gen);
        const int64_t B = 3;
        Tensor y = m.forward(test::random_tensor({B * n, c, 20, 20}, DType::F32, 7));
        INFO(image_mux_kind_name(kind) << " N=" << n << " C=" << c);
        const int64_t co = kind == ImageMuxKind::NonlinearExpand ? 8 : c;
        CHECK(m.output_channels() == co);
        CHECK(y.shape() == Shape{B, co, 20, 20});
      }
  ImageMux none(mux_options(ImageMuxKind::None, 1, 3, 20, 20));
  Tensor x = test::random_tensor({2, 3, 20, 20}, DType::F32, 8);
  CHECK(none.forward(x).is_same(x));
  CHECK(none.output_channels() == 3);
  CHECK(none.num_parameters() == 0);
  CHECK(none.named_buffers().empty());
}

TEST_CASE("image muxes match naive loop references (f32 and f64, contiguous and not)", "[mux][mux-vision]") {
  Generator gen(2);
  for (ImageMuxKind kind : kMuxKinds)
    for (int64_t n : {1, 3})
      for (int64_t c : {1, 2})
        for (DType dt : {DType::F32, DType::F64})
          for (bool transposed : {false, true}) {
            ImageMux m(mux_options(kind, n, c, 6, 5, 4, 3), &gen);
            m.to(dt);
            Tensor x = test::random_tensor({2 * n, c, 6, 5}, dt, 11);
            if (transposed) x = test::transposed_layout(x);
            INFO(image_mux_kind_name(kind) << " N=" << n << " C=" << c << " " << dt << (transposed ? " transposed" : ""));
            Tensor want = image_mux_ref(m, x);
            // f32: sums of up to 4·9·N (conv) or 30·N (ortho) products of O(1) values.
            if (dt == DType::F32) {
              CHECK_CLOSE(m.forward(x), want, 1e-5, 1e-5);
            } else {
              CHECK_CLOSE(m.forward(x), want, 1e-12, 1e-12);
            }
          }
}

TEST_CASE("gaussian mux: hand-computed forward with known kernels", "[mux][mux-vision]") {
  // N = 2, B = 2, one 3x3 channel. k_0 is the identity kernel, k_1 = [[1, 2, 0], [0, 0, 0], [0, 0, -1]].
  // conv is PyTorch's cross-correlation: conv(x, k)[r][c] = Σ_uv k[u][v] x[r+u-1][c+v-1], zero padded.
  ImageMux m(mux_options(ImageMuxKind::Gaussian, 2, 1, 3, 3));
  m.kernels.copy_(from_vector<double>({0, 0, 0, 0, 1, 0, 0, 0, 0,  //
                                       1, 2, 0, 0, 0, 0, 0, 0, -1},
                                      {2, 1, 1, 3, 3}));
  const std::vector<double> x0 = {1, 0, 0, 0, -1, 0, 0, 0, 2}, x1 = {1, 2, 3, 4, 5, 6, 7, 8, 9}, z(9, 0.0);
  std::vector<double> rows;
  for (const auto* v : {&x0, &x1, &z, &x1}) rows.insert(rows.end(), v->begin(), v->end());
  Tensor x = from_vector<double>(rows, {4, 1, 3, 3}).to(DType::F32);
  // conv(x1, k_1) by hand: row 0 = [-5, -6, 0], row 1 = [0+2-8, 1+4-9, 2+6-0] = [-6, -4, 8],
  // row 2 = [0+8, 4+10, 5+12] = [8, 14, 17]. Mixed image 0 adds x0; mixed image 1 is conv(x1, k_1) alone.
  Tensor want = from_vector<double>({-4, -6, 0, -6, -5, 8, 8, 14, 19,  //
                                     -5, -6, 0, -6, -4, 8, 8, 14, 17},
                                    {2, 1, 3, 3});
  CHECK_CLOSE(m.forward(x), want, 0.0, 0.0);
}

TEST_CASE("gaussian-Hadamard mux: hand-computed forward, shapes and the HadamardMux module", "[mux][mux-vision]") {
  // x rows b·N + i; out[b] = (x_{b,0} ⊙ v_0 + x_{b,1} ⊙ v_1) / 2
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6, -1, 0, 1, 2, 2, 2}, {4, 3});
  Tensor v = from_vector<double>({1, 0, -1, 0.5, 2, 1}, {2, 3});
  Tensor want = from_vector<double>({(1 + 2) / 2.0, (0 + 10) / 2.0, (-3 + 6) / 2.0,  //
                                     (-1 + 1) / 2.0, (0 + 4) / 2.0, (-1 + 2) / 2.0},
                                    {2, 3});
  CHECK_CLOSE(gaussian_hadamard_mix(x, v), want, 1e-15, 0.0);
  CHECK_CLOSE(gaussian_hadamard_mix(test::transposed_layout(x), v), want, 1e-15, 0.0);

  Generator gen(3);
  HadamardMux hm(4, 10, &gen);
  CHECK(hm.forward(test::random_tensor({8, 10}, DType::F32, 1)).shape() == Shape{2, 10});
  CHECK(names_of(hm.named_buffers()) == std::set<std::string>{"mux_v"});
  CHECK(hm.num_parameters() == 0);
  REQUIRE_THROWS_WITH(gaussian_hadamard_mix(zeros({5, 3}), v),
                      "gaussian_hadamard_mix: expected input (B*N, 3) with N = 2, got (5, 3)");
  REQUIRE_THROWS_WITH(gaussian_hadamard_mix(zeros({4, 3}), zeros({3})),
                      "gaussian_hadamard_mix: expected keys (N, D), got (3,)");
  REQUIRE_THROWS_WITH(HadamardMux(0, 3), "HadamardMux: sizes must be positive, got n=0 dim=3");
}

TEST_CASE("haar_orthogonal: orthogonal, seeded, Q's first column is the normalised first draw", "[mux][mux-vision]") {
  Generator gen(5);
  Tensor q64 = haar_orthogonal(3, 50, &gen, DType::F64);  // (3, 50, 50)
  REQUIRE(q64.shape() == Shape{3, 50, 50});
  std::vector<double> id(3 * 50 * 50, 0.0);
  for (int m = 0; m < 3; ++m)
    for (int r = 0; r < 50; ++r) id[size_t((m * 50 + r) * 50 + r)] = 1.0;
  Tensor I = from_vector<double>(id, {3, 50, 50});
  CHECK_CLOSE(ops::matmul(q64, q64, true, false), I, 1e-12, 0.0);  // Q^T Q
  CHECK_CLOSE(ops::matmul(q64, q64, false, true), I, 1e-12, 0.0);  // Q Q^T
  // Gram-Schmidt with R_00 > 0: column 0 of Q is the first (row-stored) draw over its norm.
  Generator again(5);
  std::vector<double> g = randn({3, 50, 50}, DType::F64, &again).to_vector<double>();
  double norm = 0;
  for (int r = 0; r < 50; ++r) norm += g[size_t(r)] * g[size_t(r)];
  norm = std::sqrt(norm);
  for (int r = 0; r < 50; r += 7) CHECK(q64.at({0, r, 0}) == Approx(g[size_t(r)] / norm).epsilon(1e-12));
  // Seeded: the same seed gives the same matrices; the instances differ from each other.
  Generator same(5);
  CHECK_CLOSE(haar_orthogonal(3, 50, &same, DType::F64), q64, 0.0, 0.0);
  CHECK(std::fabs(q64.at({0, 0, 0}) - q64.at({1, 0, 0})) > 1e-6);

  // The ortho mux's f32 buffer (400 x 400 for 20x20 images) stays orthogonal to 1e-6.
  ImageMux m(mux_options(ImageMuxKind::Ortho, 2, 1, 20, 20), &gen);
  REQUIRE(m.rotations.shape() == Shape{2, 400, 400});
  Tensor r64 = m.rotations.to(DType::F64);
  std::vector<double> id2(2 * 400 * 400, 0.0);
  for (int k = 0; k < 2; ++k)
    for (int r = 0; r < 400; ++r) id2[size_t((k * 400 + r) * 400 + r)] = 1.0;
  CHECK_CLOSE(ops::matmul(r64, r64, true, false), from_vector<double>(id2, {2, 400, 400}), 1e-6, 0.0);
}

TEST_CASE("image muxes: fixed keys are buffers without gradient, learned weights get gradients", "[mux][mux-vision]") {
  Generator gen(6);
  for (ImageMuxKind kind : kMuxKinds) {
    INFO(image_mux_kind_name(kind));
    ImageMux m(mux_options(kind, 2, 1, 6, 6), &gen);
    Tensor x = test::random_tensor({4, 1, 6, 6}, DType::F32, 3).requires_grad_();
    sum(m.forward(x)).backward();
    CHECK(x.grad().defined());
    std::set<std::string> params = names_of(m.named_parameters()), buffers = names_of(m.named_buffers());
    switch (kind) {
      case ImageMuxKind::Gaussian:
        CHECK(params.empty());
        CHECK(buffers == std::set<std::string>{"kernels"});
        CHECK_FALSE(m.kernels.requires_grad());
        CHECK_FALSE(m.kernels.grad().defined());
        CHECK_FALSE(m.learned());
        break;
      case ImageMuxKind::Ortho:
        CHECK(params.empty());
        CHECK(buffers == std::set<std::string>{"rotations"});
        CHECK_FALSE(m.rotations.requires_grad());
        CHECK_FALSE(m.learned());
        break;
      case ImageMuxKind::Learnable:
        CHECK(params == std::set<std::string>{"kernels"});
        CHECK(buffers.empty());
        REQUIRE(m.kernels.grad().defined());
        CHECK(ops::sum(ops::abs(m.kernels.grad())).item() > 0);
        CHECK(m.learned());
        break;
      default:
        CHECK(params == std::set<std::string>{"a", "b"});
        CHECK(buffers.empty());
        REQUIRE(m.a.grad().defined());
        REQUIRE(m.b.grad().defined());
        CHECK(ops::sum(ops::abs(m.a.grad())).item() > 0);
        CHECK(ops::sum(ops::abs(m.b.grad())).item() > 0);
        CHECK(m.learned());
        CHECK(m.a.shape() == Shape{2, 16, 1, 3, 3});
        CHECK(m.b.shape() == (kind == ImageMuxKind::Nonlinear ? Shape{2, 1, 16, 3, 3} : Shape{2, 8, 16, 3, 3}));
    }
  }
}

TEST_CASE("image muxes: gradcheck in f64 through the input and learned weights", "[mux][mux-vision][grad]") {
  Generator gen(7);
  for (ImageMuxKind kind : kMuxKinds)
    for (int64_t c : {1, 2}) {
      INFO(image_mux_kind_name(kind) << " C=" << c);
      const int64_t n = 2;
      ImageMux m(mux_options(kind, n, c, 4, 5, 3, 2), &gen);
      m.to(DType::F64);
      // A transposed (non-contiguous) input for C = 2; gradcheck keeps its layout.
      Tensor x = test::random_tensor({2 * n, c, 4, 5}, DType::F64, 21, -1.5, 1.5);
      if (c == 2) x = test::transposed_layout(x);
      CHECK_GRADCHECK_MODULE(m, {x}, [&](const std::vector<Tensor>& in) { return m.forward(in[0]); });
    }
}

TEST_CASE("MlpMux and CnnMux: output shapes for N = 1, 2, 4 and every mux", "[mux][mux-vision]") {
  Generator gen(8);
  for (int64_t n : {1, 2, 4}) {
    INFO("N=" << n);
    const int64_t B = 3;
    MlpMuxOptions mo;
    mo.n = n;
    mo.in_features = 28 * 28;
    MlpMux mlp(mo, &gen);
    CHECK(mlp.forward(test::random_tensor({B * n, 784}, DType::F32, 1)).shape() == Shape{B * n, 10});
    CHECK(mlp.forward(test::random_tensor({B * n, 1, 28, 28}, DType::F32, 1)).shape() == Shape{B * n, 10});
    CHECK(mlp.heads->lin->weight.shape() == Shape{n * 512, 512});
    for (ImageMuxKind kind : kMuxKinds) {
      INFO(image_mux_kind_name(kind));
      CnnMux cnn(n, kind, &gen);
      CHECK(cnn.forward(test::random_tensor({B * n, 1, 20, 20}, DType::F32, 2)).shape() == Shape{B * n, 10});
      CHECK(cnn.lenet->in_channels == (kind == ImageMuxKind::NonlinearExpand ? 8 : 1));
      CHECK(cnn.lenet->c1_channels == 6);
      CHECK(cnn.heads->lin->weight.shape() == Shape{n * 84, 84});
    }
  }
  MlpMux plain(1, FlatMuxKind::None, &gen);
  CHECK(plain.forward(test::random_tensor({5, 784}, DType::F32, 3)).shape() == Shape{5, 10});
  CnnMux plain_cnn(1, ImageMuxKind::None, &gen);
  CHECK(plain_cnn.forward(test::random_tensor({5, 1, 20, 20}, DType::F32, 3)).shape() == Shape{5, 10});
  CHECK(plain_cnn.mux == nullptr);
  // Multi-channel input with a wider C1 (the notebook's multiplexed LeNet uses 10).
  CnnMuxOptions co;
  co.n = 2;
  co.mux = ImageMuxKind::Ortho;
  co.in_channels = 3;
  co.c1_channels = 10;
  co.num_classes = 4;
  CnnMux rgb(co, &gen);
  CHECK(rgb.forward(test::random_tensor({4, 3, 20, 20}, DType::F32, 4)).shape() == Shape{4, 4});
  CHECK(rgb.lenet->c1->weight.shape() == Shape{10, 3, 3, 3});
}

TEST_CASE("MlpMux and CnnMux: parameter and buffer names", "[mux][mux-vision]") {
  MlpMux mlp(2, FlatMuxKind::GaussianHadamard);
  CHECK(names_of(mlp.named_parameters()) ==
        std::set<std::string>{"fc1.weight", "fc1.bias", "heads.lin.weight", "heads.lin.bias", "cls.weight", "cls.bias"});
  CHECK(names_of(mlp.named_buffers()) == std::set<std::string>{"mux_v"});
  CHECK(mlp.mux_v.shape() == Shape{2, 784});
  CHECK_FALSE(mlp.mux_v.requires_grad());
  CHECK(names_of(MlpMux(1, FlatMuxKind::None).named_buffers()).empty());
  CnnMux cnn(2, ImageMuxKind::Nonlinear);
  CHECK(names_of(cnn.named_parameters()) ==
        std::set<std::string>{"mux.a", "mux.b", "lenet.c1.weight", "lenet.c1.bias", "lenet.c3.weight",
                              "lenet.c3.bias", "lenet.c5.weight", "lenet.c5.bias", "lenet.f6.weight", "lenet.f6.bias",
                              "lenet.ol.weight", "lenet.ol.bias", "heads.lin.weight", "heads.lin.bias"});
  CHECK(names_of(CnnMux(2, ImageMuxKind::Gaussian).named_buffers()) == std::set<std::string>{"mux.kernels"});
}

TEST_CASE("MlpMux and CnnMux: forwards match the composition written out", "[mux][mux-vision]") {
  Generator gen(9);
  {
    // MlpMux: out[b·N + i] = cls(relu(W_i relu(fc1(mean_j x_j ⊙ v_j)) + b_i)), head i = rows i·h.. of heads.lin.
    MlpMuxOptions o;
    o.n = 3;
    o.in_features = 7;
    o.hidden = 5;
    o.num_classes = 4;
    MlpMux m(o, &gen);
    m.to(DType::F64);
    Tensor x = test::random_tensor({6, 7}, DType::F64, 4);
    Tensor got = m.forward(x);
    NoGradGuard ng;
    for (int64_t b = 0; b < 2; ++b) {
      Tensor mixed = zeros({7}, DType::F64);
      for (int64_t i = 0; i < 3; ++i) mixed = ops::add(mixed, ops::mul(x.select(0, b * 3 + i), m.mux_v.select(0, i)));
      Tensor h = relu(m.fc1->forward(ops::div(mixed, 3.0)));
      for (int64_t i = 0; i < 3; ++i) {
        Tensor hi = relu(linear(h, m.heads->lin->weight.narrow(0, i * 5, 5), m.heads->lin->bias.narrow(0, i * 5, 5)));
        CHECK_CLOSE(got.select(0, b * 3 + i), m.cls->forward(hi), 1e-12, 1e-12);
      }
    }
  }
  {
    // CnnMux: out[b·N + i] = OL(tanh(DC_i(features(mux(x))[b]))).
    CnnMux m(2, ImageMuxKind::Gaussian, &gen);
    m.to(DType::F64);
    Tensor x = test::random_tensor({4, 1, 20, 20}, DType::F64, 5, 0.0, 1.0);
    Tensor got = m.forward(x);
    NoGradGuard ng;
    Tensor f = m.lenet->features(image_mux_ref(*m.mux, x));  // (2, 84)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 2; ++i) {
        Tensor hi = tanh(linear(f.select(0, b), m.heads->lin->weight.narrow(0, i * 84, 84),
                                m.heads->lin->bias.narrow(0, i * 84, 84)));
        CHECK_CLOSE(got.select(0, b * 2 + i), m.lenet->ol->forward(hi), 1e-12, 1e-12);
      }
  }
}

TEST_CASE("N = 1 without muxing equals the plain models", "[mux][mux-vision]") {
  Generator gen(10);
  {
    // MlpMux(1, none) is the MLP 784-512-512-10 with ReLU: fc1 / heads.lin / cls = layers.0 / 1 / 2.
    MlpMux m(1, FlatMuxKind::None, &gen);
    nn::MLP plain({784, 512, 512, 10}, nn::Activation::Relu, 0.0, nn::Activation::Identity, &gen);
    copy_parameters(m, plain);
    Tensor x = test::random_tensor({6, 784}, DType::F32, 6, 0.0, 1.0);
    CHECK_CLOSE(m.forward(x), plain.forward(x), 0.0, 0.0);
  }
  {
    // CnnMux(1, none) without demux heads is nn::LeNet(1, 6, 10): the reference LeNet.
    CnnMuxOptions o;
    o.mux = ImageMuxKind::None;
    o.demux_heads = false;
    CnnMux m(o, &gen);
    nn::LeNet plain(1, 6, 10, &gen);
    copy_parameters(m, plain);
    Tensor x = test::random_tensor({5, 1, 20, 20}, DType::F32, 7, 0.0, 1.0);
    CHECK_CLOSE(m.forward(x), plain.forward(x), 0.0, 0.0);
    CHECK(m.heads == nullptr);
    CHECK(m.num_parameters() == plain.num_parameters());
  }
  {
    // With its one demux head: LeNet's features, then tanh(DC), then OL.
    CnnMux m(1, ImageMuxKind::None, &gen);
    Tensor x = test::random_tensor({5, 1, 20, 20}, DType::F32, 8, 0.0, 1.0);
    NoGradGuard ng;
    Tensor want = m.lenet->ol->forward(tanh(m.heads->lin->forward(m.lenet->features(x))));
    CHECK_CLOSE(m.forward(x), want, 0.0, 0.0);
  }
}

TEST_CASE("MlpMux and CnnMux: gradcheck in f64 (sampled coordinates)", "[mux][mux-vision][grad]") {
  Generator gen(11);
  GradcheckOptions go;
  go.max_coords = 12;  // per input: ~20 inputs x 12 coordinates x 2 forwards
  {
    MlpMuxOptions o;
    o.n = 2;
    o.in_features = 12;
    o.hidden = 6;
    o.num_classes = 3;
    MlpMux m(o, &gen);
    m.to(DType::F64);
    Tensor x = test::random_tensor({4, 12}, DType::F64, 9);
    CHECK_GRADCHECK_MODULE(m, {x}, [&](const std::vector<Tensor>& in) { return m.forward(in[0]); }, go);
  }
  for (ImageMuxKind kind : {ImageMuxKind::Gaussian, ImageMuxKind::Learnable, ImageMuxKind::NonlinearExpand,
                            ImageMuxKind::Ortho}) {
    INFO(image_mux_kind_name(kind));
    CnnMuxOptions o;
    o.n = 2;
    o.mux = kind;
    o.hidden_channels = 4;
    o.expand_channels = 3;
    o.num_classes = 4;
    CnnMux m(o, &gen);
    m.to(DType::F64);
    Tensor x = test::random_tensor({4, 1, 20, 20}, DType::F64, 10, 0.0, 1.0);
    CHECK_GRADCHECK_MODULE(m, {x}, [&](const std::vector<Tensor>& in) { return m.forward(in[0]); }, go);
  }
}

TEST_CASE("image muxes and vision models: errors", "[mux][mux-vision]") {
  REQUIRE_THROWS_WITH(ImageMux(mux_options(ImageMuxKind::None, 2, 1, 20, 20)),
                      "ImageMux(none): no multiplexing needs n = 1, got n = 2");
  REQUIRE_THROWS_WITH(ImageMux(mux_options(ImageMuxKind::Gaussian, 0, 1, 20, 20)),
                      "ImageMux(gaussian): n must be positive, got 0");
  REQUIRE_THROWS_WITH(ImageMux(mux_options(ImageMuxKind::Learnable, 2, 0, 20, 20)),
                      "ImageMux(learnable): in_channels must be positive, got 0");
  REQUIRE_THROWS_WITH(ImageMux(mux_options(ImageMuxKind::NonlinearExpand, 2, 1, 20, 20, 16, 0)),
                      "ImageMux(nonlinear_expand): hidden_channels and expand_channels must be positive, got 16 and 0");
  REQUIRE_THROWS_WITH(ImageMux(mux_options(ImageMuxKind::Ortho, 2, 1, 0, 20)),
                      "ImageMux(ortho): height and width must be positive, got 0x20");
  ImageMux g(mux_options(ImageMuxKind::Gaussian, 2, 1, 20, 20));
  REQUIRE_THROWS_WITH(g.forward(zeros({3, 1, 8, 8})),
                      "ImageMux(gaussian): expected input (B*N, 1, H, W) with N = 2, got (3, 1, 8, 8)");
  REQUIRE_THROWS_WITH(g.forward(zeros({4, 2, 8, 8})),
                      "ImageMux(gaussian): expected input (B*N, 1, H, W) with N = 2, got (4, 2, 8, 8)");
  REQUIRE_THROWS_WITH(g.forward(zeros({4, 8, 8})),
                      "ImageMux(gaussian): expected input (B*N, 1, H, W) with N = 2, got (4, 8, 8)");
  REQUIRE_THROWS_WITH(g.forward(Tensor()),
                      "ImageMux(gaussian): expected input (B*N, 1, H, W) with N = 2, got an undefined tensor");
  ImageMux o(mux_options(ImageMuxKind::Ortho, 2, 1, 4, 4));
  REQUIRE_THROWS_WITH(o.forward(zeros({4, 1, 4, 5})),
                      "ImageMux(ortho): expected input (B*N, 1, 4, 4) with N = 2, got (4, 1, 4, 5)");
  REQUIRE_THROWS_WITH(haar_orthogonal(1, 0), "haar_orthogonal: sizes must be positive, got n=1 dim=0");

  REQUIRE_THROWS_WITH(MlpMux(2, FlatMuxKind::None), "MlpMux: mux none needs n = 1, got n = 2");
  MlpMuxOptions mo;
  mo.hidden = 0;
  REQUIRE_THROWS_WITH(MlpMux(mo), "MlpMux: sizes must be positive, got n=1 in_features=784 hidden=0 num_classes=10");
  MlpMux mlp(2, FlatMuxKind::GaussianHadamard);
  REQUIRE_THROWS_WITH(mlp.forward(zeros({3, 784})),
                      "MlpMux: expected input (B*N, 784) or (B*N, ...) with 784 elements per row and N = 2, got (3, 784)");
  REQUIRE_THROWS_WITH(mlp.forward(zeros({4, 1, 20, 20})),
                      "MlpMux: expected input (B*N, 784) or (B*N, ...) with 784 elements per row and N = 2, got "
                      "(4, 1, 20, 20)");

  REQUIRE_THROWS_WITH(CnnMux(2, ImageMuxKind::None), "CnnMux: mux none needs n = 1, got n = 2");
  REQUIRE_THROWS_WITH(CnnMux(0, ImageMuxKind::Gaussian), "CnnMux: n must be positive, got 0");
  CnnMuxOptions co;
  co.n = 2;
  co.demux_heads = false;
  REQUIRE_THROWS_WITH(CnnMux(co), "CnnMux: demux_heads = false needs n = 1, got n = 2");
  CnnMux cnn(2, ImageMuxKind::Gaussian);
  REQUIRE_THROWS_WITH(cnn.forward(zeros({4, 1, 28, 28})),
                      "CnnMux: expected input (B*N, 1, 20, 20) with N = 2, got (4, 1, 28, 28)");
  REQUIRE_THROWS_WITH(cnn.forward(zeros({5, 1, 20, 20})),
                      "CnnMux: expected input (B*N, 1, 20, 20) with N = 2, got (5, 1, 20, 20)");
  REQUIRE_THROWS_WITH(StackedHeads(2, 4, nn::Activation::Tanh).forward(zeros({3, 5})),
                      "StackedHeads: expected input (B, 4), got (3, 5)");
}

// ---- learning: CnnMux with N = 2 tells line orientations apart from mixed images ----

namespace {

struct Segments {
  Tensor x;  // (M, 1, 20, 20) f32
  Tensor y;  // (M) i64, class in [0, 4)
};

// As tests/test_learning_cnn.cpp, but each image's class is drawn at random, so that the instances
// of a mixed image have independent labels, and the noise is weaker (std 0.1 instead of 0.25): the mux
// sums N noisy images, each through a kernel of norm ~3, so at 0.25 the mixed image's noise is as
// strong as the segments and learning takes several times longer. One bright segment (length 6..10)
// at a random position: horizontal / vertical / diagonal / anti-diagonal.
Segments make_segments(int64_t m, Generator& gen) {
  const int64_t S = nn::LeNet::kImageSize;
  std::vector<float> pixels(size_t(m * S * S), 0.0f);
  std::vector<int64_t> labels(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    const int64_t k = int64_t(gen.randint(4));
    const int64_t len = 6 + int64_t(gen.randint(5));
    const int64_t span_r = (k == 0) ? S : S - len + 1, span_c = (k == 1) ? S : S - len + 1;
    const int64_t r0 = int64_t(gen.randint(uint64_t(span_r))), c0 = int64_t(gen.randint(uint64_t(span_c)));
    for (int64_t t = 0; t < len; ++t) {
      int64_t r = r0, c = c0;
      if (k == 0) c += t;
      if (k == 1) r += t;
      if (k == 2) r += t, c += t;
      if (k == 3) r += t, c += len - 1 - t;
      pixels[size_t((i * S + r) * S + c)] = 1.0f;
    }
    labels[size_t(i)] = k;
  }
  Tensor clean = from_vector<float>(pixels, {m, 1, S, S});
  return {ops::add(clean, randn({m, 1, S, S}, DType::F32, &gen, 0.0, 0.1)), from_vector<int64_t>(labels, {m})};
}

// NOTE: as tests/test_learning_cnn.cpp: tiny GEMMs make OpenBLAS's OpenMP threads spin on a loaded
// 2-core machine; run them on one thread (results do not depend on it) and restore the default after.
struct SingleThreadBlas {
  SingleThreadBlas() { blas::set_num_threads(1); }
  ~SingleThreadBlas() { blas::set_num_threads(omp_get_max_threads()); }
};

// Accuracy of each instance slot i (rows i, i + N, ...) on held-out images.
std::vector<double> per_instance_accuracy(const CnnMux& net, const Segments& data) {
  NoGradGuard no_grad;
  const int64_t n = net.options.n;
  std::vector<int64_t> pred = ops::argmax(net.forward(data.x), -1).to_vector<int64_t>();
  std::vector<int64_t> y = data.y.to_vector<int64_t>();
  std::vector<double> acc(size_t(n), 0.0);
  for (size_t r = 0; r < y.size(); ++r) acc[r % size_t(n)] += pred[r] == y[r];
  for (double& a : acc) a /= double(y.size() / size_t(n));
  return acc;
}

}  // namespace

TEST_CASE("CnnMux with N = 2 and the gaussian mux learns line orientations per instance",
          "[mux][mux-vision][learning]") {
  SingleThreadBlas single_thread_blas;
  Generator gen(2026);
  const int64_t n = 2;
  const Segments held_out = make_segments(512 * n, gen);
  // The notebook's MuxLeNet width (C1 with 10 channels) and fixed Gaussian kernels. Measured while
  // writing this test: learned muxes can shut one instance out (with `learnable` or `nonlinear`, N = 2,
  // one instance stayed at chance for 2000-4000 steps while the other reached ~100%); `nonlinear_expand`
  // learned both (0.93 / 0.93 after 400 steps) at about 4x the time per step of `gaussian`.
  CnnMuxOptions o;
  o.n = n;
  o.mux = ImageMuxKind::Gaussian;
  o.c1_channels = 10;
  o.num_classes = 4;
  CnnMux net(o, &gen);
  net.pack_parameters();
  nn::AdamW opt(net, 3e-3, 0.9, 0.999, 1e-8, 0.0);
  nn::CrossEntropyLoss loss_fn;

  // 32 fresh images per instance and step (32 mixed images).
  const int64_t batch = 32;
  const int max_steps = 3000, eval_every = 50;
  std::vector<double> acc(size_t(n), 0.0);
  double loss_value = 0;
  int steps = 0;
  const auto start = std::chrono::steady_clock::now();
  for (steps = 1; steps <= max_steps; ++steps) {
    const Segments b = make_segments(batch * n, gen);
    Tensor loss = loss_fn.forward(net.forward(b.x), b.y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    loss_value = loss.item();
    if (steps % eval_every == 0) {
      acc = per_instance_accuracy(net, held_out);
      if (acc[0] >= 0.9 && acc[1] >= 0.9) break;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("stopped after " << steps << " steps of " << batch << " mixed images (" << batch * n << " instances) in "
                        << seconds << " s: last batch loss " << loss_value << ", held-out accuracy per instance "
                        << acc[0] << " / " << acc[1]);
  CHECK(acc[0] >= 0.85);
  CHECK(acc[1] >= 0.85);
  CHECK(steps <= max_steps);
}
