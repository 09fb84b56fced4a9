// demultiplexer.cpp — the task demultiplexers (index and mlp; sequence and token level) and the
// retrieval head (PAPER.md §1.4, §1.5, §6), built from the differentiable functions and nn layers.
//
// The maths is the reference's (princeton-nlp/DataMUX models/multiplexing.py); only the evaluation
// order differs:
// - index: W1 [h_i ; h_t] is computed as W1a h_i + W1b h_t with W1a, W1b the two (d, d) column blocks
//   of dense_in.weight (d, 2d), taken as narrow() views (so their gradients land in the one weight).
//   That is N + T rows of GEMM instead of N·T, and the (B, N, T, 2d) concatenation is never built; the
//   sum is a broadcast add (B, N, 1, d) + (B, 1, T, d). b1 is added once, on the h_t side.
// - mlp: the N per-instance Linears are one GEMM against the stacked weight viewed as (N·d, d); each
//   instance's LayerNorm is layer_norm without affine followed by mul/add with its (N, d) rows.
// - RetrievalHead::forward only sends the B·L' queried rows (instance k[b, t] at position t) through
//   GELU / LN / decoder: index gathers instance k's W1a h_k row per (b, t) (index_select) and adds
//   W1b h_t + b1; mlp groups the rows by their instance (one GEMM per instance over its rows, N times
//   fewer flops than running every instance on every row) and puts them back in order before the
//   shared dense / norm / decoder. forward_all runs every instance at every position (evaluation).
//
// What this is not: dropout. The reference's index demuxer declares a dropout it never applies; its
// mlp demuxer applies dropout to h_t before W_i, which is left out here (the backbone's own dropout
// is unaffected). The retrieval head's queries k are sampled by the caller, not here.
// LayerNorm eps is 1e-5 everywhere (nn.LayerNorm's default, which the reference uses).
#include "mux/demultiplexer.h"

#include <cmath>
#include <vector>

#include "nn/init.h"

