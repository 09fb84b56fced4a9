// test_reduce.cpp — reductions (sum, mean, max, min), argmax and sum_to_shape against naive references.
//
// The references below loop over every element with for_each_index and Tensor::at, accumulating in
// double into the output element the index maps to. They cover every subset of dims of a 3-d and a 4-d
// tensor, with and without keepdim, on contiguous, transposed, strided, permuted and expanded inputs,
// in f32, f64 and i64; plus hand-computed values, NaN propagation, empty dims, both kernel paths (row
// and column) at sizes where the reduction is split into blocks, and 1-vs-2-thread bitwise equality.
#include <cmath>
#include <cstring>
#include <limits>

#include "tensor/ops.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::for_each_index;
using muxnet::test::random_tensor;

namespace {

const char* op_str(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
    default: return "min";
  }
}

// Naive reference in double: dims as the op takes them (negative allowed, empty = all).
Tensor ref_reduce(ReduceOp op, const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  const int nd = x.ndim();
  std::vector<bool> red(size_t(nd), dims.empty());
  for (int d : dims) red[size_t(d < 0 ? d + nd : d)] = true;
  Shape kshape = x.shape(), sshape;
  for (int d = 0; d < nd; ++d) {
    if (red[size_t(d)]) kshape[d] = 1;
    else sshape.push_back(x.size(d));
  }
  const size_t nout = size_t(kshape.numel());
  double init = op == ReduceOp::Max ? -INFINITY : op == ReduceOp::Min ? INFINITY : 0.0;
  std::vector<double> acc(nout, init);
  std::vector<int64_t> count(nout, 0);
  for_each_index(x.shape(), [&](const std::vector<int64_t>& i) {
    int64_t o = 0;
    for (int d = 0; d < nd; ++d) o = o * kshape[d] + (red[size_t(d)] ? 0 : i[size_t(d)]);
    double v = x.at(i);
    double& a = acc[size_t(o)];
    count[size_t(o)]++;
    if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
      a += v;
    } else if (std::isnan(v) || std::isnan(a)) {
      a = NAN;
    } else {
      a = op == ReduceOp::Max ? std::max(a, v) : std::min(a, v);
    }
  });
  if (op == ReduceOp::Mean) {
    for (size_t o = 0; o < nout; ++o) acc[o] /= double(count[o]);  // 0 / 0 = NaN for empty
  }
  Tensor out = from_vector(acc, kshape);
  return keepdim ? out : out.view(sshape);
}

// Index of the first maximum along dim (NaN wins), keepdim shape, as f64.
Tensor ref_argmax(const Tensor& x, int dim, bool keepdim) {
  const int nd = x.ndim();
  const int dd = dim < 0 ? dim + nd : dim;
  Shape kshape = x.shape();
  kshape[dd] = 1;
  std::vector<double> out(size_t(kshape.numel()));
  for_each_index(kshape, [&](const std::vector<int64_t>& o) {
    std::vector<int64_t> i = o;
    int64_t best_at = 0;
    double best = x.at(i);
    for (int64_t k = 1; k < x.size(dd); ++k) {
      i[size_t(dd)] = k;
      double v = x.at(i);
      if (std::isnan(best)) break;
      if (std::isnan(v) || v > best) {
        best = v;
        best_at = k;
      }
    }
    int64_t flat = 0;
    for (int d = 0; d < nd; ++d) flat = flat * kshape[d] + o[size_t(d)];
    out[size_t(flat)] = double(best_at);
  });
  Tensor t = from_vector(out, kshape);
  return keepdim ? t : t.squeeze(dd);
}

// Inputs holding random values of `shape` in several layouts: (name, tensor).
std::vector<std::pair<std::string, Tensor>> layouts(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  auto make = [&](const Shape& s) {
    return is_floating(dtype) ? random_tensor(s, dtype, seed + 17 * uint64_t(s.numel()))
                              : randint(-50, 50, s, dtype, &gen);
  };
  Tensor x = make(shape);
  std::vector<std::pair<std::string, Tensor>> out = {{"contiguous", x},
                                                     {"transposed", test::transposed_layout(x, 0, -1)},
                                                     {"strided", test::strided_layout(x)}};
  // A permuted view: stored with dims in reverse order.
  std::vector<int> rev;
  Shape rshape;
  for (int d = shape.ndim() - 1; d >= 0; --d) {
    rev.push_back(d);
    rshape.push_back(shape[d]);
  }
  out.push_back({"permuted", make(rshape).permute(rev)});
  // An expand()-broadcast view: dims 1 (and 3) are broadcast from size 1.
  Shape small = shape;
  small[1] = 1;
  if (small.ndim() > 3) small[3] = 1;
  out.push_back({"expanded", make(small).expand(shape)});
  return out;
}

