#!/usr/bin/env bash
# install-deps.sh — install the Debian 12 packages that building nwfq and running ALL of
# its tests need (unit, integration lab, benchmarks, fuzz preset). Idempotent: installs
# only what is missing; runs `apt-get update` only when something is missing and the
# install fails without it. Run as root.
#
# Adding a package: append it to PACKAGES below (one array, grouped by purpose) and say
# why in the comment next to it.
set -euo pipefail

PACKAGES=(
  # toolchain and build
  build-essential g++ cmake ninja-build pkg-config
  clang         # the `fuzz` preset (libFuzzer)
  clang-format  # style (.clang-format)
  # libraries (find_package / pkg-config in CMakeLists.txt)
  libnetfilter-queue-dev libmnl-dev libtinyxml2-dev libabsl-dev libbenchmark-dev
  libgtest-dev libgmock-dev libpcap-dev libcli11-dev libcap-ng-dev
  # the lab and the integration tests (namespaces, steering, real clients and servers)
  iproute2 iptables nftables socat netcat-openbsd iputils-ping openssh-server
  openssh-client conntrack tcpreplay tcpdump procps kmod  # kmod: modprobe br_netfilter where it is a module
  python3       # tests/cli: checks nwfqctl's JSON output; tests/integration: frag_probe.py sends raw fragments
)

log() { printf '[install-deps] %s\n' "$*" >&2; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

case ${1:-} in
  -h|--help) sed -n '2,8{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  '') ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install)"
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
  die "apt-get/dpkg-query not found: this script targets Debian 12"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "all ${#PACKAGES[@]} packages present"
  exit 0
fi

log "installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_log=$(mktemp /tmp/nwfq-apt.XXXXXX)
trap 'rm -f "$apt_log"' EXIT
apt_install() {
  apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >>"$apt_log" 2>&1
}
# A fresh machine usually has no package lists yet: update once only if the install fails.
if ! apt_install; then
  log "install failed without fresh package lists; running apt-get update"
  apt-get update -q >>"$apt_log" 2>&1 || { tail -20 "$apt_log" >&2; die "apt-get update failed"; }
  apt_install || { tail -30 "$apt_log" >&2; die "apt-get install failed: ${missing[*]}"; }
fi
log "done"
