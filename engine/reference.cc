#include "engine/reference.h"

#include <cstring>

#include "engine/placement.h"

namespace nwfq::engine {
namespace {

// Tri-state of one attribute: matches, does not, or cannot be evaluated on this packet
// (fails the rule whatever the negation).
enum class M { kYes, kNo, kNa };

M Neg(bool m, const AttrSlot* s) { return (m != s->negated) ? M::kYes : M::kNo; }

bool PrefixMatch(const uint8_t* addr, const uint8_t* want, int bits) {
  for (int i = 0; i < bits; ++i) {
    const int byte = i / 8, bit = 7 - i % 8;
    if (((addr[byte] >> bit) & 1) != ((want[byte] >> bit) & 1)) return false;
  }
  return true;
}

bool MacMatch(const std::array<uint8_t, 6>& mac, const AttrSlot* a, const AttrSlot* m) {
  for (int i = 0; i < 6; ++i) {
    const uint8_t mask = m != nullptr ? m->value.bytes[i] : 0xff;
    if ((mac[i] & mask) != (a->value.bytes[i] & mask)) return false;
  }
  return true;
}

int DefaultPrefix(int family) { return family == 6 ? 128 : 32; }

// Address attribute `addr` (+ optional `mask`) against `ip`.
M Addr(const ConcreteRule& r, Attr addr, Attr mask, const std::array<uint8_t, 16>& ip, int family) {
  const AttrSlot* a = r.Find(addr);
  if (a == nullptr) return M::kYes;
  const AttrSlot* m = r.Find(mask);
  const int bits = m != nullptr ? static_cast<int>(m->value.number) : DefaultPrefix(family);
  return Neg(PrefixMatch(ip.data(), a->value.bytes.data(), bits), a);
}

M IpRange(const ConcreteRule& r, Attr from, Attr to, const std::array<uint8_t, 16>& ip,
          int family) {
  const AttrSlot* a = r.Find(from);
  if (a == nullptr) return M::kYes;
  const AttrSlot* b = r.Find(to);
  const size_t n = family == 6 ? 16 : 4;
  const auto& hi = b != nullptr ? b->value.bytes : a->value.bytes;
  const bool in = std::memcmp(a->value.bytes.data(), ip.data(), n) <= 0 &&
                  std::memcmp(ip.data(), hi.data(), n) <= 0;
  return Neg(in, a);
}

M Port(const ConcreteRule& r, Attr start, Attr end, uint16_t port, bool has) {
  const AttrSlot* a = r.Find(start);
  if (a == nullptr) return M::kYes;
  if (!has) return M::kNa;
  const AttrSlot* e = r.Find(end);
  const uint32_t hi = e != nullptr ? e->value.number : a->value.number;
  return Neg(port >= a->value.number && port <= hi, a);
}

M Eq(const ConcreteRule& r, Attr at, uint32_t value, bool has = true) {
  const AttrSlot* a = r.Find(at);
  if (a == nullptr) return M::kYes;
  if (!has) return M::kNa;
  return Neg(a->value.number == value, a);
}

bool All(std::initializer_list<M> ms) {
  for (M m : ms)
    if (m != M::kYes) return false;
  return true;
}

uint32_t StateBit(ct::State s) {
  switch (s) {
    case ct::State::kNew:
      return kStateNew;
    case ct::State::kEstablished:
      return kStateEstablished;
    case ct::State::kRelated:
      return kStateRelated;
    case ct::State::kInvalid:
      return kStateInvalid;
    default:
      return 0;
  }
}

bool MatchL3(const ConcreteRule& r, const L3Placement& pl, const PacketView& p,
             const EvalContext& ctx, uint32_t connlimit_count) {
  const int family = L3Family(r.protocol);
  const int proto = L3ProtoNumber(r.protocol);
  if (proto >= 0 && p.l4proto != proto) return false;
  // The packet's own fields as seen from the rule's point of view.
  const auto& rsrc = pl.swapped ? p.dst_ip : p.src_ip;
  const auto& rdst = pl.swapped ? p.src_ip : p.dst_ip;
  const uint16_t rsport = pl.swapped ? p.dport : p.sport;
  const uint16_t rdport = pl.swapped ? p.sport : p.dport;
  if (pl.with_srcmac) {
    const AttrSlot* m = r.Find(Attr::kSrcMacAddr);
    if (!p.has_src_mac || Neg(MacMatch(p.src_mac, m, nullptr), m) != M::kYes) return false;
  }
  if (!All({Addr(r, Attr::kSrcIpAddr, Attr::kSrcIpMask, rsrc, family),
            Addr(r, Attr::kDstIpAddr, Attr::kDstIpMask, rdst, family),
            IpRange(r, Attr::kSrcIpFrom, Attr::kSrcIpTo, rsrc, family),
            IpRange(r, Attr::kDstIpFrom, Attr::kDstIpTo, rdst, family),
            Eq(r, Attr::kDscp, p.dscp()),
            Port(r, Attr::kSrcPortStart, Attr::kSrcPortEnd, rsport, p.has_l4),
            Port(r, Attr::kDstPortStart, Attr::kDstPortEnd, rdport, p.has_l4)}))
    return false;
  if (const AttrSlot* f = r.Find(Attr::kTcpFlags)) {
    if (!p.has_l4) return false;
    const uint32_t mask = (f->value.number >> 8) & 0x3f, set = f->value.number & 0x3f;
    if (Neg((p.tcp_flags & mask) == set, f) != M::kYes) return false;
  }
  if (const AttrSlot* o = r.Find(Attr::kOption)) {
    if (!p.has_l4) return false;
    if (Neg(p.TcpOption(static_cast<uint8_t>(o->value.number)), o) != M::kYes) return false;
  }
  if (r.protocol == Protocol::kIcmp || r.protocol == Protocol::kIcmpv6) {
    if (const AttrSlot* t = r.Find(Attr::kType)) {
      if (!p.has_l4) return false;
      const AttrSlot* c = r.Find(Attr::kCode);
      const bool m =
          p.icmp_type == t->value.number && (c == nullptr || p.icmp_code == c->value.number);
      if (Neg(m, t) != M::kYes) return false;
    }
  }
  if (pl.states != 0) {
    const bool in = (StateBit(ctx.state) & pl.states) != 0;
    if (in == pl.states_negated) return false;
  }
  if (pl.ctdir != CtDirMatch::kAny) {
    if (ctx.state == ct::State::kInvalid || ctx.state == ct::State::kUntracked) return false;
    const bool orig = ctx.dir == ct::Dir::kOriginal;
    if (orig != (pl.ctdir == CtDirMatch::kOriginal)) return false;
  }
  if (const AttrSlot* s = r.Find(Attr::kIpset)) {
    if (!s->negated) return false;  // unsupported: an empty set
  }
  if (pl.connlimit) {
    const AttrSlot* c = r.Find(Attr::kConnlimitAbove);
    if (Neg(connlimit_count > c->value.number, c) != M::kYes) return false;
  }
  return true;
}

bool HasPorts(uint8_t proto) {
  return proto == 6 || proto == 17 || proto == 136 || proto == 132 || proto == 33;
}

M StpRange(const ConcreteRule& r, Attr lo, Attr hi, uint32_t v, const PacketView& p) {
  const AttrSlot* a = r.Find(lo);
  if (a == nullptr) return M::kYes;
  if (!p.stp_config) return M::kYes;
  const AttrSlot* b = r.Find(hi);
  return Neg(v >= a->value.number && v <= (b != nullptr ? b->value.number : a->value.number), a);
}

bool MatchL2(const ConcreteRule& r, bool swapped, const PacketView& p) {
  static constexpr std::array<uint8_t, 6> kStp = {0x01, 0x80, 0xc2, 0, 0, 0};
  const uint16_t et = p.outer_ethertype;
  switch (r.protocol) {
    case Protocol::kArp:
      if (et != 0x0806) return false;
      break;
    case Protocol::kRarp:
      if (et != 0x8035) return false;
      break;
    case Protocol::kIp:
      if (et != 0x0800) return false;
      break;
    case Protocol::kIpv6:
      if (et != 0x86dd) return false;
      break;
    case Protocol::kVlan:
      if (et != 0x8100) return false;
      break;
    case Protocol::kStp:
      if (p.dst_mac != kStp) return false;
      break;
    case Protocol::kMac:
      if (Eq(r, Attr::kProtocolId, et) != M::kYes) return false;
      break;
    default:
      break;
  }
  auto mac = [&](Attr a, Attr m, const std::array<uint8_t, 6>& v, bool have) -> M {
    const AttrSlot* s = r.Find(a);
    if (s == nullptr) return M::kYes;
    if (!have) return M::kNa;
    return Neg(MacMatch(v, s, m == Attr::kComment ? nullptr : r.Find(m)), s);
  };
  const auto& smac = swapped ? p.dst_mac : p.src_mac;
  const auto& dmac = swapped ? p.src_mac : p.dst_mac;
  const bool shave = swapped ? true : p.has_src_mac;
  const bool dhave = swapped ? p.has_src_mac : true;
  if (mac(Attr::kSrcMacAddr, Attr::kSrcMacMask, smac, shave) != M::kYes) return false;
  if (r.protocol != Protocol::kStp &&
      mac(Attr::kDstMacAddr, Attr::kDstMacMask, dmac, dhave) != M::kYes)
    return false;
  switch (r.protocol) {
    case Protocol::kVlan:
      return All({Eq(r, Attr::kVlanId, p.vlan_id, p.vlan_tags > 0),
                  Eq(r, Attr::kEncapProtocol, p.vlan_encap, p.vlan_tags > 0)});
    case Protocol::kStp: {
      if (!p.is_stp) return false;
      if (Eq(r, Attr::kType, p.stp_type) != M::kYes) return false;
      auto cfg = [&](Attr a, uint32_t v) { return p.stp_config ? Eq(r, a, v) : M::kYes; };
      auto cmac = [&](Attr a, Attr m, const std::array<uint8_t, 6>& v) {
        return p.stp_config ? mac(a, m, v, true) : M::kYes;
      };
      return All(
          {cfg(Attr::kStpFlags, p.stp_flags),
           StpRange(r, Attr::kRootPriority, Attr::kRootPriorityHi, p.stp_root_priority, p),
           cmac(Attr::kRootAddress, Attr::kRootAddressMask, p.stp_root_addr),
           StpRange(r, Attr::kRootCost, Attr::kRootCostHi, p.stp_root_cost, p),
           StpRange(r, Attr::kSenderPriority, Attr::kSenderPriorityHi, p.stp_sender_priority, p),
           cmac(Attr::kSenderAddress, Attr::kSenderAddressMask, p.stp_sender_addr),
           StpRange(r, Attr::kPort, Attr::kPortHi, p.stp_port, p),
           StpRange(r, Attr::kAge, Attr::kAgeHi, p.stp_age, p),
           StpRange(r, Attr::kMaxAge, Attr::kMaxAgeHi, p.stp_max_age, p),
           StpRange(r, Attr::kHelloTime, Attr::kHelloTimeHi, p.stp_hello, p),
           StpRange(r, Attr::kForwardDelay, Attr::kForwardDelayHi, p.stp_fwd_delay, p)});
    }
    case Protocol::kArp:
    case Protocol::kRarp: {
      const bool ip4 = p.arp_ipv4_eth && p.arp_ptype == 0x0800;
      auto arpip = [&](Attr a, Attr m, const std::array<uint8_t, 4>& v) -> M {
        const AttrSlot* s = r.Find(a);
        if (s == nullptr) return M::kYes;
        if (!ip4) return M::kNa;
        const AttrSlot* ms = r.Find(m);
        return Neg(PrefixMatch(v.data(), s->value.bytes.data(),
                               ms != nullptr ? static_cast<int>(ms->value.number) : 32),
                   s);
      };
      M grat = M::kYes;
      if (const AttrSlot* g = r.Find(Attr::kGratuitous); g != nullptr && g->value.number) {
        grat = ip4 ? Neg(p.arp_spa == p.arp_tpa, g) : M::kNa;
      }
      return All({Eq(r, Attr::kHwType, p.arp_hwtype, p.is_arp),
                  Eq(r, Attr::kProtocolType, p.arp_ptype, p.is_arp),
                  Eq(r, Attr::kOpcode, p.arp_opcode, p.is_arp),
                  mac(Attr::kArpSrcMacAddr, Attr::kComment, swapped ? p.arp_tha : p.arp_sha,
                      p.arp_ipv4_eth),
                  mac(Attr::kArpDstMacAddr, Attr::kComment, swapped ? p.arp_sha : p.arp_tha,
                      p.arp_ipv4_eth),
                  arpip(Attr::kArpSrcIpAddr, Attr::kArpSrcIpMask, swapped ? p.arp_tpa : p.arp_spa),
                  arpip(Attr::kArpDstIpAddr, Attr::kArpDstIpMask, swapped ? p.arp_spa : p.arp_tpa),
                  grat});
    }
    case Protocol::kIp:
    case Protocol::kIpv6: {
      const int family = r.protocol == Protocol::kIp ? 4 : 6;
      const bool ip = p.family == family && p.vlan_tags == 0;
      const bool ports = ip && p.has_l4 && HasPorts(p.l4proto);
      auto addr = [&](Attr a, Attr m, const std::array<uint8_t, 16>& v) {
        if (r.Find(a) == nullptr) return M::kYes;
        if (!ip) return M::kNa;
        return Addr(r, a, m, v, family);
      };
      M icmp = M::kYes;
      if (family == 6) {
        if (const AttrSlot* t = r.Find(Attr::kType)) {
          if (!ip || p.l4proto != kProtoIcmpv6 || !p.has_l4) {
            icmp = M::kNa;
          } else {
            const AttrSlot* te = r.Find(Attr::kTypeEnd);
            const AttrSlot* c = r.Find(Attr::kCode);
            const AttrSlot* ce = r.Find(Attr::kCodeEnd);
            const uint32_t thi = te ? te->value.number : t->value.number;
            const uint32_t clo = c ? c->value.number : 0;
            const uint32_t chi = c ? (ce ? ce->value.number : c->value.number) : 255;
            icmp = Neg(p.icmp_type >= t->value.number && p.icmp_type <= thi && p.icmp_code >= clo &&
                           p.icmp_code <= chi,
                       t);
          }
        }
      }
      return All(
          {addr(Attr::kSrcIpAddr, Attr::kSrcIpMask, swapped ? p.dst_ip : p.src_ip),
           addr(Attr::kDstIpAddr, Attr::kDstIpMask, swapped ? p.src_ip : p.dst_ip),
           Eq(r, Attr::kProtocol, p.l4proto, p.family != 0 && p.vlan_tags == 0),
           Port(r, Attr::kSrcPortStart, Attr::kSrcPortEnd, swapped ? p.dport : p.sport, ports),
           Port(r, Attr::kDstPortStart, Attr::kDstPortEnd, swapped ? p.sport : p.dport, ports),
           Eq(r, Attr::kDscp, p.tos, p.family != 0 && p.vlan_tags == 0), icmp});
    }
    default:
      return true;
  }
}

bool ChainHasRules(const InstantiatedBinding& b, uint32_t chain, L2Dir dir) {
  for (const L2Entry& e : b.l2_chains[chain].entries) {
    if (e.kind == L2Entry::Kind::kRule && PlaceL2(b.rules[e.index], dir).present) return true;
  }
  return false;
}

bool JumpGuard(ChainKind k, const PacketView& p) {
  static constexpr std::array<uint8_t, 6> kStp = {0x01, 0x80, 0xc2, 0, 0, 0};
  switch (k) {
    case ChainKind::kIpv4:
      return p.outer_ethertype == 0x0800;
    case ChainKind::kIpv6:
      return p.outer_ethertype == 0x86dd;
    case ChainKind::kArp:
      return p.outer_ethertype == 0x0806;
    case ChainKind::kRarp:
      return p.outer_ethertype == 0x8035;
    case ChainKind::kVlan:
      return p.outer_ethertype == 0x8100;
    case ChainKind::kStp:
      return p.dst_mac == kStp;
    default:
      return true;
  }
}

// 0 accept, 1 drop, 2 return, 3 fell off.
int WalkL2(const InstantiatedBinding& b, uint32_t chain, L2Dir dir, const PacketView& p,
           int32_t& rule) {
  for (const L2Entry& e : b.l2_chains[chain].entries) {
    if (e.kind == L2Entry::Kind::kJump) {
      if (!ChainHasRules(b, e.index, dir) || !JumpGuard(b.l2_chains[e.index].kind, p)) continue;
      const int sub = WalkL2(b, e.index, dir, p, rule);
      if (sub == 2) {
        rule = -1;
        continue;
      }
      return sub == 3 ? 0 : sub;
    }
    const ConcreteRule& r = b.rules[e.index];
    const L2Placement pl = PlaceL2(r, dir);
    if (!pl.present || !MatchL2(r, pl.swapped, p)) continue;
    switch (r.action) {
      case Action::kAccept:
        rule = static_cast<int32_t>(e.index);
        return 0;
      case Action::kDrop:
      case Action::kReject:
        rule = static_cast<int32_t>(e.index);
        return 1;
      case Action::kReturn:
        rule = static_cast<int32_t>(e.index);
        return 2;
      case Action::kContinue:
        break;
    }
  }
  return 3;
}

}  // namespace

RefOutcome ReferenceL3(const InstantiatedBinding& b, L3Chain chain, const PacketView& p,
                       const EvalContext& ctx, uint32_t connlimit_count) {
  RefOutcome out;
  for (uint32_t idx : b.l3_order) {
    const ConcreteRule& r = b.rules[idx];
    if (L3Family(r.protocol) != p.family) continue;
    const L3Placement pl = PlaceL3(r, chain);
    if (!pl.present || !MatchL3(r, pl, p, ctx, connlimit_count)) continue;
    if (r.action == Action::kContinue) continue;
    out.terminal = true;
    out.action = r.action;
    out.rule = static_cast<int32_t>(idx);
    return out;
  }
  return out;
}

RefOutcome ReferenceL2(const InstantiatedBinding& b, L2Dir dir, const PacketView& p) {
  RefOutcome out;
  if (b.l2_chains.empty()) return out;
  int32_t rule = -1;
  const int r = WalkL2(b, 0, dir, p, rule);
  out.terminal = r == 1;
  out.action = r == 1 ? Action::kDrop : Action::kAccept;
  out.rule = rule;
  return out;
}

}  // namespace nwfq::engine
