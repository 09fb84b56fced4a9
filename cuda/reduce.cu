// reduce.cu — CUDA kernels of OpId::reduce (sum, mean, max, min over any set of dims), OpId::argmax and
// OpId::sum_squares. The oracles are tensor/cpu/reduce.cpp and, for sum_squares, tensor/cpu/optim.cpp.
//
// How a reduction runs. As on the CPU, x's dims are split into kept dims (one output each) and reduced
// dims; size-1 dims are dropped, each group is sorted by x's stride (largest first) and dims that step
// through x (and out) as one are merged. x may have any strides (views are read in place); out's own
// strides are honoured too. Two kernels, chosen by layout only:
//   - thread path: one thread per output (or per piece of one), looping over its reduction. Used when
//     the innermost kept dim has the smallest stride ("columns", e.g. a bias gradient (4096, 256) ->
//     (256): neighbouring threads read neighbouring columns) or when reductions are short (<= 32).
//   - block path: one block per output (or per piece of one); its threads stride over the reduction
//     (coalesced when the innermost reduced dim is dense) and combine in a shared-memory tree.
// When there are too few outputs to fill the GPU, each output's reduction is cut into pieces whose
// size depends on the shape only; the pieces' partial results go to a scratch tensor and a third
// kernel merges them in piece order. Every summation order is therefore a function of the shape: the
// results are deterministic (no atomics).
//
// Semantics (the CPU's, which are PyTorch's except the dtype of integer sums):
//   - f32 and f64 sums (and every mean) accumulate in f64 and are rounded once at the end, like the CPU;
//     i32 and i64 sums accumulate in i64 (i32 results are cast back to i32). The order of the additions
//     differs from the CPU's, so f64 results can differ in the last bits; f32 results almost never do.
//   - mean = sum / count (floating dtypes only); over an empty dim sum = 0 and mean = NaN (0 / 0).
//   - max/min propagate NaN; over an empty dim they throw (the op layer rejects that first).
//   - argmax returns the i64 index of the first maximum; NaN beats every number, so the first NaN wins.
//   - sum_squares: sum of x^2 over contiguous floating x, each square and the sum in f64.
// What this is not: a warp-shuffle or vectorised-load reduction tuned for peak bandwidth.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "cuda/elem_iter.cuh"
#include "tensor/dtype_dispatch.h"
#include "tensor/reduce_plan.h"

