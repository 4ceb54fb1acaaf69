// The layer-3 classifier (engine/classifier.h) against the naive reference evaluator and
// the linear scan, on large random rule sets (thousands of rules with overlapping
// prefixes, port ranges, iprange, negations, continue/return, state-dependent instances)
// and packets drawn from the same small address pool so that most packets meet several
// rules. Fixed seeds.
#include "engine/classifier.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/compiler.h"
#include "engine/evaluator.h"
#include "engine/reference.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::PacketBuilder;

class BigGen {
 public:
  explicit BigGen(uint32_t seed) : rng_(seed) {}
  uint32_t N(uint32_t n) { return rng_() % n; }
  bool Coin(int percent = 50) { return N(100) < static_cast<uint32_t>(percent); }

  // A small space so that prefixes overlap and packets hit rules.
  std::string V4() { return absl::StrCat("198.18.", N(4), ".", N(64)); }
  std::string V6() { return absl::StrCat("2001:db8:", N(2), "::", absl::Hex(N(64))); }
  uint16_t Port() {
    switch (N(4)) {
      case 0:
        return static_cast<uint16_t>(N(2) ? 0 : 65535);
      case 1:
        return static_cast<uint16_t>(20 + N(10));
      default:
        return static_cast<uint16_t>(N(2100));
    }
  }

  ConcreteRule Rule() {
    static const Protocol kProtos[] = {Protocol::kTcp,     Protocol::kUdp,    Protocol::kIcmp,
                                       Protocol::kAll,     Protocol::kSctp,   Protocol::kTcpIpv6,
                                       Protocol::kUdpIpv6, Protocol::kIcmpv6, Protocol::kAllIpv6};
    const Protocol p = kProtos[N(9)];
    const bool v6 = IsIpv6Layer3(p);
    std::vector<AttrSlot> a;
    const bool neg = Coin(3);
    // Mostly long prefixes (few rules match a packet), some short ones overlapping them.
    static const uint32_t k4[] = {16, 22, 23, 24, 26, 27, 28, 29, 30, 31, 32, 32};
    static const uint32_t k6[] = {32, 47, 48, 64, 65, 96, 120, 122, 124, 127, 128, 128};
    Hint h;
    h.v6 = v6;
    h.src = v6 ? V6() : V4();
    h.dst = v6 ? V6() : V4();
    h.sport = Port();
    h.dport = Port();
    if (Coin(90)) {
      a.push_back(Ip(Attr::kSrcIpAddr, h.src, neg));
      if (Coin(70)) a.push_back(Prefix(Attr::kSrcIpMask, v6 ? k6[N(12)] : k4[N(12)], neg));
    }
    if (Coin(90)) {
      a.push_back(Ip(Attr::kDstIpAddr, h.dst, neg));
      if (Coin(70)) a.push_back(Prefix(Attr::kDstIpMask, v6 ? k6[N(12)] : k4[N(12)], neg));
    }
    if (Coin(8)) {
      std::string lo = v6 ? V6() : V4(), hi = v6 ? V6() : V4();
      a.push_back(Ip(Attr::kDstIpFrom, lo, neg));
      a.push_back(Ip(Attr::kDstIpTo, hi, neg));
    }
    const bool ports = p == Protocol::kTcp || p == Protocol::kUdp || p == Protocol::kTcpIpv6 ||
                       p == Protocol::kUdpIpv6 || p == Protocol::kSctp;
    if (ports && Coin(60)) {
      const uint16_t s = h.dport;
      a.push_back(U(Attr::kDstPortStart, s, neg));
      if (Coin(40)) a.push_back(U(Attr::kDstPortEnd, std::min<uint32_t>(65535, s + N(800)), neg));
    }
    if (ports && Coin(25)) {
      const uint16_t s = h.sport;
      a.push_back(U(Attr::kSrcPortStart, s, neg));
      if (Coin(50)) a.push_back(U(Attr::kSrcPortEnd, std::min<uint32_t>(65535, s + N(3000)), neg));
    }
    if ((p == Protocol::kTcp || p == Protocol::kTcpIpv6) && Coin(5))
      a.push_back(Flags(0x12, Coin() ? 0x02 : 0x12, neg));
    if ((p == Protocol::kIcmp || p == Protocol::kIcmpv6) && Coin(30))
      a.push_back(U(Attr::kType, p == Protocol::kIcmp ? (Coin() ? 8 : 0) : (Coin() ? 128 : 129)));
    if (Coin(4)) a.push_back(U(Attr::kDscp, N(3), neg));
    if (Coin(10)) a.push_back(States(1 + N(15), neg));
    if (Coin(2)) a.push_back(U(Attr::kConnlimitAbove, N(3), neg));
    static const Action kActions[] = {Action::kAccept,  Action::kAccept, Action::kDrop,
                                      Action::kDrop,    Action::kReject, Action::kReturn,
                                      Action::kContinue};
    static const Direction kDirs[] = {Direction::kIn, Direction::kOut, Direction::kInOut};
    const Direction dir = kDirs[N(3)];
    if (dir == Direction::kOut) std::swap(h.src, h.dst), std::swap(h.sport, h.dport);
    hints_.push_back(h);
    return testutil::Rule(kActions[N(7)], dir, p, a, static_cast<int>(N(5)) * 100, !Coin(10));
  }

