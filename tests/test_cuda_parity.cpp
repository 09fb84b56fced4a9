// test_cuda_parity.cpp — every kernel (OpId) and every differentiable function on the CUDA device
// against the CPU, which is the oracle: the same seeded inputs go to both devices, and each result and
// gradient must match within atol + rtol * |cpu| (tolerances named in tests/cuda_test_util.h, matmul's
// scaled with sqrt(K)).
//
// The inputs are chosen to break GPU kernels: odd sizes that are not multiples of 32, rows longer than
// 1024 (softmax, layer_norm, embedding), empty tensors wherever the CPU accepts them (a zero-block launch
// is an error on a GPU), special values (inf, NaN, -0) where the CPU kernel documents their result,
// ties (argmax, max, pooling: the first wins), repeated indices (atomics), and non-contiguous inputs —
// transposed, sliced with a step and an offset, expanded (stride 0) — for every op that takes strides.
// Non-contiguous GPU arguments are built from moved bytes plus views (cuda_test_util.h), never by a GPU
// kernel, so a failure points at the op under test.
//
// Every GPU test is tagged [cuda]; on a machine without a usable CUDA device the test runner lists
// them as skipped with the reason. MUXNET_EMULATE_CUDA=1 runs them on host memory with the CPU kernels
// (tensor/device_emulation.cpp): that checks the device plumbing only, not the CUDA kernels.
//
// Two tests run everywhere (no GPU needed) and keep this file complete: every OpId and every function
// declared in autograd/functions.h must be listed below with the [cuda] test that covers it. A third,
// in CUDA builds, requires a CUDA kernel for every OpId.
//
// What this is not: model-level or training-step parity (tests/test_cuda_models.cpp), nor a test of
// the CPU kernels' own accuracy (tests/test_elementwise.cpp and friends).
#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>

#include "nn/optim.h"
#include "nn/schedule.h"
#include "tensor/ops.h"
#include "tests/cuda_test_util.h"

using namespace muxnet;
using namespace muxnet::test;

// ---------------------------------------------------------------- the [cuda] test cases
#define T_COPY "cuda parity: copy (casts, broadcasting, strided destinations) and fill"
#define T_UNARY "cuda parity: unary ops and their backward kernels"
#define T_BINARY "cuda parity: binary ops with broadcasting, in place, and scalar ops"
#define T_SELECT "cuda parity: compare, where, masked_fill"
#define T_REDUCE "cuda parity: reductions and argmax"
#define T_MATMUL "cuda parity: matmul"
#define T_SOFTMAX "cuda parity: softmax and log_softmax, forward and backward"
#define T_LAYERNORM "cuda parity: layer_norm, forward and backward"
#define T_INDEX "cuda parity: embedding, index_select / index_add, gather / scatter_add"
#define T_CONV "cuda parity: im2col, col2im, max_pool2d and its backward"
#define T_OPTIM "cuda parity: sgd_step, adamw_step, sum_squares"
#define T_AG_ELEM "cuda autograd parity: elementwise functions"
#define T_AG_REDUCE "cuda autograd parity: reductions"
#define T_AG_MATMUL "cuda autograd parity: matmul and linear"
#define T_AG_SHAPE "cuda autograd parity: views, joins, index_select, gather, device moves"
#define T_AG_NORM "cuda autograd parity: softmax, layer_norm, embedding, dropout"
#define T_AG_LOSS "cuda autograd parity: losses and attention"
#define T_AG_CONV "cuda autograd parity: conv2d and max_pool2d"

namespace {

// Which [cuda] test covers each kernel. Adding an OpId without adding it here fails the coverage test.
struct OpCoverage {
  OpId op;
  const char* test;
};
const OpCoverage kOpCoverage[] = {
    {OpId::copy, T_COPY},
    {OpId::fill, T_COPY},
    {OpId::unary, T_UNARY},
    {OpId::unary_backward, T_UNARY},
    {OpId::binary, T_BINARY},
    {OpId::binary_scalar, T_BINARY},
    {OpId::compare, T_SELECT},
    {OpId::where, T_SELECT},
    {OpId::masked_fill, T_SELECT},
    {OpId::reduce, T_REDUCE},
    {OpId::argmax, T_REDUCE},
    {OpId::matmul, T_MATMUL},
    {OpId::softmax, T_SOFTMAX},
    {OpId::softmax_backward, T_SOFTMAX},
    {OpId::layer_norm, T_LAYERNORM},
    {OpId::layer_norm_backward, T_LAYERNORM},
    {OpId::embedding, T_INDEX},
    {OpId::embedding_backward, T_INDEX},
    {OpId::index_select, T_INDEX},
    {OpId::index_add, T_INDEX},
    {OpId::gather, T_INDEX},
    {OpId::scatter_add, T_INDEX},
    {OpId::im2col, T_CONV},
    {OpId::col2im, T_CONV},
    {OpId::max_pool2d, T_CONV},
    {OpId::max_pool2d_backward, T_CONV},
    {OpId::sgd_step, T_OPTIM},
    {OpId::adamw_step, T_OPTIM},
    {OpId::sum_squares, T_OPTIM},
};

// Which [cuda] test covers each function declared in autograd/functions.h (all overloads of a name).
struct FnCoverage {
  const char* function;
  const char* test;
};
const FnCoverage kFnCoverage[] = {
    {"neg", T_AG_ELEM},          {"exp", T_AG_ELEM},
    {"log", T_AG_ELEM},          {"sqrt", T_AG_ELEM},
    {"rsqrt", T_AG_ELEM},        {"tanh", T_AG_ELEM},
    {"sigmoid", T_AG_ELEM},      {"relu", T_AG_ELEM},
    {"gelu", T_AG_ELEM},         {"abs", T_AG_ELEM},
    {"add", T_AG_ELEM},          {"sub", T_AG_ELEM},
    {"mul", T_AG_ELEM},          {"div", T_AG_ELEM},
    {"maximum", T_AG_ELEM},      {"minimum", T_AG_ELEM},
    {"rsub", T_AG_ELEM},         {"rdiv", T_AG_ELEM},
    {"pow", T_AG_ELEM},          {"where", T_AG_ELEM},
    {"masked_fill", T_AG_ELEM},  {"sum", T_AG_REDUCE},
    {"mean", T_AG_REDUCE},       {"max", T_AG_REDUCE},
    {"min", T_AG_REDUCE},        {"argmax", T_AG_REDUCE},
    {"matmul", T_AG_MATMUL},     {"linear", T_AG_MATMUL},
    {"reshape", T_AG_SHAPE},     {"view", T_AG_SHAPE},
    {"flatten", T_AG_SHAPE},     {"transpose", T_AG_SHAPE},
    {"permute", T_AG_SHAPE},     {"narrow", T_AG_SHAPE},
    {"slice", T_AG_SHAPE},       {"select", T_AG_SHAPE},
    {"expand", T_AG_SHAPE},      {"squeeze", T_AG_SHAPE},
    {"unsqueeze", T_AG_SHAPE},   {"contiguous", T_AG_SHAPE},
    {"concat", T_AG_SHAPE},      {"stack", T_AG_SHAPE},
    {"split", T_AG_SHAPE},       {"index_select", T_AG_SHAPE},
    {"gather", T_AG_SHAPE},      {"softmax", T_AG_NORM},
    {"log_softmax", T_AG_NORM},  {"layer_norm", T_AG_NORM},
    {"embedding", T_AG_NORM},    {"dropout", T_AG_NORM},
    {"cross_entropy", T_AG_LOSS}, {"mse_loss", T_AG_LOSS},
    {"scaled_dot_product_attention", T_AG_LOSS},
    {"conv2d", T_AG_CONV},       {"max_pool2d", T_AG_CONV},
};

// The [cuda]-tagged test cases registered in this binary, by name.
std::set<std::string> registered_cuda_tests() {
  std::set<std::string> names;
  for (const Catch::TestCase& tc : Catch::getRegistryHub().getTestCaseRegistry().getAllTests()) {
    const auto& tags = tc.getTestCaseInfo().tags;
    if (std::find(tags.begin(), tags.end(), "cuda") != tags.end()) names.insert(tc.getTestCaseInfo().name);
  }
  return names;
}

const DType kFloatTypes[] = {DType::F32, DType::F64};
const DType kAllTypes[] = {DType::F32, DType::F64, DType::I32, DType::I64};

// Writes NaN into every `step`-th element (from `first`) of a contiguous floating CPU tensor.
void sprinkle_nan(const Tensor& t, int64_t step, int64_t first = 0) {
  if (!is_floating(t.dtype())) return;
  REQUIRE(t.is_contiguous());
  for (int64_t i = first; i < t.numel(); i += step) {
    if (t.dtype() == DType::F32) {
      t.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
    } else {
      t.data<double>()[i] = std::numeric_limits<double>::quiet_NaN();
    }
  }
}

// A CPU tensor of the given values (floating dtypes).
Tensor values(const std::vector<double>& v, DType dtype) { return from_vector<double>(v).to(dtype); }

// The layout of b paired with layout i of a, so that every layout of each operand is exercised.
const Arg& pick(const std::vector<Arg>& layouts, size_t i) { return layouts[i % layouts.size()]; }

std::string str(DType t) { return dtype_name(t); }

}  // namespace

// ================================================================ coverage (no GPU needed)

TEST_CASE("cuda parity coverage: every OpId has a [cuda] parity test", "[dispatch][parity-coverage]") {
  const std::set<std::string> tests = registered_cuda_tests();
  std::set<size_t> covered;
  for (const OpCoverage& c : kOpCoverage) {
    INFO("op " << op_name(c.op) << " is listed as covered by \"" << c.test << "\"");
    CHECK(covered.insert(size_t(c.op)).second);  // listed once
    CHECK(tests.count(c.test) == 1);             // by a registered [cuda] test
  }
  for (size_t i = 0; i < size_t(OpId::COUNT); ++i) {
    INFO("op " << op_name(OpId(i)) << " has no CUDA parity test: add one to tests/test_cuda_parity.cpp and list it "
               "in kOpCoverage");
    CHECK(covered.count(i) == 1);
  }
  CHECK(covered.size() == size_t(OpId::COUNT));
}

TEST_CASE("cuda parity coverage: every function of autograd/functions.h has a [cuda] parity test",
          "[dispatch][parity-coverage]") {
  const std::string path = std::string(MUXNET_SOURCE_DIR) + "/autograd/functions.h";
  std::ifstream in(path);
  REQUIRE(in.good());
  // Declarations start a line: "Tensor name(" or "std::vector<Tensor> name(" (operators excluded).
  const std::regex decl(R"(^\s*(?:Tensor|std::vector<Tensor>)\s+([A-Za-z_]\w*)\s*\()");
  std::set<std::string> declared;
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, decl)) declared.insert(m[1]);
  }
  REQUIRE(declared.size() >= 40);  // the parse found the header's functions
  std::map<std::string, std::string> listed;
  for (const FnCoverage& c : kFnCoverage) listed[c.function] = c.test;
  const std::set<std::string> tests = registered_cuda_tests();
  for (const std::string& fn : declared) {
    INFO("autograd function " << fn << " (autograd/functions.h) has no CUDA parity test: add one to "
                                       "tests/test_cuda_parity.cpp and list it in kFnCoverage");
    REQUIRE(listed.count(fn) == 1);
    CHECK(tests.count(listed[fn]) == 1);
  }
  for (const auto& [fn, test] : listed) {
    INFO("kFnCoverage lists " << fn << ", which autograd/functions.h does not declare");
    CHECK(declared.count(fn) == 1);
  }
}

#ifdef MUXNET_WITH_CUDA
// Fails until every kernel family's CUDA file registers its kernels (cuda/*.cu).
TEST_CASE("cuda backend: every OpId has a CUDA kernel registered", "[dispatch][parity-coverage]") {
  if (cuda_emulation_requested()) {
    WARN("MUXNET_EMULATE_CUDA is set: the CUDA column holds the CPU kernels, so this check proves nothing");
  }
  for (size_t i = 0; i < size_t(OpId::COUNT); ++i) {
    INFO("op " << op_name(OpId(i)) << " has no CUDA kernel");
    CHECK(has_kernel(OpId(i), Device::CUDA));
  }
}
#endif

// ================================================================ kernels through the op layer

