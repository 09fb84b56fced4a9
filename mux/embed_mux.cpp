// embed_mux.cpp — the fused inference embedding + Hadamard multiplexer (see embed_mux.h).
#include "mux/embed_mux.h"

#include <cmath>
#include <cstring>

#include "tensor/check.h"
#include "tensor/cpu/kernels.h"
#include "tensor/iter.h"

namespace muxnet::mux {

namespace {

// The number of leading positions at which every mixed sequence has the same N tokens as sequence 0.
int64_t shared_prefix(const std::vector<int64_t>& ids, int64_t batch, int64_t n, int64_t positions) {
  for (int64_t t = 0; t < positions; ++t) {
    for (int64_t r = n; r < batch * n; ++r) {
      if (ids[size_t(r * positions + t)] != ids[size_t((r % n) * positions + t)]) return t;
    }
  }
  return positions;
}

void check_f32_cpu(const Tensor& t, const char* name, const Shape& shape) {
  MUXNET_CHECK(t.defined() && t.dtype() == DType::F32 && t.device() == Device::CPU && t.is_contiguous(),
               "hadamard_embed_mux: ", name, " must be a contiguous f32 CPU tensor");
  MUXNET_CHECK(t.shape() == shape, "hadamard_embed_mux: ", name, " has shape ", t.shape(), ", expected ", shape);
}

}  // namespace

Tensor hadamard_embed_mux(const std::vector<int64_t>& ids, int64_t n, int64_t positions, const Tensor& word,
                          const Tensor& pos, const Tensor& ln_weight, const Tensor& ln_bias, double eps,
                          const Tensor& keys) {
  MUXNET_CHECK(n >= 1 && positions >= 1 && ids.size() % size_t(n * positions) == 0, "hadamard_embed_mux: ",
               ids.size(), " ids do not form mixed sequences of N = ", n, " rows of ", positions, " tokens");
  MUXNET_CHECK(word.ndim() == 2 && pos.ndim() == 2 && pos.size(0) >= positions, "hadamard_embed_mux: expected ",
               "word (V, d) and pos (>= ", positions, ", d), got ", word.shape(), " and ", pos.shape());
  const int64_t vocab = word.size(0), d = word.size(1), batch = int64_t(ids.size()) / (n * positions);
  check_f32_cpu(word, "word", {vocab, d});
  check_f32_cpu(pos, "pos", {pos.size(0), d});
  check_f32_cpu(ln_weight, "ln_weight", {d});
  check_f32_cpu(ln_bias, "ln_bias", {d});
  check_f32_cpu(keys, "keys", {n, d});
  for (size_t k = 0; k < ids.size(); ++k) {
    MUXNET_CHECK(ids[k] >= 0 && ids[k] < vocab, "hadamard_embed_mux: token id ", ids[k], " at ", k,
                 " is outside the embedding table [0, ", vocab, ")");
  }

  const float* W = word.data<float>();
  const float* P = pos.data<float>();
  const float* gamma = ln_weight.data<float>();
  const float* beta = ln_bias.data<float>();
  // v'_i = v_i / N and β ⊙ Σ_i v'_i, once.
  std::vector<float> kv(size_t(n * d)), bsum(size_t(d), 0.0f);
  const float* K = keys.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < d; ++c) kv[size_t(i * d + c)] = K[i * d + c] / float(n);
  }
  for (int64_t c = 0; c < d; ++c) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += kv[size_t(i * d + c)];
    bsum[size_t(c)] = beta[c] * s;
  }

  Tensor out = empty({batch, positions, d}, DType::F32);
  float* X = out.data<float>();
  const int64_t shared = shared_prefix(ids, batch, n, positions);
  // Output rows to compute: the shared prefix of sequence 0, then every other (b, t).
  const int64_t own = positions - shared;
  const int64_t rows = shared + batch * own;
  parallel_for(rows, n * d * 8, [&](int64_t rb, int64_t re) {
    std::vector<float> u(static_cast<size_t>(d)), acc(static_cast<size_t>(d));
    for (int64_t r = rb; r < re; ++r) {
      const int64_t b = r < shared ? 0 : (r - shared) / own;
      const int64_t t = r < shared ? r : shared + (r - shared) % own;
      std::fill(acc.begin(), acc.end(), 0.0f);
      const float* pt = P + t * d;
      for (int64_t i = 0; i < n; ++i) {
        const float* wr = W + ids[size_t((b * n + i) * positions + t)] * d;
        float* up = u.data();
        for (int64_t c = 0; c < d; ++c) up[c] = wr[c] + pt[c];
        const double m = lane_sum(d, [up](int64_t c) { return double(up[c]); }) / double(d);
        const double var = lane_sum(d, [up, m](int64_t c) {
                             const double x = double(up[c]) - m;
                             return x * x;
                           }) / double(d);
        const float mf = float(m), rs = float(1.0 / std::sqrt(var + eps));
        const float* ki = kv.data() + i * d;
        float* ap = acc.data();
        for (int64_t c = 0; c < d; ++c) ap[c] += ki[c] * ((up[c] - mf) * rs);
      }
      float* xr = X + (b * positions + t) * d;
      for (int64_t c = 0; c < d; ++c) xr[c] = gamma[c] * acc[size_t(c)] + bsum[size_t(c)];
    }
  });
  // The shared prefix rows of sequence 0 go to every other sequence.
  for (int64_t b = 1; b < batch && shared > 0; ++b) {
    std::memcpy(X + b * positions * d, X, size_t(shared * d) * sizeof(float));
  }
  return out;
}

}  // namespace muxnet::mux
