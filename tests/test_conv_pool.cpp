// test_conv_pool.cpp — im2col, col2im, max_pool2d and max_pool2d_backward against naive references.
//
// The references below are plain loops in double over row-major copies of the inputs: im2col from its
// definition, a direct 7-loop convolution (conv = weight @ im2col(x) is checked against it with the
// product written as loops here, not with matmul), col2im as a scatter-add and as the adjoint of
// im2col, and max pooling from "max of the real pixels in the window, NaN if any, first index of the
// max". Hand-computed examples pin the layout and the tie / NaN / padding rules.
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::random_tensor;
using muxnet::test::strided_layout;
using muxnet::test::transposed_layout;

namespace {

struct ConvCase {
  int64_t B, C, H, W, kh, kw, sh, sw, ph, pw;
  Conv2dGeom geom() const { return Conv2dGeom{C, H, W, kh, kw, sh, sw, ph, pw}; }
  Shape x_shape() const { return Shape{B, C, H, W}; }
};

// Square and non-square images and kernels, strides 1 and 2 (and > kernel), paddings 0, 1, 2, a 1x1
// kernel, a kernel larger than the image (fits only through padding), windows made of padding only,
// and the LeNet-like first layer of the paper's CNN.
const std::vector<ConvCase> kConvCases = {
    {2, 3, 5, 6, 3, 3, 1, 1, 0, 0}, {2, 2, 5, 6, 3, 2, 1, 1, 1, 1}, {1, 2, 7, 5, 3, 3, 2, 2, 0, 0},
    {2, 2, 7, 6, 3, 3, 2, 2, 1, 1}, {1, 3, 4, 5, 2, 3, 1, 2, 2, 1}, {2, 2, 6, 4, 3, 3, 1, 1, 2, 2},
    {2, 3, 4, 5, 1, 1, 1, 1, 0, 0}, {1, 2, 5, 5, 1, 1, 2, 2, 0, 0}, {1, 1, 3, 3, 5, 5, 1, 1, 1, 1},
    {1, 2, 4, 4, 2, 2, 3, 3, 2, 2}, {2, 1, 1, 1, 1, 1, 1, 1, 0, 0}, {3, 1, 20, 20, 5, 5, 1, 1, 0, 0},
    {2, 2, 3, 7, 1, 4, 2, 1, 0, 2},
};

// im2col from its definition: cols[b, c*kh*kw + i*kw + j, oy*ow + ox] = x[b, c, oy*sh-ph+i, ox*sw-pw+j].
Tensor im2col_ref(const Tensor& x, const Conv2dGeom& g) {
  const int64_t B = x.size(0), C = g.channels, H = g.height, W = g.width;
  const int64_t oh = g.out_h(), ow = g.out_w(), K = g.kernel_h * g.kernel_w;
  std::vector<double> xv = x.to_vector<double>();
  std::vector<double> out(size_t(B * C * K * oh * ow), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i)
        for (int64_t j = 0; j < g.kernel_w; ++j)
          for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) {
              int64_t y = oy * g.stride_h - g.pad_h + i, xx = ox * g.stride_w - g.pad_w + j;
              double v = (y >= 0 && y < H && xx >= 0 && xx < W) ? xv[size_t(((b * C + c) * H + y) * W + xx)] : 0.0;
              int64_t row = c * K + i * g.kernel_w + j;
              out[size_t((b * C * K + row) * oh * ow + oy * ow + ox)] = v;
            }
  return from_vector<double>(out, Shape{B, C * K, oh * ow});
}

// col2im as a scatter-add: x[b, c, y, x] += cols[b, row, l] for every in-image source position.
Tensor col2im_ref(const Tensor& cols, const Conv2dGeom& g) {
  const int64_t B = cols.size(0), C = g.channels, H = g.height, W = g.width;
  const int64_t oh = g.out_h(), ow = g.out_w(), K = g.kernel_h * g.kernel_w;
  std::vector<double> cv = cols.to_vector<double>();
  std::vector<double> x(size_t(B * C * H * W), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i)
        for (int64_t j = 0; j < g.kernel_w; ++j)
          for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) {
              int64_t y = oy * g.stride_h - g.pad_h + i, xx = ox * g.stride_w - g.pad_w + j;
              if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
              int64_t row = c * K + i * g.kernel_w + j;
              x[size_t(((b * C + c) * H + y) * W + xx)] += cv[size_t((b * C * K + row) * oh * ow + oy * ow + ox)];
            }
  return from_vector<double>(x, Shape{B, C, H, W});
}

// Direct convolution in double (cross-correlation, as PyTorch's Conv2d): x (B, C, H, W), w (O, C, kh, kw).
Tensor conv2d_direct(const Tensor& x, const Tensor& w, const Conv2dGeom& g) {
  const int64_t B = x.size(0), C = g.channels, H = g.height, W = g.width, O = w.size(0);
  const int64_t oh = g.out_h(), ow = g.out_w();
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> out(size_t(B * O * oh * ow), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double s = 0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                int64_t y = oy * g.stride_h - g.pad_h + i, xx = ox * g.stride_w - g.pad_w + j;
                if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
                s += wv[size_t(((o * C + c) * g.kernel_h + i) * g.kernel_w + j)] *
                     xv[size_t(((b * C + c) * H + y) * W + xx)];
              }
          out[size_t(((b * O + o) * oh + oy) * ow + ox)] = s;
        }
  return from_vector<double>(out, Shape{B, O, oh, ow});
}

