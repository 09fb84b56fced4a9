// test_idx_data.cpp — the IDX reader (tasks/common/idx_data.h) on small files written here, gzip
// (through zlib) and plain: round trips, the dataset directory, and every malformed case with its
// message (file, byte offset, what was expected). Real data is not needed.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <fstream>

#include "tasks/common/cli.h"
#include "tasks/common/idx_data.h"
#include "tests/test_util.h"

using namespace muxnet;
using namespace muxnet::tasks;

namespace {

using Bytes = std::vector<uint8_t>;

std::string temp_dir() {
  std::string d = "/tmp/muxnet_test_idx_" + std::to_string(getpid());
  mkdir(d.c_str(), 0755);
  return d;
}

void put_u32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

Bytes images_file(uint32_t count, uint32_t rows, uint32_t cols, uint32_t magic = 2051) {
  Bytes b;
  put_u32(b, magic);
  put_u32(b, count);
  put_u32(b, rows);
  put_u32(b, cols);
  for (uint32_t k = 0; k < count * rows * cols; ++k) b.push_back(uint8_t(k * 7 + 3));
  return b;
}

Bytes labels_file(const Bytes& labels, uint32_t magic = 2049) {
  Bytes b;
  put_u32(b, magic);
  put_u32(b, uint32_t(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

std::string write_gz(const std::string& name, const Bytes& content) {
  std::string path = temp_dir() + "/" + name;
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f);
  if (!content.empty()) REQUIRE(gzwrite(f, content.data(), unsigned(content.size())) == int(content.size()));
  gzclose(f);
  return path;
}

std::string write_plain(const std::string& name, const Bytes& content) {
  std::string path = temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(content.data()), std::streamsize(content.size()));
  return path;
}

Bytes read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The message with the temp directory dropped (it starts at the file name).
template <typename F>
std::string error_of(const std::string& name, F&& read) {
  try {
    read();
  } catch (const InputError& e) {
    std::string m = e.what();
    size_t at = m.find(name);
    return at == std::string::npos ? m : m.substr(at);
  }
  return "no error";
}

}  // namespace

TEST_CASE("IDX images and labels round-trip through gzip and plain files", "[tasks][idx]") {
  Bytes im = images_file(3, 2, 4);
  for (const std::string& path : {write_gz("im.gz", im), write_plain("im.raw", im)}) {
    IdxImages r = read_idx_images(path);
    CHECK(r.count == 3);
    CHECK(r.rows == 2);
    CHECK(r.cols == 4);
    CHECK(r.pixels == Bytes(im.begin() + 16, im.end()));
  }
  Bytes labels = {0, 9, 4, 4, 1};
  CHECK(read_idx_labels(write_gz("lab.gz", labels_file(labels))) == labels);
  CHECK(read_idx_labels(write_plain("lab.raw", labels_file(labels))) == labels);
  CHECK(read_idx_labels(write_gz("lab3.gz", labels_file({0, 2, 1})), 3) == Bytes{0, 2, 1});
  CHECK(read_idx_images(write_gz("empty_ok.gz", images_file(0, 28, 28))).count == 0);
}

TEST_CASE("malformed IDX files are rejected with the file, byte offset and expectation", "[tasks][idx]") {
  auto images_err = [](const std::string& name, const Bytes& content) {
    std::string p = write_gz(name, content);
    return error_of(name, [&] { read_idx_images(p); });
  };
  auto labels_err = [](const std::string& name, const Bytes& content) {
    std::string p = write_gz(name, content);
    return error_of(name, [&] { read_idx_labels(p); });
  };
  CHECK(images_err("m1.gz", images_file(1, 2, 2, 2049)) ==
        "m1.gz: bad magic at byte 0: expected 2051 (IDX u8 images), got 2049 (IDX u8 labels)");
  CHECK(labels_err("m2.gz", images_file(1, 2, 2)) ==
        "m2.gz: bad magic at byte 0: expected 2049 (IDX u8 labels), got 2051 (IDX u8 images)");
  CHECK(images_err("m3.gz", images_file(1, 2, 2, 0x1f8b0808)) ==
        "m3.gz: bad magic at byte 0: expected 2051 (IDX u8 images), got 529205256");
  CHECK(images_err("h1.gz", Bytes{0, 0, 8, 3, 0, 0}) ==
        "h1.gz: truncated header at byte 6: expected 16 header bytes (magic 2051 (IDX u8 images) and 3 dimension(s)), "
        "the file has 6");
  CHECK(labels_err("h2.gz", Bytes{}) ==
        "h2.gz: truncated header at byte 0: expected 8 header bytes (magic 2049 (IDX u8 labels) and 1 dimension(s)), "
        "the file has 0");
  Bytes cut = images_file(3, 2, 2);
  cut.resize(cut.size() - 5);
  CHECK(images_err("t1.gz", cut) == "t1.gz: truncated payload at byte 23: expected 28 bytes (3 images of 2x2), the file "
                                    "ends after 23");
  Bytes extra = images_file(2, 2, 2);
  extra.push_back(0);
  extra.push_back(0);
  CHECK(images_err("g1.gz", extra) ==
        "g1.gz: trailing garbage at byte 24: expected the file to end there (2 images of 2x2), it has 2 more byte(s)");
  CHECK(images_err("z1.gz", images_file(0, 0, 5)) == "z1.gz: bad image size at byte 8: expected rows and cols >= 1, got 0x5");
  Bytes short_labels = labels_file({1, 2, 3});
  short_labels.pop_back();
  CHECK(labels_err("t2.gz", short_labels) == "t2.gz: truncated payload at byte 10: expected 11 bytes (3 labels), the file "
                                            "ends after 10");
  CHECK(labels_err("l1.gz", labels_file({1, 2, 10, 3})) ==
        "l1.gz: bad label at byte 10 (label 2): expected 0..9, got 10");
  CHECK(labels_err("l2.gz", labels_file({255})) == "l2.gz: bad label at byte 8 (label 0): expected 0..9, got 255");
  REQUIRE_THROWS_WITH(read_idx_images("/nonexistent/x.gz"), "/nonexistent/x.gz: cannot open");
}

TEST_CASE("a cut or corrupt gzip stream is an error, not a short file", "[tasks][idx]") {
  std::string good = write_gz("whole.gz", images_file(50, 8, 8));
  Bytes gz = read_raw(good);
  // Cut the compressed stream in half: zlib reports the early end.
  Bytes half(gz.begin(), gz.begin() + int64_t(gz.size() / 2));
  std::string p = write_plain("half.gz", half);
  std::string m = error_of("half.gz", [&] { read_idx_images(p); });
  CHECK(m.rfind("half.gz: truncated or corrupt gzip stream after ", 0) == 0);
  CHECK(m.find("unexpected end of file") != std::string::npos);
  // Damage the CRC trailer (the last 8 bytes are CRC32 and size): the data decodes, the check fails.
  Bytes bad = gz;
  bad[bad.size() - 8] ^= 0xff;
  std::string q = write_plain("crc.gz", bad);
  std::string n = error_of("crc.gz", [&] { read_idx_images(q); });
  CHECK(n.find("crc.gz: ") == 0);
  CHECK(n.find("gzip stream") != std::string::npos);
  CHECK(n.find("incorrect data check") != std::string::npos);
}

TEST_CASE("an IDX dataset directory loads both splits and checks them against each other", "[tasks][idx]") {
  std::string dir = temp_dir() + "/ds";
  mkdir(dir.c_str(), 0755);
  auto put = [&](const std::string& name, const Bytes& b) {
    std::string p = write_gz("ds/" + name, b);
    (void)p;
  };
  put("train-images-idx3-ubyte.gz", images_file(4, 3, 3));
  put("train-labels-idx1-ubyte.gz", labels_file({1, 2, 3, 4}));
  put("t10k-images-idx3-ubyte.gz", images_file(2, 3, 3));
  put("t10k-labels-idx1-ubyte.gz", labels_file({9, 0}));
  ImageDataset ds = load_image_dataset(dir);
  CHECK(ds.train.images.count == 4);
  CHECK(ds.test.labels == Bytes{9, 0});

  put("t10k-labels-idx1-ubyte.gz", labels_file({9, 0, 5}));
  std::string m = error_of("t10k-labels", [&] { load_image_dataset(dir); });
  CHECK(m == "t10k-labels-idx1-ubyte.gz: count mismatch at byte 4: expected 2 labels (as " + dir +
                 "/t10k-images-idx3-ubyte.gz has images), got 3");

  put("t10k-labels-idx1-ubyte.gz", labels_file({9, 0}));
  put("t10k-images-idx3-ubyte.gz", images_file(2, 3, 4));
  CHECK(error_of(dir, [&] { load_image_dataset(dir); }) ==
        dir + ": image size mismatch: train images are 3x3, test images 3x4");

  // A plain (uncompressed) file is taken when the .gz is absent.
  std::remove((dir + "/t10k-images-idx3-ubyte.gz").c_str());
  write_plain("ds/t10k-images-idx3-ubyte", images_file(2, 3, 3));
  CHECK(load_image_dataset(dir).test.images.count == 2);
  std::remove((dir + "/t10k-images-idx3-ubyte").c_str());
  CHECK(error_of("t10k-images", [&] { load_image_dataset(dir); }) == "t10k-images-idx3-ubyte.gz: cannot open");
}

TEST_CASE("the real MNIST test split reads with its published class counts", "[tasks][idx][data]") {
  const char* env = std::getenv("MUXNET_DATA");
  std::string dir = env && *env ? std::string(env) + "/mnist" : "";
  struct stat st;
  if (dir.empty() || stat((dir + "/t10k-labels-idx1-ubyte.gz").c_str(), &st) != 0) {
    WARN("skipped: $MUXNET_DATA/mnist/t10k-*.gz not found");
    return;
  }
  IdxImages im = read_idx_images(dir + "/t10k-images-idx3-ubyte.gz");
  CHECK(im.count == 10000);
  CHECK(im.rows == 28);
  CHECK(im.cols == 28);
  std::vector<int> counts(10, 0);
  for (uint8_t l : read_idx_labels(dir + "/t10k-labels-idx1-ubyte.gz")) counts[l]++;
  // shared/data/README.md's verified per-class counts of t10k
  CHECK(counts == std::vector<int>{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009});
}
