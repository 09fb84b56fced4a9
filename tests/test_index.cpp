// test_index.cpp — embedding (+ backward), index_select / index_add_, gather / scatter_add_,
// concat / stack / split: hand-computed examples, naive references written here with at() and
// for_each_index in double, i32 and i64 indices, repeated indices, padding_idx, negative dims,
// non-contiguous inputs and destinations, thread-count independence, and the error messages.
#include <cmath>

#include "tests/test_util.h"
#include "tensor/ops.h"

using namespace muxnet;
using muxnet::test::for_each_index;
using muxnet::test::random_tensor;
using muxnet::test::strided_layout;
using muxnet::test::transposed_layout;

namespace {

const DType kFloatTypes[] = {DType::F32, DType::F64};
const DType kIndexTypes[] = {DType::I32, DType::I64};

// An index tensor of the given shape and dtype from values.
Tensor index_tensor(const std::vector<int64_t>& values, const Shape& shape, DType dt) {
  return from_vector(values, shape).to(dt);
}

std::vector<int64_t> concat_index(std::vector<int64_t> i, int64_t k) {
  i.push_back(k);
  return i;
}

// ---- naive references (double) ----

Tensor embedding_ref(const Tensor& w, const Tensor& idx) {
  Shape shape = idx.shape();
  shape.push_back(w.size(1));
  Tensor out = zeros(shape, DType::F64);
  std::vector<double> v(size_t(out.numel()));
  size_t p = 0;
  for_each_index(shape, [&](const std::vector<int64_t>& i) {
    std::vector<int64_t> pos(i.begin(), i.end() - 1);
    int64_t row = int64_t(pos.empty() ? idx.item() : idx.at(pos));
    v[p++] = w.at({row, i.back()});
  });
  return from_vector(v, shape);
}

// grad_weight0 + sum over positions i of grad_out[i] into row idx[i] (skipping padding_idx).
Tensor embedding_backward_ref(const Tensor& gw0, const Tensor& g, const Tensor& idx, int64_t pad) {
  std::vector<double> acc = gw0.to_vector<double>();
  const int64_t D = gw0.size(1);
  for_each_index(idx.shape(), [&](const std::vector<int64_t>& i) {
    int64_t row = int64_t(i.empty() ? idx.item() : idx.at(i));
    if (row == pad) return;
    for (int64_t k = 0; k < D; ++k) acc[size_t(row * D + k)] += g.at(concat_index(i, k));
  });
  return from_vector(acc, gw0.shape());
}

Tensor index_select_ref(const Tensor& x, int dim, const Tensor& idx) {
  Shape shape = x.shape();
  shape[dim] = idx.numel();
  std::vector<double> v;
  for_each_index(shape, [&](const std::vector<int64_t>& i) {
    std::vector<int64_t> src = i;
    src[size_t(dim)] = int64_t(idx.at({i[size_t(dim)]}));
    v.push_back(x.at(src));
  });
  return from_vector(v, shape);
}

Tensor index_add_ref(const Tensor& out0, int dim, const Tensor& idx, const Tensor& src) {
  std::vector<double> acc = out0.to_vector<double>();
  const Shape strides = contiguous_strides(out0.shape());
  for_each_index(src.shape(), [&](const std::vector<int64_t>& i) {
    int64_t off = 0;
    for (int d = 0; d < out0.ndim(); ++d) {
      off += (d == dim ? int64_t(idx.at({i[size_t(d)]})) : i[size_t(d)]) * strides[d];
    }
    acc[size_t(off)] += src.at(i);
  });
  return from_vector(acc, out0.shape());
}

Tensor gather_ref(const Tensor& x, int dim, const Tensor& idx) {
  std::vector<double> v;
  for_each_index(idx.shape(), [&](const std::vector<int64_t>& i) {
    std::vector<int64_t> src = i;
    src[size_t(dim)] = int64_t(idx.at(i));
    v.push_back(x.at(src));
  });
  return from_vector(v, idx.shape());
}

Tensor scatter_add_ref(const Tensor& out0, int dim, const Tensor& idx, const Tensor& src) {
  std::vector<double> acc = out0.to_vector<double>();
  const Shape strides = contiguous_strides(out0.shape());
  for_each_index(idx.shape(), [&](const std::vector<int64_t>& i) {
    int64_t off = 0;
    for (int d = 0; d < out0.ndim(); ++d) off += (d == dim ? int64_t(idx.at(i)) : i[size_t(d)]) * strides[d];
    acc[size_t(off)] += src.at(i);
  });
  return from_vector(acc, out0.shape());
}

// Seeded random indices in [0, n).
Tensor random_index(const Shape& shape, int64_t n, DType dt, uint64_t seed) {
  Generator gen(seed);
  return randint(0, n, shape, dt, &gen);
}

// Exact (bitwise) equality of two tensors' values.
bool same_values(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<double>() == b.to_vector<double>();
}

}  // namespace

