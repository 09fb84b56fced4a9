// test_tensor.cpp — the Tensor core: shapes, factories, views, copies, element access, printing,
// the seeded generator and the caching allocator, with their error messages.
#include <cstdint>

#include "tensor/allocator.h"
#include "tests/test_util.h"

using namespace muxnet;
using muxnet::test::for_each_index;

// ---------------------------------------------------------------- Shape

TEST_CASE("Shape prints, counts and broadcasts", "[tensor]") {
  CHECK(Shape{4, 3}.str() == "(4, 3)");
  CHECK(Shape{5}.str() == "(5,)");
  CHECK(Shape{}.str() == "()");
  CHECK(Shape{}.numel() == 1);
  CHECK(Shape{2, 0, 3}.numel() == 0);
  CHECK(broadcast_shapes({2, 1, 4}, {3, 1}, "t") == Shape{2, 3, 4});
  CHECK(broadcast_shapes({}, {3}, "t") == Shape{3});
  REQUIRE_THROWS_WITH(broadcast_shapes({2, 3}, {4}, "add"), "add: shapes (2, 3) and (4,) do not broadcast");
  CHECK(normalize_dim(-1, 3, "t") == 2);
  REQUIRE_THROWS_WITH(normalize_dim(3, 2, "sum"), "sum: dim 3 out of range for a 2-d tensor (expected -2 to 1)");
  REQUIRE_THROWS_WITH((Shape{1, 2, 3, 4, 5, 6, 7, 8, 9}), "Shape: at most 8 dims supported, got 9");
  CHECK(contiguous_strides({2, 3, 4}) == Shape{12, 4, 1});
}

// ---------------------------------------------------------------- factories

TEST_CASE("factories fill the expected values", "[tensor]") {
  Tensor z = zeros({2, 3});
  CHECK(z.dtype() == DType::F32);
  CHECK(z.is_contiguous());
  for_each_index(z.shape(), [&](const std::vector<int64_t>& i) { CHECK(z.at(i) == 0.0); });
  Tensor f = full({3}, 2.5, DType::F64);
  CHECK(f.to_vector<double>() == std::vector<double>{2.5, 2.5, 2.5});
  CHECK(ones({2}, DType::I32).to_vector<int32_t>() == std::vector<int32_t>{1, 1});
  CHECK(arange(5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1.0, 2.0, 0.25, DType::F64).to_vector<double>() == std::vector<double>{1.0, 1.25, 1.5, 1.75});
  CHECK(arange(3.0, 0.0, -1.0, DType::I32).to_vector<int32_t>() == std::vector<int32_t>{3, 2, 1});
  CHECK(arange(2.0, 1.0, 1.0).numel() == 0);
  Tensor v = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(v.at({1, 0}) == 4.0);
  CHECK(scalar_tensor(7.0).ndim() == 0);
  CHECK(scalar_tensor(7.0).item() == 7.0);
  REQUIRE_THROWS_WITH(from_vector<float>({1, 2, 3}, {2, 2}),
                      "from_vector: 3 values do not fill shape (2, 2) (4 elements)");
  REQUIRE_THROWS_WITH(empty({2, -1}), "empty: negative size in shape (2, -1)");
  REQUIRE_THROWS_WITH(arange(0.0, 1.0, 0.0), "arange: step must be non-zero");
}

TEST_CASE("empty tensors are valid everywhere", "[tensor]") {
  Tensor e = zeros({0, 3});
  CHECK(e.numel() == 0);
  CHECK(e.is_contiguous());
  CHECK(e.clone().shape() == Shape{0, 3});
  CHECK(e.transpose(0, 1).contiguous().shape() == Shape{3, 0});
  CHECK(e.reshape({3, 0}).shape() == Shape{3, 0});
  CHECK(e.reshape({-1, 3}).shape() == Shape{0, 3});
  CHECK(e.to_vector<float>().empty());
}

// ---------------------------------------------------------------- views