void check_every_subset(const Shape& shape, uint64_t seed) {
  for (DType dt : {DType::F32, DType::F64, DType::I64}) {
    std::vector<ReduceOp> ops = {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min};
    if (is_floating(dt)) ops.push_back(ReduceOp::Mean);
    for (auto& [name, x] : layouts(shape, dt, seed)) {
      const int nd = shape.ndim();
      for (int mask = 0; mask < (1 << nd); ++mask) {
        std::vector<int> dims;
        // Odd masks name their dims negatively and in reverse order: order and sign must not matter.
        for (int d = nd - 1; d >= 0; --d) {
          if (mask & (1 << d)) dims.insert(mask % 2 ? dims.end() : dims.begin(), mask % 2 ? d - nd : d);
        }
        for (bool keepdim : {false, true}) {
          for (ReduceOp op : ops) {
            INFO(op_str(op) << " " << dtype_name(dt) << " " << name << " shape " << shape << " mask " << mask
                            << " keepdim " << keepdim);
            Tensor got = ops::reduce(op, x, dims, keepdim);
            Tensor want = ref_reduce(op, x, dims, keepdim);
            REQUIRE(got.dtype() == dt);
            CHECK_CLOSE_DT(got, want);
          }
        }
      }
    }
  }
}

// Bitwise comparison of two results.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i) {
    if (std::memcmp(&va[i], &vb[i], sizeof(double)) != 0) return false;
  }
  return true;
}

// Restores the thread count at scope exit.
struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

}  // namespace

TEST_CASE("reductions of a small 2x3 tensor match hand-computed values", "[reduce]") {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).to(dt);
    CHECK(ops::sum(x).item() == 21);
    CHECK(ops::sum(x).shape() == Shape{});
    CHECK(ops::sum(x, {0}).to_vector<double>() == std::vector<double>{5, 7, 9});
    CHECK(ops::sum(x, {1}).to_vector<double>() == std::vector<double>{6, 15});
    CHECK(ops::sum(x, {-1}, true).shape() == Shape{2, 1});
    CHECK(ops::mean(x).item() == 3.5);
    CHECK(ops::mean(x, {1}).to_vector<double>() == std::vector<double>{2, 5});
    CHECK(ops::mean(x, {0}).to_vector<double>() == std::vector<double>{2.5, 3.5, 4.5});
    CHECK(ops::max(x, {0}).to_vector<double>() == std::vector<double>{4, 5, 6});
    CHECK(ops::max(x).item() == 6);
    Tensor mn = ops::min(x, {1}, true);
    CHECK(mn.shape() == Shape{2, 1});
    CHECK(mn.to_vector<double>() == std::vector<double>{1, 4});
    CHECK(ops::sum(x.t(), {0}).to_vector<double>() == std::vector<double>{6, 15});
  }
  Tensor xi = from_vector<int64_t>({1, -2, 3, 4, 5, -6}, {2, 3});
  CHECK(ops::sum(xi).dtype() == DType::I64);
  CHECK(ops::sum(xi).item() == 5);
  CHECK(ops::max(xi, {1}).to_vector<int64_t>() == std::vector<int64_t>{3, 5});
  CHECK(ops::min(xi, {0}).to_vector<int64_t>() == std::vector<int64_t>{1, -2, -6});
  Tensor x32 = from_vector<int32_t>({7, 8, 9}, {3});
  CHECK(ops::sum(x32).dtype() == DType::I32);
  CHECK(ops::sum(x32).item() == 24);
}

TEST_CASE("f32 sums accumulate in f64", "[reduce]") {
  // In f32, 1e8 + 1 == 1e8 (the spacing of floats there is 8); summing in f64 keeps every 1.
  std::vector<float> v(1002, 1.0f);
  v.front() = 1e8f;
  v.back() = -1e8f;
  Tensor x = from_vector(v);
  CHECK(ops::sum(x).item() == 1000.0);
  CHECK(ops::mean(x).item() == Approx(1000.0 / 1002.0).epsilon(1e-7));
  // A column sum of the same values (column path).
  CHECK(ops::sum(x.view({1002, 1}), {0}).item() == 1000.0);
}

TEST_CASE("reductions over every subset of dims of a 3-d tensor match the reference", "[reduce]") {
  check_every_subset(Shape{3, 4, 5}, 11);
}