namespace muxnet {

namespace {

constexpr int kReduceBlock = 256;          // threads of a block-path block (a power of two, the maximum)
constexpr int64_t kShortReduce = 32;       // reductions this short take the thread path
constexpr int64_t kThreadTasks = 65536;    // thread path: split reductions until about this many threads
constexpr int64_t kThreadPiece = 32;       // ... but give each thread at least this many elements
constexpr int64_t kBlockTasks = 1024;      // block path: split reductions until about this many blocks
constexpr int64_t kBlockPiece = 4096;      // ... but give each block at least this many elements
constexpr int64_t kMaxSplit = 4096;        // pieces per output at most (bounds the serial merge)
constexpr int64_t kMaxBlocks = 65535LL * 16;  // grid cap of the block-per-task kernels (they grid-stride)
constexpr int64_t kSquaresMaxBlocks = 1024;   // sum_squares: partial sums per launch

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads for a block that combines about n elements: a power of two in [32, kReduceBlock].
int block_threads_for(int64_t n) {
  int threads = 32;
  while (threads < kReduceBlock && threads < n) threads *= 2;
  return threads;
}

// ---------------------------------------------------------------- loop nests

// The loop nests (kept and reduced dims) are tensor/reduce_plan.h's, in the layout element_offsets
// (elem_iter.cuh) reads: strides IN ELEMENTS of x (strides[0]) and of out (strides[1]).
using Nest = ReduceNest;

// ---------------------------------------------------------------- reducers

template <typename T> using SumAcc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// init is the identity (set on the host from identity()); step folds one input element in, merge folds
// a partial result in, finish makes the output from the accumulator and the number of reduced elements.
template <typename T, ReduceOp op> struct Reducer;

template <typename T> struct Reducer<T, ReduceOp::Sum> {
  using Acc = SumAcc<T>;
  Acc init;
  static Acc identity() { return Acc(0); }
  __device__ Acc step(Acc a, T v) const { return a + Acc(v); }
  __device__ Acc merge(Acc a, Acc b) const { return a + b; }
  __device__ T finish(Acc a, int64_t) const { return T(a); }
};

template <typename T> struct Reducer<T, ReduceOp::Mean> {
  using Acc = double;
  Acc init;
  static Acc identity() { return 0.0; }
  __device__ Acc step(Acc a, T v) const { return a + Acc(v); }
  __device__ Acc merge(Acc a, Acc b) const { return a + b; }
  __device__ T finish(Acc a, int64_t count) const { return T(a / double(count)); }  // 0 / 0 = NaN if empty
};

// NOTE: `v != v` is true only for NaN: a NaN wins and then stays (NaN > x is always false), in step and
// in merge alike, so NaN propagates whatever the order of the tree.
template <typename T> struct Reducer<T, ReduceOp::Max> {
  using Acc = T;
  Acc init;
  static Acc identity() {
    return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::lowest();
  }
  __device__ Acc step(Acc a, T v) const { return (v > a || v != v) ? v : a; }
  __device__ Acc merge(Acc a, Acc b) const { return step(a, b); }
  __device__ T finish(Acc a, int64_t) const { return a; }
};

template <typename T> struct Reducer<T, ReduceOp::Min> {
  using Acc = T;
  Acc init;
  static Acc identity() {
    return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::max();
  }
  __device__ Acc step(Acc a, T v) const { return (v < a || v != v) ? v : a; }
  __device__ Acc merge(Acc a, Acc b) const { return step(a, b); }
  __device__ T finish(Acc a, int64_t) const { return a; }
};

struct SumDouble {
  __device__ double merge(double a, double b) const { return a + b; }
};

// ---------------------------------------------------------------- kernels

// Combines every thread's v with r.merge in a fixed tree (blockDim.x is a power of two <= kReduceBlock);
// every thread gets the result. Ends with a barrier, so the caller may reuse smem at once.
template <typename Acc, typename R>
__device__ Acc block_reduce(Acc v, Acc* smem, const R& r) {
  const int tid = threadIdx.x;
  smem[tid] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) smem[tid] = r.merge(smem[tid], smem[tid + s]);
    __syncthreads();
  }
  const Acc result = smem[0];
  __syncthreads();
  return result;
}

// Block path. Task t = o * nsplit + s reduces elements [s * chunk, min(nred, (s + 1) * chunk)) of output
// o (row-major index over kept) and writes out[o] (nsplit == 1) or partial[t].
template <typename T, typename R>
__global__ void reduce_block_kernel(const T* x, T* out, typename R::Acc* partial, Nest kept, Nest red, int64_t nout,
                                    int64_t nred, int64_t nsplit, int64_t chunk, int64_t count, R r) {
  using Acc = typename R::Acc;
  __shared__ Acc smem[kReduceBlock];
  const int64_t ntasks = nout * nsplit;
  for (int64_t t = blockIdx.x; t < ntasks; t += gridDim.x) {  // uniform across the block
    const int64_t o = t / nsplit, s = t - o * nsplit;
    int64_t ko[2];
    cuda::element_offsets<2>(kept, nout, o, ko);
    const int64_t begin = s * chunk;
    const int64_t end = begin + chunk < nred ? begin + chunk : nred;
    Acc acc = r.init;
    for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
      int64_t ro[1];
      cuda::element_offsets<1>(red, nred, j, ro);
      acc = r.step(acc, x[ko[0] + ro[0]]);
    }
    acc = block_reduce(acc, smem, r);
    if (threadIdx.x == 0) {
      if (nsplit == 1) {
        out[ko[1]] = r.finish(acc, count);
      } else {
        partial[t] = acc;
      }
    }
  }
}

