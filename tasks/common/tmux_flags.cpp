// tmux_flags.cpp — see tmux_flags.h.
#include "tasks/common/tmux_flags.h"

#include "tasks/common/cli.h"

namespace muxnet::tasks {

void add_tmux_arch_flags(CLI::App& app, TMuxArchFlags& f) {
  app.add_option("--d", f.d, "model width")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--heads", f.heads, "attention heads")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--ff", f.ff, "feed-forward width")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--layers", f.layers, "encoder layers")->check(tasks::kPositive)->capture_default_str();
  app.add_option("--dropout", f.dropout, "dropout")->check(CLI::Range(0.0, 0.9))->capture_default_str();
  app.add_option("--mux", f.mux, "gaussian_hadamard | binary_hadamard | random_ortho")
      ->check(CLI::IsMember({"gaussian_hadamard", "binary_hadamard", "random_ortho"}))
      ->capture_default_str();
  app.add_option("--key-norm", f.key_norm, "gaussian_hadamard key norm")->capture_default_str();
  app.add_option("--demux", f.demux, "index | mlp")->check(CLI::IsMember({"index", "mlp"}))->capture_default_str();
}

void apply_tmux_arch(const TMuxArchFlags& f, mux::TMuxConfig& c) {
  c.d_model = f.d;
  c.heads = f.heads;
  c.dim_feedforward = f.ff;
  c.layers = f.layers;
  c.dropout = f.dropout;
  c.mux = mux::parse_mux_kind(f.mux);
  c.key_norm = f.key_norm;
  c.demux = mux::parse_demux_kind(f.demux);
}

std::vector<int64_t> parse_n_list(const std::string& text) {
  std::vector<int64_t> ns = parse_int_list(text, "--n");
  for (int64_t n : ns) {
    if (n < 1 || n > 64) throw InputError("--n: each N must be in [1, 64], got " + std::to_string(n));
  }
  return ns;
}

}  // namespace muxnet::tasks
