#include "engine/explain.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parser/rule_types.h"

namespace nwfq::engine {
namespace {

std::string Mac(const std::array<uint8_t, 16>& a) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5]);
}

std::string MacMask(const Test& t) {
  bool full = true;
  for (int i = 0; i < 6; ++i) full = full && t.b[i] == 0xff;
  if (full) return Mac(t.a);
  return absl::StrCat(Mac(t.a), "/", Mac(t.b));
}

std::string Ip(const std::array<uint8_t, 16>& a, int family) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 6 ? AF_INET6 : AF_INET, a.data(), buf, sizeof(buf));
  return buf;
}

std::string Rng(uint32_t lo, uint32_t hi) {
  return lo == hi ? absl::StrCat(lo) : absl::StrCat(lo, ":", hi);
}

std::string States(uint32_t s) {
  std::string out;
  auto add = [&](uint32_t bit, const char* name) {
    if (s & bit) absl::StrAppend(&out, out.empty() ? "" : ",", name);
  };
  add(kStateNew, "NEW");
  add(kStateEstablished, "ESTABLISHED");
  add(kStateRelated, "RELATED");
  add(kStateInvalid, "INVALID");
  return out;
}

std::string Flags(uint32_t f) {
  static constexpr const char* kNames[] = {"FIN", "SYN", "RST", "PSH", "ACK", "URG"};
  std::string out;
  for (int i = 0; i < 6; ++i)
    if (f & (1u << i)) absl::StrAppend(&out, out.empty() ? "" : ",", kNames[i]);
  return out.empty() ? "NONE" : out;
}

}  // namespace

std::string DescribeTest(const Test& t) {
  std::string body;
  switch (t.field) {
    case Field::kEtherType:
      body = absl::StrFormat("-p 0x%04x", t.lo);
      break;
    case Field::kSrcMac:
      body = "-s " + MacMask(t);
      break;
    case Field::kDstMac:
      body = "-d " + MacMask(t);
      break;
    case Field::kVlanId:
      body = absl::StrCat("--vlan-id ", t.lo);
      break;
    case Field::kVlanEncap:
      body = absl::StrFormat("--vlan-encap 0x%04x", t.lo);
      break;
    case Field::kStpBpdu:
      body = "(STP BPDU)";
      break;
    case Field::kStpType:
      body = absl::StrCat("--stp-type ", t.lo);
      break;
    case Field::kStpFlags:
      body = absl::StrCat("--stp-flags ", t.lo);
      break;
    case Field::kStpRootPrio:
      body = "--stp-root-prio " + Rng(t.lo, t.hi);
      break;
    case Field::kStpRootAddr:
      body = "--stp-root-addr " + MacMask(t);
      break;
    case Field::kStpRootCost:
      body = "--stp-root-cost " + Rng(t.lo, t.hi);
      break;
    case Field::kStpSenderPrio:
      body = "--stp-sender-prio " + Rng(t.lo, t.hi);
      break;
    case Field::kStpSenderAddr:
      body = "--stp-sender-addr " + MacMask(t);
      break;
    case Field::kStpPort:
      body = "--stp-port " + Rng(t.lo, t.hi);
      break;
    case Field::kStpAge:
      body = "--stp-msg-age " + Rng(t.lo, t.hi);
      break;
    case Field::kStpMaxAge:
      body = "--stp-max-age " + Rng(t.lo, t.hi);
      break;
    case Field::kStpHelloTime:
      body = "--stp-hello-time " + Rng(t.lo, t.hi);
      break;
    case Field::kStpForwardDelay:
      body = "--stp-forward-delay " + Rng(t.lo, t.hi);
      break;
    case Field::kArpHwType:
      body = absl::StrCat("--arp-htype ", t.lo);
      break;
    case Field::kArpProtoType:
      body = absl::StrFormat("--arp-ptype 0x%04x", t.lo);
      break;
    case Field::kArpOpcode:
      body = absl::StrCat("--arp-op ", t.lo);
      break;
    case Field::kArpSrcMac:
      body = "--arp-mac-src " + MacMask(t);
      break;
    case Field::kArpDstMac:
      body = "--arp-mac-dst " + MacMask(t);
      break;
    case Field::kArpSrcIp:
      body = absl::StrCat("--arp-ip-src ", Ip(t.a, 4), "/", t.prefix);
      break;
    case Field::kArpDstIp:
      body = absl::StrCat("--arp-ip-dst ", Ip(t.a, 4), "/", t.prefix);
      break;
    case Field::kArpGratuitous:
      body = "--arp-gratuitous";
      break;
    case Field::kL2IpSrc:
      body = absl::StrCat(t.family == 6 ? "--ip6-source " : "--ip-source ", Ip(t.a, t.family), "/",
                          t.prefix);
      break;
    case Field::kL2IpDst:
      body = absl::StrCat(t.family == 6 ? "--ip6-destination " : "--ip-destination ",
                          Ip(t.a, t.family), "/", t.prefix);
      break;
    case Field::kL2IpProto:
      body = absl::StrCat("--ip-protocol ", t.lo);
      break;
    case Field::kL2Sport:
      body = "--ip-source-port " + Rng(t.lo, t.hi);
      break;
    case Field::kL2Dport:
      body = "--ip-destination-port " + Rng(t.lo, t.hi);
      break;
    case Field::kL2Tos:
      body = absl::StrFormat("--ip-tos 0x%02x", t.lo);
      break;
    case Field::kL2Icmp6:
      body = absl::StrCat("--ip6-icmp-type ", Rng(t.lo, t.hi), "/", Rng(t.lo2, t.hi2));
      break;
    case Field::kL4Proto:
      body = absl::StrCat("-p ", t.lo);
      break;
    case Field::kIpSrc:
      body = absl::StrCat("--source ", Ip(t.a, t.family), "/", t.prefix);
      break;
    case Field::kIpDst:
      body = absl::StrCat("--destination ", Ip(t.a, t.family), "/", t.prefix);
      break;
    case Field::kIpSrcRange:
      body = absl::StrCat("--src-range ", Ip(t.a, t.family), "-", Ip(t.b, t.family));
      break;
    case Field::kIpDstRange:
      body = absl::StrCat("--dst-range ", Ip(t.a, t.family), "-", Ip(t.b, t.family));
      break;
    case Field::kSport:
      body = "--sport " + Rng(t.lo, t.hi);
      break;
    case Field::kDport:
      body = "--dport " + Rng(t.lo, t.hi);
      break;
    case Field::kDscp:
      body = absl::StrCat("--dscp ", t.lo);
      break;
    case Field::kIcmpType:
      body = absl::StrCat("--icmp-type ", t.lo);
      if (t.lo2 == t.hi2) absl::StrAppend(&body, "/", t.lo2);
      break;
    case Field::kTcpFlags:
      body = absl::StrCat("--tcp-flags ", Flags(t.lo), " ", Flags(t.hi));
      break;
    case Field::kTcpOption:
      body = absl::StrCat("--tcp-option ", t.lo);
      break;
    case Field::kMacSource:
      body = "--mac-source " + MacMask(t);
      break;
    case Field::kCtState:
      body = "--ctstate " + States(t.lo);
      break;
    case Field::kCtDir:
      body = t.lo == static_cast<uint32_t>(CtDirMatch::kOriginal) ? "--ctdir ORIGINAL"
                                                                  : "--ctdir REPLY";
      break;
    case Field::kConnlimit:
      body = absl::StrCat("--connlimit-above ", t.lo);
      break;
    case Field::kIpset:
      body = "-m set (unsupported: empty set)";
      break;
  }
  return t.negated ? "! " + body : body;
}