// Thread path. Task t = s * nout + o (outputs fastest, so neighbouring threads take neighbouring
// outputs) reduces elements [s * chunk, min(nred, (s + 1) * chunk)) of output o in order and writes
// out[o] (nsplit == 1) or partial[t].
template <typename T, typename R>
__global__ void reduce_thread_kernel(const T* x, T* out, typename R::Acc* partial, Nest kept, Nest red, int64_t nout,
                                     int64_t nred, int64_t nsplit, int64_t chunk, int64_t count, R r) {
  using Acc = typename R::Acc;
  const int64_t ntasks = nout * nsplit;
  for (int64_t t = cuda::grid_first(); t < ntasks; t += cuda::grid_step()) {
    const int64_t s = t / nout, o = t - s * nout;
    int64_t ko[2];
    cuda::element_offsets<2>(kept, nout, o, ko);
    const int64_t begin = s * chunk;
    const int64_t end = begin + chunk < nred ? begin + chunk : nred;
    Acc acc = r.init;
    for (int64_t j = begin; j < end; ++j) {
      int64_t ro[1];
      cuda::element_offsets<1>(red, nred, j, ro);
      acc = r.step(acc, x[ko[0] + ro[0]]);
    }
    if (nsplit == 1) {
      out[ko[1]] = r.finish(acc, count);
    } else {
      partial[t] = acc;
    }
  }
}

// Output o = merge of partial[o * o_stride + s * s_stride] for s = 0, 1, ..., nsplit - 1, in that order.
template <typename T, typename R>
__global__ void reduce_merge_kernel(const typename R::Acc* partial, T* out, Nest kept, int64_t nout, int64_t nsplit,
                                    int64_t o_stride, int64_t s_stride, int64_t count, R r) {
  using Acc = typename R::Acc;
  for (int64_t o = cuda::grid_first(); o < nout; o += cuda::grid_step()) {
    int64_t ko[2];
    cuda::element_offsets<2>(kept, nout, o, ko);
    Acc acc = r.init;
    for (int64_t s = 0; s < nsplit; ++s) acc = r.merge(acc, partial[o * o_stride + s * s_stride]);
    out[ko[1]] = r.finish(acc, count);
  }
}

// True when (v, j) is a better argmax than (best, at): NaN beats every number, a larger value beats a
// smaller one, and between two NaNs or two equal values the lower index wins. This is a strict total
// order, so any combination order finds the CPU's answer (the first NaN, else the first maximum).
// at < 0 marks "no candidate yet"; j < 0 a thread that saw no element.
template <typename T>
__device__ __forceinline__ bool argmax_better(T v, int64_t j, T best, int64_t at) {
  if (j < 0) return false;
  if (at < 0) return true;
  const bool v_nan = v != v, best_nan = best != best;
  if (v_nan || best_nan) return v_nan && (!best_nan || j < at);
  return v > best || (v == best && j < at);
}

// One thread per output: a scan along dim (len elements, x stride `stride`).
template <typename T>
__global__ void argmax_thread_kernel(const T* x, int64_t* out, Nest kept, int64_t nout, int64_t len, int64_t stride) {
  for (int64_t o = cuda::grid_first(); o < nout; o += cuda::grid_step()) {
    int64_t ko[2];
    cuda::element_offsets<2>(kept, nout, o, ko);
    T best = T(0);
    int64_t at = -1;
    for (int64_t j = 0; j < len; ++j) {
      const T v = x[ko[0] + j * stride];
      if (argmax_better(v, j, best, at)) {
        best = v;
        at = j;
      }
    }
    out[ko[1]] = at;
  }
}

// One block per output: threads scan strided subsets, then a shared-memory tree of argmax_better.
template <typename T>
__global__ void argmax_block_kernel(const T* x, int64_t* out, Nest kept, int64_t nout, int64_t len, int64_t stride) {
  __shared__ T s_val[kReduceBlock];
  __shared__ int64_t s_idx[kReduceBlock];
  const int tid = threadIdx.x;
  for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {  // uniform across the block
    int64_t ko[2];
    cuda::element_offsets<2>(kept, nout, o, ko);
    T best = T(0);
    int64_t at = -1;
    for (int64_t j = tid; j < len; j += blockDim.x) {
      const T v = x[ko[0] + j * stride];
      if (argmax_better(v, j, best, at)) {
        best = v;
        at = j;
      }
    }
    s_val[tid] = best;
    s_idx[tid] = at;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (tid < s && argmax_better(s_val[tid + s], s_idx[tid + s], s_val[tid], s_idx[tid])) {
        s_val[tid] = s_val[tid + s];
        s_idx[tid] = s_idx[tid + s];
      }
      __syncthreads();
    }
    if (tid == 0) out[ko[1]] = s_idx[0];
    __syncthreads();  // s_idx[0] is read before the next output overwrites it
  }
}