// ---------------------------------------------------------------- embedding

TEST_CASE("embedding: hand-computed example", "[index]") {
  for (DType it : kIndexTypes) {
    Tensor w = from_vector<double>({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2}).to(DType::F32);
    Tensor idx = index_tensor({2, 0, 3, 3}, {2, 2}, it);
    Tensor out = ops::embedding(w, idx);
    CHECK(out.shape() == Shape{2, 2, 2});
    CHECK(out.to_vector<double>() == std::vector<double>{20, 21, 0, 1, 30, 31, 30, 31});
    // A 0-d index gives one row.
    Tensor one = ops::embedding(w, index_tensor({1}, {1}, it).squeeze());
    CHECK(one.shape() == Shape{2});
    CHECK(one.to_vector<double>() == std::vector<double>{10, 11});
  }
}

TEST_CASE("embedding: matches the reference for dtypes, index types and layouts", "[index]") {
  uint64_t seed = 10;
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor w = random_tensor({11, 6}, dt, seed++);
      Tensor idx = random_index({3, 5}, 11, it, seed++);
      Tensor want = embedding_ref(w, idx);
      CHECK_CLOSE(ops::embedding(w, idx), want, 0, 0);
      CHECK_CLOSE(ops::embedding(transposed_layout(w), idx), want, 0, 0);
      CHECK_CLOSE(ops::embedding(strided_layout(w), transposed_layout(idx)), want, 0, 0);
      CHECK_CLOSE(ops::embedding(w, strided_layout(idx)), want, 0, 0);
      // Empty index and zero-width weight.
      CHECK(ops::embedding(w, index_tensor({}, {0}, it)).shape() == Shape{0, 6});
      CHECK(ops::embedding(zeros({3, 0}, dt), index_tensor({1, 2}, {2}, it)).shape() == Shape{2, 0});
    }
  }
}

TEST_CASE("embedding: error messages", "[index]") {
  Tensor w = zeros({5, 3});
  REQUIRE_THROWS_WITH(ops::embedding(w, index_tensor({0, 1, 4, 7, 9}, {5}, DType::I64)),
                      "embedding: index 7 out of range for 5 rows (at position 3)");
  REQUIRE_THROWS_WITH(ops::embedding(w, index_tensor({0, 1, -1, 2}, {2, 2}, DType::I32)),
                      "embedding: index -1 out of range for 5 rows (at position (1, 0))");
  REQUIRE_THROWS_WITH(ops::embedding(zeros({5}), index_tensor({0}, {1}, DType::I64)),
                      "embedding: expected a 2-d weight (V, D), got (5,)");
  REQUIRE_THROWS_WITH(ops::embedding(w, zeros({2})), "embedding: expected an index tensor (i32 or i64), got f32");
}