TEST_CASE("views share storage and never copy", "[tensor]") {
  Tensor x = arange(0.0, 12.0, 1.0, DType::F64).view({3, 4});
  Tensor row = x.select(0, 1);
  CHECK(row.shape() == Shape{4});
  row.fill_(-1.0);
  CHECK(x.at({1, 2}) == -1.0);  // written through the view
  CHECK(x.at({0, 2}) == 2.0);
  CHECK(x.transpose(0, 1).storage() == x.storage());
  CHECK(x.narrow(1, 1, 2).storage() == x.storage());
  CHECK(x.expand({2, 3, 4}).storage() == x.storage());
}

TEST_CASE("view and reshape", "[tensor]") {
  Tensor x = arange(0.0, 24.0, 1.0).view({2, 3, 4});
  CHECK(x.view({6, -1}).shape() == Shape{6, 4});
  CHECK(x.view({-1}).shape() == Shape{24});
  CHECK(x.view({4, 6}).at({1, 0}) == 6.0);
  CHECK(scalar_tensor(3.0).view({1, 1}).shape() == Shape{1, 1});
  // A transposed tensor cannot be flattened without a copy; reshape copies, view refuses.
  Tensor t = x.transpose(1, 2);  // (2, 4, 3)
  REQUIRE_THROWS_WITH(t.view({24}),
                      "view: cannot view (2, 4, 3) with strides (12, 1, 4) as (24,) without a copy (use reshape)");
  Tensor r = t.reshape({24});
  CHECK(r.is_contiguous());
  CHECK(r.at({1}) == 4.0);  // t[0, 0, 1] = x[0, 1, 0]
  // Splitting or merging dims that stay contiguous within a transposed tensor is still a view.
  Tensor tv = t.view({2, 2, 2, 3});
  CHECK(tv.storage() == x.storage());
  CHECK(tv.at({1, 1, 0, 2}) == x.at({1, 2, 2}));
  REQUIRE_THROWS_WITH(x.view({5, -1}), "view: shape (5, -1) is invalid for (2, 3, 4) (24 elements)");
  REQUIRE_THROWS_WITH(x.view({-1, -1}), "view: only one dim can be -1, got (-1, -1)");
  REQUIRE_THROWS_WITH(x.reshape({7}), "reshape: shape (7,) is invalid for (2, 3, 4) (24 elements)");
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  CHECK(x.flatten(0, 1).shape() == Shape{6, 4});
}

TEST_CASE("transpose and permute", "[tensor]") {
  Tensor x = arange(0.0, 24.0, 1.0).view({2, 3, 4});
  Tensor p = x.permute({2, 0, 1});  // (4, 2, 3)
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  for_each_index(p.shape(), [&](const std::vector<int64_t>& i) { CHECK(p.at(i) == x.at({i[1], i[2], i[0]})); });
  CHECK(x.transpose(-1, 0).shape() == Shape{4, 3, 2});
  CHECK(x.select(0, 0).t().shape() == Shape{4, 3});
  REQUIRE_THROWS_WITH(x.permute({0, 1}), "permute: got 2 dims for a tensor of shape (2, 3, 4)");
  REQUIRE_THROWS_WITH(x.permute({0, 1, 1}), "permute: dim 1 appears twice");
  REQUIRE_THROWS_WITH(x.t(), "t: expected a 2-d tensor, got shape (2, 3, 4)");
  REQUIRE_THROWS_WITH(x.transpose(0, 3), "transpose: dim 3 out of range for a 3-d tensor (expected -3 to 2)");
}

TEST_CASE("narrow, slice and select", "[tensor]") {
  Tensor x = arange(0.0, 20.0, 1.0).view({4, 5});
  Tensor n = x.narrow(1, 1, 3);
  CHECK(n.shape() == Shape{4, 3});
  CHECK(n.at({2, 0}) == 11.0);
  Tensor s = x.slice(1, 0, 5, 2);  // columns 0, 2, 4
  CHECK(s.shape() == Shape{4, 3});
  CHECK(s.at({1, 2}) == 9.0);
  CHECK(x.slice(0, -2, 100).shape() == Shape{2, 5});  // python-style clamping
  CHECK(x.slice(0, 3, 1).shape() == Shape{0, 5});
  CHECK(x.select(1, -1).to_vector<float>() == std::vector<float>{4, 9, 14, 19});
  REQUIRE_THROWS_WITH(x.narrow(0, 3, 2), "narrow: range [3, 5) out of bounds for dim 0 of size 4");
  REQUIRE_THROWS_WITH(x.select(0, 4), "select: index 4 out of range for dim 0 of size 4");
  REQUIRE_THROWS_WITH(x.slice(0, 0, 4, 0), "slice: step must be positive, got 0");
}

