#include "tools/nwfqd/handler.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/replay.h"
#include "tools/nwfqd/reject.h"

namespace nwfq::nwfqd {

using engine::Decision;
using engine::Reason;
using engine::View;

void HandlerStats::Add(const HandlerStats& o) {
  for (int v = 0; v < 3; ++v)
    for (int d = 0; d < 3; ++d) decisions[v][d] += o.decisions[v][d];
  for (int r = 0; r < 5; ++r) by_reason[r] += o.by_reason[r];
  not_ours += o.not_ours;
  held += o.held;
  for (int v = 0; v < 3; ++v) released[v] += o.released[v];
}

void RouteReleased(engine::Engine& engine, ReleaseRouter& router,
                   std::vector<engine::Released>& scratch, HandlerStats* stats) {
  engine.TakeReleased(&scratch);
  for (const engine::Released& r : scratch) {
    // A held fragment of a datagram decided reject is dropped silently: the reject reply
    // (if any) answered the packet that completed the datagram, once, as the kernel's
    // REJECT answers the reassembled datagram once.
    router.Post(r.token, r.decision.verdict == engine::Verdict::kAccept ? nfq::Verdict::kAccept
                                                                        : nfq::Verdict::kDrop);
    if (stats != nullptr) ++stats->released[static_cast<int>(r.decision.verdict)];
  }
}

const char* ViewName(View v) {
  // The engine's names (engine/replay.h), as in replay's CSV: string literals, so the view
  // of one is NUL-terminated.
  return engine::ViewText(v).data();
}

const char* VerdictName(engine::Verdict v) {
  switch (v) {
    case engine::Verdict::kAccept:
      return "ACCEPT";
    case engine::Verdict::kDrop:
      return "DROP";
    case engine::Verdict::kReject:
      return "REJECT";
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
      return "fragment";
  }
  return "?";
}

bool RateLimiter::Allow(ct::Nanos now) {
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

namespace {

std::string Addr(const std::array<uint8_t, 16>& a, int family) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, a.data(), buf, sizeof(buf));
  return buf;
}

// Said after the rule when the line's packet completed a datagram: the verdict is the
// datagram's (decided once, on the reassembled packet) and goes to all its fragments.
const char* ReassembledNote(const engine::Decision& d) {
  return d.reassembled ? " (datagram reassembled: verdict for all its fragments)" : "";
}

engine::PacketView Parse(const nfq::Packet& p) {
  return engine::ParseNetwork(p.payload, p.hw_protocol, {.verify_checksums = false});
}

}  // namespace

