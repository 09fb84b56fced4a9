#!/usr/bin/env bash
# compare_layers.sh — runs build/bench_layers and its PyTorch peer (torch_layers.py) back to back under
# the same environments and prints muxnet / PyTorch step-time ratios (< 1: muxnet is faster).
#
# Environments (both engines get the same OpenBLAS kernel; PyTorch also gets the retaining jemalloc
# configuration of ../shared/bench, which makes it 2-4x faster than glibc malloc here):
#   haswell  OPENBLAS_CORETYPE=Haswell   (the 256-bit kernel ../shared/bench's machine selects)
#   avx512   OPENBLAS_CORETYPE=SkylakeX  (OpenBLAS 0.3.21 does not detect this Xeon; left alone it falls
#                                         back to its slow generic kernel, so the kernel is named here)
# Needs: make build/bench_layers; apt-get install -y python3-torch libjemalloc2
#   tasks/peer/compare_layers.sh [THREADS...]          (default: 1 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=("$@")
[ $# -eq 0 ] && threads=(1 2)
je=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
[ -f "$je" ] || { echo "compare_layers: $je missing (apt-get install -y libjemalloc2)"; exit 2; }
out=$(mktemp)
for env in haswell avx512; do
  core=Haswell; [ "$env" = avx512 ] && core=SkylakeX
  for t in "${threads[@]}"; do
    OPENBLAS_CORETYPE=$core build/bench_layers --threads "$t" --json | sed "s/^{/{\"config\": \"$env\", /" >> "$out"
    OPENBLAS_CORETYPE=$core LD_PRELOAD=$je MALLOC_CONF=oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1 \
      /usr/bin/python3 tasks/peer/torch_layers.py --threads "$t" | sed "s/^{/{\"config\": \"$env\", /" >> "$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
key = lambda r: (r["config"], r["model"], r["threads"], r["n"])
mux = {key(r): r for r in rows if r["engine"] == "muxnet"}
pt = {key(r): r for r in rows if r["engine"] == "pytorch"}
print("| config | model | threads | N | muxnet step ms | PyTorch step ms | ratio muxnet/PyTorch |")
print("|---|---|---|---|---|---|---|")
for k in sorted(mux):
    if k in pt:
        m, p = mux[k]["step_s"] * 1e3, pt[k]["step_s"] * 1e3
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {m:.1f} | {p:.1f} | {m / p:.2f} |")
PY
rm -f "$out"
