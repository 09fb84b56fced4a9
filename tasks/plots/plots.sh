#!/usr/bin/env bash
# plots.sh — `make plots`: PNG plots of accuracy vs N and throughput vs N from runs/*.jsonl.
#
#   tasks/plots/plots.sh [RUNS_DIR]         (default runs; PNGs go to RUNS_DIR/plots/)
#
# Inputs (any may be missing; its plot then shows only the paper's series, or is skipped):
#   sst2.jsonl        "result" lines: n, dev_acc                      -> sst2_accuracy.png
#   ner.jsonl         "result" lines: n, test_f1                      -> ner_f1.png
#   vision.jsonl      "result" lines: model, dataset, n, test_acc     -> vision_accuracy.png
#   retrieval.jsonl   "result" lines: data, n, heldout_acc            -> retrieval_accuracy.png
#   throughput.jsonl  one line per point: model, L, n, x_vs_plain, x_vs_n1, ceiling_vs_plain,
#                     inst_per_s                                      -> throughput_multiplier.png
#   peer_cls.jsonl    the PyTorch peer's lines (tasks/peer/compare_cls.sh) -> throughput_instances.png
# The latest line per N wins (build/jsonl2dat). The paper's values are PAPER.md §2 (12-layer models,
# Hadamard mux): SST-2 and NER from §2.1, the MNIST CNN from §2.4, throughput multipliers (vs N = 1,
# 12L/768H, GPU) from §2.2.
# Needs gnuplot (Debian: gnuplot-nox) and build/jsonl2dat; without gnuplot it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs}
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "plots: gnuplot not found (apt-get install -y gnuplot-nox); no plots made"
  exit 0
fi
tool=build/jsonl2dat
[ -x "$tool" ] || { echo "plots: $tool missing (make build/jsonl2dat)"; exit 2; }
out=$runs/plots
mkdir -p "$out"
dat=$(mktemp -d)
trap 'rm -rf "$dat"' EXIT

# ---- the paper's values (PAPER.md §2)
printf '1 81.4\n2 79.2\n5 79.7\n10 77.4\n20 78.8\n40 76.4\n' > "$dat/paper_sst2"
printf '1 78.7\n2 77.1\n5 79.3\n10 76.6\n20 75.7\n40 66.7\n' > "$dat/paper_ner"
printf '1 98.58\n2 97.38\n4 94.67\n8 83.65\n16 53.30\n' > "$dat/paper_cnn_mnist"
printf '1 1.00\n2 1.29\n5 3.2\n10 6.1\n20 11.1\n40 18.3\n' > "$dat/paper_throughput"

# ---- ours
"$tool" "$runs/sst2.jsonl" n dev_acc event=result --percent > "$dat/sst2"
"$tool" "$runs/ner.jsonl" n test_f1 event=result --percent > "$dat/ner"
for model in mlp cnn; do
  for ds in mnist fashion; do
    "$tool" "$runs/vision.jsonl" n "test_acc|mean_acc" event=result model=$model dataset=$ds --percent \
      > "$dat/vision_${model}_$ds"
  done
done
for data in synthetic sst2; do
  "$tool" "$runs/retrieval.jsonl" n heldout_acc event=result data=$data --percent > "$dat/retrieval_$data"
done
for L in 128 64; do
  "$tool" "$runs/throughput.jsonl" n x_vs_plain,ceiling_vs_plain model=tmux L=$L > "$dat/thr_plain_$L"
  "$tool" "$runs/throughput.jsonl" n x_vs_n1 model=tmux L=$L > "$dat/thr_n1_$L"
  "$tool" "$runs/throughput.jsonl" n inst_per_s model=tmux L=$L > "$dat/ips_$L"
  "$tool" "$runs/peer_cls.jsonl" n inst_per_s_med baseline=false L=$L > "$dat/peer_ips_$L"
done

