// test_device.cpp — devices: parsing "cpu" / "cuda" / "cuda:K", availability and the sentence that says
// why a device is missing, CUDA allocation refused without a GPU, the CUDA allocator's size classes,
// and Module::to(Device). Tests tagged [cuda] need a usable CUDA device (a GPU, or
// MUXNET_EMULATE_CUDA=1); without one, tests/catch_main.cpp reports them as skipped instead of running
// them.
#include "nn/layers.h"
#include "tensor/device.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

#ifdef MUXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

using namespace muxnet;

namespace {

// The text of the muxnet::Error that f throws ("" when it throws none).
template <typename F>
std::string error_text(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("parse_device reads cpu, cuda and cuda:K and names what it got otherwise", "[device]") {
  CHECK(parse_device("cpu") == Device::CPU);
  CHECK(parse_device("cuda") == Device::CUDA);  // no GPU needed to name the device
  for (const char* bad : {"gpu", "cuda:x", "cuda:", "CPU", "cuda:1x", ""}) {
    INFO("text '" << bad << "'");
    const std::string err = error_text([&] { parse_device(bad); });
    CHECK(contains(err, "parse_device: expected cpu, cuda or cuda:K, got '" + std::string(bad) + "'"));
  }
  // An index that does not exist: without a GPU the device is missing altogether, with one cuda:99 is.
  const std::string err = error_text([] { parse_device("cuda:99"); });
  if (device_available(Device::CUDA)) {
    CHECK(contains(err, "cuda:99 does not exist"));
    CHECK(parse_device("cuda:0") == Device::CUDA);
  } else {
    CHECK(contains(err, device_unavailable_reason(Device::CUDA)));
  }
}

TEST_CASE("the cpu is always available; a missing CUDA device says why", "[device]") {
  CHECK(device_available(Device::CPU));
  CHECK(device_unavailable_reason(Device::CPU).empty());
  CHECK(device_describe(Device::CPU) == "cpu");
  device_synchronize(Device::CPU);  // a no-op

  if (device_available(Device::CUDA)) {
    CHECK(device_unavailable_reason(Device::CUDA).empty());
    Tensor t = empty({2}, DType::F32, Device::CUDA);
    CHECK(t.device() == Device::CUDA);
    CHECK_FALSE(device_describe(Device::CUDA).empty());
    return;
  }
  const std::string reason = device_unavailable_reason(Device::CUDA);
  CHECK_FALSE(reason.empty());
#ifdef MUXNET_WITH_CUDA
  // The CUDA runtime is registered in this build, so the reason is its sentence about the GPU, not
  // "this build has no CUDA backend".
  CHECK(contains(reason, "GPU"));
#endif
  const std::string err = error_text([] { empty({2}, DType::F32, Device::CUDA); });
  CHECK(contains(err, "cuda"));
  CHECK(contains(err, reason));
  CHECK(contains(error_text([] { device_synchronize(Device::CUDA); }), reason));

  // Module::to refuses before moving anything: the module stays whole on the cpu.
  Generator gen(3);
  nn::Linear lin(3, 2, true, &gen);
  Tensor w = lin.weight;
  const void* data = w.data_ptr();
  CHECK(contains(error_text([&] { lin.to(Device::CUDA); }), reason));
  CHECK(lin.weight.is_same(w));
  CHECK(w.device() == Device::CPU);
  CHECK(lin.bias.device() == Device::CPU);
  CHECK(w.data_ptr() == data);
}

#ifdef MUXNET_WITH_CUDA
TEST_CASE("the CUDA allocator's size classes: 512-byte steps, then quarter steps of a power of two", "[device]") {
  CHECK(cuda_size_class(0) == 0);
  CHECK(cuda_size_class(1) == 512);
  CHECK(cuda_size_class(512) == 512);
  CHECK(cuda_size_class(513) == 1024);
  CHECK(cuda_size_class(4096) == 4096);
  CHECK(cuda_size_class(4097) == 5120);
  CHECK(cuda_size_class(8192) == 8192);
  CHECK(cuda_size_class(8193) == 10240);
  CHECK(cuda_size_class(size_t(3) << 30) == size_t(3) << 30);
  for (size_t n = 1; n < (size_t(1) << 22); n = n * 3 / 2 + 7) {
    const size_t cls = cuda_size_class(n);
    INFO("n = " << n << ", class " << cls);
    CHECK(cls >= n);
    CHECK(cls % 512 == 0);
    CHECK((n <= 4096 ? cls - n < 512 : cls * 4 <= n * 5));  // at most 25% wasted above 4 KiB
    CHECK(cuda_size_class(cls) == cls);                     // a class is its own class
  }
  // The stats answer without touching the GPU (there may be none).
  const CudaAllocatorStats stats = cuda_allocator_stats();
  CHECK(stats.cache_hits <= stats.requests);
}
#endif

TEST_CASE("Module::to(cpu) on a cpu module changes nothing", "[device][nn]") {
  Generator gen(7);
  nn::Linear lin(3, 2, true, &gen);
  lin.pack_parameters();
  Tensor w = lin.weight;
  const void* data = w.data_ptr();
  const std::vector<float> values = w.to_vector<float>();
  sum(lin.forward(ones({4, 3}))).backward();
  Tensor g = w.grad();
  REQUIRE(g.defined());

  lin.to(Device::CPU);
  CHECK(lin.weight.is_same(w));
  CHECK(lin.weight.device() == Device::CPU);
  CHECK(lin.weight.data_ptr() == data);
  CHECK(lin.weight.to_vector<float>() == values);
  CHECK(lin.packed());  // nothing moved, so the arenas stay
  CHECK(w.grad().is_same(g));
}

TEST_CASE("Module::to(cuda) and back keeps tensor identity and values", "[device][nn][cuda]") {
  Generator gen(11);
  nn::Linear lin(3, 2, true, &gen);
  lin.pack_parameters();
  Tensor w = lin.weight, b = lin.bias;
  const std::vector<float> w_values = w.to_vector<float>(), b_values = b.to_vector<float>();
  Tensor x = test::random_tensor({4, 3}, DType::F32, 5);
  Tensor y_cpu = lin.forward(x).detach();
  sum(lin.forward(x)).backward();
  REQUIRE(w.grad().defined());

  lin.to(Device::CUDA);
  CHECK(lin.weight.is_same(w));  // layers keep their handles
  CHECK(lin.bias.is_same(b));
  CHECK(w.device() == Device::CUDA);
  CHECK(b.device() == Device::CUDA);
  CHECK(w.dtype() == DType::F32);
  CHECK((w.shape() == Shape{2, 3}));
  CHECK(w.requires_grad());
  CHECK_FALSE(w.grad().defined());  // the old gradient stayed on the cpu
  CHECK_FALSE(lin.packed());
  CHECK(w.to(Device::CPU).to_vector<float>() == w_values);
  CHECK(b.to(Device::CPU).to_vector<float>() == b_values);

  // The moved layer computes on the GPU what it computed on the cpu (TF32 is off by default).
  Tensor y_cuda = lin.forward(x.to(Device::CUDA));
  CHECK(y_cuda.device() == Device::CUDA);
  CHECK_CLOSE(y_cuda.to(Device::CPU), y_cpu, test::kF32Atol, test::kF32Rtol);

  lin.to(Device::CPU);
  CHECK(lin.weight.is_same(w));
  CHECK(w.device() == Device::CPU);
  CHECK(w.to_vector<float>() == w_values);
  CHECK(b.to_vector<float>() == b_values);
  CHECK_CLOSE(lin.forward(x), y_cpu, 0.0, 0.0);
}