TEST_CASE("embedding_backward_: repeated indices and padding_idx, hand-computed", "[index]") {
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor gw = zeros({4, 2}, dt);
      Tensor idx = index_tensor({1, 3, 1, 0, 1}, {5}, it);
      Tensor g = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {5, 2}).to(dt);
      ops::embedding_backward_(gw, g, idx);
      // row 0: g[3]; row 1: g[0] + g[2] + g[4]; row 2: nothing; row 3: g[1]
      CHECK(gw.to_vector<double>() == std::vector<double>{7, 8, 15, 18, 0, 0, 3, 4});
      // Accumulates, and padding_idx rows are skipped.
      ops::embedding_backward_(gw, g, idx, 1);
      CHECK(gw.to_vector<double>() == std::vector<double>{14, 16, 15, 18, 0, 0, 6, 8});
    }
  }
}

TEST_CASE("embedding_backward_: matches the reference, also into a non-contiguous grad_weight", "[index]") {
  uint64_t seed = 30;
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor gw0 = random_tensor({7, 5}, dt, seed++);
      Tensor idx = random_index({4, 6}, 7, it, seed++);
      Tensor g = random_tensor({4, 6, 5}, dt, seed++);
      for (int64_t pad : {int64_t(-1), int64_t(2)}) {
        Tensor want = embedding_backward_ref(gw0, g, idx, pad);
        Tensor gw = gw0.clone();
        ops::embedding_backward_(gw, transposed_layout(g), idx, pad);
        CHECK_CLOSE_DT(gw, want);
        Tensor gwt = transposed_layout(gw0);  // written through a contiguous copy, then copied back
        ops::embedding_backward_(gwt, g, strided_layout(idx), pad);
        CHECK_CLOSE_DT(gwt, want);
      }
    }
  }
}

TEST_CASE("embedding_backward_: large input, same bits on 1 and 2 threads, matches the reference", "[index]") {
  const int saved = get_num_threads();
  for (DType dt : kFloatTypes) {
    // 6000 positions into 37 rows: every row repeated ~160 times; 6000 * 24 elements is above the
    // parallel threshold, so the 2-thread run takes the bucketed path.
    Tensor idx = random_index({6000}, 37, DType::I64, 40);
    Tensor g = random_tensor({6000, 24}, dt, 41);
    Tensor gw0 = random_tensor({37, 24}, dt, 42);
    set_num_threads(1);
    Tensor one = gw0.clone();
    ops::embedding_backward_(one, g, idx, 5);
    set_num_threads(2);
    Tensor two = gw0.clone();
    ops::embedding_backward_(two, g, idx, 5);
    set_num_threads(saved);
    CHECK(same_values(one, two));
    CHECK_CLOSE(two, embedding_backward_ref(gw0, g, idx, 5), dt == DType::F64 ? 1e-10 : 1e-3, 1e-5);
    // Row 5 (padding) is untouched.
    CHECK(same_values(two.select(0, 5), gw0.select(0, 5)));
  }
}

TEST_CASE("embedding_backward_: error messages, and nothing is written on error", "[index]") {
  Tensor gw = ones({5, 3});
  Tensor idx = index_tensor({0, 1, 4, 5}, {4}, DType::I64);
  REQUIRE_THROWS_WITH(ops::embedding_backward_(gw, ones({4, 3}), idx),
                      "embedding_backward_: index 5 out of range for 5 rows (at position 3)");
  CHECK(gw.to_vector<double>() == std::vector<double>(15, 1.0));
  Tensor ok = index_tensor({0, 1}, {2}, DType::I64);
  REQUIRE_THROWS_WITH(ops::embedding_backward_(gw, ones({2, 4}), ok),
                      "embedding_backward_: grad_out has shape (2, 4), expected (2, 3) (idx shape + (D,))");
  REQUIRE_THROWS_WITH(ops::embedding_backward_(gw, ones({2, 3}), ok, 5),
                      "embedding_backward_: padding_idx 5 out of range for 5 rows (use -1 for none)");
  REQUIRE_THROWS_WITH(ops::embedding_backward_(gw, ones({2, 3}, DType::F64), ok),
                      "embedding_backward_: dtypes differ: f32 and f64");
  REQUIRE_THROWS_WITH(ops::embedding_backward_(ones({1, 3}).expand({5, 3}), ones({2, 3}), ok),
                      "embedding_backward_: the destination must not be a broadcast (expanded) view, got shape "
                      "(5, 3) with strides (0, 1)");
}

