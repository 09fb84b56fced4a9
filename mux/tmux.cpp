// tmux.cpp — T-MUX: prefixes, the double embedding, multiplexing, the encoder, heads and losses.
#include "mux/tmux.h"

#include <cmath>

#include "mux/embed_mux.h"
#include "tensor/ops.h"

namespace muxnet::mux {

namespace {

std::string format_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

const std::string& field(const std::map<std::string, std::string>& meta, const std::string& key) {
  auto it = meta.find("tmux." + key);
  MUXNET_CHECK(it != meta.end(), "TMuxConfig: checkpoint metadata has no tmux.", key);
  return it->second;
}

int64_t int_field(const std::map<std::string, std::string>& meta, const std::string& key) {
  const std::string& s = field(meta, key);
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    MUXNET_CHECK(used == s.size(), "");
    return int64_t(v);
  } catch (...) {
    MUXNET_FAIL("TMuxConfig: tmux.", key, " = '", s, "' is not an integer");
  }
}

double double_field(const std::map<std::string, std::string>& meta, const std::string& key) {
  const std::string& s = field(meta, key);
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    MUXNET_CHECK(used == s.size(), "");
    return v;
  } catch (...) {
    MUXNET_FAIL("TMuxConfig: tmux.", key, " = '", s, "' is not a number");
  }
}

}  // namespace

void TMuxConfig::validate() const {
  MUXNET_CHECK(vocab >= 1 && max_len >= 1 && n >= 1, "TMuxConfig: vocab, max_len and n must be >= 1, got ", vocab,
               ", ", max_len, ", ", n);
  MUXNET_CHECK(d_model >= 1 && heads >= 1 && d_model % heads == 0, "TMuxConfig: d_model ", d_model,
               " must be a positive multiple of heads ", heads);
  MUXNET_CHECK(layers >= 1 && dim_feedforward >= 1, "TMuxConfig: layers and dim_feedforward must be >= 1");
  MUXNET_CHECK(multiplex || n == 1, "TMuxConfig: multiplex = false needs n = 1, got n = ", n);
  MUXNET_CHECK(task == "retrieval" || task == "sequence" || task == "token", "TMuxConfig: task must be ",
               "retrieval, sequence or token, got '", task, "'");
  MUXNET_CHECK(task != "retrieval" || retrieval_coeff > 0, "TMuxConfig: the retrieval task needs retrieval_coeff > 0");
  MUXNET_CHECK(task == "retrieval" || num_classes >= 2, "TMuxConfig: num_classes must be >= 2, got ", num_classes);
  MUXNET_CHECK(pad_id >= -1 && pad_id < vocab, "TMuxConfig: pad_id ", pad_id, " out of range for vocab ", vocab);
  MUXNET_CHECK(demux == DemuxKind::Index || max_len >= 2, "TMuxConfig: the mlp demux overwrites position 0, so ",
               "max_len must be >= 2");
}

std::map<std::string, std::string> TMuxConfig::to_metadata() const {
  return {{"tmux.vocab", std::to_string(vocab)},
          {"tmux.max_len", std::to_string(max_len)},
          {"tmux.n", std::to_string(n)},
          {"tmux.d_model", std::to_string(d_model)},
          {"tmux.heads", std::to_string(heads)},
          {"tmux.dim_feedforward", std::to_string(dim_feedforward)},
          {"tmux.layers", std::to_string(layers)},
          {"tmux.dropout", format_number(dropout)},
          {"tmux.multiplex", multiplex ? "1" : "0"},
          {"tmux.reembed", reembed ? "1" : "0"},
          {"tmux.mux", mux_kind_name(mux)},
          {"tmux.learned_keys", learned_keys ? "1" : "0"},
          {"tmux.key_norm", format_number(key_norm)},
          {"tmux.mux_epsilon", format_number(mux_epsilon)},
          {"tmux.demux", demux_kind_name(demux)},
          {"tmux.task", task},
          {"tmux.num_classes", std::to_string(num_classes)},
          {"tmux.task_coeff", format_number(task_coeff)},
          {"tmux.retrieval_coeff", format_number(retrieval_coeff)},
          {"tmux.pad_id", std::to_string(pad_id)}};
}

TMuxConfig TMuxConfig::from_metadata(const std::map<std::string, std::string>& meta) {
  TMuxConfig c;
  c.vocab = int_field(meta, "vocab");
  c.max_len = int_field(meta, "max_len");
  c.n = int_field(meta, "n");
  c.d_model = int_field(meta, "d_model");
  c.heads = int_field(meta, "heads");
  c.dim_feedforward = int_field(meta, "dim_feedforward");
  c.layers = int_field(meta, "layers");
  c.dropout = double_field(meta, "dropout");
  c.multiplex = int_field(meta, "multiplex") != 0;
  c.reembed = int_field(meta, "reembed") != 0;
  c.mux = parse_mux_kind(field(meta, "mux"));
  c.learned_keys = int_field(meta, "learned_keys") != 0;
  c.key_norm = double_field(meta, "key_norm");
  c.mux_epsilon = double_field(meta, "mux_epsilon");
  c.demux = parse_demux_kind(field(meta, "demux"));
  c.task = field(meta, "task");
  c.num_classes = int_field(meta, "num_classes");
  c.task_coeff = double_field(meta, "task_coeff");
  c.retrieval_coeff = double_field(meta, "retrieval_coeff");
  c.pad_id = int_field(meta, "pad_id");
  c.validate();
  return c;
}

