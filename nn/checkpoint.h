// checkpoint.h — safetensors files: model weights, and the full training state for an exact resume.
//
// The format (https://github.com/huggingface/safetensors), as its reference writer produces it:
//   8 bytes   N, little-endian u64: the header size
//   N bytes   JSON object {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [2, 3],
//             "data_offsets": [begin, end]}, ...}, compact, padded with spaces to a multiple of 8
//   the rest  raw little-endian data; offsets are relative to the start of this data section
// Tensors are laid out by descending dtype (I64, F64, F32, I32: each stays aligned), then by name, and
// the header lists them in that order after "__metadata__" (omitted when there is none). A PyTorch
// state_dict saved with safetensors.torch.save_file loads here, and our files load there.
//
// Reading is defensive: a truncated or corrupt file (short file, absurd or oversized header size,
// invalid JSON, unknown dtype, bad shape or offsets, overlapping ranges, gaps, trailing bytes) raises
// muxnet::Error naming the file and the problem; nothing is read past the file or a buffer.
// Writing is atomic: the file is written to "<path>.tmp", fsync()ed, then rename()d over path, so a
// failure (full disk, crash) leaves any previous file at path untouched.
//
// What this is not: memory mapping (tensors are read into fresh memory or straight into the module's),
// the dtypes muxnet has no use for (F16, BF16, U8, BOOL, ...: rejected by name), or big-endian hosts.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "nn/optim.h"
#include "tensor/random.h"

namespace muxnet::nn {

using Metadata = std::map<std::string, std::string>;

// ---- low level: any named tensors ----
struct SafetensorsContents {
  std::vector<NamedTensor> tensors;  // in file (offset) order, contiguous CPU tensors
  Metadata metadata;
};
// Tensors may be any layout or device (written contiguous, in row-major order). Names must be unique
// and not "__metadata__".
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const Metadata& metadata = {});
SafetensorsContents read_safetensors(const std::string& path);

// ---- a module's parameters and buffers (module.state()), plus optional extra tensors ----
// Extra tensor names must not collide with the module's; their names are recorded in the metadata key
// "muxnet.extra_tensors" (a JSON list) so that loading can tell them from unexpected tensors.
void save_checkpoint(const std::string& path, const Module& module, const Metadata& metadata = {},
                     const std::vector<NamedTensor>& extra = {});

struct LoadedCheckpoint {
  Metadata metadata;               // everything in "__metadata__" except "muxnet.extra_tensors"
  std::vector<NamedTensor> extra;  // the extra tensors, in file order
  const Tensor& extra_tensor(const std::string& name) const;  // throws when absent
};
// Every module tensor must be in the file with the same dtype and shape, and every file tensor must be
// the module's or a recorded extra; otherwise nothing is loaded and the error lists each missing,
// unexpected or mismatched tensor with the expected and actual dtype and shape. Values are copied into
// the module's existing tensors (no-grad), so handles and packed arenas stay valid.
LoadedCheckpoint load_checkpoint(const std::string& path, Module& module);

// ---- training state for an exact resume ----
// Saves the module, the optimizer's state (tensors "optim.<param>.<state>", scalars as metadata
// "optim.<key>") and each named generator's (seed, offset) as metadata "rng.<name>.seed" and
// "rng.<name>.offset". Loading restores all three; it checks everything it can before changing
// anything. Returns the file's metadata (including the keys above).
void save_training_checkpoint(const std::string& path, const Module& module, const Optimizer& optimizer,
                              const std::vector<std::pair<std::string, const Generator*>>& generators = {},
                              const Metadata& metadata = {});
Metadata load_training_checkpoint(const std::string& path, Module& module, Optimizer& optimizer,
                                  const std::vector<std::pair<std::string, Generator*>>& generators = {});

// The pieces, for callers that build their own checkpoints.
void put_generator_state(Metadata& metadata, const std::string& name, const Generator& gen);
void get_generator_state(const Metadata& metadata, const std::string& name, Generator& gen);
// Doubles are written with 17 significant digits: they read back bit-exactly.
std::string format_double(double v);
double parse_double(const std::string& s, const std::string& what);

// ---- partial loading: warm-starting a model from a checkpoint of a related one ----
// Copies every file tensor whose name, dtype and shape match one of the module's tensors (no-grad, into
// the existing tensors, so handles and packed arenas stay valid); the rest of the module keeps its
// values (e.g. a fresh task head). Returns what happened to each name; throws only on an unreadable or
// corrupt file.
struct PartialLoad {
  std::vector<std::string> loaded;      // module tensors set from the file
  std::vector<std::string> fresh;       // module tensors the file has no match for (kept as they were)
  std::vector<std::string> mismatched;  // in both, but with another dtype or shape ("name: file ..., module ...")
  std::vector<std::string> unused;      // file tensors the module has no name for
  Metadata metadata;
};
PartialLoad load_matching(const std::string& path, Module& module);

}  // namespace muxnet::nn
