#!/usr/bin/env bash
# live_bench.sh — nwfqd's real throughput through the kernel's NFQUEUE path, in the lab.
#
# Brings up the lab (nwfqctl lab up: namespaces nwfq-vm, nwfq-host with bridge br0 and tap
# vnet0, nwfq-peer), then, for each phase, sends UDP from the VM (198.18.0.2) to the peer
# (198.18.0.3, .4, .10-.15, ports 9000-9003: 32 flows) with bench/live_udp_sender (sendmmsg, one
# socket, pinned to CPU 0) for --seconds or --count datagrams, whichever ends first:
#   baseline   no nwfqd, no steering: plain bridge forwarding (iptables FORWARD is empty)
#   nwfqd:Q    nwfqd --queues Q (bench/live/filters: accept udp out, stateful; drop the
#              rest), one queue pinned to CPU 1; several queues (--queue-balance) unpinned
# and reports per phase: datagrams offered (sent) and delivered (the peer's eth0
# rx_packets), delivered pps, the kernel queue's drops (queue-full, socket overrun; from
# /proc/net/netfilter/nfnetlink_queue), nwfqd's packets/batches/errors (its exit
# report) and nwfqd's CPU time (/proc/PID/task/*/schedstat and utime+stime) per packet.
#
# Options:
#   --seconds S        sender time bound per phase (default 5)
#   --count N          sender count bound per phase (default 5000000)
#   --size B           UDP payload bytes (default 64)
#   --queue-sets "A B" nwfqd --queues value per nwfqd phase (default "0 0-1")
#   --batch N          nwfqd --batch (default: nwfqd's own)
#   --no-baseline      skip the baseline phase
#   --perf S           perf record -e cpu-clock -g on nwfqd for S s during each nwfqd phase
#                      and print its top symbols (needs perf)
#   --build-dir DIR    where nwfqd, nwfqctl and live_udp_sender are built (default
#                      build/live; built there with -j2 if missing)
#   --smoke            1 s, 2000 datagrams, queue 0 only (the ctest live_bench_smoke)
#   --json             end with one JSON line summarising every phase
# Needs root (namespaces, iptables in nwfq-host). Exit 77 = skipped (not root, no lab).
# Touches only the lab's namespaces; ends only the processes it started, by PID; removes
# the lab on exit, also on failure or Ctrl-C.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_PER_PHASE=5
COUNT=5000000
SIZE=64
QUEUE_SETS="0 0-1"
BATCH=
BASELINE=1
PERF=0
BUILD_DIR=$ROOT/build/live
JSON=0
SMOKE=0
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_PHASE=${2:?}; shift 2 ;;
    --count) COUNT=${2:?}; shift 2 ;;
    --size) SIZE=${2:?}; shift 2 ;;
    --queue-sets) QUEUE_SETS=${2:?}; shift 2 ;;
    --batch) BATCH=${2:?}; shift 2 ;;
    --no-baseline) BASELINE=0; shift ;;
    --perf) PERF=${2:?}; shift 2 ;;
    --build-dir) BUILD_DIR=${2:?}; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --json) JSON=1; shift ;;
    -h|--help) sed -n '2,30{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "live_bench.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$SMOKE" = 1 ]; then
  SECONDS_PER_PHASE=1 COUNT=2000 QUEUE_SETS=0 PERF=0
fi
for v in "$SECONDS_PER_PHASE" "$COUNT" "$SIZE" "$PERF"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "live_bench.sh: '$v' is not a whole number" >&2; exit 2; }
done
if [ "$SECONDS_PER_PHASE" -lt 1 ] || [ "$SECONDS_PER_PHASE" -gt 60 ]; then
  echo "live_bench.sh: --seconds must be 1..60" >&2
  exit 2
fi