// ---------------------------------------------------------------- index_select / index_add_

TEST_CASE("index_select: hand-computed and against the reference", "[index]") {
  Tensor x = arange(0, 12, 1, DType::F32).view({3, 4});
  Tensor sel = ops::index_select(x, 1, index_tensor({3, 0, 3}, {3}, DType::I32));
  CHECK(sel.shape() == Shape{3, 3});
  CHECK(sel.to_vector<double>() == std::vector<double>{3, 0, 3, 7, 4, 7, 11, 8, 11});
  CHECK(ops::index_select(x, 0, index_tensor({2}, {1}, DType::I64)).to_vector<double>() ==
        std::vector<double>{8, 9, 10, 11});

  uint64_t seed = 50;
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor y = random_tensor({4, 5, 6}, dt, seed++);
      for (int dim : {0, 1, 2, -1, -3}) {
        const int d = dim < 0 ? dim + 3 : dim;
        Tensor idx = random_index({7}, y.size(d), it, seed++);  // 7 > every size: repeats
        Tensor want = index_select_ref(y, d, idx);
        CHECK_CLOSE(ops::index_select(y, dim, idx), want, 0, 0);
        CHECK_CLOSE(ops::index_select(transposed_layout(y), dim, strided_layout(idx)), want, 0, 0);
      }
      CHECK(ops::index_select(y, 1, index_tensor({}, {0}, it)).shape() == Shape{4, 0, 6});
    }
  }
  // Integer tensors can be selected too.
  Tensor xi = arange(0, 6, 1, DType::I64).view({2, 3});
  CHECK(ops::index_select(xi, 1, index_tensor({2, 2}, {2}, DType::I64)).to_vector<int64_t>() ==
        std::vector<int64_t>{2, 2, 5, 5});
}

TEST_CASE("index_select: error messages", "[index]") {
  Tensor x = zeros({3, 4});
  REQUIRE_THROWS_WITH(ops::index_select(x, 1, index_tensor({0, 4}, {2}, DType::I64)),
                      "index_select: index 4 out of range for size 4 along dim 1 (at position 1)");
  REQUIRE_THROWS_WITH(ops::index_select(x, 0, index_tensor({0, 1}, {1, 2}, DType::I64)),
                      "index_select: expected a 1-d idx, got shape (1, 2)");
  REQUIRE_THROWS_WITH(ops::index_select(x, 2, index_tensor({0}, {1}, DType::I64)),
                      "index_select: dim 2 out of range for a 2-d tensor (expected -2 to 1)");
  REQUIRE_THROWS_WITH(ops::index_select(scalar_tensor(1.0), 0, index_tensor({0}, {1}, DType::I64)),
                      "index_select: cannot index a 0-d tensor");
}

TEST_CASE("index_add_: hand-computed with repeated indices", "[index]") {
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor out = ones({2, 3}, dt);
      Tensor src = from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4}).to(dt);
      ops::index_add_(out, -1, index_tensor({2, 0, 2, 2}, {4}, it), src);
      // row 0: col 0 += 2, col 2 += 1 + 3 + 4; row 1: col 0 += 6, col 2 += 5 + 7 + 8
      CHECK(out.to_vector<double>() == std::vector<double>{3, 1, 9, 7, 1, 21});
    }
  }
}

