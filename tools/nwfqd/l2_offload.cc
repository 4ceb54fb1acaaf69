#include "tools/nwfqd/l2_offload.h"

#include <arpa/inet.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/placement.h"
#include "tools/lab/subprocess.h"

namespace nwfq::l2 {
namespace {

using engine::L2Dir;

constexpr char kPrefix[] = "NWFQ-";
constexpr size_t kMaxChainName = 31;  // EBT_CHAIN_MAXNAMELEN - 1

bool SupportedAttr(Protocol p, Attr a) {
  switch (a) {
    case Attr::kSrcMacAddr:
    case Attr::kSrcMacMask:
    case Attr::kDstMacAddr:
    case Attr::kDstMacMask:
    case Attr::kComment:
      return p != Protocol::kStp;  // stp: the destination is the BPDU address
    default:
      break;
  }
  switch (p) {
    case Protocol::kMac:
      return a == Attr::kProtocolId;
    case Protocol::kVlan:
      return a == Attr::kVlanId || a == Attr::kEncapProtocol;
    case Protocol::kArp:
    case Protocol::kRarp:
      return a == Attr::kHwType || a == Attr::kProtocolType || a == Attr::kOpcode ||
             a == Attr::kArpSrcMacAddr || a == Attr::kArpDstMacAddr || a == Attr::kArpSrcIpAddr ||
             a == Attr::kArpSrcIpMask || a == Attr::kArpDstIpAddr || a == Attr::kArpDstIpMask ||
             a == Attr::kGratuitous;
    case Protocol::kIp:
    case Protocol::kIpv6:
      return a == Attr::kSrcIpAddr || a == Attr::kSrcIpMask || a == Attr::kDstIpAddr ||
             a == Attr::kDstIpMask || a == Attr::kProtocol || a == Attr::kSrcPortStart ||
             a == Attr::kSrcPortEnd || a == Attr::kDstPortStart || a == Attr::kDstPortEnd ||
             (a == Attr::kDscp && p == Protocol::kIp);
    default:
      return false;
  }
}

std::string Mac(const AttrValue& v) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", v.bytes[0], v.bytes[1], v.bytes[2],
                         v.bytes[3], v.bytes[4], v.bytes[5]);
}

std::string Ip(const AttrValue& v, int family) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, v.bytes.data(), buf, sizeof(buf));
  return buf;
}

// " OPT [!] VALUE" for attribute `a`, or "".
std::string Opt(const ConcreteRule& r, Attr a, const std::string& opt, const std::string& value) {
  const AttrSlot* s = r.Find(a);
  if (s == nullptr) return "";
  return absl::StrCat(" ", opt, s->negated ? " ! " : " ", value);
}

std::string MacOpt(const ConcreteRule& r, Attr addr, Attr mask, const std::string& opt) {
  const AttrSlot* s = r.Find(addr);
  if (s == nullptr) return "";
  std::string value = Mac(s->value);
  if (const AttrSlot* m = mask == Attr::kComment ? nullptr : r.Find(mask))
    absl::StrAppend(&value, "/", Mac(m->value));
  return Opt(r, addr, opt, value);
}

std::string IpOpt(const ConcreteRule& r, Attr addr, Attr mask, const std::string& opt, int family) {
  const AttrSlot* s = r.Find(addr);
  if (s == nullptr) return "";
  std::string value = Ip(s->value, family);
  if (const AttrSlot* m = r.Find(mask)) absl::StrAppend(&value, "/", m->value.number);
  return Opt(r, addr, opt, value);
}

std::string PortOpt(const ConcreteRule& r, Attr start, Attr end, const std::string& opt) {
  const AttrSlot* s = r.Find(start);
  if (s == nullptr) return "";
  std::string value = absl::StrCat(s->value.number);
  if (const AttrSlot* e = r.Find(end)) absl::StrAppend(&value, ":", e->value.number);
  return Opt(r, start, opt, value);
}

std::string Num(const ConcreteRule& r, Attr a, const std::string& opt, bool hex = false) {
  const AttrSlot* s = r.Find(a);
  if (s == nullptr) return "";
  return Opt(r, a, opt,
             hex ? absl::StrFormat("0x%x", s->value.number) : absl::StrCat(s->value.number));
}

