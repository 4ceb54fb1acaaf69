#include "engine/evaluator.h"

#include <cstring>

namespace nwfq::engine {
namespace {

bool PrefixEq(const uint8_t* a, const uint8_t* b, int bits) {
  const int full = bits / 8;
  if (std::memcmp(a, b, static_cast<size_t>(full)) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00u >> rest);
  return (a[full] & mask) == (b[full] & mask);
}

bool MacEq(const std::array<uint8_t, 6>& mac, const Test& t) {
  for (int i = 0; i < 6; ++i)
    if ((mac[i] & t.b[i]) != (t.a[i] & t.b[i])) return false;
  return true;
}

// a <= x <= b, comparing addresses as big-endian numbers of the family's length.
bool InRange(const std::array<uint8_t, 16>& x, const Test& t) {
  const size_t n = t.family == 4 ? 4 : 16;
  return std::memcmp(t.a.data(), x.data(), n) <= 0 && std::memcmp(x.data(), t.b.data(), n) <= 0;
}

inline TestResult Bool(bool match, bool negated) {
  return match != negated ? TestResult::kMatch : TestResult::kNoMatch;
}

constexpr TestResult kNa = TestResult::kNotApplicable;

bool HasPorts(uint8_t proto) {
  return proto == kProtoTcp || proto == kProtoUdp || proto == kProtoUdplite ||
         proto == kProtoSctp || proto == 33 /* dccp */;
}

uint32_t StateBitOf(ct::State s) {
  switch (s) {
    case ct::State::kNew:
      return kStateNew;
    case ct::State::kEstablished:
      return kStateEstablished;
    case ct::State::kRelated:
      return kStateRelated;
    case ct::State::kInvalid:
      return kStateInvalid;
    case ct::State::kUntracked:
      return 0;
  }
  return 0;
}

TestResult StpConfig(const PacketView& p, bool match, bool negated) {
  if (!p.is_stp) return kNa;
  if (!p.stp_config) return TestResult::kMatch;  // ebt_stp checks config fields only then
  return Bool(match, negated);
}

}  // namespace

TestResult EvalTest(const Test& t, const EvalContext& ctx) {
  const PacketView& p = *ctx.pkt;
  const bool neg = t.negated;
  switch (t.field) {
    // ---- layer 2
    case Field::kEtherType:
      return Bool(p.outer_ethertype == t.lo, neg);
    case Field::kSrcMac:
      if (!p.has_src_mac) return kNa;
      return Bool(MacEq(p.src_mac, t), neg);
    case Field::kDstMac:
      return Bool(MacEq(p.dst_mac, t), neg);
    case Field::kVlanId:
      if (p.vlan_tags == 0) return kNa;
      return Bool(p.vlan_id == t.lo, neg);
    case Field::kVlanEncap:
      if (p.vlan_tags == 0) return kNa;
      return Bool(p.vlan_encap == t.lo, neg);
    case Field::kStpBpdu:
      return p.is_stp ? TestResult::kMatch : kNa;
    case Field::kStpType:
      if (!p.is_stp) return kNa;
      return Bool(p.stp_type == t.lo, neg);
    case Field::kStpFlags:
      return StpConfig(p, p.stp_flags == t.lo, neg);
    case Field::kStpRootPrio:
      return StpConfig(p, p.stp_root_priority >= t.lo && p.stp_root_priority <= t.hi, neg);
    case Field::kStpRootAddr:
      return StpConfig(p, MacEq(p.stp_root_addr, t), neg);
    case Field::kStpRootCost:
      return StpConfig(p, p.stp_root_cost >= t.lo && p.stp_root_cost <= t.hi, neg);
    case Field::kStpSenderPrio:
      return StpConfig(p, p.stp_sender_priority >= t.lo && p.stp_sender_priority <= t.hi, neg);
    case Field::kStpSenderAddr:
      return StpConfig(p, MacEq(p.stp_sender_addr, t), neg);
    case Field::kStpPort:
      return StpConfig(p, p.stp_port >= t.lo && p.stp_port <= t.hi, neg);
    case Field::kStpAge:
      return StpConfig(p, p.stp_age >= t.lo && p.stp_age <= t.hi, neg);
    case Field::kStpMaxAge:
      return StpConfig(p, p.stp_max_age >= t.lo && p.stp_max_age <= t.hi, neg);
    case Field::kStpHelloTime:
      return StpConfig(p, p.stp_hello >= t.lo && p.stp_hello <= t.hi, neg);
    case Field::kStpForwardDelay:
      return StpConfig(p, p.stp_fwd_delay >= t.lo && p.stp_fwd_delay <= t.hi, neg);
    case Field::kArpHwType:
      if (!p.is_arp) return kNa;
      return Bool(p.arp_hwtype == t.lo, neg);
    case Field::kArpProtoType:
      if (!p.is_arp) return kNa;
      return Bool(p.arp_ptype == t.lo, neg);
    case Field::kArpOpcode:
      if (!p.is_arp) return kNa;
      return Bool(p.arp_opcode == t.lo, neg);
    case Field::kArpSrcMac:
      if (!p.arp_ipv4_eth) return kNa;
      return Bool(MacEq(p.arp_sha, t), neg);
    case Field::kArpDstMac:
      if (!p.arp_ipv4_eth) return kNa;
      return Bool(MacEq(p.arp_tha, t), neg);
    case Field::kArpSrcIp:
      if (!p.arp_ipv4_eth || p.arp_ptype != 0x0800) return kNa;
      return Bool(PrefixEq(p.arp_spa.data(), t.a.data(), t.prefix), neg);
    case Field::kArpDstIp:
      if (!p.arp_ipv4_eth || p.arp_ptype != 0x0800) return kNa;
      return Bool(PrefixEq(p.arp_tpa.data(), t.a.data(), t.prefix), neg);
    case Field::kArpGratuitous:
      if (!p.arp_ipv4_eth || p.arp_ptype != 0x0800) return kNa;
      return Bool(p.arp_spa == p.arp_tpa, neg);
    case Field::kL2IpSrc:
      if (p.family != t.family || p.vlan_tags) return kNa;
      return Bool(PrefixEq(p.src_ip.data(), t.a.data(), t.prefix), neg);
    case Field::kL2IpDst:
      if (p.family != t.family || p.vlan_tags) return kNa;
      return Bool(PrefixEq(p.dst_ip.data(), t.a.data(), t.prefix), neg);
    case Field::kL2IpProto:
      if (p.family == 0 || p.vlan_tags) return kNa;
      return Bool(p.l4proto == t.lo, neg);
    case Field::kL2Sport:
      if (p.family == 0 || p.vlan_tags || !HasPorts(p.l4proto) || !p.has_l4) return kNa;
      return Bool(p.sport >= t.lo && p.sport <= t.hi, neg);
    case Field::kL2Dport:
      if (p.family == 0 || p.vlan_tags || !HasPorts(p.l4proto) || !p.has_l4) return kNa;
      return Bool(p.dport >= t.lo && p.dport <= t.hi, neg);
    case Field::kL2Tos:
      if (p.family == 0 || p.vlan_tags) return kNa;
      return Bool(p.tos == t.lo, neg);
    case Field::kL2Icmp6:
      if (p.family != 6 || p.vlan_tags || p.l4proto != kProtoIcmpv6 || !p.has_l4) return kNa;
      return Bool(p.icmp_type >= t.lo && p.icmp_type <= t.hi && p.icmp_code >= t.lo2 &&
                      p.icmp_code <= t.hi2,
                  neg);
    // ---- layer 3
    case Field::kL4Proto:
      return Bool(p.l4proto == t.lo, neg);
    case Field::kIpSrc:
      return Bool(PrefixEq(p.src_ip.data(), t.a.data(), t.prefix), neg);
    case Field::kIpDst:
      return Bool(PrefixEq(p.dst_ip.data(), t.a.data(), t.prefix), neg);
    case Field::kIpSrcRange:
      return Bool(InRange(p.src_ip, t), neg);
    case Field::kIpDstRange:
      return Bool(InRange(p.dst_ip, t), neg);
    case Field::kSport:
      if (!p.has_l4) return kNa;
      return Bool(p.sport >= t.lo && p.sport <= t.hi, neg);
    case Field::kDport:
      if (!p.has_l4) return kNa;
      return Bool(p.dport >= t.lo && p.dport <= t.hi, neg);
    case Field::kDscp:
      return Bool(p.dscp() == t.lo, neg);
    case Field::kIcmpType:
      if (!p.has_l4) return kNa;
      return Bool(p.icmp_type == t.lo && p.icmp_code >= t.lo2 && p.icmp_code <= t.hi2, neg);
    case Field::kTcpFlags:
      if (!p.has_l4 || p.l4proto != kProtoTcp) return kNa;
      return Bool((p.tcp_flags & t.lo) == t.hi, neg);
    case Field::kTcpOption:
      if (!p.has_l4 || p.l4proto != kProtoTcp) return kNa;
      return Bool(p.TcpOption(static_cast<uint8_t>(t.lo)), neg);
    case Field::kMacSource:
      if (!p.has_src_mac) return kNa;
      return Bool(MacEq(p.src_mac, t), neg);
    case Field::kCtState:
      return Bool((StateBitOf(ctx.state) & t.lo) != 0, neg);
    case Field::kCtDir: {
      if (ctx.state == ct::State::kInvalid || ctx.state == ct::State::kUntracked) return kNa;
      const bool orig = ctx.dir == ct::Dir::kOriginal;
      return Bool(orig == (t.lo == static_cast<uint32_t>(CtDirMatch::kOriginal)), neg);
    }
    case Field::kConnlimit: {
      const uint32_t count = ctx.connlimit != nullptr ? ctx.connlimit(ctx.connlimit_arg, t.hi) : 0;
      return Bool(count > t.lo, neg);
    }
    case Field::kIpset:
      return Bool(false, neg);
  }
  return kNa;
}

bool InstrMatches(const Program& prog, const Instr& in, const EvalContext& ctx,
                  int32_t* failed_test, TestResult* failed_result) {
  const Test* t = prog.tests.data() + in.first_test;
  for (uint32_t i = 0; i < in.n_tests; ++i) {
    const TestResult r = EvalTest(t[i], ctx);
    if (r != TestResult::kMatch) {
      if (failed_test != nullptr) *failed_test = static_cast<int32_t>(in.first_test + i);
      if (failed_result != nullptr) *failed_result = r;
      return false;
    }
  }
  return true;
}

namespace {

// One instruction of a layer-3 walk; true when the walk ends (terminal action).
inline bool StepL3(const Program& prog, uint32_t i, L3Chain chain, const EvalContext& ctx,
                   Trace* trace, uint64_t* counters, uint32_t bytes, MatchLog* log,
                   ChainOutcome& out) {
  const Instr& in = prog.instrs[i];
  bool m;
  if (trace != nullptr) {
    int32_t failed = -1;
    TestResult fr = TestResult::kMatch;
    m = InstrMatches(prog, in, ctx, &failed, &fr);
    trace->push_back(TraceStep{false, static_cast<uint32_t>(chain), i, m, failed, fr});
  } else {
    m = InstrMatches(prog, in, ctx);
  }
  if (log != nullptr) log->per_packet |= in.per_packet;
  if (!m) return false;
  if (counters != nullptr) {
    counters[2 * i] += 1;
    counters[2 * i + 1] += bytes;
  }
  if (log != nullptr) {
    if (log->n < MatchLog::kMax) {
      log->matched[log->n++] = static_cast<int32_t>(i);
    } else {
      log->overflow = true;
    }
  }
  if (in.action == Action::kContinue) return false;
  out.terminal = true;
  out.action = in.action;
  out.instr = static_cast<int32_t>(i);
  out.rule = in.rule;
  return true;
}

}  // namespace

ChainOutcome RunL3(const Program& prog, L3Chain chain, const EvalContext& ctx, Trace* trace,
                   uint64_t* counters, uint32_t bytes, MatchLog* log) {
  ChainOutcome out;
  const int fam = ctx.pkt->family == 6 ? 1 : 0;
  const Classifier& cls = prog.classifiers[static_cast<int>(chain)][fam];
  if (trace == nullptr && cls.built()) {
    cls.ForEachCandidate(MakeClassKey(*ctx.pkt), [&](uint32_t i) {
      return StepL3(prog, i, chain, ctx, nullptr, counters, bytes, log, out);
    });
    return out;
  }
  const ChainRange range = prog.l3[static_cast<int>(chain)][fam];
  for (uint32_t i = range.first; i < range.first + range.count; ++i) {
    if (StepL3(prog, i, chain, ctx, trace, counters, bytes, log, out)) return out;
  }
  return out;
}

ChainOutcome RunL3Linear(const Program& prog, L3Chain chain, const EvalContext& ctx) {
  ChainOutcome out;
  const ChainRange range = prog.l3[static_cast<int>(chain)][ctx.pkt->family == 6 ? 1 : 0];
  for (uint32_t i = range.first; i < range.first + range.count; ++i) {
    if (StepL3(prog, i, chain, ctx, nullptr, nullptr, 0, nullptr, out)) return out;
  }
  return out;
}

namespace {

enum class L2Result : uint8_t { kAccept, kDrop, kReturn, kFellOff };

L2Result RunL2Chain(const Program& prog, L2Dir dir, uint32_t chain, const EvalContext& ctx,
                    Trace* trace, uint64_t* counters, uint32_t bytes, int depth, int32_t& instr) {
  const auto& ranges = prog.l2[static_cast<int>(dir)];
  if (chain >= ranges.size() || depth > 8) return L2Result::kFellOff;
  const ChainRange range = ranges[chain];
  for (uint32_t i = range.first; i < range.first + range.count; ++i) {
    const Instr& in = prog.instrs[i];
    int32_t failed = -1;
    TestResult fr = TestResult::kMatch;
    const bool m = InstrMatches(prog, in, ctx, &failed, &fr);
    if (trace != nullptr) trace->push_back(TraceStep{true, chain, i, m, failed, fr});
    if (!m) continue;
    if (counters != nullptr) {
      counters[2 * i] += 1;
      counters[2 * i + 1] += bytes;
    }
    if (in.jump >= 0) {
      const L2Result sub = RunL2Chain(prog, dir, static_cast<uint32_t>(in.jump), ctx, trace,
                                      counters, bytes, depth + 1, instr);
      if (sub == L2Result::kReturn) {  // back in the calling chain
        instr = -1;
        continue;
      }
      // Falling off a sub-chain accepts the frame (b.3): ebtables user chains have policy
      // ACCEPT and libvirt sets none.
      return sub == L2Result::kFellOff ? L2Result::kAccept : sub;
    }
    switch (in.action) {
      case Action::kAccept:
        instr = static_cast<int32_t>(i);
        return L2Result::kAccept;
      case Action::kDrop:
      case Action::kReject:  // no REJECT in ebtables: libvirt emits DROP
        instr = static_cast<int32_t>(i);
        return L2Result::kDrop;
      case Action::kReturn:
        instr = static_cast<int32_t>(i);
        return L2Result::kReturn;
      case Action::kContinue:
        break;
    }
  }
  return L2Result::kFellOff;
}

}  // namespace

L2Outcome RunL2(const Program& prog, L2Dir dir, const EvalContext& ctx, Trace* trace,
                uint64_t* counters, uint32_t bytes) {
  L2Outcome out;
  int32_t instr = -1;
  const L2Result r = RunL2Chain(prog, dir, 0, ctx, trace, counters, bytes, 0, instr);
  out.dropped = r == L2Result::kDrop;
  out.instr = instr;
  if (instr >= 0) out.rule = prog.instrs[static_cast<size_t>(instr)].rule;
  return out;
}

}  // namespace nwfq::engine
