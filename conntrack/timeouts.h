// Per-protocol, per-state connection timeouts with the Linux kernel's defaults, tunable at
// start, per binding (a policy with a parent) and at run time.
//
// Like the kernel's sysctls, a timeout is read again at every packet of a connection: a
// table entry stores its timeout *class*, not a copied value, and its deadline is
// recomputed from the policy each time a packet refreshes it. So `nwfqctl timeout set icmp
// 3` applies to new connections at once and to existing ones from their next packet (an
// existing entry keeps its current deadline until then, exactly as the kernel does).
//
// Kernel defaults (net/netfilter/nf_conntrack_proto_*.c, Linux 6.x), in seconds:
//   name                  sysctl (net.netfilter.)                          default
//   tcp/syn_sent          nf_conntrack_tcp_timeout_syn_sent                    120
//   tcp/syn_recv          nf_conntrack_tcp_timeout_syn_recv                     60
//   tcp/established       nf_conntrack_tcp_timeout_established              432000
//   tcp/fin_wait          nf_conntrack_tcp_timeout_fin_wait                    120
//   tcp/close_wait        nf_conntrack_tcp_timeout_close_wait                   60
//   tcp/last_ack          nf_conntrack_tcp_timeout_last_ack                     30
//   tcp/time_wait         nf_conntrack_tcp_timeout_time_wait                   120
//   tcp/close             nf_conntrack_tcp_timeout_close                        10
//   tcp/syn_sent2         (syn_sent2; no sysctl, follows syn_sent in the kernel) 120
//   tcp/retrans           nf_conntrack_tcp_timeout_max_retrans                 300
//   tcp/unacknowledged    nf_conntrack_tcp_timeout_unacknowledged              300
//   udp (= udp/unreplied) nf_conntrack_udp_timeout                              30
//   udp/stream            nf_conntrack_udp_timeout_stream                      120
//   icmp                  nf_conntrack_icmp_timeout                             30
//   icmpv6                nf_conntrack_icmpv6_timeout                           30
//   sctp/closed           nf_conntrack_sctp_timeout_closed                      10
//   sctp/cookie_wait      nf_conntrack_sctp_timeout_cookie_wait                  3
//   sctp/cookie_echoed    nf_conntrack_sctp_timeout_cookie_echoed                3
//   sctp/established      nf_conntrack_sctp_timeout_established                210
//   sctp/shutdown_sent    nf_conntrack_sctp_timeout_shutdown_sent                3
//   sctp/shutdown_recd    nf_conntrack_sctp_timeout_shutdown_recd                3
//   sctp/shutdown_ack_sent nf_conntrack_sctp_timeout_shutdown_ack_sent           3
//   sctp/heartbeat_sent   nf_conntrack_sctp_timeout_heartbeat_sent              30
//   gre (= gre/unreplied) nf_conntrack_gre_timeout                              30
//   gre/stream            nf_conntrack_gre_timeout_stream                      180
//   generic               nf_conntrack_generic_timeout                         600
// UDPLite uses the UDP timeouts (as the kernel since 5.x). ESP and AH are tracked by the
// generic tracker in the kernel, hence use `generic`.
//
// Thread-safety: Get/Seconds are wait-free relaxed atomic loads (any thread, hot path);
// Set/Clear may run concurrently from a control thread. A parent must outlive its children.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "conntrack/types.h"