// conv2d as weight (O, C*kh*kw) @ cols[b] (C*kh*kw, oh*ow), with the product as plain loops in double.
Tensor conv2d_from_cols(const Tensor& cols, const Tensor& w, const Conv2dGeom& g) {
  const int64_t B = cols.size(0), R = cols.size(1), L = cols.size(2), O = w.size(0);
  std::vector<double> cv = cols.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> out(size_t(B * O * L), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t l = 0; l < L; ++l) {
        double s = 0;
        for (int64_t r = 0; r < R; ++r) s += wv[size_t(o * R + r)] * cv[size_t((b * R + r) * L + l)];
        out[size_t((b * O + o) * L + l)] = s;
      }
  return from_vector<double>(out, Shape{B, O, g.out_h(), g.out_w()});
}

// Values in {-3e30, -2e30, ..., 3e30} (7 levels): ties in almost every pooling window.
Tensor tie_levels(const Shape& shape, DType dt, uint64_t seed) {
  std::vector<double> v = random_tensor(shape, DType::F64, seed, 0.0, 7.0).to_vector<double>();
  for (double& e : v) e = (std::floor(e) - 3.0) * 1e30;
  return from_vector<double>(v, shape).to(dt);
}

double total(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector<double>()) s += v;
  return s;
}

double dot(const Tensor& a, const Tensor& b) {
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  REQUIRE(av.size() == bv.size());
  double s = 0;
  for (size_t i = 0; i < av.size(); ++i) s += av[i] * bv[i];
  return s;
}

struct PoolCase {
  int64_t B, C, H, W, kh, kw, sh, sw, ph, pw;
  Pool2dGeom geom() const { return Pool2dGeom{H, W, kh, kw, sh, sw, ph, pw}; }
  Shape x_shape() const { return Shape{B, C, H, W}; }
};

// 2x2/2 (the paper's CNN), overlapping windows (stride < kernel), stride > kernel, padding, non-square
// images and kernels, a 1x1 kernel, windows that hang over the edge, and a whole-plane window.
const std::vector<PoolCase> kPoolCases = {
    {2, 3, 8, 8, 2, 2, 2, 2, 0, 0}, {2, 2, 7, 6, 3, 3, 1, 1, 0, 0}, {1, 2, 7, 7, 3, 3, 2, 2, 1, 1},
    {2, 1, 5, 6, 2, 3, 1, 2, 1, 1}, {1, 2, 9, 9, 2, 2, 3, 3, 0, 0}, {2, 2, 4, 5, 1, 1, 1, 1, 0, 0},
    {1, 1, 5, 5, 4, 4, 2, 2, 2, 2}, {1, 2, 5, 4, 5, 4, 1, 1, 0, 0}, {3, 4, 16, 16, 2, 2, 2, 2, 0, 0},
};

struct PoolRef {
  Tensor out, argmax;
};

// Max pooling from its definition: over the window's in-image pixels, the value is NaN when any is
// NaN (the last NaN is the argmax, as in PyTorch), else the maximum, at its first row-major position.
PoolRef max_pool2d_ref(const Tensor& x, const Pool2dGeom& g) {
  const int64_t B = x.size(0), C = x.size(1), H = g.height, W = g.width, oh = g.out_h(), ow = g.out_w();
  std::vector<double> xv = x.to_vector<double>();
  std::vector<double> out;
  std::vector<int64_t> am;
  for (int64_t p = 0; p < B * C; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        std::vector<std::pair<double, int64_t>> window;
        for (int64_t i = 0; i < g.kernel_h; ++i)
          for (int64_t j = 0; j < g.kernel_w; ++j) {
            int64_t y = oy * g.stride_h - g.pad_h + i, xx = ox * g.stride_w - g.pad_w + j;
            if (y >= 0 && y < H && xx >= 0 && xx < W) window.push_back({xv[size_t(p * H * W + y * W + xx)], y * W + xx});
          }
        REQUIRE(!window.empty());
        int64_t last_nan = -1;
        for (auto& e : window)
          if (std::isnan(e.first)) last_nan = e.second;
        if (last_nan >= 0) {
          out.push_back(NAN);
          am.push_back(last_nan);
          continue;
        }
        double m = -INFINITY;
        for (auto& e : window) m = std::max(m, e.first);
        for (auto& e : window)
          if (e.first == m) {
            am.push_back(e.second);
            break;
          }
        out.push_back(m);
      }
  Shape s{B, C, oh, ow};
  return {from_vector<double>(out, s), from_vector<int64_t>(am, s)};
}

// grad_in[b, c, argmax / W, argmax % W] += grad_out, in double.
Tensor max_pool2d_backward_ref(const Tensor& grad_out, const Tensor& argmax, const Shape& input_shape) {
  std::vector<double> go = grad_out.to_vector<double>();
  std::vector<int64_t> am = argmax.to_vector<int64_t>();
  const int64_t plane_in = input_shape[2] * input_shape[3], plane_out = grad_out.size(2) * grad_out.size(3);
  std::vector<double> gi(size_t(input_shape.numel()), 0.0);
  for (size_t k = 0; k < go.size(); ++k) {
    int64_t plane = int64_t(k) / plane_out;
    REQUIRE(am[k] >= 0);
    REQUIRE(am[k] < plane_in);
    gi[size_t(plane * plane_in + am[k])] += go[k];
  }
  return from_vector<double>(gi, input_shape);
}

