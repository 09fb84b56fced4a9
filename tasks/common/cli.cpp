// cli.cpp — task entry point, data directory, list flags, the device flags.
#include "tasks/common/cli.h"

#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <sstream>

#include "nn/module.h"
#include "tensor/check.h"
#include "tensor/device.h"

namespace muxnet::tasks {

namespace {

// A validator for numbers at or above (strict: above) zero, with a message naming the bound.
CLI::Validator sign_check(bool strict) {
  return CLI::Validator(
      [strict](std::string& text) -> std::string {
        const std::string expected = std::string("expected a number ") + (strict ? "> 0" : ">= 0");
        try {
          size_t used = 0;
          double v = std::stod(text, &used);
          if (used != text.size()) return expected + ", got '" + text + "'";
          if (strict ? !(v > 0) : !(v >= 0)) return expected + ", got " + text;
        } catch (...) {
          return expected + ", got '" + text + "'";
        }
        return "";
      },
      strict ? "POSITIVE" : "NONNEGATIVE");
}

}  // namespace

const CLI::Validator kPositive = sign_check(true);
const CLI::Validator kNonNegative = sign_check(false);

int run_task(CLI::App& app, int argc, char** argv, const std::function<void()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << " (see " << app.get_name() << " --help)\n";
    return 2;
  }
  try {
    body();
    return 0;
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

std::string data_dir(const std::string& flag) {
  std::string dir = flag;
  std::string source = "--data-dir";
  if (dir.empty()) {
    const char* env = std::getenv("MUXNET_DATA");
    dir = env && *env ? env : "data";
    source = env && *env ? "$MUXNET_DATA" : "the default ./data";
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw InputError("data directory '" + dir + "' (from " + source +
                     ") does not exist; pass --data-dir or set MUXNET_DATA (see ../shared/data/README.md)");
  }
  return dir;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& flag) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      long long v = std::stoll(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw InputError(flag + ": '" + text + "' is not a comma-separated list of integers");
    }
  }
  if (out.empty()) throw InputError(flag + ": empty list");
  return out;
}

std::string with_n_suffix(const std::string& path, int64_t n, bool sweep) {
  if (!sweep) return path;
  const size_t slash = path.rfind('/');
  const size_t dot = path.rfind('.');
  const std::string suffix = "_n" + std::to_string(n);
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path + suffix;  // no extension
  return path.substr(0, dot) + suffix + path.substr(dot);
}

void add_device_flags(CLI::App& app, DeviceFlags& f) {
  app.add_option("--device", f.device, "cpu | cuda | cuda:K (the K-th GPU)")->capture_default_str();
  app.add_flag("--tf32", f.tf32, "cuda: TF32 tensor-core matmuls (faster; f32 results then differ from the cpu's)");
}

Device resolve_device(const DeviceFlags& f) {
  const bool cuda = f.device == "cuda" || f.device.rfind("cuda:", 0) == 0;
  if (!cuda && f.device != "cpu") throw InputError("--device: expected cpu, cuda or cuda:K, got '" + f.device + "'");
  if (cuda) {
    // Asked before parse_device: for cuda:K it would select the GPU and fail with a library message.
    const std::string why = device_unavailable_reason(Device::CUDA);
    if (!why.empty()) throw InputError("--device " + f.device + " is not available: " + why);
  }
  Device device;
  try {
    device = parse_device(f.device);
  } catch (const Error& e) {
    throw InputError(std::string("--device: ") + e.what());
  }
  if (f.tf32) {
    if (device != Device::CUDA) throw InputError("--tf32 applies to cuda devices only (got --device " + f.device + ")");
    set_allow_tf32(true);
  }
  return device;
}

std::string device_banner(Device device) {
  return device_describe(device) + (device != Device::CPU && allow_tf32() ? ", tf32" : "");
}

Device module_device(const nn::Module& module) {
  std::vector<Tensor> params = module.parameters();
  return params.empty() ? Device::CPU : params.front().device();
}

}  // namespace muxnet::tasks
