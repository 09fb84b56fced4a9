// test_dispatch.cpp — the kernel table: op names, registered CPU kernels, and the errors a missing
// kernel or a missing device allocator raises.
//
// What this is not: a test of any kernel's numbers (each family's test file does that).
// The CPU is the reference backend: every op must have a CPU kernel.
#include <set>
#include <string>

#include "tensor/device.h"
#include "tensor/dispatch.h"
#include "tests/test_util.h"

using namespace muxnet;

namespace {

// Every op: the CPU column of the table must be full.
std::vector<OpId> all_ops() {
  std::vector<OpId> ops;
  for (size_t i = 0; i < size_t(OpId::COUNT); ++i) ops.push_back(OpId(i));
  return ops;
}
const std::vector<OpId> kCpuOps = all_ops();

}  // namespace

TEST_CASE("every OpId has a non-empty, unique name", "[dispatch]") {
  constexpr size_t n = sizeof(kOpNames) / sizeof(kOpNames[0]);
  REQUIRE(n == size_t(OpId::COUNT));
  std::set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    INFO("OpId #" << i);
    REQUIRE(kOpNames[i] != nullptr);
    CHECK(std::string(kOpNames[i]).size() > 0);
    CHECK(seen.insert(kOpNames[i]).second);
    CHECK(std::string(op_name(OpId(i))) == kOpNames[i]);
  }
  // Names come from the enumerators themselves.
  CHECK(std::string(op_name(OpId::copy)) == "copy");
  CHECK(std::string(op_name(OpId::softmax)) == "softmax");
  CHECK(std::string(op_name(OpId::max_pool2d_backward)) == "max_pool2d_backward");
}

TEST_CASE("the ops of the merged kernel families have CPU kernels", "[dispatch]") {
  for (OpId op : kCpuOps) {
    INFO("op " << op_name(op));
    CHECK(has_kernel(op, Device::CPU));
  }
  CHECK_NOTHROW(kernel<OpId::im2col>(Device::CPU));
  CHECK(kernel<OpId::copy>(Device::CPU) != nullptr);
}

TEST_CASE("a lookup succeeds exactly when a kernel is registered, else names the op", "[dispatch]") {
  for (size_t i = 0; i < size_t(OpId::COUNT); ++i) {
    OpId op = OpId(i);
    INFO("op " << op_name(op));
    if (has_kernel(op, Device::CPU)) {
      CHECK(detail::lookup_kernel(op, Device::CPU) != nullptr);
    } else {
      CHECK_THROWS_WITH(detail::lookup_kernel(op, Device::CPU), std::string(op_name(op)) + ": no cpu kernel registered");
    }
    if (has_kernel(op, Device::CUDA)) {
      CHECK(detail::lookup_kernel(op, Device::CUDA) != nullptr);
    } else {
      CHECK_THROWS_WITH(detail::lookup_kernel(op, Device::CUDA),
                        std::string(op_name(op)) + ": no CUDA kernel (built without CUDA?)");
    }
  }
}

TEST_CASE("a missing CUDA kernel throws a sentence naming the op", "[dispatch]") {
  if (has_kernel(OpId::softmax, Device::CUDA)) {
    WARN("softmax has a CUDA kernel in this build: the missing-kernel message is not exercised");
    return;
  }
  REQUIRE_THROWS_AS(kernel<OpId::softmax>(Device::CUDA), Error);
  REQUIRE_THROWS_WITH(kernel<OpId::softmax>(Device::CUDA), "softmax: no CUDA kernel (built without CUDA?)");
}

TEST_CASE("tensor factories on an unavailable device throw a clear error", "[dispatch]") {
  if (device_available(Device::CUDA)) {
    WARN("a CUDA GPU is available: the no-device message is not exercised");
    return;
  }
  // Either the build has no CUDA backend, or it has one and this machine has no GPU; the message
  // names the device and says which.
  const std::string why = device_unavailable_reason(Device::CUDA);
  REQUIRE_FALSE(why.empty());
  const std::string msg = "Storage: cannot allocate on cuda: " + why;
  REQUIRE_THROWS_AS(empty({2, 3}, DType::F32, Device::CUDA), Error);
  REQUIRE_THROWS_WITH(empty({2, 3}, DType::F32, Device::CUDA), msg);
  REQUIRE_THROWS_WITH(zeros({4}, DType::F64, Device::CUDA), msg);
  REQUIRE_THROWS_WITH(ones({1, 1}, DType::F32, Device::CUDA), msg);
  REQUIRE_THROWS_WITH(full({3}, 2.0, DType::I64, Device::CUDA), msg);
  // Even an empty tensor needs the device to exist.
  REQUIRE_THROWS_WITH(empty({0}, DType::F32, Device::CUDA), msg);
  // The CPU is always there.
  CHECK(device_available(Device::CPU));
  CHECK(device_unavailable_reason(Device::CPU).empty());
  CHECK(empty({2, 3}, DType::F32, Device::CPU).device() == Device::CPU);
}