std::string DescribeInstr(const Program& prog, const Instr& in) {
  std::string out;
  for (uint32_t i = 0; i < in.n_tests; ++i) {
    absl::StrAppend(&out, i ? " " : "", DescribeTest(prog.tests[in.first_test + i]));
  }
  if (out.empty()) out = "(any)";
  if (in.jump >= 0) return absl::StrCat(out, " -> jump chain ", in.jump);
  return absl::StrCat(out, " -> ", std::string(ActionName(in.action)),
                      in.swapped ? " (swapped)" : "");
}

std::string RuleLabel(const Program& prog, uint32_t rule) {
  if (rule >= prog.origins.size()) return "-";
  return absl::StrCat(prog.origins[rule].filter, ":", prog.origins[rule].line);
}

std::string FormatTrace(const Program& prog, const Trace& trace) {
  static constexpr const char* kL3Names[] = {"FI", "FO", "HI"};
  std::string out;
  for (const TraceStep& s : trace) {
    const Instr& in = prog.instrs[s.instr];
    std::string chain = s.layer2 ? absl::StrCat("L2 chain ", s.chain) : kL3Names[s.chain];
    std::string who = in.jump >= 0 ? "jump" : RuleLabel(prog, in.rule);
    std::string why;
    if (s.matched) {
      why = "matched";
    } else if (s.failed_test >= 0) {
      why = absl::StrCat(s.failed_result == TestResult::kNotApplicable ? "n/a: " : "no: ",
                         DescribeTest(prog.tests[static_cast<size_t>(s.failed_test)]));
    }
    absl::StrAppend(&out, "  ", chain, " ", who, " [", DescribeInstr(prog, in), "] ", why, "\n");
  }
  return out;
}

}  // namespace nwfq::engine