TEST_CASE("index_add_: against the reference on every dim, large dim-0 input, layouts", "[index]") {
  uint64_t seed = 70;
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor out0 = random_tensor({4, 5, 3}, dt, seed++);
      for (int dim : {0, 1, 2, -2}) {
        const int d = dim < 0 ? dim + 3 : dim;
        Tensor idx = random_index({8}, out0.size(d), it, seed++);
        Shape sshape = out0.shape();
        sshape[d] = 8;
        Tensor src = random_tensor(sshape, dt, seed++);
        Tensor want = index_add_ref(out0, d, idx, src);
        Tensor out = out0.clone();
        ops::index_add_(out, dim, idx, transposed_layout(src));
        CHECK_CLOSE_DT(out, want);
        Tensor outt = transposed_layout(out0);  // non-contiguous destination: copied back
        ops::index_add_(outt, dim, strided_layout(idx), src);
        CHECK_CLOSE_DT(outt, want);
      }
    }
    // dim 0 of a large (V, D) tensor: the bucketed parallel path; same bits on 1 and 2 threads.
    const int saved = get_num_threads();
    Tensor idx = random_index({5000}, 23, DType::I32, seed++);
    Tensor src = random_tensor({5000, 20}, dt, seed++);
    Tensor out0 = random_tensor({23, 20}, dt, seed++);
    set_num_threads(1);
    Tensor one = out0.clone();
    ops::index_add_(one, 0, idx, src);
    set_num_threads(2);
    Tensor two = out0.clone();
    ops::index_add_(two, 0, idx, src);
    set_num_threads(saved);
    CHECK(same_values(one, two));
    CHECK_CLOSE(two, index_add_ref(out0, 0, idx, src), dt == DType::F64 ? 1e-10 : 1e-3, 1e-5);
  }
}

TEST_CASE("index_add_: error messages, and nothing is written on error", "[index]") {
  Tensor out = ones({3, 2});
  REQUIRE_THROWS_WITH(ops::index_add_(out, 0, index_tensor({0, 3}, {2}, DType::I64), ones({2, 2})),
                      "index_add_: index 3 out of range for size 3 along dim 0 (at position 1)");
  CHECK(out.to_vector<double>() == std::vector<double>(6, 1.0));
  REQUIRE_THROWS_WITH(ops::index_add_(out, 0, index_tensor({0, 1}, {2}, DType::I64), ones({2, 3})),
                      "index_add_: src has shape (2, 3), expected (2, 2)");
  REQUIRE_THROWS_WITH(ops::index_add_(out, 1, index_tensor({0}, {1}, DType::I64), ones({3, 1}, DType::F64)),
                      "index_add_: dtypes differ: f32 and f64");
}

// ---------------------------------------------------------------- gather / scatter_add_

TEST_CASE("gather: hand-computed (the torch.gather doc example)", "[index]") {
  for (DType it : kIndexTypes) {
    Tensor t = from_vector<double>({1, 2, 3, 4}, {2, 2}).to(DType::F32);
    Tensor g = ops::gather(t, 1, index_tensor({0, 0, 1, 0}, {2, 2}, it));
    CHECK(g.to_vector<double>() == std::vector<double>{1, 1, 4, 3});
    // Along dim 0, with an idx smaller than t along dim 1.
    Tensor g0 = ops::gather(t, 0, index_tensor({1, 0, 1}, {3, 1}, it));
    CHECK(g0.shape() == Shape{3, 1});
    CHECK(g0.to_vector<double>() == std::vector<double>{3, 1, 3});
  }
}

TEST_CASE("gather: against the reference, smaller idx, negative dims, layouts", "[index]") {
  uint64_t seed = 90;
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor x = random_tensor({4, 5, 6}, dt, seed++);
      for (int dim : {0, 1, 2, -1}) {
        const int d = dim < 0 ? dim + 3 : dim;
        for (const Shape& is : {Shape{4, 5, 6}, Shape{3, 2, 4}, Shape{4, 1, 2}}) {
          Shape ishape = is;
          ishape[d] = 7;  // along dim, idx may be longer than x (other dims: at most x's size)
          Tensor idx = random_index(ishape, x.size(d), it, seed++);
          Tensor want = gather_ref(x, d, idx);
          CHECK_CLOSE(ops::gather(x, dim, idx), want, 0, 0);
          CHECK_CLOSE(ops::gather(transposed_layout(x), dim, transposed_layout(idx)), want, 0, 0);
        }
      }
    }
  }
}

