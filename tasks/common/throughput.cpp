// throughput.cpp — analytic FLOPs of sentence classification and the plain classifier.
#include "tasks/common/throughput.h"

#include "tensor/ops.h"

namespace muxnet::tasks {

double backbone_flops(const ClsShape& s, int64_t positions, int64_t batch) {
  const double T = double(positions), d = double(s.d), f = double(s.ff);
  return double(batch) * double(s.layers) * (8 * T * d * d + 4 * T * d * f + 4 * T * T * d);
}

double cls_pass_flops(const ClsShape& s, int64_t n, int64_t batch, bool plain, bool factored) {
  const double B = double(batch), d = double(s.d), C = double(s.classes), N = double(n);
  if (plain) return backbone_flops(s, s.len, batch) + B * (2 * d * d + 2 * d * C);
  const double demux_in = factored ? B * (N + 1) * 2 * d * d : B * N * 4 * d * d;  // W1 [h_i ; h_N]
  return backbone_flops(s, s.len + n + 1, batch) + demux_in + B * N * (2 * d * d + 2 * d * C);
}

double cls_flops_per_instance(const ClsShape& s, int64_t n, bool plain) {
  const int64_t instances = plain ? 1 : n;  // per sequence; the batch cancels
  return cls_pass_flops(s, n, 1, plain) / double(instances);
}

double cls_ceiling(const ClsShape& s, int64_t n, bool ref_plain) {
  const double ref = ref_plain ? cls_flops_per_instance(s, 1, true) : cls_flops_per_instance(s, 1, false);
  return ref / cls_flops_per_instance(s, n, false);
}

PlainClassifier::PlainClassifier(int64_t vocab_size, const ClsShape& s, int64_t heads, Generator* gen)
    : vocab(vocab_size), shape(s) {
  MUXNET_CHECK(vocab_size >= 1 && s.len >= 1 && s.classes >= 2, "PlainClassifier: vocab ", vocab_size,
               ", length ", s.len, " and classes ", s.classes, " must be >= 1, >= 1, >= 2");
  word = register_module("word", std::make_shared<nn::Embedding>(vocab + 2, s.d, -1, gen));
  pos = register_module("pos", std::make_shared<nn::PositionalEmbedding>(s.len, s.d, gen));
  {
    NoGradGuard no_grad;  // N(0, 0.02) as BERT, like T-MUX's tables (mux/tmux.cpp says why)
    word->weight.copy_(randn(word->weight.shape(), DType::F32, gen, 0.0, 0.02));
    pos->weight.copy_(randn(pos->weight.shape(), DType::F32, gen, 0.0, 0.02));
  }
  emb_norm = register_module("emb_norm", std::make_shared<nn::LayerNorm>(s.d));
  nn::TransformerEncoderLayerOptions lo;
  lo.d_model = s.d;
  lo.heads = heads;
  lo.dim_feedforward = s.ff;
  lo.dropout = 0.0;
  lo.activation = nn::Activation::Gelu;
  encoder = register_module("encoder", std::make_shared<nn::TransformerEncoder>(lo, s.layers, gen));
  pool = register_module("pool", std::make_shared<nn::Linear>(s.d, s.d, true, gen));
  out_proj = register_module("out_proj", std::make_shared<nn::Linear>(s.d, s.classes, true, gen));
}

Tensor PlainClassifier::forward(const Tensor& ids) const {
  MUXNET_CHECK(ids.ndim() == 2 && is_integral(ids.dtype()) && ids.size(1) == shape.len,
               "PlainClassifier: expected integer ids of shape (B, ", shape.len, "), got ", ids.shape(), " ",
               ids.dtype());
  Tensor h = encoder->forward(emb_norm->forward(pos->forward(word->forward(ids))));  // (B, L, d)
  return out_proj->forward(tanh(pool->forward(h.select(1, 0))));                    // (B, C)
}

Tensor PlainClassifier::predict(const Tensor& ids) const {
  NoGradGuard no_grad;
  return ops::argmax(forward(ids), -1);
}

}  // namespace muxnet::tasks
