// Every row of nwfilter-semantics.md tables c.2, c.3, d.1-d.4 as a compiled rule meeting
// a packet in one chain with a given conntrack state: does the rule's instance match?
#include <gtest/gtest.h>

#include "engine/compiler.h"
#include "engine/evaluator.h"
#include "engine/packet_view.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::PacketBuilder;

constexpr const char* kVm = "198.18.0.2";
constexpr const char* kPeer = "198.18.0.3";
constexpr const char* kHost = "198.18.0.1";

// Packets as each chain sees them.
std::vector<uint8_t> VmToPeerTcp(uint16_t sport, uint16_t dport) {
  return PacketBuilder()
      .Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac)
      .Ipv4(kVm, kPeer)
      .Tcp(sport, dport, 0x02)
      .Build();
}
std::vector<uint8_t> PeerToVmTcp(uint16_t sport, uint16_t dport) {
  return PacketBuilder()
      .Eth(nwfq::testing::kPeerMac, nwfq::testing::kVmMac)
      .Ipv4(kPeer, kVm)
      .Tcp(sport, dport, 0x02)
      .Build();
}

struct Row {
  const char* what;
  ConcreteRule rule;
  L3Chain chain;
  std::vector<uint8_t> frame;
  ct::State state;
  ct::Dir dir;
  bool match;
  uint32_t connlimit_count = 0;
};

uint32_t Fixed(void* arg, uint32_t) { return *static_cast<uint32_t*>(arg); }

class PlacementTest : public ::testing::TestWithParam<int> {};

const ct::State kNew = ct::State::kNew, kEst = ct::State::kEstablished, kRel = ct::State::kRelated,
                kInv = ct::State::kInvalid, kUnt = ct::State::kUntracked;
const ct::Dir kOrig = ct::Dir::kOriginal, kRep = ct::Dir::kReply;
const L3Chain FI = L3Chain::kFI, FO = L3Chain::kFO, HI = L3Chain::kHI;
const Direction kIn = Direction::kIn, kOut = Direction::kOut, kInOut = Direction::kInOut;

