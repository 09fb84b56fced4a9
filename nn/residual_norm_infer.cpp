// residual_norm_infer.cpp — LayerNorm(x + r) in one pass for inference (see residual_norm_infer.h).
#include "nn/residual_norm_infer.h"

#include <cmath>
#include <vector>

#include "tensor/check.h"
#include "tensor/cpu/kernels.h"
#include "tensor/iter.h"

namespace muxnet::nn {

Tensor add_layer_norm_inference(const Tensor& x, const Tensor& r, const Tensor& weight, const Tensor& bias,
                                double eps) {
  auto usable = [](const Tensor& t) {
    return t.defined() && t.dtype() == DType::F32 && t.device() == Device::CPU && t.is_contiguous();
  };
  MUXNET_CHECK(usable(x) && usable(r) && x.ndim() >= 1 && x.shape() == r.shape(),
               "add_layer_norm_inference: expected contiguous f32 CPU tensors of one shape, got ",
               x.defined() ? x.shape().str() : "undefined", " and ", r.defined() ? r.shape().str() : "undefined");
  const int64_t cols = x.size(-1), rows = cols == 0 ? 0 : x.numel() / cols;
  for (const Tensor* p : {&weight, &bias}) {
    MUXNET_CHECK(!p->defined() || (usable(*p) && p->shape() == Shape{cols}),
                 "add_layer_norm_inference: weight and bias must be contiguous f32 CPU ", Shape{cols}, ", got ",
                 p->shape());
  }
  Tensor out = empty(x.shape(), DType::F32);
  const float* xs = x.data<float>();
  const float* rs_in = r.data<float>();
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  float* ys = out.data<float>();
  parallel_for(rows, 6 * cols, [&](int64_t lo, int64_t hi) {
    std::vector<float> sum(static_cast<size_t>(cols));
    float* s = sum.data();
    for (int64_t row = lo; row < hi; ++row) {
      const float* xr = xs + row * cols;
      const float* rr = rs_in + row * cols;
      float* yr = ys + row * cols;
      for (int64_t c = 0; c < cols; ++c) s[c] = xr[c] + rr[c];
      // The same statistics as tensor/cpu/layernorm.cpp's layer_norm_rows.
      const MeanVar st = lane_mean_var(cols, [s](int64_t c) { return double(s[c]); });
      const double m = st.mean, rstd = 1.0 / std::sqrt(st.var + eps);
      for (int64_t c = 0; c < cols; ++c) {
        double y = (double(s[c]) - m) * rstd;
        if (w) y *= double(w[c]);
        if (b) y += double(b[c]);
        yr[c] = float(y);
      }
    }
  });
  return out;
}

}  // namespace muxnet::nn