TEST_CASE("reductions over every subset of dims of a 4-d tensor match the reference", "[reduce]") {
  check_every_subset(Shape{2, 3, 4, 5}, 23);
}

TEST_CASE("reductions with size-1 dims and 0-d tensors", "[reduce]") {
  Tensor x = random_tensor({3, 1, 4, 1}, DType::F64, 5);
  for (std::vector<int> dims : {std::vector<int>{1}, {3}, {1, 3}, {0, 1}, {2, 3}}) {
    CHECK_CLOSE_DT(ops::sum(x, dims), ref_reduce(ReduceOp::Sum, x, dims, false));
    CHECK_CLOSE_DT(ops::max(x, dims, true), ref_reduce(ReduceOp::Max, x, dims, true));
  }
  Tensor s = scalar_tensor(2.5, DType::F64);
  CHECK(ops::sum(s).shape() == Shape{});
  CHECK(ops::sum(s).item() == 2.5);
  CHECK(ops::mean(s, {0}).item() == 2.5);
  CHECK(ops::max(s, {-1}, true).item() == 2.5);
}

TEST_CASE("max and min propagate NaN; sum of NaN is NaN", "[reduce]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = from_vector<double>({1, nan, 3, 4, 5, 6}, {2, 3}).to(dt);
    std::vector<double> mx1 = ops::max(x, {1}).to_vector<double>();
    CHECK(std::isnan(mx1[0]));
    CHECK(mx1[1] == 6);
    std::vector<double> mn1 = ops::min(x, {1}).to_vector<double>();
    CHECK(std::isnan(mn1[0]));
    CHECK(mn1[1] == 4);
    std::vector<double> mx0 = ops::max(x, {0}).to_vector<double>();  // column path
    CHECK(mx0[0] == 4);
    CHECK(std::isnan(mx0[1]));
    CHECK(mx0[2] == 6);
    CHECK(std::isnan(ops::sum(x, {1}).to_vector<double>()[0]));
    // NaN first, then larger values: the NaN must survive.
    Tensor first = from_vector<double>({nan, 10, 20}).to(dt);
    CHECK(std::isnan(ops::max(first).item()));
    CHECK(std::isnan(ops::min(first).item()));
    // NaN inside a long unit-stride run (the multi-lane loop) and inside a large column reduction.
    Tensor longrow = random_tensor({3, 100}, dt, 7);
    longrow.select(0, 1).narrow(0, 37, 1).fill_(nan);
    std::vector<double> lr = ops::max(longrow, {1}).to_vector<double>();
    CHECK_FALSE(std::isnan(lr[0]));
    CHECK(std::isnan(lr[1]));
    CHECK_CLOSE_DT(ops::min(longrow, {1}), ref_reduce(ReduceOp::Min, longrow, {1}, false));
    Tensor col = random_tensor({3000, 40}, dt, 8);
    col.select(0, 2500).narrow(0, 5, 1).fill_(nan);
    CHECK_CLOSE_DT(ops::max(col, {0}), ref_reduce(ReduceOp::Max, col, {0}, false));
    CHECK(std::isnan(ops::max(col, {0}).to_vector<double>()[5]));
    // Infinities are ordinary values.
    Tensor inf = from_vector<double>({-INFINITY, 1, INFINITY}).to(dt);
    CHECK(ops::max(inf).item() == INFINITY);
    CHECK(ops::min(inf).item() == -INFINITY);
  }
}

TEST_CASE("reductions over empty dims: sum 0, mean NaN, max/min throw", "[reduce]") {
  Tensor x = zeros({0, 3}, DType::F32);
  CHECK(ops::sum(x, {0}).to_vector<double>() == std::vector<double>{0, 0, 0});
  CHECK(ops::sum(x).item() == 0);
  std::vector<double> m = ops::mean(x, {0}).to_vector<double>();
  REQUIRE(m.size() == 3);
  for (double v : m) CHECK(std::isnan(v));
  CHECK(ops::sum(x, {1}).shape() == Shape{0});
  CHECK(ops::max(x, {1}).shape() == Shape{0});
  CHECK(ops::sum(x, {1}, true).shape() == Shape{0, 1});
  REQUIRE_THROWS_WITH(ops::max(x, {0}),
                      "max: cannot reduce over dim 0 of size 0 (input shape (0, 3)): max of an empty set has no value");
  REQUIRE_THROWS_WITH(ops::min(x), Catch::Contains("min: cannot reduce over dim 0 of size 0"));
  Tensor xi = zeros({2, 0}, DType::I64);
  CHECK(ops::sum(xi, {1}).to_vector<int64_t>() == std::vector<int64_t>{0, 0});
}