namespace nwfq::ct {

enum class TimeoutClass : uint8_t {
  kTcpSynSent,
  kTcpSynRecv,
  kTcpEstablished,
  kTcpFinWait,
  kTcpCloseWait,
  kTcpLastAck,
  kTcpTimeWait,
  kTcpClose,
  kTcpSynSent2,
  kTcpRetrans,
  kTcpUnack,
  kUdpUnreplied,
  kUdpStream,
  kIcmp,
  kIcmpv6,
  kSctpClosed,
  kSctpCookieWait,
  kSctpCookieEchoed,
  kSctpEstablished,
  kSctpShutdownSent,
  kSctpShutdownRecd,
  kSctpShutdownAckSent,
  kSctpHeartbeatSent,
  kGreUnreplied,
  kGreStream,
  kGeneric,
  kCount,
};
inline constexpr int kTimeoutClassCount = static_cast<int>(TimeoutClass::kCount);

// Timeouts above this are refused: table deadlines are 32-bit milliseconds compared with
// serial arithmetic (see table.h), so they must stay below 2^31 ms (~24.8 days).
inline constexpr uint32_t kMaxTimeoutSeconds = 20 * 24 * 3600;

class TimeoutPolicy {
 public:
  // A root policy: kernel defaults, overridable.
  TimeoutPolicy();
  // A child policy (e.g. per binding): every class not Set() here is read from `parent`,
  // at each read, so a later change of the parent shows through. `parent` is not owned.
  explicit TimeoutPolicy(const TimeoutPolicy* parent);

  TimeoutPolicy(const TimeoutPolicy&) = delete;
  TimeoutPolicy& operator=(const TimeoutPolicy&) = delete;

  // Effective timeout (own override, else parent's, else kernel default).
  // A loop, not a recursive call, so that it inlines whole into the hit paths: GCC outlined
  // the recursive form's parent walk, and with it more of the TCP short path (+9
  // instructions per TCP hit, callgrind).
  [[gnu::always_inline]] uint32_t Seconds(TimeoutClass c) const {
    const int i = static_cast<int>(c);
    for (const TimeoutPolicy* p = this;; p = p->parent_) {
      const uint32_t v = p->own_[i].load(std::memory_order_relaxed);
      if (v != kInherit) return v;
      if (p->parent_ == nullptr) return p->kernel_default_[i];
    }
  }
  Nanos Get(TimeoutClass c) const { return static_cast<Nanos>(Seconds(c)) * kNanosPerSecond; }

  absl::Status Set(TimeoutClass c, uint32_t seconds);
  // `name` as ParseName accepts, e.g. "icmp", "tcp/established", "udp/stream".
  absl::Status Set(std::string_view name, uint32_t seconds);
  // Back to inheriting (parent or kernel default).
  void Clear(TimeoutClass c);
  bool IsOverridden(TimeoutClass c) const {
    return own_[static_cast<int>(c)].load(std::memory_order_relaxed) != kInherit;
  }
  const TimeoutPolicy* parent() const { return parent_; }

  // Applies "name = seconds" / "name seconds" lines ('#' comments, blank lines allowed), as
  // in a config file. Errors name the line number.
  absl::Status ApplyConfig(std::string_view text);
  // One "name seconds" line per class, in TimeoutClass order; overridden ones marked " *".
  std::string Format() const;

  static uint32_t KernelDefault(TimeoutClass c);
  // Canonical name ("tcp/established", "udp/stream", "icmp", ...).
  static std::string_view Name(TimeoutClass c);
  // Accepts canonical names and aliases: "udp" = "udp/unreplied", "udp/replied" =
  // "udp/stream", "gre" = "gre/unreplied", "tcp/unack" = "tcp/unacknowledged",
  // "tcp/max_retrans" = "tcp/retrans", "icmp6"/"ipv6-icmp" = "icmpv6"; case-insensitive.
  static absl::StatusOr<TimeoutClass> ParseName(std::string_view name);

 private:
  static constexpr uint32_t kInherit = UINT32_MAX;
  const TimeoutPolicy* parent_ = nullptr;
  std::array<std::atomic<uint32_t>, kTimeoutClassCount> own_;
  // KernelDefault() of every class, copied in: Seconds() runs for every tracked packet,
  // and a call into timeouts.cc there cost more than the lookup itself.
  std::array<uint32_t, kTimeoutClassCount> kernel_default_;
};

}  // namespace nwfq::ct
