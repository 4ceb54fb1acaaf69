// Per-protocol-element attribute tables (section a.4): which attributes an element has,
// in libvirt's table order (which is also the canonical output order), and how each
// attribute's value is typed, parsed, validated and printed.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "parser/rule_types.h"

namespace nwfq {

// Value syntax of an attribute. Numeric types accept decimal, or hex (with or without
// 0x, exactly like libvirt, which tries base 10 and then base 16); hex input is
// remembered for output.
enum class AttrType : uint8_t {
  kMacAddr,
  kMacMask,  // a MAC whose bits are contiguous ones then zeros
  kIpv4Addr,
  kIpv6Addr,
  kIpv4Mask,  // prefix 0..32 or a contiguous dotted mask
  kIpv6Mask,  // prefix 0..128 or a contiguous IPv6 mask
  kUint8,
  kUint16,
  kUint32,
  kUint16Dec,      // connlimit-above: decimal only
  kDscp,           // UINT8 0..63
  kVlanId,         // UINT16 0..4095
  kEtherType,      // mac protocolid: UINT16 >= 0x600 or arp, rarp, ipv4, ipv6, vlan
  kEncapProtocol,  // vlan encap-protocol: UINT16 >= 0x3c or the same names
  kOpcode,         // arp opcode: UINT16 or Request, Reply, ...
  kIpProtocol,     // ip/ipv6 protocol: UINT8 or tcp, udp, ...
  kTcpFlags,
  kState,
  kBool,
  kIpsetName,
  kIpsetFlags,
  kComment,
};

struct AttrSpec {
  Attr attr;
  std::string_view name;  // XML attribute name
  AttrType type;
};

// The attributes of protocol element `p`, in libvirt's table order. Empty for kNone.
std::span<const AttrSpec> AttributesOf(Protocol p);
// The spec of XML attribute `name` on element `p`, or nullptr (unknown attribute).
const AttrSpec* FindAttrSpec(Protocol p, std::string_view name);
// The spec of `a` on element `p`, or nullptr.
const AttrSpec* FindAttrSpec(Protocol p, Attr a);

// Parses a concrete (non-variable) value. The error message says what is allowed,
// without the attribute name (the caller adds location and name).
absl::StatusOr<AttrValue> ParseAttrValue(AttrType type, std::string_view text);
// Prints a value in libvirt's canonical form (not XML-escaped).
std::string FormatAttrValue(AttrType type, const AttrValue& value);
// "what is allowed" for error messages.
std::string_view DescribeAttrType(AttrType type);

// The ValueKind a parsed value of `type` has.
ValueKind ValueKindOf(AttrType type);

// Well-known numbers and their names.
std::optional<std::string_view> EtherTypeName(uint32_t ethertype);
std::optional<std::string_view> IpProtocolName(uint32_t protocol);
std::optional<std::string_view> ArpOpcodeName(uint32_t opcode);

}  // namespace nwfq