// The match part of one rule instance (libvirt's ebtablesCreateRuleInstance, in the
// packet's own direction when !swapped).
std::string Matches(const ConcreteRule& r, bool swapped) {
  std::string m;
  switch (r.protocol) {
    case Protocol::kArp:
      m = " -p ARP";
      break;
    case Protocol::kRarp:
      m = " -p RARP";
      break;
    case Protocol::kIp:
      m = " -p IPv4";
      break;
    case Protocol::kIpv6:
      m = " -p IPv6";
      break;
    case Protocol::kVlan:
      m = " -p 802_1Q";
      break;
    case Protocol::kStp:
      m = " -d 01:80:c2:00:00:00";
      break;
    case Protocol::kMac:
      m = Num(r, Attr::kProtocolId, "-p", /*hex=*/true);
      break;
    default:
      break;
  }
  const char* s = swapped ? "-d" : "-s";
  const char* d = swapped ? "-s" : "-d";
  absl::StrAppend(&m, MacOpt(r, Attr::kSrcMacAddr, Attr::kSrcMacMask, s));
  absl::StrAppend(&m, MacOpt(r, Attr::kDstMacAddr, Attr::kDstMacMask, d));
  switch (r.protocol) {
    case Protocol::kVlan:
      absl::StrAppend(&m, Num(r, Attr::kVlanId, "--vlan-id"),
                      Num(r, Attr::kEncapProtocol, "--vlan-encap", true));
      break;
    case Protocol::kArp:
    case Protocol::kRarp:
      absl::StrAppend(&m, Num(r, Attr::kHwType, "--arp-htype"),
                      Num(r, Attr::kProtocolType, "--arp-ptype", true),
                      Num(r, Attr::kOpcode, "--arp-op"));
      absl::StrAppend(&m,
                      MacOpt(r, Attr::kArpSrcMacAddr, Attr::kComment,
                             swapped ? "--arp-mac-dst" : "--arp-mac-src"),
                      MacOpt(r, Attr::kArpDstMacAddr, Attr::kComment,
                             swapped ? "--arp-mac-src" : "--arp-mac-dst"),
                      IpOpt(r, Attr::kArpSrcIpAddr, Attr::kArpSrcIpMask,
                            swapped ? "--arp-ip-dst" : "--arp-ip-src", 4),
                      IpOpt(r, Attr::kArpDstIpAddr, Attr::kArpDstIpMask,
                            swapped ? "--arp-ip-src" : "--arp-ip-dst", 4));
      if (const AttrSlot* g = r.Find(Attr::kGratuitous); g != nullptr && g->value.number != 0)
        absl::StrAppend(&m, g->negated ? " ! --arp-gratuitous" : " --arp-gratuitous");
      break;
    case Protocol::kIp:
    case Protocol::kIpv6: {
      const int fam = r.protocol == Protocol::kIp ? 4 : 6;
      const std::string o = fam == 4 ? "--ip" : "--ip6";
      absl::StrAppend(
          &m, IpOpt(r, Attr::kSrcIpAddr, Attr::kSrcIpMask, o + (swapped ? "-dst" : "-src"), fam),
          IpOpt(r, Attr::kDstIpAddr, Attr::kDstIpMask, o + (swapped ? "-src" : "-dst"), fam),
          Num(r, Attr::kProtocol, o + "-proto"),
          PortOpt(r, Attr::kSrcPortStart, Attr::kSrcPortEnd, o + (swapped ? "-dport" : "-sport")),
          PortOpt(r, Attr::kDstPortStart, Attr::kDstPortEnd, o + (swapped ? "-sport" : "-dport")));
      if (fam == 4) absl::StrAppend(&m, Num(r, Attr::kDscp, "--ip-tos", true));
      break;
    }
    default:
      break;
  }
  return m;
}

const char* Target(Action a) {
  switch (a) {
    case Action::kAccept:
      return "ACCEPT";
    case Action::kDrop:
    case Action::kReject:  // no REJECT in ebtables (c.3)
      return "DROP";
    case Action::kReturn:
      return "RETURN";
    case Action::kContinue:
      return "CONTINUE";
  }
  return "DROP";
}

std::string Guard(ChainKind kind) {
  switch (kind) {
    case ChainKind::kIpv4:
      return " -p IPv4";
    case ChainKind::kIpv6:
      return " -p IPv6";
    case ChainKind::kArp:
      return " -p ARP";
    case ChainKind::kRarp:
      return " -p RARP";
    case ChainKind::kVlan:
      return " -p 802_1Q";
    case ChainKind::kStp:
      return " -d 01:80:c2:00:00:00";
    case ChainKind::kMac:
    case ChainKind::kRoot:
      return "";
  }
  return "";
}

