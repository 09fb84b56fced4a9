// test_grad_conv.cpp — conv2d and max_pool2d: forward against direct loops and hand-computed values,
// gradients against finite differences (f64).
#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::random_tensor;

namespace {

// Direct convolution in double: out[b, o, y, x] = bias[o] + sum_{c,i,j} w[o, c, i, j] * xin[b, c, y*s-p+i, x*s-p+j]
Tensor conv_reference(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t s, int64_t p) {
  int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = w.size(0), kh = w.size(2), kw = w.size(3);
  int64_t oh = (H + 2 * p - kh) / s + 1, ow = (W + 2 * p - kw) / s + 1;
  Tensor out = zeros({B, O, oh, ow}, DType::F64);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t yy = 0; yy < oh; ++yy)
        for (int64_t xx = 0; xx < ow; ++xx) {
          double acc = bias.defined() ? bias.at({o}) : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                int64_t iy = yy * s - p + i, ix = xx * s - p + j;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += w.at({o, c, i, j}) * x.at({b, c, iy, ix});
              }
          out.data<double>()[((b * O + o) * oh + yy) * ow + xx] = acc;
        }
  return out;
}

}  // namespace

TEST_CASE("conv2d forward: hand-computed and against direct loops", "[grad][grad-conv]") {
  // 1 image, 1 channel 3x3, one 2x2 kernel of ones, bias 0.5: each output sums a 2x2 window.
  Tensor x = arange(1.0, 10.0, 1.0, DType::F64).view({1, 1, 3, 3});
  Tensor w = ones({1, 1, 2, 2}, DType::F64);
  Tensor out = conv2d(x, w, full({1}, 0.5, DType::F64));
  CHECK(out.shape() == Shape{1, 1, 2, 2});
  CHECK(out.to_vector<double>() == std::vector<double>{12.5, 16.5, 24.5, 28.5});

  for (auto [s, p] : std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {2, 1}, {1, 2}}) {
    for (DType dt : {DType::F32, DType::F64}) {
      Tensor xi = random_tensor({2, 3, 7, 6}, dt, 1), wi = random_tensor({4, 3, 3, 2}, dt, 2), bi = random_tensor({4}, dt, 3);
      Tensor got = conv2d(xi, wi, bi, s, p);
      Tensor want = conv_reference(xi.to(DType::F64), wi.to(DType::F64), bi.to(DType::F64), s, p);
      INFO("stride " << s << " padding " << p << " dtype " << dt);
      CHECK_CLOSE(got, want, 1e-5, 1e-5);
    }
  }
}

TEST_CASE("conv2d gradients", "[grad][grad-conv]") {
  Tensor x = random_tensor({2, 2, 5, 4}, DType::F64, 4), w = random_tensor({3, 2, 3, 3}, DType::F64, 5);
  Tensor b = random_tensor({3}, DType::F64, 6);
  for (auto [s, p] : std::vector<std::pair<int64_t, int64_t>>{{1, 0}, {2, 1}}) {
    GradcheckResult r = gradcheck([s = s, p = p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], s, p); },
                                  {x, w, b});
    INFO("stride " << s << " padding " << p << ": " << r.report());
    CHECK(r.ok);
  }
  // No bias, and a channels-last (non-contiguous) input.
  Tensor xcl = x.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
  REQUIRE_FALSE(xcl.is_contiguous());
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), 1, 1); },
                                {xcl, w});
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE("conv2d checks its arguments", "[grad][grad-conv]") {
  Tensor x = zeros({1, 2, 5, 5}), w = zeros({3, 2, 3, 3});
  REQUIRE_THROWS_WITH(conv2d(zeros({2, 5, 5}), w, Tensor()), "conv2d: expected x of shape (B, C, H, W), got (2, 5, 5)");
  REQUIRE_THROWS_WITH(conv2d(x, zeros({3, 4, 3, 3}), Tensor()),
                      "conv2d: weight (3, 4, 3, 3) expects 4 input channels, x (1, 2, 5, 5) has 2");
  REQUIRE_THROWS_WITH(conv2d(x, w, zeros({2})), "conv2d: bias has shape (2,), expected (3,)");
  REQUIRE_THROWS_WITH(conv2d(x, zeros({3, 2, 7, 7}), Tensor()),
                      "im2col: kernel 7x7 with padding 0 does not fit a 5x5 input");
}

TEST_CASE("max_pool2d forward and gradients", "[grad][grad-conv]") {
  Tensor x = from_vector<double>({1, 5, 2, 0,
                                  3, 4, 8, 1,
                                  0, 2, 1, 1,
                                  7, 6, 3, 9}, {1, 1, 4, 4});
  x.requires_grad_();
  Tensor y = max_pool2d(x, 2);
  CHECK(y.to_vector<double>() == std::vector<double>{5, 8, 7, 9});
  y.backward(from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 0,
                                                             0, 0, 2, 0,
                                                             0, 0, 0, 0,
                                                             3, 0, 0, 4});
  // Random inputs have no ties, so the max is differentiable everywhere checked.
  Tensor xr = random_tensor({2, 3, 6, 5}, DType::F64, 7);
  for (auto [k, s, p] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{2, 0, 0}, {3, 2, 1}, {2, 1, 0}}) {
    GradcheckResult r = gradcheck([k = k, s = s, p = p](const std::vector<Tensor>& in) { return max_pool2d(in[0], k, s, p); },
                                  {xr});
    INFO("kernel " << k << " stride " << s << " padding " << p << ": " << r.report());
    CHECK(r.ok);
  }
  REQUIRE_THROWS_WITH(max_pool2d(zeros({4, 4}), 2), "max_pool2d: expected x of shape (B, C, H, W), got (4, 4)");
}