std::string Describe(const nfq::Packet& p) {
  const engine::PacketView v = Parse(p);
  if (v.malformed != engine::Malformed::kNone)
    return absl::StrCat("malformed(", std::string(engine::MalformedName(v.malformed)), ")");
  if (v.family == 0) return absl::StrFormat("ethertype 0x%04x", p.hw_protocol);
  const std::string src = Addr(v.src_ip, v.family), dst = Addr(v.dst_ip, v.family);
  if (v.fragment && v.frag_offset != 0) {
    // A later fragment has no transport header: no ports or type to show (were "0" here).
    const char* proto = v.l4proto == engine::kProtoTcp      ? "tcp"
                        : v.l4proto == engine::kProtoUdp    ? "udp"
                        : v.l4proto == engine::kProtoIcmp   ? "icmp"
                        : v.l4proto == engine::kProtoIcmpv6 ? "icmpv6"
                                                            : nullptr;
    return absl::StrCat(proto != nullptr ? proto : absl::StrCat("proto ", v.l4proto), " ", src,
                        " > ", dst, " fragment id ", v.frag_id, " offset ", v.frag_offset,
                        v.more_fragments ? "" : " (last)");
  }
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

PacketHandler::PacketHandler(const HandlerOptions& options, engine::Engine& engine, Tracer& tracer,
                             std::shared_ptr<const Policy> policy)
    : options_(options),
      engine_(engine),
      tracer_(tracer),
      policy_(std::move(policy)),
      limiter_(options.log_rate) {}

void PacketHandler::SetPolicy(std::shared_ptr<const Policy> policy) {
  policy_ = std::move(policy);
  ifnames_.clear();  // its values point into the old policy's keys
}

nfq::Verdict PacketHandler::Handle(const nfq::Packet& p) {
  const ct::Nanos now = clock_.Now();
  // Bridged taps show up as physin/physout; routed taps (steering.h) as in/out.
  const std::string* in = Bound(p.physindev != 0 ? p.physindev : p.indev);
  const std::string* out =
      p.hook == nfq::kHookForward ? Bound(p.physoutdev != 0 ? p.physoutdev : p.outdev) : nullptr;
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
  input.wire_len = p.wire_len;  // a header-sized copy is parsed, not malformed
  input.token = ReleaseRouter::Token(options_.queue_num, p.id);
  engine::Verdict v = engine::Verdict::kAccept;
  View view = View::kToVm;
  bool held = false;
  if (in != nullptr) {
    view = p.hook == nfq::kHookForward ? View::kFromVm : View::kVmToHost;
    v = Decide(p, *in, view, input, now, &held);
  }
  // A fragment bridged between two bound taps is held by the sender's binding: its
  // datagram's verdict there is final (the receiver's FO is not consulted for it).
  if (!held && v == engine::Verdict::kAccept && out != nullptr) {
    view = View::kToVm;
    v = Decide(p, *out, view, input, now, &held);
  }
  if (held) {
    ++stats_.held;
    return nfq::Verdict::kHold;
  }
  if (v == engine::Verdict::kReject && options_.rejecter != nullptr) {
    options_.rejecter->Reject(p.payload, p.wire_len, view == View::kVmToHost);
  }
  return v == engine::Verdict::kAccept ? nfq::Verdict::kAccept : nfq::Verdict::kDrop;
}

// Names are resolved once per ifindex (nwfqd runs in the host's namespace, where the
// indices are); the cache is dropped when the policy changes.
const std::string* PacketHandler::Bound(uint32_t ifindex) {
  if (ifindex == 0) return nullptr;
  auto it = ifnames_.find(ifindex);
  if (it == ifnames_.end()) {
    char name[IF_NAMESIZE] = {};
    const std::string* bound = nullptr;
    if (if_indextoname(ifindex, name) != nullptr) {
      auto b = policy_->bindings.find(absl::string_view(name));
      if (b != policy_->bindings.end()) bound = &b->first;  // std::map keys never move
    }
    it = ifnames_.emplace(ifindex, bound).first;
  }
  return it->second;
}

engine::Verdict PacketHandler::Decide(const nfq::Packet& p, const std::string& portdev, View view,
                                      const engine::PacketInput& input, ct::Nanos now, bool* held) {
  Decision d;
  bool traced = false;
  std::string explanation;
  if (tracer_.active() && tracer_.Want(Parse(p), portdev, view)) {
    std::unique_lock<std::mutex> lock;
    if (options_.decide_mu != nullptr) lock = std::unique_lock<std::mutex>(*options_.decide_mu);
    d = engine_.Explain(portdev, view, input, now, &explanation);  // = Decide + the why
    traced = true;
    Settle(d);
  } else {
    std::unique_lock<std::mutex> lock;
    if (options_.decide_mu != nullptr) lock = std::unique_lock<std::mutex>(*options_.decide_mu);
    d = engine_.Decide(portdev, view, input, now);
    Settle(d);
  }
  *held = d.held;
  if (d.held) return d.verdict;
  ++stats_.decisions[static_cast<int>(view)][static_cast<int>(d.verdict)];
  ++stats_.by_reason[static_cast<int>(d.reason)];
  if (traced) {
    std::string ct = "-";
    if (d.ct_looked_at) {
      ct = CtStateName(d.ct_state);
      if (d.ct_state != ct::State::kUntracked)
        ct += d.ct_dir == ct::Dir::kOriginal ? "/ORIGINAL" : "/REPLY";
    }
    std::string line =
        absl::StrFormat("%-12s %s %-10s %s ct %s%s%s\n", VerdictName(d.verdict), portdev,
                        ViewName(view), Describe(p), ct, RuleText(portdev, d), ReassembledNote(d));
    for (absl::string_view l : absl::StrSplit(explanation, '\n', absl::SkipEmpty()))
      absl::StrAppend(&line, "    ", l, "\n");
    tracer_.Emit(std::move(line));
  }
  if (options_.log_verdicts && limiter_.Allow(now)) Log(p, portdev, view, d);
  return d.verdict;
}

// Under the engine's lock: what this call settled goes to the queues' owners. Without a
// router a held fragment cannot be released: it is dropped now (and its datagram's
// later fragments with it) rather than left queued forever.
void PacketHandler::Settle(engine::Decision& d) {
  if (options_.router == nullptr) {
    std::vector<engine::Released> drop;
    engine_.TakeReleased(&drop);
    if (d.held) {
      d.held = false;
      d.verdict = engine::Verdict::kDrop;
    }
    return;
  }
  RouteReleased(engine_, *options_.router, released_, &stats_);
}

std::string PacketHandler::RuleText(const std::string& portdev, const Decision& d) const {
  auto b = policy_->bindings.find(portdev);
  if (b != policy_->bindings.end() && d.rule >= 0 &&
      static_cast<size_t>(d.rule) < b->second.rules.size()) {
    const RuleOrigin& o = b->second.rules[d.rule].origin;
    return absl::StrCat(" rule #", d.rule, " ", o.filter, " (", o.file, ":", o.line, ")");
  }
  return absl::StrCat(" ", ReasonName(d.reason));
}

void PacketHandler::Log(const nfq::Packet& p, const std::string& portdev, View view,
                        const Decision& d) {
  const uint64_t suppressed = limiter_.TakeSuppressed();
  std::string ct = "-";
  if (d.ct_looked_at) {
    ct = CtStateName(d.ct_state);
    if (d.ct_state != ct::State::kUntracked)
      ct += d.ct_dir == ct::Dir::kOriginal ? "/ORIGINAL" : "/REPLY";
  }
  std::string tail =
      suppressed > 0 ? absl::StrCat(" (", suppressed, " lines suppressed before)") : "";
  std::fprintf(stderr, "nwfqd: %-12s %s %-10s %s ct %s%s%s%s\n", VerdictName(d.verdict),
               portdev.c_str(), ViewName(view), Describe(p).c_str(), ct.c_str(),
               RuleText(portdev, d).c_str(), ReassembledNote(d), tail.c_str());
}

}  // namespace nwfq::nwfqd