TEST_CASE("gather: error messages", "[index]") {
  Tensor x = zeros({3, 4});
  REQUIRE_THROWS_WITH(ops::gather(x, 1, index_tensor({0, 1, 2, 4}, {2, 2}, DType::I64)),
                      "gather: index 4 out of range for size 4 along dim 1 (at position (1, 1))");
  REQUIRE_THROWS_WITH(ops::gather(x, 1, index_tensor({0, 1}, {2}, DType::I64)),
                      "gather: idx must have as many dims as x: x=(3, 4) idx=(2,)");
  REQUIRE_THROWS_WITH(ops::gather(x, 1, index_tensor({0, 1, 0, 1, 0, 1, 0, 1}, {4, 2}, DType::I64)),
                      "gather: idx (4, 2) is larger than x (3, 4) along dim 0");
  REQUIRE_THROWS_WITH(ops::gather(x, -3, index_tensor({0}, {1, 1}, DType::I64)),
                      "gather: dim -3 out of range for a 2-d tensor (expected -2 to 1)");
}

TEST_CASE("scatter_add_: hand-computed with repeated indices", "[index]") {
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor out = zeros({2, 3}, dt);
      Tensor src = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).to(dt);
      // The backward of gather: out[i][idx[i][j]] += src[i][j]
      ops::scatter_add_(out, 1, index_tensor({2, 2, 0, 1, 1, 1}, {2, 3}, it), src);
      CHECK(out.to_vector<double>() == std::vector<double>{3, 0, 3, 0, 15, 0});
      // src larger than idx: only its leading (1, 2) block is used.
      ops::scatter_add_(out, 0, index_tensor({1, 0}, {1, 2}, it), src);
      CHECK(out.to_vector<double>() == std::vector<double>{3, 2, 3, 1, 15, 0});
    }
  }
}

TEST_CASE("scatter_add_: against the reference, layouts, large dim-0 input on 1 and 2 threads", "[index]") {
  uint64_t seed = 110;
  for (DType dt : kFloatTypes) {
    for (DType it : kIndexTypes) {
      Tensor out0 = random_tensor({4, 5, 6}, dt, seed++);
      for (int dim : {0, 1, 2, -2}) {
        const int d = dim < 0 ? dim + 3 : dim;
        Shape ishape{3, 4, 5};
        ishape[d] = 9;  // more entries than out has along dim: repeats
        Tensor idx = random_index(ishape, out0.size(d), it, seed++);
        Shape sshape = ishape;
        sshape[0] += 1;  // a src larger than idx
        Tensor src = random_tensor(sshape, dt, seed++);
        Tensor want = scatter_add_ref(out0, d, idx, src);
        Tensor out = out0.clone();
        ops::scatter_add_(out, dim, idx, src);
        CHECK_CLOSE_DT(out, want);
        Tensor outt = transposed_layout(out0);
        ops::scatter_add_(outt, dim, transposed_layout(idx), strided_layout(src));
        CHECK_CLOSE_DT(outt, want);
      }
    }
    // Large, dim 0 (the chunked parallel path) with many collisions.
    const int saved = get_num_threads();
    Tensor idx = random_index({300, 700}, 3, DType::I64, seed++);
    Tensor src = random_tensor({300, 700}, dt, seed++);
    Tensor out0 = zeros({3, 700}, dt);
    set_num_threads(1);
    Tensor one = out0.clone();
    ops::scatter_add_(one, 0, idx, src);
    set_num_threads(2);
    Tensor two = out0.clone();
    ops::scatter_add_(two, 0, idx, src);
    set_num_threads(saved);
    CHECK(same_values(one, two));
    CHECK_CLOSE(two, scatter_add_ref(out0, 0, idx, src), dt == DType::F64 ? 1e-10 : 1e-3, 1e-5);
  }
}