TEST_CASE("expand, squeeze and unsqueeze", "[tensor]") {
  Tensor x = from_vector<float>({1, 2, 3}, {3, 1});
  Tensor e = x.expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(e.at({1, 2, 3}) == 3.0);
  CHECK(x.expand({-1, 2}).shape() == Shape{3, 2});
  REQUIRE_THROWS_WITH(x.expand({4, 2}), "expand: cannot expand shape (3, 1) to (4, 2) (dim 0: 3 vs 4)");
  REQUIRE_THROWS_WITH(x.expand({3}), "expand: cannot expand shape (3, 1) to (3,) (fewer dims)");
  Tensor e2 = e.contiguous();
  CHECK(e2.is_contiguous());
  CHECK(e2.at({0, 1, 2}) == 2.0);
  CHECK(x.squeeze().shape() == Shape{3});
  CHECK(x.squeeze(1).shape() == Shape{3});
  CHECK(x.squeeze(0).shape() == Shape{3, 1});  // not size 1: unchanged, as in PyTorch
  CHECK(x.unsqueeze(0).shape() == Shape{1, 3, 1});
  CHECK(x.unsqueeze(-1).shape() == Shape{3, 1, 1});
  CHECK(x.unsqueeze(1).at({2, 0, 0}) == 3.0);
  REQUIRE_THROWS_WITH(x.unsqueeze(3), "unsqueeze: dim 3 out of range for a 3-d tensor (expected -3 to 2)");
}

// ---------------------------------------------------------------- copies

TEST_CASE("copy_ broadcasts and casts", "[tensor]") {
  Tensor dst = zeros({2, 3}, DType::F64);
  dst.copy_(from_vector<int32_t>({7, 8, 9}));
  CHECK(dst.to_vector<double>() == std::vector<double>{7, 8, 9, 7, 8, 9});
  dst.transpose(0, 1).copy_(from_vector<float>({1, 2}, {1, 2}));  // writes columns through a view
  CHECK(dst.to_vector<double>() == std::vector<double>{1, 1, 1, 2, 2, 2});
  CHECK(from_vector<double>({1.75, -2.5}).to(DType::I64).to_vector<int64_t>() == std::vector<int64_t>{1, -2});
  REQUIRE_THROWS_WITH(dst.copy_(zeros({3, 2})), "copy_: source shape (3, 2) does not broadcast to destination (2, 3)");
  REQUIRE_THROWS_WITH(dst.copy_(zeros({2, 3, 1})),
                      "copy_: source shape (2, 3, 1) does not broadcast to destination (2, 3)");
}

TEST_CASE("contiguous copies of strided views match element access", "[tensor]") {
  Tensor x = test::random_tensor({3, 4, 5}, DType::F32, 7);
  for (const Tensor& v : {x.permute({2, 0, 1}), x.slice(2, 1, 5, 2), x.narrow(0, 1, 2).transpose(1, 2),
                          x.select(1, 2).unsqueeze(0).expand({3, 3, 5})}) {
    Tensor c = v.contiguous();
    REQUIRE(c.is_contiguous());
    for_each_index(v.shape(), [&](const std::vector<int64_t>& i) { REQUIRE(c.at(i) == v.at(i)); });
  }
  Tensor big = test::random_tensor({300, 400}, DType::F64, 8);  // above the parallel threshold
  Tensor bt = big.t().contiguous();
  CHECK(bt.at({399, 299}) == big.at({299, 399}));
  CHECK(bt.at({17, 123}) == big.at({123, 17}));
  Tensor cl = x.clone();
  CHECK(cl.storage() != x.storage());
  CHECK(allclose(cl, x, 0, 0));
  CHECK(x.contiguous().is_same(x));  // already contiguous: no copy
}

// ---------------------------------------------------------------- element access, printing

