// random.h — one seeded, counter-based random generator.
//
// Element i of a draw gets its bits from mix(key(seed), offset + i): no state is shared between
// elements, so a fill can be split over any number of threads (or, later, GPU blocks) and still give
// the same numbers for the same seed. Each draw advances the generator's offset by the number of
// counters it used, so successive draws differ. The state is (seed, offset): save both to resume.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace muxnet {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    uint64_t first = offset_;
    offset_ += n;
    return first;
  }
  // The 64 random bits of one counter (pure function of seed and counter).
  uint64_t bits(uint64_t counter) const;
  // Scalar draws for host-side code (shuffles, sampling); they advance the offset.
  double uniform();               // [0, 1)
  uint64_t randint(uint64_t n);   // [0, n)

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The process-wide generator used when none is passed.
Generator& default_generator();
void manual_seed(uint64_t seed);

// The tensor factories below return a tensor on `device`. The numbers are ALWAYS drawn on the host by
// the generator above and then moved: a draw gives the same values on every device for the same
// (seed, offset), so a CUDA run reproduces a CPU run's dropout masks and sampled queries exactly.
// NOTE: this costs one host fill and one host-to-device copy per draw; fine for dropout masks and
// initialisers, the only run-time users. A device-side fill of the same counters could replace it.

// Uniform in [low, high).
Tensor rand(const Shape& shape, DType dtype = DType::F32, Generator* gen = nullptr, double low = 0.0,
            double high = 1.0, Device device = Device::CPU);
// Normal(mean, std) by Box-Muller (two counters per element).
Tensor randn(const Shape& shape, DType dtype = DType::F32, Generator* gen = nullptr, double mean = 0.0,
             double std = 1.0, Device device = Device::CPU);
// 1 with probability p, else 0.
Tensor bernoulli(const Shape& shape, double p, DType dtype = DType::F32, Generator* gen = nullptr,
                 Device device = Device::CPU);
// Integers uniform in [low, high).
Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype = DType::I64,
               Generator* gen = nullptr, Device device = Device::CPU);

}  // namespace muxnet
