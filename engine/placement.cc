#include "engine/placement.h"

namespace nwfq::engine {
namespace {

bool IsIcmpWithType(const ConcreteRule& r) {
  return (r.protocol == Protocol::kIcmp || r.protocol == Protocol::kIcmpv6) &&
         r.Find(Attr::kType) != nullptr;
}

// True when the rule has match criteria other than srcmacaddr (the state attributes and
// the comment do not count; srcmacmask is dropped silently at layer 3, finding i.5).
bool HasCriteriaBesidesSrcMac(const ConcreteRule& r) {
  for (const AttrSlot& s : r.attrs) {
    switch (s.attr) {
      case Attr::kSrcMacAddr:
      case Attr::kSrcMacMask:
      case Attr::kComment:
      case Attr::kState:
        break;
      default:
        return true;
    }
  }
  return false;
}

}  // namespace

int L3Family(Protocol p) {
  if (IsLayer2(p)) return 0;
  return IsIpv6Layer3(p) ? 6 : 4;
}

int L3ProtoNumber(Protocol p) {
  switch (p) {
    case Protocol::kTcp:
    case Protocol::kTcpIpv6:
      return 6;
    case Protocol::kUdp:
    case Protocol::kUdpIpv6:
      return 17;
    case Protocol::kUdplite:
    case Protocol::kUdpliteIpv6:
      return 136;
    case Protocol::kSctp:
    case Protocol::kSctpIpv6:
      return 132;
    case Protocol::kEsp:
    case Protocol::kEspIpv6:
      return 50;
    case Protocol::kAh:
    case Protocol::kAhIpv6:
      return 51;
    case Protocol::kIcmp:
      return 1;
    case Protocol::kIgmp:
      return 2;
    case Protocol::kIcmpv6:
      return 58;
    default:
      return -1;  // all, all-ipv6
  }
}

bool IsTerminal(Action a) { return a != Action::kContinue; }

L3Placement PlaceL3(const ConcreteRule& r, L3Chain chain) {
  L3Placement p;
  const bool out = r.direction == Direction::kOut;
  const bool inout = r.direction == Direction::kInOut;
  // c.2: FO sees the reverse of an `out` rule; FI/HI the reverse of `in`/`inout`.
  p.swapped = chain == L3Chain::kFO ? out : !out;

  const bool icmp_type = IsIcmpWithType(r);
  const AttrSlot* connlimit = r.Find(Attr::kConnlimitAbove);
  const AttrSlot* state = r.statematch ? r.Find(Attr::kState) : nullptr;

  // c.2 exceptions: ICMP with a type only in the rule's own direction (never for inout);
  // connlimit only in non-swapped chains.
  if (icmp_type && (inout || p.swapped)) return p;
  if (connlimit != nullptr && p.swapped) return p;

  // srcmacaddr only in non-swapped instances; the swapped one disappears if srcmacaddr was
  // the rule's only criterion (finding i.6).
  const bool has_srcmac = r.Find(Attr::kSrcMacAddr) != nullptr;
  if (has_srcmac && p.swapped && !HasCriteriaBesidesSrcMac(r)) return p;
  p.with_srcmac = has_srcmac && !p.swapped;

  if (connlimit != nullptr) {
    // d.4: never a state/ctdir match.
    p.connlimit = true;
    p.present = true;
    return p;
  }
  if (!r.statematch) {  // d.2: no state, all three chains.
    p.present = true;
    return p;
  }
  const bool none = state != nullptr && (state->value.number & kStateNone) != 0;
  if (state != nullptr) {
    // d.3: explicit state: own direction only for in/out, all three for inout; the listed
    // states for every action, no --ctdir; NONE = the placement without a state match --
    // also for ICMP with a type (real libvirt 9.0: `in` icmpv6 type 135 state NONE gives
    // `FO -p ipv6-icmp --icmpv6-type 135 -j ACCEPT`; tests/oracle case ipv6).
    if (!inout && p.swapped) return p;
    p.present = true;
    if (!none) {
      p.states =
          state->value.number & (kStateNew | kStateEstablished | kStateRelated | kStateInvalid);
      p.states_negated = state->negated;
    }
    return p;
  }
  // d.1: default. Only accept rules with direction in/out get state matches.
  p.present = true;
  if (r.action != Action::kAccept || inout) return p;
  if (icmp_type) {
    // ICMP with a type: --ctstate NEW,ESTABLISHED without --ctdir.
    p.states = kStateNew | kStateEstablished;
    return p;
  }
  if (!p.swapped) {
    p.states = kStateNew | kStateEstablished;
    p.ctdir = CtDirMatch::kOriginal;
  } else {
    p.states = kStateEstablished;
    p.ctdir = CtDirMatch::kReply;
  }
  return p;
}

L2Placement PlaceL2(const ConcreteRule& r, L2Dir dir) {
  L2Placement p;
  switch (r.direction) {
    case Direction::kOut:
      p.present = dir == L2Dir::kI;
      break;
    case Direction::kIn:
      p.present = dir == L2Dir::kO;
      break;
    case Direction::kInOut:
      // b.3: inout attributes are read from the `in` point of view: swapped in the
      // from-VM chain.
      p.present = true;
      p.swapped = dir == L2Dir::kI;
      break;
  }
  return p;
}

}  // namespace nwfq::engine
