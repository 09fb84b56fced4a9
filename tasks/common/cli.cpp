// cli.cpp — task entry point, data directory, list flags.
#include "tasks/common/cli.h"

#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <sstream>

#include "tensor/check.h"

namespace muxnet::tasks {

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

}  // namespace muxnet::tasks