// The same values in other layouts: channels-last storage permuted back, last two dims swapped in
// memory, every second element, and a window of a larger tensor.
std::vector<Tensor> other_layouts(const Tensor& x) {
  Tensor channels_last = x.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
  Shape big = x.shape();
  big[2] += 3;
  big[3] += 2;
  Tensor window = zeros(big, x.dtype()).narrow(2, 1, x.size(2)).narrow(3, 2, x.size(3));
  window.copy_(x);
  return {channels_last, transposed_layout(x), strided_layout(x), window};
}

const DType kFloatTypes[] = {DType::F32, DType::F64};

}  // namespace

// ------------------------------------------------------------------------------------------ im2col

TEST_CASE("im2col: hand-computed 3x3 image, 2x2 kernel", "[conv]") {
  // x = [[1 2 3], [4 5 6], [7 8 9]]: the four 2x2 receptive fields, one per column; row (i, j) of cols
  // lists pixel (i, j) of each field.
  Tensor x = arange(1, 10, 1, DType::F32).view({1, 1, 3, 3});
  Tensor cols = ops::im2col(x, Conv2dGeom{1, 3, 3, 2, 2, 1, 1, 0, 0});
  REQUIRE(cols.shape() == Shape{1, 4, 4});
  CHECK(cols.to_vector<float>() ==
        std::vector<float>{1, 2, 4, 5, 2, 3, 5, 6, 4, 5, 7, 8, 5, 6, 8, 9});

  // Padding 1, stride 2, 2x2 kernel: fields start at (-1, -1), (-1, 1), (1, -1), (1, 1).
  Tensor cp = ops::im2col(x, Conv2dGeom{1, 3, 3, 2, 2, 2, 2, 1, 1});
  REQUIRE(cp.shape() == Shape{1, 4, 4});
  CHECK(cp.to_vector<float>() ==
        std::vector<float>{0, 0, 0, 5, 0, 0, 4, 6, 0, 2, 0, 8, 1, 3, 7, 9});
}

TEST_CASE("im2col matches its definition element by element", "[conv]") {
  for (DType dt : kFloatTypes) {
    uint64_t seed = 100;
    for (const ConvCase& c : kConvCases) {
      INFO("dtype " << dt << ", case B=" << c.B << " C=" << c.C << " " << c.H << "x" << c.W << " kernel " << c.kh
                    << "x" << c.kw << " stride " << c.sh << "x" << c.sw << " pad " << c.ph << "x" << c.pw);
      Tensor x = random_tensor(c.x_shape(), dt, seed++);
      Tensor cols = ops::im2col(x, c.geom());
      REQUIRE(cols.dtype() == dt);
      REQUIRE(cols.shape() == Shape{c.B, c.C * c.kh * c.kw, c.geom().out_h() * c.geom().out_w()});
      CHECK_CLOSE(cols, im2col_ref(x, c.geom()), 0.0, 0.0);  // a pure copy: exact
    }
  }
}

TEST_CASE("im2col reads non-contiguous and broadcast inputs", "[conv]") {
  for (DType dt : kFloatTypes) {
    ConvCase c{2, 3, 6, 5, 3, 2, 2, 1, 1, 1};
    Tensor x = random_tensor(c.x_shape(), dt, 7);
    Tensor want = im2col_ref(x, c.geom());
    for (const Tensor& v : other_layouts(x)) {
      REQUIRE_FALSE(v.is_contiguous());
      CHECK_CLOSE(ops::im2col(v, c.geom()), want, 0.0, 0.0);
    }
    // One image expanded over the batch (stride 0 along B).
    Tensor one = random_tensor({1, 3, 6, 5}, dt, 8);
    Tensor expanded = one.expand({4, 3, 6, 5});
    CHECK_CLOSE(ops::im2col(expanded, c.geom()), im2col_ref(expanded, c.geom()), 0.0, 0.0);
  }
}

TEST_CASE("conv2d as weight @ im2col(x) matches a direct convolution", "[conv]") {
  for (DType dt : kFloatTypes) {
    uint64_t seed = 200;
    for (const ConvCase& c : kConvCases) {
      INFO("dtype " << dt << ", case " << c.H << "x" << c.W << " kernel " << c.kh << "x" << c.kw << " stride "
                    << c.sh << "x" << c.sw << " pad " << c.ph << "x" << c.pw);
      const int64_t O = 4;
      Tensor x = random_tensor(c.x_shape(), dt, seed++);
      Tensor w = random_tensor({O, c.C, c.kh, c.kw}, dt, seed++);
      Tensor cols = ops::im2col(x, c.geom());
      // Both sides multiply the same (exactly copied) values in double; only the summation order differs.
      CHECK_CLOSE(conv2d_from_cols(cols, w, c.geom()), conv2d_direct(x, w, c.geom()), muxnet::test::kF64Atol,
                  muxnet::test::kF64Rtol);
    }
  }
}

