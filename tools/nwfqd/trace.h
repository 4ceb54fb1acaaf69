// `nwfqctl trace`: live verdict explanations for the packets that match a small filter
// expression, rate-limited.
//
// Expression: words joined by an implicit `and` (all must hold):
//   proto tcp|udp|icmp|icmpv6|sctp|N     host ADDR (source or destination)
//   port N (source or destination)       src ADDR / dst ADDR
//   binding DEV                          view from-vm|to-vm|to-host
// The empty expression matches every packet.
//
// Tracer is the meeting point of one trace session (control thread) and the packet
// workers: workers call active() per packet (one relaxed atomic load; nothing else when
// no session runs) and, for a matching packet the session's rate allows, Emit() a line.
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/packet_view.h"

namespace nwfq::nwfqd {

struct TraceFilter {
  std::optional<uint8_t> proto;
  std::optional<uint16_t> port;
  // family (4/6) + address bytes
  struct Addr {
    uint8_t family = 0;
    std::array<uint8_t, 16> bytes{};
  };
  std::optional<Addr> host, src, dst;
  std::optional<std::string> binding;
  std::optional<engine::View> view;

  static absl::StatusOr<TraceFilter> Parse(const std::vector<std::string>& words);
  bool Matches(const engine::PacketView& v, absl::string_view portdev,
               engine::View packet_view) const;
};

class Tracer {
 public:
  // Starts a session; fails if one is running already (one at a time).
  absl::Status Begin(TraceFilter filter, int per_second);
  void End();
  bool active() const { return active_.load(std::memory_order_relaxed); }

  // Worker side: true if the packet matches and the rate allows one more line now; the
  // worker then explains the packet and calls Emit().
  bool Want(const engine::PacketView& v, absl::string_view portdev, engine::View view);
  void Emit(std::string line);

  // Session side: waits up to `timeout` for lines; returns them (may be empty). `dropped`
  // gets the count of matching packets skipped by the rate limit since the last call.
  std::vector<std::string> Take(absl::Duration timeout, uint64_t* dropped);

 private:
  std::atomic<bool> active_{false};
  std::mutex mu_;
  std::condition_variable cv_;  // lines_ became non-empty
  TraceFilter filter_;          // guarded by mu_
  int per_second_ = 10;         // guarded by mu_
  double tokens_ = 0;           // guarded by mu_
  absl::Time last_;             // guarded by mu_
  uint64_t rate_dropped_ = 0;
  std::deque<std::string> lines_;  // guarded by mu_; bounded
};

}  // namespace nwfq::nwfqd
