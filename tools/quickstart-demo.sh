#!/usr/bin/env bash
# quickstart-demo.sh — README command 1: install what is missing, build nwfqd and nwfqctl
# (release preset, build/release), bring up the lab (three network namespaces: a VM, its
# KVM host with a bridge, a remote peer), run nwfqd in the host namespace with the default
# filter (tools/lab/filters/nwfq-demo.xml: in tcp/22, out icmp, out udp/53, drop all
# other IPv4), and show real traffic being accepted and dropped, with nwfqd's verdict lines.
# Then, on a terminal, keeps everything up for you to try (Ctrl-C ends it; at most
# --linger seconds). Everything is removed at the end, also on Ctrl-C or failure.
#
# Options: --linger SECONDS (default 120 on a terminal, 0 otherwise), --no-build.
# Exit status 0 iff every probe got the expected verdict. Run as root.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=$ROOT/build/release/tools
LAB=$ROOT/tools/lab
JOBS=${NWFQ_JOBS:-2}
if [ -t 0 ] && [ -t 1 ]; then LINGER=120; else LINGER=0; fi
BUILD=1
while [ $# -gt 0 ]; do
  case $1 in
    --linger) LINGER=${2:?--linger needs seconds}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,13{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
[[ $LINGER =~ ^[0-9]+$ ]] || { echo "--linger needs a number of seconds" >&2; exit 2; }

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; N=$'\e[0m'; else B= G= R= N=; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
[ "$(id -u)" = 0 ] || { echo "quickstart-demo.sh: run as root (namespaces, iptables)" >&2; exit 1; }

if [ "$BUILD" = 1 ]; then
  say "installing what is missing"
  "$ROOT/tools/install-deps.sh"
  say "building nwfqd and nwfqctl (release preset, -j$JOBS)"
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$JOBS" --target nwfqd nwfqctl
fi
NWFQD=$BIN/nwfqd/nwfqd
NWFQCTL=$BIN/nwfqctl/nwfqctl

PIDS=()  # processes this script started, ended by PID
cleanup() {
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$NWFQCTL" lab down || true
  echo "${B}lab removed${N}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "bringing up the lab (nwfqctl lab up)"
"$NWFQCTL" lab down
"$NWFQCTL" lab up
"$NWFQCTL" lab status | sed 's/^/    /'

say "starting nwfqd in nwfq-host (fail-closed, verdicts logged)"
echo "    filter: $LAB/filters/nwfq-demo.xml, binding: $LAB/vnet0-binding.xml (vnet0, IP=198.18.0.2)"
ip netns exec nwfq-host "$NWFQD" --filters "$LAB/filters" --binding "$LAB/vnet0-binding.xml" \
  --log-verdicts &
PIDS+=($!)
for _ in $(seq 1 100); do
  ip netns exec nwfq-host iptables -w -S NWFQ-FWD >/dev/null 2>&1 && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "nwfqd exited" >&2; exit 1; }
  sleep 0.1
done

# Listeners in the VM on 22 (allowed) and 23 (not allowed): each answers "hello from the VM".
for port in 22 23; do
  ip netns exec nwfq-vm timeout 600 socat "TCP-LISTEN:$port,reuseaddr,fork" \
    "EXEC:echo hello from the VM port $port" &
  PIDS+=($!)
done
sleep 0.5

FAILED=0
# probe EXPECT(pass|block) DESCRIPTION COMMAND...
probe() {
  local expect=$1 what=$2 got
  shift 2
  say "$what  (expect: $expect)"
  echo "    \$ $*"
  if "$@" </dev/null 2>&1 | sed 's/^/    | /'; [ "${PIPESTATUS[0]}" = 0 ]; then got=pass; else got=block; fi
  sleep 0.3  # let nwfqd's verdict lines land under their probe
  if [ "$got" = "$expect" ]; then
    echo "    ${G}result: $got, as expected${N}"
  else
    echo "    ${R}result: $got, expected $expect${N}"
    FAILED=1
  fi
}
probe pass "VM -> peer ping (out icmp accepted, replies ESTABLISHED)" \
  ip netns exec nwfq-vm ping -n -c 2 -i 0.3 -W 1 198.18.0.3
probe pass "peer -> VM tcp/22 (in tcp/22 accepted)" \
  ip netns exec nwfq-peer timeout 10 socat -T 5 -t 2 - TCP:198.18.0.2:22,connect-timeout=2
probe block "peer -> VM tcp/23 (no rule: final drop; the SYN vanishes)" \
  ip netns exec nwfq-peer timeout 10 socat -T 5 -t 2 - TCP:198.18.0.2:23,connect-timeout=2
probe block "peer -> VM ping (icmp is allowed out only)" \
  ip netns exec nwfq-peer ping -n -c 2 -i 0.3 -W 1 198.18.0.2
probe pass "VM -> host ping (INPUT path, libvirt's HI chain)" \
  ip netns exec nwfq-vm ping -n -c 1 -W 1 198.18.0.1

if [ "$FAILED" = 0 ]; then
  say "${G}all probes got the expected verdict${N}"
else
  say "${R}some probes did not get the expected verdict${N}"
fi
if [ "$LINGER" -gt 0 ]; then
  cat <<EOT

The lab stays up for ${LINGER} s so you can try it yourself (Ctrl-C ends it now):
  ip netns exec nwfq-vm ping 198.18.0.3
  ip netns exec nwfq-peer socat - TCP:198.18.0.2:22
  ip netns exec nwfq-peer nc -w2 -z 198.18.0.2 80
  $NWFQCTL lab status
EOT
  sleep "$LINGER" || true
fi
say "stopping nwfqd (it removes its steering rules and prints its counters)"
kill -TERM "${PIDS[0]}" 2>/dev/null || true
wait "${PIDS[0]}" 2>/dev/null || true
exit "$FAILED"