TEST_CASE(T_COPY, "[cuda]") {
  SECTION("contiguous() of every layout and dtype") {
    for (DType dt : kAllTypes) {
      Tensor x = rnd({37, 45}, 1, dt, -100, 100);
      for (const Arg& a : layouts_of(x)) {
        CHECK_PARITY("contiguous " << str(dt) << " from " << a.layout, a.on(kGpu).contiguous(),
                     a.on(Device::CPU).contiguous(), tol_exact());
      }
      Tensor x4 = rnd({3, 4, 5, 6}, 2, dt, -100, 100);
      Tensor g = on(kGpu, x4).permute({2, 0, 3, 1}), c = x4.permute({2, 0, 3, 1});
      CHECK_PARITY("contiguous of a 4-d permutation " << str(dt), g.contiguous(), c.contiguous(), tol_exact());
    }
  }
  SECTION("dtype casts between every pair, from every layout") {
    for (DType src : kAllTypes) {
      for (DType dst : kAllTypes) {
        // Fractions and negatives: float -> int truncates toward zero, f64 -> f32 rounds to nearest.
        Tensor x = rnd({19, 23}, 3, src, -300, 300);
        for (const Arg& a : layouts_of(x)) {
          CHECK_PARITY("cast " << str(src) << " -> " << str(dst) << " from " << a.layout, a.on(kGpu).to(dst),
                       a.on(Device::CPU).to(dst), tol_exact());
        }
      }
    }
  }
  SECTION("broadcast sources into strided destinations of every dtype, with casts, from either device") {
    const Shape shape{37, 45};
    const std::vector<std::pair<Tensor, std::string>> sources = {
        {rnd({1, 45}, 4, DType::F32, -50, 50), "(1, 45) f32"}, {rnd({37, 1}, 5, DType::I64, -50, 50), "(37, 1) i64"},
        {rnd({45}, 6, DType::F64, -50, 50), "(45) f64"},       {scalar_tensor(-2.75), "0-d f32"},
        {rnd({37, 45}, 7, DType::I32, -50, 50), "(37, 45) i32"}, {rnd({37, 45}, 8, DType::F64, -50, 50), "(37, 45) f64"}};
    for (DType dt : kAllTypes) {
      for (const Arg& dst : layouts_of(zeros(shape, dt))) {
        for (const auto& [src, name] : sources) {
          Tensor gb = on(kGpu, dst.base), cb = on(Device::CPU, dst.base);
          dst.view(gb).copy_(on(kGpu, src));
          dst.view(cb).copy_(src);
          // The whole base: elements between the destination's strides must be untouched.
          CHECK_PARITY("copy_ of " << name << " into " << str(dt) << " " << dst.layout, gb, cb, tol_exact());
          Tensor hb = on(kGpu, dst.base);
          dst.view(hb).copy_(src);  // a host source: moved to the device first
          CHECK_PARITY("copy_ of host " << name << " into " << str(dt) << " " << dst.layout, hb, cb, tol_exact());
        }
      }
    }
  }
  SECTION("expanded sources, large and empty tensors") {
    Tensor x = rnd({1, 7, 1}, 8);
    Arg e = expanded_arg(x, {5, 7, 9});
    CHECK_PARITY("contiguous of an expanded view", e.on(kGpu).contiguous(), e.on(Device::CPU).contiguous(),
                 tol_exact());
    CHECK_PARITY("cast of an expanded view", e.on(kGpu).to(DType::F64), e.on(Device::CPU).to(DType::F64),
                 tol_exact());
    Tensor big = rnd({(1 << 20) + 3}, 9);
    Arg s = strided_arg(big);
    CHECK_PARITY("contiguous of 2^20 + 3 strided elements", s.on(kGpu).contiguous(), s.on(Device::CPU).contiguous(),
                 tol_exact());
    CHECK_PARITY("cast of 2^20 + 3 elements", on(kGpu, big).to(DType::I64), big.to(DType::I64), tol_exact());
    for (const Shape& es : {Shape{0, 5}, Shape{4, 0, 3}}) {
      Tensor z = zeros(es);
      CHECK_PARITY("clone of empty " << es, on(kGpu, z).transpose(0, 1).contiguous(), z.transpose(0, 1).contiguous(),
                   tol_exact());
      CHECK_PARITY("cast of empty " << es, on(kGpu, z).to(DType::I32), z.to(DType::I32), tol_exact());
    }
  }
  SECTION("fill of every dtype into every layout") {
    for (DType dt : kAllTypes) {
      std::vector<double> fills = {-7.0, 3.0};
      if (is_floating(dt)) fills = {2.5, -INFINITY, NAN, 1e-30};
      Tensor x = rnd({29, 33}, 10, dt, -50, 50);
      for (const Arg& a : layouts_of(x)) {
        for (double v : fills) {
          Tensor gb = on(kGpu, a.base), cb = on(Device::CPU, a.base);
          a.view(gb).fill_(v);
          a.view(cb).fill_(v);
          CHECK_PARITY("fill_(" << v << ") " << str(dt) << " " << a.layout, gb, cb, tol_exact());
        }
      }
      CHECK_PARITY("full " << str(dt), full({3, 1031}, 5.0, dt, kGpu), full({3, 1031}, 5.0, dt), tol_exact());
      CHECK_PARITY("ones " << str(dt), ones({0, 4}, dt, kGpu), ones({0, 4}, dt), tol_exact());
    }
  }
}

namespace {

const UnaryOp kUnaryOps[] = {UnaryOp::Neg,  UnaryOp::Exp,     UnaryOp::Log,  UnaryOp::Sqrt, UnaryOp::Rsqrt,
                             UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Abs};
const char* const kUnaryNames[] = {"neg", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "abs"};
static_assert(sizeof(kUnaryOps) / sizeof(kUnaryOps[0]) == size_t(UnaryOp::COUNT), "every UnaryOp");

Tol unary_tol(UnaryOp op, DType dt) {
  switch (op) {
    case UnaryOp::Neg:
    case UnaryOp::Abs:
    case UnaryOp::Relu: return tol_exact();
    case UnaryOp::Sqrt: return tol_arith(dt);  // correctly rounded on both sides
    default: return tol_transcendental(dt);
  }
}

// The values every unary kernel must map like the CPU does (see tensor/cpu/vec_math.h).
const std::vector<double> kSpecials = {0.0,   -0.0,  1.0,    -1.0,  INFINITY, -INFINITY, NAN,  1e-20, -1e-20,
                                       1e-40, 30.0,  -30.0,  88.0,  -88.0,    100.0,     -100.0, 0.5, -0.7518,
                                       1e30,  -1e30, 5e-5,   -5e-5, 15.0,     -15.0};

}  // namespace

TEST_CASE(T_UNARY, "[cuda]") {
  SECTION("every UnaryOp, f32 and f64, every layout, specials, large and empty") {
    for (size_t k = 0; k < size_t(UnaryOp::COUNT); ++k) {
      const UnaryOp op = kUnaryOps[k];
      const bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt;
      for (DType dt : kFloatTypes) {
        const Tol tol = unary_tol(op, dt);
        Tensor x = positive ? rnd({29, 67}, 20 + k, dt, 0.01, 5.0) : rnd({29, 67}, 20 + k, dt, -6.0, 6.0);
        for (const Arg& a : layouts_of(x)) {
          CHECK_PARITY(kUnaryNames[k] << " " << str(dt) << " " << a.layout, ops::unary(op, a.on(kGpu)),
                       ops::unary(op, a.on(Device::CPU)), tol);
        }
        Tensor s = values(kSpecials, dt);
        CHECK_PARITY(kUnaryNames[k] << " of special values " << str(dt), ops::unary(op, on(kGpu, s)),
                     ops::unary(op, s), tol);
        Tensor big = rnd({100003}, 30 + k, dt, positive ? 0.01 : -6.0, 6.0);
        CHECK_PARITY(kUnaryNames[k] << " of 100003 elements " << str(dt), ops::unary(op, on(kGpu, big)),
                     ops::unary(op, big), tol);
        Tensor e = zeros({0, 3}, dt);
        CHECK_PARITY(kUnaryNames[k] << " of an empty tensor", ops::unary(op, on(kGpu, e)), ops::unary(op, e), tol);
        Tensor z = scalar_tensor(0.75, dt);
        CHECK_PARITY(kUnaryNames[k] << " of a 0-d tensor", ops::unary(op, on(kGpu, z)), ops::unary(op, z), tol);
      }
      if (op == UnaryOp::Neg || op == UnaryOp::Abs) {
        for (DType dt : {DType::I32, DType::I64}) {
          Tensor x = rnd({29, 67}, 40 + k, dt, -1000, 1000);
          for (const Arg& a : layouts_of(x)) {
            CHECK_PARITY(kUnaryNames[k] << " " << str(dt) << " " << a.layout, ops::unary(op, a.on(kGpu)),
                         ops::unary(op, a.on(Device::CPU)), tol_exact());
          }
        }
      }
    }
  }
  SECTION("every UnaryGradOp, f32 and f64, every layout of grad_out and the saved tensor") {
    const UnaryGradOp grad_ops[] = {UnaryGradOp::Relu, UnaryGradOp::Gelu, UnaryGradOp::Tanh, UnaryGradOp::Sigmoid};
    const char* const names[] = {"relu_backward", "gelu_backward", "tanh_backward", "sigmoid_backward"};
    static_assert(sizeof(grad_ops) / sizeof(grad_ops[0]) == size_t(UnaryGradOp::COUNT), "every UnaryGradOp");
    for (size_t k = 0; k < size_t(UnaryGradOp::COUNT); ++k) {
      const UnaryGradOp op = grad_ops[k];
      for (DType dt : kFloatTypes) {
        // relu: exact zeros in x (gradient 0 there); gelu: values around its derivative's zero.
        Tensor x = op == UnaryGradOp::Relu ? rnd_ties({31, 53}, 50 + k, dt) : rnd({31, 53}, 50 + k, dt, -5.0, 5.0);
        Tensor saved = op == UnaryGradOp::Tanh ? ops::tanh(x) : op == UnaryGradOp::Sigmoid ? ops::sigmoid(x) : x;
        Tensor g = rnd({31, 53}, 60 + k, dt);
        const Tol tol = op == UnaryGradOp::Relu ? tol_exact() : tol_transcendental(dt);
        const std::vector<Arg> gl = layouts_of(g), sl = layouts_of(saved);
        for (size_t i = 0; i < gl.size(); ++i) {
          CHECK_PARITY(names[k] << " " << str(dt) << " grad_out " << gl[i].layout << ", saved " << pick(sl, i + 1).layout,
                       ops::unary_backward(op, gl[i].on(kGpu), pick(sl, i + 1).on(kGpu)),
                       ops::unary_backward(op, gl[i].on(Device::CPU), pick(sl, i + 1).on(Device::CPU)), tol);
        }
        Tensor s = values(kSpecials, dt);
        Tensor ss = op == UnaryGradOp::Tanh ? ops::tanh(s) : op == UnaryGradOp::Sigmoid ? ops::sigmoid(s) : s;
        Tensor gs = rnd(s.shape(), 70 + k, dt);
        CHECK_PARITY(names[k] << " of special values " << str(dt), ops::unary_backward(op, on(kGpu, gs), on(kGpu, ss)),
                     ops::unary_backward(op, gs, ss), tol);
        Tensor e = zeros({5, 0}, dt);
        CHECK_PARITY(names[k] << " of an empty tensor", ops::unary_backward(op, on(kGpu, e), on(kGpu, e)),
                     ops::unary_backward(op, e, e), tol);
      }
    }
  }
}

