// checkpoint.cpp — safetensors reading and writing, module checkpoints, training state (see checkpoint.h).
#include "nn/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tensor/grad_mode.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; so is this host");

namespace muxnet::nn {

namespace {

constexpr uint64_t kMaxHeaderSize = 100000000;  // the reference reader's limit
constexpr const char* kExtraKey = "muxnet.extra_tensors";
constexpr const char* kOptimPrefix = "optim.";

const char* st_dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    default: MUXNET_FAIL("safetensors: unsupported dtype ", d);
  }
}

bool parse_st_dtype(const std::string& s, DType& out) {
  if (s == "F32") out = DType::F32;
  else if (s == "F64") out = DType::F64;
  else if (s == "I32") out = DType::I32;
  else if (s == "I64") out = DType::I64;
  else return false;
  return true;
}

// The reference writer orders data by descending dtype in its enum (..., I32, U32, F32, F64, I64, U64).
int dtype_rank(DType d) {
  switch (d) {
    case DType::I64: return 3;
    case DType::F64: return 2;
    case DType::F32: return 1;
    default: return 0;  // I32
  }
}

std::string os_error() { return std::strerror(errno); }

// Closes the descriptor on every path out.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

void read_exact(int fd, void* dst, uint64_t n, uint64_t offset, const char* who, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const size_t chunk = size_t(std::min<uint64_t>(n, uint64_t(1) << 30));
    const ssize_t r = ::pread(fd, p, chunk, off_t(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      MUXNET_FAIL(who, ": '", path, "': read failed: ", os_error());
    }
    MUXNET_CHECK(r > 0, who, ": '", path, "': unexpected end of file at byte ", offset, " (file changed while reading?)");
    p += r;
    n -= uint64_t(r);
    offset += uint64_t(r);
  }
}

void write_all(int fd, const void* src, uint64_t n, const char* who, const std::string& path) {
  const char* p = static_cast<const char*>(src);
  while (n > 0) {
    const size_t chunk = size_t(std::min<uint64_t>(n, uint64_t(1) << 30));
    const ssize_t w = ::write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      MUXNET_FAIL(who, ": writing '", path, "' failed: ", os_error());
    }
    MUXNET_CHECK(w > 0, who, ": writing '", path, "' made no progress");
    p += w;
    n -= uint64_t(w);
  }
}

// ---------------------------------------------------------------- reading the header

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // in the data section
};

struct Header {
  std::vector<Entry> entries;  // sorted by offset
  Metadata metadata;
  uint64_t data_start = 0, data_size = 0;
};

std::string offsets_str(uint64_t b, uint64_t e) { return detail::concat("[", b, ", ", e, "]"); }