skip() { echo "live_bench.sh: SKIP: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, iptables inside nwfq-host)"
if ! command -v ip >/dev/null || ! command -v iptables >/dev/null; then
  skip "ip/iptables not installed"
fi

NWFQD=$BUILD_DIR/tools/nwfqd/nwfqd
NWFQCTL=$BUILD_DIR/tools/nwfqctl/nwfqctl
SENDER=$BUILD_DIR/bench/live_udp_sender
if [ ! -x "$NWFQD" ] || [ ! -x "$NWFQCTL" ] || [ ! -x "$SENDER" ]; then
  [ "$SMOKE" = 1 ] && skip "nwfqd, nwfqctl or live_udp_sender not built in $BUILD_DIR"
  [ -f "$BUILD_DIR/CMakeCache.txt" ] ||
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" --target nwfqd nwfqctl live_udp_sender -j2
fi

VM=nwfq-vm HOST=nwfq-host PEER=nwfq-peer
# The peer's two lab addresses plus six more added here (inside nwfq-peer only; gone with
# the lab): --queue-balance hashes the address pair only, so two pairs often land on one
# queue; eight spread over the queues.
DSTS=198.18.0.3,198.18.0.4,198.18.0.10,198.18.0.11,198.18.0.12,198.18.0.13,198.18.0.14,198.18.0.15
PORT=9000 PORTS=4
SENDER_CPU=0 NWFQD_CPU=1
TMP=$(mktemp -d /tmp/nwfq-live-bench.XXXXXX)
PIDS=()  # every process this script started, ended by PID
LAB_UP=0
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ "$LAB_UP" = 1 ] && { "$NWFQCTL" lab down || rc=1; }
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Counters ------------------------------------------------------------------------------
ns_stat() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }
# Sum of the on-CPU nanoseconds of all nwfqd's threads, and utime+stime in clock ticks.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' /proc/"$1"/stat; }
# Per queue: "num id_sequence queue_dropped user_dropped", summed over the queues nwfqd has.
nfq_totals() {
  ip netns exec "$HOST" cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null |
    awk '{ id += $8; qd += $6; ud += $7 } END { print id + 0, qd + 0, ud + 0 }'
}
nfq_per_queue() {
  ip netns exec "$HOST" cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null |
    awk '{ printf "%sq%s=%s", (NR > 1 ? " " : ""), $1, $8 }'
}

snapshot() {  # -> "vm_tx vm_txdrop tap_rx tap_rxdrop peer_rx"
  echo "$(ns_stat "$VM" eth0 tx_packets) $(ns_stat "$VM" eth0 tx_dropped)" \
    "$(ns_stat "$HOST" vnet0 rx_packets) $(ns_stat "$HOST" vnet0 rx_dropped)" \
    "$(ns_stat "$PEER" eth0 rx_packets)"
}

# Lab -------------------------------------------------------------------------------------
"$NWFQCTL" lab down >/dev/null 2>&1 || true
if ! "$NWFQCTL" lab up; then
  [ "$SMOKE" = 1 ] && skip "the lab does not come up here (nwfqctl lab up failed)"
  exit 1
fi
LAB_UP=1
for a in 10 11 12 13 14 15; do ip -n "$PEER" addr add "198.18.0.$a/24" dev eth0; done
# The sink keeps the peer's ports bound (no ICMP unreachables back through the filter)
# and never reads: the kernel drops what overflows its buffer, at no CPU cost to us.
n_phases=$(( BASELINE + $(wc -w <<<"$QUEUE_SETS") ))
ip netns exec "$PEER" "$SENDER" sink --port "$PORT" --ports "$PORTS" \
  --seconds $(( n_phases * (SECONDS_PER_PHASE + 20) + 10 )) 2>/dev/null &
PIDS+=($!)
sleep 0.2

send() {  # send COUNT SECONDS -> JSON line of the sender
  ip netns exec "$VM" timeout $(( $2 + 10 )) taskset -c "$SENDER_CPU" "$SENDER" send \
    --dst "$DSTS" --port "$PORT" --ports "$PORTS" --size "$SIZE" --count "$1" --seconds "$2"
}
jget() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" <<<"$1"; }

SUMMARY=()
printf '\n%-10s %10s %10s %9s %10s %9s %9s %8s %8s %9s %s\n' phase offered delivered \
  "offer pps" "deliv pps" "qfull" "overrun" "ns/pkt" "pkt/bat" "cpu util" "per queue"
