// test_checkpoint.cpp — safetensors files: exact bytes of the header, bit-exact round trips of every
// dtype (0-d and empty tensors too), metadata, loading into a module with precise mismatch messages,
// rejection of every kind of corrupt file, atomic writes, and an exact training resume (weights +
// AdamW/SGD state + dropout generator) that reproduces the losses bit for bit.
//
// What this is not: a test against the Python safetensors package (not installed here); instead the
// header bytes are checked against the reference writer's own published test vectors.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "autograd/functions.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/schedule.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::nn;

namespace {

// A fresh directory under /tmp, removed with everything in it at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/muxnet_ckpt_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A file made of a size field, this header text (as is: no padding) and `data` zero bytes.
std::string st_file(const std::string& header, size_t data = 0) {
  return le64(header.size()) + header + std::string(data, '\0');
}

// Same dtype, shape and bytes (so NaN payloads and -0 count).
bool bits_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  if (a.numel() == 0) return true;
  Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * x.element_size()) == 0;
}

struct Lin : Module {
  std::shared_ptr<Linear> fc;
  Tensor count;
  Lin(int64_t in, int64_t out, DType dtype = DType::F32, bool with_count = true) {
    Generator gen(5);
    fc = register_module("fc", std::make_shared<Linear>(in, out, true, &gen));
    if (with_count) count = register_buffer("count", from_vector<int64_t>({3, -4}));
    if (dtype != DType::F32) to(dtype);
  }
};

struct TwoLayer : Module {
  std::shared_ptr<Linear> fc, head;
  TwoLayer() {
    Generator gen(6);
    fc = register_module("fc", std::make_shared<Linear>(4, 3, true, &gen));
    head = register_module("head", std::make_shared<Linear>(3, 2, false, &gen));
  }
};

}  // namespace

// ---------------------------------------------------------------- format