// Per-block partial sums of x^2 in f64 (grid-stride over contiguous x); blockDim.x == kReduceBlock.
template <typename T>
__global__ void sum_squares_partial_kernel(const T* x, int64_t n, double* partial) {
  __shared__ double smem[kReduceBlock];
  double acc = 0.0;
  for (int64_t i = cuda::grid_first(); i < n; i += cuda::grid_step()) {
    const double v = double(x[i]);
    acc += v * v;
  }
  acc = block_reduce(acc, smem, SumDouble{});
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block: *result = sum of partial[0 .. n).
__global__ void sum_squares_final_kernel(const double* partial, int64_t n, double* result) {
  __shared__ double smem[kReduceBlock];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_reduce(acc, smem, SumDouble{});
  if (threadIdx.x == 0) *result = acc;
}

// ---------------------------------------------------------------- launchers

template <typename T, ReduceOp op>
void reduce_typed(const Tensor& x, DimMask dims, const Tensor& out) {
  using R = Reducer<T, op>;
  using Acc = typename R::Acc;
  const R r{R::identity()};
  Nest kept, red;
  const int64_t count = split_reduce_dims(x, dims, out, kept, red);
  if (out.numel() == 0) return;
  if (count == 0) {
    MUXNET_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean, reduce_op_name(op),
                 ": cannot reduce over an empty dim (no identity)");
  }
  kept.sort_and_coalesce();
  red.sort_and_coalesce();
  const int64_t nout = kept.numel();
  const int64_t nred = red.numel();  // 1 when nothing is reduced, 0 over an empty dim
  const T* xp = static_cast<const T*>(x.data_ptr());
  T* op_out = static_cast<T*>(out.data_ptr());

  const bool columns =
      kept.ndim > 0 && (red.ndim == 0 || kept.strides[0][kept.ndim - 1] < red.strides[0][red.ndim - 1]);
  const bool thread_path = columns || nred <= kShortReduce;

  // Pieces per output: a function of the shape only (determinism).
  const int64_t task_target = thread_path ? kThreadTasks : kBlockTasks;
  const int64_t min_piece = thread_path ? kThreadPiece : kBlockPiece;
  int64_t nsplit = 1;
  if (nout < task_target && nred >= 2 * min_piece) {
    nsplit = std::min({ceil_div(task_target, nout), nred / min_piece, kMaxSplit});
  }
  const int64_t chunk = nsplit > 1 ? ceil_div(nred, nsplit) : nred;
  if (nsplit > 1) nsplit = ceil_div(nred, chunk);  // no empty piece at the end

  Tensor scratch;  // partial results; freed after the launches (stream order keeps this safe)
  Acc* partial = nullptr;
  if (nsplit > 1) {
    scratch = empty(Shape{nout * nsplit}, dtype_of<Acc>::value, Device::CUDA);
    partial = static_cast<Acc*>(scratch.data_ptr());
  }
  const int64_t ntasks = nout * nsplit;
  if (thread_path) {
    reduce_thread_kernel<T, R><<<cuda::grid_for(ntasks), cuda::kBlock, 0, cuda::stream()>>>(
        xp, op_out, partial, kept, red, nout, nred, nsplit, chunk, count, r);
    CUDA_CHECK_LAUNCH("reduce_thread_kernel");
  } else {
    const unsigned blocks = unsigned(std::min(ntasks, kMaxBlocks));
    reduce_block_kernel<T, R><<<blocks, block_threads_for(chunk), 0, cuda::stream()>>>(
        xp, op_out, partial, kept, red, nout, nred, nsplit, chunk, count, r);
    CUDA_CHECK_LAUNCH("reduce_block_kernel");
  }
  if (nsplit > 1) {
    // Thread path: partial[s * nout + o]; block path: partial[o * nsplit + s].
    const int64_t o_stride = thread_path ? 1 : nsplit;
    const int64_t s_stride = thread_path ? nout : 1;
    reduce_merge_kernel<T, R><<<cuda::grid_for(nout), cuda::kBlock, 0, cuda::stream()>>>(
        partial, op_out, kept, nout, nsplit, o_stride, s_stride, count, r);
    CUDA_CHECK_LAUNCH("reduce_merge_kernel");
  }
}