namespace muxnet::mux {

namespace {

constexpr double kLayerNormEps = 1e-5;

// h must be (B, L', d).
void check_hidden(const char* who, const Tensor& h, int64_t d) {
  MUXNET_CHECK(h.defined(), who, ": h is an undefined tensor");
  MUXNET_CHECK(h.ndim() == 3 && h.size(2) == d, who, ": expected h of shape (B, L', ", d, "), got ", h.shape());
}

// The index variants read h[:, i] for i < N (and h[:, N], the CLS slot): the prefix must be there.
void check_index_prefix(const char* who, const Tensor& h, int64_t n) {
  MUXNET_CHECK(h.size(1) >= n + 1, who, ": index demux needs L' >= N + 1 = ", n + 1,
               " positions (the index prefix), got h of shape ", h.shape());
}

// The (N, d, d) / (N, d) / (N, d) / (N, d) per-instance parameters of the mlp variants, initialised as
// N nn.Linear(d, d) (U(+-1/sqrt(d)) weight and bias) and N nn.LayerNorm(d) (ones, zeros).
struct InstanceParams {
  Tensor weight, bias, norm_weight, norm_bias;
};
InstanceParams init_instance_params(int64_t n, int64_t d, Generator* gen) {
  const double bound = 1.0 / std::sqrt(double(d));
  return {nn::uniform_init({n, d, d}, bound, gen), nn::uniform_init({n, d}, bound, gen), ones({n, d}),
          zeros({n, d})};
}

// u: (..., N, d) pre-activations of the N instances -> LN_i(GELU(u_i)) with instance i's affine rows.
Tensor instance_norm(const Tensor& u, const Tensor& norm_weight, const Tensor& norm_bias) {
  return add(mul(layer_norm(gelu(u), Tensor(), Tensor(), kLayerNormEps), norm_weight), norm_bias);
}

// x: (R, d) -> (R, N, d): every instance's W_i x + b_i, as ONE GEMM against the stacked weight
// viewed as (N·d, d) (rows i·d .. i·d+d-1 are W_i, as stack([W_0 .. W_{N-1}]).view(N·d, d)).
Tensor all_instances(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const int64_t n = weight.size(0), d = weight.size(1);
  Tensor y = linear(x, weight.view({n * d, d}), bias.view({n * d}));  // (..., N·d)
  Shape shape = x.shape();
  shape[shape.ndim() - 1] = n;
  shape.push_back(d);
  return y.view(shape);
}

// The rows of k (B, L') as a host vector, after checking k's shape, dtype and range.
std::vector<int64_t> checked_queries(const Tensor& k, const Tensor& h, int64_t n) {
  const char* who = "RetrievalHead";
  MUXNET_CHECK(k.defined(), who, ": k is an undefined tensor");
  MUXNET_CHECK(is_integral(k.dtype()), who, ": expected k of dtype i64 or i32, got ", k.dtype());
  MUXNET_CHECK(k.ndim() == 2 && k.size(0) == h.size(0) && k.size(1) == h.size(1), who,
               ": expected k of shape (B, L') = (", h.size(0), ", ", h.size(1), ") to match h ", h.shape(),
               ", got ", k.shape());
  std::vector<int64_t> kv = k.to_vector<int64_t>();
  const int64_t len = k.size(1);
  for (size_t r = 0; r < kv.size(); ++r) {
    MUXNET_CHECK(kv[r] >= 0 && kv[r] < n, who, ": k must be in [0, ", n, "), got ", kv[r], " at (",
                 int64_t(r) / len, ", ", int64_t(r) % len, ")");
  }
  return kv;
}

Tensor index_tensor(const std::vector<int64_t>& v, Device device) { return from_vector<int64_t>(v).to(device); }

}  // namespace

DemuxKind parse_demux_kind(const std::string& name) {
  if (name == "index") return DemuxKind::Index;
  if (name == "mlp") return DemuxKind::Mlp;
  MUXNET_FAIL("demux: unknown kind '", name, "' (expected index or mlp)");
}

const char* demux_kind_name(DemuxKind kind) { return kind == DemuxKind::Index ? "index" : "mlp"; }

// ---------------------------------------------------------------- Demultiplexer

Demultiplexer::Demultiplexer(const DemuxOptions& o, Generator* gen) : options(o) {
  MUXNET_CHECK(o.n >= 1, "Demultiplexer: n must be >= 1, got ", o.n);
  MUXNET_CHECK(o.dim > 0, "Demultiplexer: dim must be positive, got ", o.dim);
  MUXNET_CHECK(o.num_classes > 0, "Demultiplexer: num_classes must be positive, got ", o.num_classes);
  const int64_t d = o.dim;
  if (o.kind == DemuxKind::Index) {
    dense_in_ = register_module("dense_in", std::make_shared<nn::Linear>(2 * d, d, true, gen));
    norm_ = register_module("norm", std::make_shared<nn::LayerNorm>(d, kLayerNormEps));
    if (!o.token_level) dense_ = register_module("dense", std::make_shared<nn::Linear>(d, d, true, gen));
  } else {
    InstanceParams p = init_instance_params(o.n, d, gen);
    instance_weight_ = register_parameter("instance_weight", p.weight);
    instance_bias_ = register_parameter("instance_bias", p.bias);
    instance_norm_weight_ = register_parameter("instance_norm_weight", p.norm_weight);
    instance_norm_bias_ = register_parameter("instance_norm_bias", p.norm_bias);
    if (!o.token_level) {
      dense_ = register_module("dense", std::make_shared<nn::Linear>(d, d, true, gen));
      norm_ = register_module("norm", std::make_shared<nn::LayerNorm>(d, kLayerNormEps));
    }
  }
  out_proj_ = register_module("out_proj", std::make_shared<nn::Linear>(d, o.num_classes, true, gen));
}

// h: (B, L', d) -> sequence: (B·N, C); token: index (B·N, L'-N-1, C), mlp (B·N, L', C)
Tensor Demultiplexer::forward(const Tensor& h) const {
  const char* who = "Demultiplexer";
  const int64_t n = options.n, d = options.dim, c = options.num_classes;
  check_hidden(who, h, d);
  const int64_t batch = h.size(0), len = h.size(1);

  if (options.kind == DemuxKind::Index) {
    check_index_prefix(who, h, n);
    const Tensor& w = dense_in_->weight;  // (d, 2d) = [W1a | W1b]
    Tensor wa = w.narrow(1, 0, d), wb = w.narrow(1, d, d);
    // contiguous(): one GEMM over all B·N rows instead of B strided ones.
    Tensor a = linear(h.narrow(1, 0, n).contiguous(), wa, Tensor());  // (B, N, d): W1a h_i
    if (!options.token_level) {
      Tensor cls = linear(h.select(1, n), wb, dense_in_->bias);  // (B, d): W1b h_N + b1
      Tensor z = norm_->forward(gelu(add(a, cls.unsqueeze(1))));  // (B, N, d)
      Tensor y = out_proj_->forward(gelu(dense_->forward(z)));   // (B, N, C)
      return y.reshape({batch * n, c});
    }
    const int64_t t = len - n - 1;
    Tensor tok = linear(h.narrow(1, n + 1, t).contiguous(), wb, dense_in_->bias);  // (B, T, d): W1b h_t + b1
    Tensor u = add(a.unsqueeze(2), tok.unsqueeze(1));                               // (B, N, T, d)
    Tensor y = out_proj_->forward(norm_->forward(gelu(u)));                          // (B, N, T, C)
    return y.reshape({batch * n, t, c});
  }

  if (!options.token_level) {
    MUXNET_CHECK(len >= 1, who, ": mlp sequence demux reads position 0 (CLS), got h of shape ", h.shape());
    Tensor u = all_instances(h.select(1, 0), instance_weight_, instance_bias_);     // (B, N, d)
    Tensor z = instance_norm(u, instance_norm_weight_, instance_norm_bias_);        // (B, N, d)
    Tensor y = out_proj_->forward(norm_->forward(gelu(dense_->forward(z))));        // (B, N, C)
    return y.reshape({batch * n, c});
  }
  Tensor u = all_instances(h, instance_weight_, instance_bias_);                    // (B, L', N, d)
  Tensor y = out_proj_->forward(instance_norm(u, instance_norm_weight_, instance_norm_bias_));  // (B, L', N, C)
  // (B, L', N, C) -> (B, N, L', C): the permute copies the C-wide logits, the narrowest tensor here.
  return y.permute({0, 2, 1, 3}).reshape({batch * n, len, c});
}

// ---------------------------------------------------------------- RetrievalHead

RetrievalHead::RetrievalHead(DemuxKind k, int64_t n_, int64_t d, int64_t v, Generator* gen)
    : kind(k), n(n_), dim(d), vocab(v) {
  MUXNET_CHECK(n_ >= 1, "RetrievalHead: n must be >= 1, got ", n_);
  MUXNET_CHECK(d > 0, "RetrievalHead: dim must be positive, got ", d);
  MUXNET_CHECK(v > 0, "RetrievalHead: vocab must be positive, got ", v);
  if (k == DemuxKind::Index) {
    dense_in_ = register_module("dense_in", std::make_shared<nn::Linear>(2 * d, d, true, gen));
  } else {
    InstanceParams p = init_instance_params(n_, d, gen);
    instance_weight_ = register_parameter("instance_weight", p.weight);
    instance_bias_ = register_parameter("instance_bias", p.bias);
    instance_norm_weight_ = register_parameter("instance_norm_weight", p.norm_weight);
    instance_norm_bias_ = register_parameter("instance_norm_bias", p.norm_bias);
    dense_ = register_module("dense", std::make_shared<nn::Linear>(d, d, true, gen));
  }
  norm_ = register_module("norm", std::make_shared<nn::LayerNorm>(d, kLayerNormEps));
  decoder_ = register_module("decoder", std::make_shared<nn::Linear>(d, v, true, gen));
}

// h: (B, L', d); k: (B, L') i64 in [0, N) -> logits (B, L', vocab)
Tensor RetrievalHead::forward(const Tensor& h, const Tensor& k) const {
  const char* who = "RetrievalHead";
  check_hidden(who, h, dim);
  if (kind == DemuxKind::Index) check_index_prefix(who, h, n);
  const std::vector<int64_t> kv = checked_queries(k, h, n);
  const int64_t batch = h.size(0), len = h.size(1), rows = batch * len;

  Tensor z;  // (B·L', d): the queried instance's representation at every position, in row order b·L' + t
  if (kind == DemuxKind::Index) {
    const Tensor& w = dense_in_->weight;  // (d, 2d) = [W1a | W1b]
    Tensor a = linear(h.narrow(1, 0, n).contiguous(), w.narrow(1, 0, dim), Tensor());  // (B, N, d): W1a h_i
    std::vector<int64_t> pick(static_cast<size_t>(rows));  // row b·N + k[b, t] of a, for row b·L' + t
    for (int64_t r = 0; r < rows; ++r) pick[size_t(r)] = (r / len) * n + kv[size_t(r)];
    Tensor ak = index_select(a.view({batch * n, dim}), 0, index_tensor(pick, h.device()));  // (B·L', d)
    Tensor tok = linear(h, w.narrow(1, dim, dim), dense_in_->bias);                         // (B, L', d)
    z = norm_->forward(gelu(add(ak, tok.view({rows, dim}))));
  } else {
    // Group the rows by queried instance (a stable counting sort), run each instance's Linear over
    // its own rows, and put the rows back in order before the shared layers.
    std::vector<int64_t> start(size_t(n) + 1, 0);
    for (int64_t q : kv) ++start[size_t(q) + 1];
    for (int64_t i = 0; i < n; ++i) start[size_t(i) + 1] += start[size_t(i)];
    std::vector<int64_t> order(static_cast<size_t>(rows)), sorted_k(order.size()), inverse(order.size());
    {
      std::vector<int64_t> next(start.begin(), start.end() - 1);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t q = kv[size_t(r)], pos = next[size_t(q)]++;
        order[size_t(pos)] = r;
        sorted_k[size_t(pos)] = q;
        inverse[size_t(r)] = pos;
      }
    }
    Tensor hs = index_select(h.reshape({rows, dim}), 0, index_tensor(order, h.device()));  // (B·L', d) sorted
    std::vector<Tensor> parts;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t count = start[size_t(i) + 1] - start[size_t(i)];
      if (count == 0) continue;
      parts.push_back(linear(hs.narrow(0, start[size_t(i)], count), instance_weight_.select(0, i),
                             instance_bias_.select(0, i)));  // (count, d): W_i h_t + b_i
    }
    Tensor u = parts.empty() ? hs : parts.size() == 1 ? parts[0] : concat(parts, 0);  // (B·L', d) sorted
    Tensor ks = index_tensor(sorted_k, h.device());
    Tensor zs = add(mul(layer_norm(gelu(u), Tensor(), Tensor(), kLayerNormEps),
                        index_select(instance_norm_weight_, 0, ks)),
                    index_select(instance_norm_bias_, 0, ks));  // LN_k(GELU(W_k h_t + b_k)), sorted
    z = norm_->forward(gelu(dense_->forward(index_select(zs, 0, index_tensor(inverse, h.device())))));
  }
  return decoder_->forward(z).view({batch, len, vocab});
}