std::vector<Row> Rows() {
  const ConcreteRule out80 =
      Rule(Action::kAccept, kOut, Protocol::kTcp, {U(Attr::kDstPortStart, 80)});
  const ConcreteRule in22 =
      Rule(Action::kAccept, kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)});
  const ConcreteRule inout22 =
      Rule(Action::kAccept, kInOut, Protocol::kTcp, {U(Attr::kDstPortStart, 22)});
  const ConcreteRule sl12345 =
      Rule(Action::kAccept, kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 12345)}, 500, false);
  const ConcreteRule icmp8 = Rule(Action::kAccept, kOut, Protocol::kIcmp, {U(Attr::kType, 8)});
  const ConcreteRule icmp0in = Rule(Action::kAccept, kIn, Protocol::kIcmp, {U(Attr::kType, 0)});
  const ConcreteRule icmp8inout = Rule(Action::kDrop, kInOut, Protocol::kIcmp, {U(Attr::kType, 8)});
  const ConcreteRule macOnly = Rule(Action::kAccept, kOut, Protocol::kIcmp,
                                    {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02")});
  const ConcreteRule macPort = Rule(
      Action::kAccept, kOut, Protocol::kTcp,
      {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02"), U(Attr::kDstPortStart, 80)}, 500, false);
  const ConcreteRule climOut =
      Rule(Action::kDrop, kOut, Protocol::kTcp, {U(Attr::kConnlimitAbove, 1)});
  const ConcreteRule climIn =
      Rule(Action::kDrop, kIn, Protocol::kTcp, {U(Attr::kConnlimitAbove, 1)});
  const ConcreteRule climInOut =
      Rule(Action::kDrop, kInOut, Protocol::kTcp, {U(Attr::kConnlimitAbove, 1)});
  const ConcreteRule climNeg =
      Rule(Action::kDrop, kOut, Protocol::kTcp, {U(Attr::kConnlimitAbove, 1, true)});
  const ConcreteRule dropOut80 =
      Rule(Action::kDrop, kOut, Protocol::kTcp, {U(Attr::kDstPortStart, 80)});
  const ConcreteRule stEstRel =
      Rule(Action::kAccept, kOut, Protocol::kAll, {States(kStateEstablished | kStateRelated)});
  const ConcreteRule stInEst =
      Rule(Action::kAccept, kIn, Protocol::kAll, {States(kStateEstablished)});
  const ConcreteRule stInOutNew =
      Rule(Action::kDrop, kInOut, Protocol::kTcp, {U(Attr::kDstPortStart, 22), States(kStateNew)});
  const ConcreteRule stNone =
      Rule(Action::kAccept, kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22), States(kStateNone)});
  // Real libvirt 9.0 (tests/oracle, case ipv6): state NONE on ICMP with a type = no state
  // match, own direction only (not the NEW,ESTABLISHED of typed ICMP rules).
  const ConcreteRule stNoneIcmp =
      Rule(Action::kAccept, kIn, Protocol::kIcmp, {U(Attr::kType, 8), States(kStateNone)});
  const ConcreteRule stDrop = Rule(Action::kDrop, kOut, Protocol::kTcp, {States(kStateNew)});
  const ConcreteRule stNeg = Rule(Action::kAccept, kOut, Protocol::kTcp, {States(kStateNew, true)});
  const ConcreteRule stIgnored = Rule(Action::kAccept, kIn, Protocol::kTcp,
                                      {U(Attr::kDstPortStart, 22), States(kStateNew)}, 500, false);

  auto vm_peer = [](uint16_t s, uint16_t d) { return VmToPeerTcp(s, d); };
  auto peer_vm = [](uint16_t s, uint16_t d) { return PeerToVmTcp(s, d); };
  auto vm_host = [](uint16_t s, uint16_t d) {
    return PacketBuilder()
        .Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac)
        .Ipv4(kVm, kHost)
        .Tcp(s, d, 0x02)
        .Build();
  };
  auto icmp = [](const char* src, const char* dst, uint8_t type) {
    const bool from_vm = std::string(src) == kVm;
    return PacketBuilder()
        .Eth(from_vm ? nwfq::testing::kVmMac : nwfq::testing::kPeerMac,
             from_vm ? nwfq::testing::kPeerMac : nwfq::testing::kVmMac)
        .Ipv4(src, dst)
        .Icmp(type, 0, 7, 1)
        .Build();
  };
  const auto echo_out = icmp(kVm, kPeer, 8);
  const auto echo_reply_in = icmp(kPeer, kVm, 0);
  const auto echo_in = icmp(kPeer, kVm, 8);
  const auto other_mac =
      PacketBuilder()
          .Eth(nwfq::testing::ParseMac("52:54:00:00:00:99"), nwfq::testing::kPeerMac)
          .Ipv4(kVm, kPeer)
          .Icmp(8, 0, 7, 1)
          .Build();

  return {
      // ---- c.2 direction -> instances, swaps (stateless rules to isolate placement)
      {"c.2 in statematch=false: FO as written", sl12345, FO, peer_vm(40000, 12345), kInv, kOrig,
       true},
      {"c.2 in statematch=false: FI swapped (sport)", sl12345, FI, vm_peer(12345, 80), kInv, kOrig,
       true},
      {"c.2 in statematch=false: FI not by dport", sl12345, FI, vm_peer(40000, 12345), kInv, kOrig,
       false},
      {"c.2 in statematch=false: HI swapped", sl12345, HI, vm_host(12345, 80), kNew, kOrig, true},
      {"c.2 out: FI as written", dropOut80, FI, vm_peer(40000, 80), kNew, kOrig, true},
      {"c.2 out: FO swapped (sport 80)", dropOut80, FO, peer_vm(80, 40000), kEst, kRep, true},
      {"c.2 out: FO not by dport", dropOut80, FO, peer_vm(40000, 80), kNew, kOrig, false},
      {"c.2 out: HI as written", dropOut80, HI, vm_host(40000, 80), kNew, kOrig, true},
      {"c.2 inout: FO as written", inout22, FO, peer_vm(40000, 22), kInv, kOrig, true},
      {"c.2 inout: FI swapped", inout22, FI, vm_peer(22, 40000), kInv, kOrig, true},
      {"c.2 inout: FI not as written", inout22, FI, vm_peer(40000, 22), kInv, kOrig, false},
      {"c.2 srcmac only: FI instance checks the MAC", macOnly, FI, echo_out, kNew, kOrig, true},
      {"c.2 srcmac only: FI other MAC", macOnly, FI, other_mac, kNew, kOrig, false},
      {"c.2 srcmac only: no FO instance (i.6)", macOnly, FO, echo_reply_in, kEst, kRep, false},
      {"c.2 srcmac + port: FO instance without MAC", macPort, FO, peer_vm(80, 40000), kEst, kRep,
       true},
      {"c.2 icmp type out: FI", icmp8, FI, echo_out, kNew, kOrig, true},
      {"c.2 icmp type out: HI", icmp8, HI, icmp(kVm, kHost, 8), kNew, kOrig, true},
      {"c.2 icmp type out: no FO instance", icmp8, FO,
       PacketBuilder().Ipv4(kPeer, kVm).Icmp(8, 0, 7, 1).Build(), kNew, kOrig, false},
      {"c.2 icmp type in: FO", icmp0in, FO, echo_reply_in, kNew, kOrig, true},
      {"c.2 icmp type in: no FI instance", icmp0in, FI, icmp(kVm, kPeer, 0), kNew, kOrig, false},
      {"c.2 icmp type inout: no FI instance", icmp8inout, FI, echo_out, kNew, kOrig, false},
      {"c.2 icmp type inout: no FO instance", icmp8inout, FO, echo_in, kNew, kOrig, false},
      {"c.2 icmp type inout: no HI instance", icmp8inout, HI, icmp(kVm, kHost, 8), kNew, kOrig,
       false},
      // ---- d.4 connlimit placement and counting
      {"d.4 out: FI counted over limit", climOut, FI, vm_peer(40000, 22), kNew, kOrig, true, 2},
      {"d.4 out: FI at limit", climOut, FI, vm_peer(40000, 22), kNew, kOrig, false, 1},
      {"d.4 out: HI instance", climOut, HI, vm_host(40000, 22), kNew, kOrig, true, 2},
      {"d.4 out: no FO instance", climOut, FO, peer_vm(22, 40000), kEst, kRep, false, 5},
      {"d.4 in: FO instance", climIn, FO, peer_vm(40000, 22), kNew, kOrig, true, 2},
      {"d.4 in: no FI instance", climIn, FI, vm_peer(22, 40000), kEst, kRep, false, 5},
      {"d.4 inout: FO only", climInOut, FO, peer_vm(40000, 22), kNew, kOrig, true, 2},
      {"d.4 inout: no FI instance", climInOut, FI, vm_peer(40000, 22), kNew, kOrig, false, 5},
      {"d.4 no state match: INVALID counted", climOut, FI, vm_peer(40000, 22), kInv, kOrig, true,
       2},
      {"d.4 match=no: at most N", climNeg, FI, vm_peer(40000, 22), kNew, kOrig, true, 1},
      {"d.4 match=no: over N", climNeg, FI, vm_peer(40000, 22), kNew, kOrig, false, 2},
      // ---- d.1 default state matches
      {"d.1 out accept: FI NEW/ORIGINAL", out80, FI, vm_peer(40000, 80), kNew, kOrig, true},
      {"d.1 out accept: FI ESTABLISHED/ORIGINAL", out80, FI, vm_peer(40000, 80), kEst, kOrig, true},
      {"d.1 out accept: FI not REPLY", out80, FI, vm_peer(40000, 80), kEst, kRep, false},
      {"d.1 out accept: FI not INVALID", out80, FI, vm_peer(40000, 80), kInv, kOrig, false},
      {"d.1 out accept: FI not RELATED", out80, FI, vm_peer(40000, 80), kRel, kOrig, false},
      {"d.1 out accept: FO ESTABLISHED/REPLY", out80, FO, peer_vm(80, 40000), kEst, kRep, true},
      {"d.1 out accept: FO not NEW", out80, FO, peer_vm(80, 40000), kNew, kOrig, false},
      {"d.1 out accept: FO not RELATED/REPLY", out80, FO, peer_vm(80, 40000), kRel, kRep, false},
      {"d.1 out accept: HI NEW/ORIGINAL", out80, HI, vm_host(40000, 80), kNew, kOrig, true},
      {"d.1 in accept: FO NEW/ORIGINAL", in22, FO, peer_vm(40000, 22), kNew, kOrig, true},
      {"d.1 in accept: FO not ESTABLISHED/REPLY", in22, FO, peer_vm(40000, 22), kEst, kRep, false},
      {"d.1 in accept: FI ESTABLISHED/REPLY", in22, FI, vm_peer(22, 40000), kEst, kRep, true},
      {"d.1 in accept: FI not NEW (VM-initiated)", in22, FI, vm_peer(22, 40000), kNew, kOrig,
       false},
      {"d.1 in accept: HI ESTABLISHED/REPLY", in22, HI, vm_host(22, 40000), kEst, kRep, true},
      {"d.1 inout accept: no state (INVALID passes)", inout22, FO, peer_vm(40000, 22), kInv, kOrig,
       true},
      {"d.1 drop: no state (INVALID dropped)", dropOut80, FI, vm_peer(40000, 80), kInv, kOrig,
       true},
      {"d.1 icmp type: NEW without ctdir", icmp8, FI, echo_out, kNew, kRep, true},
      {"d.1 icmp type: ESTABLISHED", icmp8, FI, echo_out, kEst, kOrig, true},
      {"d.1 icmp type: not INVALID", icmp8, FI, echo_out, kInv, kOrig, false},
      // ---- d.2 statematch=false
      {"d.2 statematch=false: INVALID matches", sl12345, FO, peer_vm(40000, 12345), kInv, kOrig,
       true},
      {"d.2 statematch=false ignores state=", stIgnored, FI, vm_peer(22, 40000), kEst, kRep, true},
      // ---- d.3 explicit state
      {"d.3 out state=EST,REL: FI RELATED", stEstRel, FI, echo_out, kRel, kRep, true},
      {"d.3 out state=EST,REL: FI not NEW", stEstRel, FI, echo_out, kNew, kOrig, false},
      {"d.3 out state: HI", stEstRel, HI, icmp(kVm, kHost, 8), kEst, kRep, true},
      {"d.3 out state: no FO instance", stEstRel, FO, echo_reply_in, kEst, kRep, false},
      {"d.3 in state=EST: FO", stInEst, FO, echo_reply_in, kEst, kRep, true},
      {"d.3 in state: no FI instance", stInEst, FI, echo_out, kEst, kRep, false},
      {"d.3 inout state=NEW drop: FI swapped", stInOutNew, FI, vm_peer(22, 40000), kNew, kOrig,
       true},
      {"d.3 inout state=NEW drop: FO", stInOutNew, FO, peer_vm(40000, 22), kNew, kOrig, true},
      {"d.3 inout state=NEW drop: not ESTABLISHED", stInOutNew, FO, peer_vm(40000, 22), kEst, kOrig,
       false},
      {"d.3 state=NONE: FO without state", stNone, FO, peer_vm(40000, 22), kInv, kOrig, true},
      {"d.3 state=NONE: no FI instance", stNone, FI, vm_peer(22, 40000), kEst, kRep, false},
      {"d.3 icmp type state=NONE: FO without state", stNoneIcmp, FO, echo_in, kUnt, kOrig, true},
      {"d.3 icmp type state=NONE: no FI instance", stNoneIcmp, FI, echo_out, kEst, kRep, false},
      {"d.3 drop keeps its state match", stDrop, FI, vm_peer(40000, 80), kEst, kOrig, false},
      {"d.3 drop state=NEW: NEW dropped", stDrop, FI, vm_peer(40000, 80), kNew, kOrig, true},
      {"d.3 match=no state: not NEW", stNeg, FI, vm_peer(40000, 80), kNew, kOrig, false},
      {"d.3 match=no state: UNTRACKED matches", stNeg, FI, vm_peer(40000, 80), kUnt, kOrig, true},
  };
}