namespace {

const BinaryOp kBinaryOps[] = {BinaryOp::Add,     BinaryOp::Sub,    BinaryOp::Mul,
                               BinaryOp::Div,     BinaryOp::Maximum, BinaryOp::Minimum};
const char* const kBinaryNames[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
static_assert(sizeof(kBinaryOps) / sizeof(kBinaryOps[0]) == size_t(BinaryOp::COUNT), "every BinaryOp");

// Operand shapes: equal, trailing broadcast, both sides broadcast, rank broadcast, 0-d, empty.
const std::vector<std::pair<Shape, Shape>> kBroadcasts = {
    {{29, 67}, {29, 67}}, {{29, 67}, {67}},   {{29, 1}, {1, 67}}, {{5, 1, 7}, {3, 1}},
    {{4, 33}, {}},        {{}, {4, 33}},      {{}, {}},           {{0, 7}, {1, 7}},
    {{3, 0}, {3, 1}},     {{2, 3, 4, 5}, {3, 1, 5}}};

// Operands for op: divisors away from 0; maximum/minimum get ties and NaNs.
std::pair<Tensor, Tensor> binary_operands(BinaryOp op, DType dt, const Shape& sa, const Shape& sb, uint64_t seed) {
  if (is_integral(dt)) return {rnd(sa, seed, dt, -50, 50), rnd(sb, seed + 1, dt, -50, 50)};
  if (op == BinaryOp::Maximum || op == BinaryOp::Minimum) {
    Tensor a = rnd_ties(sa, seed, dt), b = rnd_ties(sb, seed + 1, dt);
    sprinkle_nan(a, 7, 2);
    sprinkle_nan(b, 11, 5);
    return {a, b};
  }
  Tensor a = rnd(sa, seed, dt), b = rnd(sb, seed + 1, dt);
  if (op == BinaryOp::Div) b = ops::add(ops::mul(ops::unary(UnaryOp::Abs, b), 2.0), 0.25);
  return {a, b};
}

const ScalarOp kScalarOps[] = {ScalarOp::Add, ScalarOp::Sub,     ScalarOp::RSub,   ScalarOp::Mul,  ScalarOp::Div,
                               ScalarOp::RDiv, ScalarOp::Pow, ScalarOp::Maximum, ScalarOp::Minimum};
const char* const kScalarNames[] = {"add", "sub", "rsub", "mul", "div", "rdiv", "pow", "maximum", "minimum"};
static_assert(sizeof(kScalarOps) / sizeof(kScalarOps[0]) == size_t(ScalarOp::COUNT), "every ScalarOp");

}  // namespace

TEST_CASE(T_BINARY, "[cuda]") {
  SECTION("every BinaryOp and dtype, broadcasting, every layout") {
    for (size_t k = 0; k < size_t(BinaryOp::COUNT); ++k) {
      const BinaryOp op = kBinaryOps[k];
      for (DType dt : kAllTypes) {
        if (op == BinaryOp::Div && is_integral(dt)) continue;  // true division: floating only
        const Tol tol = op == BinaryOp::Div ? tol_arith(dt) : tol_exact();
        uint64_t seed = 100 + 10 * k;
        for (const auto& [sa, sb] : kBroadcasts) {
          auto [a, b] = binary_operands(op, dt, sa, sb, seed += 2);
          const std::vector<Arg> al = layouts_of(a), bl = layouts_of(b);
          for (size_t i = 0; i < std::max(al.size(), bl.size()); ++i) {
            const Arg &x = pick(al, i), &y = pick(bl, i + 1);
            CHECK_PARITY(kBinaryNames[k] << " " << str(dt) << " a " << sa << " " << x.layout << ", b " << sb << " "
                                         << y.layout,
                         ops::binary(op, x.on(kGpu), y.on(kGpu)), ops::binary(op, x.on(Device::CPU), y.on(Device::CPU)),
                         tol);
          }
        }
        // An explicitly expanded operand (stride 0 in a dim of size > 1).
        auto [a, b] = binary_operands(op, dt, {29, 1}, {29, 67}, seed + 50);
        Arg ea = expanded_arg(a, {29, 67});
        CHECK_PARITY(kBinaryNames[k] << " " << str(dt) << " with an expanded a",
                     ops::binary(op, ea.on(kGpu), on(kGpu, b)), ops::binary(op, ea.on(Device::CPU), b), tol);
        // Many elements (grid-stride loops).
        auto [la, lb] = binary_operands(op, dt, {1031, 257}, {257}, seed + 60);
        CHECK_PARITY(kBinaryNames[k] << " " << str(dt) << " of (1031, 257) and (257)",
                     ops::binary(op, on(kGpu, la), on(kGpu, lb)), ops::binary(op, la, lb), tol);
        // In place into a strided destination (a (op)= b), b broadcast; the whole base is compared.
        auto [d, s] = binary_operands(op, dt, {29, 67}, {1, 67}, seed + 70);
        for (const Arg& dst : layouts_of(d)) {
          Tensor gb = on(kGpu, dst.base), cb = on(Device::CPU, dst.base);
          ops::binary_(op, dst.view(gb), on(kGpu, s));
          ops::binary_(op, dst.view(cb), s);
          CHECK_PARITY(kBinaryNames[k] << "_ in place " << str(dt) << " into " << dst.layout, gb, cb, tol);
        }
      }
    }
  }
  SECTION("every ScalarOp and dtype, every layout, empty and 0-d") {
    for (size_t k = 0; k < size_t(ScalarOp::COUNT); ++k) {
      const ScalarOp op = kScalarOps[k];
      const bool float_only = op == ScalarOp::Div || op == ScalarOp::RDiv || op == ScalarOp::Pow;
      for (DType dt : kAllTypes) {
        if (float_only && is_integral(dt)) continue;
        // Scalars exactly representable in f32, so both sides see the same operand.
        std::vector<double> scalars = is_integral(dt) ? std::vector<double>{3, -7} : std::vector<double>{2.5, -0.75};
        if (op == ScalarOp::Pow) scalars = {2.0, 3.0, 0.5, -1.0, 0.0, 1.0, -1.5, 2.25};
        Tol tol = tol_exact();
        if (op == ScalarOp::Div || op == ScalarOp::RDiv) tol = tol_arith(dt);
        if (op == ScalarOp::Pow) tol = tol_transcendental(dt);
        for (double s : scalars) {
          // Fractional exponents of negative numbers are NaN on both sides; keep most inputs positive.
          const bool fractional = op == ScalarOp::Pow && s != std::trunc(s);
          Tensor x = is_integral(dt) ? rnd({23, 41}, 200 + k, dt, -1000, 1000)
                                     : rnd({23, 41}, 200 + k, dt, fractional ? -0.2 : -3.0, 3.0);
          if (op == ScalarOp::Maximum || op == ScalarOp::Minimum) sprinkle_nan(x, 13, 1);
          for (const Arg& a : layouts_of(x)) {
            CHECK_PARITY(kScalarNames[k] << "(x, " << s << ") " << str(dt) << " " << a.layout,
                         ops::binary_scalar(op, a.on(kGpu), s), ops::binary_scalar(op, a.on(Device::CPU), s), tol);
          }
          Tensor e = zeros({0, 9}, dt), z = rnd({}, 300 + k, dt, 1, 3);
          CHECK_PARITY(kScalarNames[k] << " of an empty tensor", ops::binary_scalar(op, on(kGpu, e), s),
                       ops::binary_scalar(op, e, s), tol);
          CHECK_PARITY(kScalarNames[k] << " of a 0-d tensor", ops::binary_scalar(op, on(kGpu, z), s),
                       ops::binary_scalar(op, z, s), tol);
        }
      }
    }
  }
}

namespace {
const CompareOp kCompareOps[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge};
const char* const kCompareNames[] = {"eq", "ne", "lt", "le", "gt", "ge"};
static_assert(sizeof(kCompareOps) / sizeof(kCompareOps[0]) == size_t(CompareOp::COUNT), "every CompareOp");
}  // namespace

TEST_CASE(T_SELECT, "[cuda]") {
  SECTION("every CompareOp and dtype, with ties, NaN, broadcasting and every layout") {
    for (size_t k = 0; k < size_t(CompareOp::COUNT); ++k) {
      for (DType dt : kAllTypes) {
        uint64_t seed = 400 + 20 * k;
        for (const auto& [sa, sb] : kBroadcasts) {
          Tensor a = rnd_ties(sa, seed++, dt), b = rnd_ties(sb, seed++, dt);
          sprinkle_nan(a, 9, 4);
          const std::vector<Arg> al = layouts_of(a), bl = layouts_of(b);
          for (size_t i = 0; i < std::max(al.size(), bl.size()); ++i) {
            const Arg &x = pick(al, i), &y = pick(bl, i + 1);
            CHECK_PARITY(kCompareNames[k] << " " << str(dt) << " a " << sa << " " << x.layout << ", b " << sb << " "
                                          << y.layout,
                         ops::compare(kCompareOps[k], x.on(kGpu), y.on(kGpu)),
                         ops::compare(kCompareOps[k], x.on(Device::CPU), y.on(Device::CPU)), tol_exact());
          }
        }
      }
    }
  }
  SECTION("where: any condition dtype (NaN is true), three-way broadcasting, every layout") {
    const std::vector<std::array<Shape, 3>> shapes = {{Shape{29, 1}, Shape{1, 67}, Shape{29, 67}},
                                                      {Shape{67}, Shape{29, 67}, Shape{}},
                                                      {Shape{29, 67}, Shape{29, 67}, Shape{29, 67}},
                                                      {Shape{0, 4}, Shape{1, 4}, Shape{4}},
                                                      {Shape{}, Shape{3, 1, 5}, Shape{3, 7, 1}}};
    uint64_t seed = 600;
    for (DType cdt : kAllTypes) {
      for (DType dt : kAllTypes) {
        for (const auto& s : shapes) {
          Tensor c = rnd_ties(s[0], seed++, cdt, 0, 2);
          sprinkle_nan(c, 5, 1);
          Tensor a = rnd(s[1], seed++, dt, -100, 100), b = rnd(s[2], seed++, dt, -100, 100);
          const std::vector<Arg> cl = layouts_of(c), al = layouts_of(a), bl = layouts_of(b);
          for (size_t i = 0; i < 4; ++i) {
            const Arg &x = pick(cl, i), &y = pick(al, i + 1), &z = pick(bl, i + 2);
            CHECK_PARITY("where cond " << str(cdt) << " " << s[0] << " " << x.layout << ", a " << str(dt) << " "
                                       << s[1] << " " << y.layout << ", b " << s[2] << " " << z.layout,
                         ops::where(x.on(kGpu), y.on(kGpu), z.on(kGpu)),
                         ops::where(x.on(Device::CPU), y.on(Device::CPU), z.on(Device::CPU)), tol_exact());
          }
        }
      }
    }
  }
  SECTION("masked_fill: broadcast masks of any dtype, -inf and integer values, every layout") {
    uint64_t seed = 700;
    for (DType dt : kAllTypes) {
      const std::vector<double> fills = is_floating(dt) ? std::vector<double>{-INFINITY, 1e4, NAN}
                                                        : std::vector<double>{-3, 1000};
      for (const Shape& ms : {Shape{1, 67}, Shape{29, 1}, Shape{29, 67}, Shape{}, Shape{67}}) {
        for (DType mdt : {DType::F32, DType::I64, DType::I32}) {
          Tensor x = rnd({29, 67}, seed++, dt, -100, 100);
          Tensor m = rnd_ties(ms, seed++, mdt, 0, 2);
          const std::vector<Arg> xl = layouts_of(x), ml = layouts_of(m);
          for (double v : fills) {
            for (size_t i = 0; i < xl.size(); ++i) {
              const Arg &a = xl[i], &b = pick(ml, i + 1);
              CHECK_PARITY("masked_fill(" << v << ") " << str(dt) << " " << a.layout << ", mask " << str(mdt) << " "
                                          << ms << " " << b.layout,
                           ops::masked_fill(a.on(kGpu), b.on(kGpu), v),
                           ops::masked_fill(a.on(Device::CPU), b.on(Device::CPU), v), tol_exact());
            }
          }
        }
      }
      Tensor e = zeros({0, 5}, dt), em = ones({5}, DType::I64);
      CHECK_PARITY("masked_fill of an empty tensor", ops::masked_fill(on(kGpu, e), on(kGpu, em), 1.0),
                   ops::masked_fill(e, em, 1.0), tol_exact());
    }
  }
}

namespace {

const ReduceOp kReduceOps[] = {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min};
const char* const kReduceNames[] = {"sum", "mean", "max", "min"};
static_assert(sizeof(kReduceOps) / sizeof(kReduceOps[0]) == size_t(ReduceOp::COUNT), "every ReduceOp");

std::string dims_str(const std::vector<int>& dims) {
  if (dims.empty()) return "all dims";
  std::ostringstream os;
  os << "dims {";
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  os << "}";
  return os.str();
}

// How many elements each output of reducing shape over dims sums.
int64_t reduced_count(const Shape& shape, const std::vector<int>& dims) {
  if (dims.empty()) return shape.numel();
  int64_t n = 1;
  for (int d : dims) n *= shape[normalize_dim(d, shape.ndim(), "reduced_count")];
  return n;
}

Tol reduce_tol(ReduceOp op, DType dt, int64_t n, double scale) {
  if (op == ReduceOp::Max || op == ReduceOp::Min || is_integral(dt)) return tol_exact();
  return tol_sum(dt, n, scale);
}

}  // namespace

TEST_CASE(T_REDUCE, "[cuda]") {
  SECTION("every ReduceOp over every dim set of a 3-d tensor, every dtype and layout") {
    const std::vector<std::vector<int>> dim_sets = {{0}, {1}, {2}, {-1}, {0, 2}, {0, 1}, {1, 2}, {}};
    const Shape shape{6, 7, 33};
    uint64_t seed = 800;
    for (size_t k = 0; k < size_t(ReduceOp::COUNT); ++k) {
      const ReduceOp op = kReduceOps[k];
      for (DType dt : kAllTypes) {
        if (op == ReduceOp::Mean && is_integral(dt)) continue;
        // i32 sums wrap exactly as the CPU's i64 accumulation cast back to i32.
        Tensor x = dt == DType::I32 ? rnd(shape, seed++, dt, -(1 << 29), 1 << 29) : rnd(shape, seed++, dt, -100, 100);
        std::vector<Arg> args = layouts_of(x);
        args.push_back(transposed_arg(x, 0, 2));
        args.push_back(expanded_arg(rnd({1, 7, 33}, seed++, dt, -100, 100), shape));
        for (const Arg& a : args) {
          for (const auto& dims : dim_sets) {
            for (bool keepdim : {false, true}) {
              CHECK_PARITY(kReduceNames[k] << " " << str(dt) << " " << a.layout << " over " << dims_str(dims)
                                           << (keepdim ? " keepdim" : ""),
                           ops::reduce(op, a.on(kGpu), dims, keepdim), ops::reduce(op, a.on(Device::CPU), dims, keepdim),
                           reduce_tol(op, dt, reduced_count(shape, dims), 100));
            }
          }
        }
      }
    }
  }
  SECTION("long rows, long columns, a large total, NaN, empty and 0-d") {
    uint64_t seed = 900;
    for (size_t k = 0; k < size_t(ReduceOp::COUNT); ++k) {
      const ReduceOp op = kReduceOps[k];
      for (DType dt : kFloatTypes) {
        const std::vector<std::pair<Shape, std::vector<int>>> cases = {
            {{3, 5000}, {1}}, {{3, 5000}, {0}}, {{3, 5000}, {}}, {{2000, 37}, {0}}, {{250007}, {}}, {{1, 1, 1}, {1}}};
        for (const auto& [shape, dims] : cases) {
          Tensor x = rnd(shape, seed++, dt);
          for (const Arg& a : {contiguous_arg(x), transposed_arg(x)}) {
            CHECK_PARITY(kReduceNames[k] << " " << str(dt) << " " << shape << " " << a.layout << " over "
                                         << dims_str(dims),
                         ops::reduce(op, a.on(kGpu), dims), ops::reduce(op, a.on(Device::CPU), dims),
                         reduce_tol(op, dt, reduced_count(shape, dims), 2));
          }
        }
        Tensor n = rnd({9, 40}, seed++, dt);
        sprinkle_nan(n, 97, 3);  // NaN in some rows only
        for (const std::vector<int>& dims : {std::vector<int>{1}, std::vector<int>{0}, std::vector<int>{}}) {
          CHECK_PARITY(kReduceNames[k] << " with NaN over " << dims_str(dims), ops::reduce(op, on(kGpu, n), dims),
                       ops::reduce(op, n, dims), reduce_tol(op, dt, 40, 2));
        }
        Tensor z = scalar_tensor(1.5, dt);
        CHECK_PARITY(kReduceNames[k] << " of a 0-d tensor", ops::reduce(op, on(kGpu, z), {}), ops::reduce(op, z, {}),
                     tol_exact());
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          // Over an empty dim: sum 0, mean NaN. Over a non-empty dim of an empty tensor: an empty result.
          for (const auto& [shape, dims] : std::vector<std::pair<Shape, std::vector<int>>>{
                   {{0, 5}, {0}}, {{4, 0}, {1}}, {{0, 5}, {}}, {{0, 5}, {1}}, {{3, 0, 2}, {0, 2}}}) {
            Tensor e = zeros(shape, dt);
            CHECK_PARITY(kReduceNames[k] << " of empty " << shape << " over " << dims_str(dims),
                         ops::reduce(op, on(kGpu, e), dims), ops::reduce(op, e, dims), tol_exact());
          }
        }
      }
    }
  }
  SECTION("argmax: first of ties, NaN wins, every dtype, dim and layout") {
    uint64_t seed = 1000;
    for (DType dt : kAllTypes) {
      const std::vector<std::pair<Shape, int>> cases = {{{7, 1030}, 1}, {{7, 1030}, 0}, {{7, 1030}, -1},
                                                        {{5, 6, 7}, 1}, {{5, 6, 7}, 0}, {{5, 6, 7}, 2},
                                                        {{1}, 0},       {{3, 1}, 1},    {{0, 4}, 1}};
      for (const auto& [shape, dim] : cases) {
        Tensor x = rnd_ties(shape, seed++, dt);  // values in [-3, 3]: many ties
        sprinkle_nan(x, 53, 7);
        for (const Arg& a : layouts_of(x)) {
          for (bool keepdim : {false, true}) {
            CHECK_PARITY("argmax " << str(dt) << " " << shape << " " << a.layout << " dim " << dim
                                   << (keepdim ? " keepdim" : ""),
                         ops::argmax(a.on(kGpu), dim, keepdim), ops::argmax(a.on(Device::CPU), dim, keepdim),
                         tol_exact());
          }
        }
      }
      Tensor big = rnd({2, 300001}, seed++, dt, -1000000, 1000000);
      CHECK_PARITY("argmax over 300001 " << str(dt), ops::argmax(on(kGpu, big), 1), ops::argmax(big, 1), tol_exact());
    }
  }
}