  // Half the packets sit on a random rule's own addresses and ports (as ClassBench traces
  // sit on rule corners), the others anywhere in the pool.
  std::vector<uint8_t> Frame() {
    PacketBuilder b;
    b.Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac);
    const Hint* h =
        !hints_.empty() && Coin() ? &hints_[N(static_cast<uint32_t>(hints_.size()))] : nullptr;
    const bool v6 = h != nullptr ? h->v6 : Coin(40);
    auto port = [&](bool src) { return h != nullptr ? (src ? h->sport : h->dport) : Port(); };
    if (h != nullptr) {
      if (v6) {
        b.Ipv6(h->src, h->dst);
      } else {
        b.Ipv4(h->src, h->dst);
      }
    } else if (v6) {
      b.Ipv6(V6(), V6());
    } else {
      b.Ipv4(V4(), V4());
    }
    b.Tos(static_cast<uint8_t>(N(3) << 2));
    switch (N(6)) {
      case 0:
      case 1:
        b.Tcp(port(true), port(false), Coin() ? 0x02 : 0x12);
        break;
      case 2:
      case 3:
        b.Udp(port(true), port(false));
        break;
      case 4:
        if (v6) {
          b.Icmpv6(Coin() ? 128 : 129, 0, 1, 1);
        } else {
          b.Icmp(Coin() ? 8 : 0, 0, 1, 1);
        }
        break;
      default:
        b.Sctp(port(true), port(false));
        break;
    }
    return b.Build();
  }

 private:
  // A packet in the rule's own point of view (FI: from the VM for `in` rules' sources).
  struct Hint {
    bool v6 = false;
    std::string src, dst;
    uint16_t sport = 0, dport = 0;
  };
  std::mt19937 rng_;
  std::vector<Hint> hints_;
};

uint32_t Fixed(void* arg, uint32_t) { return *static_cast<uint32_t*>(arg); }

struct BigCase {
  uint32_t seed;
  uint32_t rules;
  int packets;
};

class ClassifierDifferential : public ::testing::TestWithParam<BigCase> {};