TEST_CASE("scatter_add_: error messages, and nothing is written on error", "[index]") {
  Tensor out = ones({2, 3});
  REQUIRE_THROWS_WITH(ops::scatter_add_(out, 0, index_tensor({0, 2}, {1, 2}, DType::I64), ones({1, 2})),
                      "scatter_add_: index 2 out of range for size 2 along dim 0 (at position (0, 1))");
  CHECK(out.to_vector<double>() == std::vector<double>(6, 1.0));
  REQUIRE_THROWS_WITH(ops::scatter_add_(out, 1, index_tensor({0, 1}, {1, 2}, DType::I64), ones({1, 1})),
                      "scatter_add_: idx (1, 2) is larger than src (1, 1) along dim 1");
  REQUIRE_THROWS_WITH(ops::scatter_add_(out, 1, index_tensor({0, 1, 0}, {3, 1}, DType::I64), ones({3, 1})),
                      "scatter_add_: idx (3, 1) is larger than out (2, 3) along dim 0");
  REQUIRE_THROWS_WITH(ops::scatter_add_(out, 1, index_tensor({0}, {1}, DType::I64), ones({1})),
                      "scatter_add_: idx must have as many dims as out: out=(2, 3) idx=(1,)");
  REQUIRE_THROWS_WITH(ops::scatter_add_(out, 1, zeros({1, 1}), ones({1, 1})),
                      "scatter_add_: expected an index tensor (i32 or i64), got f32");
}

// ---------------------------------------------------------------- concat / stack / split

TEST_CASE("concat: hand-computed, several dims, non-contiguous inputs", "[index]") {
  Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2});
  Tensor b = from_vector<double>({5, 6}, {1, 2});
  CHECK(ops::concat({a, b}, 0).to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6});
  Tensor c = from_vector<double>({7, 8}, {2, 1});
  Tensor ac = ops::concat({a, c}, -1);
  CHECK(ac.shape() == Shape{2, 3});
  CHECK(ac.to_vector<double>() == std::vector<double>{1, 2, 7, 3, 4, 8});

  uint64_t seed = 130;
  for (DType dt : kFloatTypes) {
    for (int dim : {0, 1, 2, -1}) {
      const int d = dim < 0 ? dim + 3 : dim;
      std::vector<Tensor> xs;
      std::vector<int64_t> lens = {2, 0, 3, 1};
      for (size_t i = 0; i < lens.size(); ++i) {
        Shape s{3, 4, 5};
        s[d] = lens[i];
        Tensor x = random_tensor(s, dt, seed++);
        xs.push_back(i % 2 ? transposed_layout(x) : strided_layout(x));
      }
      Tensor out = ops::concat(xs, dim);
      Shape want_shape{3, 4, 5};
      want_shape[d] = 6;
      REQUIRE(out.shape() == want_shape);
      for_each_index(out.shape(), [&](const std::vector<int64_t>& i) {
        int64_t at = i[size_t(d)];
        size_t k = 0;
        while (at >= lens[k]) at -= lens[k++];
        std::vector<int64_t> j = i;
        j[size_t(d)] = at;
        REQUIRE(out.at(i) == xs[k].at(j));
      });
    }
  }
  CHECK(ops::concat({a}, 1).to_vector<double>() == a.to_vector<double>());
}

TEST_CASE("concat: error messages", "[index]") {
  REQUIRE_THROWS_WITH(ops::concat({}, 0), "concat: expected at least one tensor, got an empty list");
  REQUIRE_THROWS_WITH(ops::concat({zeros({3, 3}), zeros({2, 4})}, 1),
                      "concat: tensor 1 has shape (2, 4) but tensor 0 has shape (3, 3); sizes must match except "
                      "along dim 1");
  REQUIRE_THROWS_WITH(ops::concat({zeros({3, 3}), zeros({3})}, 0),
                      "concat: tensor 1 has shape (3,) but tensor 0 has shape (3, 3); sizes must match except "
                      "along dim 0");
  REQUIRE_THROWS_WITH(ops::concat({zeros({3}), zeros({3}, DType::F64)}, 0),
                      "concat: tensor 1 has dtype f64, tensor 0 has f32");
  REQUIRE_THROWS_WITH(ops::concat({scalar_tensor(1.0)}, 0), "concat: cannot concatenate 0-d tensors (use stack)");
  REQUIRE_THROWS_WITH(ops::concat({zeros({3})}, 1), "concat: dim 1 out of range for a 1-d tensor (expected -1 to 0)");
}