TEST_CASE("im2col handles an empty batch and a size-1 image", "[conv]") {
  Tensor x = zeros({0, 2, 5, 5}, DType::F32);
  Tensor cols = ops::im2col(x, Conv2dGeom{2, 5, 5, 3, 3, 1, 1, 0, 0});
  CHECK(cols.shape() == Shape{0, 18, 9});
  Tensor back = ops::col2im(cols, Conv2dGeom{2, 5, 5, 3, 3, 1, 1, 0, 0});
  CHECK(back.shape() == Shape{0, 2, 5, 5});

  // A 1x1 image with a 3x3 kernel and padding 1: the pixel lands in the centre row (i=1, j=1).
  Tensor one = full({1, 1, 1, 1}, 3.5, DType::F64);
  Tensor c1 = ops::im2col(one, Conv2dGeom{1, 1, 1, 3, 3, 1, 1, 1, 1});
  CHECK(c1.to_vector<double>() == std::vector<double>{0, 0, 0, 0, 3.5, 0, 0, 0, 0});
}

TEST_CASE("im2col keeps large magnitudes, infinities and NaN exactly", "[conv]") {
  Tensor x = from_vector<double>({1e300, -1e300, INFINITY, NAN}, {1, 1, 2, 2});
  Tensor cols = ops::im2col(x, Conv2dGeom{1, 2, 2, 1, 1, 1, 1, 0, 0});
  std::vector<double> v = cols.to_vector<double>();
  CHECK(v[0] == 1e300);
  CHECK(v[1] == -1e300);
  CHECK(v[2] == INFINITY);
  CHECK(std::isnan(v[3]));
}

// ------------------------------------------------------------------------------------------ col2im

TEST_CASE("col2im of ones counts the receptive fields covering each pixel", "[conv]") {
  // 3x3 image, 2x2 kernel, stride 1: corners are in 1 field, edges in 2, the centre in 4.
  Tensor c = ones({1, 4, 4}, DType::F32);
  Tensor x = ops::col2im(c, Conv2dGeom{1, 3, 3, 2, 2, 1, 1, 0, 0});
  REQUIRE(x.shape() == Shape{1, 1, 3, 3});
  CHECK(x.to_vector<float>() == std::vector<float>{1, 2, 1, 2, 4, 2, 1, 2, 1});

  // 3x3 image, 3x3 kernel, padding 1 (a "same" convolution): row y is covered by 2, 3, 2 fields.
  Tensor c2 = ones({2, 9, 9}, DType::F64);
  Tensor x2 = ops::col2im(c2, Conv2dGeom{1, 3, 3, 3, 3, 1, 1, 1, 1});
  CHECK(x2.to_vector<double>() ==
        std::vector<double>{4, 6, 4, 6, 9, 6, 4, 6, 4, 4, 6, 4, 6, 9, 6, 4, 6, 4});

  // 1x5 image, 1x3 kernel, stride 2: fields [0,3) and [2,5) overlap at pixel 2.
  Tensor c3 = ones({1, 3, 2}, DType::F32);
  Tensor x3 = ops::col2im(c3, Conv2dGeom{1, 1, 5, 1, 3, 1, 2, 0, 0});
  CHECK(x3.to_vector<float>() == std::vector<float>{1, 1, 2, 1, 1});
}

TEST_CASE("col2im matches a naive scatter-add", "[conv]") {
  for (DType dt : kFloatTypes) {
    uint64_t seed = 300;
    for (const ConvCase& c : kConvCases) {
      INFO("dtype " << dt << ", case " << c.H << "x" << c.W << " kernel " << c.kh << "x" << c.kw << " stride "
                    << c.sh << "x" << c.sw << " pad " << c.ph << "x" << c.pw);
      Conv2dGeom g = c.geom();
      Tensor cols = random_tensor({c.B, c.C * c.kh * c.kw, g.out_h() * g.out_w()}, dt, seed++);
      Tensor x = ops::col2im(cols, g);
      REQUIRE(x.dtype() == dt);
      CHECK_CLOSE_DT(x, col2im_ref(cols, g));
    }
  }
}

TEST_CASE("col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>", "[conv]") {
  uint64_t seed = 400;
  for (const ConvCase& c : kConvCases) {
    INFO("case " << c.H << "x" << c.W << " kernel " << c.kh << "x" << c.kw << " stride " << c.sh << "x" << c.sw
                 << " pad " << c.ph << "x" << c.pw);
    Conv2dGeom g = c.geom();
    Tensor x = random_tensor(c.x_shape(), DType::F64, seed++);
    Tensor cols = random_tensor({c.B, c.C * c.kh * c.kw, g.out_h() * g.out_w()}, DType::F64, seed++);
    double lhs = dot(ops::im2col(x, g), cols), rhs = dot(x, ops::col2im(cols, g));
    CHECK(std::fabs(lhs - rhs) <= 1e-12 * (1.0 + std::fabs(lhs)));
  }
}

TEST_CASE("col2im reads non-contiguous cols", "[conv]") {
  for (DType dt : kFloatTypes) {
    Conv2dGeom g{2, 5, 6, 3, 3, 1, 2, 1, 0};
    Tensor cols = random_tensor({3, 18, g.out_h() * g.out_w()}, dt, 9);
    Tensor want = col2im_ref(cols, g);
    for (const Tensor& v : {transposed_layout(cols), strided_layout(cols), transposed_layout(cols, 0, 1)}) {
      REQUIRE_FALSE(v.is_contiguous());
      CHECK_CLOSE_DT(ops::col2im(v, g), want);
    }
  }
}

