// cli.h — the shape every task binary's main() has: CLI11 flags, one error line, fixed exit codes;
// and the device every task runs on (--device, --tf32).
//
//   exit 0  success (and --help)
//   exit 2  bad input: an unknown or malformed flag, a missing or malformed data file, a --device
//           that is not available here (InputError)
//   exit 1  any other error (a muxnet::Error from the library)
//
// Devices. A task builds its model on the CPU, moves it with Module::to(device) and only then builds
// its optimizer (the optimizer's state is created next to the parameters); every batch is moved with
// Tensor::to(device), which returns the tensor itself when it is already there, so the CPU path makes
// no copies. Metrics are read with item() / to_vector(), which copy to the host.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <stdexcept>
#include <string>

#include "tensor/types.h"

namespace muxnet::nn {
class Module;
}

namespace muxnet::tasks {

// A problem with what the user gave: flags, paths, data files. Reported with exit code 2.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

// Parses argv into app, then runs body; prints "error: ..." on stderr and returns the exit code.
int run_task(CLI::App& app, int argc, char** argv, const std::function<void()>& body);

// Flag checks that say what is wrong ("--steps: expected a number >= 0, got '3000,3000'"); CLI11's
// PositiveNumber / NonNegativeNumber print their range as "0.000000 to 1.797693e+308".
extern const CLI::Validator kPositive;     // > 0
extern const CLI::Validator kNonNegative;  // >= 0

// Resolves the data directory: the flag if given, else $MUXNET_DATA, else ./data. Throws InputError
// naming all three when the directory does not exist.
std::string data_dir(const std::string& flag);

// Parses "2,5,10" into numbers; InputError naming the flag on anything else.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& flag);

// The --save path of one N of a sweep: "_n<N>" before the extension (runs/m.safetensors ->
// runs/m_n4.safetensors); path unchanged when !sweep.
std::string with_n_suffix(const std::string& path, int64_t n, bool sweep);

// ---- the device: --device cpu | cuda | cuda:K, --tf32
struct DeviceFlags {
  std::string device = "cpu";
  bool tf32 = false;
};
void add_device_flags(CLI::App& app, DeviceFlags& f);
// Parses --device (selecting GPU K for cuda:K), checks that it can run here and applies --tf32.
// Throws InputError (exit 2) with the reason the device is unavailable ("this build has no CUDA
// backend", "no CUDA GPU: ..."), on malformed text, or for --tf32 without a cuda device. Tasks call it
// before they read any data, so a wrong device fails in a second.
Device resolve_device(const DeviceFlags& f);
// "cpu", or the GPU's banner line ("NVIDIA H200 (sm_90, 139.8 GiB)"), with ", tf32" when it is on.
std::string device_banner(Device device);
// The device of a module's parameters (the CPU for a module without any): where its inputs must go.
Device module_device(const nn::Module& module);

}  // namespace muxnet::tasks
