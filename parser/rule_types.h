// Vocabulary of libvirt nwfilter rules shared by the parser (which produces it) and the
// engine (which compiles it): protocols (the rule's protocol element), actions,
// directions, chain kinds and attribute identifiers with their typed values.
//
// Reference: ../shared/docs/nwfilter-semantics.md sections (a) and (b).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nwfq {

// The protocol element of a rule (<tcp/>, <mac/>, ...). kNone: a rule with no protocol
// element, which libvirt treats as a layer-2 rule matching every frame.
enum class Protocol : uint8_t {
  kNone,
  // Layer 2 (ebtables in libvirt).
  kMac,
  kVlan,
  kStp,
  kArp,
  kRarp,
  kIp,
  kIpv6,
  // Layer 3/4, IPv4 (iptables).
  kTcp,
  kUdp,
  kUdplite,
  kSctp,
  kEsp,
  kAh,
  kIcmp,
  kIgmp,
  kAll,
  // Layer 3/4, IPv6 (ip6tables).
  kTcpIpv6,
  kUdpIpv6,
  kUdpliteIpv6,
  kSctpIpv6,
  kEspIpv6,
  kAhIpv6,
  kAllIpv6,
  kIcmpv6,
};
inline constexpr int kProtocolCount = static_cast<int>(Protocol::kIcmpv6) + 1;

// True for elements libvirt enforces with ebtables (including kNone).
constexpr bool IsLayer2(Protocol p) { return p <= Protocol::kIpv6; }
// True for the ip6tables elements.
constexpr bool IsIpv6Layer3(Protocol p) { return p >= Protocol::kTcpIpv6; }

enum class Action : uint8_t { kAccept, kDrop, kReject, kReturn, kContinue };

// Rule direction as written: kIn = towards the VM, kOut = leaving the VM.
enum class Direction : uint8_t { kIn, kOut, kInOut };

// What the prefix of a filter's `chain` attribute selects (section b.2). It fixes the
// default chain priority and the protocol guard of the jump from the root chain.
enum class ChainKind : uint8_t { kRoot, kStp, kMac, kVlan, kIpv4, kIpv6, kArp, kRarp };

// Every attribute of every protocol element. Attributes that share an XML name and a type
// across elements share an id (kType is the UINT8 `type` of stp, icmp, icmpv6 and ipv6);
// those whose type differs get separate ids (kStpFlags vs kTcpFlags).
enum class Attr : uint8_t {
  kSrcMacAddr,
  kSrcMacMask,
  kDstMacAddr,
  kDstMacMask,
  kProtocolId,     // mac: ethertype
  kVlanId,         // vlan
  kEncapProtocol,  // vlan: inner ethertype
  kStpFlags,
  kRootPriority,
  kRootPriorityHi,
  kRootAddress,
  kRootAddressMask,
  kRootCost,
  kRootCostHi,
  kSenderPriority,
  kSenderPriorityHi,
  kSenderAddress,
  kSenderAddressMask,
  kPort,
  kPortHi,
  kAge,
  kAgeHi,
  kMaxAge,
  kMaxAgeHi,
  kHelloTime,
  kHelloTimeHi,
  kForwardDelay,
  kForwardDelayHi,
  kHwType,        // arp/rarp
  kProtocolType,  // arp/rarp
  kOpcode,        // arp/rarp
  kArpSrcMacAddr,
  kArpDstMacAddr,
  kArpSrcIpAddr,
  kArpSrcIpMask,
  kArpDstIpAddr,
  kArpDstIpMask,
  kGratuitous,
  kSrcIpAddr,
  kSrcIpMask,
  kDstIpAddr,
  kDstIpMask,
  kSrcIpFrom,
  kSrcIpTo,
  kDstIpFrom,
  kDstIpTo,
  kProtocol,  // ip/ipv6: IP protocol number
  kSrcPortStart,
  kSrcPortEnd,
  kDstPortStart,
  kDstPortEnd,
  kDscp,
  kType,  // stp type, icmp/icmpv6 type, ipv6 icmpv6-type range start
  kTypeEnd,
  kCode,
  kCodeEnd,
  kOption,    // tcp option
  kTcpFlags,  // tcp flags MASK/SET
  kState,
  kConnlimitAbove,
  kIpset,
  kIpsetFlags,
  kComment,
};
inline constexpr int kAttrCount = static_cast<int>(Attr::kComment) + 1;

// How an attribute's value is stored once it is concrete (after variable substitution).
enum class ValueKind : uint8_t {
  kUint,       // `number`; `hex` remembers 0x input for output
  kMac,        // bytes[0..6)
  kIpv4,       // bytes[0..4), network order
  kIpv6,       // bytes[0..16), network order
  kPrefix,     // a mask, always normalised to a prefix length in `number`
  kMacMask,    // bytes[0..6), contiguous ones
  kStateSet,   // `number` = bitwise OR of StateBit
  kTcpFlags,   // `number` = mask << 8 | set, bits as in the TCP header (FIN=0x01 ... URG=0x20)
  kBool,       // `number` 0 or 1
  kIpsetFlags, // `number` = count (1..6) in bits 8..11, bit i (0..5) set = i-th flag is `dst`
  kString,     // `text` (comment, ipset name)
};

enum StateBit : uint32_t {
  kStateNew = 1u << 0,
  kStateEstablished = 1u << 1,
  kStateRelated = 1u << 2,
  kStateInvalid = 1u << 3,
  kStateNone = 1u << 4,  // `NONE`: explicit-state placement, but no state match (d.3)
};

struct AttrValue {
  ValueKind kind = ValueKind::kUint;
  bool hex = false;
  uint32_t number = 0;
  std::array<uint8_t, 16> bytes{};
  std::string text;

  friend bool operator==(const AttrValue&, const AttrValue&) = default;
};

// One attribute of a concrete rule. `negated` is the effective negation after libvirt's
// inheritance rules (section a.5: masks follow their address, range ends their start, and
// all port attributes follow srcportstart).
struct AttrSlot {
  Attr attr;
  bool negated = false;
  AttrValue value;
};

// Names as they appear in XML ("tcp", "tcp-ipv6", ...), and back. Implemented in parser/.
std::string_view ProtocolName(Protocol p);
std::optional<Protocol> ProtocolFromName(std::string_view name);
std::string_view ActionName(Action a);
std::string_view DirectionName(Direction d);
std::string_view AttrName(Attr a);

}  // namespace nwfq