TEST_CASE("reduction errors name the op", "[reduce]") {
  Tensor x = zeros({2, 3});
  REQUIRE_THROWS_WITH(ops::sum(x, {1, -1}), "sum: dim 1 appears more than once in dims (1, -1)");
  REQUIRE_THROWS_WITH(ops::max(x, {0, 0}), "max: dim 0 appears more than once in dims (0, 0)");
  REQUIRE_THROWS_WITH(ops::sum(x, {2}), "sum: dim 2 out of range for a 2-d tensor (expected -2 to 1)");
  REQUIRE_THROWS_WITH(ops::mean(zeros({2}, DType::I64)), "mean: expected a floating tensor (f32 or f64), got i64");
  REQUIRE_THROWS_WITH(ops::argmax(x, -3), "argmax: dim -3 out of range for a 2-d tensor (expected -2 to 1)");
  REQUIRE_THROWS_WITH(ops::argmax(zeros({2, 0}), 1), "argmax: cannot reduce over dim 1 of size 0 (input shape (2, 0))");
}

TEST_CASE("row and column paths on large inputs match the reference", "[reduce]") {
  for (DType dt : {DType::F32, DType::F64}) {
    INFO(dtype_name(dt));
    // A bias gradient: (2048, 256) -> (256), split into row blocks (column path).
    Tensor g = random_tensor({2048, 256}, dt, 31);
    CHECK_CLOSE_DT(ops::sum(g, {0}), ref_reduce(ReduceOp::Sum, g, {0}, false));
    CHECK_CLOSE_DT(ops::mean(g, {0}, true), ref_reduce(ReduceOp::Mean, g, {0}, true));
    CHECK_CLOSE_DT(ops::min(g, {0}), ref_reduce(ReduceOp::Min, g, {0}, false));
    // Many rows (row path, one output per row), and everything into one value (split into blocks).
    CHECK_CLOSE_DT(ops::sum(g, {1}), ref_reduce(ReduceOp::Sum, g, {1}, false));
    CHECK_CLOSE_DT(ops::sum(g), ref_reduce(ReduceOp::Sum, g, {}, false));
    CHECK_CLOSE_DT(ops::max(g), ref_reduce(ReduceOp::Max, g, {}, false));
    // Few long rows, a transposed view (reduced dim strided), and a broadcast (stride-0) input.
    Tensor few = random_tensor({3, 70001}, dt, 32);
    CHECK_CLOSE_DT(ops::mean(few, {1}), ref_reduce(ReduceOp::Mean, few, {1}, false));
    Tensor tr = random_tensor({256, 2048}, dt, 33).t();
    CHECK_CLOSE_DT(ops::sum(tr, {0}), ref_reduce(ReduceOp::Sum, tr, {0}, false));
    CHECK_CLOSE_DT(ops::sum(tr, {1}), ref_reduce(ReduceOp::Sum, tr, {1}, false));
    Tensor row = random_tensor({1, 256}, dt, 34);
    Tensor ex = row.expand({4096, 256});
    CHECK_CLOSE_DT(ops::sum(ex, {0}), ref_reduce(ReduceOp::Sum, ex, {0}, false));
    // Wide columns (more than one column chunk) over a few rows.
    Tensor wide = random_tensor({5, 3000}, dt, 35);
    CHECK_CLOSE_DT(ops::sum(wide, {0}), ref_reduce(ReduceOp::Sum, wide, {0}, false));
  }
}

TEST_CASE("reductions give identical bits for 1 and 2 threads", "[reduce]") {
  ThreadsGuard guard;
  Tensor g = random_tensor({2048, 256}, DType::F32, 41);
  Tensor few = random_tensor({3, 70001}, DType::F32, 42);
  Tensor g64 = random_tensor({512, 300}, DType::F64, 43).t();
  auto run = [&] {
    return std::vector<Tensor>{ops::sum(g, {0}), ops::mean(g, {1}),  ops::sum(g),
                               ops::max(g, {0}), ops::sum(few, {1}), ops::mean(few),
                               ops::sum(g64, {0}), ops::sum(g64, {1}), ops::argmax(g, 0)};
  };
  set_num_threads(1);
  std::vector<Tensor> one = run();
  set_num_threads(2);
  std::vector<Tensor> two = run();
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    CHECK(same_bits(one[i], two[i]));
  }
}