namespace {

// Restores the TF32 setting: parity needs full-precision f32 GEMMs (the default).
struct Tf32Off {
  bool prev = allow_tf32();
  Tf32Off() { set_allow_tf32(false); }
  ~Tf32Off() { set_allow_tf32(prev); }
};

}  // namespace

TEST_CASE(T_MATMUL, "[cuda]") {
  Tf32Off tf32_off;
  SECTION("2-d: awkward sizes, every transpose flag, transposed and strided operands, K = 0") {
    struct Mkn {
      int64_t m, k, n;
    };
    const Mkn sizes[] = {{33, 47, 29}, {1, 300, 1}, {65, 1, 70}, {128, 64, 96}, {17, 2000, 9}, {4, 0, 5}, {0, 5, 3}};
    uint64_t seed = 1100;
    for (DType dt : kFloatTypes) {
      for (const Mkn& s : sizes) {
        for (bool ta : {false, true}) {
          for (bool tb : {false, true}) {
            Tensor a = rnd(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, seed++, dt, -1, 1);
            Tensor b = rnd(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, seed++, dt, -1, 1);
            const std::vector<Arg> al = layouts_of(a), bl = layouts_of(b);
            for (size_t i = 0; i < al.size(); ++i) {
              const Arg &x = al[i], &y = pick(bl, i + 1);
              CHECK_PARITY("matmul " << str(dt) << " M=" << s.m << " K=" << s.k << " N=" << s.n
                                     << (ta ? " trans_a" : "") << (tb ? " trans_b" : "") << ", a " << x.layout
                                     << ", b " << y.layout,
                           ops::matmul(x.on(kGpu), y.on(kGpu), ta, tb),
                           ops::matmul(x.on(Device::CPU), y.on(Device::CPU), ta, tb), tol_matmul(dt, s.k));
            }
          }
        }
      }
    }
  }
  SECTION("batched: equal batches, a shared 2-d operand on either side, permuted batch dims") {
    uint64_t seed = 1200;
    for (DType dt : kFloatTypes) {
      struct Case {
        Shape a, b;
        bool ta, tb;
        int64_t k;
      };
      const std::vector<Case> cases = {
          {{3, 17, 40}, {3, 40, 23}, false, false, 40}, {{3, 40, 17}, {3, 23, 40}, true, true, 40},
          {{4, 9, 31}, {31, 12}, false, false, 31},     {{4, 9, 31}, {12, 31}, false, true, 31},
          {{4, 31, 9}, {31, 12}, true, false, 31},      {{17, 31}, {4, 31, 12}, false, false, 31},
          {{31, 17}, {4, 12, 31}, true, true, 31},      {{2, 3, 8, 20}, {2, 3, 20, 6}, false, false, 20},
          {{5, 1, 33}, {33, 65}, false, false, 33},     {{2, 0, 7}, {7, 3}, false, false, 7}};
      for (const Case& c : cases) {
        Tensor a = rnd(c.a, seed++, dt, -1, 1), b = rnd(c.b, seed++, dt, -1, 1);
        std::vector<Arg> al = {contiguous_arg(a), transposed_arg(a), strided_arg(a)};
        std::vector<Arg> bl = {contiguous_arg(b), transposed_arg(b), strided_arg(b, 0)};
        if (c.a.ndim() >= 3) al.push_back(transposed_arg(a, 0, 1));  // batch dims not in memory order
        for (size_t i = 0; i < al.size(); ++i) {
          const Arg &x = al[i], &y = pick(bl, i);
          CHECK_PARITY("batched matmul " << str(dt) << " a " << c.a << " " << x.layout << ", b " << c.b << " "
                                         << y.layout << (c.ta ? " trans_a" : "") << (c.tb ? " trans_b" : ""),
                       ops::matmul(x.on(kGpu), y.on(kGpu), c.ta, c.tb),
                       ops::matmul(x.on(Device::CPU), y.on(Device::CPU), c.ta, c.tb), tol_matmul(dt, c.k));
        }
      }
    }
  }
  SECTION("matmul_out: alpha and beta into a strided out (the columns past N must be untouched)") {
    uint64_t seed = 1300;
    for (DType dt : kFloatTypes) {
      for (double alpha : {1.0, 0.5, -2.0}) {
        for (double beta : {0.0, 1.0, -0.25}) {
          Tensor a = rnd({19, 37}, seed++, dt, -1, 1), b = rnd({37, 23}, seed++, dt, -1, 1);
          Tensor base = rnd({19, 28}, seed++, dt);
          Tensor gb = on(kGpu, base), cb = base.clone();
          ops::matmul_out(on(kGpu, a), on(kGpu, b), gb.narrow(1, 0, 23), false, false, alpha, beta);
          ops::matmul_out(a, b, cb.narrow(1, 0, 23), false, false, alpha, beta);
          CHECK_PARITY("matmul_out " << str(dt) << " alpha " << alpha << " beta " << beta, gb, cb,
                       tol_matmul(dt, 37, 2));
          // Batched, transposed operands, out a contiguous (B, M, N).
          Tensor a3 = rnd({3, 37, 19}, seed++, dt, -1, 1), b3 = rnd({3, 23, 37}, seed++, dt, -1, 1);
          Tensor o3 = rnd({3, 19, 23}, seed++, dt);
          Tensor go = on(kGpu, o3), co = o3.clone();
          ops::matmul_out(on(kGpu, a3), on(kGpu, b3), go, true, true, alpha, beta);
          ops::matmul_out(a3, b3, co, true, true, alpha, beta);
          CHECK_PARITY("batched matmul_out " << str(dt) << " alpha " << alpha << " beta " << beta, go, co,
                       tol_matmul(dt, 37, 2));
        }
      }
    }
  }
}

TEST_CASE(T_SOFTMAX, "[cuda]") {
  uint64_t seed = 1400;
  for (DType dt : kFloatTypes) {
    struct Case {
      Shape shape;
      double lo, hi;
      int64_t neg_inf_step;  // every n-th element -inf (0: none)
      bool full_row_neg_inf;
    };
    const std::vector<Case> cases = {{{37, 45}, -5, 5, 0, false},     {{3, 1500}, -5, 5, 0, false},
                                     {{2, 3, 1}, -5, 5, 0, false},    {{4, 1025}, -80, 80, 0, false},
                                     {{2, 4100}, -5, 5, 0, false},    {{13, 33}, -5, 5, 3, false},
                                     {{6, 70}, -5, 5, 0, true},       {{2, 5, 31}, 990, 1010, 0, false},
                                     {{0, 5}, -5, 5, 0, false},       {{5, 0}, -5, 5, 0, false},
                                     {{7}, -5, 5, 0, false}};
    for (const Case& c : cases) {
      Tensor x = rnd(c.shape, seed++, dt, c.lo, c.hi);
      if (c.neg_inf_step > 0 || c.full_row_neg_inf) {
        const int64_t C = c.shape.back();
        for (int64_t i = 0; i < x.numel(); ++i) {
          const bool masked = c.neg_inf_step > 0 ? i % c.neg_inf_step == 1 : i / C == 2;  // row 2 entirely
          if (!masked) continue;
          if (dt == DType::F32) x.data<float>()[i] = -INFINITY;
          else x.data<double>()[i] = -INFINITY;
        }
      }
      const int64_t C = c.shape.back();
      for (bool log : {false, true}) {
        const char* name = log ? "log_softmax" : "softmax";
        const Tol fwd = log ? Tol{tol_sum(dt, C, 1).atol * 4, 1e-5} : tol_transcendental(dt);
        const Tol bwd = tol_sum(dt, C, 4);
        for (const Arg& a : {contiguous_arg(x), transposed_arg(x)}) {
          Tensor g = log ? ops::log_softmax(a.on(kGpu)) : ops::softmax(a.on(kGpu));
          Tensor w = log ? ops::log_softmax(a.on(Device::CPU)) : ops::softmax(a.on(Device::CPU));
          CHECK_PARITY(name << " " << str(dt) << " " << c.shape << " values in [" << c.lo << ", " << c.hi << "] "
                            << a.layout,
                       g, w, fwd);
        }
        // The backward from identical inputs: the CPU's forward output and one upstream gradient.
        Tensor y = log ? ops::log_softmax(x) : ops::softmax(x);
        Tensor go = rnd(c.shape, seed++, dt);
        for (size_t i = 0; i < 2; ++i) {
          const Arg ga = i == 0 ? contiguous_arg(go) : transposed_arg(go);
          const Arg ya = i == 0 ? contiguous_arg(y) : strided_arg(y);
          Tensor gg = log ? ops::log_softmax_backward(ga.on(kGpu), ya.on(kGpu))
                          : ops::softmax_backward(ga.on(kGpu), ya.on(kGpu));
          Tensor gw = log ? ops::log_softmax_backward(ga.on(Device::CPU), ya.on(Device::CPU))
                          : ops::softmax_backward(ga.on(Device::CPU), ya.on(Device::CPU));
          CHECK_PARITY(name << "_backward " << str(dt) << " " << c.shape << " grad " << ga.layout << ", y " << ya.layout,
                       gg, gw, bwd);
        }
      }
    }
  }
}

TEST_CASE(T_LAYERNORM, "[cuda]") {
  uint64_t seed = 1500;
  for (DType dt : kFloatTypes) {
    struct Case {
      int64_t rows, cols;
      double offset, eps;
    };
    const std::vector<Case> cases = {{37, 45, 0, 1e-5},  {4, 1500, 0, 1e-5}, {3, 1, 0, 1e-5},    {3, 1, 0, 1e-3},
                                     {2000, 33, 0, 1e-5}, {9, 64, 30, 1e-5}, {5, 1025, -8, 1e-5}, {0, 8, 0, 1e-5}};
    for (const Case& c : cases) {
      const Shape shape{c.rows, c.cols};
      Tensor x = ops::add(rnd(shape, seed++, dt), c.offset);
      Tensor w = rnd({c.cols}, seed++, dt, 0.5, 1.5), b = rnd({c.cols}, seed++, dt, -0.5, 0.5);
      // grad_x = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)): two row sums of C terms; a large
      // offset costs the GPU's f32 (x - mean) a few ulps of x.
      const double scale = 1.0 + std::fabs(c.offset);
      const Tol gx_tol = dt == DType::F64 ? Tol{1e-11, 1e-11} : Tol{tol_sum(dt, c.cols, 4).atol * 4 * scale, 1e-4};
      for (int affine = 0; affine < 4; ++affine) {
        const Tensor wt = affine & 1 ? w : Tensor(), bt = affine & 2 ? b : Tensor();
        const std::string what = std::string(str(dt)) + " " + shape.str() + " offset " + std::to_string(c.offset) +
                                 " eps " + std::to_string(c.eps) + (wt.defined() ? " weight" : "") +
                                 (bt.defined() ? " bias" : "");
        for (const Arg& a : {contiguous_arg(x), transposed_arg(x)}) {
          ops::LayerNormResult g = ops::layer_norm(a.on(kGpu), on(kGpu, wt), on(kGpu, bt), c.eps);
          ops::LayerNormResult r = ops::layer_norm(a.on(Device::CPU), wt, bt, c.eps);
          const Tol ytol = dt == DType::F64 ? Tol{1e-12, 1e-12} : Tol{2e-5, 2e-5};
          CHECK_PARITY("layer_norm y " << what << " " << a.layout, g.y, r.y, ytol);
          CHECK_PARITY("layer_norm mean " << what, g.mean, r.mean, tol_sum(dt, c.cols, 8.0 / double(c.cols)));
          CHECK_PARITY("layer_norm rstd " << what, g.rstd, r.rstd, dt == DType::F64 ? Tol{1e-12, 1e-12} : Tol{1e-6, 2e-5});
        }
        // The backward kernel, called directly: grad_x is written, grad_w / grad_b accumulate (+=) into
        // what they hold. Inputs are the CPU forward's statistics, on both devices.
        ops::LayerNormResult r = ops::layer_norm(x, wt, bt, c.eps);
        Tensor gy = rnd(shape, seed++, dt);
        Tensor gx0 = empty(shape, dt), gw0 = rnd({c.cols}, seed++, dt), gb0 = rnd({c.cols}, seed++, dt);
        auto run = [&](Device d) {
          Tensor gx = on(d, gx0), gw = wt.defined() ? on(d, gw0) : Tensor(), gb = on(d, gb0);
          if (c.rows > 0) {
            kernel<OpId::layer_norm_backward>(d)(on(d, gy), on(d, x), on(d, wt), on(d, r.mean), on(d, r.rstd), gx, gw,
                                                 gb);
          }
          return std::vector<Tensor>{gx, gw, gb};
        };
        std::vector<Tensor> gg = c.rows > 0 ? run(kGpu) : std::vector<Tensor>{};
        std::vector<Tensor> gc = c.rows > 0 ? run(Device::CPU) : std::vector<Tensor>{};
        if (c.rows > 0) {
          CHECK_PARITY("layer_norm_backward grad_x " << what, gg[0], gc[0], gx_tol);
          CHECK_PARITY("layer_norm_backward grad_w (+=) " << what, gg[1], gc[1], tol_sum(dt, c.rows, 4));
          CHECK_PARITY("layer_norm_backward grad_b (+=) " << what, gg[2], gc[2], tol_sum(dt, c.rows, 2));
        }
        // And through the op layer (fresh gradients, non-contiguous grad_y).
        Arg gya = transposed_arg(gy);
        ops::LayerNormGrads og = ops::layer_norm_backward(gya.on(kGpu), on(kGpu, x), on(kGpu, wt), on(kGpu, r.mean),
                                                          on(kGpu, r.rstd));
        ops::LayerNormGrads oc = ops::layer_norm_backward(gya.on(Device::CPU), x, wt, r.mean, r.rstd);
        CHECK_PARITY("layer_norm_backward (op) grad_x " << what, og.x, oc.x, gx_tol);
        CHECK_PARITY("layer_norm_backward (op) grad_w " << what, og.weight, oc.weight, tol_sum(dt, c.rows, 4));
        CHECK_PARITY("layer_norm_backward (op) grad_b " << what, og.bias, oc.bias, tol_sum(dt, c.rows, 2));
      }
    }
  }
}

