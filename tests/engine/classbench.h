// ClassBench rule sets and traces (../shared/classbench, FORMAT.md) as nwfilter rules and
// packet headers, for the classifier test and the engine benchmark.
//
// Mapping (FORMAT.md section 4): one `out` rule per line, all with the same priority (the
// stable sort keeps line order = ClassBench priority), action accept, statematch='false'
// (no conntrack match: ClassBench semantics are the plain 5-tuple). tcp/udp/icmp/`all` as
// the protocol; GRE (0x2f) has no layer-3 element, so GRE lines are left out, which only
// changes the result of GRE headers (a GRE rule matches nothing else): callers skip those.
// An `out` rule in the from-VM chain (FI) reads src/dst as the packet does.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "parser/instantiated.h"
#include "tests/engine/rule_helpers.h"

namespace nwfq::engine::classbench {

struct CbRule {
  uint32_t src = 0, dst = 0;  // host order
  int src_len = 0, dst_len = 0;
  uint16_t sp_lo = 0, sp_hi = 65535, dp_lo = 0, dp_hi = 65535;
  uint8_t proto = 0;
  bool any_proto = true;
};

struct CbHeader {
  uint32_t src = 0, dst = 0;  // host order
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
  int64_t id = 0;  // last column as written (hs1: 1-based first match)
};

inline bool ParsePrefix(const std::string& s, uint32_t& addr, int& len) {
  const size_t slash = s.find('/');
  if (slash == std::string::npos) return false;
  in_addr a{};
  if (inet_pton(AF_INET, s.substr(0, slash).c_str(), &a) != 1) return false;
  len = std::stoi(s.substr(slash + 1));
  if (len < 0 || len > 32) return false;
  addr = ntohl(a.s_addr);
  if (len < 32) addr &= len == 0 ? 0 : ~0u << (32 - len);
  return true;
}

// Empty on a missing or malformed file.
inline std::vector<CbRule> LoadRules(const std::string& path) {
  std::vector<CbRule> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<std::string> tok;
    for (std::string t; ss >> t;) tok.push_back(t);
    if (tok.size() < 9 || tok[0].empty() || tok[0][0] != '@' || tok[3] != ":" || tok[6] != ":")
      return {};
    CbRule r;
    if (!ParsePrefix(tok[0].substr(1), r.src, r.src_len) ||
        !ParsePrefix(tok[1], r.dst, r.dst_len)) {
      return {};
    }
    r.sp_lo = static_cast<uint16_t>(std::stoul(tok[2]));
    r.sp_hi = static_cast<uint16_t>(std::stoul(tok[4]));
    r.dp_lo = static_cast<uint16_t>(std::stoul(tok[5]));
    r.dp_hi = static_cast<uint16_t>(std::stoul(tok[7]));
    const size_t slash = tok[8].find('/');
    if (slash == std::string::npos) return {};
    r.proto = static_cast<uint8_t>(std::stoul(tok[8].substr(0, slash), nullptr, 0));
    r.any_proto = std::stoul(tok[8].substr(slash + 1), nullptr, 0) == 0;
    out.push_back(r);
  }
  return out;
}

inline std::vector<CbHeader> LoadTrace(const std::string& path) {
  std::vector<CbHeader> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<int64_t> v;
    for (int64_t x; ss >> x;) v.push_back(x);
    if (v.size() < 6) return {};
    CbHeader h;
    h.src = static_cast<uint32_t>(v[0]);
    h.dst = static_cast<uint32_t>(v[1]);
    h.sport = static_cast<uint16_t>(v[2]);
    h.dport = static_cast<uint16_t>(v[3]);
    h.proto = static_cast<uint8_t>(v[4]);
    h.id = v.back();
    out.push_back(h);
  }
  return out;
}

inline std::string Dotted(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

inline AttrSlot Addr(Attr a, uint32_t host_order) {
  AttrSlot s{a, false, {}};
  s.value.kind = ValueKind::kIpv4;
  const uint32_t be = htonl(host_order);
  std::memcpy(s.value.bytes.data(), &be, 4);
  return s;
}

// The binding of a rule set; `line_of[i]` = 0-based line of binding rule i.
inline InstantiatedBinding ToBinding(const std::vector<CbRule>& rules, std::vector<int>* line_of) {
  std::vector<ConcreteRule> out;
  line_of->clear();
  for (size_t i = 0; i < rules.size(); ++i) {
    const CbRule& r = rules[i];
    Protocol p;
    if (r.any_proto) {
      p = Protocol::kAll;
    } else if (r.proto == 6) {
      p = Protocol::kTcp;
    } else if (r.proto == 17) {
      p = Protocol::kUdp;
    } else if (r.proto == 1) {
      p = Protocol::kIcmp;
    } else if (r.proto == 50) {
      p = Protocol::kEsp;
    } else if (r.proto == 51) {
      p = Protocol::kAh;
    } else {
      continue;  // GRE and others: no layer-3 element
    }
    std::vector<AttrSlot> a;
    if (r.src_len > 0) {
      a.push_back(Addr(Attr::kSrcIpAddr, r.src));
      a.push_back(testutil::Prefix(Attr::kSrcIpMask, static_cast<uint32_t>(r.src_len)));
    }
    if (r.dst_len > 0) {
      a.push_back(Addr(Attr::kDstIpAddr, r.dst));
      a.push_back(testutil::Prefix(Attr::kDstIpMask, static_cast<uint32_t>(r.dst_len)));
    }
    if (p == Protocol::kTcp || p == Protocol::kUdp) {
      if (r.sp_lo != 0 || r.sp_hi != 65535) {
        a.push_back(testutil::U(Attr::kSrcPortStart, r.sp_lo));
        a.push_back(testutil::U(Attr::kSrcPortEnd, r.sp_hi));
      }
      if (r.dp_lo != 0 || r.dp_hi != 65535) {
        a.push_back(testutil::U(Attr::kDstPortStart, r.dp_lo));
        a.push_back(testutil::U(Attr::kDstPortEnd, r.dp_hi));
      }
    }
    out.push_back(testutil::Rule(Action::kAccept, Direction::kOut, p, a, 500, false));
    line_of->push_back(static_cast<int>(i));
  }
  return testutil::Bind(std::move(out));
}

inline bool Mappable(uint8_t proto) { return proto != 47; }

}  // namespace nwfq::engine::classbench