TEST_CASE("item, at and data check their arguments", "[tensor]") {
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  CHECK(x.at({1, 1}) == 4.0);
  CHECK(x.narrow(0, 1, 1).narrow(1, 0, 1).item() == 3.0);
  REQUIRE_THROWS_WITH(x.item(), "item: expected a tensor with 1 element, got shape (2, 2)");
  REQUIRE_THROWS_WITH(x.at({2, 0}), "at: index 2 out of range for dim 0 of size 2 in shape (2, 2)");
  REQUIRE_THROWS_WITH(x.at({0}), "at: got 1 indices for a tensor of shape (2, 2)");
  REQUIRE_THROWS_WITH(x.data<double>(), "Tensor::data: tensor has dtype f32, requested f64");
  Tensor undefined;
  CHECK_FALSE(undefined.defined());
  REQUIRE_THROWS_WITH(undefined.shape(), "Tensor: use of an undefined tensor");
}

TEST_CASE("printing", "[tensor]") {
  CHECK(from_vector<float>({1, 2.5f, 3, 4}, {2, 2}).str() ==
        "tensor([[1.0000, 2.5000],\n        [3.0000, 4.0000]], shape=(2, 2), dtype=f32)");
  CHECK(arange(3).str() == "tensor([0, 1, 2], shape=(3,), dtype=i64)");
  CHECK(scalar_tensor(0.5, DType::F64).str() == "tensor(0.5000, shape=(), dtype=f64)");
  CHECK(from_vector<double>({1e-6, 2}).str() == "tensor([1.0000e-06, 2.0000e+00], shape=(2,), dtype=f64)");
  std::string big = arange(2000).str();
  CHECK(big == "tensor([0, 1, 2, ..., 1997, 1998, 1999], shape=(2000,), dtype=i64)");
}

TEST_CASE("allclose", "[tensor]") {
  Tensor a = from_vector<double>({1.0, INFINITY, 3.0});
  CHECK(allclose(a, from_vector<double>({1.0 + 1e-9, INFINITY, 3.0})));
  CHECK_FALSE(allclose(a, from_vector<double>({1.1, INFINITY, 3.0})));
  CHECK_FALSE(allclose(a, from_vector<double>({1.0, 3.0})));
  CHECK_FALSE(allclose(from_vector<double>({NAN}), from_vector<double>({NAN})));
}

// ---------------------------------------------------------------- random

TEST_CASE("the generator is deterministic and independent of the thread count", "[tensor][random]") {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({1000}, DType::F32, &g1), b = randn({1000}, DType::F32, &g2), c = randn({1000}, DType::F32, &g3);
  CHECK(allclose(a, b, 0, 0));
  CHECK_FALSE(allclose(a, c, 0.1, 0));
  CHECK_FALSE(allclose(randn({1000}, DType::F32, &g1), a, 0.1, 0));  // the offset advanced
  CHECK(g1.offset() == 4000);

  int threads = get_num_threads();
  Generator h1(5), h2(5);
  set_num_threads(1);
  Tensor one = rand({300000}, DType::F64, &h1);
  set_num_threads(2);
  Tensor two = rand({300000}, DType::F64, &h2);
  set_num_threads(threads);
  CHECK(allclose(one, two, 0, 0));
}

