#include "tools/nwfqd/daemon.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <cinttypes>
#include <cstdio>
#include <map>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "conntrack/clock.h"
#include "engine/engine.h"
#include "engine/nfqueue/nfqueue.h"
#include "engine/packet_view.h"
#include "tools/nwfqd/control.h"
#include "tools/nwfqd/policy.h"
#include "tools/nwfqd/steering.h"

namespace nwfq::nwfqd {
namespace {

using engine::Decision;
using engine::Reason;
using engine::View;

const char* ViewName(View v) {
  switch (v) {
    case View::kFromVm:
      return "from-vm";
    case View::kToVm:
      return "to-vm";
    case View::kVmToHost:
      return "vm-to-host";
  }
  return "?";
}

const char* VerdictName(engine::Verdict v) {
  switch (v) {
    case engine::Verdict::kAccept:
      return "ACCEPT";
    case engine::Verdict::kDrop:
      return "DROP";
    case engine::Verdict::kReject:
      return "REJECT(drop)";
  }
  return "?";
}

const char* CtStateName(ct::State s) {
  switch (s) {
    case ct::State::kNew:
      return "NEW";
    case ct::State::kEstablished:
      return "ESTABLISHED";
    case ct::State::kRelated:
      return "RELATED";
    case ct::State::kInvalid:
      return "INVALID";
    case ct::State::kUntracked:
      return "UNTRACKED";
  }
  return "?";
}

const char* ReasonName(Reason r) {
  switch (r) {
    case Reason::kRule:
      return "rule";
    case Reason::kFellOff:
      return "fell-off";
    case Reason::kNoBinding:
      return "no-binding";
    case Reason::kMalformed:
      return "malformed";
    case Reason::kFragment:
      return "orphan-fragment";
  }
  return "?";
}

// Token bucket: at most `rate` lines per second, bursts of `rate`; the rest are counted.
class RateLimiter {
 public:
  explicit RateLimiter(int rate) : rate_(rate > 0 ? rate : 1), tokens_(rate_) {}
  bool Allow(ct::Nanos now) {
    const double refill = static_cast<double>(now - last_) / ct::kNanosPerSecond * rate_;
    tokens_ = std::min<double>(rate_, tokens_ + refill);
    last_ = now;
    if (tokens_ >= 1) {
      tokens_ -= 1;
      return true;
    }
    ++suppressed_;
    return false;
  }
  uint64_t TakeSuppressed() { return std::exchange(suppressed_, 0); }

 private:
  int rate_;
  double tokens_;
  ct::Nanos last_ = 0;
  uint64_t suppressed_ = 0;
};

std::string Addr(const std::array<uint8_t, 16>& a, int family) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, a.data(), buf, sizeof(buf));
  return buf;
}

// "tcp 198.18.0.3:40000 > 198.18.0.2:22 [S]" from the engine's own parser (log path only).
std::string Describe(const nfq::Packet& p) {
  engine::PacketView v =
      engine::ParseNetwork(p.payload, p.hw_protocol, {.verify_checksums = false});
  if (v.malformed != engine::Malformed::kNone)
    return absl::StrCat("malformed(", std::string(engine::MalformedName(v.malformed)), ")");
  if (v.family == 0) return absl::StrFormat("ethertype 0x%04x", p.hw_protocol);
  const std::string src = Addr(v.src_ip, v.family), dst = Addr(v.dst_ip, v.family);
  switch (v.l4proto) {
    case engine::kProtoTcp: {
      std::string flags;
      for (auto [bit, c] :
           {std::pair{ct::kTcpSyn, 'S'}, std::pair{ct::kTcpFin, 'F'}, std::pair{ct::kTcpRst, 'R'},
            std::pair{ct::kTcpPsh, 'P'}, std::pair{ct::kTcpAck, '.'}}) {
        if (v.tcp_flags & bit) flags += c;
      }
      return absl::StrCat("tcp ", src, ":", v.sport, " > ", dst, ":", v.dport, " [", flags, "]");
    }
    case engine::kProtoUdp:
      return absl::StrCat("udp ", src, ":", v.sport, " > ", dst, ":", v.dport);
    case engine::kProtoIcmp:
    case engine::kProtoIcmpv6:
      return absl::StrCat(v.l4proto == engine::kProtoIcmp ? "icmp " : "icmpv6 ", src, " > ", dst,
                          " type ", v.icmp_type, " code ", v.icmp_code);
    default:
      return absl::StrCat("proto ", v.l4proto, " ", src, " > ", dst);
  }
}