TEST_CASE("argmax returns the first maximum; NaN counts as the maximum", "[reduce]") {
  Tensor x = from_vector<float>({1, 3, 3, 2, 0, 2}, {2, 3});
  CHECK(ops::argmax(x, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  CHECK(ops::argmax(x, 0).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
  CHECK(ops::argmax(x, -1, true).shape() == Shape{2, 1});
  CHECK(ops::argmax(x, 0).dtype() == DType::I64);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(ops::argmax(from_vector<float>({1, nan, 5, nan}), 0).item() == 1);
  CHECK(ops::argmax(from_vector<float>({nan, 2}), 0).item() == 0);
  CHECK(ops::argmax(from_vector<double>({-INFINITY, -INFINITY}), 0).item() == 0);
  CHECK(ops::argmax(from_vector<int64_t>({4, 9, 9, -1}), 0).item() == 1);
  Tensor s = ops::argmax(scalar_tensor(3.0), 0);
  CHECK(s.shape() == Shape{});
  CHECK(s.item() == 0);
}

TEST_CASE("argmax matches the reference along every dim, with ties and strided inputs", "[reduce]") {
  Generator gen(51);
  // Values in [0, 4): many ties.
  Tensor xi = randint(0, 4, {4, 5, 6}, DType::I64, &gen);
  for (const Tensor& base : {xi, xi.to(DType::F32), xi.to(DType::F64)}) {
    for (const Tensor& x : {base, test::transposed_layout(base, 0, 2), test::strided_layout(base),
                            base.narrow(1, 2, 1).expand({4, 3, 6})}) {
      for (int dim : {0, 1, 2, -1, -3}) {
        for (bool keepdim : {false, true}) {
          INFO("dtype " << x.dtype() << " dim " << dim << " keepdim " << keepdim);
          Tensor got = ops::argmax(x, dim, keepdim);
          CHECK_CLOSE(got, ref_argmax(x, dim, keepdim), 0, 0);
        }
      }
    }
  }
  // Long rows (parallel over outputs).
  Tensor big = random_tensor({300, 500}, DType::F32, 52);
  CHECK_CLOSE(ops::argmax(big, 1), ref_argmax(big, 1, false), 0, 0);
  CHECK_CLOSE(ops::argmax(big, 0), ref_argmax(big, 0, false), 0, 0);
}

TEST_CASE("sum_to_shape sums a broadcast result back to the operand's shape", "[reduce]") {
  Tensor x = random_tensor({2, 4, 3}, DType::F64, 61);
  Tensor r3 = ops::sum_to_shape(x, {3});
  CHECK(r3.shape() == Shape{3});
  CHECK_CLOSE_DT(r3, ref_reduce(ReduceOp::Sum, x, {0, 1}, false));
  Tensor r41 = ops::sum_to_shape(x, {4, 1});
  CHECK(r41.shape() == Shape{4, 1});
  CHECK_CLOSE_DT(r41, ref_reduce(ReduceOp::Sum, x, {0, 2}, true).view({4, 1}));
  Tensor r13 = ops::sum_to_shape(x, {1, 3});
  CHECK_CLOSE_DT(r13, ref_reduce(ReduceOp::Sum, x, {0, 1}, true).view({1, 3}));
  Tensor r143 = ops::sum_to_shape(x, {1, 4, 3});
  CHECK_CLOSE_DT(r143, ref_reduce(ReduceOp::Sum, x, {0}, true));
  Tensor all = ops::sum_to_shape(x, Shape{});
  CHECK(all.shape() == Shape{});
  CHECK(all.item() == Approx(ref_reduce(ReduceOp::Sum, x, {}, false).item()).epsilon(1e-12));
  CHECK(ops::sum_to_shape(x, {2, 4, 3}).is_same(x));  // nothing to sum: x itself
  Tensor one = random_tensor({1, 4, 3}, DType::F32, 62);
  CHECK(ops::sum_to_shape(one, {4, 3}).shape() == Shape{4, 3});
  CHECK_CLOSE_DT(ops::sum_to_shape(one, {4, 3}), one.view({4, 3}));
  Tensor ex = random_tensor({3}, DType::F32, 63).expand({5, 3});
  CHECK_CLOSE_DT(ops::sum_to_shape(ex, {1, 3}), ref_reduce(ReduceOp::Sum, ex, {0}, true));
  REQUIRE_THROWS_WITH(ops::sum_to_shape(x, {2}), "sum_to_shape: shape (2,) does not broadcast to (2, 4, 3)");
  REQUIRE_THROWS_WITH(ops::sum_to_shape(x, {5, 2, 4, 3}),
                      "sum_to_shape: shape (5, 2, 4, 3) does not broadcast to (2, 4, 3)");
}
