#!/usr/bin/env bash
# Compares two builds of one Google Benchmark binary on a host whose speed drifts (this VM
# moves by up to 2x from minute to minute): runs OLD and NEW back to back ROUNDS times,
# pinned to one core, and prints per benchmark the median of the NEW/OLD ratios of adjacent
# runs (each pair meets the same phase), with the best and median rate of each side.
#
#   bench/ab_pairs.sh OLD_BINARY NEW_BINARY 'FILTER_REGEX' [ROUNDS=10] [CPU=1]
#   bench/ab_pairs.sh /tmp/old/conntrack_bench build/release/bench/conntrack_bench \
#       'UdpHitBatch/1000000|TcpHitBatch/1000000' 10
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
old=$1 new=$2 filter=$3 rounds=${4:-10} cpu=${5:-1}
for bin in "$old" "$new"; do
  [[ -x $bin ]] || { echo "ab_pairs: $bin: not an executable" >&2; exit 2; }
done
rates() {  # one run: "name=M/s ..." for every benchmark with an items/s counter
  taskset -c "$cpu" "$1" --benchmark_filter="$filter" --benchmark_min_time=0.3 2>/dev/null |
    awk '/^BM_/ { for (i = 1; i <= NF; i++) if ($i ~ /^items_per_second=/) {
           v = substr($i, 18); m = 1
           if (v ~ /k\/s$/) m = 0.001; else if (v ~ /G\/s$/) m = 1000; else if (v !~ /M\/s$/) m = 1e-6
           sub(/[kMG]?\/s$/, "", v); printf "%s=%.4f ", $1, v * m } }'
}
for ((r = 1; r <= rounds; r++)); do
  echo "$(rates "$old")|$(rates "$new")"
  echo "ab_pairs: round $r/$rounds" >&2
done | python3 -c '
import statistics, sys
ratio, olds, news = {}, {}, {}
for line in sys.stdin:
    a, b = line.rstrip("\n").split("|")
    A = dict(kv.split("=") for kv in a.split())
    B = dict(kv.split("=") for kv in b.split())
    for k in A.keys() & B.keys():
        o, n = float(A[k]), float(B[k])
        ratio.setdefault(k, []).append(n / o)
        olds.setdefault(k, []).append(o)
        news.setdefault(k, []).append(n)
print("benchmark\tmedian_ratio\told_best\told_median\tnew_best\tnew_median\tpairs  (rates in M/s)")
for k in sorted(ratio):
    print(f"{k}\t{statistics.median(ratio[k]):.3f}\t{max(olds[k]):.2f}\t{statistics.median(olds[k]):.2f}"
          f"\t{max(news[k]):.2f}\t{statistics.median(news[k]):.2f}\t{len(ratio[k])}")
'
