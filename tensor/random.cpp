// random.cpp — counter-based random fills (see random.h).
#include "tensor/random.h"

#include <cmath>

#include "tensor/device.h"
#include "tensor/iter.h"

namespace muxnet {

namespace {

// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline double to_unit_double(uint64_t b) { return double(b >> 11) * (1.0 / 9007199254740992.0); }  // 2^-53

// The generator to draw from; first checks the target device, so that a draw for a device that is not
// available throws before it advances the generator.
Generator& pick(Generator* gen, Device device, const char* who) {
  if (device != Device::CPU) require_device(device, who);
  return gen ? *gen : default_generator();
}

// Fills a fresh contiguous host tensor element by element (value(i) must be a pure function of i), then
// moves it to device: the values never depend on where the tensor ends up.
template <typename ValueFn>
Tensor fill_elements(const Shape& shape, DType dtype, Device device, ValueFn value) {
  Tensor out = empty(shape, dtype);
  const int64_t n = out.numel();
  auto run = [&](auto* p) {
    parallel_for(n, 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = static_cast<std::remove_pointer_t<decltype(p)>>(value(i));
    });
  };
  switch (dtype) {
    case DType::F32: run(out.data<float>()); break;
    case DType::F64: run(out.data<double>()); break;
    case DType::I32: run(out.data<int32_t>()); break;
    case DType::I64: run(out.data<int64_t>()); break;
    default: MUXNET_FAIL("random: unsupported dtype ", dtype);
  }
  return device == Device::CPU ? out : out.to(device);
}

}  // namespace

uint64_t Generator::bits(uint64_t counter) const {
  return mix64(mix64(seed_ + 0x9e3779b97f4a7c15ULL) + counter * 0x9e3779b97f4a7c15ULL);
}

double Generator::uniform() { return to_unit_double(bits(advance(1))); }

uint64_t Generator::randint(uint64_t n) {
  MUXNET_CHECK(n > 0, "Generator::randint: empty range");
  // Multiply-shift maps 64 random bits to [0, n) with negligible bias for n << 2^64.
  return uint64_t((__uint128_t(bits(advance(1))) * n) >> 64);
}

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

Tensor rand(const Shape& shape, DType dtype, Generator* gen, double low, double high, Device device) {
  MUXNET_CHECK(is_floating(dtype), "rand: dtype must be f32 or f64, got ", dtype);
  MUXNET_CHECK(low <= high, "rand: low ", low, " > high ", high);
  Generator& g = pick(gen, device, "rand");
  uint64_t base = g.advance(uint64_t(shape.numel()));
  return fill_elements(shape, dtype, device, [&](int64_t i) {
    double u = to_unit_double(g.bits(base + uint64_t(i)));
    double v = low + (high - low) * u;
    // Rounding to f32 can land exactly on `high`; keep the interval half-open.
    if (dtype == DType::F32 && float(v) >= float(high) && high > low) v = std::nextafter(float(high), float(low));
    return v;
  });
}

Tensor randn(const Shape& shape, DType dtype, Generator* gen, double mean, double std, Device device) {
  MUXNET_CHECK(is_floating(dtype), "randn: dtype must be f32 or f64, got ", dtype);
  MUXNET_CHECK(std >= 0, "randn: std must be >= 0, got ", std);
  Generator& g = pick(gen, device, "randn");
  uint64_t base = g.advance(2 * uint64_t(shape.numel()));
  return fill_elements(shape, dtype, device, [&](int64_t i) {
    double u1 = 1.0 - to_unit_double(g.bits(base + 2 * uint64_t(i)));  // (0, 1]: log stays finite
    double u2 = to_unit_double(g.bits(base + 2 * uint64_t(i) + 1));
    return mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  });
}

Tensor bernoulli(const Shape& shape, double p, DType dtype, Generator* gen, Device device) {
  MUXNET_CHECK(p >= 0.0 && p <= 1.0, "bernoulli: p must be in [0, 1], got ", p);
  Generator& g = pick(gen, device, "bernoulli");
  uint64_t base = g.advance(uint64_t(shape.numel()));
  return fill_elements(shape, dtype, device, [&](int64_t i) {
    return to_unit_double(g.bits(base + uint64_t(i))) < p ? 1.0 : 0.0;
  });
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype, Generator* gen, Device device) {
  MUXNET_CHECK(low < high, "randint: empty range [", low, ", ", high, ")");
  Generator& g = pick(gen, device, "randint");
  uint64_t base = g.advance(uint64_t(shape.numel()));
  const uint64_t span = uint64_t(high - low);
  return fill_elements(shape, dtype, device, [&](int64_t i) {
    return double(low + int64_t((__uint128_t(g.bits(base + uint64_t(i))) * span) >> 64));
  });
}

}  // namespace muxnet
