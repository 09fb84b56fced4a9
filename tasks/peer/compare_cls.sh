#!/usr/bin/env bash
# compare_cls.sh — the DataMUX throughput protocol (T-MUX sentence classification, inference) run by
# build/throughput and by its PyTorch peer (../shared/bench/torch_tmux.py --task cls) back to back,
# with the same OpenBLAS kernel and thread count; prints instances/s of both and their ratio per point.
#
# Environment (both engines): OPENBLAS_CORETYPE=SkylakeX (OpenBLAS 0.3.21 does not detect this Xeon
# and would fall back to its slow generic kernel; muxnet picks SkylakeX itself, the peer needs the
# variable), or Haswell with CONFIG=haswell. PyTorch also gets ../shared/bench's retaining jemalloc
# configuration (its je_* configs), which makes it faster here.
# Each round runs every muxnet point, then every peer point (one fresh process per peer point, as
# ../shared/bench/run_cls.sh); with ROUNDS > 1 the rounds alternate and the table shows per-point
# medians over rounds. Multipliers are within one engine's rounds.
#
# Knobs (environment): LEN=128 THREADS=2 REPEATS=21 WARMUP=3 BATCH=32 ROUNDS=1 CONFIG=avx512|haswell
#   POINTS (arguments): "base" and/or N values; default: base 1 2 5 10 20 40
# Output: the table on stdout; muxnet's lines are appended to runs/throughput.jsonl, the peer's to
# runs/peer_cls.jsonl (both feed `make plots`).
# Needs: make build/throughput; apt-get install -y python3-torch libjemalloc2
#   tasks/peer/compare_cls.sh                         # L = 128, 2 threads, all points
#   LEN=64 REPEATS=5 tasks/peer/compare_cls.sh base 1 40
set -euo pipefail
cd "$(dirname "$0")/../.."
LEN=${LEN:-128}; THREADS=${THREADS:-2}; REPEATS=${REPEATS:-21}; WARMUP=${WARMUP:-3}; BATCH=${BATCH:-32}
ROUNDS=${ROUNDS:-1}; CONFIG=${CONFIG:-avx512}
points=("$@")
[ $# -eq 0 ] && points=(base 1 2 5 10 20 40)
peer=../shared/bench/torch_tmux.py
[ -f "$peer" ] || peer=/work/shared/bench/torch_tmux.py
je=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
[ -x build/throughput ] || { echo "compare_cls: build/throughput missing (make build/throughput)"; exit 2; }
[ -f "$peer" ] || { echo "compare_cls: the peer $peer is missing"; exit 2; }
[ -f "$je" ] || { echo "compare_cls: $je missing (apt-get install -y libjemalloc2)"; exit 2; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "compare_cls: PyTorch missing (apt-get install -y python3-torch)"; exit 2; }
case $CONFIG in
  avx512) core=SkylakeX ;;
  haswell) core=Haswell ;;
  *) echo "compare_cls: CONFIG must be avx512 or haswell, got '$CONFIG'"; exit 2 ;;
esac

ns=(); skip_plain=--skip-plain
for p in "${points[@]}"; do
  if [ "$p" = base ]; then skip_plain=; else ns+=("$p"); fi
done
nlist=$(IFS=,; echo "${ns[*]:-}")
[ -n "$nlist" ] || { echo "compare_cls: give at least one N (the muxnet binary always times one)"; exit 2; }

mkdir -p runs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sweep=$(date -u +%Y%m%dT%H%M%SZ).$$
echo "compare_cls: L=$LEN B=$BATCH threads=$THREADS kernel=$core, $WARMUP warm-up + $REPEATS timed passes, $ROUNDS round(s), points: ${points[*]}"
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r/$ROUNDS: muxnet ($(cut -d' ' -f1 /proc/loadavg) load)"
  OPENBLAS_CORETYPE=$core build/throughput --n "$nlist" $skip_plain --len "$LEN" --batch "$BATCH" \
      --threads "$THREADS" --warmup "$WARMUP" --repeats "$REPEATS" --runs "$tmp/mux$r"
  sed "s/^{/{\"engine\": \"muxnet\", \"round\": $r, \"sweep\": \"$sweep\", /" "$tmp/mux$r/throughput.jsonl" >> "$tmp/all.jsonl"
  cat "$tmp/mux$r/throughput.jsonl" >> runs/throughput.jsonl
  echo "== round $r/$ROUNDS: PyTorch ($(cut -d' ' -f1 /proc/loadavg) load)"
  for p in "${points[@]}"; do
    if [ "$p" = base ]; then pt=(--baseline --n 1); else pt=(--n "$p"); fi
    OPENBLAS_CORETYPE=$core LD_PRELOAD=$je MALLOC_CONF=oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1 \
      BENCH_CONFIG=je_$CONFIG BENCH_SWEEP=$sweep /usr/bin/python3 "$peer" --task cls "${pt[@]}" --mode infer \
      --steps "$REPEATS" --warmup "$WARMUP" --threads "$THREADS" --batch "$BATCH" --seq-len "$LEN" > "$tmp/peer.json"
    cat "$tmp/peer.json" >> runs/peer_cls.jsonl
    sed "s/^{/{\"engine\": \"pytorch\", \"round\": $r, /" "$tmp/peer.json" >> "$tmp/all.jsonl"
    /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  %-5s %.4f s/pass  %8.1f inst/s" % ("base" if r["baseline"] else "N=%d" % r["n"], r["time_med_s"], r["inst_per_s_med"]))' "$tmp/peer.json"
  done
done

/usr/bin/python3 - "$tmp/all.jsonl" "$LEN" "$THREADS" "$core" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def key(r):
    if r["engine"] == "muxnet":
        return "base" if r["model"] == "plain" else r["n"]
    return "base" if r["baseline"] else r["n"]
ips = {}
for r in rows:
    v = r["inst_per_s"] if r["engine"] == "muxnet" else r["inst_per_s_med"]
    ips.setdefault((r["engine"], key(r)), []).append(v)
ceil = {key(r): r["ceiling_vs_plain"] for r in rows if r["engine"] == "muxnet"}
med = {k: statistics.median(v) for k, v in ips.items()}
order = sorted({k[1] for k in med}, key=lambda p: -1 if p == "base" else p)
print(f"\nL={sys.argv[2]}, {sys.argv[3]} threads, OpenBLAS {sys.argv[4]}; inst/s = median pass; "
      f"rounds per point: {max(len(v) for v in ips.values())}")
print("| point | muxnet inst/s | PyTorch inst/s | muxnet / PyTorch | muxnet x plain | PyTorch x plain | FLOP ceiling x plain |")
print("|---|---|---|---|---|---|---|")
def fmt(x, f="%.0f"):
    return "-" if x is None else f % x
for p in order:
    m, t = med.get(("muxnet", p)), med.get(("pytorch", p))
    mb, tb = med.get(("muxnet", "base")), med.get(("pytorch", "base"))
    print("| %s | %s | %s | %s | %s | %s | %s |" % (
        "plain" if p == "base" else "N=%d" % p, fmt(m), fmt(t),
        fmt(m / t if m and t else None, "%.2f"), fmt(m / mb if m and mb else None, "%.2f"),
        fmt(t / tb if t and tb else None, "%.2f"), fmt(ceil.get(p), "%.2f")))
PY
