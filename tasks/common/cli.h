// cli.h — the shape every task binary's main() has: CLI11 flags, one error line, fixed exit codes.
//
//   exit 0  success (and --help)
//   exit 2  bad input: an unknown or malformed flag, a missing or malformed data file (InputError)
//   exit 1  any other error (a muxnet::Error from the library)
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <stdexcept>
#include <string>

namespace muxnet::tasks {

// A problem with what the user gave: flags, paths, data files. Reported with exit code 2.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

// Parses argv into app, then runs body; prints "error: ..." on stderr and returns the exit code.
int run_task(CLI::App& app, int argc, char** argv, const std::function<void()>& body);

// Resolves the data directory: the flag if given, else $MUXNET_DATA, else ./data. Throws InputError
// naming all three when the directory does not exist.
std::string data_dir(const std::string& flag);

// Parses "2,5,10" into numbers; InputError naming the flag on anything else.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& flag);

// The --save path of one N of a sweep: "_n<N>" before the extension (runs/m.safetensors ->
// runs/m_n4.safetensors); path unchanged when !sweep.
std::string with_n_suffix(const std::string& path, int64_t n, bool sweep);

}  // namespace muxnet::tasks
