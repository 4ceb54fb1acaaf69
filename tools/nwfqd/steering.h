// Steering: the kernel rules that send a tap's traffic to nwfqd's NFQUEUE, in nwfq's own
// chains of the `filter` table (IPv4 and IPv6), so nothing of the host's or libvirt's
// rule set is touched:
//
//   FORWARD -j NWFQ-FWD   NWFQ-FWD: -m physdev --physdev-in TAP -j NFQUEUE       (from the VM)
//                                   -m physdev --physdev-out TAP --physdev-is-bridged
//                                                                -j NFQUEUE       (to the VM)
//   INPUT   -j NWFQ-IN    NWFQ-IN:  -m physdev --physdev-in TAP -j NFQUEUE       (VM -> host)
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
};

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
absl::Status Remove(Backend backend);

// OK for a plain interface name (letters, digits, '-', '_', '.'; 1-15 bytes; no leading
// '-'); Install() refuses anything else before touching the kernel.
absl::Status ValidatePortdev(const std::string& dev);

// The iptables-restore input Install() feeds to iptables and ip6tables (for tests and
// --dry-run style inspection).
std::string IptablesRestoreScript(const Options& options);

}  // namespace nwfq::steer