TEST_CASE("im2col and col2im results do not depend on the thread count", "[conv]") {
  // Large enough (64 * 25 * 256 elements) to run on several threads.
  Conv2dGeom g{1, 20, 20, 5, 5, 1, 1, 0, 0};
  Tensor x = random_tensor({64, 1, 20, 20}, DType::F32, 11);
  Tensor cols = random_tensor({64, 25, 256}, DType::F32, 12);
  Tensor a = ops::im2col(x, g), b = ops::col2im(cols, g);
  const int saved = get_num_threads();
  set_num_threads(1);
  Tensor a1 = ops::im2col(x, g), b1 = ops::col2im(cols, g);
  set_num_threads(saved);
  CHECK_CLOSE(a, a1, 0.0, 0.0);
  CHECK_CLOSE(b, b1, 0.0, 0.0);
  CHECK_CLOSE(a, im2col_ref(x, g), 0.0, 0.0);
}

TEST_CASE("im2col and col2im error messages", "[conv]") {
  Tensor x = zeros({2, 3, 8, 8});
  Conv2dGeom g{3, 8, 8, 3, 3, 1, 1, 0, 0};
  REQUIRE_THROWS_WITH(ops::im2col(zeros({3, 8, 8}), g), "im2col: expected x of shape (B, C, H, W), got (3, 8, 8)");
  REQUIRE_THROWS_WITH(ops::im2col(zeros({2, 3, 8, 8}, DType::I64), g),
                      "im2col: expected a floating tensor (f32 or f64), got i64");
  REQUIRE_THROWS_WITH(ops::im2col(x, Conv2dGeom{1, 8, 8, 3, 3, 1, 1, 0, 0}),
                      "im2col: geometry is for (C, H, W) = (1, 8, 8), got x of shape (2, 3, 8, 8)");
  REQUIRE_THROWS_WITH(ops::im2col(x, Conv2dGeom{3, 8, 7, 3, 3, 1, 1, 0, 0}),
                      "im2col: geometry is for (C, H, W) = (3, 8, 7), got x of shape (2, 3, 8, 8)");
  REQUIRE_THROWS_WITH(ops::im2col(x, Conv2dGeom{3, 8, 8, 0, 3, 1, 1, 0, 0}),
                      "im2col: kernel size must be >= 1, got 0x3");
  REQUIRE_THROWS_WITH(ops::im2col(x, Conv2dGeom{3, 8, 8, 3, 3, 1, 0, 0, 0}), "im2col: stride must be >= 1, got 1x0");
  REQUIRE_THROWS_WITH(ops::im2col(x, Conv2dGeom{3, 8, 8, 3, 3, 1, 1, -1, 0}),
                      "im2col: padding must be >= 0, got -1x0");
  REQUIRE_THROWS_WITH(ops::im2col(zeros({1, 1, 3, 3}), Conv2dGeom{1, 3, 3, 5, 5, 1, 1, 0, 0}),
                      "im2col: kernel 5x5 with padding 0 does not fit a 3x3 input");
  // (3 + 0 - 4) / 2 + 1 would truncate to 1 output row: the fit is checked directly.
  REQUIRE_THROWS_WITH(ops::im2col(zeros({1, 1, 3, 9}), Conv2dGeom{1, 3, 9, 4, 2, 2, 2, 0, 1}),
                      "im2col: kernel 4x2 with padding 0x1 does not fit a 3x9 input");
  REQUIRE_THROWS_WITH(ops::im2col(Tensor(), g), "im2col: x is an undefined tensor");

  REQUIRE_THROWS_WITH(ops::col2im(zeros({2, 27, 35}), g),
                      "col2im: expected cols of shape (2, 27, 36) for C=3, kernel 3x3 and a 6x6 output, got (2, 27, 35)");
  REQUIRE_THROWS_WITH(ops::col2im(zeros({27, 36}), g), "col2im: expected cols of shape (B, C*kh*kw, oh*ow), got (27, 36)");
  REQUIRE_THROWS_WITH(ops::col2im(zeros({2, 27, 36}, DType::I32), g),
                      "col2im: expected a floating tensor (f32 or f64), got i32");
  REQUIRE_THROWS_WITH(ops::col2im(zeros({1, 1, 1}), Conv2dGeom{1, 2, 2, 3, 3, 1, 1, 0, 0}),
                      "col2im: kernel 3x3 with padding 0 does not fit a 2x2 input");
  REQUIRE_THROWS_WITH(ops::col2im(zeros({1, 1, 1}), Conv2dGeom{-1, 2, 2, 1, 1, 1, 1, 0, 0}),
                      "col2im: geometry has a negative channel count -1");
}

// ------------------------------------------------------------------------------------------ max pool