std::string ChainName(const InstantiatedBinding& b, L2Dir dir, size_t ci) {
  const std::string root = absl::StrCat(kPrefix, dir == L2Dir::kI ? "I-" : "O-", b.portdev);
  if (ci == 0) return root;
  std::string name = absl::StrCat(root, "-", b.l2_chains[ci].name);
  if (name.size() > kMaxChainName) name = absl::StrCat(root, "-", ci);
  return name;
}

size_t CountL2Rules(const InstantiatedBinding& b) {
  size_t n = 0;
  for (const L2Chain& c : b.l2_chains)
    for (const L2Entry& e : c.entries) n += e.kind == L2Entry::Kind::kRule;
  return n;
}

std::string RuleText(const InstantiatedBinding& b, uint32_t rule) {
  const ConcreteRule& r = b.rules[rule];
  return absl::StrCat(r.origin.file, ":", r.origin.line, " (", r.origin.filter, ") ",
                      std::string(DirectionName(r.direction)), " ",
                      std::string(ActionName(r.action)), " ",
                      r.protocol == Protocol::kNone ? std::string("(no element)")
                                                    : std::string(ProtocolName(r.protocol)));
}

}  // namespace

std::string Unsupported(const InstantiatedBinding& binding, uint32_t rule) {
  const ConcreteRule& r = binding.rules[rule];
  for (const AttrSlot& s : r.attrs) {
    if (!SupportedAttr(r.protocol, s.attr)) {
      return absl::StrCat("attribute ", std::string(AttrName(s.attr)), " of <",
                          std::string(ProtocolName(r.protocol)),
                          "> has no layer-2 offload translation yet");
    }
  }
  return "";
}

std::vector<std::string> DescribeL2Rules(const InstantiatedBinding& binding) {
  std::vector<std::string> out;
  for (const L2Chain& c : binding.l2_chains) {
    for (const L2Entry& e : c.entries) {
      if (e.kind == L2Entry::Kind::kRule) out.push_back(RuleText(binding, e.index));
    }
  }
  return out;
}

Plan BuildPlan(const std::vector<InstantiatedBinding>& bindings) {
  Plan plan;
  std::string chains, rules, jumps;
  for (const InstantiatedBinding& b : bindings) {
    if (CountL2Rules(b) == 0) continue;
    bool ok = true;
    for (const L2Chain& c : b.l2_chains) {
      for (const L2Entry& e : c.entries) {
        if (e.kind != L2Entry::Kind::kRule) continue;
        std::string why = Unsupported(b, e.index);
        if (!why.empty()) {
          plan.not_offloaded.push_back(
              absl::StrCat(b.portdev, ": ", RuleText(b, e.index), ": ", why));
          ok = false;
        }
      }
    }
    if (!ok) continue;
    plan.offloaded.push_back(b.portdev);
    const size_t n = b.l2_chains.size();
    for (L2Dir dir : {L2Dir::kI, L2Dir::kO}) {
      // Sub-chains first (as the compiler does): a jump is written only to a chain that
      // has rules in this direction, as libvirt creates them.
      std::vector<std::string> body(n);
      std::vector<bool> has_rules(n, false);
      for (size_t ci = n; ci-- > 0;) {
        for (const L2Entry& e : b.l2_chains[ci].entries) {
          if (e.kind == L2Entry::Kind::kJump) {
            if (e.index <= ci || e.index >= n || !has_rules[e.index]) continue;
            absl::StrAppend(&body[ci], Guard(b.l2_chains[e.index].kind), " -j ",
                            ChainName(b, dir, e.index), "\n");
            continue;
          }
          const ConcreteRule& r = b.rules[e.index];
          const engine::L2Placement pl = engine::PlaceL2(r, dir);
          if (!pl.present) continue;
          has_rules[ci] = true;
          absl::StrAppend(&body[ci], Matches(r, pl.swapped), " -j ", Target(r.action), "\n");
        }
      }
      for (size_t ci = 0; ci < n; ++ci) {
        if (ci != 0 && !has_rules[ci]) continue;
        const std::string name = ChainName(b, dir, ci);
        absl::StrAppend(&chains, ":", name, " ACCEPT\n");
        for (absl::string_view line : absl::StrSplit(body[ci], '\n', absl::SkipEmpty())) {
          absl::StrAppend(&rules, "-A ", name, line, "\n");
        }
        absl::StrAppend(&rules, "-A ", name, " -j ACCEPT\n");  // falling off accepts (i.8)
      }
      absl::StrAppend(&jumps, "-A ", dir == L2Dir::kI ? "PREROUTING -i " : "POSTROUTING -o ",
                      b.portdev, " -j ", ChainName(b, dir, 0), "\n");
    }
  }
  if (!plan.offloaded.empty())
    plan.script = absl::StrCat("*nat\n", chains, rules, jumps, "COMMIT\n");
  return plan;
}

