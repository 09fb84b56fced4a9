// embed_mux.cpp — the fused inference embedding + Hadamard multiplexer (see embed_mux.h).
#include "mux/embed_mux.h"

#include <cmath>
#include <cstring>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "tensor/check.h"
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

// acc += k ⊙ (u - mean(u)) / sqrt(var(u) + eps) with u = w + p (u is written to `u`): one instance's
// normalised row into the mixture. Biased variance over two passes, as the LayerNorm kernel; the
// sums are in float (d = 256 values of similar size: ~1e-7 relative, below the output's rounding).
void add_normalized(const float* w, const float* p, const float* k, float* u, float* acc, int64_t d, double eps) {
#if defined(__AVX2__) && defined(__FMA__)
  if (d % 32 == 0) {  // four independent 8-lane accumulators keep the add chains short
    auto hsum = [](__m256 v) {
      __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
      x = _mm_add_ps(x, _mm_movehl_ps(x, x));
      return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
    };
    __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t c = 0; c < d; c += 32) {
      for (int j = 0; j < 4; ++j) {
        __m256 x = _mm256_add_ps(_mm256_loadu_ps(w + c + 8 * j), _mm256_loadu_ps(p + c + 8 * j));
        _mm256_storeu_ps(u + c + 8 * j, x);
        s[j] = _mm256_add_ps(s[j], x);
      }
    }
    const __m256 mean = _mm256_set1_ps(hsum(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3]))) / float(d));
    for (int j = 0; j < 4; ++j) s[j] = _mm256_setzero_ps();
    for (int64_t c = 0; c < d; c += 32) {
      for (int j = 0; j < 4; ++j) {
        __m256 x = _mm256_sub_ps(_mm256_loadu_ps(u + c + 8 * j), mean);
        s[j] = _mm256_fmadd_ps(x, x, s[j]);
      }
    }
    const float var = hsum(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3]))) / float(d);
    const __m256 rstd = _mm256_set1_ps(float(1.0 / std::sqrt(double(var) + eps)));
    for (int64_t c = 0; c < d; c += 8) {
      __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(u + c), mean), rstd);
      _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(_mm256_loadu_ps(k + c), x, _mm256_loadu_ps(acc + c)));
    }
    return;
  }
#endif
  double sum = 0.0, sq = 0.0;
  for (int64_t c = 0; c < d; ++c) {
    u[c] = w[c] + p[c];
    sum += double(u[c]);
  }
  const float m = float(sum / double(d));
  for (int64_t c = 0; c < d; ++c) sq += double(u[c] - m) * double(u[c] - m);
  const float rs = float(1.0 / std::sqrt(sq / double(d) + eps));
  for (int64_t c = 0; c < d; ++c) acc[c] += k[c] * ((u[c] - m) * rs);
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
      const int64_t* row_ids = ids.data() + b * n * positions + t;  // instance i's token: row_ids[i * positions]
      for (int64_t i = 0; i < n; ++i) {
        const float* wr = W + row_ids[i * positions] * d;
        if (i + 2 < n) {  // the table rows are scattered: fetch instance i + 2's row while this one runs
          const float* next = W + row_ids[(i + 2) * positions] * d;
          for (int64_t c = 0; c < d; c += 16) __builtin_prefetch(next + c);
        }
        add_normalized(wr, pt, kv.data() + i * d, u.data(), acc.data(), d, eps);
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
