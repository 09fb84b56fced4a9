// attention_infer.cpp — fused inference self-attention (see attention_infer.h).
#include "nn/attention_infer.h"

#include <cmath>

#include "tensor/check.h"
#include "tensor/cpu/blas.h"
#include "tensor/iter.h"
#include "tensor/ops.h"

namespace muxnet::nn {

Tensor self_attention_inference(const Tensor& qkv, int64_t heads) {
  MUXNET_CHECK(qkv.defined() && qkv.ndim() == 3 && qkv.dtype() == DType::F32 && qkv.device() == Device::CPU &&
                   qkv.is_contiguous(),
               "self_attention_inference: expected a contiguous f32 CPU tensor (B, T, 3d), got ", qkv.shape());
  const int64_t B = qkv.size(0), T = qkv.size(1), d3 = qkv.size(2), d = d3 / 3;
  MUXNET_CHECK(heads >= 1 && d3 % 3 == 0 && d % heads == 0, "self_attention_inference: last dim ", d3,
               " is not 3 x d with d a multiple of ", heads, " heads");
  const int64_t dh = d / heads;
  const float scale = float(1.0 / std::sqrt(double(dh)));
  Tensor out = empty({B, T, d}, DType::F32);
  const float* src = qkv.data<float>();
  float* dst = out.data<float>();
  // Inside the parallel region OpenBLAS (the OpenMP build) runs each call on the calling thread.
  parallel_for(B * heads, 4 * T * T * dh, [&](int64_t lo, int64_t hi) {
    Tensor scores = empty({T, T}, DType::F32);
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = bh / heads, h = bh % heads;
      const float* q = src + b * T * d3 + h * dh;
      const float* k = q + d;
      const float* v = q + 2 * d;
      blas::sgemm(false, true, int(T), int(T), int(dh), scale, q, int(d3), k, int(d3), 0.0f, scores.data<float>(),
                  int(T));
      Tensor p = ops::softmax(scores);  // rows of T keys
      blas::sgemm(false, false, int(T), int(dh), int(T), 1.0f, p.data<float>(), int(T), v, int(d3), 0.0f,
                  dst + b * T * d + h * dh, int(d));
    }
  });
  return out;
}

}  // namespace muxnet::nn