InstantiatedBinding WithoutL2(const InstantiatedBinding& binding) {
  InstantiatedBinding b = binding;
  for (L2Chain& c : b.l2_chains) c.entries.clear();
  return b;
}

namespace {

// nwfq's layer-2 state in the kernel, read back from `ebtables-save -t nat`: the NWFQ chains
// and, as `-D` lines, the jumps to them from PREROUTING/POSTROUTING. Reading the live state
// (not what this process installed) also finds the chains of a crashed run.
struct LiveChains {
  std::set<std::string> chains;
  std::string delete_jumps;  // "-D PREROUTING -i vnet0 -j NWFQ-I-vnet0\n" ...
};

absl::StatusOr<LiveChains> ReadLiveChains() {
  LiveChains live;
  absl::StatusOr<sub::RunResult> save =
      sub::Run({"ebtables-save", "-t", "nat"}, {.stdin_data = "", .timeout = absl::Seconds(20)});
  if (!save.ok()) return save.status();
  if (!save->ok()) return live;  // no nat table: nothing of ours
  for (absl::string_view line : absl::StrSplit(save->out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (!w.empty() && absl::StartsWith(w[0], absl::StrCat(":", kPrefix)))
      live.chains.insert(w[0].substr(1));
    if (w.size() >= 4 && w[0] == "-A" && (w[1] == "PREROUTING" || w[1] == "POSTROUTING") &&
        absl::StartsWith(w.back(), kPrefix)) {
      w[0] = "-D";
      absl::StrAppend(&live.delete_jumps, absl::StrJoin(w, " "), "\n");
    }
  }
  return live;
}

// Runs one ebtables-restore --noflush transaction: all of `script` applies, or none of it.
absl::Status Restore(const std::string& script) {
  absl::StatusOr<sub::RunResult> r = sub::Run({"ebtables-restore", "--noflush"},
                                              {.stdin_data = script, .timeout = absl::Seconds(20)});
  if (!r.ok()) return r.status();
  if (!r->ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ebtables-restore failed: ", r->err, "\nscript:\n", script));
  }
  return absl::OkStatus();
}

// Transaction lines that take the live NWFQ state apart: the jumps first, then every chain
// flushed (so no NWFQ chain references another), then deleted unless `keep` names it (a
// kept chain is declared again by the new plan, which refills it).
std::string TearDownLines(const LiveChains& live, const std::set<std::string>& keep) {
  std::string out = live.delete_jumps;
  for (const std::string& c : live.chains) absl::StrAppend(&out, "-F ", c, "\n");
  for (const std::string& c : live.chains)
    if (keep.count(c) == 0) absl::StrAppend(&out, "-X ", c, "\n");
  return out;
}

}  // namespace

absl::Status Remove() {
  absl::StatusOr<LiveChains> live = ReadLiveChains();
  if (!live.ok()) return live.status();
  if (live->chains.empty() && live->delete_jumps.empty()) return absl::OkStatus();
  return Restore(absl::StrCat("*nat\n", TearDownLines(*live, {}), "COMMIT\n"));
}

absl::Status Install(const Plan& plan) {
  absl::StatusOr<LiveChains> live = ReadLiveChains();
  if (!live.ok()) return live.status();
  if (plan.script.empty()) return Remove();
  // The plan declares its chains as ":NAME POLICY" lines after "*nat"; keep those, and put
  // the tear-down of the old state in front of the plan in the same transaction, so a
  // reload never leaves a window without layer-2 filtering, and a failed one changes nothing.
  std::set<std::string> keep;
  for (absl::string_view line : absl::StrSplit(plan.script, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, ":")) {
      std::vector<std::string> w = absl::StrSplit(line.substr(1), ' ', absl::SkipEmpty());
      if (!w.empty()) keep.insert(w[0]);
    }
  }
  constexpr absl::string_view kHeader = "*nat\n";
  if (!absl::StartsWith(plan.script, kHeader))
    return absl::InternalError("layer-2 plan does not start with *nat");
  return Restore(
      absl::StrCat(kHeader, TearDownLines(*live, keep), plan.script.substr(kHeader.size())));
}

}  // namespace nwfq::l2