TEST_CASE("safetensors header bytes match the reference writer's test vectors", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  // huggingface/safetensors tensor.rs test_serialization: one F32 (1, 2, 3) tensor holding 0..5.
  write_safetensors(path, {{"attn.0", arange(0.0, 6.0, 1.0, DType::F32).view({1, 2, 3})}});
  std::string data;
  for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f}) data.append(reinterpret_cast<const char*>(&v), 4);
  const std::string json = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  REQUIRE(json.size() == 64);  // already a multiple of 8: no padding
  std::string want = std::string("\x40\0\0\0\0\0\0\0", 8) + json + data;
  CHECK(read_bytes(path) == want);
  CHECK(data.substr(4, 4) == std::string("\0\0\x80\x3f", 4));  // 1.0f little-endian, as in the vector

  // test_serialization_forced_alignement: a 65-byte header is padded with 7 spaces to 72.
  write_safetensors(path, {{"attn0", arange(0.0, 6.0, 1.0, DType::F32).view({1, 1, 2, 3})}});
  want = std::string("\x48\0\0\0\0\0\0\0", 8) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" +
         "       " + data;
  CHECK(read_bytes(path) == want);

  // test_empty: no tensors is "{}" padded to 8; metadata alone is 35 bytes padded to 40.
  write_safetensors(path, {});
  CHECK(read_bytes(path) == std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  write_safetensors(path, {}, {{"framework", "pt"}});
  CHECK(read_bytes(path) == std::string("\x28\0\0\0\0\0\0\0", 8) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

TEST_CASE("tensors are laid out by descending dtype, then name; 0-d and empty shapes", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("order.safetensors");
  write_safetensors(path, {{"z", from_vector<int32_t>({7})},
                           {"b", scalar_tensor(2.5)},
                           {"a", zeros({0, 3})},
                           {"i", from_vector<int64_t>({1, 2})},
                           {"d", from_vector<double>({0.5})}},
                    {{"k", "v"}});
  const std::string header = R"({"__metadata__":{"k":"v"},)"
                             R"("i":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                             R"("d":{"dtype":"F64","shape":[1],"data_offsets":[16,24]},)"
                             R"("a":{"dtype":"F32","shape":[0,3],"data_offsets":[24,24]},)"
                             R"("b":{"dtype":"F32","shape":[],"data_offsets":[24,28]},)"
                             R"("z":{"dtype":"I32","shape":[1],"data_offsets":[28,32]}})";
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  const std::string bytes = read_bytes(path);
  CHECK(bytes.substr(0, 8) == le64(padded.size()));
  CHECK(bytes.substr(8, padded.size()) == padded);
  CHECK(bytes.size() == 8 + padded.size() + 32);
}

TEST_CASE("safetensors round trip is bit-exact for every dtype, 0-d, empty and strided tensors", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("rt.safetensors");
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<NamedTensor> tensors = {
      {"f32", from_vector<float>({1.5f, -0.0f, nan, inf, -inf, 1e-45f}, {2, 3})},
      {"f64", test::random_tensor({4, 5}, DType::F64, 3)},
      {"i32", from_vector<int32_t>({std::numeric_limits<int32_t>::min(), -1, 0, std::numeric_limits<int32_t>::max()})},
      {"i64", from_vector<int64_t>({std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()})},
      {"scalar", scalar_tensor(3.25, DType::F64)},
      {"empty", zeros({0}, DType::F32)},
      {"empty3", zeros({2, 0, 3}, DType::I64)},
      {"transposed", test::random_tensor({3, 4}, DType::F32, 4).t()},  // written in logical row-major order
      {"weird name ✓ \"q\" \\ .0", ones({1})},
  };
  const Metadata md = {{"format", "pt"}, {"unicode", "héllo ✓"}, {"quotes", "a \"b\" \\ c\nd"}, {"empty", ""}};
  write_safetensors(path, tensors, md);
  CHECK_FALSE(file_exists(path + ".tmp"));
  SafetensorsContents back = read_safetensors(path);
  CHECK(back.metadata == md);
  REQUIRE(back.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO("tensor " << name);
    bool found = false;
    for (const auto& [n2, t2] : back.tensors) {
      if (n2 != name) continue;
      found = true;
      CHECK(t2.is_contiguous());
      CHECK(bits_equal(t2, t));
    }
    CHECK(found);
  }
  CHECK(back.tensors[0].first == "empty3");  // file order: I64 first, then by name
}

TEST_CASE("safetensors writing rejects what the format cannot hold", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  CHECK_THROWS_WITH(write_safetensors(path, {{"a", ones({1})}, {"a", ones({2})}}),
                    "write_safetensors: tensor name 'a' appears twice");
  CHECK_THROWS_WITH(write_safetensors(path, {{"__metadata__", ones({1})}}),
                    "write_safetensors: a tensor cannot be named \"__metadata__\"");
  CHECK_THROWS_WITH(write_safetensors(path, {{"u", Tensor()}}), "write_safetensors: tensor 'u' is undefined");
  CHECK_THROWS_WITH(write_safetensors(path, {}, {{"k", std::string("\xff\xfe")}}),
                    Catch::Contains("write_safetensors: '" + path + "': a tensor name or metadata string is not valid UTF-8"));
  CHECK_FALSE(file_exists(path));
  CHECK_FALSE(file_exists(path + ".tmp"));
}

// ---------------------------------------------------------------- corrupt files

TEST_CASE("corrupt safetensors files are rejected with the file and the problem", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("c.safetensors");
  const std::string where = "read_safetensors: '" + path + "': ";
  auto check = [&](const std::string& bytes, const std::string& message) {
    write_bytes(path, bytes);
    CHECK_THROWS_WITH(read_safetensors(path), where + message);
  };
  auto check_contains = [&](const std::string& bytes, const std::string& part) {
    write_bytes(path, bytes);
    CHECK_THROWS_WITH(read_safetensors(path), Catch::StartsWith(where + part));
  };
  // A valid file of this shape loads (the cases below each break one thing).
  write_bytes(path, st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
  CHECK(read_safetensors(path).tensors.size() == 1);

  SECTION("file shorter than the size field") {
    check("", "not a safetensors file: 0 bytes, fewer than the 8-byte header size");
    check(std::string("\x05\0\0\0\0", 5), "not a safetensors file: 5 bytes, fewer than the 8-byte header size");
  }
  SECTION("header size absurd or beyond the file") {
    check(le64(uint64_t(1) << 40) + "{}", "header size 1099511627776 is absurd (the format's limit is 100000000 bytes)");
    check(le64(~uint64_t(0)) + "{}", "header size 18446744073709551615 is absurd (the format's limit is 100000000 bytes)");
    check(le64(200) + "{}      ", "header size 200 exceeds the 8 bytes after the size field (truncated file?)");
  }
  SECTION("header not JSON, or not an object") {
    check_contains(st_file(R"({"a":)"), "header is not valid JSON (");
    check_contains(st_file("{\"\xff\":1}"), "header is not valid JSON (");  // invalid UTF-8
    check(st_file(std::string("{}\0\0", 4)), "header is not valid JSON (NUL byte at header offset 2)");
    check_contains(st_file(std::string("{\"a\0\":1}", 8)), "header is not valid JSON (");
    check(st_file("[1, 2]"), "header is not a JSON object");
    check(st_file("\"text\""), "header is not a JSON object");
  }
  SECTION("entries that are not tensor descriptions") {
    check(st_file(R"({"a":3})"), "tensor 'a': entry is not an object: 3");
    check(st_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "tensor 'a': \"dtype\" is missing or not a string");
    check(st_file(R"({"a":{"dtype":5,"shape":[1],"data_offsets":[0,4]}})", 4),
          "tensor 'a': \"dtype\" is missing or not a string");
    check(st_file(R"({"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}})", 2),
          "tensor 'a': unsupported dtype 'BF16' (muxnet reads F32, F64, I32, I64)");
    check(st_file(R"({"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4),
          "tensor 'a': unsupported dtype 'f32' (muxnet reads F32, F64, I32, I64)");
    check(st_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "tensor 'a': \"shape\" is missing or not an array");
    check(st_file(R"({"a":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})", 4),
          "tensor 'a': \"shape\" is missing or not an array");
  }
  SECTION("non-numeric, negative or oversized shapes") {
    check(st_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
          "tensor 'a': shape [-1] is not a list of non-negative integers");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", 4),
          "tensor 'a': shape [2.5] is not a list of non-negative integers");
    check(st_file(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8),
          "tensor 'a': shape [\"2\"] is not a list of non-negative integers");
    check(st_file(R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4),
          "tensor 'a': shape [1,1,1,1,1,1,1,1,1] has 9 dims, muxnet supports at most 8");
    check(st_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4),
          "tensor 'a': shape [4294967296,4294967296,4294967296] is too large");
    check(st_file(R"({"a":{"dtype":"F64","shape":[1152921504606846976,16],"data_offsets":[0,4]}})", 4),
          "tensor 'a': shape [1152921504606846976,16] is too large");
  }
  SECTION("offsets that are not two non-negative integers") {
    check(st_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8),
          "tensor 'a': \"data_offsets\" must be two non-negative integers, got nothing");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}})", 8),
          "tensor 'a': \"data_offsets\" must be two non-negative integers, got [\"0\",\"8\"]");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
          "tensor 'a': \"data_offsets\" must be two non-negative integers, got [0]");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8),
          "tensor 'a': \"data_offsets\" must be two non-negative integers, got [-8,0]");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}})", 8),
          "tensor 'a': \"data_offsets\" must be two non-negative integers, got [0,8,16]");
  }
  SECTION("shape and offsets disagree with the dtype size") {
    check(st_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
          "tensor 'a': data_offsets [0, 8] hold 8 bytes, but F32 (3,) needs 12");
    check(st_file(R"({"a":{"dtype":"I64","shape":[],"data_offsets":[0,4]}})", 4),
          "tensor 'a': data_offsets [0, 4] hold 4 bytes, but I64 () needs 8");
  }
  SECTION("offsets outside the data section, reversed, overlapping, gaps, trailing bytes") {
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
          "tensor 'a': data_offsets [0, 8] extend past the data section (4 bytes)");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,0]}})", 8),
          "tensor 'a': data_offsets [18446744073709551608, 0] end before they begin");
    check(st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
          "tensor 'a': data_offsets [8, 0] end before they begin");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  12),
          "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
    check(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                  8),
          "tensors 'a' [0, 8] and 'b' [0, 8] overlap");
    check(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                  12),
          "bytes [4, 8) of the data section belong to no tensor");
    check(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8),
          "the tensors end at byte 4 of the 8-byte data section (trailing bytes)");
    check(st_file("{}", 3), "the tensors end at byte 0 of the 3-byte data section (trailing bytes)");
  }
  SECTION("metadata that is not a map of strings") {
    check(st_file(R"({"__metadata__":[1]})"), "\"__metadata__\" is not an object");
    check(st_file(R"({"__metadata__":{"k":1}})"), "\"__metadata__\" value of 'k' is not a string: 1");
  }
  SECTION("a missing file") {
    CHECK_THROWS_WITH(read_safetensors(dir.file("nope")),
                      "read_safetensors: cannot open '" + dir.file("nope") + "': No such file or directory");
  }
}