TMux::TMux(const TMuxConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  const int64_t d = config.d_model;
  word = register_module("word", std::make_shared<nn::Embedding>(config.embedding_rows(), d, -1, gen));
  pos = register_module("pos", std::make_shared<nn::PositionalEmbedding>(config.seq_len(), d, gen));
  {
    // NOTE: embeddings start at N(0, 0.02), as BERT/RoBERTa's initializer_range (the reference's
    // backbone), not N(0, 1) as torch.nn.Embedding. It matters: the re-embedding adds the position
    // table to the mixture, whose per-instance part shrinks like 1/sqrt(N); N(0, 1) positions drown it
    // and retrieval at N = 20 never leaves chance (measured: 12000 steps at 1% accuracy).
    NoGradGuard no_grad;
    word->weight.copy_(randn(word->weight.shape(), DType::F32, gen, 0.0, 0.02));
    pos->weight.copy_(randn(pos->weight.shape(), DType::F32, gen, 0.0, 0.02));
  }
  emb_norm = register_module("emb_norm", std::make_shared<nn::LayerNorm>(d));
  emb_dropout = register_module("emb_dropout", std::make_shared<nn::Dropout>(config.dropout));
  if (config.multiplex) {
    MuxOptions mo;
    mo.kind = config.mux;
    mo.n = config.n;
    mo.dim = d;
    mo.learned = config.learned_keys;
    mo.norm = config.key_norm;
    mo.epsilon = config.mux_epsilon;
    mux = register_module("mux", std::make_shared<Multiplexer>(mo, gen));
  }
  nn::TransformerEncoderLayerOptions lo;
  lo.d_model = d;
  lo.heads = config.heads;
  lo.dim_feedforward = config.dim_feedforward;
  lo.dropout = config.dropout;
  lo.activation = nn::Activation::Gelu;
  encoder = register_module("encoder", std::make_shared<nn::TransformerEncoder>(lo, config.layers, gen));
  if (config.task != "retrieval") {
    DemuxOptions dm;
    dm.kind = config.demux;
    dm.n = config.n;
    dm.dim = d;
    dm.num_classes = config.num_classes;
    dm.token_level = config.task == "token";
    demux = register_module("demux", std::make_shared<Demultiplexer>(dm, gen));
  }
  if (config.task == "retrieval" || config.retrieval_coeff > 0) {
    retrieval = register_module("retrieval", std::make_shared<RetrievalHead>(config.demux, config.n, d, config.vocab, gen));
  }
}

Tensor TMux::prefixed_ids(const Tensor& ids) const {
  MUXNET_CHECK(ids.ndim() == 2 && is_integral(ids.dtype()), "TMux: expected ids of shape (B·N, L) with an integer ",
               "dtype, got ", ids.shape(), " ", ids.dtype());
  MUXNET_CHECK(ids.size(1) == config.max_len, "TMux: ids have length ", ids.size(1), ", the model was built for ",
               config.max_len);
  MUXNET_CHECK(ids.size(0) % config.n == 0, "TMux: ", ids.size(0), " rows do not group into mixed sequences of N = ",
               config.n, " instances");
  const int64_t rows = ids.size(0), L = config.max_len, P = config.prefix_len(), Lp = config.seq_len();
  std::vector<int64_t> in = ids.to_vector<int64_t>();
  for (size_t k = 0; k < in.size(); ++k) {
    MUXNET_CHECK(in[k] >= 0 && in[k] < config.vocab, "TMux: token id ", in[k], " at (", int64_t(k) / L, ", ",
                 int64_t(k) % L, ") is outside the vocabulary [0, ", config.vocab, ")");
  }
  std::vector<int64_t> out(size_t(rows * Lp));
  for (int64_t r = 0; r < rows; ++r) {
    int64_t* o = out.data() + r * Lp;
    if (config.demux == DemuxKind::Index) {
      // [p_0 .. p_{N-1}, CLS]: instance i's own index token at slot i, the fill token elsewhere.
      const int64_t i = r % config.n;
      for (int64_t j = 0; j < config.n; ++j) o[j] = j == i ? config.index_id(j) : config.fill_id();
      o[config.n] = config.cls_id();
    }
    for (int64_t t = 0; t < L; ++t) o[P + t] = in[size_t(r * L + t)];
    if (config.demux == DemuxKind::Mlp) o[0] = config.cls_id();
  }
  return from_vector<int64_t>(out, {rows, Lp}).to(ids.device());  // built on the host, used where ids live
}