// x: any shape and strides; out: x's shape with the reduced dims of size 1.
void reduce_cuda(ReduceOp op, const Tensor& x, DimMask dims, const Tensor& out) {
  dispatch_reduce(op, x.dtype(), [&](auto tag, auto op_tag) {
    reduce_typed<typename decltype(tag)::type, decltype(op_tag)::value>(x, dims, out);
  });
}

template <typename T>
void argmax_typed(const Tensor& x, int dim, const Tensor& out) {
  int64_t* o = static_cast<int64_t*>(out.data_ptr());
  if (x.ndim() == 0) {
    CUDA_CHECK(cudaMemsetAsync(o, 0, sizeof(int64_t), cuda::stream()));  // the CPU's o[0] = 0
    return;
  }
  const int64_t len = x.size(dim), stride = x.stride(dim);
  const Nest kept = argmax_kept_dims(x, dim, out);
  const int64_t nout = kept.numel();
  const T* xp = static_cast<const T*>(x.data_ptr());
  // A block per output when rows are long and either run along the smallest stride (e.g. logits
  // (B, V) over V) or are too few to fill the GPU one thread each; else a thread per output.
  const bool inner = kept.ndim == 0 || stride <= kept.strides[0][kept.ndim - 1];
  if (len > kShortReduce && (inner || nout < kBlockTasks)) {
    const unsigned blocks = unsigned(std::min(nout, kMaxBlocks));
    argmax_block_kernel<T><<<blocks, block_threads_for(len), 0, cuda::stream()>>>(xp, o, kept, nout, len, stride);
    CUDA_CHECK_LAUNCH("argmax_block_kernel");
  } else {
    argmax_thread_kernel<T><<<cuda::grid_for(nout), cuda::kBlock, 0, cuda::stream()>>>(xp, o, kept, nout, len,
                                                                                        stride);
    CUDA_CHECK_LAUNCH("argmax_thread_kernel");
  }
}

// x: any shape and strides, x.size(dim) > 0; out: i64, x's shape with dim of size 1.
void argmax_cuda(const Tensor& x, int dim, const Tensor& out) {
  if (out.numel() == 0) return;
  dispatch_all(x.dtype(), "argmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    argmax_typed<T>(x, dim, out);
  });
}

// x: contiguous, floating. Returns to the host (synchronises the stream).
double sum_squares_cuda(const Tensor& x) {
  const int64_t n = x.numel();
  if (n == 0) return 0.0;
  double total = 0.0;
  dispatch_floating(x.dtype(), "sum_squares", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // The block count depends on n only, so the summation order (and the result) is fixed.
    const int64_t nblocks = std::min(kSquaresMaxBlocks, ceil_div(n, int64_t(kReduceBlock) * 4));
    Tensor scratch = empty(Shape{nblocks + 1}, DType::F64, Device::CUDA);
    double* partial = static_cast<double*>(scratch.data_ptr());
    double* result = partial + nblocks;
    sum_squares_partial_kernel<T><<<unsigned(nblocks), kReduceBlock, 0, cuda::stream()>>>(
        static_cast<const T*>(x.data_ptr()), n, partial);
    CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
    sum_squares_final_kernel<<<1, kReduceBlock, 0, cuda::stream()>>>(partial, nblocks, result);
    CUDA_CHECK_LAUNCH("sum_squares_final_kernel");
    CUDA_CHECK(cudaMemcpyAsync(&total, result, sizeof(double), cudaMemcpyDeviceToHost, cuda::stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
  });
  return total;
}

}  // namespace

void register_cuda_reduce() {
  register_kernel<OpId::reduce>(Device::CUDA, reduce_cuda);
  register_kernel<OpId::argmax>(Device::CUDA, argmax_cuda);
  register_kernel<OpId::sum_squares>(Device::CUDA, sum_squares_cuda);
}

}  // namespace muxnet