struct Stats {
  uint64_t decisions[3][3] = {};  // [view][verdict]
  uint64_t by_reason[5] = {};
  uint64_t not_ours = 0;  // queued but neither physdev is a bound tap
};

class Worker {
 public:
  Worker(const Config& config, std::vector<InstantiatedBinding> bindings, engine::Engine& engine)
      : config_(config), engine_(engine), limiter_(config.log_rate) {
    for (InstantiatedBinding& b : bindings) {
      std::string name = b.portdev;
      bindings_.emplace(std::move(name), std::move(b));
    }
  }

  nfq::Verdict Handle(const nfq::Packet& p) {
    const ct::Nanos now = clock_.Now();
    const std::string* in = Bound(p.physindev);
    const std::string* out = p.hook == nfq::kHookForward ? Bound(p.physoutdev) : nullptr;
    if (in == nullptr && out == nullptr) {
      ++stats_.not_ours;  // steering matched a device we hold no binding for
      return nfq::Verdict::kAccept;
    }
    engine::PacketInput input;
    input.bytes = p.payload;
    input.layer = engine::Layer::kNetwork;
    input.ethertype = p.hw_protocol;
    input.src_mac = p.hwaddr;
    // A truncated copy cannot be checksummed; an offloaded one is not ready yet.
    input.checksum_unverified = p.checksum_not_ready() || p.wire_len > p.payload.size();
    if (in != nullptr) {
      const View view = p.hook == nfq::kHookForward ? View::kFromVm : View::kVmToHost;
      if (Decide(p, *in, view, input, now) != engine::Verdict::kAccept) return nfq::Verdict::kDrop;
    }
    if (out != nullptr && Decide(p, *out, View::kToVm, input, now) != engine::Verdict::kAccept) {
      return nfq::Verdict::kDrop;
    }
    return nfq::Verdict::kAccept;
  }

  std::string StatsText() const {
    std::string out = "decisions (accept/drop/reject):";
    for (View v : {View::kFromVm, View::kToVm, View::kVmToHost}) {
      const auto& d = stats_.decisions[static_cast<int>(v)];
      absl::StrAppend(&out, " ", ViewName(v), " ", d[0], "/", d[1], "/", d[2]);
    }
    const auto& r = stats_.by_reason;
    absl::StrAppend(&out, "\nreasons: rule ", r[0], ", fell-off ", r[1], ", no-binding ", r[2],
                    ", malformed ", r[3], ", orphan fragment ", r[4], "; not ours ",
                    stats_.not_ours, "\n");
    return out;
  }

 private:
  // The bound portdev behind ifindex `ifindex`, or nullptr. Names are resolved once per
  // ifindex (nwfqd runs in the host's namespace, where the indices are).
  const std::string* Bound(uint32_t ifindex) {
    if (ifindex == 0) return nullptr;
    auto it = ifnames_.find(ifindex);
    if (it == ifnames_.end()) {
      char name[IF_NAMESIZE] = {};
      const std::string* bound = nullptr;
      if (if_indextoname(ifindex, name) != nullptr) {
        auto b = bindings_.find(std::string_view(name));
        if (b != bindings_.end()) bound = &b->first;  // std::map keys never move
      }
      it = ifnames_.emplace(ifindex, bound).first;
    }
    return it->second;
  }

  engine::Verdict Decide(const nfq::Packet& p, const std::string& portdev, View view,
                         const engine::PacketInput& input, ct::Nanos now) {
    const Decision d = engine_.Decide(portdev, view, input, now);
    ++stats_.decisions[static_cast<int>(view)][static_cast<int>(d.verdict)];
    ++stats_.by_reason[static_cast<int>(d.reason)];
    if (config_.log_verdicts && limiter_.Allow(now)) Log(p, portdev, view, d);
    return d.verdict;
  }

