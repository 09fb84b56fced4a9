// device.cpp — the registry of device runtimes and the questions tasks ask about devices.
#include "tensor/device.h"

#include <atomic>
#include <cstdlib>

#include "tensor/check.h"
#include "tensor/dispatch.h"

namespace muxnet {

namespace {
DeviceRuntime g_runtimes[size_t(Device::COUNT)];
bool g_registered[size_t(Device::COUNT)] = {};
std::atomic<bool> g_allow_tf32{false};
}  // namespace

void register_device_runtime(Device device, const DeviceRuntime& runtime) {
  MUXNET_CHECK(device != Device::CPU, "register_device_runtime: the cpu has no pluggable runtime");
  g_runtimes[size_t(device)] = runtime;
  g_registered[size_t(device)] = true;
}

const DeviceRuntime* device_runtime(Device device) {
  if (device == Device::CPU) return nullptr;
  ensure_kernels_registered();  // the CUDA backend installs its runtime while registering kernels
  return g_registered[size_t(device)] ? &g_runtimes[size_t(device)] : nullptr;
}

std::string device_unavailable_reason(Device device) {
  if (device == Device::CPU) return "";
  const DeviceRuntime* rt = device_runtime(device);
  if (!rt) return std::string(device_name(device)) + ": this build has no CUDA backend (nvcc was not found, or CUDA=0)";
  const char* why = rt->unavailable_reason ? rt->unavailable_reason() : nullptr;
  return why ? std::string(why) : std::string();
}

bool device_available(Device device) { return device_unavailable_reason(device).empty(); }

void require_device(Device device, const char* who) {
  std::string why = device_unavailable_reason(device);
  MUXNET_CHECK(why.empty(), who, ": device ", device, " is not available: ", why);
}

void device_synchronize(Device device) {
  if (device == Device::CPU) return;
  require_device(device, "device_synchronize");
  device_runtime(device)->synchronize();
}

std::string device_describe(Device device) {
  if (device == Device::CPU) return "cpu";
  require_device(device, "device_describe");
  const DeviceRuntime* rt = device_runtime(device);
  return rt->describe ? rt->describe() : std::string(device_name(device));
}

void select_device_index(Device device, int index) {
  MUXNET_CHECK(device == Device::CUDA, "select_device_index: only cuda devices have an index, got ", device);
  require_device(device, "select_device_index");
  const DeviceRuntime* rt = device_runtime(device);
  int n = rt->device_count();
  MUXNET_CHECK(index >= 0 && index < n, "select_device_index: cuda:", index, " does not exist (", n,
               " GPU", n == 1 ? "" : "s", " present)");
  rt->select(index);
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::CPU;
  if (text == "cuda") return Device::CUDA;
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string digits = text.substr(5);
    MUXNET_CHECK(digits.find_first_not_of("0123456789") == std::string::npos,
                 "parse_device: expected cpu, cuda or cuda:K, got '", text, "'");
    select_device_index(Device::CUDA, std::atoi(digits.c_str()));
    return Device::CUDA;
  }
  MUXNET_FAIL("parse_device: expected cpu, cuda or cuda:K, got '", text, "'");
}

void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }

}  // namespace muxnet
