// tmux_flags.h — the T-MUX architecture flags the text tasks share (retrieval, sst2, ner), and --n.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "mux/tmux.h"

namespace muxnet::tasks {

struct TMuxArchFlags {
  int64_t d = 128, heads = 4, ff = 512, layers = 2;
  double dropout = 0.0;
  std::string mux = "gaussian_hadamard", demux = "index";
  double key_norm = 20.0;
};

// --d --heads --ff --layers --dropout --mux --key-norm --demux, with f's values as the defaults.
void add_tmux_arch_flags(CLI::App& app, TMuxArchFlags& f);
// Sets the architecture fields of c (d_model, heads, dim_feedforward, layers, dropout, mux, key_norm, demux).
void apply_tmux_arch(const TMuxArchFlags& f, mux::TMuxConfig& c);

// --n: "2,5,10" -> {2, 5, 10}; InputError unless every N is in [1, 64].
std::vector<int64_t> parse_n_list(const std::string& text);

}  // namespace muxnet::tasks
