// gradcheck.h — finite-difference check of a differentiable function's gradients, in f64.
//
// For y = f(inputs), gradcheck draws a random (seeded) projection v of y's shape and compares, for
// each checked input coordinate x_j, the analytic d<v, y>/dx_j (from backward(v)) with the central
// difference (<v, f(x + eps e_j)> - <v, f(x - eps e_j)>) / (2 eps). Checking a random projection tests
// the whole vector-Jacobian product at once; inputs larger than max_coords are checked on a seeded
// random sample of coordinates. Inputs keep their layout (a transposed or sliced f64 input is
// perturbed through its strides), so non-contiguous inputs are checked as such.
// Devices: the leaves gradcheck perturbs are always cpu tensors (it writes them through host
// pointers). f may move them to another device and compute there (x.to(Device::CUDA) is
// differentiable); the projection v is drawn on y's device, so a GPU backward is checked that way.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace muxnet {

// The pass rule of the issue: |numeric - analytic| <= atol + rtol * |numeric| for every coordinate.
// eps = 1e-6 is about the cube root of f64 epsilon: the best step for a central difference.
constexpr double kGradcheckEps = 1e-6;
constexpr double kGradcheckAtol = 1e-6;
constexpr double kGradcheckRtol = 1e-4;

struct GradcheckOptions {
  double eps = kGradcheckEps;
  double atol = kGradcheckAtol;
  double rtol = kGradcheckRtol;
  int64_t max_coords = 1000;  // per input; larger inputs are sampled
  uint64_t seed = 1337;
};

struct GradcheckResult {
  bool ok = true;
  int64_t checked = 0;     // coordinates compared
  int worst_input = -1;    // where |numeric - analytic| used the largest share of its tolerance
  int64_t worst_coord = -1;
  double numeric = 0, analytic = 0;
  double margin = 0;       // tolerance minus error at the worst coordinate (negative = failed)
  std::string report() const;
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks the gradients of f with respect to every floating input (all must be f64; integer inputs,
// e.g. indices, pass through unchanged). f must return an f64 tensor of any shape.
GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace muxnet
