// reject: what iptables' REJECT target sends for a rejected packet, then the packet is
// dropped (nwfilter-semantics c.3, i.10).
//
//   IPv4: ICMP destination unreachable, code 3 (port unreachable), quoting the offending
//         packet (IP header on, as much as fits in 576 bytes and was copied from the
//         queue); the source is the host's own address, chosen by the host's routing for
//         the VM-bound reply (on the lab's bridge: br0's address), as the kernel's
//         icmp_send does for a bridged/forwarded packet; for a packet addressed to the host
//         itself (to-host), its destination address.
//   IPv6: ICMPv6 destination unreachable, code 4 (port unreachable), quoting up to the
//         1280-byte minimum MTU, same source rules.
//   TCP with TcpReject::kRst (`--reject-tcp-with rst`, iptables' `--reject-with
//         tcp-reset`): a RST from the original destination address and port, with the
//         sequence numbers nf_send_reset computes (seq = their ack if ACK was set, else 0
//         with RST|ACK acking seq + SYN + FIN + payload).
//
// Like the kernel, nothing is sent in reply to ICMP errors, RSTs, non-first fragments,
// or packets to a broadcast/multicast address. libvirt's `-j REJECT` has no
// --reject-with, so the default for TCP is the ICMP error too (Linux clients report it as
// "connection refused" on connect as well).
//
// Sends through raw sockets in nwfqd's network namespace (needs CAP_NET_RAW). Replies
// leave through the host's OUTPUT path, which nwfqd does not steer, so they are not
// queued again. Thread-safety: a Rejecter may be shared by workers (sendto on raw sockets
// is thread-safe; the counters are atomic).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace nwfq::nwfqd {

enum class TcpReject : uint8_t { kIcmp, kRst };

// What to send, to whom and from where (addresses in network order in bytes [0,4) or
// [0,16)). `packet` is the IP packet to send (IPv4 or IPv6 header on) for kRaw, or the
// ICMP/ICMPv6 message alone (the kernel builds the IP header and picks the source) for
// kIcmp.
struct RejectReply {
  enum class Kind : uint8_t { kNone, kIcmp, kRaw };
  Kind kind = Kind::kNone;
  uint8_t family = 0;
  std::array<uint8_t, 16> dst{};
  bool use_src = false;  // kIcmp: send from `src` (the packet was addressed to the host)
  std::array<uint8_t, 16> src{};
  std::vector<uint8_t> bytes;
  const char* why_none = "";  // kNone: why nothing is sent
};

// Pure: the reply REJECT sends for `packet` (network-layer bytes, possibly a truncated
// copy of `wire_len` bytes). `to_host`: the packet was addressed to the host (INPUT).
RejectReply BuildReject(std::span<const uint8_t> packet, uint32_t wire_len, bool to_host,
                        TcpReject tcp);

struct RejectCounters {
  std::atomic<uint64_t> icmp{0};
  std::atomic<uint64_t> rst{0};
  std::atomic<uint64_t> suppressed{0};  // nothing sent (ICMP error, RST, broadcast, ...)
  std::atomic<uint64_t> send_errors{0};
};

class Rejecter {
 public:
  // Opens the raw sockets (IPv4 and IPv6; a family whose socket fails is reported only
  // when used). Fails only if neither can be opened.
  static absl::StatusOr<std::unique_ptr<Rejecter>> Open(TcpReject tcp);
  ~Rejecter();
  Rejecter(const Rejecter&) = delete;
  Rejecter& operator=(const Rejecter&) = delete;

  // Builds and sends the reply for `packet`; returns true if something was sent.
  bool Reject(std::span<const uint8_t> packet, uint32_t wire_len, bool to_host);

  const RejectCounters& counters() const { return counters_; }
  TcpReject tcp() const { return tcp_; }

 private:
  explicit Rejecter(TcpReject tcp) : tcp_(tcp) {}
  TcpReject tcp_;
  int icmp4_ = -1, icmp6_ = -1, raw4_ = -1, raw6_ = -1;
  RejectCounters counters_;
};

}  // namespace nwfq::nwfqd