Header parse_header(int fd, const char* who, const std::string& path) {
  auto fail = [&](const auto&... parts) -> void { throw Error(detail::concat(who, ": '", path, "': ", parts...)); };
  struct stat st;
  if (::fstat(fd, &st) != 0) fail("cannot stat: ", os_error());
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) fail("not a safetensors file: ", size, " bytes, fewer than the 8-byte header size");
  unsigned char le[8];
  read_exact(fd, le, 8, 0, who, path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | le[i];
  if (n > kMaxHeaderSize) fail("header size ", n, " is absurd (the format's limit is ", kMaxHeaderSize, " bytes)");
  if (n > size - 8) fail("header size ", n, " exceeds the ", size - 8, " bytes after the size field (truncated file?)");
  std::string text(size_t(n), '\0');
  read_exact(fd, text.data(), n, 8, who, path);

  // NOTE: nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows it.
  const size_t nul = text.find('\0');
  if (nul != std::string::npos) fail("header is not valid JSON (NUL byte at header offset ", nul, ")");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("header is not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail("header is not a JSON object");

  Header h;
  h.data_start = 8 + n;
  h.data_size = size - 8 - n;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail("\"__metadata__\" is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("\"__metadata__\" value of '", m.key(), "' is not a string: ", m.value().dump());
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tn = "tensor '" + key + "'";
    if (!v.is_object()) fail(tn, ": entry is not an object: ", v.dump());
    auto d = v.find("dtype");
    if (d == v.end() || !d->is_string()) fail(tn, ": \"dtype\" is missing or not a string");
    Entry e;
    e.name = key;
    const std::string dname = d->get<std::string>();
    if (!parse_st_dtype(dname, e.dtype)) fail(tn, ": unsupported dtype '", dname, "' (muxnet reads F32, F64, I32, I64)");
    auto s = v.find("shape");
    if (s == v.end() || !s->is_array()) fail(tn, ": \"shape\" is missing or not an array");
    if (s->size() > size_t(kMaxDims)) fail(tn, ": shape ", s->dump(), " has ", s->size(), " dims, muxnet supports at most ", kMaxDims);
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& dim : *s) {
      if (!dim.is_number_unsigned()) fail(tn, ": shape ", s->dump(), " is not a list of non-negative integers");
      const uint64_t x = dim.get<uint64_t>();
      overflow = overflow || x > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, x, &numel);
      e.shape.push_back(int64_t(x & uint64_t(INT64_MAX)));
    }
    uint64_t nbytes = 0;
    overflow = overflow || numel > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dtype_size(e.dtype), &nbytes);
    if (overflow) fail(tn, ": shape ", s->dump(), " is too large");
    auto o = v.find("data_offsets");
    if (o == v.end() || !o->is_array() || o->size() != 2 || !(*o)[0].is_number_unsigned() ||
        !(*o)[1].is_number_unsigned()) {
      fail(tn, ": \"data_offsets\" must be two non-negative integers, got ", o == v.end() ? "nothing" : o->dump());
    }
    e.begin = (*o)[0].get<uint64_t>();
    e.end = (*o)[1].get<uint64_t>();
    const std::string os = offsets_str(e.begin, e.end);
    if (e.end < e.begin) fail(tn, ": data_offsets ", os, " end before they begin");
    if (e.end > h.data_size) fail(tn, ": data_offsets ", os, " extend past the data section (", h.data_size, " bytes)");
    if (e.end - e.begin != nbytes) {
      fail(tn, ": data_offsets ", os, " hold ", e.end - e.begin, " bytes, but ", dname, " ", e.shape, " needs ", nbytes);
    }
    h.entries.push_back(std::move(e));
  }
  // The ranges must tile the data section exactly, as the reference reader requires.
  std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end != b.end ? a.end < b.end : a.name < b.name;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : h.entries) {
    if (e.begin < pos) {
      fail("tensors '", prev->name, "' ", offsets_str(prev->begin, prev->end), " and '", e.name, "' ",
           offsets_str(e.begin, e.end), " overlap");
    }
    if (e.begin > pos) fail("bytes [", pos, ", ", e.begin, ") of the data section belong to no tensor");
    pos = e.end;
    prev = &e;
  }
  if (pos != h.data_size) {
    fail("the tensors end at byte ", pos, " of the ", h.data_size, "-byte data section (trailing bytes)");
  }
  return h;
}

Fd open_for_reading(const char* who, const std::string& path) {
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  MUXNET_CHECK(f.fd >= 0, who, ": cannot open '", path, "': ", os_error());
  return Fd(std::exchange(f.fd, -1));
}

Tensor read_entry(int fd, const Header& h, const Entry& e, const char* who, const std::string& path) {
  Tensor t = empty(e.shape, e.dtype);
  if (e.end > e.begin) read_exact(fd, t.data_ptr(), e.end - e.begin, h.data_start + e.begin, who, path);
  return t;
}

// Reads the entry into dst (same dtype and shape): straight into its memory when it is a contiguous CPU
// tensor, else through a temporary.
void read_entry_into(int fd, const Header& h, const Entry& e, const Tensor& dst, const char* who,
                     const std::string& path) {
  if (e.end == e.begin) return;
  if (dst.is_contiguous() && dst.device() == Device::CPU) {
    read_exact(fd, dst.data_ptr(), e.end - e.begin, h.data_start + e.begin, who, path);
    return;
  }
  dst.copy_(read_entry(fd, h, e, who, path).to(dst.device()));
}

// ---------------------------------------------------------------- writing