TEST_CASE("max_pool2d: hand-computed 4x4 example", "[conv]") {
  // x:  1 2 | 5 3      windows 2x2, stride 2:  max 4 at (1,0), 7 at (1,3)
  //     4 0 | 1 7                              max 9 at (2,0), 6 at (3,1)
  //     ----+----
  //     9 8 | 2 2
  //     3 6 | 4 1      (window 4: 2 2 / 4 1 -> 4 at (3,2))
  for (DType dt : kFloatTypes) {
    Tensor x = from_vector<double>({1, 2, 5, 3, 4, 0, 1, 7, 9, 8, 2, 2, 3, 6, 4, 1}, {1, 1, 4, 4}).to(dt);
    ops::MaxPoolResult r = ops::max_pool2d(x, Pool2dGeom{4, 4, 2, 2, 2, 2, 0, 0});
    REQUIRE(r.out.shape() == Shape{1, 1, 2, 2});
    REQUIRE(r.out.dtype() == dt);
    REQUIRE(r.argmax.dtype() == DType::I64);
    CHECK(r.out.to_vector<double>() == std::vector<double>{4, 7, 9, 4});
    CHECK(r.argmax.to_vector<int64_t>() == std::vector<int64_t>{4, 7, 8, 14});

    // 3x3 windows, stride 1 (overlapping): windows at (0,0), (0,1), (1,0), (1,1).
    ops::MaxPoolResult o = ops::max_pool2d(x, Pool2dGeom{4, 4, 3, 3, 1, 1, 0, 0});
    CHECK(o.out.to_vector<double>() == std::vector<double>{9, 8, 9, 8});
    CHECK(o.argmax.to_vector<int64_t>() == std::vector<int64_t>{8, 9, 8, 9});

    // Backward of the overlapping case: pixel 8 won two windows, pixel 9 two.
    Tensor go = from_vector<double>({1, 10, 100, 1000}, {1, 1, 2, 2}).to(dt);
    Tensor gi = ops::max_pool2d_backward(go, o.argmax, Pool2dGeom{4, 4, 3, 3, 1, 1, 0, 0}, x.shape());
    std::vector<double> want(16, 0.0);
    want[8] = 101;
    want[9] = 1010;
    CHECK(gi.to_vector<double>() == want);
  }
}

TEST_CASE("max_pool2d: padding never wins", "[conv]") {
  // All values negative: an implicit 0 padding would win every border window.
  Tensor x = from_vector<float>({-5, -4, -3, -2, -1, -6, -7, -8, -9}, {1, 1, 3, 3});
  ops::MaxPoolResult r = ops::max_pool2d(x, Pool2dGeom{3, 3, 2, 2, 2, 2, 1, 1});
  // Windows: {-5}, {-4,-3}, {-2,-7}, {-1,-6,-8,-9}.
  CHECK(r.out.to_vector<float>() == std::vector<float>{-5, -3, -2, -1});
  CHECK(r.argmax.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 3, 4});

  // -inf everywhere: the first real pixel of each window is reported, never a padding position.
  Tensor ninf = full({1, 1, 2, 2}, -INFINITY, DType::F64);
  ops::MaxPoolResult n = ops::max_pool2d(ninf, Pool2dGeom{2, 2, 2, 2, 1, 1, 1, 1});
  CHECK(n.out.to_vector<double>() == std::vector<double>(9, -INFINITY));
  CHECK(n.argmax.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 1, 0, 0, 1, 2, 2, 3});
}

TEST_CASE("max_pool2d: ties go to the first position in the window", "[conv]") {
  Tensor x = ones({1, 1, 4, 4}, DType::F32);
  ops::MaxPoolResult r = ops::max_pool2d(x, Pool2dGeom{4, 4, 2, 2, 2, 2, 0, 0});
  CHECK(r.argmax.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 8, 10});
  // Overlapping 3x3 windows, stride 1, with a tie between (0, 2) and (2, 0): the row-major first wins.
  Tensor y = from_vector<double>({0, 0, 5, 0, 0, 0, 5, 0, 0}, {1, 1, 3, 3});
  ops::MaxPoolResult t = ops::max_pool2d(y, Pool2dGeom{3, 3, 3, 3, 1, 1, 0, 0});
  CHECK(t.argmax.to_vector<int64_t>() == std::vector<int64_t>{2});
  ops::MaxPoolResult t2 = ops::max_pool2d(y, Pool2dGeom{3, 3, 2, 2, 1, 1, 0, 0});
  CHECK(t2.argmax.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 6, 4});
}

TEST_CASE("max_pool2d: NaN wins and propagates", "[conv]") {
  for (DType dt : kFloatTypes) {
    Tensor x = from_vector<double>({1, NAN, 3, 4, 5, 6, 7, 8, NAN, 9, 10, NAN, 11, 12, 13, 14}, {1, 1, 4, 4}).to(dt);
    ops::MaxPoolResult r = ops::max_pool2d(x, Pool2dGeom{4, 4, 2, 2, 2, 2, 0, 0});
    std::vector<double> out = r.out.to_vector<double>();
    CHECK(std::isnan(out[0]));  // a NaN before larger values: they do not replace it
    CHECK(out[1] == 8);
    CHECK(std::isnan(out[2]));  // NaN first in its window
    CHECK(std::isnan(out[3]));  // NaN after a smaller value
    CHECK(r.argmax.to_vector<int64_t>() == std::vector<int64_t>{1, 7, 8, 11});
    // Two NaNs in one window: the last one is the argmax (PyTorch's rule).
    Tensor y = from_vector<double>({NAN, 1, 2, NAN}, {1, 1, 2, 2}).to(dt);
    ops::MaxPoolResult q = ops::max_pool2d(y, Pool2dGeom{2, 2, 2, 2, 1, 1, 0, 0});
    CHECK(std::isnan(q.out.item()));
    CHECK(q.argmax.to_vector<int64_t>() == std::vector<int64_t>{3});
  }
}

