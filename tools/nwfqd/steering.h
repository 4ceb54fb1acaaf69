// Steering: the kernel rules that send a tap's traffic to nwfqd's NFQUEUE, in nwfq's own
// chains of the `filter` table (IPv4 and IPv6), so nothing of the host's or libvirt's
// rule set is touched:
//
//   FORWARD -j NWFQ-FWD   NWFQ-FWD: -m physdev --physdev-in TAP -j NFQUEUE       (from the VM)
//                                   -m physdev --physdev-out TAP --physdev-is-bridged
//                                                                -j NFQUEUE       (to the VM)
//   INPUT   -j NWFQ-IN    NWFQ-IN:  -m physdev --physdev-in TAP -j NFQUEUE       (VM -> host)
//
// A routed tap (not a bridge port) gets `-i TAP` / `-o TAP` rules in the same chains
// instead (libvirt's routed/NAT networks); nwfqd's handler then reads the packet's
// indev/outdev where a bridged packet has physindev/physoutdev.
//
// `--queue-bypass` is added only with fail-open (no nwfqd listening = accept). Each table
// is written in one iptables-restore transaction (--noflush), so the switch is atomic.
// Remove() deletes the jumps and the chains and is idempotent: it runs at start-up (stale
// rules of a crashed nwfqd) and at exit.
//
// Runs the tools in the caller's network namespace (nwfqd runs inside the host's).
// Thread-safety: none (call from the main thread).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nwfq::steer {

inline constexpr char kForwardChain[] = "NWFQ-FWD";
inline constexpr char kInputChain[] = "NWFQ-IN";

enum class Backend { kNone, kIptables, kNft };
const char* BackendName(Backend b);

struct Options {
  std::vector<std::string> portdevs;  // tap devices, e.g. {"vnet0"}
  uint16_t queue_num = 0;
  bool fail_open = false;
  // Queues queue_num .. queue_num + queue_count - 1: with more than one, the rules fan out
  // with `--queue-balance` (the kernel's nfqueue hash_v4/hash_v6: a jhash of the two
  // addresses, ordered, and the protocol; symmetric, so both directions of a flow reach
  // the same queue, but every flow between one address pair shares it).
  uint16_t queue_count = 1;
  // Taps of `portdevs` that are not bridge ports (routed/NAT setups): matched with -i/-o
  // instead of physdev (FORWARD -i TAP, FORWARD -o TAP, INPUT -i TAP). Install() adds the
  // ones it finds itself (LooksBridged) when `detect_routed` is true.
  std::vector<std::string> routed = {};
  bool detect_routed = true;
};

// True when `dev` is a port of a bridge in the caller's namespace (`ip -d link`
// reports bridge_slave); false for a plain (routed) tap and for a missing device.
bool IsBridgePort(const std::string& dev);
// False only for a device that exists and is not a bridge port.
bool LooksBridged(const std::string& dev);

// What the kernel offers: the nft `queue` expression (checked with a dry-run transaction
// that is never committed) and the iptables NFQUEUE target. `detail` explains the choice.
struct Detection {
  bool nft_queue = false;
  bool iptables = false;
  std::string detail;
};
Detection Detect();

// Picks the backend for `requested` ("auto", "iptables", "none"). nft steering is not
// implemented yet (physdev matching needs the bridge family there): `auto` uses iptables
// even where nft `queue` exists, and says so in `detail`.
absl::StatusOr<Backend> Choose(const std::string& requested, const Detection& detection);

absl::Status Install(Backend backend, const Options& options);
// For a running nwfqd (reload adds or removes a tap): replaces the contents of nwfq's
// chains in one iptables-restore transaction per family, keeping the jumps, so the other
// taps are never unsteered. Falls back to Install() when the chains or jumps are missing.
absl::Status Update(Backend backend, const Options& options);
absl::Status Remove(Backend backend);

// OK for a plain interface name (letters, digits, '-', '_', '.'; 1-15 bytes; no leading
// '-'); Install() refuses anything else before touching the kernel.
absl::Status ValidatePortdev(const std::string& dev);

// The iptables-restore input Install() feeds to iptables and ip6tables (for tests and
// --dry-run style inspection).
std::string IptablesRestoreScript(const Options& options);
// The same chains without the jumps from FORWARD/INPUT: restoring it with --noflush
// flushes and refills the chains atomically (Update()).
std::string IptablesUpdateScript(const Options& options);

}  // namespace nwfq::steer
