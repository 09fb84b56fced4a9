// check.h — muxnet::Error and the checks that raise it.
//
// Every failed precondition in the library throws muxnet::Error with a sentence that names the op,
// what it expected and what it got, e.g. "matmul: inner dims differ: a=(4, 3) b=(5, 2)".
// Library code never aborts or prints: task binaries catch once, print "error: ...", and exit.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace muxnet {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
// Streams every argument into one string: concat("a=", shape, " b=", 3).
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace muxnet

// MUXNET_CHECK(cond, "op: message parts ", value, ...) throws muxnet::Error when cond is false.
#define MUXNET_CHECK(cond, ...)                                              \
  do {                                                                       \
    if (!(cond)) throw ::muxnet::Error(::muxnet::detail::concat(__VA_ARGS__)); \
  } while (0)

#define MUXNET_FAIL(...) throw ::muxnet::Error(::muxnet::detail::concat(__VA_ARGS__))