TEST_CASE("max_pool2d matches a naive reference", "[conv]") {
  for (DType dt : kFloatTypes) {
    uint64_t seed = 500;
    for (const PoolCase& c : kPoolCases) {
      INFO("dtype " << dt << ", case " << c.H << "x" << c.W << " kernel " << c.kh << "x" << c.kw << " stride "
                    << c.sh << "x" << c.sw << " pad " << c.ph << "x" << c.pw);
      Tensor x = random_tensor(c.x_shape(), dt, seed++);
      ops::MaxPoolResult r = ops::max_pool2d(x, c.geom());
      PoolRef want = max_pool2d_ref(x, c.geom());
      CHECK_CLOSE(r.out, want.out, 0.0, 0.0);
      CHECK(r.argmax.to_vector<int64_t>() == want.argmax.to_vector<int64_t>());
    }
  }
}

TEST_CASE("max_pool2d with few distinct values (many ties) and large magnitudes matches the reference", "[conv]") {
  for (DType dt : kFloatTypes) {
    uint64_t seed = 600;
    for (const PoolCase& c : kPoolCases) {
      Tensor x = tie_levels(c.x_shape(), dt, seed++);
      ops::MaxPoolResult r = ops::max_pool2d(x, c.geom());
      PoolRef want = max_pool2d_ref(x, c.geom());
      CHECK_CLOSE(r.out, want.out, 0.0, 0.0);
      CHECK(r.argmax.to_vector<int64_t>() == want.argmax.to_vector<int64_t>());
    }
  }
}

TEST_CASE("max_pool2d reads non-contiguous and broadcast inputs", "[conv]") {
  for (DType dt : kFloatTypes) {
    PoolCase c{2, 3, 7, 6, 3, 2, 2, 1, 1, 1};
    Tensor x = random_tensor(c.x_shape(), dt, 13);
    PoolRef want = max_pool2d_ref(x, c.geom());
    for (const Tensor& v : other_layouts(x)) {
      REQUIRE_FALSE(v.is_contiguous());
      ops::MaxPoolResult r = ops::max_pool2d(v, c.geom());
      CHECK_CLOSE(r.out, want.out, 0.0, 0.0);
      CHECK(r.argmax.to_vector<int64_t>() == want.argmax.to_vector<int64_t>());
    }
    Tensor expanded = random_tensor({1, 3, 7, 6}, dt, 14).expand({4, 3, 7, 6});
    PoolRef we = max_pool2d_ref(expanded, c.geom());
    ops::MaxPoolResult re = ops::max_pool2d(expanded, c.geom());
    CHECK_CLOSE(re.out, we.out, 0.0, 0.0);
    CHECK(re.argmax.to_vector<int64_t>() == we.argmax.to_vector<int64_t>());
  }
}

TEST_CASE("max_pool2d handles an empty batch", "[conv]") {
  Pool2dGeom g{4, 4, 2, 2, 2, 2, 0, 0};
  ops::MaxPoolResult r = ops::max_pool2d(zeros({0, 3, 4, 4}), g);
  CHECK(r.out.shape() == Shape{0, 3, 2, 2});
  CHECK(r.argmax.shape() == Shape{0, 3, 2, 2});
  Tensor gi = ops::max_pool2d_backward(r.out, r.argmax, g, {0, 3, 4, 4});
  CHECK(gi.shape() == Shape{0, 3, 4, 4});
}

TEST_CASE("max_pool2d_backward matches a naive scatter-add", "[conv]") {
  for (DType dt : kFloatTypes) {
    uint64_t seed = 700;
    for (const PoolCase& c : kPoolCases) {
      INFO("dtype " << dt << ", case " << c.H << "x" << c.W << " kernel " << c.kh << "x" << c.kw << " stride "
                    << c.sh << "x" << c.sw << " pad " << c.ph << "x" << c.pw);
      Tensor x = random_tensor(c.x_shape(), dt, seed++);
      ops::MaxPoolResult r = ops::max_pool2d(x, c.geom());
      Tensor go = random_tensor(r.out.shape(), dt, seed++);
      Tensor gi = ops::max_pool2d_backward(go, r.argmax, c.geom(), x.shape());
      REQUIRE(gi.dtype() == dt);
      CHECK_CLOSE_DT(gi, max_pool2d_backward_ref(go, r.argmax, x.shape()));
      // Mass is conserved: every grad_out element lands on exactly one input pixel.
      CHECK(total(gi) == Approx(total(go)).epsilon(1e-5).margin(1e-5));
    }
  }
}

TEST_CASE("max_pool2d_backward accumulates overlapping windows (hand-computed)", "[conv]") {
  // Centre maximum of a 3x3 plane: all four 2x2 stride-1 windows pick it.
  Tensor x = from_vector<float>({0, 1, 0, 2, 9, 3, 0, 4, 0}, {1, 1, 3, 3});
  Pool2dGeom g{3, 3, 2, 2, 1, 1, 0, 0};
  ops::MaxPoolResult r = ops::max_pool2d(x, g);
  CHECK(r.argmax.to_vector<int64_t>() == std::vector<int64_t>{4, 4, 4, 4});
  Tensor go = from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor gi = ops::max_pool2d_backward(go, r.argmax, g, x.shape());
  CHECK(gi.to_vector<float>() == std::vector<float>{0, 0, 0, 0, 10, 0, 0, 0, 0});
}

