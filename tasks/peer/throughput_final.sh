#!/usr/bin/env bash
# throughput_final.sh — the issue-6 throughput measurement in one command, for an otherwise idle machine:
# T-MUX sentence classification vs the plain classifier and vs the PyTorch peer (compare_cls.sh), at
# L = 128 (the paper's length, the targets) and L = 64 (../shared/bench/RESULTS.md §8's shape),
# 2 threads, 3 alternating rounds each (per-point medians), then `make plots`.
# Tables: runs/throughput_L128.md and runs/throughput_L64.md; raw lines: runs/throughput.jsonl,
# runs/peer_cls.jsonl. About 7 minutes on 2 idle cores.
#   tasks/peer/throughput_final.sh            (ROUNDS, THREADS, REPEATS are passed through)
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j2 --no-print-directory build/throughput build/jsonl2dat | grep -v "^  [✓✗]\|build configuration" || true
mkdir -p runs
echo "load before: $(cat /proc/loadavg)"
for len in 128 64; do
  LEN=$len ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-2} tasks/peer/compare_cls.sh | tee "runs/throughput_L$len.log"
  sed -n '/^L=/,$p' "runs/throughput_L$len.log" > "runs/throughput_L$len.md"
done
echo "load after: $(cat /proc/loadavg)"
make --no-print-directory plots | grep "^plots"
