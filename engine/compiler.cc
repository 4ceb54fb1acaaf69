#include "engine/compiler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/placement.h"

namespace nwfq::engine {
namespace {

constexpr std::array<uint8_t, 6> kStpMac = {0x01, 0x80, 0xc2, 0x00, 0x00, 0x00};

class Builder {
 public:
  explicit Builder(Program& prog) : prog_(prog) {}

  void Begin(uint32_t rule, Action action, bool swapped) {
    cur_ = Instr{};
    cur_.rule = rule;
    cur_.action = action;
    cur_.swapped = swapped;
    cur_.first_test = static_cast<uint32_t>(prog_.tests.size());
  }
  void Add(const Test& t) {
    prog_.tests.push_back(t);
    if (t.field == Field::kTcpFlags || t.field == Field::kTcpOption ||
        t.field == Field::kConnlimit) {
      cur_.per_packet = true;
    }
  }
  void End() {
    cur_.n_tests = static_cast<uint32_t>(prog_.tests.size()) - cur_.first_test;
    prog_.instrs.push_back(cur_);
  }

 private:
  Program& prog_;
  Instr cur_;
};

Test Num(Field f, uint32_t lo, bool neg = false) {
  Test t;
  t.field = f;
  t.lo = lo;
  t.hi = lo;
  t.negated = neg;
  return t;
}

Test Range(Field f, uint32_t lo, uint32_t hi, bool neg) {
  Test t;
  t.field = f;
  t.lo = lo;
  t.hi = hi;
  t.negated = neg;
  return t;
}

// A [start, end] range from a start attribute and an optional end attribute (the end
// alone means nothing, as in libvirt).
bool RangeOf(const ConcreteRule& r, Attr start, Attr end, uint32_t& lo, uint32_t& hi, bool& neg) {
  const AttrSlot* s = r.Find(start);
  if (s == nullptr) return false;
  lo = s->value.number;
  neg = s->negated;
  const AttrSlot* e = r.Find(end);
  hi = e != nullptr ? e->value.number : lo;
  return true;
}

// An address test: `addr` (kIpv4/kIpv6) with an optional prefix from `mask`.
bool AddrTest(const ConcreteRule& r, Attr addr, Attr mask, Field f, int family, Test& t) {
  const AttrSlot* a = r.Find(addr);
  if (a == nullptr) return false;
  t = Test{};
  t.field = f;
  t.negated = a->negated;
  t.family = static_cast<uint8_t>(family);
  t.a = a->value.bytes;
  const AttrSlot* m = r.Find(mask);
  t.prefix = static_cast<uint8_t>(m != nullptr ? m->value.number : (family == 4 ? 32 : 128));
  return true;
}

// A MAC test with an optional mask (all ones when absent).
bool MacTest(const ConcreteRule& r, Attr addr, Attr mask, Field f, Test& t) {
  const AttrSlot* a = r.Find(addr);
  if (a == nullptr) return false;
  t = Test{};
  t.field = f;
  t.negated = a->negated;
  std::copy_n(a->value.bytes.begin(), 6, t.a.begin());
  const AttrSlot* m = mask == Attr::kComment ? nullptr : r.Find(mask);
  if (m != nullptr) {
    std::copy_n(m->value.bytes.begin(), 6, t.b.begin());
  } else {
    std::fill_n(t.b.begin(), 6, 0xff);
  }
  return true;
}

void EmitL3Tests(const ConcreteRule& r, const L3Placement& pl, uint32_t limiter, Builder& b) {
  const int family = L3Family(r.protocol);
  const int proto = L3ProtoNumber(r.protocol);
  if (proto >= 0) b.Add(Num(Field::kL4Proto, static_cast<uint32_t>(proto)));
  Test t;
  if (pl.with_srcmac && MacTest(r, Attr::kSrcMacAddr, Attr::kComment, Field::kMacSource, t))
    b.Add(t);
  const Field src = pl.swapped ? Field::kIpDst : Field::kIpSrc;
  const Field dst = pl.swapped ? Field::kIpSrc : Field::kIpDst;
  if (AddrTest(r, Attr::kSrcIpAddr, Attr::kSrcIpMask, src, family, t)) b.Add(t);
  if (AddrTest(r, Attr::kDstIpAddr, Attr::kDstIpMask, dst, family, t)) b.Add(t);
  auto range = [&](Attr from, Attr to, Field f) {
    const AttrSlot* a = r.Find(from);
    if (a == nullptr) return;
    Test rt;
    rt.field = f;
    rt.negated = a->negated;
    rt.family = static_cast<uint8_t>(family);
    rt.a = a->value.bytes;
    const AttrSlot* e = r.Find(to);
    rt.b = e != nullptr ? e->value.bytes : a->value.bytes;
    b.Add(rt);
  };
  range(Attr::kSrcIpFrom, Attr::kSrcIpTo, pl.swapped ? Field::kIpDstRange : Field::kIpSrcRange);
  range(Attr::kDstIpFrom, Attr::kDstIpTo, pl.swapped ? Field::kIpSrcRange : Field::kIpDstRange);
  if (const AttrSlot* d = r.Find(Attr::kDscp))
    b.Add(Num(Field::kDscp, d->value.number, d->negated));
  uint32_t lo, hi;
  bool neg;
  if (RangeOf(r, Attr::kSrcPortStart, Attr::kSrcPortEnd, lo, hi, neg))
    b.Add(Range(pl.swapped ? Field::kDport : Field::kSport, lo, hi, neg));
  if (RangeOf(r, Attr::kDstPortStart, Attr::kDstPortEnd, lo, hi, neg))
    b.Add(Range(pl.swapped ? Field::kSport : Field::kDport, lo, hi, neg));
  if (const AttrSlot* f = r.Find(Attr::kTcpFlags)) {
    b.Add(
        Range(Field::kTcpFlags, (f->value.number >> 8) & 0x3f, f->value.number & 0x3f, f->negated));
  }
  if (const AttrSlot* o = r.Find(Attr::kOption))
    b.Add(Num(Field::kTcpOption, o->value.number, o->negated));
  if (r.protocol == Protocol::kIcmp || r.protocol == Protocol::kIcmpv6) {
    if (const AttrSlot* ty = r.Find(Attr::kType)) {
      Test it = Num(Field::kIcmpType, ty->value.number, ty->negated);
      const AttrSlot* c = r.Find(Attr::kCode);
      it.lo2 = c != nullptr ? c->value.number : 0;
      it.hi2 = c != nullptr ? c->value.number : 255;
      b.Add(it);
    }
  }
  if (pl.states != 0) b.Add(Num(Field::kCtState, pl.states, pl.states_negated));
  if (pl.ctdir != CtDirMatch::kAny) b.Add(Num(Field::kCtDir, static_cast<uint32_t>(pl.ctdir)));
  if (const AttrSlot* s = r.Find(Attr::kIpset)) {
    Test st = Num(Field::kIpset, 0, s->negated);
    b.Add(st);
  }
  if (pl.connlimit) {
    const AttrSlot* c = r.Find(Attr::kConnlimitAbove);
    Test ct = Range(Field::kConnlimit, c->value.number, limiter, c->negated);
    b.Add(ct);
  }
}

// What a layer-2 protocol element, or the prefix of a sub-chain's name, requires of a frame
// before anything else: an ethertype (ebtables -p) or, for STP, the BPDU destination MAC
// (-d 01:80:c2:00:00:00). An element and the chain prefix of the same name guard alike (b.3).
struct FrameGuard {
  uint16_t ethertype = 0;  // 0 = none
  bool stp = false;
};

FrameGuard GuardOf(Protocol p) {
  switch (p) {
    case Protocol::kArp:
      return {.ethertype = 0x0806};
    case Protocol::kRarp:
      return {.ethertype = 0x8035};
    case Protocol::kIp:
      return {.ethertype = 0x0800};
    case Protocol::kIpv6:
      return {.ethertype = 0x86dd};
    case Protocol::kVlan:
      return {.ethertype = 0x8100};
    case Protocol::kStp:
      return {.stp = true};
    default:
      return {};
  }
}

FrameGuard GuardOf(ChainKind kind) {
  switch (kind) {
    case ChainKind::kIpv4:
      return GuardOf(Protocol::kIp);
    case ChainKind::kIpv6:
      return GuardOf(Protocol::kIpv6);
    case ChainKind::kArp:
      return GuardOf(Protocol::kArp);
    case ChainKind::kRarp:
      return GuardOf(Protocol::kRarp);
    case ChainKind::kVlan:
      return GuardOf(Protocol::kVlan);
    case ChainKind::kStp:
      return GuardOf(Protocol::kStp);
    case ChainKind::kMac:
    case ChainKind::kRoot:
      return {};
  }
  return {};
}

void EmitFrameGuard(const FrameGuard& g, Builder& b) {
  if (g.ethertype != 0) b.Add(Num(Field::kEtherType, g.ethertype));
  if (g.stp) {
    Test t;
    t.field = Field::kDstMac;
    std::copy(kStpMac.begin(), kStpMac.end(), t.a.begin());
    std::fill_n(t.b.begin(), 6, 0xff);
    b.Add(t);
  }
}

void EmitStpRange(const ConcreteRule& r, Attr lo_attr, Attr hi_attr, Field f, Builder& b) {
  uint32_t lo, hi;
  bool neg;
  if (RangeOf(r, lo_attr, hi_attr, lo, hi, neg)) b.Add(Range(f, lo, hi, neg));
}

void EmitL2Tests(const ConcreteRule& r, bool swapped, Builder& b) {
  Test t;
  if (r.protocol == Protocol::kMac) {
    if (const AttrSlot* p = r.Find(Attr::kProtocolId))
      b.Add(Num(Field::kEtherType, p->value.number, p->negated));
  } else {
    EmitFrameGuard(GuardOf(r.protocol), b);
  }
  const Field smac = swapped ? Field::kDstMac : Field::kSrcMac;
  const Field dmac = swapped ? Field::kSrcMac : Field::kDstMac;
  if (MacTest(r, Attr::kSrcMacAddr, Attr::kSrcMacMask, smac, t)) b.Add(t);
  if (r.protocol != Protocol::kStp && MacTest(r, Attr::kDstMacAddr, Attr::kDstMacMask, dmac, t))
    b.Add(t);
  uint32_t lo, hi;
  bool neg;
  switch (r.protocol) {
    case Protocol::kVlan:
      if (const AttrSlot* v = r.Find(Attr::kVlanId))
        b.Add(Num(Field::kVlanId, v->value.number, v->negated));
      if (const AttrSlot* e = r.Find(Attr::kEncapProtocol))
        b.Add(Num(Field::kVlanEncap, e->value.number, e->negated));
      break;
    case Protocol::kStp: {
      Test g;
      g.field = Field::kStpBpdu;
      b.Add(g);
      if (const AttrSlot* ty = r.Find(Attr::kType))
        b.Add(Num(Field::kStpType, ty->value.number, ty->negated));
      if (const AttrSlot* fl = r.Find(Attr::kStpFlags))
        b.Add(Num(Field::kStpFlags, fl->value.number, fl->negated));
      EmitStpRange(r, Attr::kRootPriority, Attr::kRootPriorityHi, Field::kStpRootPrio, b);
      if (MacTest(r, Attr::kRootAddress, Attr::kRootAddressMask, Field::kStpRootAddr, t)) b.Add(t);
      EmitStpRange(r, Attr::kRootCost, Attr::kRootCostHi, Field::kStpRootCost, b);
      EmitStpRange(r, Attr::kSenderPriority, Attr::kSenderPriorityHi, Field::kStpSenderPrio, b);
      if (MacTest(r, Attr::kSenderAddress, Attr::kSenderAddressMask, Field::kStpSenderAddr, t))
        b.Add(t);
      EmitStpRange(r, Attr::kPort, Attr::kPortHi, Field::kStpPort, b);
      EmitStpRange(r, Attr::kAge, Attr::kAgeHi, Field::kStpAge, b);
      EmitStpRange(r, Attr::kMaxAge, Attr::kMaxAgeHi, Field::kStpMaxAge, b);
      EmitStpRange(r, Attr::kHelloTime, Attr::kHelloTimeHi, Field::kStpHelloTime, b);
      EmitStpRange(r, Attr::kForwardDelay, Attr::kForwardDelayHi, Field::kStpForwardDelay, b);
      break;
    }
    case Protocol::kArp:
    case Protocol::kRarp: {
      if (const AttrSlot* a = r.Find(Attr::kHwType))
        b.Add(Num(Field::kArpHwType, a->value.number, a->negated));
      if (const AttrSlot* a = r.Find(Attr::kProtocolType))
        b.Add(Num(Field::kArpProtoType, a->value.number, a->negated));
      if (const AttrSlot* a = r.Find(Attr::kOpcode))
        b.Add(Num(Field::kArpOpcode, a->value.number, a->negated));
      const Field sm = swapped ? Field::kArpDstMac : Field::kArpSrcMac;
      const Field dm = swapped ? Field::kArpSrcMac : Field::kArpDstMac;
      if (MacTest(r, Attr::kArpSrcMacAddr, Attr::kComment, sm, t)) b.Add(t);
      if (MacTest(r, Attr::kArpDstMacAddr, Attr::kComment, dm, t)) b.Add(t);
      const Field si = swapped ? Field::kArpDstIp : Field::kArpSrcIp;
      const Field di = swapped ? Field::kArpSrcIp : Field::kArpDstIp;
      if (AddrTest(r, Attr::kArpSrcIpAddr, Attr::kArpSrcIpMask, si, 4, t)) b.Add(t);
      if (AddrTest(r, Attr::kArpDstIpAddr, Attr::kArpDstIpMask, di, 4, t)) b.Add(t);
      if (const AttrSlot* g = r.Find(Attr::kGratuitous); g != nullptr && g->value.number != 0)
        b.Add(Num(Field::kArpGratuitous, 1, g->negated));
      break;
    }
    case Protocol::kIp:
    case Protocol::kIpv6: {
      const int family = r.protocol == Protocol::kIp ? 4 : 6;
      const Field si = swapped ? Field::kL2IpDst : Field::kL2IpSrc;
      const Field di = swapped ? Field::kL2IpSrc : Field::kL2IpDst;
      if (AddrTest(r, Attr::kSrcIpAddr, Attr::kSrcIpMask, si, family, t)) b.Add(t);
      if (AddrTest(r, Attr::kDstIpAddr, Attr::kDstIpMask, di, family, t)) b.Add(t);
      if (const AttrSlot* p = r.Find(Attr::kProtocol))
        b.Add(Num(Field::kL2IpProto, p->value.number, p->negated));
      if (RangeOf(r, Attr::kSrcPortStart, Attr::kSrcPortEnd, lo, hi, neg))
        b.Add(Range(swapped ? Field::kL2Dport : Field::kL2Sport, lo, hi, neg));
      if (RangeOf(r, Attr::kDstPortStart, Attr::kDstPortEnd, lo, hi, neg))
        b.Add(Range(swapped ? Field::kL2Sport : Field::kL2Dport, lo, hi, neg));
      if (const AttrSlot* d = r.Find(Attr::kDscp))
        b.Add(Num(Field::kL2Tos, d->value.number, d->negated));
      if (family == 6) {
        if (RangeOf(r, Attr::kType, Attr::kTypeEnd, lo, hi, neg)) {
          Test it = Range(Field::kL2Icmp6, lo, hi, neg);
          uint32_t clo = 0, chi = 255;
          bool cneg;
          RangeOf(r, Attr::kCode, Attr::kCodeEnd, clo, chi, cneg);
          it.lo2 = clo;
          it.hi2 = chi;
          b.Add(it);
        }
      }
      break;
    }
    default:
      break;
  }
}

// The guard of the root chain's jump into a sub-chain (b.3).
void EmitJumpGuard(ChainKind kind, Builder& b) { EmitFrameGuard(GuardOf(kind), b); }

}  // namespace

absl::StatusOr<std::shared_ptr<const Program>> Compile(const InstantiatedBinding& binding) {
  auto prog = std::make_shared<Program>();
  Builder b(*prog);
  prog->mac = binding.mac;
  for (const ConcreteRule& r : binding.rules) prog->origins.push_back(r.origin);

  // ---- Layer 3: l3_order per chain and family. One connlimit limiter per instance.
  for (int c = 0; c < kL3ChainCount; ++c) {
    for (int fam = 0; fam < 2; ++fam) {
      ChainRange& range = prog->l3[c][fam];
      range.first = static_cast<uint32_t>(prog->instrs.size());
      for (uint32_t idx : binding.l3_order) {
        if (idx >= binding.rules.size())
          return absl::InvalidArgumentError(absl::StrCat("l3_order index ", idx, " out of range"));
        const ConcreteRule& r = binding.rules[idx];
        const int family = L3Family(r.protocol);
        if (family == 0) {
          return absl::InvalidArgumentError(absl::StrCat(r.origin.file, ":", r.origin.line,
                                                         ": layer-2 rule in the layer-3 order"));
        }
        if ((family == 6) != (fam == 1)) continue;
        const L3Placement pl = PlaceL3(r, static_cast<L3Chain>(c));
        if (!pl.present) continue;
        b.Begin(idx, r.action, pl.swapped);
        EmitL3Tests(r, pl, pl.connlimit ? prog->connlimiters++ : 0, b);
        b.End();
      }
      range.count = static_cast<uint32_t>(prog->instrs.size()) - range.first;
    }
  }

  for (int c = 0; c < kL3ChainCount; ++c) {
    for (int fam = 0; fam < 2; ++fam) {
      prog->classifiers[c][fam] = Classifier::Build(*prog, prog->l3[c][fam], fam == 0 ? 4 : 6);
    }
  }

  // ---- Layer 2: sub-chains first so that the root knows which jumps lead anywhere (libvirt
  // creates a sub-chain, and the jump to it, only when it has a rule for that direction).
  const size_t nchains = binding.l2_chains.size();
  for (int d = 0; d < 2; ++d) {
    const L2Dir dir = static_cast<L2Dir>(d);
    auto& ranges = prog->l2[d];
    ranges.assign(nchains, ChainRange{});
    for (size_t ci = nchains; ci-- > 0;) {
      const L2Chain& chain = binding.l2_chains[ci];
      ChainRange& range = ranges[ci];
      range.first = static_cast<uint32_t>(prog->instrs.size());
      for (const L2Entry& e : chain.entries) {
        if (e.kind == L2Entry::Kind::kJump) {
          if (e.index >= nchains || e.index <= ci) {
            return absl::InvalidArgumentError(
                absl::StrCat("layer-2 chain '", chain.name, "' jumps to chain ", e.index));
          }
          if (ranges[e.index].count == 0) continue;
          b.Begin(0, Action::kContinue, false);
          EmitJumpGuard(binding.l2_chains[e.index].kind, b);
          b.End();
          prog->instrs.back().jump = static_cast<int32_t>(e.index);
          continue;
        }
        if (e.index >= binding.rules.size())
          return absl::InvalidArgumentError(
              absl::StrCat("l2 rule index ", e.index, " out of range"));
        const ConcreteRule& r = binding.rules[e.index];
        if (!IsLayer2(r.protocol)) {
          return absl::InvalidArgumentError(
              absl::StrCat(r.origin.file, ":", r.origin.line, ": layer-3 rule in a layer-2 chain"));
        }
        const L2Placement pl = PlaceL2(r, dir);
        if (!pl.present) continue;
        b.Begin(e.index, r.action, pl.swapped);
        EmitL2Tests(r, pl.swapped, b);
        b.End();
      }
      range.count = static_cast<uint32_t>(prog->instrs.size()) - range.first;
    }
  }
  return std::shared_ptr<const Program>(std::move(prog));
}

}  // namespace nwfq::engine