TEST_CASE(T_INDEX, "[cuda]") {
  SECTION("embedding and embedding_backward: i32/i64, repeats, padding_idx, D > 1024, empty") {
    uint64_t seed = 1600;
    for (DType dt : kFloatTypes) {
      for (DType it : {DType::I32, DType::I64}) {
        struct Case {
          int64_t V, D;
          Shape idx;
          int64_t hi;  // indices drawn from [0, hi): a small hi repeats rows heavily (atomics)
        };
        const std::vector<Case> cases = {{50, 37, {7, 9}, 50}, {10, 1100, {3, 5}, 10}, {20, 33, {3000}, 2},
                                         {50, 37, {0}, 50},    {50, 37, {}, 50},       {6, 1, {4, 2, 3}, 6}};
        for (const Case& c : cases) {
          Tensor w = rnd({c.V, c.D}, seed++, dt);
          Tensor idx = rnd(c.idx, seed++, it, 0, double(c.hi));
          for (const Arg& wa : {contiguous_arg(w), transposed_arg(w)}) {
            for (const Arg& ia : {contiguous_arg(idx), transposed_arg(idx)}) {
              CHECK_PARITY("embedding " << str(dt) << " V=" << c.V << " D=" << c.D << " idx " << str(it) << " " << c.idx
                                        << " " << ia.layout << ", weight " << wa.layout,
                           ops::embedding(wa.on(kGpu), ia.on(kGpu)), ops::embedding(wa.on(Device::CPU), ia.on(Device::CPU)),
                           tol_exact());
            }
          }
          Shape gshape = c.idx;
          gshape.push_back(c.D);
          Tensor g = rnd(gshape, seed++, dt);
          const int64_t count = std::max<int64_t>(1, c.idx.numel() / std::max<int64_t>(1, std::min(c.hi, c.V)));
          for (int64_t pad : {int64_t(-1), int64_t(0), int64_t(1)}) {
            Tensor gw0 = rnd({c.V, c.D}, seed++, dt);  // accumulated into (+=)
            for (const Arg& dst : {contiguous_arg(gw0), transposed_arg(gw0), strided_arg(gw0)}) {
              Tensor gb = on(kGpu, dst.base), cb = on(Device::CPU, dst.base);
              ops::embedding_backward_(dst.view(gb), on(kGpu, g), on(kGpu, idx), pad);
              ops::embedding_backward_(dst.view(cb), g, idx, pad);
              CHECK_PARITY("embedding_backward_ " << str(dt) << " V=" << c.V << " D=" << c.D << " idx " << str(it)
                                                  << " " << c.idx << " padding_idx " << pad << " into " << dst.layout,
                           gb, cb, tol_sum(dt, count * 2, 2));
            }
          }
        }
      }
    }
  }
  SECTION("index_select and index_add_: every dim, repeats, empty idx, non-contiguous x and out") {
    uint64_t seed = 1700;
    const Shape shape{9, 13, 11};
    for (DType dt : kAllTypes) {
      for (DType it : {DType::I32, DType::I64}) {
        for (int dim : {0, 1, 2, -1}) {
          const int d = normalize_dim(dim, 3, "test");
          for (int64_t n : {int64_t(17), int64_t(0), int64_t(1)}) {
            Tensor x = rnd(shape, seed++, dt, -100, 100);
            Tensor idx = rnd({n}, seed++, it, 0, double(shape[d]));
            for (const Arg& xa : layouts_of(x)) {
              for (const Arg& ia : {contiguous_arg(idx), strided_arg(idx)}) {
                CHECK_PARITY("index_select " << str(dt) << " dim " << dim << " idx " << str(it) << " (" << n << ") "
                                             << ia.layout << ", x " << xa.layout,
                             ops::index_select(xa.on(kGpu), dim, ia.on(kGpu)),
                             ops::index_select(xa.on(Device::CPU), dim, ia.on(Device::CPU)), tol_exact());
              }
            }
            Shape ss = shape;
            ss[d] = n;
            Tensor src = rnd(ss, seed++, dt, -100, 100);
            for (const Arg& dst : layouts_of(x)) {
              for (const Arg& sa : {contiguous_arg(src), transposed_arg(src)}) {
                Tensor gb = on(kGpu, dst.base), cb = on(Device::CPU, dst.base);
                ops::index_add_(dst.view(gb), dim, on(kGpu, idx), sa.on(kGpu));
                ops::index_add_(dst.view(cb), dim, idx, sa.on(Device::CPU));
                CHECK_PARITY("index_add_ " << str(dt) << " dim " << dim << " idx " << str(it) << " (" << n
                                           << ") into " << dst.layout << ", src " << sa.layout,
                             gb, cb, is_integral(dt) ? tol_exact() : tol_sum(dt, n + 1, 200));
              }
            }
          }
        }
      }
    }
  }
  SECTION("gather and scatter_add_: every dim, idx smaller than x, src larger than idx, non-contiguous") {
    uint64_t seed = 1800;
    const Shape shape{7, 11, 5};
    for (DType dt : kAllTypes) {
      for (DType it : {DType::I32, DType::I64}) {
        for (int dim : {0, 1, 2, -1}) {
          const int d = normalize_dim(dim, 3, "test");
          for (const Shape& base_is : {Shape{5, 9, 4}, Shape{7, 11, 5}, Shape{7, 0, 5}}) {
            Shape is = base_is;
            Tensor x = rnd(shape, seed++, dt, -100, 100);
            Tensor idx = rnd(is, seed++, it, 0, double(shape[d]));
            for (const Arg& xa : layouts_of(x)) {
              for (const Arg& ia : {contiguous_arg(idx), transposed_arg(idx), strided_arg(idx)}) {
                CHECK_PARITY("gather " << str(dt) << " dim " << dim << " idx " << str(it) << " " << is << " "
                                       << ia.layout << ", x " << xa.layout,
                             ops::gather(xa.on(kGpu), dim, ia.on(kGpu)),
                             ops::gather(xa.on(Device::CPU), dim, ia.on(Device::CPU)), tol_exact());
              }
            }
            Shape ss = is;
            for (int k = 0; k < 3; ++k) ss[k] += 1;  // src larger than idx: only its leading block is used
            Tensor src = rnd(ss, seed++, dt, -100, 100);
            for (const Arg& dst : layouts_of(x)) {
              Tensor gb = on(kGpu, dst.base), cb = on(Device::CPU, dst.base);
              ops::scatter_add_(dst.view(gb), dim, on(kGpu, idx), on(kGpu, src));
              ops::scatter_add_(dst.view(cb), dim, idx, src);
              CHECK_PARITY("scatter_add_ " << str(dt) << " dim " << dim << " idx " << str(it) << " " << is
                                           << " into " << dst.layout,
                           gb, cb, is_integral(dt) ? tol_exact() : tol_sum(dt, is[d] + 1, 200));
            }
          }
        }
      }
    }
  }
}

TEST_CASE(T_CONV, "[cuda]") {
  SECTION("im2col and col2im over several geometries, non-contiguous x, an empty batch") {
    struct Geo {
      int64_t C, H, W, kh, kw, sh, sw, ph, pw;
    };
    const Geo geos[] = {{3, 9, 11, 3, 3, 1, 1, 1, 1}, {2, 10, 7, 2, 4, 2, 3, 0, 2}, {4, 5, 5, 5, 5, 1, 1, 0, 0},
                        {3, 6, 8, 1, 1, 2, 2, 0, 0},  {1, 33, 35, 3, 3, 2, 2, 1, 1}, {2, 4, 3, 3, 2, 1, 1, 2, 1}};
    uint64_t seed = 1900;
    for (DType dt : kFloatTypes) {
      for (const Geo& q : geos) {
        Conv2dGeom g;
        g.channels = q.C, g.height = q.H, g.width = q.W, g.kernel_h = q.kh, g.kernel_w = q.kw;
        g.stride_h = q.sh, g.stride_w = q.sw, g.pad_h = q.ph, g.pad_w = q.pw;
        std::ostringstream what;
        what << str(dt) << " C=" << q.C << " " << q.H << "x" << q.W << " kernel " << q.kh << "x" << q.kw << " stride "
             << q.sh << "x" << q.sw << " pad " << q.ph << "x" << q.pw;
        for (int64_t B : {int64_t(2), int64_t(0)}) {
          Tensor x = rnd({B, q.C, q.H, q.W}, seed++, dt);
          for (const Arg& a : {contiguous_arg(x), transposed_arg(x, 2, 3), strided_arg(x)}) {
            CHECK_PARITY("im2col " << what.str() << " B=" << B << " " << a.layout, ops::im2col(a.on(kGpu), g),
                         ops::im2col(a.on(Device::CPU), g), tol_exact());
          }
          Tensor cols = rnd({B, q.C * q.kh * q.kw, g.out_h() * g.out_w()}, seed++, dt);
          for (const Arg& a : {contiguous_arg(cols), transposed_arg(cols)}) {
            CHECK_PARITY("col2im " << what.str() << " B=" << B << " " << a.layout, ops::col2im(a.on(kGpu), g),
                         ops::col2im(a.on(Device::CPU), g), tol_sum(dt, q.kh * q.kw, 2));
          }
        }
      }
    }
  }
  SECTION("max_pool2d and its backward: overlapping windows, padding, ties, -inf, NaN, empty batch") {
    struct Geo {
      int64_t H, W, kh, kw, sh, sw, ph, pw;
    };
    const Geo geos[] = {{13, 17, 3, 3, 2, 2, 1, 1}, {8, 8, 2, 2, 2, 2, 0, 0},  {7, 9, 3, 3, 1, 1, 1, 1},
                        {10, 7, 3, 2, 1, 2, 1, 0},  {1, 1, 1, 1, 1, 1, 0, 0},  {6, 6, 6, 6, 1, 1, 3, 3},
                        {33, 40, 4, 4, 3, 3, 2, 2}};
    uint64_t seed = 2000;
    for (DType dt : kFloatTypes) {
      for (const Geo& q : geos) {
        Pool2dGeom g;
        g.height = q.H, g.width = q.W, g.kernel_h = q.kh, g.kernel_w = q.kw;
        g.stride_h = q.sh, g.stride_w = q.sw, g.pad_h = q.ph, g.pad_w = q.pw;
        std::ostringstream what;
        what << str(dt) << " " << q.H << "x" << q.W << " kernel " << q.kh << "x" << q.kw << " stride " << q.sh << "x"
             << q.sw << " pad " << q.ph << "x" << q.pw;
        for (int input = 0; input < 4; ++input) {
          const int64_t B = input == 3 ? 0 : 2;
          const Shape shape{B, 3, q.H, q.W};
          // 0: random; 1: ties (small integers, the first in row-major window order wins); 2: all
          // negative with -inf and one NaN (padding never wins, -inf windows keep their first pixel).
          Tensor x = input == 1 ? rnd_ties(shape, seed++, dt) : input == 2 ? rnd(shape, seed++, dt, -5, -1)
                                                                           : rnd(shape, seed++, dt);
          if (input == 2) {
            for (int64_t i = 0; i < x.numel(); ++i) {
              if (i < q.H * q.W || i % 5 == 0) {  // plane (0, 0) entirely -inf
                if (dt == DType::F32) x.data<float>()[i] = -INFINITY;
                else x.data<double>()[i] = -INFINITY;
              }
            }
            if (x.numel() > q.H * q.W + 3) sprinkle_nan(x, x.numel(), q.H * q.W + 3);  // exactly one NaN
          }
          for (const Arg& a : {contiguous_arg(x), transposed_arg(x, 2, 3)}) {
            ops::MaxPoolResult rg = ops::max_pool2d(a.on(kGpu), g);
            ops::MaxPoolResult rc = ops::max_pool2d(a.on(Device::CPU), g);
            CHECK_PARITY("max_pool2d out " << what.str() << " input " << input << " " << a.layout, rg.out, rc.out,
                         tol_exact());
            CHECK_PARITY("max_pool2d argmax " << what.str() << " input " << input << " " << a.layout, rg.argmax,
                         rc.argmax, tol_exact());
          }
          ops::MaxPoolResult rc = ops::max_pool2d(x, g);
          Tensor go = rnd(rc.out.shape(), seed++, dt);
          const int64_t overlap = ((q.kh + q.sh - 1) / q.sh) * ((q.kw + q.sw - 1) / q.sw);
          for (const Arg& a : {contiguous_arg(go), transposed_arg(go, 2, 3)}) {
            CHECK_PARITY("max_pool2d_backward " << what.str() << " input " << input << " grad " << a.layout,
                         ops::max_pool2d_backward(a.on(kGpu), on(kGpu, rc.argmax), g, shape),
                         ops::max_pool2d_backward(a.on(Device::CPU), rc.argmax, g, shape), tol_sum(dt, overlap, 2));
          }
        }
      }
    }
  }
}