Tensor TMux::embed(const Tensor& ids) const {
  // e = LN(word[ids] + pos[0:L']), the reference's roberta.embeddings
  return emb_dropout->forward(emb_norm->forward(pos->forward(word->forward(ids))));
}

Tensor TMux::encode(const Tensor& ids) const {
  Tensor x;
  const bool hadamard = mux && mux->options.kind != MuxKind::RandomOrtho;
  const bool no_dropout = config.dropout == 0.0 || !is_training();
  if (!grad_enabled() && hadamard && no_dropout && word->weight.device() == Device::CPU &&
      word->weight.dtype() == DType::F32) {
    // Inference: embedding + LayerNorm + multiplexer in one pass (mux/embed_mux.h), same maths.
    x = hadamard_embed_mux(prefixed_ids(ids).to_vector<int64_t>(), config.n, config.seq_len(), word->weight,
                           pos->weight, emb_norm->weight, emb_norm->bias, emb_norm->eps, mux->keys);
    if (config.reembed) x = emb_norm->forward(pos->forward(x));
    return encoder->forward(x);
  }
  Tensor e = embed(prefixed_ids(ids));  // (B·N, L', d)
  x = e;
  if (mux) {
    x = mux->forward(e);  // (B, L', d)
    if (config.reembed) x = emb_dropout->forward(emb_norm->forward(pos->forward(x)));
  }
  return encoder->forward(x);
}

TMuxOutput TMux::forward(const Tensor& ids, const Tensor& labels, Generator* k_gen) const {
  TMuxOutput out;
  Tensor h = encode(ids);  // (B, L', d)
  const int64_t B = h.size(0), Lp = h.size(1), P = config.prefix_len();
  Tensor loss;
  if (demux) {
    MUXNET_CHECK(labels.defined(), "TMux: the ", config.task, " task needs labels");
    out.task_logits = demux->forward(h);
    Tensor lab = labels;
    if (config.task == "token") {
      MUXNET_CHECK(labels.shape() == ids.shape(), "TMux: token labels have shape ", labels.shape(), ", expected ",
                   ids.shape());
      if (config.demux == DemuxKind::Mlp) {
        lab = labels.clone();  // position 0 holds CLS in the mlp variant: its label is not predictable
        NoGradGuard no_grad;
        lab.narrow(1, 0, 1).fill_(-100);
      }
    } else {
      MUXNET_CHECK(labels.shape() == Shape{ids.size(0)}, "TMux: sequence labels have shape ", labels.shape(),
                   ", expected (", ids.size(0), ",)");
    }
    out.task_loss = cross_entropy(out.task_logits, lab);
    loss = config.task_coeff * out.task_loss;
  }
  if (retrieval) {
    // k[b, t] ~ U{0..N-1}: one instance is queried per position; the target is its token there.
    // k is drawn on the host (the targets are built there) and moved to h's device once.
    Tensor k_host = randint(0, config.n, {B, Lp}, DType::I64, k_gen);
    std::vector<int64_t> kv = k_host.to_vector<int64_t>();
    std::vector<int64_t> idv = prefixed_ids(ids.to(Device::CPU)).to_vector<int64_t>();
    std::vector<int64_t> target(size_t(B * Lp), -100);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < Lp; ++t) {
        if (t < P || (config.demux == DemuxKind::Mlp && t == 0)) continue;  // prefix / CLS slots
        int64_t tok = idv[size_t((b * config.n + kv[size_t(b * Lp + t)]) * Lp + t)];
        if (tok != config.pad_id) target[size_t(b * Lp + t)] = tok;
      }
    }
    const Tensor k = k_host.to(h.device());
    out.instance = k;
    out.retrieval_targets = from_vector<int64_t>(target, {B, Lp}).to(h.device());
    out.retrieval_logits = retrieval->forward(h, k);
    out.retrieval_loss = cross_entropy(out.retrieval_logits, out.retrieval_targets);
    Tensor r = config.retrieval_coeff * out.retrieval_loss;
    loss = loss.defined() ? loss + r : r;
  }
  out.loss = loss;
  return out;
}

Tensor TMux::retrieve_all(const Tensor& ids) const {
  MUXNET_CHECK(retrieval != nullptr, "TMux::retrieve_all: this model has no retrieval head");
  NoGradGuard no_grad;
  Tensor h = encode(ids);
  const int64_t B = h.size(0), N = config.n, Lp = h.size(1), P = config.prefix_len();
  Tensor pred = ops::argmax(retrieval->forward_all(h), -1);  // (B, N, L')
  Tensor out = pred.reshape({B * N, Lp}).narrow(1, P, config.max_len).contiguous();
  if (config.demux == DemuxKind::Mlp) out.narrow(1, 0, 1).fill_(-1);
  return out;
}

Tensor TMux::predict(const Tensor& ids) const {
  MUXNET_CHECK(demux != nullptr, "TMux::predict: the retrieval task has no task head");
  NoGradGuard no_grad;
  return ops::argmax(demux->forward(encode(ids)), -1);
}

}  // namespace muxnet::mux