TEST_CASE("every truncation and byte corruption of a real file fails cleanly or loads", "[nn][checkpoint]") {
  TempDir dir;
  const std::string good = dir.file("good.safetensors"), bad = dir.file("bad.safetensors");
  write_safetensors(good, {{"w", test::random_tensor({3, 2}, DType::F32, 1)}, {"i", from_vector<int64_t>({1, 2, 3})}},
                    {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  // Any truncation leaves a header size past the end or tensors past the data: always an Error.
  for (size_t len = 0; len < bytes.size(); ++len) {
    INFO("truncated to " << len << " bytes");
    write_bytes(bad, bytes.substr(0, len));
    CHECK_THROWS_AS(read_safetensors(bad), Error);
  }
  // Each header byte replaced by a few troublesome values: either a clean Error or a valid parse.
  size_t header_end = 8;
  for (int i = 0; i < 8; ++i) header_end += size_t(uint8_t(bytes[size_t(i)])) << (8 * i);
  int loaded = 0, rejected = 0;
  for (size_t pos = 0; pos < header_end; ++pos) {
    for (char v : {'\0', '\xff', '9', '"', '[', '}', ' '}) {
      std::string b = bytes;
      b[pos] = v;
      write_bytes(bad, b);
      try {
        read_safetensors(bad);
        ++loaded;
      } catch (const Error&) {
        ++rejected;
      } catch (const std::exception& e) {
        FAIL("byte " << pos << " = " << int(v) << ": unexpected exception " << e.what());
      }
    }
  }
  CHECK(rejected > 0);
  CHECK(loaded + rejected == int(header_end) * 7);
}

// ---------------------------------------------------------------- module checkpoints

TEST_CASE("save_checkpoint / load_checkpoint: values, buffers, metadata and extra tensors", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  Lin a(4, 3), b(4, 3);
  {
    NoGradGuard no_grad;
    b.fc->weight.fill_(0.0);
    b.count.fill_(0.0);
  }
  b.pack_parameters();
  const Tensor arena = b.param_arena();
  save_checkpoint(path, a, {{"epoch", "3"}}, {{"optim.extra", from_vector<double>({1.0, 2.0})}});
  LoadedCheckpoint got = load_checkpoint(path, b);
  CHECK(bits_equal(b.fc->weight, a.fc->weight));
  CHECK(bits_equal(b.fc->bias, a.fc->bias));
  CHECK(bits_equal(b.count, a.count));
  // Loaded in place: the packed arena still holds the parameters, and the handles are the same.
  CHECK(b.fc->weight.storage() == arena.storage());
  CHECK(b.param_arena().is_same(arena));
  CHECK(got.metadata == Metadata{{"epoch", "3"}});
  REQUIRE(got.extra.size() == 1);
  CHECK(bits_equal(got.extra_tensor("optim.extra"), from_vector<double>({1.0, 2.0})));
  CHECK_THROWS_WITH(got.extra_tensor("nope"), "LoadedCheckpoint: no extra tensor 'nope'");
  // The file is plain safetensors: the module's names, the extra, and the bookkeeping key.
  SafetensorsContents raw = read_safetensors(path);
  CHECK(raw.tensors.size() == 4);
  CHECK(raw.metadata.at("muxnet.extra_tensors") == R"(["optim.extra"])");
}

TEST_CASE("load_checkpoint names each missing, unexpected or mismatched tensor and loads nothing", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  Lin saved(4, 3);
  save_checkpoint(path, saved);
  const std::string head = "load_checkpoint: '" + path + "' does not match the module: ";

  SECTION("mis-shaped") {
    Lin m(5, 3);
    const Tensor before = m.fc->bias.clone();
    CHECK_THROWS_WITH(load_checkpoint(path, m),
                      head + "tensor 'fc.weight': the module has f32 (3, 5), the file f32 (3, 4)");
    CHECK(bits_equal(m.fc->bias, before));  // nothing was loaded, not even the matching bias
  }
  SECTION("wrong dtype") {
    Lin m(4, 3, DType::F64);
    CHECK_THROWS_WITH(load_checkpoint(path, m), head + "tensor 'fc.weight': the module has f64 (3, 4), the file f32 (3, 4); "
                                                       "tensor 'fc.bias': the module has f64 (3,), the file f32 (3,)");
  }
  SECTION("unexpected tensor in the file") {
    Lin m(4, 3, DType::F32, /*with_count=*/false);
    CHECK_THROWS_WITH(load_checkpoint(path, m), head + "unexpected tensor 'count' (i64 (2,)) is not in the module");
  }
  SECTION("missing tensor") {
    TwoLayer m;
    CHECK_THROWS_WITH(load_checkpoint(path, m), head + "missing tensor 'head.weight' (the module has f32 (2, 3)); "
                                                       "unexpected tensor 'count' (i64 (2,)) is not in the module");
  }
}

TEST_CASE("save_checkpoint argument errors", "[nn][checkpoint]") {
  TempDir dir;
  Lin m(2, 2);
  CHECK_THROWS_WITH(save_checkpoint(dir.file("x"), m, {}, {{"fc.weight", ones({1})}}),
                    "save_checkpoint: extra tensor 'fc.weight' has the name of a module tensor");
  CHECK_THROWS_WITH(save_checkpoint(dir.file("x"), m, {{"muxnet.extra_tensors", "[]"}}),
                    "save_checkpoint: metadata key 'muxnet.extra_tensors' is reserved");
  CHECK_THROWS_WITH(load_checkpoint(dir.file("x"), m),
                    "load_checkpoint: cannot open '" + dir.file("x") + "': No such file or directory");
}

// ---------------------------------------------------------------- atomic writes

TEST_CASE("a failed save leaves the previous checkpoint untouched", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors"), tmp = path + ".tmp";
  Lin m(3, 2);
  save_checkpoint(path, m, {{"version", "1"}});
  CHECK_FALSE(file_exists(tmp));  // written as .tmp, then renamed
  const std::string v1 = read_bytes(path);
  {
    NoGradGuard no_grad;
    m.fc->weight.fill_(9.0);
  }

  SECTION("an extra tensor that cannot be serialised") {
    CHECK_THROWS_WITH(save_checkpoint(path, m, {{"version", "2"}}, {{"optim.bad", Tensor()}}),
                      "save_checkpoint: tensor 'optim.bad' is undefined");
  }
  SECTION("the disk fills up while the data is written") {
    // "<path>.tmp" points at /dev/full: every write fails with ENOSPC after the file is opened.
    if (!file_exists("/dev/full")) {
      WARN("no /dev/full on this system: skipped");
      return;
    }
    REQUIRE(::symlink("/dev/full", tmp.c_str()) == 0);
    CHECK_THROWS_WITH(save_checkpoint(path, m, {{"version", "2"}}),
                      "save_checkpoint: writing '" + tmp + "' failed: No space left on device");
  }
  SECTION("the temporary file cannot be created") {
    REQUIRE(::mkdir(tmp.c_str(), 0755) == 0);
    CHECK_THROWS_WITH(save_checkpoint(path, m, {{"version", "2"}}),
                      "save_checkpoint: cannot create '" + tmp + "': Is a directory");
    ::rmdir(tmp.c_str());
  }
  CHECK(read_bytes(path) == v1);
  CHECK_FALSE(file_exists(tmp));
  CHECK(read_safetensors(path).metadata.at("version") == "1");
}

// ---------------------------------------------------------------- exact resume

namespace {

struct ResumeNet : Module {
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<Dropout> drop;
  ResumeNet(uint64_t init_seed, Generator* dropout_gen) {
    Generator gen(init_seed);
    fc1 = register_module("fc1", std::make_shared<Linear>(4, 16, true, &gen));
    drop = register_module("drop", std::make_shared<Dropout>(0.25, dropout_gen));
    fc2 = register_module("fc2", std::make_shared<Linear>(16, 1, true, &gen));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(drop->forward(tanh(fc1->forward(x)))); }
};

// One step; the batch depends only on the optimizer's step count, the lr on the schedule.
double resume_step(ResumeNet& net, Optimizer& opt, const LRSchedule& schedule) {
  const uint64_t k = uint64_t(opt.step_count());
  Tensor x = test::random_tensor({8, 4}, DType::F32, 500 + k);
  Tensor y = test::random_tensor({8, 1}, DType::F32, 900 + k);
  schedule.apply(opt);
  opt.zero_grad();
  Tensor loss = mse_loss(net.forward(x), y);
  loss.backward();
  clip_grad_norm(net, 1.0);
  opt.step();
  return loss.item();
}

bool same_params(const Module& a, const Module& b) {
  auto pa = a.state(), pb = b.state();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i) {
    if (pa[i].first != pb[i].first || !bits_equal(pa[i].second, pb[i].second)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("exact resume: weights, optimizer state and dropout generator reproduce the losses bit for bit",
          "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("train.safetensors");
  const LRSchedule schedule = LRSchedule::linear_warmup(0.02, 5, 40);
  for (int variant = 0; variant < 2; ++variant) {
    // 0: AdamW, packed -> packed.  1: SGD with Nesterov momentum, packed -> unpacked.
    INFO("variant " << variant);
    auto make_opt = [&](ResumeNet& net, bool fresh) -> std::unique_ptr<Optimizer> {
      if (variant == 0) {
        return fresh ? std::make_unique<AdamW>(net) : std::make_unique<AdamW>(net, 0.02, 0.8, 0.99, 1e-7, 0.05);
      }
      return fresh ? std::make_unique<SGD>(net, 0.5, 0.5) : std::make_unique<SGD>(net, 0.02, 0.9, 1e-3, true);
    };
    Generator gen_a(42);
    ResumeNet a(1, &gen_a);
    a.pack_parameters();
    auto opt_a = make_opt(a, false);
    for (int s = 0; s < 10; ++s) resume_step(a, *opt_a, schedule);
    save_training_checkpoint(path, a, *opt_a, {{"dropout", &gen_a}}, {{"note", "after 10 steps"}});
    const uint64_t saved_offset = gen_a.offset();
    std::vector<double> want;
    for (int s = 0; s < 10; ++s) want.push_back(resume_step(a, *opt_a, schedule));

    // A fresh model (other init), optimizer (other hyperparameters) and generator (other seed).
    Generator gen_b(7);
    ResumeNet b(999, &gen_b);
    if (variant == 0) b.pack_parameters();
    auto opt_b = make_opt(b, true);
    Metadata md = load_training_checkpoint(path, b, *opt_b, {{"dropout", &gen_b}});
    CHECK(md.at("note") == "after 10 steps");
    CHECK(gen_b.seed() == 42);
    CHECK(gen_b.offset() == saved_offset);
    CHECK(opt_b->step_count() == 10);
    std::vector<double> got;
    for (int s = 0; s < 10; ++s) got.push_back(resume_step(b, *opt_b, schedule));
    CHECK(got == want);
    CHECK(same_params(a, b));

    // The test can fail: the same resume with the dropout generator rewound gives other losses.
    Generator gen_c(0);
    ResumeNet c(3, &gen_c);
    auto opt_c = make_opt(c, true);
    load_training_checkpoint(path, c, *opt_c, {{"dropout", &gen_c}});
    gen_c.manual_seed(42);
    CHECK(resume_step(c, *opt_c, schedule) != want[0]);
  }
}

TEST_CASE("load_training_checkpoint checks the optimizer and generators before changing anything", "[nn][checkpoint]") {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  Generator gen(1);
  ResumeNet a(1, &gen);
  AdamW opt_a(a, 0.01);
  resume_step(a, opt_a, LRSchedule::constant(0.01));
  save_training_checkpoint(path, a, opt_a, {{"dropout", &gen}});

  Generator gen_b(5);
  ResumeNet b(2, &gen_b);
  const Tensor before = b.fc1->weight.clone();
  SGD sgd(b, 0.1, 0.9);
  CHECK_THROWS_WITH(load_training_checkpoint(path, b, sgd, {{"dropout", &gen_b}}),
                    "SGD::load_state: missing tensor 'optim.fc1.weight.momentum_buffer'");
  AdamW adam(b);
  CHECK_THROWS_WITH(load_training_checkpoint(path, b, adam, {{"dropout", &gen_b}, {"other", &gen_b}}),
                    "get_generator_state: metadata 'rng.other.seed' is missing");
  CHECK(bits_equal(b.fc1->weight, before));
  CHECK(gen_b.seed() == 5);
  CHECK(adam.step_count() == 0);

  Metadata md;
  put_generator_state(md, "g", Generator(123));
  CHECK(md == Metadata{{"rng.g.seed", "123"}, {"rng.g.offset", "0"}});
  CHECK_THROWS_WITH(put_generator_state(md, "g", gen),
                    "put_generator_state: metadata 'rng.g.*' is already set (two generators named 'g'?)");
  md["rng.g.offset"] = "-3";
  Generator g2;
  CHECK_THROWS_WITH(get_generator_state(md, "g", g2),
                    "get_generator_state: metadata 'rng.g.offset' is not an unsigned 64-bit integer: '-3'");
  CHECK(parse_double(format_double(0.1), "x") == 0.1);
  CHECK(parse_double(format_double(1.0 / 3.0), "x") == 1.0 / 3.0);
  CHECK_THROWS_WITH(parse_double("1.5x", "metadata 'lr'"), "metadata 'lr' is not a number: '1.5x'");
}