TEST_CASE("stack: new dim at every position", "[index]") {
  Tensor a = random_tensor({2, 3}, DType::F32, 150);
  Tensor b = transposed_layout(random_tensor({2, 3}, DType::F32, 151));
  for (int dim : {0, 1, 2, -1, -3}) {
    const int d = dim < 0 ? dim + 3 : dim;
    Tensor s = ops::stack({a, b}, dim);
    Shape want{2, 3};
    want.insert(d, 2);
    REQUIRE(s.shape() == want);
    for_each_index(s.shape(), [&](const std::vector<int64_t>& i) {
      std::vector<int64_t> j = i;
      j.erase(j.begin() + d);
      REQUIRE(s.at(i) == (i[size_t(d)] == 0 ? a : b).at(j));
    });
  }
  Tensor s0 = ops::stack({scalar_tensor(1.0), scalar_tensor(2.0)}, 0);
  CHECK(s0.to_vector<double>() == std::vector<double>{1, 2});
  REQUIRE_THROWS_WITH(ops::stack({}, 0), "stack: expected at least one tensor, got an empty list");
  REQUIRE_THROWS_WITH(ops::stack({a, zeros({3, 2})}, 0),
                      "stack: tensor 1 has shape (3, 2) but tensor 0 has shape (2, 3); all shapes must be equal");
  REQUIRE_THROWS_WITH(ops::stack({a}, 3), "stack: dim 3 out of range for a 3-d tensor (expected -3 to 2)");
}

TEST_CASE("split: by size and by sizes, views of the input", "[index]") {
  Tensor x = arange(0, 14, 1, DType::F32).view({2, 7});
  std::vector<Tensor> parts = ops::split(x, 3, 1);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].to_vector<double>() == std::vector<double>{0, 1, 2, 7, 8, 9});
  CHECK(parts[1].to_vector<double>() == std::vector<double>{3, 4, 5, 10, 11, 12});
  CHECK(parts[2].shape() == Shape{2, 1});  // the last piece is shorter
  CHECK(parts[2].to_vector<double>() == std::vector<double>{6, 13});
  // Views: writing a piece writes x.
  parts[1].fill_(-1);
  CHECK(x.at({1, 4}) == -1);
  CHECK(ops::concat(parts, 1).to_vector<double>() == x.to_vector<double>());

  std::vector<Tensor> by = ops::split(x, std::vector<int64_t>{1, 0, 6}, -1);
  REQUIRE(by.size() == 3);
  CHECK(by[0].shape() == Shape{2, 1});
  CHECK(by[1].shape() == Shape{2, 0});
  CHECK(by[2].shape() == Shape{2, 6});
  CHECK(by[2].at({1, 0}) == 8);
  // Of a non-contiguous tensor, along dim 0.
  Tensor t = x.t();  // (7, 2)
  std::vector<Tensor> rows = ops::split(t, std::vector<int64_t>{4, 3}, 0);
  CHECK(rows[1].shape() == Shape{3, 2});
  CHECK(rows[1].at({0, 1}) == x.at({1, 4}));
  CHECK(ops::split(x, 10, 0).size() == 1);
  CHECK(ops::split(zeros({0, 2}), 3, 0).size() == 1);
}

TEST_CASE("split: error messages", "[index]") {
  Tensor x = zeros({2, 5});
  REQUIRE_THROWS_WITH(ops::split(x, std::vector<int64_t>{2, 2}, 1), "split: sizes (2, 2) sum to 4 but dim 1 has size 5");
  REQUIRE_THROWS_WITH(ops::split(x, std::vector<int64_t>{6, -1}, 1), "split: sizes must be non-negative, got (6, -1)");
  REQUIRE_THROWS_WITH(ops::split(x, 0, 1), "split: split_size must be positive, got 0");
  REQUIRE_THROWS_WITH(ops::split(x, 2, 2), "split: dim 2 out of range for a 2-d tensor (expected -2 to 1)");
}