TEST_CASE(T_OPTIM, "[cuda]") {
  SECTION("sgd_step: plain, momentum (first and later steps), nesterov, weight decay, empty") {
    uint64_t seed = 2100;
    for (DType dt : kFloatTypes) {
      struct Cfg {
        double lr, momentum, wd;
        bool nesterov;
      };
      const Cfg cfgs[] = {{0.1, 0, 0, false}, {0.05, 0.9, 0, false}, {0.05, 0.9, 0.01, true}, {0.01, 0.5, 0.1, false},
                          {0.2, 0, 0.05, false}};
      for (const Cfg& c : cfgs) {
        for (int64_t n : {int64_t(10007), int64_t(1), int64_t(0)}) {
          Tensor p0 = rnd({n}, seed++, dt);
          Tensor pg = on(kGpu, p0), pc = p0.clone();
          Tensor bg = c.momentum != 0 ? zeros({n}, dt, kGpu) : Tensor();
          Tensor bc = c.momentum != 0 ? zeros({n}, dt) : Tensor();
          for (int step = 0; step < 3; ++step) {
            Tensor grad = rnd({n}, seed++, dt);
            SgdStepArgs a;
            a.lr = c.lr, a.momentum = c.momentum, a.weight_decay = c.wd, a.nesterov = c.nesterov;
            a.first_step = step == 0;
            kernel<OpId::sgd_step>(kGpu)(pg, on(kGpu, grad), bg, a);
            kernel<OpId::sgd_step>(Device::CPU)(pc, grad, bc, a);
            std::ostringstream what;
            what << str(dt) << " n=" << n << " lr " << c.lr << " momentum " << c.momentum << " wd " << c.wd
                 << (c.nesterov ? " nesterov" : "") << " step " << step + 1;
            const Tol tol = dt == DType::F64 ? Tol{1e-14, 1e-14} : Tol{1e-6, 1e-6};
            CHECK_PARITY("sgd_step param " << what.str(), pg, pc, tol);
            if (c.momentum != 0) CHECK_PARITY("sgd_step momentum buffer " << what.str(), bg, bc, tol);
          }
        }
      }
    }
  }
  SECTION("adamw_step: three steps, with and without weight decay, zero gradients, empty") {
    uint64_t seed = 2200;
    for (DType dt : kFloatTypes) {
      for (double wd : {0.0, 0.01}) {
        for (double lr : {1e-3, 0.05}) {
          for (int64_t n : {int64_t(10007), int64_t(0)}) {
            Tensor p0 = rnd({n}, seed++, dt);
            Tensor pg = on(kGpu, p0), pc = p0.clone();
            Tensor mg = zeros({n}, dt, kGpu), vg = zeros({n}, dt, kGpu), mc = zeros({n}, dt), vc = zeros({n}, dt);
            for (int64_t step = 1; step <= 3; ++step) {
              Tensor grad = rnd({n}, seed++, dt);
              if (n > 100) grad.narrow(0, 17, 50).zero_();  // zero gradients: v = 0 there on step 1
              AdamWStepArgs a;
              a.lr = lr, a.weight_decay = wd, a.step = step;
              kernel<OpId::adamw_step>(kGpu)(pg, on(kGpu, grad), mg, vg, a);
              kernel<OpId::adamw_step>(Device::CPU)(pc, grad, mc, vc, a);
              std::ostringstream what;
              what << str(dt) << " n=" << n << " lr " << lr << " wd " << wd << " step " << step;
              const Tol tol = dt == DType::F64 ? Tol{1e-14, 1e-13} : Tol{1e-6, 1e-5};
              CHECK_PARITY("adamw_step param " << what.str(), pg, pc, tol);
              CHECK_PARITY("adamw_step exp_avg " << what.str(), mg, mc, tol);
              CHECK_PARITY("adamw_step exp_avg_sq " << what.str(), vg, vc, tol);
            }
          }
        }
      }
    }
  }
  SECTION("sum_squares: f64 accumulation, sizes 0 to 2^20 + 7; grad_norm and clip_grad_norm on the device") {
    uint64_t seed = 2300;
    for (DType dt : kFloatTypes) {
      for (int64_t n : {int64_t(0), int64_t(1), int64_t(31), int64_t(1025), int64_t((1 << 20) + 7)}) {
        Tensor x = rnd({n}, seed++, dt);
        const double g = kernel<OpId::sum_squares>(kGpu)(on(kGpu, x));
        const double c = kernel<OpId::sum_squares>(Device::CPU)(x);
        INFO("sum_squares " << str(dt) << " n=" << n << ": cuda " << g << ", cpu " << c);
        CHECK(std::fabs(g - c) <= 1e-10 * std::fabs(c));
      }
      // Through nn/schedule.h: the norm of gradients living on the device, then clipping in place.
      std::vector<Tensor> pg, pc;
      for (const Shape& s : {Shape{7, 5}, Shape{13}, Shape{1030, 3}}) {
        Tensor p = rnd(s, seed++, dt), gr = rnd(s, seed++, dt);
        Tensor a = on(kGpu, p).requires_grad_(), b = p.clone().requires_grad_();
        a.set_grad(on(kGpu, gr));
        b.set_grad(gr.clone());
        pg.push_back(a);
        pc.push_back(b);
      }
      const double ng = nn::grad_norm(pg), nc = nn::grad_norm(pc);
      INFO("grad_norm " << str(dt) << ": cuda " << ng << ", cpu " << nc);
      CHECK(std::fabs(ng - nc) <= 1e-10 * nc);
      const double cg = nn::clip_grad_norm(pg, 1.0), cc = nn::clip_grad_norm(pc, 1.0);
      CHECK(std::fabs(cg - cc) <= 1e-10 * cc);
      for (size_t i = 0; i < pg.size(); ++i) {
        CHECK_PARITY("clipped gradient " << i << " " << str(dt), pg[i].grad(), pc[i].grad(), tol_arith(dt));
      }
    }
  }
  SECTION("nn::SGD and nn::AdamW step parameters that live on the device") {
    uint64_t seed = 2400;
    for (int which = 0; which < 2; ++which) {
      std::vector<Tensor> pg, pc;
      for (const Shape& s : {Shape{7, 5}, Shape{13}, Shape{3, 1030}}) {
        Tensor p = rnd(s, seed++);
        pg.push_back(on(kGpu, p).requires_grad_());
        pc.push_back(p.clone().requires_grad_());
      }
      std::unique_ptr<nn::Optimizer> og, oc;
      if (which == 0) {
        og = std::make_unique<nn::SGD>(pg, 0.05, 0.9, 0.01, true);
        oc = std::make_unique<nn::SGD>(pc, 0.05, 0.9, 0.01, true);
      } else {
        og = std::make_unique<nn::AdamW>(pg, 0.01);
        oc = std::make_unique<nn::AdamW>(pc, 0.01);
      }
      for (int step = 0; step < 3; ++step) {
        for (size_t i = 0; i < pg.size(); ++i) {
          Tensor gr = rnd(pg[i].shape(), seed++);
          pg[i].set_grad(on(kGpu, gr));
          pc[i].set_grad(gr.clone());
        }
        og->step();
        oc->step();
        for (size_t i = 0; i < pg.size(); ++i) {
          CHECK_PARITY(og->name() << " parameter " << i << " after step " << step + 1, pg[i].detach(), pc[i].detach(),
                       (Tol{1e-6, 1e-5}));
        }
      }
    }
  }
}

// ================================================================ autograd functions

namespace {

// f32 gradients through a few kernels: elementwise rounding plus short sums.
const Tol kGradTol{1e-5, 1e-5};

MultiFn one(std::function<Tensor(const std::vector<Tensor>&)> f) {
  return [f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in)}; };
}

}  // namespace

TEST_CASE(T_AG_ELEM, "[cuda]") {
  uint64_t seed = 3000;
  SECTION("unary functions, every layout") {
    using UFn = Tensor (*)(const Tensor&);
    const std::vector<std::pair<const char*, UFn>> fns = {
        {"neg", muxnet::neg},   {"exp", muxnet::exp},         {"log", muxnet::log},   {"sqrt", muxnet::sqrt},
        {"rsqrt", muxnet::rsqrt}, {"tanh", muxnet::tanh},     {"sigmoid", muxnet::sigmoid},
        {"relu", muxnet::relu}, {"gelu", muxnet::gelu},       {"abs", muxnet::abs}};
    for (const auto& [name, f] : fns) {
      const std::string n = name;
      const bool positive = n == "log" || n == "sqrt" || n == "rsqrt";
      for (DType dt : kFloatTypes) {
        Tensor x = n == "relu" || n == "abs" ? rnd_ties({13, 29}, seed++, dt)
                                             : rnd({13, 29}, seed++, dt, positive ? 0.2 : -4.0, positive ? 3.0 : 4.0);
        for (Arg a : layouts_of(x)) {
          check_autograd_parity(n + " " + str(dt), {a.requires_grad()}, one([f = f](const std::vector<Tensor>& in) {
                                  return f(in[0]);
                                }),
                                tol_transcendental(dt), tol_transcendental(dt), seed++);
        }
      }
    }
  }
  SECTION("binary functions with broadcasting and expanded operands; scalar functions; operators") {
    using BFn = Tensor (*)(const Tensor&, const Tensor&);
    const std::vector<std::pair<const char*, BFn>> fns = {
        {"add", muxnet::add},         {"sub", muxnet::sub},        {"mul", muxnet::mul},
        {"div", muxnet::div},         {"maximum", muxnet::maximum}, {"minimum", muxnet::minimum}};
    for (const auto& [name, f] : fns) {
      const std::string n = name;
      for (DType dt : kFloatTypes) {
        const bool ties = n == "maximum" || n == "minimum";  // ties split the gradient evenly
        Tensor a = ties ? rnd_ties({13, 29}, seed++, dt) : rnd({13, 29}, seed++, dt);
        Tensor b = ties ? rnd_ties({29}, seed++, dt) : rnd({29}, seed++, dt, 0.5, 2.0);
        Tensor b1 = ties ? rnd_ties({13, 1}, seed++, dt) : rnd({13, 1}, seed++, dt, 0.5, 2.0);
        auto fn = one([f = f](const std::vector<Tensor>& in) { return f(in[0], in[1]); });
        const Tol g = tol_sum(dt, 29, 4);
        check_autograd_parity(n + " (13, 29) transposed with (29)", {transposed_arg(a).requires_grad(),
                                                                     contiguous_arg(b).requires_grad()},
                              fn, tol_arith(dt), g, seed++);
        check_autograd_parity(n + " (13, 29) strided with (13, 1) expanded",
                              {strided_arg(a).requires_grad(), expanded_arg(b1, {13, 29}).requires_grad()}, fn,
                              tol_arith(dt), g, seed++);
        check_autograd_parity(n + " (13, 1) with (29), both broadcast",
                              {contiguous_arg(b1).requires_grad(), strided_arg(b).requires_grad()}, fn, tol_arith(dt),
                              g, seed++);
      }
    }
    Tensor x = rnd({17, 19}, seed++), xp = rnd({17, 19}, seed++, DType::F32, 0.3, 3.0);
    const std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> sfns = {
        {"add(x, 2.5)", [](const Tensor& t) { return muxnet::add(t, 2.5); }},
        {"sub(x, 2.5)", [](const Tensor& t) { return muxnet::sub(t, 2.5); }},
        {"mul(x, -0.75)", [](const Tensor& t) { return muxnet::mul(t, -0.75); }},
        {"div(x, 4)", [](const Tensor& t) { return muxnet::div(t, 4.0); }},
        {"rsub(1.5, x)", [](const Tensor& t) { return muxnet::rsub(1.5, t); }},
        {"rdiv(2, x)", [](const Tensor& t) { return muxnet::rdiv(2.0, t); }},
        {"pow(x, 2)", [](const Tensor& t) { return muxnet::pow(t, 2.0); }},
        {"pow(x, 2.5)", [](const Tensor& t) { return muxnet::pow(t, 2.5); }},
        {"pow(x, -1.5)", [](const Tensor& t) { return muxnet::pow(t, -1.5); }},
        {"operators", [](const Tensor& t) { return ((t * 2.0 + 1.0) / 3.0 - t) * t + 2.0 / (t + 4.0) - (-t); }}};
    for (const auto& [name, f] : sfns) {
      const bool positive = name.rfind("pow", 0) == 0 || name.rfind("rdiv", 0) == 0;
      for (const Arg& a : layouts_of(positive ? xp : x)) {
        Arg ag = a;
        check_autograd_parity(name, {ag.requires_grad()}, one([f = f](const std::vector<Tensor>& in) { return f(in[0]); }),
                              tol_transcendental(DType::F32), tol_transcendental(DType::F32), seed++);
      }
    }
  }
  SECTION("where and masked_fill") {
    Tensor cond = rnd_ties({13, 1}, seed++, DType::F32, 0, 2);
    Tensor a = rnd({13, 29}, seed++), b = rnd({29}, seed++);
    check_autograd_parity("where(cond (13, 1), a transposed, b (29))",
                          {contiguous_arg(cond), transposed_arg(a).requires_grad(), contiguous_arg(b).requires_grad()},
                          one([](const std::vector<Tensor>& in) { return muxnet::where(in[0], in[1], in[2]); }),
                          tol_exact(), tol_sum(DType::F32, 13, 2), seed++);
    Tensor mask = rnd_ties({1, 29}, seed++, DType::I64, 0, 2);
    for (const Arg& xa : layouts_of(a)) {
      Arg x = xa;
      check_autograd_parity("masked_fill(x, mask (1, 29), -1e4)", {x.requires_grad(), contiguous_arg(mask)},
                            one([](const std::vector<Tensor>& in) { return muxnet::masked_fill(in[0], in[1], -1e4); }),
                            tol_exact(), tol_exact(), seed++);
    }
  }
}

