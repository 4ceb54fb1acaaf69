// Layer-2 (ebtables) chain semantics: b.3 and findings i.8.
#include <gtest/gtest.h>

#include "engine/compiler.h"
#include "engine/evaluator.h"
#include "engine/reference.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::kPeerMac;
using nwfq::testing::kVmMac;
using nwfq::testing::PacketBuilder;

// A binding with a root chain and one sub-chain `kind`; `root` and `sub` list rules by
// index; the jump sits at position `jump_at` of the root chain.
InstantiatedBinding WithSubChain(std::vector<ConcreteRule> rules, std::vector<uint32_t> root,
                                 std::vector<uint32_t> sub, ChainKind kind, size_t jump_at) {
  InstantiatedBinding b = Bind(std::move(rules));
  b.l3_order.clear();
  b.l2_chains.clear();
  L2Chain r{"root", ChainKind::kRoot, 0, {}};
  for (size_t i = 0; i <= root.size(); ++i) {
    if (i == jump_at) r.entries.push_back({L2Entry::Kind::kJump, 1});
    if (i < root.size()) r.entries.push_back({L2Entry::Kind::kRule, root[i]});
  }
  L2Chain s{"sub", kind, -500, {}};
  for (uint32_t i : sub) s.entries.push_back({L2Entry::Kind::kRule, i});
  b.l2_chains = {r, s};
  return b;
}

struct Outcome {
  bool dropped;
  int32_t rule;
};

Outcome RunChain(const InstantiatedBinding& b, L2Dir dir, const std::vector<uint8_t>& frame) {
  auto prog = Compile(b);
  EXPECT_TRUE(prog.ok()) << prog.status();
  const PacketView v = ParseEthernet(frame, {});
  EvalContext ctx{&v};
  const L2Outcome o = RunL2(**prog, dir, ctx);
  const RefOutcome ref = ReferenceL2(b, dir, v);
  const int32_t rule = o.instr >= 0 ? static_cast<int32_t>(o.rule) : -1;
  EXPECT_EQ(o.dropped, ref.terminal) << "reference disagrees";
  EXPECT_EQ(rule, ref.rule) << "reference disagrees";
  return {o.dropped, rule};
}

const auto kArpFromVm = PacketBuilder()
                            .Eth(kVmMac, nwfq::testing::kBroadcastMac)
                            .Arp(1, kVmMac, "198.18.0.2", {}, "198.18.0.1")
                            .Build();
const auto kIpFromVm =
    PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4("198.18.0.2", "198.18.0.3").Udp(1, 2).Build();

TEST(Layer2, SubChainFallOffAcceptsAndSkipsRoot) {
  // Sub-chain (arp) with a non-matching rule; root ends with drop-all. Falling off the
  // sub-chain accepts: the root drop is never reached (finding i.8).
  auto b =
      WithSubChain({Rule(Action::kDrop, Direction::kOut, Protocol::kArp, {U(Attr::kOpcode, 2)}),
                    Rule(Action::kDrop, Direction::kInOut, Protocol::kNone, {}, 1000)},
                   {1}, {0}, ChainKind::kArp, 0);
  const Outcome arp = RunChain(b, L2Dir::kI, kArpFromVm);
  EXPECT_FALSE(arp.dropped);
  EXPECT_EQ(arp.rule, -1);
  // IPv4 does not pass the jump's -p 0x0806 guard: the root drop applies.
  const Outcome ip = RunChain(b, L2Dir::kI, kIpFromVm);
  EXPECT_TRUE(ip.dropped);
  EXPECT_EQ(ip.rule, 1);
}

TEST(Layer2, ReturnLeavesSubChainOnly) {
  auto b = WithSubChain({Rule(Action::kReturn, Direction::kOut, Protocol::kArp),
                         Rule(Action::kDrop, Direction::kInOut, Protocol::kNone, {}, 1000)},
                        {1}, {0}, ChainKind::kArp, 0);
  const Outcome o = RunChain(b, L2Dir::kI, kArpFromVm);
  EXPECT_TRUE(o.dropped);
  EXPECT_EQ(o.rule, 1);
}

TEST(Layer2, NoJumpIntoSubChainWithoutRulesForTheDirection) {
  // Sub-chain with only an `out` rule: libvirt creates no O-side sub-chain, so frames to
  // the VM meet the root drop instead of falling off an empty sub-chain.
  auto b = WithSubChain({Rule(Action::kAccept, Direction::kOut, Protocol::kMac),
                         Rule(Action::kDrop, Direction::kInOut, Protocol::kNone, {}, 1000)},
                        {1}, {0}, ChainKind::kMac, 0);
  const auto to_vm =
      PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4("198.18.0.3", "198.18.0.2").Udp(1, 2).Build();
  EXPECT_TRUE(RunChain(b, L2Dir::kO, to_vm).dropped);
  EXPECT_FALSE(RunChain(b, L2Dir::kI, kIpFromVm).dropped);
}

TEST(Layer2, RootReturnPassesAndRejectDrops) {
  auto ret = Bind({Rule(Action::kReturn, Direction::kOut, Protocol::kIp),
                   Rule(Action::kDrop, Direction::kInOut, Protocol::kNone, {}, 1000)});
  const Outcome r = RunChain(ret, L2Dir::kI, kIpFromVm);
  EXPECT_FALSE(r.dropped);
  EXPECT_EQ(r.rule, 0);
  auto rej = Bind({Rule(Action::kReject, Direction::kOut, Protocol::kIp)});
  EXPECT_TRUE(RunChain(rej, L2Dir::kI, kIpFromVm).dropped);
}