void write_file(const char* who, const std::string& path, const std::vector<NamedTensor>& tensors,
                const Metadata& metadata) {
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    MUXNET_CHECK(name != "__metadata__", who, ": a tensor cannot be named \"__metadata__\"");
    MUXNET_CHECK(names.insert(name).second, who, ": tensor name '", name, "' appears twice");
    MUXNET_CHECK(t.defined(), who, ": tensor '", name, "' is undefined");
  }
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int ra = dtype_rank(tensors[a].second.dtype()), rb = dtype_rank(tensors[b].second.dtype());
    return ra != rb ? ra > rb : tensors[a].first < tensors[b].first;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (int64_t d : t.shape()) shape.push_back(d);
    const uint64_t nbytes = uint64_t(t.numel()) * t.element_size();
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = st_dtype_name(t.dtype());
    entry["shape"] = shape;
    entry["data_offsets"] = nlohmann::ordered_json::array({offset, offset + nbytes});
    header[tensors[i].first] = entry;
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    MUXNET_FAIL(who, ": '", path, "': a tensor name or metadata string is not valid UTF-8 (", e.what(), ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = (uint64_t(text.size()) >> (8 * i)) & 0xff;

  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MUXNET_CHECK(fd >= 0, who, ": cannot create '", tmp, "': ", os_error());
  try {
    write_all(fd, le, 8, who, tmp);
    write_all(fd, text.data(), text.size(), who, tmp);
    NoGradGuard no_grad;
    for (size_t i : order) {
      const Tensor& t = tensors[i].second;
      if (t.numel() == 0) continue;
      Tensor c = t.detach().to(Device::CPU).contiguous();
      write_all(fd, c.data_ptr(), uint64_t(c.numel()) * c.element_size(), who, tmp);
    }
    // The data must be on disk before the rename makes it the checkpoint.
    MUXNET_CHECK(::fsync(fd) == 0, who, ": fsync of '", tmp, "' failed: ", os_error());
    const int rc = ::close(fd);
    fd = -1;
    MUXNET_CHECK(rc == 0, who, ": closing '", tmp, "' failed: ", os_error());
    MUXNET_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, who, ": renaming '", tmp, "' to '", path,
                 "' failed: ", os_error());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Persist the rename itself (best effort: some file systems refuse fsync on a directory).
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

// ---------------------------------------------------------------- loading into a module

struct LoadPlan {
  Header header;
  std::vector<std::pair<const Entry*, Tensor>> module_reads;  // file entry -> module tensor
  std::vector<const Entry*> extras;
  Metadata metadata;  // without kExtraKey
};

std::string dtype_shape(DType d, const Shape& s) { return detail::concat(d, " ", s); }

// Checks the file against the module without changing anything.
LoadPlan plan_load(int fd, const char* who, const std::string& path, const Module& module) {
  LoadPlan plan;
  plan.header = parse_header(fd, who, path);
  plan.metadata = plan.header.metadata;
  std::set<std::string> extra_names;
  auto ex = plan.metadata.find(kExtraKey);
  if (ex != plan.metadata.end()) {
    nlohmann::json list = nlohmann::json::parse(ex->second, nullptr, false);
    bool ok = list.is_array();
    if (ok) {
      for (const auto& n : list) ok = ok && n.is_string();
    }
    MUXNET_CHECK(ok, who, ": '", path, "': metadata '", kExtraKey, "' is not a JSON list of names");
    for (const auto& n : list) extra_names.insert(n.get<std::string>());
    plan.metadata.erase(ex);
  }
  std::map<std::string, const Entry*> by_name;
  for (const Entry& e : plan.header.entries) by_name[e.name] = &e;

  std::vector<std::string> problems;
  std::set<std::string> module_names;
  for (const auto& [name, t] : module.state()) {
    module_names.insert(name);
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      problems.push_back(detail::concat("missing tensor '", name, "' (the module has ", dtype_shape(t.dtype(), t.shape()), ")"));
      continue;
    }
    const Entry& e = *it->second;
    if (e.dtype != t.dtype() || e.shape != t.shape()) {
      problems.push_back(detail::concat("tensor '", name, "': the module has ", dtype_shape(t.dtype(), t.shape()),
                                        ", the file ", dtype_shape(e.dtype, e.shape)));
      continue;
    }
    plan.module_reads.emplace_back(&e, t);
  }
  for (const Entry& e : plan.header.entries) {
    if (module_names.count(e.name)) continue;
    if (extra_names.count(e.name)) {
      plan.extras.push_back(&e);
    } else {
      problems.push_back(detail::concat("unexpected tensor '", e.name, "' (", dtype_shape(e.dtype, e.shape),
                                        ") is not in the module"));
    }
  }
  for (const std::string& n : extra_names) {
    if (!by_name.count(n)) problems.push_back(detail::concat("extra tensor '", n, "' is listed but not in the file"));
  }
  if (!problems.empty()) {
    std::string msg = detail::concat(who, ": '", path, "' does not match the module: ");
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw Error(msg);
  }
  return plan;
}