TEST_CASE("max_pool2d_backward reads non-contiguous grad_out and argmax", "[conv]") {
  for (DType dt : kFloatTypes) {
    PoolCase c{2, 3, 9, 8, 3, 3, 2, 2, 1, 1};
    Tensor x = random_tensor(c.x_shape(), dt, 15);
    ops::MaxPoolResult r = ops::max_pool2d(x, c.geom());
    Tensor go = random_tensor(r.out.shape(), dt, 16);
    Tensor want = max_pool2d_backward_ref(go, r.argmax, x.shape());
    CHECK_CLOSE_DT(ops::max_pool2d_backward(transposed_layout(go), transposed_layout(r.argmax), c.geom(), x.shape()),
                   want);
    CHECK_CLOSE_DT(ops::max_pool2d_backward(strided_layout(go), strided_layout(r.argmax), c.geom(), x.shape()), want);
  }
}

TEST_CASE("max_pool2d results do not depend on the thread count", "[conv]") {
  Pool2dGeom g{16, 16, 2, 2, 2, 2, 0, 0};
  Tensor x = random_tensor({256, 6, 16, 16}, DType::F32, 17);
  ops::MaxPoolResult a = ops::max_pool2d(x, g);
  Tensor go = random_tensor(a.out.shape(), DType::F32, 18);
  Tensor ga = ops::max_pool2d_backward(go, a.argmax, g, x.shape());
  const int saved = get_num_threads();
  set_num_threads(1);
  ops::MaxPoolResult b = ops::max_pool2d(x, g);
  Tensor gb = ops::max_pool2d_backward(go, b.argmax, g, x.shape());
  set_num_threads(saved);
  CHECK_CLOSE(a.out, b.out, 0.0, 0.0);
  CHECK(a.argmax.to_vector<int64_t>() == b.argmax.to_vector<int64_t>());
  CHECK_CLOSE(ga, gb, 0.0, 0.0);
}

TEST_CASE("max_pool2d and max_pool2d_backward error messages", "[conv]") {
  Tensor x = zeros({2, 3, 8, 8});
  Pool2dGeom g{8, 8, 2, 2, 2, 2, 0, 0};
  REQUIRE_THROWS_WITH(ops::max_pool2d(zeros({8, 8}), g), "max_pool2d: expected x of shape (B, C, H, W), got (8, 8)");
  REQUIRE_THROWS_WITH(ops::max_pool2d(zeros({2, 3, 8, 8}, DType::I32), g),
                      "max_pool2d: expected a floating tensor (f32 or f64), got i32");
  REQUIRE_THROWS_WITH(ops::max_pool2d(x, Pool2dGeom{8, 9, 2, 2, 2, 2, 0, 0}),
                      "max_pool2d: geometry is for a 8x9 input, got x of shape (2, 3, 8, 8)");
  REQUIRE_THROWS_WITH(ops::max_pool2d(x, Pool2dGeom{8, 8, 2, 0, 2, 2, 0, 0}),
                      "max_pool2d: kernel size must be >= 1, got 2x0");
  REQUIRE_THROWS_WITH(ops::max_pool2d(x, Pool2dGeom{8, 8, 2, 2, -1, 2, 0, 0}),
                      "max_pool2d: stride must be >= 1, got -1x2");
  REQUIRE_THROWS_WITH(ops::max_pool2d(x, Pool2dGeom{8, 8, 2, 2, 2, 2, 0, -1}),
                      "max_pool2d: padding must be >= 0, got 0x-1");
  REQUIRE_THROWS_WITH(ops::max_pool2d(x, Pool2dGeom{8, 8, 3, 3, 1, 1, 2, 2}),
                      "max_pool2d: padding 2 must be at most half the kernel size 3x3");
  REQUIRE_THROWS_WITH(ops::max_pool2d(zeros({1, 1, 2, 2}), Pool2dGeom{2, 2, 3, 3, 1, 1, 0, 0}),
                      "max_pool2d: kernel 3x3 with padding 0 does not fit a 2x2 input");

  ops::MaxPoolResult r = ops::max_pool2d(x, g);
  REQUIRE_THROWS_WITH(ops::max_pool2d_backward(r.out, r.argmax, g, {2, 3, 8, 9}),
                      "max_pool2d_backward: input shape (2, 3, 8, 9) does not match the geometry's 8x8 input");
  REQUIRE_THROWS_WITH(ops::max_pool2d_backward(r.out, r.argmax, g, {3, 8, 8}),
                      "max_pool2d_backward: input shape (3, 8, 8) does not match the geometry's 8x8 input");
  REQUIRE_THROWS_WITH(ops::max_pool2d_backward(r.out, r.argmax, g, {2, 4, 8, 8}),
                      "max_pool2d_backward: expected grad_out of shape (2, 4, 4, 4), got (2, 3, 4, 4)");
  REQUIRE_THROWS_WITH(ops::max_pool2d_backward(r.out, r.argmax.to(DType::I32), g, x.shape()),
                      "max_pool2d_backward: expected argmax of dtype i64, got i32");
  REQUIRE_THROWS_WITH(ops::max_pool2d_backward(r.out, r.argmax.narrow(3, 0, 3), g, x.shape()),
                      "max_pool2d_backward: expected argmax of shape (2, 3, 4, 4), got (2, 3, 4, 3)");
  REQUIRE_THROWS_WITH(ops::max_pool2d_backward(r.argmax, r.argmax, g, x.shape()),
                      "max_pool2d_backward: expected a floating tensor (f32 or f64), got i64");
  REQUIRE_THROWS_WITH(ops::max_pool2d_backward(r.out.view({2, 3, 16}), r.argmax, g, x.shape()),
                      "max_pool2d_backward: expected grad_out of shape (B, C, H, W), got (2, 3, 16)");
}
