// idx_data.cpp — IDX reader (zlib) and the MNIST-layout dataset directory.
#include "tasks/common/idx_data.h"

#include <sys/stat.h>
#include <zlib.h>

#include "tasks/common/cli.h"

namespace muxnet::tasks {
namespace {

constexpr uint32_t kImagesMagic = 2051, kLabelsMagic = 2049;

uint32_t big_endian_u32(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | uint32_t(b[at + 3]);
}

std::string magic_name(uint32_t magic) {
  return std::to_string(magic) + (magic == kImagesMagic ? " (IDX u8 images)" : magic == kLabelsMagic ? " (IDX u8 labels)" : "");
}

// Checks the header length and magic; returns the header's dimensions.
std::vector<uint32_t> parse_header(const std::string& path, const std::vector<uint8_t>& bytes, uint32_t magic,
                                   int dims) {
  const size_t header = size_t(4 + 4 * dims);
  if (bytes.size() < header) {
    throw InputError(path + ": truncated header at byte " + std::to_string(bytes.size()) + ": expected " +
                     std::to_string(header) + " header bytes (magic " + magic_name(magic) + " and " +
                     std::to_string(dims) + " dimension(s)), the file has " + std::to_string(bytes.size()));
  }
  const uint32_t got = big_endian_u32(bytes, 0);
  if (got != magic) {
    throw InputError(path + ": bad magic at byte 0: expected " + magic_name(magic) + ", got " + magic_name(got));
  }
  std::vector<uint32_t> d;
  for (int i = 0; i < dims; ++i) d.push_back(big_endian_u32(bytes, size_t(4 + 4 * i)));
  return d;
}

// The payload must be exactly `payload` bytes after the header.
void check_payload(const std::string& path, const std::vector<uint8_t>& bytes, size_t header, uint64_t payload,
                   const std::string& what) {
  const uint64_t want = uint64_t(header) + payload;
  if (bytes.size() < want) {
    throw InputError(path + ": truncated payload at byte " + std::to_string(bytes.size()) + ": expected " +
                     std::to_string(want) + " bytes (" + what + "), the file ends after " +
                     std::to_string(bytes.size()));
  }
  if (bytes.size() > want) {
    throw InputError(path + ": trailing garbage at byte " + std::to_string(want) + ": expected the file to end there (" +
                     what + "), it has " + std::to_string(bytes.size() - want) + " more byte(s)");
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

std::vector<uint8_t> read_gzip_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw InputError(path + ": cannot open");
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    const int got = gzread(f, buf.data(), unsigned(buf.size()));
    if (got < 0) {
      int code = 0;
      std::string msg = gzerror(f, &code);
      gzclose(f);
      throw InputError(path + ": corrupt gzip stream after " + std::to_string(out.size()) +
                       " decompressed bytes: " + msg);
    }
    if (got == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + got);
  }
  // gzread returns 0 both at a clean end and when the compressed stream stops early; gzerror tells.
  int code = Z_OK;
  std::string msg = gzerror(f, &code);
  gzclose(f);
  if (code != Z_OK) {
    throw InputError(path + ": truncated or corrupt gzip stream after " + std::to_string(out.size()) +
                     " decompressed bytes: " + msg);
  }
  return out;
}

IdxImages read_idx_images(const std::string& path) {
  std::vector<uint8_t> bytes = read_gzip_file(path);
  std::vector<uint32_t> d = parse_header(path, bytes, kImagesMagic, 3);
  if (d[1] == 0 || d[2] == 0) {
    throw InputError(path + ": bad image size at byte 8: expected rows and cols >= 1, got " + std::to_string(d[1]) +
                     "x" + std::to_string(d[2]));
  }
  IdxImages im;
  im.count = d[0];
  im.rows = d[1];
  im.cols = d[2];
  check_payload(path, bytes, 16, uint64_t(im.count) * uint64_t(im.rows) * uint64_t(im.cols),
                std::to_string(im.count) + " images of " + std::to_string(im.rows) + "x" + std::to_string(im.cols));
  im.pixels.assign(bytes.begin() + 16, bytes.end());
  return im;
}

std::vector<uint8_t> read_idx_labels(const std::string& path, int num_classes) {
  std::vector<uint8_t> bytes = read_gzip_file(path);
  std::vector<uint32_t> d = parse_header(path, bytes, kLabelsMagic, 1);
  check_payload(path, bytes, 8, d[0], std::to_string(d[0]) + " labels");
  for (size_t i = 8; i < bytes.size(); ++i) {
    if (bytes[i] >= num_classes) {
      throw InputError(path + ": bad label at byte " + std::to_string(i) + " (label " + std::to_string(i - 8) +
                       "): expected 0.." + std::to_string(num_classes - 1) + ", got " + std::to_string(bytes[i]));
    }
  }
  return std::vector<uint8_t>(bytes.begin() + 8, bytes.end());
}

ImageDataset load_image_dataset(const std::string& dir, int num_classes) {
  auto file = [&](const std::string& stem) {
    std::string gz = dir + "/" + stem + ".gz", plain = dir + "/" + stem;
    if (exists(gz) || !exists(plain)) return gz;  // a missing .gz is reported by the reader
    return plain;
  };
  auto split = [&](const std::string& prefix) {
    ImageSplit s;
    std::string images = file(prefix + "-images-idx3-ubyte"), labels = file(prefix + "-labels-idx1-ubyte");
    s.images = read_idx_images(images);
    s.labels = read_idx_labels(labels, num_classes);
    if (int64_t(s.labels.size()) != s.images.count) {
      throw InputError(labels + ": count mismatch at byte 4: expected " + std::to_string(s.images.count) +
                       " labels (as " + images + " has images), got " + std::to_string(s.labels.size()));
    }
    return s;
  };
  ImageDataset ds;
  ds.train = split("train");
  ds.test = split("t10k");
  if (ds.train.images.rows != ds.test.images.rows || ds.train.images.cols != ds.test.images.cols) {
    throw InputError(dir + ": image size mismatch: train images are " + std::to_string(ds.train.images.rows) + "x" +
                     std::to_string(ds.train.images.cols) + ", test images " + std::to_string(ds.test.images.rows) +
                     "x" + std::to_string(ds.test.images.cols));
  }
  return ds;
}

}  // namespace muxnet::tasks