TEST_CASE(T_AG_REDUCE, "[cuda]") {
  uint64_t seed = 3100;
  const Shape shape{5, 6, 37};
  const std::vector<std::vector<int>> dim_sets = {{}, {0}, {-1}, {1, 2}, {0, 2}};
  for (DType dt : kFloatTypes) {
    Tensor x = rnd(shape, seed++, dt), t = rnd_ties(shape, seed++, dt);  // t: tied extrema split the gradient
    std::vector<Arg> xl = layouts_of(x);
    xl.push_back(transposed_arg(x, 0, 2));
    for (const Arg& xa : xl) {
      for (const auto& dims : dim_sets) {
        for (bool keepdim : {false, true}) {
          const std::string what = std::string(" ") + str(dt) + " " + xa.layout + " over " + dims_str(dims) +
                                   (keepdim ? " keepdim" : "");
          const Tol tol = tol_sum(dt, reduced_count(shape, dims), 2);
          Arg a = xa;
          a.requires_grad();
          check_autograd_parity("sum" + what, {a}, one([dims, keepdim](const std::vector<Tensor>& in) {
                                  return muxnet::sum(in[0], dims, keepdim);
                                }),
                                tol, kGradTol, seed++);
          check_autograd_parity("mean" + what, {a}, one([dims, keepdim](const std::vector<Tensor>& in) {
                                  return muxnet::mean(in[0], dims, keepdim);
                                }),
                                tol, kGradTol, seed++);
        }
      }
    }
    for (const Arg& ta : layouts_of(t)) {
      for (const auto& dims : dim_sets) {
        Arg a = ta;
        a.requires_grad();
        const std::string what = std::string(" ") + str(dt) + " with ties " + ta.layout + " over " + dims_str(dims);
        check_autograd_parity("max" + what, {a},
                              one([dims](const std::vector<Tensor>& in) { return muxnet::max(in[0], dims, false); }),
                              tol_exact(), kGradTol, seed++);
        check_autograd_parity("min" + what, {a},
                              one([dims](const std::vector<Tensor>& in) { return muxnet::min(in[0], dims, true); }),
                              tol_exact(), kGradTol, seed++);
      }
      for (int dim : {0, 1, -1}) {
        check_autograd_parity("argmax" + std::string(" ") + str(dt) + " " + ta.layout + " dim " + std::to_string(dim),
                              {ta}, one([dim](const std::vector<Tensor>& in) { return muxnet::argmax(in[0], dim); }),
                              tol_exact(), tol_exact(), seed++);
      }
    }
  }
}

TEST_CASE(T_AG_MATMUL, "[cuda]") {
  Tf32Off tf32_off;
  uint64_t seed = 3200;
  for (DType dt : kFloatTypes) {
    const Tol grad = tol_matmul(dt, 3 * 33, 2);
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        auto fn = one([ta, tb](const std::vector<Tensor>& in) { return muxnet::matmul(in[0], in[1], ta, tb); });
        const std::string flags = std::string(ta ? " trans_a" : "") + (tb ? " trans_b" : "");
        // 2-d, both operands in several layouts.
        Tensor a = rnd(ta ? Shape{23, 17} : Shape{17, 23}, seed++, dt, -1, 1);
        Tensor b = rnd(tb ? Shape{19, 23} : Shape{23, 19}, seed++, dt, -1, 1);
        const std::vector<Arg> al = layouts_of(a), bl = layouts_of(b);
        for (size_t i = 0; i < al.size(); ++i) {
          Arg x = al[i], y = pick(bl, i + 1);
          check_autograd_parity("matmul 2-d " + std::string(str(dt)) + flags, {x.requires_grad(), y.requires_grad()}, fn,
                                tol_matmul(dt, 23), grad, seed++);
        }
        // Batched with a shared 2-d b (the folded nn.Linear path), batched both, shared a.
        Tensor a3 = rnd(ta ? Shape{3, 23, 17} : Shape{3, 17, 23}, seed++, dt, -1, 1);
        Tensor b3 = rnd(tb ? Shape{3, 19, 23} : Shape{3, 23, 19}, seed++, dt, -1, 1);
        Arg a3c = contiguous_arg(a3), a3t = transposed_arg(a3, 0, 1), bc = contiguous_arg(b), b3c = transposed_arg(b3);
        Arg ac = contiguous_arg(a);
        check_autograd_parity("matmul batched a, shared b" + flags, {a3c.requires_grad(), bc.requires_grad()}, fn,
                              tol_matmul(dt, 23), grad, seed++);
        check_autograd_parity("matmul batched a (batch not outermost), shared b" + flags,
                              {a3t.requires_grad(), bc.requires_grad()}, fn, tol_matmul(dt, 23), grad, seed++);
        check_autograd_parity("matmul batched a and b" + flags, {a3c.requires_grad(), b3c.requires_grad()}, fn,
                              tol_matmul(dt, 23), grad, seed++);
        check_autograd_parity("matmul shared a, batched b" + flags, {ac.requires_grad(), b3c.requires_grad()}, fn,
                              tol_matmul(dt, 23), grad, seed++);
      }
    }
    // linear: x (2, 5, 33) @ w^T + bias, with and without bias, x non-contiguous.
    Tensor x = rnd({2, 5, 33}, seed++, dt, -1, 1), w = rnd({9, 33}, seed++, dt, -1, 1), bias = rnd({9}, seed++, dt);
    for (const Arg& xa : {contiguous_arg(x), transposed_arg(x, 0, 1), strided_arg(x)}) {
      Arg xg = xa, wg = transposed_arg(w), bg = contiguous_arg(bias);
      check_autograd_parity("linear with bias " + std::string(str(dt)) + " x " + xa.layout,
                            {xg.requires_grad(), wg.requires_grad(), bg.requires_grad()},
                            one([](const std::vector<Tensor>& in) { return muxnet::linear(in[0], in[1], in[2]); }),
                            tol_matmul(dt, 33), grad, seed++);
      check_autograd_parity("linear without bias " + std::string(str(dt)) + " x " + xa.layout,
                            {xg.requires_grad(), wg.requires_grad()},
                            one([](const std::vector<Tensor>& in) { return muxnet::linear(in[0], in[1], Tensor()); }),
                            tol_matmul(dt, 33), grad, seed++);
    }
  }
}

TEST_CASE(T_AG_SHAPE, "[cuda]") {
  uint64_t seed = 3300;
  SECTION("views, joins, split, index_select and gather, every layout") {
    // Each view is followed by a mul, so its gradient also goes through a device kernel.
    Tensor x = rnd({6, 10}, seed++), x3 = rnd({4, 5, 6}, seed++);
    const std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> views2 = {
        {"reshape (4, 15)", [](const Tensor& t) { return muxnet::reshape(t, {4, 15}); }},
        {"transpose", [](const Tensor& t) { return muxnet::transpose(t, 0, 1); }},
        {"permute", [](const Tensor& t) { return muxnet::permute(t, {1, 0}); }},
        {"narrow", [](const Tensor& t) { return muxnet::narrow(t, 1, 3, 5); }},
        {"slice step 3", [](const Tensor& t) { return muxnet::slice(t, 1, 1, 10, 3); }},
        {"select", [](const Tensor& t) { return muxnet::select(t, 0, 4); }},
        {"unsqueeze + expand", [](const Tensor& t) { return muxnet::expand(muxnet::unsqueeze(t, 0), {3, 6, 10}); }},
        {"unsqueeze + squeeze", [](const Tensor& t) { return muxnet::squeeze(muxnet::unsqueeze(t, 1), 1); }},
        {"contiguous", [](const Tensor& t) { return muxnet::contiguous(t); }},
        {"clone", [](const Tensor& t) { return t.clone(); }},
        {"to f64 and back", [](const Tensor& t) { return muxnet::mul(t.to(DType::F64), 3.0).to(DType::F32); }}};
    for (const auto& [name, f] : views2) {
      for (const Arg& xa : layouts_of(x)) {
        Arg a = xa;
        check_autograd_parity(name + " of " + xa.layout, {a.requires_grad()},
                              one([f = f](const std::vector<Tensor>& in) { return muxnet::mul(f(in[0]), 1.5); }),
                              tol_exact(), tol_sum(DType::F32, 3, 2), seed++);
      }
    }
    Arg x3c = contiguous_arg(x3);
    check_autograd_parity("view (20, 6)", {x3c.requires_grad()},
                          one([](const std::vector<Tensor>& in) { return muxnet::view(in[0], {20, 6}); }), tol_exact(),
                          tol_exact(), seed++);
    for (const Arg& xa : {contiguous_arg(x3), transposed_arg(x3, 0, 2)}) {
      Arg a = xa;
      check_autograd_parity("flatten(1, 2) of " + xa.layout, {a.requires_grad()},
                            one([](const std::vector<Tensor>& in) { return muxnet::flatten(in[0], 1, 2); }), tol_exact(),
                            tol_exact(), seed++);
    }
    // Joins of inputs in different layouts; split into pieces that are all used.
    Tensor p = rnd({4, 3, 5}, seed++), q = rnd({4, 7, 5}, seed++), r = rnd({4, 1, 5}, seed++);
    Arg pa = transposed_arg(p, 0, 2), qa = strided_arg(q), ra = contiguous_arg(r);
    check_autograd_parity("concat dim 1", {pa.requires_grad(), qa.requires_grad(), ra.requires_grad()},
                          one([](const std::vector<Tensor>& in) { return muxnet::concat({in[0], in[1], in[2]}, 1); }),
                          tol_exact(), tol_exact(), seed++);
    Tensor s1 = rnd({4, 3, 5}, seed++);
    Arg sa = strided_arg(s1, 0);
    for (int dim : {0, 2, 3}) {
      check_autograd_parity("stack dim " + std::to_string(dim), {pa.requires_grad(), sa.requires_grad()},
                            one([dim](const std::vector<Tensor>& in) { return muxnet::stack({in[0], in[1]}, dim); }),
                            tol_exact(), tol_exact(), seed++);
    }
    Arg qs = transposed_arg(q, 1, 2);
    check_autograd_parity("split(3, dim 1)", {qs.requires_grad()},
                          [](const std::vector<Tensor>& in) { return muxnet::split(in[0], int64_t(3), 1); }, tol_exact(),
                          tol_sum(DType::F32, 3, 2), seed++);
    check_autograd_parity("split({2, 4, 1}, dim 1)", {qs.requires_grad()},
                          [](const std::vector<Tensor>& in) {
                            return muxnet::split(in[0], std::vector<int64_t>{2, 4, 1}, 1);
                          },
                          tol_exact(), tol_sum(DType::F32, 3, 2), seed++);
    // index_select / gather with repeated indices: their gradients accumulate (index_add / scatter_add).
    for (DType it : {DType::I32, DType::I64}) {
      for (int dim : {0, 1, 2}) {
        Tensor idx_d = rnd({13}, seed++, it, 0, double(x3.size(dim)));
        for (const Arg& xa : {contiguous_arg(x3), transposed_arg(x3, 0, 2)}) {
          Arg a = xa;
          check_autograd_parity("index_select dim " + std::to_string(dim) + " " + xa.layout,
                                {a.requires_grad(), contiguous_arg(idx_d)},
                                one([dim](const std::vector<Tensor>& in) { return muxnet::index_select(in[0], dim, in[1]); }),
                                tol_exact(), tol_sum(DType::F32, 13, 2), seed++);
          Shape gs = x3.shape();
          gs[dim] = 9;
          Tensor gidx = rnd(gs, seed++, it, 0, double(x3.size(dim)));
          check_autograd_parity("gather dim " + std::to_string(dim) + " " + xa.layout,
                                {a.requires_grad(), transposed_arg(gidx)},
                                one([dim](const std::vector<Tensor>& in) { return muxnet::gather(in[0], dim, in[1]); }),
                                tol_exact(), tol_sum(DType::F32, 9, 2), seed++);
        }
      }
    }
  }
  SECTION("Tensor::to(Device): a CPU leaf through the device and back gets the CPU gradient") {
    Tensor a = rnd({9, 31}, seed++), g = rnd({9, 31}, seed++);
    Tensor leaf_c = a.clone().requires_grad_(), leaf_g = a.clone().requires_grad_();
    muxnet::tanh(muxnet::mul(leaf_c, leaf_c)).backward(g);
    Tensor on_dev = leaf_g.to(kGpu);
    CHECK(on_dev.device() == kGpu);
    Tensor y = muxnet::tanh(muxnet::mul(on_dev, on_dev));
    CHECK(y.device() == kGpu);
    Tensor back = y.to(Device::CPU);
    CHECK(back.device() == Device::CPU);
    back.backward(g);
    REQUIRE(leaf_g.grad().defined());
    CHECK(leaf_g.grad().device() == Device::CPU);
    CHECK_CLOSE(leaf_g.grad(), leaf_c.grad(), 1e-6, 1e-5);
    // And a device leaf moved to the CPU: the gradient arrives on the device.
    Tensor dev_leaf = on(kGpu, a).requires_grad_();
    muxnet::sum(muxnet::mul(dev_leaf.to(Device::CPU), 2.0)).backward();
    REQUIRE(dev_leaf.grad().defined());
    CHECK(dev_leaf.grad().device() == kGpu);
    CHECK_PARITY("gradient of a device leaf used on the cpu", dev_leaf.grad(), full({9, 31}, 2.0), tol_exact());
  }
}

