// Name tables of the rule vocabulary (rule_types.h).
#include "parser/rule_types.h"

#include <array>

namespace nwfq {
namespace {

constexpr std::array<std::string_view, kProtocolCount> kProtocolNames = {
    "",         "mac",     "vlan",     "stp",      "arp",      "rarp",         "ip",
    "ipv6",     "tcp",     "udp",      "udplite",  "sctp",     "esp",          "ah",
    "icmp",     "igmp",    "all",      "tcp-ipv6", "udp-ipv6", "udplite-ipv6", "sctp-ipv6",
    "esp-ipv6", "ah-ipv6", "all-ipv6", "icmpv6",
};

constexpr std::array<std::string_view, kAttrCount> kAttrNames = {
    "srcmacaddr",
    "srcmacmask",
    "dstmacaddr",
    "dstmacmask",
    "protocolid",
    "vlanid",
    "encap-protocol",
    "flags",
    "root-priority",
    "root-priority-hi",
    "root-address",
    "root-address-mask",
    "root-cost",
    "root-cost-hi",
    "sender-priority",
    "sender-priority-hi",
    "sender-address",
    "sender-address-mask",
    "port",
    "port-hi",
    "age",
    "age-hi",
    "max-age",
    "max-age-hi",
    "hello-time",
    "hello-time-hi",
    "forward-delay",
    "forward-delay-hi",
    "hwtype",
    "protocoltype",
    "opcode",
    "arpsrcmacaddr",
    "arpdstmacaddr",
    "arpsrcipaddr",
    "arpsrcipmask",
    "arpdstipaddr",
    "arpdstipmask",
    "gratuitous",
    "srcipaddr",
    "srcipmask",
    "dstipaddr",
    "dstipmask",
    "srcipfrom",
    "srcipto",
    "dstipfrom",
    "dstipto",
    "protocol",
    "srcportstart",
    "srcportend",
    "dstportstart",
    "dstportend",
    "dscp",
    "type",
    "typeend",
    "code",
    "codeend",
    "option",
    "flags",
    "state",
    "connlimit-above",
    "ipset",
    "ipsetflags",
    "comment",
};

}  // namespace

std::string_view ProtocolName(Protocol p) { return kProtocolNames[static_cast<int>(p)]; }

std::optional<Protocol> ProtocolFromName(std::string_view name) {
  for (int i = 1; i < kProtocolCount; ++i)
    if (kProtocolNames[i] == name) return static_cast<Protocol>(i);
  return std::nullopt;
}

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kAccept:
      return "accept";
    case Action::kDrop:
      return "drop";
    case Action::kReject:
      return "reject";
    case Action::kReturn:
      return "return";
    case Action::kContinue:
      return "continue";
  }
  return "?";
}

std::string_view DirectionName(Direction d) {
  switch (d) {
    case Direction::kIn:
      return "in";
    case Direction::kOut:
      return "out";
    case Direction::kInOut:
      return "inout";
  }
  return "?";
}

std::string_view AttrName(Attr a) { return kAttrNames[static_cast<int>(a)]; }

}  // namespace nwfq