void read_module(int fd, const LoadPlan& plan, const char* who, const std::string& path) {
  NoGradGuard no_grad;
  for (const auto& [e, t] : plan.module_reads) read_entry_into(fd, plan.header, *e, t, who, path);
}

std::vector<NamedTensor> read_extras(int fd, const LoadPlan& plan, const char* who, const std::string& path) {
  std::vector<NamedTensor> out;
  for (const Entry* e : plan.extras) out.emplace_back(e->name, read_entry(fd, plan.header, *e, who, path));
  return out;
}

uint64_t parse_u64(const Metadata& md, const std::string& key, const char* who) {
  auto it = md.find(key);
  MUXNET_CHECK(it != md.end(), who, ": metadata '", key, "' is missing");
  const std::string& s = it->second;
  bool ok = !s.empty() && s.size() <= 20;
  uint64_t v = 0;
  for (char c : s) {
    ok = ok && c >= '0' && c <= '9' && !__builtin_mul_overflow(v, uint64_t(10), &v) &&
         !__builtin_add_overflow(v, uint64_t(c - '0'), &v);
  }
  MUXNET_CHECK(ok, who, ": metadata '", key, "' is not an unsigned 64-bit integer: '", s, "'");
  return v;
}

}  // namespace

// ---------------------------------------------------------------- public API

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, const Metadata& metadata) {
  write_file("write_safetensors", path, tensors, metadata);
}

SafetensorsContents read_safetensors(const std::string& path) {
  const char* who = "read_safetensors";
  Fd f = open_for_reading(who, path);
  Header h = parse_header(f.fd, who, path);
  SafetensorsContents out;
  for (const Entry& e : h.entries) out.tensors.emplace_back(e.name, read_entry(f.fd, h, e, who, path));
  out.metadata = std::move(h.metadata);
  return out;
}

void save_checkpoint(const std::string& path, const Module& module, const Metadata& metadata,
                     const std::vector<NamedTensor>& extra) {
  const char* who = "save_checkpoint";
  MUXNET_CHECK(!metadata.count(kExtraKey), who, ": metadata key '", kExtraKey, "' is reserved");
  std::vector<NamedTensor> tensors = module.state();
  std::set<std::string> module_names;
  for (const auto& nt : tensors) module_names.insert(nt.first);
  nlohmann::json extra_names = nlohmann::json::array();
  for (const auto& nt : extra) {
    MUXNET_CHECK(!module_names.count(nt.first), who, ": extra tensor '", nt.first, "' has the name of a module tensor");
    extra_names.push_back(nt.first);
    tensors.push_back(nt);
  }
  Metadata md = metadata;
  if (!extra.empty()) {
    try {
      md[kExtraKey] = extra_names.dump();
    } catch (const nlohmann::json::exception& e) {
      MUXNET_FAIL(who, ": an extra tensor name is not valid UTF-8 (", e.what(), ")");
    }
  }
  write_file(who, path, tensors, md);
}

const Tensor& LoadedCheckpoint::extra_tensor(const std::string& name) const {
  for (const auto& nt : extra) {
    if (nt.first == name) return nt.second;
  }
  MUXNET_FAIL("LoadedCheckpoint: no extra tensor '", name, "'");
}

LoadedCheckpoint load_checkpoint(const std::string& path, Module& module) {
  const char* who = "load_checkpoint";
  Fd f = open_for_reading(who, path);
  LoadPlan plan = plan_load(f.fd, who, path, module);
  LoadedCheckpoint out;
  out.extra = read_extras(f.fd, plan, who, path);
  read_module(f.fd, plan, who, path);
  out.metadata = std::move(plan.metadata);
  return out;
}

