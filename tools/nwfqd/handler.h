// The per-packet step of nwfqd: a queued packet -> (bound tap, view) -> Engine::Decide ->
// NFQUEUE verdict, with the verdict log and the trace hook.
//
//   FORWARD with physin = a bound tap  -> kFromVm (FI)     INPUT with physin -> kVmToHost (HI)
//   FORWARD with physout = a bound tap -> kToVm (FO)
// A packet bridged from one bound tap to another is checked by both (the sender's FI,
// then the receiver's FO), as libvirt's chains do.
//
// Threading: one PacketHandler per worker thread (it keeps an ifindex cache, a log rate
// limiter and counters of its own). SetPolicy() and stats() only with that worker paused
// (gate.h) or from the worker itself.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "conntrack/clock.h"
#include "engine/engine.h"
#include "engine/nfqueue/nfqueue.h"
#include "parser/instantiated.h"
#include "tools/nwfqd/policy.h"
#include "tools/nwfqd/trace.h"

namespace nwfq::nwfqd {

struct HandlerStats {
  uint64_t decisions[3][3] = {};  // [view][verdict accept/drop/reject]
  uint64_t by_reason[5] = {};     // engine::Reason
  uint64_t not_ours = 0;          // queued but neither physdev is a bound tap
  uint64_t held = 0;              // IP fragments held for their datagram
  uint64_t released[3] = {};      // held fragments given their verdict later [verdict]
  void Add(const HandlerStats& o);
};

const char* ViewName(engine::View v);
const char* VerdictName(engine::Verdict v);
const char* ReasonName(engine::Reason r);
const char* CtStateName(ct::State s);
// "tcp 198.18.0.3:40000 > 198.18.0.2:22 [S]" (log and trace only: parses the packet).
std::string Describe(const nfq::Packet& p);

// Token bucket: at most `rate` events per second, bursts of `rate`; the rest are counted.
class RateLimiter {
 public:
  explicit RateLimiter(int rate) : rate_(rate > 0 ? rate : 1), tokens_(rate_) {}
  bool Allow(ct::Nanos now);
  uint64_t TakeSuppressed() { return std::exchange(suppressed_, 0); }

 private:
  int rate_;
  double tokens_;
  ct::Nanos last_ = 0;
  uint64_t suppressed_ = 0;
};

class Rejecter;

// Verdicts of held IP fragments (nfq::Verdict::kHold), settled by whichever worker's engine
// call completed, killed or timed out their datagram, for the worker that owns their queue
// (a Queue is not thread-safe): Post from any thread, Take from the owner after each batch.
// Added by the defrag developer.
class ReleaseRouter {
 public:
  static uint64_t Token(uint16_t queue_num, uint32_t id) { return uint64_t{queue_num} << 32 | id; }
  void Post(uint64_t token, nfq::Verdict v) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_[static_cast<uint16_t>(token >> 32)].push_back({static_cast<uint32_t>(token), v});
  }
  // The verdicts waiting for queue `queue_num` (swapped into `*out`).
  void Take(uint16_t queue_num, std::vector<std::pair<uint32_t, nfq::Verdict>>* out) {
    out->clear();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(queue_num);
    if (it != pending_.end()) std::swap(*out, it->second);
  }

 private:
  std::mutex mu_;
  std::map<uint16_t, std::vector<std::pair<uint32_t, nfq::Verdict>>> pending_;
};

struct HandlerOptions {
  bool log_verdicts = false;
  int log_rate = 20;
  // Data plane: sends REJECT's reply for reject verdicts (reject.h; shared by the workers,
  // owned by the daemon). nullptr = reject is a plain drop.
  Rejecter* rejecter = nullptr;
  // Held around every Engine::Decide/Explain when several workers share the engine
  // (--queues with more than one queue); nullptr with one worker. See Daemon::Start.
  std::mutex* decide_mu = nullptr;
  // IP fragments: the worker's queue (tokens name queue and packet id) and where settled
  // held packets' verdicts go. nullptr: fragments are never held (decided per datagram
  // still, but a held one is dropped at once).
  uint16_t queue_num = 0;
  ReleaseRouter* router = nullptr;
};

class PacketHandler {
 public:
  PacketHandler(const HandlerOptions& options, engine::Engine& engine, Tracer& tracer,
                std::shared_ptr<const Policy> policy);

  nfq::Verdict Handle(const nfq::Packet& p);

  void SetPolicy(std::shared_ptr<const Policy> policy);
  const HandlerStats& stats() const { return stats_; }

 private:
  const std::string* Bound(uint32_t ifindex);
  engine::Verdict Decide(const nfq::Packet& p, const std::string& portdev, engine::View view,
                         const engine::PacketInput& input, ct::Nanos now, bool* held);
  void Settle(engine::Decision& d);
  std::string RuleText(const std::string& portdev, const engine::Decision& d) const;
  void Log(const nfq::Packet& p, const std::string& portdev, engine::View view,
           const engine::Decision& d);

  HandlerOptions options_;
  engine::Engine& engine_;
  Tracer& tracer_;
  std::shared_ptr<const Policy> policy_;
  ct::MonotonicClock clock_;
  // ifindex -> the bound portdev (a key of policy_->bindings), or nullptr: not ours.
  absl::flat_hash_map<uint32_t, const std::string*> ifnames_;
  RateLimiter limiter_;
  HandlerStats stats_;
  std::vector<engine::Released> released_;
};

// Routes the engine's settled held fragments (Engine::TakeReleased) to their queues;
// call it where the engine is used (under decide_mu). `stats` may be null.
void RouteReleased(engine::Engine& engine, ReleaseRouter& router,
                   std::vector<engine::Released>& scratch, HandlerStats* stats);

}  // namespace nwfq::nwfqd