TEST_P(ClassifierDifferential, TreeEqualsReferenceAndLinearScan) {
  const BigCase c = GetParam();
  BigGen g(c.seed);
  std::vector<ConcreteRule> rules;
  for (uint32_t i = 0; i < c.rules; ++i) rules.push_back(g.Rule());
  const InstantiatedBinding b = Bind(rules);
  auto prog = Compile(b);
  ASSERT_TRUE(prog.ok()) << prog.status();
  const Program& p = **prog;
  // The sets must actually exercise trees, not leaves holding whole chains.
  for (int ch = 0; ch < kL3ChainCount; ++ch) {
    for (int fam = 0; fam < 2; ++fam) {
      const Classifier& cls = p.classifiers[ch][fam];
      ASSERT_TRUE(cls.built()) << ch << "/" << fam;
      EXPECT_GT(cls.stats().leaves, 8u);
      EXPECT_LT(cls.stats().max_leaf, p.l3[ch][fam].count);
    }
  }
  std::vector<uint64_t> tree_counters(p.instrs.size() * 2), linear_counters(p.instrs.size() * 2);
  int terminal = 0;
  std::set<int32_t> deciders;
  for (int k = 0; k < c.packets; ++k) {
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
    for (L3Chain ch : {L3Chain::kFI, L3Chain::kFO, L3Chain::kHI}) {
      const ChainOutcome tree = RunL3(p, ch, ctx, nullptr, tree_counters.data(), 100);
      Trace trace;  // a trace forces the linear scan
      const ChainOutcome lin = RunL3(p, ch, ctx, &trace, linear_counters.data(), 100);
      const RefOutcome ref = ReferenceL3(b, ch, v, ctx, count);
      ASSERT_EQ(tree.terminal, ref.terminal) << "seed " << c.seed << " pkt " << k;
      ASSERT_EQ(tree.terminal, lin.terminal) << "seed " << c.seed << " pkt " << k;
      if (tree.terminal) {
        ASSERT_EQ(static_cast<int32_t>(tree.rule), ref.rule) << "seed " << c.seed << " pkt " << k;
        ASSERT_EQ(tree.instr, lin.instr);
        ASSERT_EQ(tree.action, lin.action);
        ++terminal;
        deciders.insert(ref.rule);
      }
    }
  }
  // Counters (continue rules included) are those of the linear scan.
  EXPECT_EQ(tree_counters, linear_counters);
  EXPECT_GT(terminal, c.packets / 2);
  // Decisions come from many rules deep in the chains, not from one early wildcard.
  EXPECT_GE(deciders.size(), 30u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, ClassifierDifferential,
                         ::testing::Values(BigCase{7, 2000, 600}, BigCase{11, 3000, 400},
                                           BigCase{1234, 1000, 1000}, BigCase{99, 5000, 200}));

// A chain of identical wildcard rules cannot be split: the builder stops (one leaf) rather
// than recursing, and the lookup still scans it in order.
TEST(Classifier, UnsplittableChainIsOneLeaf) {
  std::vector<ConcreteRule> rules;
  for (int i = 0; i < 40; ++i) {
    rules.push_back(Rule(Action::kContinue, Direction::kOut, Protocol::kTcp,
                         {Flags(0x3f, static_cast<uint8_t>(i % 2 ? 0x02 : 0x10))}));
  }
  auto prog = Compile(Bind(rules));
  ASSERT_TRUE(prog.ok());
  const Classifier& cls = (*prog)->classifiers[0][0];
  ASSERT_TRUE(cls.built());
  EXPECT_EQ(cls.stats().leaves, 1u);
  EXPECT_EQ(cls.stats().max_leaf, 40u);
}

// Short chains get no tree.
TEST(Classifier, ShortChainIsScanned) {
  auto prog = Compile(Bind({Rule(Action::kAccept, Direction::kOut, Protocol::kTcp)}));
  ASSERT_TRUE(prog.ok());
  EXPECT_FALSE((*prog)->classifiers[0][0].built());
}

// Prefix and range boxes at the edges of the address space and of port ranges.
TEST(Classifier, EdgesOfPrefixesAndRanges) {
  std::vector<ConcreteRule> rules;
  // 40 rules on distinct /24s so that a tree is built, then the edge rules.
  for (int i = 0; i < 40; ++i) {
    rules.push_back(Rule(
        Action::kDrop, Direction::kOut, Protocol::kUdp,
        {Ip(Attr::kDstIpAddr, absl::StrCat("198.19.", i, ".0")), Prefix(Attr::kDstIpMask, 24)}));
  }
  rules.push_back(Rule(Action::kReject, Direction::kOut, Protocol::kUdp,
                       {Ip(Attr::kDstIpAddr, "255.255.255.255"), Prefix(Attr::kDstIpMask, 31),
                        U(Attr::kDstPortStart, 65534), U(Attr::kDstPortEnd, 65535)}));
  rules.push_back(Rule(
      Action::kAccept, Direction::kOut, Protocol::kUdp,
      {Ip(Attr::kDstIpAddr, "0.0.0.0"), Prefix(Attr::kDstIpMask, 1), U(Attr::kDstPortStart, 0)}));
  const InstantiatedBinding b = Bind(rules);
  auto prog = Compile(b);
  ASSERT_TRUE(prog.ok());
  ASSERT_TRUE((*prog)->classifiers[0][0].built());
  struct Row {
    const char* dst;
    uint16_t dport;
    int32_t rule;  // expected deciding rule, -1 = none
  };
  const Row rows[] = {
      {"255.255.255.254", 65534, 40}, {"255.255.255.255", 65535, 40},
      {"255.255.255.253", 65535, -1}, {"255.255.255.255", 65533, -1},
      {"127.255.255.255", 0, 41},     {"0.0.0.0", 0, 41},
      {"128.0.0.0", 0, -1},           {"198.19.39.255", 7, 39},
      {"198.19.40.0", 7, -1},
  };
  for (const Row& r : rows) {
    const auto f = PacketBuilder()
                       .Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac)
                       .Ipv4("198.18.0.2", r.dst)
                       .Udp(1000, r.dport)
                       .Build();
    const PacketView v = ParseEthernet(f, {});
    EvalContext ctx{&v};
    ctx.tracked = true;
    ctx.state = ct::State::kNew;
    const ChainOutcome o = RunL3(**prog, L3Chain::kFI, ctx);
    EXPECT_EQ(o.terminal ? static_cast<int32_t>(o.rule) : -1, r.rule) << r.dst << ":" << r.dport;
    EXPECT_EQ(o.terminal ? static_cast<int32_t>(o.rule) : -1,
              ReferenceL3(b, L3Chain::kFI, v, ctx, 0).rule);
  }
}

}  // namespace
}  // namespace nwfq::engine
