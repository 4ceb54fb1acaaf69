// Randomized differential test: the compiled Program (compiler + evaluator) against the
// naive reference evaluator (reference.h) on random rule sets and random packets, with
// fixed seeds so failures reproduce.
#include <gtest/gtest.h>

#include <random>

#include "engine/compiler.h"
#include "engine/evaluator.h"
#include "engine/reference.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::PacketBuilder;

class Gen {
 public:
  explicit Gen(uint32_t seed) : rng_(seed) {}
  uint32_t N(uint32_t n) { return rng_() % n; }
  bool Coin(int percent = 50) { return N(100) < static_cast<uint32_t>(percent); }

  std::string V4() {
    static const char* k[] = {"198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.1.9"};
    return k[N(4)];
  }
  std::string V6() {
    static const char* k[] = {"2001:db8::2", "2001:db8::3", "fe80::1", "2001:db8:1::9"};
    return k[N(4)];
  }
  uint16_t Port() {
    static const uint16_t k[] = {22, 53, 80, 443, 12345, 40000};
    return k[N(6)];
  }

  ConcreteRule L3Rule() {
    static const Protocol kProtos[] = {Protocol::kTcp,    Protocol::kUdp,     Protocol::kIcmp,
                                       Protocol::kAll,    Protocol::kTcpIpv6, Protocol::kUdpIpv6,
                                       Protocol::kIcmpv6, Protocol::kAllIpv6, Protocol::kSctp};
    const Protocol p = kProtos[N(9)];
    const bool v6 = IsIpv6Layer3(p);
    std::vector<AttrSlot> a;
    const bool neg = Coin(15);  // match='no' negates all attributes of the element
    if (Coin(30)) a.push_back(Ip(Attr::kSrcIpAddr, v6 ? V6() : V4(), neg));
    if (Coin(20)) a.push_back(Prefix(Attr::kSrcIpMask, v6 ? 64 : 24, neg));
    if (Coin(30)) a.push_back(Ip(Attr::kDstIpAddr, v6 ? V6() : V4(), neg));
    if (Coin(10)) {
      a.push_back(Ip(Attr::kSrcIpFrom, v6 ? "2001:db8::2" : "198.18.0.2", neg));
      a.push_back(Ip(Attr::kSrcIpTo, v6 ? "2001:db8::3" : "198.18.0.3", neg));
    }
    const bool ports = p == Protocol::kTcp || p == Protocol::kUdp || p == Protocol::kTcpIpv6 ||
                       p == Protocol::kUdpIpv6 || p == Protocol::kSctp;
    if (ports && Coin(50)) {
      const uint16_t s = Port();
      a.push_back(U(Attr::kDstPortStart, s, neg));
      if (Coin(30)) a.push_back(U(Attr::kDstPortEnd, s + N(500), neg));
    }
    if (ports && Coin(25)) a.push_back(U(Attr::kSrcPortStart, Port(), neg));
    if ((p == Protocol::kTcp || p == Protocol::kTcpIpv6) && Coin(20))
      a.push_back(Flags(0x12, Coin() ? 0x02 : 0x12, neg));
    if ((p == Protocol::kIcmp || p == Protocol::kIcmpv6) && Coin(50)) {
      a.push_back(
          U(Attr::kType, p == Protocol::kIcmp ? (Coin() ? 8 : 0) : (Coin() ? 128 : 135), neg));
      if (Coin(20)) a.push_back(U(Attr::kCode, 0, neg));
    }
    if (Coin(10)) a.push_back(U(Attr::kDscp, N(3), neg));
    if (Coin(10))
      a.push_back(
          MacAttr(Attr::kSrcMacAddr, Coin() ? "52:54:00:00:00:02" : "52:54:00:00:00:03", neg));
    if (Coin(15)) a.push_back(States(Coin(20) ? kStateNone : 1 + N(15), neg));
    if (Coin(8)) a.push_back(U(Attr::kConnlimitAbove, N(3), neg));
    static const Action kActions[] = {Action::kAccept, Action::kDrop, Action::kReject,
                                      Action::kReturn, Action::kContinue};
    static const Direction kDirs[] = {Direction::kIn, Direction::kOut, Direction::kInOut};
    return Rule(kActions[N(5)], kDirs[N(3)], p, a, static_cast<int>(N(20)) * 50, !Coin(20));
  }