# plot PNG TITLE XLABEL YLABEL EXTRA_SETTINGS SERIES... ; a series is "FILE|USING|TITLE|STYLE" and is
# left out when FILE is empty. Nothing is drawn when only paper series (or none) have data and
# REQUIRE_OURS=1.
plot() {
  local png=$1 title=$2 xl=$3 yl=$4 extra=$5
  shift 5
  local cmd="" ours=0
  for s in "$@"; do
    IFS='|' read -r f using t style <<< "$s"
    [ -s "$f" ] || continue
    case $f in */paper_*) ;; *) ours=1 ;; esac
    cmd+="${cmd:+, }'$f' using $using title '$t' with $style"
  done
  if [ -z "$cmd" ] || { [ "${REQUIRE_OURS:-0}" = 1 ] && [ $ours = 0 ]; }; then
    echo "plots: no data for $png, skipped"
    return
  fi
  gnuplot <<EOF
set terminal pngcairo size 800,520 font "sans,11"
set output '$out/$png'
set title '$title'
set xlabel '$xl'
set ylabel '$yl'
set grid
set key bottom left
set logscale x 2
$extra
plot $cmd
EOF
  echo "plots: $out/$png$([ $ours = 0 ] && echo ' (paper values only: no runs yet)')"
}

lp='linespoints lw 2 pt 7'
pp='linespoints lw 1 dt 2 pt 6'
plot sst2_accuracy.png "SST-2 dev accuracy vs N (T-MUX)" N "accuracy %" "" \
  "$dat/sst2|1:2|muxnet|$lp" "$dat/paper_sst2|1:2|paper (12L, Hadamard)|$pp"
plot ner_f1.png "CoNLL-2003 test F1 vs N (T-MUX)" N "entity F1 %" "" \
  "$dat/ner|1:2|muxnet|$lp" "$dat/paper_ner|1:2|paper (12L, Hadamard)|$pp"
plot vision_accuracy.png "MNIST / Fashion-MNIST test accuracy vs N (mean over slots)" N "accuracy %" "" \
  "$dat/vision_mlp_mnist|1:2|MLP MNIST|$lp" "$dat/vision_cnn_mnist|1:2|CNN MNIST|$lp" \
  "$dat/vision_mlp_fashion|1:2|MLP Fashion|$lp" "$dat/vision_cnn_fashion|1:2|CNN Fashion|$lp" \
  "$dat/paper_cnn_mnist|1:2|paper CNN MNIST|$pp"
REQUIRE_OURS=1 plot retrieval_accuracy.png "Retrieval warm-up held-out accuracy vs N" N "accuracy %" "" \
  "$dat/retrieval_synthetic|1:2|synthetic|$lp" "$dat/retrieval_sst2|1:2|SST-2 sentences|$lp"
plot throughput_multiplier.png "T-MUX sentence classification: throughput multiplier vs N" N \
  "instances/s relative to the reference" "set key top left; set logscale y 2" \
  "$dat/thr_plain_128|1:2|muxnet vs plain, L=128|$lp" "$dat/thr_plain_128|1:3|FLOP ceiling vs plain, L=128|lines lw 1 dt 3" \
  "$dat/thr_n1_128|1:2|muxnet vs N=1, L=128|linespoints lw 1 pt 5" \
  "$dat/thr_plain_64|1:2|muxnet vs plain, L=64|linespoints lw 1 pt 9" "$dat/thr_plain_64|1:3|FLOP ceiling vs plain, L=64|lines lw 1 dt 4" \
  "$dat/paper_throughput|1:2|paper vs N=1 (12L/768H, GPU)|$pp"
REQUIRE_OURS=1 plot throughput_instances.png "T-MUX sentence classification: instances/s vs N (CPU)" N \
  "instances / s" "set key top left; set logscale y 10" \
  "$dat/ips_128|1:2|muxnet, L=128|$lp" "$dat/peer_ips_128|1:2|PyTorch peer, L=128|$pp" \
  "$dat/ips_64|1:2|muxnet, L=64|linespoints lw 1 pt 9" "$dat/peer_ips_64|1:2|PyTorch peer, L=64|linespoints lw 1 dt 2 pt 8"
