// Builders for ConcreteRule / InstantiatedBinding values in engine tests (no XML needed).
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "parser/instantiated.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine::testutil {

inline AttrSlot U(Attr a, uint32_t v, bool neg = false) {
  AttrSlot s{a, neg, {}};
  s.value.kind = ValueKind::kUint;
  s.value.number = v;
  return s;
}
inline AttrSlot Prefix(Attr a, uint32_t bits, bool neg = false) {
  AttrSlot s = U(a, bits, neg);
  s.value.kind = ValueKind::kPrefix;
  return s;
}
inline AttrSlot Ip(Attr a, const std::string& addr, bool neg = false) {
  AttrSlot s{a, neg, {}};
  const bool v6 = addr.find(':') != std::string::npos;
  s.value.kind = v6 ? ValueKind::kIpv6 : ValueKind::kIpv4;
  if (inet_pton(v6 ? AF_INET6 : AF_INET, addr.c_str(), s.value.bytes.data()) != 1) std::abort();
  return s;
}
inline AttrSlot MacAttr(Attr a, const std::string& mac, bool neg = false) {
  AttrSlot s{a, neg, {}};
  s.value.kind = ValueKind::kMac;
  const auto m = nwfq::testing::ParseMac(mac);
  std::copy(m.begin(), m.end(), s.value.bytes.begin());
  return s;
}
inline AttrSlot States(uint32_t bits, bool neg = false) {
  AttrSlot s = U(Attr::kState, bits, neg);
  s.value.kind = ValueKind::kStateSet;
  return s;
}
inline AttrSlot Flags(uint8_t mask, uint8_t set, bool neg = false) {
  AttrSlot s = U(Attr::kTcpFlags, uint32_t{mask} << 8 | set, neg);
  s.value.kind = ValueKind::kTcpFlags;
  return s;
}

inline ConcreteRule Rule(Action action, Direction dir, Protocol proto,
                         std::vector<AttrSlot> attrs = {}, int priority = 500,
                         bool statematch = true) {
  ConcreteRule r;
  r.action = action;
  r.direction = dir;
  r.protocol = proto;
  r.priority = priority;
  r.statematch = statematch;
  std::sort(attrs.begin(), attrs.end(),
            [](const AttrSlot& a, const AttrSlot& b) { return a.attr < b.attr; });
  r.attrs = std::move(attrs);
  r.origin.filter = "test";
  return r;
}

// A binding of root-filter rules: L3 order and the L2 root chain by stable priority sort;
// rule i gets origin line i + 1.
inline InstantiatedBinding Bind(std::vector<ConcreteRule> rules) {
  InstantiatedBinding b;
  b.portdev = "vnet0";
  b.mac = nwfq::testing::kVmMac;
  b.top_filter = "test";
  for (size_t i = 0; i < rules.size(); ++i) rules[i].origin.line = static_cast<int>(i + 1);
  b.rules = std::move(rules);
  std::vector<uint32_t> idx(b.rules.size());
  for (uint32_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](uint32_t x, uint32_t y) {
    return b.rules[x].priority < b.rules[y].priority;
  });
  L2Chain root;
  root.name = "root";
  for (uint32_t i : idx) {
    if (IsLayer2(b.rules[i].protocol)) {
      root.entries.push_back({L2Entry::Kind::kRule, i});
    } else {
      b.l3_order.push_back(i);
    }
  }
  b.l2_chains.push_back(std::move(root));
  return b;
}

}  // namespace nwfq::engine::testutil