  ConcreteRule L2Rule() {
    static const Protocol kProtos[] = {Protocol::kNone, Protocol::kMac, Protocol::kArp,
                                       Protocol::kIp, Protocol::kIpv6};
    const Protocol p = kProtos[N(5)];
    std::vector<AttrSlot> a;
    const bool neg = Coin(15);
    if (Coin(30))
      a.push_back(
          MacAttr(Attr::kSrcMacAddr, Coin() ? "52:54:00:00:00:02" : "52:54:00:00:00:03", neg));
    if (p == Protocol::kMac && Coin(50))
      a.push_back(U(Attr::kProtocolId, Coin() ? 0x0800 : 0x0806, neg));
    if (p == Protocol::kArp) {
      if (Coin(40)) a.push_back(U(Attr::kOpcode, 1 + N(2), neg));
      if (Coin(40)) a.push_back(Ip(Attr::kArpSrcIpAddr, V4(), neg));
    }
    if (p == Protocol::kIp || p == Protocol::kIpv6) {
      const bool v6 = p == Protocol::kIpv6;
      if (Coin(40)) a.push_back(Ip(Attr::kSrcIpAddr, v6 ? V6() : V4(), neg));
      if (Coin(40)) {
        a.push_back(U(Attr::kProtocol, Coin() ? 6 : 17, neg));
        if (Coin(50)) a.push_back(U(Attr::kDstPortStart, Port(), neg));
      }
    }
    static const Action kActions[] = {Action::kAccept, Action::kDrop, Action::kReturn,
                                      Action::kContinue, Action::kReject};
    static const Direction kDirs[] = {Direction::kIn, Direction::kOut, Direction::kInOut};
    return Rule(kActions[N(5)], kDirs[N(3)], p, a, static_cast<int>(N(20)) * 50);
  }

  std::vector<uint8_t> Frame() {
    PacketBuilder b;
    const bool from_vm = Coin();
    b.Eth(from_vm ? nwfq::testing::kVmMac : nwfq::testing::kPeerMac,
          from_vm ? nwfq::testing::kPeerMac : nwfq::testing::kVmMac);
    const uint32_t kind = N(10);
    if (kind == 0) {
      b.Arp(1 + N(2), nwfq::testing::kVmMac, V4(), {}, V4());
      return b.Build();
    }
    const bool v6 = kind >= 6;
    if (v6) {
      b.Ipv6(V6(), V6());
    } else {
      b.Ipv4(V4(), V4());
    }
    b.Tos(static_cast<uint8_t>(N(3) << 2));
    switch (N(4)) {
      case 0:
        b.Tcp(Port(), Port(), Coin() ? 0x02 : 0x12);
        break;
      case 1:
        b.Udp(Port(), Port());
        break;
      case 2:
        if (v6) {
          b.Icmpv6(Coin() ? 128 : 135, static_cast<uint8_t>(N(2)), 1, 1);
        } else {
          b.Icmp(Coin() ? 8 : 0, static_cast<uint8_t>(N(2)), 1, 1);
        }
        break;
      default:
        b.Sctp(Port(), Port());
        break;
    }
    if (!v6 && Coin(10)) b.Fragment(8, 16, false);  // a non-first fragment: no ports
    return b.Build();
  }

 private:
  std::mt19937 rng_;
};

uint32_t Fixed(void* arg, uint32_t) { return *static_cast<uint32_t*>(arg); }

class Differential : public ::testing::TestWithParam<uint32_t> {};

TEST_P(Differential, CompiledEqualsReference) {
  Gen g(GetParam());
  int compared = 0, terminal = 0;
  for (int set = 0; set < 40; ++set) {
    std::vector<ConcreteRule> rules;
    const uint32_t n = 1 + g.N(30);
    for (uint32_t i = 0; i < n; ++i) rules.push_back(g.Coin(70) ? g.L3Rule() : g.L2Rule());
    const InstantiatedBinding b = Bind(rules);
    auto prog = Compile(b);
    ASSERT_TRUE(prog.ok()) << prog.status();
    for (int k = 0; k < 60; ++k) {
      const auto frame = g.Frame();
      const PacketView v = ParseEthernet(frame, {});
      ASSERT_EQ(v.malformed, Malformed::kNone);
      EvalContext ctx{&v};
      ctx.tracked = true;
      ctx.state = static_cast<ct::State>(g.N(5));
      ctx.dir = g.Coin() ? ct::Dir::kOriginal : ct::Dir::kReply;
      uint32_t count = g.N(4);
      ctx.connlimit = &Fixed;
      ctx.connlimit_arg = &count;
      if (v.family != 0) {
        for (L3Chain c : {L3Chain::kFI, L3Chain::kFO, L3Chain::kHI}) {
          const ChainOutcome o = RunL3(**prog, c, ctx);
          const RefOutcome r = ReferenceL3(b, c, v, ctx, count);
          ASSERT_EQ(o.terminal, r.terminal)
              << "seed " << GetParam() << " set " << set << " pkt " << k;
          if (o.terminal) {
            ASSERT_EQ(static_cast<int32_t>(o.rule), r.rule);
            ++terminal;
          }
          ++compared;
        }
      }
      for (L2Dir d : {L2Dir::kI, L2Dir::kO}) {
        const L2Outcome o = RunL2(**prog, d, ctx);
        const RefOutcome r = ReferenceL2(b, d, v);
        ASSERT_EQ(o.dropped, r.terminal) << "seed " << GetParam() << " set " << set << " pkt " << k;
        ASSERT_EQ(o.instr >= 0 ? static_cast<int32_t>(o.rule) : -1, r.rule);
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 1000);
  EXPECT_GT(terminal, 100);  // the generator produces matches, not only misses
}

INSTANTIATE_TEST_SUITE_P(Seeds, Differential, ::testing::Values(1u, 2u, 3u, 42u, 2024u));

}  // namespace
}  // namespace nwfq::engine