TEST_CASE(T_AG_NORM, "[cuda]") {
  uint64_t seed = 3400;
  SECTION("softmax and log_softmax over every dim, rows longer than 1024") {
    for (DType dt : kFloatTypes) {
      Tensor x = rnd({3, 4, 1030}, seed++, dt, -6, 6), y = rnd({5, 7, 9}, seed++, dt, -6, 6);
      for (int dim : {-1, 0, 1}) {
        for (bool log : {false, true}) {
          const std::string name = std::string(log ? "log_softmax" : "softmax") + " " + str(dt) + " dim " +
                                   std::to_string(dim);
          auto fn = one([dim, log](const std::vector<Tensor>& in) {
            return log ? muxnet::log_softmax(in[0], dim) : muxnet::softmax(in[0], dim);
          });
          for (const Arg& a : {contiguous_arg(x), transposed_arg(x, 0, 2)}) {
            Arg ag = a;
            check_autograd_parity(name + " (3, 4, 1030) " + a.layout, {ag.requires_grad()}, fn,
                                  Tol{tol_sum(dt, 1030, 4).atol, 1e-5}, tol_sum(dt, 1030, 4), seed++);
          }
          Arg ys = strided_arg(y, 1);
          check_autograd_parity(name + " (5, 7, 9) " + ys.layout, {ys.requires_grad()}, fn,
                                Tol{tol_sum(dt, 9, 4).atol, 1e-5}, tol_sum(dt, 9, 4), seed++);
        }
      }
    }
  }
  SECTION("layer_norm with weight and bias, weight only, neither; non-contiguous x") {
    for (DType dt : kFloatTypes) {
      for (const Shape& shape : {Shape{6, 7, 45}, Shape{3, 1100}}) {
        const int64_t C = shape.back();
        Tensor x = rnd(shape, seed++, dt), w = rnd({C}, seed++, dt, 0.5, 1.5), b = rnd({C}, seed++, dt);
        const int64_t R = shape.numel() / C;
        const Tol fwd = dt == DType::F64 ? Tol{1e-12, 1e-12} : Tol{2e-5, 2e-5};
        const Tol grad = dt == DType::F64 ? Tol{1e-11, 1e-11} : Tol{tol_sum(dt, std::max(R, C), 8).atol, 1e-4};
        for (const Arg& xa : {contiguous_arg(x), transposed_arg(x), strided_arg(x, 0)}) {
          Arg xg = xa, wg = contiguous_arg(w), bg = strided_arg(b);
          check_autograd_parity("layer_norm weight+bias " + std::string(str(dt)) + " " + shape.str() + " " + xa.layout,
                                {xg.requires_grad(), wg.requires_grad(), bg.requires_grad()},
                                one([](const std::vector<Tensor>& in) { return muxnet::layer_norm(in[0], in[1], in[2]); }),
                                fwd, grad, seed++);
          check_autograd_parity("layer_norm weight only " + std::string(str(dt)) + " " + shape.str() + " " + xa.layout,
                                {xg.requires_grad(), wg.requires_grad()},
                                one([](const std::vector<Tensor>& in) {
                                  return muxnet::layer_norm(in[0], in[1], Tensor(), 1e-3);
                                }),
                                fwd, grad, seed++);
          check_autograd_parity("layer_norm plain " + std::string(str(dt)) + " " + shape.str() + " " + xa.layout,
                                {xg.requires_grad()},
                                one([](const std::vector<Tensor>& in) { return muxnet::layer_norm(in[0], Tensor(), Tensor()); }),
                                fwd, grad, seed++);
        }
      }
    }
  }
  SECTION("embedding with padding_idx and repeated indices; dropout with a fixed generator") {
    for (DType it : {DType::I32, DType::I64}) {
      Tensor w = rnd({12, 1030}, seed++), idx = rnd({5, 7}, seed++, it, 0, 4);  // heavy repeats, includes 2
      for (int64_t pad : {int64_t(-1), int64_t(2)}) {
        for (const Arg& wa : {contiguous_arg(w), transposed_arg(w)}) {
          Arg wg = wa;
          check_autograd_parity("embedding padding_idx " + std::to_string(pad) + " idx " + str(it) + " weight " +
                                    wa.layout,
                                {wg.requires_grad(), transposed_arg(idx)},
                                one([pad](const std::vector<Tensor>& in) { return muxnet::embedding(in[0], in[1], pad); }),
                                tol_exact(), tol_sum(DType::F32, 35, 2), seed++);
        }
      }
    }
    Tensor x = rnd({13, 29}, seed++);
    for (double p : {0.0, 0.3, 1.0}) {
      for (bool training : {true, false}) {
        for (const Arg& xa : layouts_of(x)) {
          Arg a = xa;
          // A generator with the same seed on both runs: the same mask (drawn on the host) on both devices.
          check_autograd_parity("dropout p " + std::to_string(p) + (training ? " training " : " eval ") + xa.layout,
                                {a.requires_grad()}, one([p, training](const std::vector<Tensor>& in) {
                                  Generator gen(99);
                                  return muxnet::mul(muxnet::dropout(in[0], p, training, &gen), 1.0);
                                }),
                                tol_arith(DType::F32), tol_arith(DType::F32), seed++);
        }
      }
    }
  }
}

TEST_CASE(T_AG_LOSS, "[cuda]") {
  uint64_t seed = 3500;
  SECTION("cross_entropy: ignore_index, i32/i64 targets, 3-d logits, all targets ignored") {
    for (DType dt : kFloatTypes) {
      for (DType it : {DType::I32, DType::I64}) {
        Tensor logits = rnd({10, 7}, seed++, dt, -4, 4);
        Tensor targets = rnd({10}, seed++, it, 0, 7);
        std::vector<int64_t> tv = targets.to_vector<int64_t>();
        tv[2] = tv[7] = -100;  // ignored rows
        Tensor t_ign = from_vector<int64_t>(tv).to(it);
        const Tol tol = dt == DType::F64 ? Tol{1e-13, 1e-12} : Tol{1e-5, 1e-5};
        for (const Arg& la : {contiguous_arg(logits), transposed_arg(logits)}) {
          Arg lg = la;
          check_autograd_parity("cross_entropy " + std::string(str(dt)) + " targets " + str(it) + " logits " + la.layout,
                                {lg.requires_grad(), contiguous_arg(t_ign)},
                                one([](const std::vector<Tensor>& in) { return muxnet::cross_entropy(in[0], in[1]); }),
                                tol, tol, seed++);
          check_autograd_parity("cross_entropy ignore_index 3 (a valid class) " + std::string(str(dt)),
                                {lg.requires_grad(), strided_arg(targets)},
                                one([](const std::vector<Tensor>& in) { return muxnet::cross_entropy(in[0], in[1], 3); }),
                                tol, tol, seed++);
        }
        Tensor l3 = rnd({2, 5, 1030}, seed++, dt, -4, 4), t3 = rnd({2, 5}, seed++, it, 0, 1030);
        Arg l3a = transposed_arg(l3, 0, 1);
        check_autograd_parity("cross_entropy 3-d logits, C = 1030 " + std::string(str(dt)),
                              {l3a.requires_grad(), transposed_arg(t3)},
                              one([](const std::vector<Tensor>& in) { return muxnet::cross_entropy(in[0], in[1]); }),
                              Tol{tol_sum(dt, 1030, 8).atol, 1e-5}, tol, seed++);
        Tensor all_ign = full({10}, -100, it);
        check_autograd_parity("cross_entropy with every target ignored " + std::string(str(dt)),
                              {contiguous_arg(logits).requires_grad(), contiguous_arg(all_ign)},
                              one([](const std::vector<Tensor>& in) { return muxnet::cross_entropy(in[0], in[1]); }),
                              tol_exact(), tol_exact(), seed++);
      }
    }
  }
  SECTION("mse_loss: both operands require grad, non-contiguous") {
    for (DType dt : kFloatTypes) {
      Tensor a = rnd({31, 17}, seed++, dt), b = rnd({31, 17}, seed++, dt);
      Arg aa = transposed_arg(a), ba = strided_arg(b);
      check_autograd_parity("mse_loss " + std::string(str(dt)), {aa.requires_grad(), ba.requires_grad()},
                            one([](const std::vector<Tensor>& in) { return muxnet::mse_loss(in[0], in[1]); }),
                            tol_sum(dt, 31 * 17, 8), dt == DType::F64 ? Tol{1e-14, 1e-12} : Tol{1e-7, 1e-5}, seed++);
    }
  }
  SECTION("scaled_dot_product_attention: padding mask, dropout, q/k/v as head-split views") {
    Tf32Off tf32_off;
    for (DType dt : kFloatTypes) {
      const int64_t B = 2, H = 3, Tq = 5, Tk = 7, dh = 8, dv = 6;
      // As a multi-head layer makes them: (B, T, H, d) projections viewed as (B, H, T, d).
      Tensor q = rnd({B, Tq, H, dh}, seed++, dt), k = rnd({B, Tk, H, dh}, seed++, dt), v = rnd({B, Tk, H, dv}, seed++, dt);
      Tensor mask = zeros({B, Tk}, dt);
      mask.narrow(1, Tk - 2, 2).select(0, 0).fill_(1.0);  // batch 0: the last two keys padded
      mask.narrow(1, 0, 1).select(0, 1).fill_(1.0);       // batch 1: the first key padded
      auto head_view = [](const Tensor& t) { return t.transpose(1, 2); };
      Arg qa = contiguous_arg(q), ka = contiguous_arg(k), va = contiguous_arg(v);
      qa.view = ka.view = va.view = head_view;
      qa.layout = ka.layout = va.layout = "(B, T, H, d) viewed as (B, H, T, d)";
      const Tol tol = dt == DType::F64 ? Tol{1e-12, 1e-11} : Tol{2e-5, 1e-4};
      for (int variant = 0; variant < 3; ++variant) {
        const bool use_mask = variant >= 1, use_dropout = variant == 2;
        std::vector<Arg> args = {qa.requires_grad(), ka.requires_grad(), va.requires_grad()};
        if (use_mask) args.push_back(contiguous_arg(mask));
        check_autograd_parity(std::string("scaled_dot_product_attention ") + str(dt) + (use_mask ? " masked" : "") +
                                  (use_dropout ? " dropout 0.25" : ""),
                              args, one([use_mask, use_dropout](const std::vector<Tensor>& in) {
                                Generator gen(5);
                                return muxnet::scaled_dot_product_attention(in[0], in[1], in[2],
                                                                            use_mask ? in[3] : Tensor(),
                                                                            use_dropout ? 0.25 : 0.0, use_dropout, &gen);
                              }),
                              tol, tol, seed++);
      }
    }
  }
}

TEST_CASE(T_AG_CONV, "[cuda]") {
  Tf32Off tf32_off;
  uint64_t seed = 3600;
  for (DType dt : kFloatTypes) {
    Tensor x = rnd({2, 3, 9, 11}, seed++, dt, -1, 1), w = rnd({4, 3, 3, 3}, seed++, dt, -1, 1);
    Tensor b = rnd({4}, seed++, dt);
    for (const Arg& xa : {contiguous_arg(x), transposed_arg(x, 2, 3), strided_arg(x)}) {
      for (int64_t stride : {int64_t(1), int64_t(2)}) {
        for (int64_t pad : {int64_t(0), int64_t(1)}) {
          Arg xg = xa, wg = contiguous_arg(w), bg = contiguous_arg(b);
          const std::string what = std::string(str(dt)) + " stride " + std::to_string(stride) + " pad " +
                                   std::to_string(pad) + " x " + xa.layout;
          // Gradients sum over B * oh * ow positions (weight) or K = C*kh*kw taps (input).
          const Tol tol = tol_matmul(dt, 2 * 9 * 11, 2);
          check_autograd_parity("conv2d with bias " + what, {xg.requires_grad(), wg.requires_grad(), bg.requires_grad()},
                                one([stride, pad](const std::vector<Tensor>& in) {
                                  return muxnet::conv2d(in[0], in[1], in[2], stride, pad);
                                }),
                                tol_matmul(dt, 27), tol, seed++);
          check_autograd_parity("conv2d without bias " + what, {xg.requires_grad(), wg.requires_grad()},
                                one([stride, pad](const std::vector<Tensor>& in) {
                                  return muxnet::conv2d(in[0], in[1], Tensor(), stride, pad);
                                }),
                                tol_matmul(dt, 27), tol, seed++);
        }
      }
    }
    Tensor t = rnd_ties({2, 3, 13, 17}, seed++, dt);  // ties: the gradient goes to the first winner
    for (const Arg& ta : {contiguous_arg(t), transposed_arg(t, 2, 3)}) {
      for (const std::array<int64_t, 3>& kps : std::vector<std::array<int64_t, 3>>{{3, 2, 1}, {2, 0, 0}, {3, 1, 1}}) {
        Arg a = ta;
        check_autograd_parity("max_pool2d kernel " + std::to_string(kps[0]) + " stride " + std::to_string(kps[1]) +
                                  " pad " + std::to_string(kps[2]) + " " + str(dt) + " " + ta.layout,
                              {a.requires_grad()}, one([kps](const std::vector<Tensor>& in) {
                                return muxnet::max_pool2d(in[0], kps[0], kps[1], kps[2]);
                              }),
                              tol_exact(), tol_sum(dt, 9, 2), seed++);
      }
    }
  }
}