std::string format_double(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

double parse_double(const std::string& s, const std::string& what) {
  const char* begin = s.c_str();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(begin, &end);
  MUXNET_CHECK(!s.empty() && end == begin + s.size() && errno != ERANGE, what, " is not a number: '", s, "'");
  return v;
}

void put_generator_state(Metadata& md, const std::string& name, const Generator& gen) {
  const std::string key = "rng." + name;
  MUXNET_CHECK(!md.count(key + ".seed") && !md.count(key + ".offset"), "put_generator_state: metadata '", key,
               ".*' is already set (two generators named '", name, "'?)");
  md[key + ".seed"] = std::to_string(gen.seed());
  md[key + ".offset"] = std::to_string(gen.offset());
}

void get_generator_state(const Metadata& md, const std::string& name, Generator& gen) {
  const std::string key = "rng." + name;
  const uint64_t seed = parse_u64(md, key + ".seed", "get_generator_state");
  const uint64_t offset = parse_u64(md, key + ".offset", "get_generator_state");
  gen.set_state(seed, offset);
}

void save_training_checkpoint(const std::string& path, const Module& module, const Optimizer& optimizer,
                              const std::vector<std::pair<std::string, const Generator*>>& generators,
                              const Metadata& metadata) {
  const char* who = "save_training_checkpoint";
  Metadata md = metadata;
  OptimizerState st = optimizer.state(kOptimPrefix);
  for (const auto& [k, v] : st.scalars) {
    const std::string key = kOptimPrefix + k;
    MUXNET_CHECK(!md.count(key), who, ": metadata key '", key, "' is reserved for the optimizer");
    md[key] = format_double(v);
  }
  for (const auto& [name, gen] : generators) {
    MUXNET_CHECK(gen != nullptr, who, ": generator '", name, "' is null");
    put_generator_state(md, name, *gen);
  }
  save_checkpoint(path, module, md, st.tensors);
}

Metadata load_training_checkpoint(const std::string& path, Module& module, Optimizer& optimizer,
                                  const std::vector<std::pair<std::string, Generator*>>& generators) {
  const char* who = "load_training_checkpoint";
  Fd f = open_for_reading(who, path);
  LoadPlan plan = plan_load(f.fd, who, path, module);
  // Everything that can fail is checked before the module, optimizer or generators change.
  std::vector<std::pair<uint64_t, uint64_t>> gen_states;
  for (const auto& [name, gen] : generators) {
    MUXNET_CHECK(gen != nullptr, who, ": generator '", name, "' is null");
    Generator g;
    get_generator_state(plan.metadata, name, g);
    gen_states.emplace_back(g.seed(), g.offset());
  }
  OptimizerState st;
  st.tensors = read_extras(f.fd, plan, who, path);
  const std::string prefix = kOptimPrefix;
  for (const auto& [k, v] : plan.metadata) {
    if (k.compare(0, prefix.size(), prefix) == 0) {
      st.scalars[k.substr(prefix.size())] = parse_double(v, detail::concat(who, ": metadata '", k, "'"));
    }
  }
  optimizer.load_state(st, prefix);  // validates fully before changing the optimizer
  read_module(f.fd, plan, who, path);
  for (size_t i = 0; i < generators.size(); ++i) generators[i].second->set_state(gen_states[i].first, gen_states[i].second);
  return plan.metadata;
}

PartialLoad load_matching(const std::string& path, Module& module) {
  SafetensorsContents file = read_safetensors(path);
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : file.tensors) by_name[name] = &t;
  PartialLoad out;
  NoGradGuard no_grad;
  for (auto& [name, dst] : module.state()) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      out.fresh.push_back(name);
      continue;
    }
    const Tensor& src = *it->second;
    by_name.erase(it);
    if (src.dtype() != dst.dtype() || src.shape() != dst.shape()) {
      std::ostringstream m;
      m << name << ": file " << src.dtype() << " " << src.shape() << ", module " << dst.dtype() << " " << dst.shape();
      out.mismatched.push_back(m.str());
      continue;
    }
    Tensor target = dst;  // a handle: copy_ writes into the module's storage
    target.copy_(src.to(dst.device()));
    out.loaded.push_back(name);
  }
  for (const auto& [name, t] : by_name) out.unused.push_back(name);
  out.metadata = std::move(file.metadata);
  out.metadata.erase(kExtraKey);
  return out;
}

}  // namespace muxnet::nn