TEST(Layer2, InoutIsReadFromTheInPointOfView) {
  // inout ip srcipaddr=peer: in O (to VM) as written; in I (from VM) swapped -> dst = peer.
  auto b = Bind({Rule(Action::kDrop, Direction::kInOut, Protocol::kIp,
                      {Ip(Attr::kSrcIpAddr, "198.18.0.3")})});
  EXPECT_TRUE(RunChain(b, L2Dir::kI, kIpFromVm).dropped);
  const auto to_vm =
      PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4("198.18.0.3", "198.18.0.2").Udp(1, 2).Build();
  EXPECT_TRUE(RunChain(b, L2Dir::kO, to_vm).dropped);
  const auto from_other =
      PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4("198.18.0.4", "198.18.0.2").Udp(1, 2).Build();
  EXPECT_FALSE(RunChain(b, L2Dir::kO, from_other).dropped);
  // out rules only in I, in rules only in O.
  auto out = Bind({Rule(Action::kDrop, Direction::kOut, Protocol::kNone)});
  EXPECT_FALSE(RunChain(out, L2Dir::kO, to_vm).dropped);
  EXPECT_TRUE(RunChain(out, L2Dir::kI, kIpFromVm).dropped);
}

struct L2Row {
  const char* what;
  ConcreteRule rule;
  std::vector<uint8_t> frame;  // from the VM (chain I)
  bool match;
};

TEST(Layer2, AttributeRows) {
  const auto tagged = PacketBuilder()
                          .Eth(kVmMac, kPeerMac)
                          .Vlan(10)
                          .Ipv4("198.18.0.2", "198.18.0.3")
                          .Udp(1, 2)
                          .Build();
  const auto grat = PacketBuilder()
                        .Eth(kVmMac, nwfq::testing::kBroadcastMac)
                        .Arp(2, kVmMac, "198.18.0.2", {}, "198.18.0.2")
                        .Build();
  const auto tos = PacketBuilder()
                       .Eth(kVmMac, kPeerMac)
                       .Ipv4("198.18.0.2", "198.18.0.3")
                       .Tos(8)
                       .Udp(1, 2)
                       .Build();
  const auto ns = PacketBuilder()
                      .Eth(kVmMac, kPeerMac)
                      .Ipv6("fe80::2", "ff02::1:ff00:3")
                      .Icmpv6(135, 0)
                      .Build();
  std::vector<L2Row> rows = {
      {"mac srcmac",
       Rule(Action::kDrop, Direction::kOut, Protocol::kMac,
            {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02")}),
       kIpFromVm, true},
      {"mac srcmac negated",
       Rule(Action::kDrop, Direction::kOut, Protocol::kMac,
            {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02", true)}),
       kIpFromVm, false},
      {"mac protocolid ipv4",
       Rule(Action::kDrop, Direction::kOut, Protocol::kMac, {U(Attr::kProtocolId, 0x0800)}),
       kIpFromVm, true},
      {"mac protocolid arp",
       Rule(Action::kDrop, Direction::kOut, Protocol::kMac, {U(Attr::kProtocolId, 0x0806)}),
       kIpFromVm, false},
      {"arp opcode 1", Rule(Action::kDrop, Direction::kOut, Protocol::kArp, {U(Attr::kOpcode, 1)}),
       kArpFromVm, true},
      {"arp srcip",
       Rule(Action::kDrop, Direction::kOut, Protocol::kArp,
            {Ip(Attr::kArpSrcIpAddr, "198.18.0.2")}),
       kArpFromVm, true},
      {"arp srcip other",
       Rule(Action::kDrop, Direction::kOut, Protocol::kArp,
            {Ip(Attr::kArpSrcIpAddr, "198.18.0.9")}),
       kArpFromVm, false},
      {"arp gratuitous",
       Rule(Action::kDrop, Direction::kOut, Protocol::kArp, {U(Attr::kGratuitous, 1)}), grat, true},
      {"arp gratuitous on request",
       Rule(Action::kDrop, Direction::kOut, Protocol::kArp, {U(Attr::kGratuitous, 1)}), kArpFromVm,
       false},
      {"arp rule on ip frame", Rule(Action::kDrop, Direction::kOut, Protocol::kArp), kIpFromVm,
       false},
      {"ip on tagged frame", Rule(Action::kDrop, Direction::kOut, Protocol::kIp), tagged, false},
      {"vlan id", Rule(Action::kDrop, Direction::kOut, Protocol::kVlan, {U(Attr::kVlanId, 10)}),
       tagged, true},
      {"vlan id other",
       Rule(Action::kDrop, Direction::kOut, Protocol::kVlan, {U(Attr::kVlanId, 11)}), tagged,
       false},
      {"ip dstport",
       Rule(Action::kDrop, Direction::kOut, Protocol::kIp,
            {U(Attr::kProtocol, 17), U(Attr::kDstPortStart, 2)}),
       kIpFromVm, true},
      {"ip dscp compared as the tos byte (libvirt quirk)",
       Rule(Action::kDrop, Direction::kOut, Protocol::kIp, {U(Attr::kDscp, 8)}), tos, true},
      {"ip dscp 2 is not tos 8",
       Rule(Action::kDrop, Direction::kOut, Protocol::kIp, {U(Attr::kDscp, 2)}), tos, false},
      {"ipv6 icmp type range",
       Rule(Action::kDrop, Direction::kOut, Protocol::kIpv6,
            {U(Attr::kProtocol, 58), U(Attr::kType, 133), U(Attr::kTypeEnd, 136)}),
       ns, true},
      {"no protocol: every frame", Rule(Action::kDrop, Direction::kOut, Protocol::kNone),
       kArpFromVm, true},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.what);
    EXPECT_EQ(RunChain(Bind({row.rule}), L2Dir::kI, row.frame).dropped, row.match);
  }
}

}  // namespace
}  // namespace nwfq::engine