  void Log(const nfq::Packet& p, const std::string& portdev, View view, const Decision& d) {
    std::string rule;
    const InstantiatedBinding& b = bindings_.at(portdev);
    if (d.rule >= 0 && static_cast<size_t>(d.rule) < b.rules.size()) {
      const RuleOrigin& o = b.rules[d.rule].origin;
      rule = absl::StrCat(" rule #", d.rule, " ", o.filter, " (", o.file, ":", o.line, ")");
    } else {
      rule = absl::StrCat(" ", ReasonName(d.reason));
    }
    const uint64_t suppressed = limiter_.TakeSuppressed();
    std::string ct = "-";
    if (d.ct_looked_at) {
      ct = CtStateName(d.ct_state);
      if (d.ct_state != ct::State::kUntracked)
        ct += d.ct_dir == ct::Dir::kOriginal ? "/ORIGINAL" : "/REPLY";
    }
    std::string tail =
        suppressed > 0 ? absl::StrCat(" (", suppressed, " lines suppressed before)") : "";
    std::fprintf(stderr, "nwfqd: %-12s %s %-10s %s ct %s%s%s\n", VerdictName(d.verdict),
                 portdev.c_str(), ViewName(view), Describe(p).c_str(), ct.c_str(), rule.c_str(),
                 tail.c_str());
  }

  const Config& config_;
  engine::Engine& engine_;
  ct::MonotonicClock clock_;
  std::map<std::string, InstantiatedBinding, std::less<>> bindings_;
  // ifindex -> the bound portdev (a key of bindings_), or nullptr: not ours.
  absl::flat_hash_map<uint32_t, const std::string*> ifnames_;
  RateLimiter limiter_;
  Stats stats_;
};

}  // namespace

