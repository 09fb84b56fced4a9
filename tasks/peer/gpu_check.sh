#!/usr/bin/env bash
# gpu_check.sh — everything to run when a GPU machine is lent, in one command from the repository root
# of a fresh copy: the CUDA build, the [cuda] tests, the throughput protocol on the GPU, the training-step
# time of the benchmark config, and nvidia-smi. Everything it writes goes under $OUT when that is set
# (the device runner's output folder), else runs/gpu/: one log per stage, the metrics (*.jsonl) and
# summary.txt (the tables and each stage's exit status).
#
# Budget: well inside 10 minutes on an H200 with 16 cores (build ~3 min, the rest ~2-3 min). Every stage
# has a time cap, and a global deadline (DEADLINE_S, default 540 s from the start) shrinks or skips the
# later ones, so nvidia-smi and the summary are always written. A failing stage does not stop the others.
#
# Stages:
#   build       make -j$JOBS CUDA=1 (the library, the tasks) + build/muxnet_tests, build/bench_layers
#   test-cuda   make test-cuda: the [cuda] tests (parity of every CUDA kernel with the CPU oracle)
#   throughput  build/throughput --device cuda, L = 128, N = 1,2,5,10,20,40 and the plain classifier,
#               at --batch 256 (the GPU figures) and --batch 32 (the CPU protocol, for comparison).
#               Why 256 mixed sequences per pass: at 32 the plain classifier's pass is 32 x 128 = 4 k tokens,
#               ~28 GFLOP, about 0.5 ms of f32 math on an H200 against ~150 kernel launches per pass
#               (several µs each), so launches, not work, would set the time and the multipliers. At 256
#               the plain pass is ~225 GFLOP and N = 40 classifies 10 240 instances per pass (its largest
#               activation, B·N·T·d f32 in the mux, is 1.8 GB): every point is compute-bound and fits.
#   train-step  build/retrieval --device cuda with the ../shared/bench T-MUX config (V 5000, L 64, d 256,
#               4 heads, FFN 1024, 4 layers, B = 8 mixed sequences, AdamW; RESULTS.md table 5): 300 steps
#               per N, median step time ("step ms"); then build/bench_layers --device cuda (the backbone
#               alone, N = 1, 10, 40, and the LeNet CNN: the steps tasks/peer/compare_layers.sh times).
#   nvidia-smi  the GPU's state at the end.
#
#   tasks/peer/gpu_check.sh            # on the GPU machine
#   tasks/peer/gpu_check.sh --smoke    # here, without a GPU: MUXNET_EMULATE_CUDA=1 (host memory, the CPU
#                                      # kernels), tiny shapes, -j2; checks the script and the plumbing only
# Environment: OUT (output folder), JOBS (make -j, default nproc), DEADLINE_S (default 540), GPU_CHECK_SMOKE=1
# (same as --smoke).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2

smoke=${GPU_CHECK_SMOKE:-0}
[ "${1:-}" = "--smoke" ] && smoke=1
out=${OUT:-runs/gpu}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
deadline=${DEADLINE_S:-540}
jobs=${JOBS:-$(nproc)}
start=$(date +%s)
summary="$out/summary.txt"
: > "$summary"

if [ "$smoke" = 1 ]; then
  export MUXNET_EMULATE_CUDA=1
  jobs=${JOBS:-2}
  cuda_flag=""  # here: whatever the Makefile detects (emulation needs no CUDA build)
  thr_args=(--len 8 --n 1,2,5 --d 16 --heads 2 --ff 32 --layers 1 --vocab 50 --warmup 1 --repeats 2)
  thr_batches=(4 2)
  train_args=(--vocab 50 --len 8 --d 16 --heads 2 --ff 32 --layers 1 --batch 2 --n 1,5 --steps 5 --key-norm 4)
  bench_args=(--n 1 --steps 2 --warmup 1)
else
  cuda_flag="CUDA=1"  # fail loudly if nvcc is missing rather than build a CPU-only engine
  thr_args=(--len 128 --n 1,2,5,10,20,40)
  thr_batches=(256 32)
  train_args=(--vocab 5000 --len 64 --d 256 --heads 4 --ff 1024 --layers 4 --batch 8 --n 1,2,5,10,20,40
              --steps 300 --key-norm 16)
  bench_args=(--n 1,10,40 --steps 50 --warmup 5)
fi

# stage NAME CAP_S CMD...: runs CMD with its output in $out/NAME.log (and on the terminal), under
# timeout min(CAP_S, what is left before the deadline less 20 s for the last stages); records the status.
stage() {
  local name=$1 cap=$2
  shift 2
  local left=$((deadline - ($(date +%s) - start) - 20))
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 5 ]; then
    echo "== $name: skipped (deadline: ${left} s left)" | tee -a "$summary"
    return
  fi
  echo "== $name (cap ${limit} s): $*" | tee "$out/$name.log"
  local t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  local note=""
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && note=" (timed out)"
  echo "== $name: exit $rc$note after $(($(date +%s) - t0)) s" | tee -a "$summary"
}

{
  echo "gpu_check $(date -u +%FT%TZ) smoke=$smoke jobs=$jobs deadline=${deadline}s"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  (nvidia-smi -L 2>/dev/null || echo "nvidia-smi: no GPU listed") | head -4
  (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>/dev/null || echo "nvcc: not found") | tail -2
} | tee "$out/info.txt"

stage build 330 make -j"$jobs" --no-print-directory $cuda_flag all build/muxnet_tests build/bench_layers
stage test-cuda 90 make -j"$jobs" --no-print-directory $cuda_flag test-cuda
for b in "${thr_batches[@]}"; do
  stage "throughput_b$b" 75 build/throughput --device cuda --batch "$b" "${thr_args[@]}" --runs "$out"
done
stage train-step 120 build/retrieval --device cuda "${train_args[@]}" --target 0 --eval-every 100000 --eval-size 16 \
  --throughput-batch 32 --runs "$out"
stage bench-layers 45 build/bench_layers --device cuda "${bench_args[@]}"

(nvidia-smi 2>&1 || echo "nvidia-smi: not available") > "$out/nvidia-smi.txt"

# The tables, for reading in one place.
{
  echo
  for b in "${thr_batches[@]}"; do
    f="$out/throughput_b$b.log"
    [ -f "$f" ] && { echo "-- throughput --batch $b"; grep -E "^device:|^(model|plain|N=[0-9]+) " "$f"; }  # progress lines start with spaces
  done
  [ -f "$out/train-step.log" ] && { echo "-- train step (retrieval, B = 8 mixed)"; grep -E "^retrieval:|^N |^[0-9]+ " "$out/train-step.log"; }
  [ -f "$out/bench-layers.log" ] && { echo "-- bench_layers"; grep -E "^bench_layers|step " "$out/bench-layers.log"; }
  echo "total $(($(date +%s) - start)) s"
} >> "$summary"
cat "$summary"
