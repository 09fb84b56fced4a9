// test_tensor.cpp — Tensor core: shapes, views, copies, factories, random, printing, errors.
#include "tests/test_util.h"
#include "tensor/dispatch.h"

using namespace muxnet;
using muxnet::test::for_each_index;

TEST_CASE("copy and contiguous keep values across layouts", "[tensor]") {
  Tensor x = arange(0, 24, 1, DType::F32).view({2, 3, 4});
  Tensor t = x.transpose(0, 2);  // (4, 3, 2)
  REQUIRE_FALSE(t.is_contiguous());
  Tensor c = t.contiguous();
  REQUIRE(c.is_contiguous());
  for_each_index(t.shape(), [&](const std::vector<int64_t>& i) {
    REQUIRE(c.at(i) == x.at({i[2], i[1], i[0]}));
  });
}