run_phase() {  # run_phase NAME [QUEUES]
  local name=$1 queues=${2:-} pid='' log=$TMP/nwfqd-$1.log perf_pid=''
  if [ -n "$queues" ]; then
    local pin=()
    [[ $queues =~ ^[0-9]+$ ]] && pin=(taskset -c "$NWFQD_CPU")
    local extra=()
    [ -n "$BATCH" ] && extra=(--batch "$BATCH")
    ip netns exec "$HOST" "${pin[@]}" "$NWFQD" --filters "$ROOT/bench/live/filters" \
      --binding "$ROOT/bench/live/vnet0-binding.xml" --control none --queues "$queues" \
      "${extra[@]}" 2>"$log" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do
      grep -q 'nwfqd: ready' "$log" && break
      kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "nwfqd exited" >&2; exit 1; }
      sleep 0.1
    done
    grep -q 'nwfqd: ready' "$log" || { cat "$log" >&2; echo "nwfqd not ready in 10 s" >&2; exit 1; }
  fi
  # Warm-up: ARP, the flows' conntrack entries, the sockets' route caches.
  send 200 2 >/dev/null
  sleep 0.3
  local before nfq0 ns0=0 tk0=0
  before=$(snapshot)
  nfq0=$(nfq_totals)
  if [ -n "$pid" ]; then ns0=$(cpu_ns "$pid"); tk0=$(cpu_ticks "$pid"); fi
  if [ -n "$pid" ] && [ "$PERF" -gt 0 ]; then
    perf record -q -e cpu-clock -g -p "$pid" -o "$TMP/perf-$name.data" -- sleep "$PERF" \
      >/dev/null 2>&1 &
    perf_pid=$!
    PIDS+=("$perf_pid")
  fi
  local s t0 last rx t_last
  t0=$(date +%s.%N)
  s=$(send "$COUNT" "$SECONDS_PER_PHASE")
  # Delivery ends when the queue has drained: the peer's rx counter stops moving (polled
  # every 50 ms, at most 5 s). Delivered pps is over [sender start, last increase].
  last=-1 t_last=$(date +%s.%N)
  for _ in $(seq 1 100); do
    rx=$(ns_stat "$PEER" eth0 rx_packets)
    if [ "$rx" = "$last" ]; then break; fi
    last=$rx t_last=$(date +%s.%N)
    sleep 0.05
  done
  if [ -n "$perf_pid" ]; then wait "$perf_pid" 2>/dev/null || true; fi
  local after nfq1 ns1=0 tk1=0
  after=$(snapshot)
  nfq1=$(nfq_totals)
  local per_queue
  per_queue=$(nfq_per_queue)
  if [ -n "$pid" ]; then ns1=$(cpu_ns "$pid"); tk1=$(cpu_ticks "$pid"); fi
  if [ -n "$pid" ]; then
    kill -TERM "$pid"
    wait "$pid" || echo "live_bench.sh: nwfqd ($name) exited with status $?" >&2
  fi
  local sent secs send_secs
  sent=$(jget "$s" sent)
  send_secs=$(jget "$s" seconds)
  secs=$(awk -v a="$t0" -v b="$t_last" 'BEGIN { printf "%.3f", b - a }')
  read -r b_vtx b_vdrop b_trx b_tdrop b_prx <<<"$before"
  read -r a_vtx a_vdrop a_trx a_tdrop a_prx <<<"$after"
  read -r q0_id q0_qd q0_ud <<<"$nfq0"
  read -r q1_id q1_qd q1_ud <<<"$nfq1"
  local queued=$(( q1_id - q0_id )) qfull=$(( q1_qd - q0_qd )) overrun=$(( q1_ud - q0_ud ))
  local delivered=$(( a_prx - b_prx ))
  local cpu=$(( ns1 - ns0 )) ticks=$(( tk1 - tk0 ))
  local batches=0 enobufs=0 nw_packets=0
  if [ -n "$pid" ]; then
    batches=$(awk '/nwfqd: queue [0-9]+: packets/ { for (i = 1; i <= NF; i++) if ($i == "batches;") s += $(i - 1) } END { print s + 0 }' "$log")
    nw_packets=$(awk '/nwfqd: queue [0-9]+: packets/ { s += $5 } END { print s + 0 }' "$log")
    enobufs=$(awk '/nwfqd: queue [0-9]+: packets/ { for (i = 1; i <= NF; i++) if ($i == "enobufs") s += $(i + 1) } END { print s + 0 }' "$log")
    enobufs=${enobufs//,/}
  fi
  awk -v n="$name" -v off="$sent" -v del="$delivered" -v secs="$secs" -v qf="$qfull" \
    -v ov="$overrun" -v cpu="$cpu" -v q="$queued" -v b="$batches" -v nwp="$nw_packets" \
    -v pq="$per_queue" -v has="${pid:+1}" -v ssecs="$send_secs" 'BEGIN {
      nsp = (has && q > 0) ? sprintf("%.0f", cpu / q) : "-"
      pb = (has && b > 0) ? sprintf("%.1f", nwp / b) : "-"
      util = has ? sprintf("%.0f%%", 100 * cpu / (secs * 1e9)) : "-"
      printf "%-10s %10d %10d %9.0f %10.0f %9d %9d %8s %8s %9s %s\n", n, off, del, off / ssecs,
        del / secs, qf, ov, nsp, pb, util, has ? pq : ""
    }'
  SUMMARY+=("$(printf '{"phase": "%s", "queues": "%s", "offered": %d, "send_seconds": %s, "offered_pps": %.0f, "delivery_seconds": %s, "delivered": %d, "delivered_pps": %.0f, "vm_tx": %d, "vm_tx_dropped": %d, "tap_rx": %d, "tap_rx_dropped": %d, "queued": %d, "queue_full_drops": %d, "socket_overrun_drops": %d, "nwfqd_packets": %d, "nwfqd_batches": %d, "nwfqd_enobufs": %d, "nwfqd_cpu_ns": %d, "nwfqd_cpu_ticks": %d, "nwfqd_cpu_ns_per_packet": %.0f}' \
    "$name" "$queues" "$sent" "$send_secs" \
    "$(awk -v d="$sent" -v s="$send_secs" 'BEGIN { print d / s }')" "$secs" "$delivered" \
    "$(awk -v d="$delivered" -v s="$secs" 'BEGIN { print d / s }')" \
    $(( a_vtx - b_vtx )) $(( a_vdrop - b_vdrop )) $(( a_trx - b_trx )) $(( a_tdrop - b_tdrop )) \
    "$queued" "$qfull" "$overrun" "$nw_packets" "$batches" "${enobufs:-0}" "$cpu" "$ticks" \
    "$(awk -v c="$cpu" -v q="$queued" 'BEGIN { print (q > 0 ? c / q : 0) }')")")
  if [ -n "$perf_pid" ] && [ -s "$TMP/perf-$name.data" ]; then
    echo "  perf ($name, ${PERF} s, cpu-clock, self time by symbol):"
    perf report -i "$TMP/perf-$name.data" --stdio --no-children --sort sym 2>/dev/null |
      awk '/^ +[0-9.]+%/ && n++ < 25 { print "    " $0 }'
    echo "  perf ($name): self time by object (kernel / nwfqd / libs):"
    perf report -i "$TMP/perf-$name.data" --stdio --no-children --sort dso 2>/dev/null |
      awk '/^ +[0-9.]+%/ && n++ < 6 { print "    " $0 }'
  fi
  if [ -n "$pid" ]; then
    grep -E 'nwfqd: (kernel )?queue [0-9]+:' "$log" | sed 's/^/  /'
  fi
}

[ "$BASELINE" = 1 ] && run_phase baseline
for q in $QUEUE_SETS; do run_phase "nwfqd:$q" "$q"; done

if [ "$JSON" = 1 ]; then
  (IFS=,; echo "{\"bench\": \"live_bench\", \"size\": $SIZE, \"flows\": 32, \"phases\": [${SUMMARY[*]}]}")
fi