TEST_CASE("random distributions have the right moments and ranges", "[tensor][random]") {
  Generator g(1);
  const int64_t n = 200000;
  std::vector<double> u = rand({n}, DType::F64, &g, -1.0, 3.0).to_vector<double>();
  double mean = 0, lo = 1e9, hi = -1e9;
  for (double v : u) {
    mean += v / double(n);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  CHECK(lo >= -1.0);
  CHECK(hi < 3.0);
  CHECK(mean == Approx(1.0).margin(0.02));  // std of the mean = 4/sqrt(12 n) = 0.0026

  std::vector<double> z = randn({n}, DType::F64, &g, 2.0, 0.5).to_vector<double>();
  double zm = 0, zv = 0;
  for (double v : z) zm += v / double(n);
  for (double v : z) zv += (v - zm) * (v - zm) / double(n);
  CHECK(zm == Approx(2.0).margin(0.01));
  CHECK(std::sqrt(zv) == Approx(0.5).margin(0.01));

  std::vector<float> bern = bernoulli({n}, 0.3, DType::F32, &g).to_vector<float>();
  double ones_frac = 0;
  for (float v : bern) {
    REQUIRE((v == 0.0f || v == 1.0f));
    ones_frac += v / double(n);
  }
  CHECK(ones_frac == Approx(0.3).margin(0.01));

  std::vector<int64_t> ri = randint(-3, 4, {n}, DType::I64, &g).to_vector<int64_t>();
  std::vector<int> counts(7, 0);
  for (int64_t v : ri) {
    REQUIRE((v >= -3 && v < 4));
    counts[size_t(v + 3)]++;
  }
  for (int c : counts) CHECK(c == Approx(n / 7.0).margin(n / 7.0 * 0.05));
  REQUIRE_THROWS_WITH(bernoulli({2}, 1.5), "bernoulli: p must be in [0, 1], got 1.5");
  REQUIRE_THROWS_WITH(randint(3, 3, {2}), "randint: empty range [3, 3)");
  REQUIRE_THROWS_WITH(rand({2}, DType::I32), "rand: dtype must be f32 or f64, got i32");
}

// ---------------------------------------------------------------- allocator

TEST_CASE("size classes waste at most 25%", "[tensor][allocator]") {
  CHECK(cpu_size_class(1) == 64);
  CHECK(cpu_size_class(512) == 512);
  CHECK(cpu_size_class(513) == 640);
  CHECK(cpu_size_class(1024) == 1024);
  CHECK(cpu_size_class(1025) == 1280);
  for (size_t n = 1; n < (size_t(1) << 26); n = n * 3 / 2 + 7) {
    size_t c = cpu_size_class(n);
    REQUIRE(c >= n);
    REQUIRE(c % 64 == 0);
    if (n > 512) REQUIRE(double(c) <= 1.25 * double(n) + 64);
  }
}

TEST_CASE("freed blocks are reused, not returned to the OS", "[tensor][allocator]") {
  // A "training step" allocating the same shapes every iteration: after the first iteration every
  // request is a cache hit and memory in use returns to where it was.
  auto step = [] {
    Tensor a = empty({256, 256});
    Tensor b = empty({1 << 20});  // 4 MiB: a huge-page block
    Tensor c = a.clone();
    CHECK(reinterpret_cast<uintptr_t>(a.data_ptr()) % 64 == 0);
    CHECK(reinterpret_cast<uintptr_t>(b.data_ptr()) % (2 << 20) == 0);
    b.fill_(1.0f);
    return c.numel() + b.numel();
  };
  step();
  AllocatorStats before = cpu_allocator_stats();
  for (int i = 0; i < 5; ++i) step();
  AllocatorStats after = cpu_allocator_stats();
  CHECK(after.os_allocs == before.os_allocs);
  CHECK(after.cache_hits - before.cache_hits == after.requests - before.requests);
  CHECK(after.bytes_in_use == before.bytes_in_use);
}

TEST_CASE("empty_cache gives cached memory back", "[tensor][allocator]") {
  { Tensor t = empty({1 << 18}); }
  CHECK(cpu_allocator_stats().bytes_cached > 0);
  cpu_empty_cache();
  CHECK(cpu_allocator_stats().bytes_cached == 0);
  Tensor again = zeros({1 << 18});  // still works after the cache was emptied
  CHECK(again.at({12345}) == 0.0);
}

TEST_CASE("copy_ handles overlap and refuses expanded destinations", "[tensor]") {
  Tensor m = arange(0.0, 16.0, 1.0).view({4, 4});
  Tensor expected = m.t().contiguous();
  m.copy_(m.t());  // source and destination share storage: read from a copy first
  CHECK(allclose(m, expected, 0, 0));
  Tensor v = arange(0.0, 6.0, 1.0, DType::F64);
  v.slice(0, 1, 6).copy_(v.slice(0, 0, 5));  // shifted self-copy
  CHECK(v.to_vector<double>() == std::vector<double>{0, 0, 1, 2, 3, 4});
  v.copy_(v);  // identical view: nothing to do
  CHECK(v.at({5}) == 4.0);
  REQUIRE_THROWS_WITH(zeros({1}).expand({8}).copy_(arange(0.0, 8.0, 1.0)),
                      "copy_: the destination (8,) is an expanded view (stride 0 in dim 0)");
  REQUIRE_THROWS_WITH(ones({1}).expand({-2}), "expand: invalid size -2 in (-2,)");
}
