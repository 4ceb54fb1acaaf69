// Attribute tables and value syntax of the protocol elements (section a.4). The tables
// follow libvirt's own (src/conf/nwfilter_conf.c) in content and order, since that order
// is the canonical output order.
#include "parser/attr_table.h"

#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "parser/strutil.h"

namespace nwfq {
namespace {

using T = AttrType;

#define MAC4                                                                                      \
  {Attr::kSrcMacAddr, "srcmacaddr", T::kMacAddr}, {Attr::kSrcMacMask, "srcmacmask", T::kMacMask}, \
      {Attr::kDstMacAddr, "dstmacaddr", T::kMacAddr}, {                                           \
    Attr::kDstMacMask, "dstmacmask", T::kMacMask                                                  \
  }
#define PORTS                                              \
  {Attr::kSrcPortStart, "srcportstart", T::kUint16},       \
      {Attr::kSrcPortEnd, "srcportend", T::kUint16},       \
      {Attr::kDstPortStart, "dstportstart", T::kUint16}, { \
    Attr::kDstPortEnd, "dstportend", T::kUint16            \
  }
// libvirt quirk kept: dstipto is typed IPv4 even in the -ipv6 elements.
#define L3(ADDR, MASK)                                                                   \
  {Attr::kSrcMacAddr, "srcmacaddr", T::kMacAddr}, {Attr::kSrcIpAddr, "srcipaddr", ADDR}, \
      {Attr::kSrcIpMask, "srcipmask", MASK}, {Attr::kDstIpAddr, "dstipaddr", ADDR},      \
      {Attr::kDstIpMask, "dstipmask", MASK}, {Attr::kSrcIpFrom, "srcipfrom", ADDR},      \
      {Attr::kSrcIpTo, "srcipto", ADDR}, {Attr::kDstIpFrom, "dstipfrom", ADDR},          \
      {Attr::kDstIpTo, "dstipto", T::kIpv4Addr}, {Attr::kDscp, "dscp", T::kDscp},        \
      {Attr::kConnlimitAbove, "connlimit-above", T::kUint16Dec},                         \
      {Attr::kState, "state", T::kState}, {Attr::kIpset, "ipset", T::kIpsetName}, {      \
    Attr::kIpsetFlags, "ipsetflags", T::kIpsetFlags                                      \
  }
#define COMMENT \
  { Attr::kComment, "comment", T::kComment }
#define L3V4 L3(T::kIpv4Addr, T::kIpv4Mask)
#define L3V6 L3(T::kIpv6Addr, T::kIpv6Mask)

constexpr AttrSpec kMacAttrs[] = {MAC4, {Attr::kProtocolId, "protocolid", T::kEtherType}, COMMENT};
constexpr AttrSpec kVlanAttrs[] = {MAC4,
                                   {Attr::kVlanId, "vlanid", T::kVlanId},
                                   {Attr::kEncapProtocol, "encap-protocol", T::kEncapProtocol},
                                   COMMENT};
constexpr AttrSpec kStpAttrs[] = {{Attr::kSrcMacAddr, "srcmacaddr", T::kMacAddr},
                                  {Attr::kSrcMacMask, "srcmacmask", T::kMacMask},
                                  {Attr::kType, "type", T::kUint8},
                                  {Attr::kStpFlags, "flags", T::kUint8},
                                  {Attr::kRootPriority, "root-priority", T::kUint16},
                                  {Attr::kRootPriorityHi, "root-priority-hi", T::kUint16},
                                  {Attr::kRootAddress, "root-address", T::kMacAddr},
                                  {Attr::kRootAddressMask, "root-address-mask", T::kMacMask},
                                  {Attr::kRootCost, "root-cost", T::kUint32},
                                  {Attr::kRootCostHi, "root-cost-hi", T::kUint32},
                                  {Attr::kSenderPriority, "sender-priority", T::kUint16},
                                  {Attr::kSenderPriorityHi, "sender-priority-hi", T::kUint16},
                                  {Attr::kSenderAddress, "sender-address", T::kMacAddr},
                                  {Attr::kSenderAddressMask, "sender-address-mask", T::kMacMask},
                                  {Attr::kPort, "port", T::kUint16},
                                  {Attr::kPortHi, "port-hi", T::kUint16},
                                  {Attr::kAge, "age", T::kUint16},
                                  {Attr::kAgeHi, "age-hi", T::kUint16},
                                  {Attr::kMaxAge, "max-age", T::kUint16},
                                  {Attr::kMaxAgeHi, "max-age-hi", T::kUint16},
                                  {Attr::kHelloTime, "hello-time", T::kUint16},
                                  {Attr::kHelloTimeHi, "hello-time-hi", T::kUint16},
                                  {Attr::kForwardDelay, "forward-delay", T::kUint16},
                                  {Attr::kForwardDelayHi, "forward-delay-hi", T::kUint16},
                                  COMMENT};
constexpr AttrSpec kArpAttrs[] = {MAC4,
                                  {Attr::kHwType, "hwtype", T::kUint16},
                                  {Attr::kProtocolType, "protocoltype", T::kUint16},
                                  {Attr::kOpcode, "opcode", T::kOpcode},
                                  {Attr::kArpSrcMacAddr, "arpsrcmacaddr", T::kMacAddr},
                                  {Attr::kArpDstMacAddr, "arpdstmacaddr", T::kMacAddr},
                                  {Attr::kArpSrcIpAddr, "arpsrcipaddr", T::kIpv4Addr},
                                  {Attr::kArpSrcIpMask, "arpsrcipmask", T::kIpv4Mask},
                                  {Attr::kArpDstIpAddr, "arpdstipaddr", T::kIpv4Addr},
                                  {Attr::kArpDstIpMask, "arpdstipmask", T::kIpv4Mask},
                                  {Attr::kGratuitous, "gratuitous", T::kBool},
                                  COMMENT};
constexpr AttrSpec kIpAttrs[] = {MAC4,
                                 {Attr::kSrcIpAddr, "srcipaddr", T::kIpv4Addr},
                                 {Attr::kSrcIpMask, "srcipmask", T::kIpv4Mask},
                                 {Attr::kDstIpAddr, "dstipaddr", T::kIpv4Addr},
                                 {Attr::kDstIpMask, "dstipmask", T::kIpv4Mask},
                                 {Attr::kProtocol, "protocol", T::kIpProtocol},
                                 PORTS,
                                 {Attr::kDscp, "dscp", T::kDscp},
                                 COMMENT};
constexpr AttrSpec kIpv6Attrs[] = {MAC4,
                                   {Attr::kSrcIpAddr, "srcipaddr", T::kIpv6Addr},
                                   {Attr::kSrcIpMask, "srcipmask", T::kIpv6Mask},
                                   {Attr::kDstIpAddr, "dstipaddr", T::kIpv6Addr},
                                   {Attr::kDstIpMask, "dstipmask", T::kIpv6Mask},
                                   {Attr::kProtocol, "protocol", T::kIpProtocol},
                                   PORTS,
                                   {Attr::kType, "type", T::kUint8},
                                   {Attr::kTypeEnd, "typeend", T::kUint8},
                                   {Attr::kCode, "code", T::kUint8},
                                   {Attr::kCodeEnd, "codeend", T::kUint8},
                                   COMMENT};
constexpr AttrSpec kTcpAttrs[] = {L3V4,
                                  PORTS,
                                  {Attr::kOption, "option", T::kUint8},
                                  {Attr::kTcpFlags, "flags", T::kTcpFlags},
                                  COMMENT};
constexpr AttrSpec kUdpAttrs[] = {L3V4, PORTS, COMMENT};
constexpr AttrSpec kPlainV4Attrs[] = {L3V4, COMMENT};
constexpr AttrSpec kIcmpAttrs[] = {
    L3V4, {Attr::kType, "type", T::kUint8}, {Attr::kCode, "code", T::kUint8}, COMMENT};
constexpr AttrSpec kTcpV6Attrs[] = {L3V6, PORTS, {Attr::kOption, "option", T::kUint8}, COMMENT};
constexpr AttrSpec kUdpV6Attrs[] = {L3V6, PORTS, COMMENT};
constexpr AttrSpec kPlainV6Attrs[] = {L3V6, COMMENT};
constexpr AttrSpec kIcmpV6Attrs[] = {
    L3V6, {Attr::kType, "type", T::kUint8}, {Attr::kCode, "code", T::kUint8}, COMMENT};

#undef MAC4
#undef PORTS
#undef L3
#undef L3V4
#undef L3V6
#undef COMMENT

struct NamedNumber {
  uint32_t number;
  std::string_view name;
};
constexpr NamedNumber kEtherTypes[] = {
    {0x0806, "arp"}, {0x8035, "rarp"}, {0x0800, "ipv4"}, {0x86dd, "ipv6"}, {0x8100, "vlan"}};
constexpr NamedNumber kIpProtocols[] = {{6, "tcp"},  {17, "udp"},   {136, "udplite"},
                                        {50, "esp"}, {51, "ah"},    {1, "icmp"},
                                        {2, "igmp"}, {132, "sctp"}, {58, "icmpv6"}};
constexpr NamedNumber kArpOpcodes[] = {
    {1, "Request"},       {2, "Reply"},         {3, "Request_Reverse"},
    {4, "Reply_Reverse"}, {5, "DRARP_Request"}, {6, "DRARP_Reply"},
    {7, "DRARP_Error"},   {8, "InARP_Request"}, {9, "ARP_NAK"}};
// TCP flag names in libvirt's print order (bit order).
constexpr NamedNumber kTcpFlagNames[] = {{0x01, "FIN"}, {0x02, "SYN"}, {0x04, "RST"},
                                         {0x08, "PSH"}, {0x10, "ACK"}, {0x20, "URG"}};
constexpr NamedNumber kStateNames[] = {{kStateNew, "NEW"},
                                       {kStateEstablished, "ESTABLISHED"},
                                       {kStateRelated, "RELATED"},
                                       {kStateInvalid, "INVALID"},
                                       {kStateNone, "NONE"}};

template <size_t N>
std::optional<std::string_view> NameOf(const NamedNumber (&table)[N], uint32_t n) {
  for (const NamedNumber& e : table)
    if (e.number == n) return e.name;
  return std::nullopt;
}
template <size_t N>
std::optional<uint32_t> NumberOf(const NamedNumber (&table)[N], std::string_view s,
                                 bool ignore_case) {
  for (const NamedNumber& e : table)
    if (ignore_case ? str::EqualsIgnoreCase(e.name, s) : e.name == s) return e.number;
  return std::nullopt;
}

bool AllOf(std::string_view s, bool (*pred)(unsigned char)) {
  if (s.empty()) return false;
  for (char c : s)
    if (!pred(static_cast<unsigned char>(c))) return false;
  return true;
}
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(unsigned char c) { return absl::ascii_isxdigit(c); }

// libvirt's number syntax: base 10 first, then base 16 (which, like strtoul, accepts an
// optional 0x prefix). `max` bounds both attempts.
std::optional<AttrValue> ParseNumber(std::string_view s, uint64_t max, bool allow_hex) {
  AttrValue v;
  v.kind = ValueKind::kUint;
  if (AllOf(s, IsDigit) && s.size() <= 10) {
    uint64_t n = 0;
    for (char c : s) n = n * 10 + static_cast<uint64_t>(c - '0');
    if (n <= max) {
      v.number = static_cast<uint32_t>(n);
      return v;
    }
  }
  if (!allow_hex) return std::nullopt;
  std::string_view h = s;
  if (h.size() > 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X')) h.remove_prefix(2);
  if (!AllOf(h, IsHexDigit) || h.size() > 8) return std::nullopt;
  uint64_t n = 0;
  for (char c : h) {
    n = n * 16 +
        static_cast<uint64_t>(absl::ascii_isdigit(static_cast<unsigned char>(c))
                                  ? c - '0'
                                  : absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10);
  }
  if (n > max) return std::nullopt;
  v.number = static_cast<uint32_t>(n);
  v.hex = true;
  return v;
}

std::optional<std::array<uint8_t, 6>> ParseMac(std::string_view s) {
  std::vector<std::string_view> parts = str::Split(s, ':');
  if (parts.size() != 6) return std::nullopt;
  std::array<uint8_t, 6> mac{};
  for (int i = 0; i < 6; ++i) {
    std::string_view p = parts[i];
    if (p.empty() || p.size() > 2 || !AllOf(p, IsHexDigit)) return std::nullopt;
    uint32_t n = 0;
    std::from_chars(p.data(), p.data() + p.size(), n, 16);
    mac[i] = static_cast<uint8_t>(n);
  }
  return mac;
}

// Prefix length of a contiguous mask of `len` bytes, or -1.
int ContiguousPrefix(const uint8_t* bytes, int len) {
  int prefix = 0;
  int i = 0;
  for (; i < len && bytes[i] == 0xff; ++i) prefix += 8;
  if (i < len) {
    uint8_t b = bytes[i];
    while (b & 0x80) {
      ++prefix;
      b = static_cast<uint8_t>(b << 1);
    }
    if (b != 0) return -1;
    for (++i; i < len; ++i)
      if (bytes[i] != 0) return -1;
  }
  return prefix;
}

bool ParseIp(std::string_view s, int family, uint8_t* out) {
  if (s.empty() || s.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  return inet_pton(family, buf, out) == 1;
}

std::string FormatIp(int family, const uint8_t* bytes) {
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(family, bytes, buf, sizeof(buf)) == nullptr) return "?";
  return buf;
}

// Comma list of names from `table` (case-insensitive) OR-ed together. NONE is 0 for
// TCP flags. An empty string is 0 (libvirt accepts `PSH/`).
std::optional<uint32_t> ParseTcpFlagList(std::string_view s) {
  if (s.empty()) return 0u;
  uint32_t bits = 0;
  for (std::string_view item : str::Split(s, ',')) {
    if (str::EqualsIgnoreCase(item, "ALL")) {
      bits |= 0x3f;
    } else if (str::EqualsIgnoreCase(item, "NONE")) {
    } else if (auto n = NumberOf(kTcpFlagNames, item, true)) {
      bits |= *n;
    } else {
      return std::nullopt;
    }
  }
  return bits;
}

std::string FormatTcpFlagList(uint32_t bits) {
  if (bits == 0) return "NONE";
  if (bits == 0x3f) return "ALL";
  std::vector<std::string_view> names;
  for (const NamedNumber& e : kTcpFlagNames)
    if (bits & e.number) names.push_back(e.name);
  return str::Join(names, ",");
}

absl::Status Invalid(AttrType type) {
  return absl::InvalidArgumentError(std::string(DescribeAttrType(type)));
}

}  // namespace

std::span<const AttrSpec> AttributesOf(Protocol p) {
  switch (p) {
    case Protocol::kNone:
      return {};
    case Protocol::kMac:
      return kMacAttrs;
    case Protocol::kVlan:
      return kVlanAttrs;
    case Protocol::kStp:
      return kStpAttrs;
    case Protocol::kArp:
    case Protocol::kRarp:
      return kArpAttrs;
    case Protocol::kIp:
      return kIpAttrs;
    case Protocol::kIpv6:
      return kIpv6Attrs;
    case Protocol::kTcp:
      return kTcpAttrs;
    case Protocol::kUdp:
    case Protocol::kSctp:
      return kUdpAttrs;
    case Protocol::kUdplite:
    case Protocol::kEsp:
    case Protocol::kAh:
    case Protocol::kIgmp:
    case Protocol::kAll:
      return kPlainV4Attrs;
    case Protocol::kIcmp:
      return kIcmpAttrs;
    case Protocol::kTcpIpv6:
      return kTcpV6Attrs;
    case Protocol::kUdpIpv6:
    case Protocol::kSctpIpv6:
      return kUdpV6Attrs;
    case Protocol::kUdpliteIpv6:
    case Protocol::kEspIpv6:
    case Protocol::kAhIpv6:
    case Protocol::kAllIpv6:
      return kPlainV6Attrs;
    case Protocol::kIcmpv6:
      return kIcmpV6Attrs;
  }
  return {};
}

const AttrSpec* FindAttrSpec(Protocol p, std::string_view name) {
  for (const AttrSpec& s : AttributesOf(p))
    if (s.name == name) return &s;
  return nullptr;
}

const AttrSpec* FindAttrSpec(Protocol p, Attr a) {
  for (const AttrSpec& s : AttributesOf(p))
    if (s.attr == a) return &s;
  return nullptr;
}

ValueKind ValueKindOf(AttrType type) {
  switch (type) {
    case T::kMacAddr:
      return ValueKind::kMac;
    case T::kMacMask:
      return ValueKind::kMacMask;
    case T::kIpv4Addr:
      return ValueKind::kIpv4;
    case T::kIpv6Addr:
      return ValueKind::kIpv6;
    case T::kIpv4Mask:
    case T::kIpv6Mask:
      return ValueKind::kPrefix;
    case T::kTcpFlags:
      return ValueKind::kTcpFlags;
    case T::kState:
      return ValueKind::kStateSet;
    case T::kBool:
      return ValueKind::kBool;
    case T::kIpsetName:
    case T::kComment:
      return ValueKind::kString;
    case T::kIpsetFlags:
      return ValueKind::kIpsetFlags;
    default:
      return ValueKind::kUint;
  }
}

std::string_view DescribeAttrType(AttrType type) {
  switch (type) {
    case T::kMacAddr:
      return "not a MAC address (allowed: six ':'-separated groups of 1-2 hex digits)";
    case T::kMacMask:
      return "not a MAC mask (allowed: a MAC address of contiguous one bits, e.g. "
             "ff:ff:ff:00:00:00)";
    case T::kIpv4Addr:
      return "not an IPv4 address (allowed: dotted quad, e.g. 10.0.0.1)";
    case T::kIpv6Addr:
      return "not an IPv6 address (allowed: RFC 4291 text form, e.g. 2001:db8::1)";
    case T::kIpv4Mask:
      return "not an IPv4 mask (allowed: prefix length 0..32 or a contiguous dotted mask)";
    case T::kIpv6Mask:
      return "not an IPv6 mask (allowed: prefix length 0..128 or a contiguous IPv6 mask)";
    case T::kUint8:
      return "not an 8-bit number (allowed: 0..255, decimal or hex)";
    case T::kUint16:
      return "not a 16-bit number (allowed: 0..65535, decimal or hex)";
    case T::kUint32:
      return "not a 32-bit number (allowed: 0..4294967295, decimal or hex)";
    case T::kUint16Dec:
      return "not a decimal 16-bit number (allowed: 0..65535, decimal only)";
    case T::kDscp:
      return "not a DSCP value (allowed: 0..63, decimal or hex)";
    case T::kVlanId:
      return "not a VLAN id (allowed: 0..4095, decimal or hex)";
    case T::kEtherType:
      return "not an ethertype (allowed: a number 0x600..0xffff, or arp, rarp, ipv4, ipv6, "
             "vlan)";
    case T::kEncapProtocol:
      return "not an ethertype (allowed: a number 0x3c..0xffff, or arp, rarp, ipv4, ipv6, "
             "vlan)";
    case T::kOpcode:
      return "not an ARP opcode (allowed: 0..65535 or Request, Reply, Request_Reverse, "
             "Reply_Reverse, DRARP_Request, DRARP_Reply, DRARP_Error, InARP_Request, "
             "ARP_NAK)";
    case T::kIpProtocol:
      return "not an IP protocol (allowed: 0..255 or tcp, udp, udplite, esp, ah, icmp, igmp, "
             "sctp, icmpv6)";
    case T::kTcpFlags:
      return "not TCP flags (allowed: MASK/SET, each a comma list of SYN, ACK, URG, PSH, FIN, "
             "RST, ALL, NONE)";
    case T::kState:
      return "not a connection state list (allowed: comma list of NEW, ESTABLISHED, RELATED, "
             "INVALID, NONE)";
    case T::kBool:
      return "not a boolean";
    case T::kIpsetName:
      return "not an ipset name (allowed: 1..31 characters of A-Z a-z 0-9 _ . : + - and "
             "space)";
    case T::kIpsetFlags:
      return "not ipset flags (allowed: comma list of 1..6 'src'/'dst')";
    case T::kComment:
      return "not a comment";
  }
  return "invalid";
}

absl::StatusOr<AttrValue> ParseAttrValue(AttrType type, std::string_view s) {
  AttrValue v;
  v.kind = ValueKindOf(type);
  switch (type) {
    case T::kMacAddr:
    case T::kMacMask: {
      auto mac = ParseMac(s);
      if (!mac) return Invalid(type);
      if (type == T::kMacMask && ContiguousPrefix(mac->data(), 6) < 0) return Invalid(type);
      std::copy(mac->begin(), mac->end(), v.bytes.begin());
      return v;
    }
    case T::kIpv4Addr:
      if (!ParseIp(s, AF_INET, v.bytes.data())) return Invalid(type);
      return v;
    case T::kIpv6Addr:
      if (!ParseIp(s, AF_INET6, v.bytes.data())) return Invalid(type);
      return v;
    case T::kIpv4Mask:
    case T::kIpv6Mask: {
      const bool v6 = type == T::kIpv6Mask;
      const uint32_t max = v6 ? 128 : 32;
      if (AllOf(s, IsDigit)) {
        std::optional<uint32_t> n = str::ParseInt<uint32_t>(s);
        if (!n || *n > max) return Invalid(type);
        v.number = *n;
        return v;
      }
      uint8_t bytes[16];
      if (!ParseIp(s, v6 ? AF_INET6 : AF_INET, bytes)) return Invalid(type);
      int prefix = ContiguousPrefix(bytes, v6 ? 16 : 4);
      if (prefix < 0) return Invalid(type);
      v.number = static_cast<uint32_t>(prefix);
      return v;
    }
    case T::kUint8:
    case T::kUint16:
    case T::kUint32:
    case T::kUint16Dec:
    case T::kDscp:
    case T::kVlanId: {
      uint64_t max = type == T::kUint8 || type == T::kDscp ? 0xff
                     : type == T::kUint32                  ? 0xffffffffu
                                                           : 0xffff;
      auto n = ParseNumber(s, max, type != T::kUint16Dec);
      if (!n) return Invalid(type);
      if (type == T::kDscp && n->number > 63) return Invalid(type);
      if (type == T::kVlanId && n->number > 4095) return Invalid(type);
      return *n;
    }
    case T::kEtherType:
    case T::kEncapProtocol: {
      if (auto n = ParseNumber(s, 0xffff, true)) {
        if (n->number < (type == T::kEtherType ? 0x600u : 0x3cu)) return Invalid(type);
        return *n;
      }
      auto named = NumberOf(kEtherTypes, s, false);
      if (!named) return Invalid(type);
      v.number = *named;
      return v;
    }
    case T::kOpcode: {
      if (auto n = ParseNumber(s, 0xffff, true)) return *n;
      auto named = NumberOf(kArpOpcodes, s, true);
      if (!named) return Invalid(type);
      v.number = *named;
      return v;
    }
    case T::kIpProtocol: {
      if (auto n = ParseNumber(s, 0xff, true)) return *n;
      auto named = NumberOf(kIpProtocols, s, false);
      if (!named) return Invalid(type);
      v.number = *named;
      return v;
    }
    case T::kTcpFlags: {
      size_t slash = s.find('/');
      if (slash == std::string_view::npos) return Invalid(type);
      auto mask = ParseTcpFlagList(s.substr(0, slash));
      auto set = ParseTcpFlagList(s.substr(slash + 1));
      if (!mask || !set) return Invalid(type);
      v.number = (*mask << 8) | *set;
      return v;
    }
    case T::kState: {
      uint32_t bits = 0;
      for (std::string_view item : str::Split(s, ',')) {
        auto n = NumberOf(kStateNames, item, true);
        if (!n) return Invalid(type);
        bits |= *n;
      }
      if (bits & kStateNone) bits = kStateNone;
      v.number = bits;
      return v;
    }
    case T::kBool:
      v.number = (s == "true" || s == "1" || s == "yes") ? 1 : 0;
      return v;
    case T::kIpsetName: {
      if (s.empty() || s.size() > 31) return Invalid(type);
      for (char c : s) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
            std::strchr("_.:+ -", c) == nullptr)
          return Invalid(type);
      }
      v.text = std::string(s);
      return v;
    }
    case T::kIpsetFlags: {
      std::vector<std::string_view> items = str::Split(s, ',');
      if (items.empty() || items.size() > 6) return Invalid(type);
      uint32_t bits = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        if (str::EqualsIgnoreCase(items[i], "dst")) {
          bits |= 1u << i;
        } else if (!str::EqualsIgnoreCase(items[i], "src")) {
          return Invalid(type);
        }
      }
      v.number = (static_cast<uint32_t>(items.size()) << 8) | bits;
      return v;
    }
    case T::kComment:
      // libvirt truncates comments to 256 characters.
      v.text = std::string(s.substr(0, 256));
      return v;
  }
  return Invalid(type);
}