absl::Status Run(const Config& config, const std::atomic<bool>& stop) {
  absl::StatusOr<std::vector<InstantiatedBinding>> policy =
      LoadPolicy(config.filters_dir, config.binding_files);
  if (!policy.ok()) return policy.status();
  engine::Engine engine{engine::EngineOptions{}};
  std::vector<std::string> portdevs;
  for (const InstantiatedBinding& b : *policy) {
    for (const Warning& w : b.warnings) {
      std::fprintf(stderr, "nwfqd: warning: %s:%d (%s): %s\n", w.origin.file.c_str(), w.origin.line,
                   w.origin.filter.c_str(), w.message.c_str());
    }
    if (absl::Status st = engine.SetBinding(b); !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("binding ", b.portdev, ": ", st.message()));
    }
    portdevs.push_back(b.portdev);
    // Never silently ignore a rule: the kernel here queues only IP packets (iptables), so
    // layer-2 rules see IP packets but never ARP/RARP/other frames (issue 6: offload).
    size_t l2_rules = 0;
    for (const L2Chain& chain : b.l2_chains) {
      for (const L2Entry& e : chain.entries) l2_rules += e.kind == L2Entry::Kind::kRule;
    }
    if (l2_rules > 0) {
      std::fprintf(stderr,
                   "nwfqd: warning: binding %s: %zu layer-2 rule(s) apply to IP packets only; "
                   "ARP, RARP and other non-IP frames are not steered to nwfqd and pass "
                   "unfiltered\n",
                   b.portdev.c_str(), l2_rules);
    }
    std::fprintf(stderr, "nwfqd: binding %s: filter %s, %zu rules\n", b.portdev.c_str(),
                 b.top_filter.c_str(), b.rules.size());
  }

  // Steering backend first (cheap checks), then the queue, then the rules: packets are
  // steered only once someone listens.
  steer::Detection detection;
  if (config.steer != "none") detection = steer::Detect();
  absl::StatusOr<steer::Backend> backend = steer::Choose(config.steer, detection);
  if (!backend.ok()) return backend.status();

  nfq::QueueOptions qopt;
  qopt.queue_num = config.queue;
  qopt.fail_open = config.fail_open;
  qopt.copy_range = config.copy_range;
  qopt.batch = config.batch;
  absl::StatusOr<std::unique_ptr<nfq::Queue>> queue = nfq::Queue::Open(qopt);
  if (!queue.ok()) return queue.status();

  if (*backend != steer::Backend::kNone) {
    // Install() removes stale chains of a crashed run first.
    if (absl::Status st = steer::Install(*backend, {portdevs, config.queue, config.fail_open});
        !st.ok()) {
      return st;
    }
  }
  Worker worker(config, *std::move(policy), engine);
  // Counters as text: at exit and for the control socket's `status`.
  auto report = [&] {
    const nfq::Counters& c = (*queue)->counters();
    std::string out = absl::StrCat(
        "queue ", config.queue, " (", config.fail_open ? "fail-open" : "fail-closed", ", steering ",
        steer::BackendName(*backend), ", bindings ", absl::StrJoin(portdevs, ","), "): packets ",
        c.packets, " (accepted ", c.accepted, ", dropped ", c.dropped, ") in ", c.batches,
        " batches; truncated ", c.truncated, ", bad messages ", c.bad_messages, ", enobufs ",
        c.enobufs, ", receive errors ", c.recv_errors, ", verdict send errors ", c.send_errors,
        "\n");
    absl::StatusOr<nfq::KernelQueueStats> ks = nfq::ReadKernelQueueStats(config.queue);
    if (ks.ok()) {
      absl::StrAppend(&out, "kernel: waiting ", ks->waiting, ", queue-full drops ",
                      ks->queue_dropped, ", socket overrun drops ", ks->user_dropped, "\n");
    }
    return absl::StrCat(out, worker.StatsText());
  };

  std::unique_ptr<ControlServer> control;
  if (!config.control_path.empty()) {
    absl::StatusOr<std::unique_ptr<ControlServer>> c = ControlServer::Open(config.control_path);
    if (!c.ok()) {
      (void)steer::Remove(*backend);
      return c.status();
    }
    control = *std::move(c);
  }
  std::fprintf(stderr, "nwfqd: ready: queue %u, bindings %s, steering %s (%s), %s%s\n",
               config.queue, absl::StrJoin(portdevs, ",").c_str(), steer::BackendName(*backend),
               detection.detail.empty() ? "by the operator" : detection.detail.c_str(),
               config.fail_open ? "fail-open" : "fail-closed",
               control ? absl::StrCat(", control ", config.control_path).c_str() : "");

  absl::Status loop_status;
  absl::Time next_control = absl::Now();
  while (!stop.load(std::memory_order_relaxed)) {
    absl::StatusOr<int> n =
        (*queue)->ProcessBatch(100, [&](const nfq::Packet& p) { return worker.Handle(p); });
    if (!n.ok()) {
      loop_status = n.status();
      break;
    }
    if (control && absl::Now() >= next_control) {  // off the per-packet path: <= 10 polls/s
      control->Poll([&](std::string_view request) -> std::string {
        if (request == "status") return report();
        return absl::StrCat("error: unknown request '", std::string(request),
                            "' (known: status)\n");
      });
      next_control = absl::Now() + absl::Milliseconds(100);
    }
  }

  // Shutdown: stop steering new packets, decide what is already queued, then unbind.
  absl::Status removed = steer::Remove(*backend);
  if (!removed.ok()) {
    std::fprintf(stderr, "nwfqd: removing steering: %s\n", removed.ToString().c_str());
  }
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<int> n =
        (*queue)->ProcessBatch(0, [&](const nfq::Packet& p) { return worker.Handle(p); });
    if (!n.ok() || *n == 0) break;
  }
  for (absl::string_view line : absl::StrSplit(report(), '\n', absl::SkipEmpty())) {
    std::fprintf(stderr, "nwfqd: %.*s\n", static_cast<int>(line.size()), line.data());
  }
  if (!loop_status.ok()) return loop_status;
  return removed;
}

}  // namespace nwfq::nwfqd
