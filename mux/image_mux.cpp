// image_mux.cpp — ImageMux, haar_orthogonal and the Gaussian-Hadamard mux for flattened images
// (mux/image_mux.h).
#include "mux/image_mux.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "nn/init.h"

namespace muxnet::mux {

namespace {

std::string shape_or_undefined(const Tensor& x) { return x.defined() ? x.shape().str() : "an undefined tensor"; }

}  // namespace

ImageMuxKind parse_image_mux_kind(const std::string& name) {
  if (name == "none") return ImageMuxKind::None;
  if (name == "gaussian") return ImageMuxKind::Gaussian;
  if (name == "learnable") return ImageMuxKind::Learnable;
  if (name == "nonlinear") return ImageMuxKind::Nonlinear;
  if (name == "nonlinear_expand") return ImageMuxKind::NonlinearExpand;
  if (name == "ortho") return ImageMuxKind::Ortho;
  MUXNET_FAIL("image mux: unknown kind '", name,
              "' (expected none, gaussian, learnable, nonlinear, nonlinear_expand or ortho)");
}

const char* image_mux_kind_name(ImageMuxKind kind) {
  switch (kind) {
    case ImageMuxKind::None: return "none";
    case ImageMuxKind::Gaussian: return "gaussian";
    case ImageMuxKind::Learnable: return "learnable";
    case ImageMuxKind::Nonlinear: return "nonlinear";
    case ImageMuxKind::NonlinearExpand: return "nonlinear_expand";
    default: return "ortho";
  }
}

Tensor haar_orthogonal(int64_t n, int64_t dim, Generator* gen, DType dtype) {
  MUXNET_CHECK(n > 0 && dim > 0, "haar_orthogonal: sizes must be positive, got n=", n, " dim=", dim);
  // Row j of each (dim, dim) draw is taken as the j-th column to orthonormalise (the entries are iid,
  // so which way round does not change the distribution).
  const std::vector<double> g = randn({n, dim, dim}, DType::F64, gen).to_vector<double>();
  std::vector<double> out(g.size());
  const size_t d = size_t(dim);
  // Q is kept twice: by columns (q[k·d + r] = Q[r][k]) and by rows (out[r·d + k] = Q[r][k]), so that
  // both steps of a projection run along contiguous memory as axpy loops, which g++ vectorises
  // without reassociating a sum (no -ffast-math): dots = Q^T w reads the rows, w -= Q dots the columns.
  std::vector<double> q(d * d), w(d), dots(d);
  for (int64_t m = 0; m < n; ++m) {
    const double* src = g.data() + size_t(m) * d * d;
    double* rows = out.data() + size_t(m) * d * d;
    for (size_t j = 0; j < d; ++j) {
      for (size_t r = 0; r < d; ++r) w[r] = src[j * d + r];
      // NOTE: one classical Gram-Schmidt pass loses orthogonality in proportion to the condition number
      // of the draw; a second pass ("twice is enough") brings |Q^T Q - I| down to a few ulps.
      for (int pass = 0; pass < 2; ++pass) {
        std::fill(dots.begin(), dots.begin() + long(j), 0.0);
        for (size_t r = 0; r < d; ++r) {
          const double wr = w[r];
          const double* row = rows + r * d;
          for (size_t k = 0; k < j; ++k) dots[k] += row[k] * wr;  // dots = Q[:, :j]^T w
        }
        for (size_t k = 0; k < j; ++k) {
          const double dk = dots[k];
          const double* qk = q.data() + k * d;
          for (size_t r = 0; r < d; ++r) w[r] -= dk * qk[r];  // w -= Q[:, :j] dots
        }
      }
      double norm = 0;
      for (size_t r = 0; r < d; ++r) norm += w[r] * w[r];
      norm = std::sqrt(norm);  // R[j][j] > 0: the sign correction (a Gaussian draw is full rank a.s.)
      for (size_t r = 0; r < d; ++r) {
        q[j * d + r] = w[r] / norm;
        rows[r * d + j] = w[r] / norm;
      }
    }
  }
  return from_vector<double>(out, {n, dim, dim}).to(dtype);
}

ImageMux::ImageMux(const ImageMuxOptions& o, Generator* gen) : options(o) {
  const char* name = image_mux_kind_name(o.kind);
  MUXNET_CHECK(o.n > 0, "ImageMux(", name, "): n must be positive, got ", o.n);
  MUXNET_CHECK(o.in_channels > 0, "ImageMux(", name, "): in_channels must be positive, got ", o.in_channels);
  const int64_t n = o.n, c = o.in_channels;
  switch (o.kind) {
    case ImageMuxKind::None:
      MUXNET_CHECK(n == 1, "ImageMux(none): no multiplexing needs n = 1, got n = ", n);
      break;
    case ImageMuxKind::Gaussian:
      kernels = register_buffer("kernels", randn({n, 1, 1, 3, 3}, DType::F32, gen));
      break;
    case ImageMuxKind::Learnable:
      kernels = register_parameter("kernels", randn({n, 1, 1, 3, 3}, DType::F32, gen));
      break;
    case ImageMuxKind::Nonlinear:
    case ImageMuxKind::NonlinearExpand: {
      const int64_t h = o.hidden_channels, out = output_channels();
      MUXNET_CHECK(h > 0 && out > 0, "ImageMux(", name, "): hidden_channels and expand_channels must be positive, got ",
                   h, " and ", o.expand_channels);
      // fan_in = input channels * 3 * 3, as nn.Conv2d's weight.
      a = register_parameter("a", nn::uniform_init({n, h, c, 3, 3}, 1.0 / std::sqrt(double(c * 9)), gen));
      b = register_parameter("b", nn::uniform_init({n, out, h, 3, 3}, 1.0 / std::sqrt(double(h * 9)), gen));
      break;
    }
    case ImageMuxKind::Ortho:
      MUXNET_CHECK(o.height > 0 && o.width > 0, "ImageMux(ortho): height and width must be positive, got ", o.height,
                   "x", o.width);
      rotations = register_buffer("rotations", haar_orthogonal(n, o.height * o.width, gen));
      break;
  }
}

int64_t ImageMux::output_channels() const {
  return options.kind == ImageMuxKind::NonlinearExpand ? options.expand_channels : options.in_channels;
}

bool ImageMux::learned() const {
  return options.kind == ImageMuxKind::Learnable || options.kind == ImageMuxKind::Nonlinear ||
         options.kind == ImageMuxKind::NonlinearExpand;
}

// x: (B·N, C, H, W) -> (B, C', H, W)
Tensor ImageMux::forward(const Tensor& x) const {
  const int64_t n = options.n, c = options.in_channels;
  const ImageMuxKind kind = options.kind;
  const bool ortho = kind == ImageMuxKind::Ortho;
  MUXNET_CHECK(x.defined() && x.ndim() == 4 && x.size(0) % n == 0 && x.size(1) == c &&
                   (!ortho || (x.size(2) == options.height && x.size(3) == options.width)),
               "ImageMux(", image_mux_kind_name(kind), "): expected input (B*N, ", c, ", ",
               ortho ? std::to_string(options.height) : std::string("H"), ", ",
               ortho ? std::to_string(options.width) : std::string("W"), ") with N = ", n, ", got ",
               shape_or_undefined(x));
  const int64_t B = x.size(0) / n, H = x.size(2), W = x.size(3);
  switch (kind) {
    case ImageMuxKind::None:
      return x;
    case ImageMuxKind::Gaussian:
    case ImageMuxKind::Learnable: {
      // Instances become input channels: (B, N, C, H, W) -> (B, C, N, H, W) -> (B·C, N, H, W). One conv2d
      // with weight (1, N, 3, 3) then sums conv(x_i, k_i) over i. (C = 1: the permute moves a size-1
      // dim and the reshape is a view.)
      Tensor planes = x.reshape({B, n, c, H, W}).permute({0, 2, 1, 3, 4}).reshape({B * c, n, H, W});
      Tensor mixed = conv2d(planes, kernels.view({1, n, 3, 3}), Tensor(), 1, 1);  // (B·C, 1, H, W)
      return mixed.view({B, c, H, W});
    }
    case ImageMuxKind::Ortho: {
      // Σ_i flatten(x_i) @ R_i as ONE GEMM: (B·C, N·HW) @ (N·HW, HW), the N matrices stacked by rows.
      const int64_t hw = H * W;
      Tensor rows = x.reshape({B, n, c, hw}).permute({0, 2, 1, 3}).reshape({B * c, n * hw});
      return matmul(rows, rotations.view({n * hw, hw})).view({B, c, H, W});
    }
    default: {
      // nonlinear / nonlinear_expand: φ_i per instance (see the header for why a loop), summed.
      Tensor xs = x.reshape({B, n, c, H, W});
      Tensor out;
      for (int64_t i = 0; i < n; ++i) {
        Tensor h = tanh(conv2d(xs.select(1, i), a.select(0, i), Tensor(), 1, 1));  // (B, hidden, H, W)
        Tensor y = tanh(conv2d(h, b.select(0, i), Tensor(), 1, 1));                // (B, C', H, W)
        out = i == 0 ? y : add(out, y);
      }
      return out;
    }
  }
}

// x: (B·N, D), keys: (N, D) -> (B, D)
Tensor gaussian_hadamard_mix(const Tensor& x, const Tensor& keys) {
  MUXNET_CHECK(keys.defined() && keys.ndim() == 2, "gaussian_hadamard_mix: expected keys (N, D), got ",
               shape_or_undefined(keys));
  const int64_t n = keys.size(0), d = keys.size(1);
  MUXNET_CHECK(x.defined() && x.ndim() == 2 && x.size(1) == d && x.size(0) % n == 0,
               "gaussian_hadamard_mix: expected input (B*N, ", d, ") with N = ", n, ", got ", shape_or_undefined(x));
  return mean(mul(x.reshape({x.size(0) / n, n, d}), keys), {1});  // (B, N, D) ⊙ (N, D), mean over N
}

HadamardMux::HadamardMux(int64_t n_, int64_t dim_, Generator* gen) : n(n_), dim(dim_) {
  MUXNET_CHECK(n > 0 && dim > 0, "HadamardMux: sizes must be positive, got n=", n, " dim=", dim);
  keys = register_buffer("mux_v", randn({n, dim}, DType::F32, gen));
}

Tensor HadamardMux::forward(const Tensor& x) const { return gaussian_hadamard_mix(x, keys); }

}  // namespace muxnet::mux