// h: (B, L', d) -> (B, N, L', vocab)
Tensor RetrievalHead::forward_all(const Tensor& h) const {
  const char* who = "RetrievalHead";
  check_hidden(who, h, dim);
  const int64_t batch = h.size(0), len = h.size(1);
  Tensor z;  // (B, N, L', d)
  if (kind == DemuxKind::Index) {
    check_index_prefix(who, h, n);
    const Tensor& w = dense_in_->weight;
    Tensor a = linear(h.narrow(1, 0, n).contiguous(), w.narrow(1, 0, dim), Tensor());  // (B, N, d)
    Tensor tok = linear(h, w.narrow(1, dim, dim), dense_in_->bias);                    // (B, L', d)
    z = norm_->forward(gelu(add(a.unsqueeze(2), tok.unsqueeze(1))));
  } else {
    Tensor u = all_instances(h, instance_weight_, instance_bias_);  // (B, L', N, d)
    // Instance-major before the decoder, so the vocab-wide logits come out in place, uncopied.
    Tensor zi = instance_norm(u, instance_norm_weight_, instance_norm_bias_).permute({0, 2, 1, 3}).contiguous();
    z = norm_->forward(gelu(dense_->forward(zi)));
  }
  return decoder_->forward(z).view({batch, n, len, vocab});
}

}  // namespace muxnet::mux