TEST(Placement, EveryRow) {
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.what);
    auto prog = Compile(Bind({row.rule}));
    ASSERT_TRUE(prog.ok()) << prog.status();
    const PacketView v = ParseEthernet(row.frame, ParseOptions{});
    ASSERT_EQ(v.malformed, Malformed::kNone);
    EvalContext ctx;
    ctx.pkt = &v;
    ctx.tracked = true;
    ctx.state = row.state;
    ctx.dir = row.dir;
    uint32_t count = row.connlimit_count;
    ctx.connlimit = &Fixed;
    ctx.connlimit_arg = &count;
    const ChainOutcome o = RunL3(**prog, row.chain, ctx);
    EXPECT_EQ(o.terminal, row.match);
    if (row.match) {
      EXPECT_EQ(o.rule, 0u);
      EXPECT_EQ(o.action, row.rule.action);
    }
  }
}

// c.3: what each action means in each chain, and `continue`.
TEST(Placement, ActionsPerChain) {
  for (Action a : {Action::kAccept, Action::kDrop, Action::kReject, Action::kReturn}) {
    auto prog = Compile(Bind(
        {Rule(a, kInOut, Protocol::kAll), Rule(Action::kDrop, kInOut, Protocol::kAll, {}, 600)}));
    ASSERT_TRUE(prog.ok());
    const auto frame = VmToPeerTcp(40000, 80);
    const PacketView v = ParseEthernet(frame, ParseOptions{});
    EvalContext ctx;
    ctx.pkt = &v;
    ctx.state = kNew;
    for (L3Chain c : {FI, FO, HI}) {
      const ChainOutcome o = RunL3(**prog, c, ctx);
      EXPECT_TRUE(o.terminal);
      EXPECT_EQ(o.action, a);
      EXPECT_EQ(o.rule, 0u);
    }
  }
  // continue: no verdict, the next rule decides.
  auto prog = Compile(Bind({Rule(Action::kContinue, kInOut, Protocol::kAll),
                            Rule(Action::kDrop, kInOut, Protocol::kAll, {}, 600)}));
  ASSERT_TRUE(prog.ok());
  const auto frame = VmToPeerTcp(40000, 80);
  const PacketView v = ParseEthernet(frame, ParseOptions{});
  EvalContext ctx;
  ctx.pkt = &v;
  const ChainOutcome o = RunL3(**prog, FI, ctx);
  EXPECT_TRUE(o.terminal);
  EXPECT_EQ(o.action, Action::kDrop);
  EXPECT_EQ(o.rule, 1u);
}

// L3 rules apply to their own family only: a filter of IPv6 rules leaves IPv4 unfiltered.
TEST(Placement, FamilySeparation) {
  auto prog = Compile(Bind({Rule(Action::kDrop, kInOut, Protocol::kAllIpv6)}));
  ASSERT_TRUE(prog.ok());
  const auto v4 = ParseEthernet(VmToPeerTcp(1, 2), ParseOptions{});
  const auto v6f = PacketBuilder().Ipv6("2001:db8::2", "2001:db8::3").Tcp(1, 2, 2).Build();
  const auto v6 = ParseEthernet(v6f, ParseOptions{});
  EvalContext c4{&v4};
  EvalContext c6{&v6};
  EXPECT_FALSE(RunL3(**prog, FI, c4).terminal);
  EXPECT_TRUE(RunL3(**prog, FI, c6).terminal);
}

}  // namespace
}  // namespace nwfq::engine