std::string FormatAttrValue(AttrType type, const AttrValue& v) {
  auto number = [&] { return v.hex ? absl::StrFormat("0x%x", v.number) : str::Cat(v.number); };
  switch (type) {
    case T::kMacAddr:
    case T::kMacMask:
      return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", v.bytes[0], v.bytes[1], v.bytes[2],
                             v.bytes[3], v.bytes[4], v.bytes[5]);
    case T::kIpv4Addr:
      return FormatIp(AF_INET, v.bytes.data());
    case T::kIpv6Addr:
      return FormatIp(AF_INET6, v.bytes.data());
    case T::kIpv4Mask:
    case T::kIpv6Mask:
      return str::Cat(v.number);
    case T::kEtherType:
    case T::kEncapProtocol:
      if (auto n = NameOf(kEtherTypes, v.number)) return std::string(*n);
      return number();
    case T::kOpcode:
      if (auto n = NameOf(kArpOpcodes, v.number)) return std::string(*n);
      return number();
    case T::kIpProtocol:
      if (auto n = NameOf(kIpProtocols, v.number)) return std::string(*n);
      return number();
    case T::kTcpFlags:
      return str::Cat(FormatTcpFlagList(v.number >> 8), "/", FormatTcpFlagList(v.number & 0xff));
    case T::kState: {
      std::vector<std::string_view> names;
      for (const NamedNumber& e : kStateNames)
        if (v.number & e.number) names.push_back(e.name);
      return str::Join(names, ",");
    }
    case T::kBool:
      return v.number ? "true" : "false";
    case T::kIpsetFlags: {
      uint32_t count = v.number >> 8;
      std::vector<std::string_view> names;
      for (uint32_t i = 0; i < count; ++i) names.push_back((v.number >> i) & 1 ? "dst" : "src");
      return str::Join(names, ",");
    }
    case T::kIpsetName:
    case T::kComment:
      return v.text;
    default:
      return number();
  }
}

std::optional<std::string_view> EtherTypeName(uint32_t n) { return NameOf(kEtherTypes, n); }
std::optional<std::string_view> IpProtocolName(uint32_t n) { return NameOf(kIpProtocols, n); }
std::optional<std::string_view> ArpOpcodeName(uint32_t n) { return NameOf(kArpOpcodes, n); }

}  // namespace nwfq
