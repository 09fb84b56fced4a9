// idx_data.h — the IDX files of MNIST and Fashion-MNIST (u8 images and u8 labels), gzip-compressed or
// plain (zlib's gzread reads both: it detects the gzip header), and the four-file dataset directory.
//
//   images  magic 2051 (0x00000803), count, rows, cols (big-endian u32), then count·rows·cols bytes
//   labels  magic 2049 (0x00000801), count, then count bytes, each a class in [0, num_classes)
//
// Every problem is an InputError naming the file, the byte offset (in the decompressed stream) and
// what was expected: a bad magic, a header or payload cut short, bytes after the payload (a file
// that does not end where its header says is not the file we think it is), a label out of range, a
// corrupt gzip stream, and (for a directory) images and labels of different counts or image sizes.
//
// What this is not: the other IDX element types (i8, i16, i32, f32, f64) or ranks; a streaming
// reader (the files are small enough to hold: MNIST train is 47 MB decompressed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace muxnet::tasks {

struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count·rows·cols, image-major, row-major
};

// The decompressed contents of a gzip (or plain) file; InputError when unreadable or corrupt.
std::vector<uint8_t> read_gzip_file(const std::string& path);

IdxImages read_idx_images(const std::string& path);
std::vector<uint8_t> read_idx_labels(const std::string& path, int num_classes = 10);

struct ImageSplit {
  IdxImages images;
  std::vector<uint8_t> labels;  // images.count of them
};

struct ImageDataset {
  ImageSplit train, test;
};

// dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (a file without ".gz" is taken when the .gz one
// is absent). Checks count(images) = count(labels) per split and one image size for both splits.
ImageDataset load_image_dataset(const std::string& dir, int num_classes = 10);

}  // namespace muxnet::tasks
