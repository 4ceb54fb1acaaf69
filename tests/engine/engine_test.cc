// Scenario tests: timed packets through the Engine facade (compiler + evaluator + conntrack)
// with a FakeClock, for the seed examples, the oracle's demo filters and findings (i).
#include "engine/engine.h"

#include <gtest/gtest.h>

#include "tests/engine/rule_helpers.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::FakeClock;
using nwfq::testing::kPeerMac;
using nwfq::testing::kVmMac;
using nwfq::testing::PacketBuilder;

constexpr const char* kVm = "198.18.0.2";
constexpr const char* kPeer = "198.18.0.3";
constexpr const char* kPeer2 = "198.18.0.4";
constexpr uint8_t kSyn = 0x02, kAck = 0x10, kFin = 0x01;

struct Harness {
  explicit Harness(std::vector<ConcreteRule> rules, EngineOptions o = {}) : engine(Small(o)) {
    binding = Bind(std::move(rules));
    EXPECT_TRUE(engine.SetBinding(binding).ok());
  }
  static EngineOptions Small(EngineOptions o) {
    o.conntrack_capacity = 4096;
    return o;
  }
  Decision FromVm(const std::vector<uint8_t>& f) { return Send(View::kFromVm, f); }
  Decision ToVm(const std::vector<uint8_t>& f) { return Send(View::kToVm, f); }
  Decision ToHost(const std::vector<uint8_t>& f) { return Send(View::kVmToHost, f); }
  Decision Send(View view, const std::vector<uint8_t>& f) {
    PacketInput in;
    in.bytes = f;
    return engine.Decide("vnet0", view, in, clock.Now());
  }
  InstantiatedBinding binding;
  Engine engine;
  FakeClock clock{1'000'000'000};
};

std::vector<uint8_t> VmTcp(const char* dst, uint16_t sport, uint16_t dport, uint8_t flags,
                           uint32_t seq = 1000, uint32_t ack = 0) {
  return PacketBuilder()
      .Eth(kVmMac, kPeerMac)
      .Ipv4(kVm, dst)
      .Tcp(sport, dport, flags, seq, ack)
      .Build();
}
std::vector<uint8_t> PeerTcp(const char* src, uint16_t sport, uint16_t dport, uint8_t flags,
                             uint32_t seq = 5000, uint32_t ack = 0) {
  return PacketBuilder()
      .Eth(kPeerMac, kVmMac)
      .Ipv4(src, kVm)
      .Tcp(sport, dport, flags, seq, ack)
      .Build();
}
std::vector<uint8_t> VmPing(const char* dst, uint16_t id, uint16_t seq, uint8_t type = 8) {
  return PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4(kVm, dst).Icmp(type, 0, id, seq).Build();
}
std::vector<uint8_t> PeerPing(const char* src, uint16_t id, uint16_t seq, uint8_t type = 8) {
  return PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4(src, kVm).Icmp(type, 0, id, seq).Build();
}

#define EXPECT_DECISION(d, v, st, dr)       \
  do {                                      \
    const Decision dd_ = (d);               \
    EXPECT_EQ(dd_.verdict, Verdict::v);     \
    EXPECT_EQ(dd_.ct_state, ct::State::st); \
    EXPECT_EQ(dd_.ct_dir, ct::Dir::dr);     \
  } while (0)

// Seed example (semantics e.1, demo A): statematch='false' on tcp 12345 opens the port both
// ways: the VM may originate traffic *from* port 12345.
TEST(Scenario, StatelessPortOpensBothWays) {
  Harness h({Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 12345)},
                  500, false),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  EXPECT_DECISION(h.ToVm(PeerTcp(kPeer, 40000, 12345, kSyn)), kAccept, kNew, kOriginal);
  EXPECT_DECISION(h.FromVm(VmTcp(kPeer, 12345, 80, kSyn)), kAccept, kNew, kOriginal);
  EXPECT_DECISION(h.ToVm(PeerTcp(kPeer, 80, 12345, kSyn | kAck, 9000, 1001)), kAccept, kEstablished,
                  kReply);
  const Decision blocked = h.FromVm(VmTcp(kPeer, 12346, 80, kSyn));
  EXPECT_EQ(blocked.verdict, Verdict::kDrop);
  EXPECT_EQ(blocked.rule, 1);
}

// Demo A (ssh-stateless): ssh in is open, VM-initiated ssh is not; ping out only.
TEST(Scenario, SshInPingOut) {
  Harness h({Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
             Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  EXPECT_DECISION(h.ToVm(PeerTcp(kPeer, 40000, 22, kSyn, 5000)), kAccept, kNew, kOriginal);
  EXPECT_DECISION(h.FromVm(VmTcp(kPeer, 22, 40000, kSyn | kAck, 100, 5001)), kAccept, kEstablished,
                  kReply);
  EXPECT_DECISION(h.ToVm(PeerTcp(kPeer, 40000, 22, kAck, 5001, 101)), kAccept, kEstablished,
                  kOriginal);
  // VM-initiated ssh: FI has only the ESTABLISHED/REPLY instance.
  const Decision out_ssh = h.FromVm(VmTcp(kPeer, 41000, 22, kSyn));
  EXPECT_EQ(out_ssh.verdict, Verdict::kDrop);
  EXPECT_EQ(out_ssh.ct_state, ct::State::kNew);
  // tcp/80 in: dropped.
  EXPECT_EQ(h.ToVm(PeerTcp(kPeer, 40001, 80, kSyn)).verdict, Verdict::kDrop);
  // ping out + reply in; ping in blocked.
  EXPECT_DECISION(h.FromVm(VmPing(kPeer, 7, 1)), kAccept, kNew, kOriginal);
  EXPECT_DECISION(h.ToVm(PeerPing(kPeer, 7, 1, 0)), kAccept, kEstablished, kReply);
  EXPECT_EQ(h.ToVm(PeerPing(kPeer, 9, 1)).verdict, Verdict::kDrop);
  // VM -> host ping: HI like FI.
  EXPECT_EQ(h.ToHost(VmPing("198.18.0.1", 8, 1)).verdict, Verdict::kAccept);
}

// Seed connlimit example (e.3): one inbound ssh per remote source; one ping at a time; the
// ICMP slot frees once the ICMP conntrack entry times out.
TEST(Scenario, ConnlimitExample) {
  Harness h(
      {Rule(Action::kDrop, Direction::kIn, Protocol::kTcp, {U(Attr::kConnlimitAbove, 1)}, 400),
       Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}, 500),
       Rule(Action::kDrop, Direction::kOut, Protocol::kIcmp, {U(Attr::kConnlimitAbove, 1)}, 400),
       Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp, {}, 500),
       Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {U(Attr::kDstPortStart, 53)}, 500),
       Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  ASSERT_TRUE(h.engine.timeouts().Set(ct::TimeoutClass::kIcmp, 3).ok());
  // First ssh from peer: open, handshake completes.
  EXPECT_EQ(h.ToVm(PeerTcp(kPeer, 40000, 22, kSyn, 5000)).verdict, Verdict::kAccept);
  EXPECT_EQ(h.FromVm(VmTcp(kPeer, 22, 40000, kSyn | kAck, 100, 5001)).verdict, Verdict::kAccept);
  EXPECT_EQ(h.ToVm(PeerTcp(kPeer, 40000, 22, kAck, 5001, 101)).verdict, Verdict::kAccept);
  // Second concurrent ssh from the same source: over the limit.
  const Decision second = h.ToVm(PeerTcp(kPeer, 40001, 22, kSyn, 7000));
  EXPECT_EQ(second.verdict, Verdict::kDrop);
  EXPECT_EQ(second.rule, 0);
  // Another remote source has its own count.
  EXPECT_EQ(h.ToVm(PeerTcp(kPeer2, 40000, 22, kSyn, 8000)).verdict, Verdict::kAccept);
  // The first connection keeps working (default: the existing flow keeps its slot, i.1).
  EXPECT_EQ(h.ToVm(PeerTcp(kPeer, 40000, 22, kAck, 5001, 101)).verdict, Verdict::kAccept);

  // One ping at a time.
  EXPECT_EQ(h.FromVm(VmPing(kPeer, 1, 1)).verdict, Verdict::kAccept);
  EXPECT_EQ(h.ToVm(PeerPing(kPeer, 1, 1, 0)).verdict, Verdict::kAccept);
  const Decision ping2 = h.FromVm(VmPing(kPeer2, 2, 1));
  EXPECT_EQ(ping2.verdict, Verdict::kDrop);
  EXPECT_EQ(ping2.rule, 2);
  // Ping 1 stops; within the ICMP timeout a new ping is still refused...
  h.clock.AdvanceSeconds(2);
  EXPECT_EQ(h.FromVm(VmPing(kPeer2, 3, 1)).verdict, Verdict::kDrop);
  // ...and passes once ping 1's entry expired (3 s after its last packet).
  h.clock.AdvanceSeconds(1.5);
  EXPECT_EQ(h.FromVm(VmPing(kPeer2, 4, 1)).verdict, Verdict::kAccept);
}

// nwfq's connlimit idle option (not in the kernel): an ssh session left idle for longer than
// the limit stops counting, so a new one from the same source passes; without the option the
// idle session keeps its slot for the whole TCP established timeout.
TEST(Scenario, ConnlimitIdleLimitFreesTheSlotOfAnIdleSession) {
  const std::vector<ConcreteRule> rules = {
      Rule(Action::kDrop, Direction::kIn, Protocol::kTcp, {U(Attr::kConnlimitAbove, 1)}, 400),
      Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}, 500),
      Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)};
  for (const uint32_t idle_limit : {0u, 60u}) {
    SCOPED_TRACE(idle_limit);
    EngineOptions o;
    o.connlimit.idle_limit_seconds = idle_limit;
    Harness h(rules, o);
    EXPECT_EQ(h.ToVm(PeerTcp(kPeer, 40000, 22, kSyn, 5000)).verdict, Verdict::kAccept);
    EXPECT_EQ(h.FromVm(VmTcp(kPeer, 22, 40000, kSyn | kAck, 100, 5001)).verdict, Verdict::kAccept);
    EXPECT_EQ(h.ToVm(PeerTcp(kPeer, 40000, 22, kAck, 5001, 101)).verdict, Verdict::kAccept);
    // While the first session is active, a second from the same source is over the limit.
    EXPECT_EQ(h.ToVm(PeerTcp(kPeer, 40001, 22, kSyn, 7000)).verdict, Verdict::kDrop);
    h.clock.AdvanceSeconds(61);
    const Verdict after_idle = h.ToVm(PeerTcp(kPeer, 40002, 22, kSyn, 9000)).verdict;
    EXPECT_EQ(after_idle, idle_limit == 0 ? Verdict::kDrop : Verdict::kAccept);
  }
}

// Finding i.11: conntrack details that decide verdicts.
// A packet that cannot be parsed gets the configured malformed verdict before any rule,
// counted per reason (nwfqd --malformed, nwfqctl replay --malformed).
TEST(Scenario, MalformedVerdictIsConfigurable) {
  auto truncated = PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).Tcp(1, 22, 0x02).Build();
  truncated.resize(14 + 20 + 10);  // cut inside the TCP header: shorter than its IP length
  const std::vector<ConcreteRule> accept_all = {
      Rule(Action::kAccept, Direction::kInOut, Protocol::kAll, {}, 500, false)};
  for (const Verdict want : {Verdict::kDrop, Verdict::kAccept}) {
    EngineOptions o;
    o.malformed_verdict = want;
    Harness h(accept_all, o);
    const Decision d = h.FromVm(truncated);
    EXPECT_EQ(d.verdict, want);
    EXPECT_EQ(d.reason, Reason::kMalformed);
    EXPECT_EQ(d.malformed, Malformed::kTruncatedIpv4);
    EXPECT_EQ(h.engine.counters().malformed[static_cast<int>(Malformed::kTruncatedIpv4)], 1u);
  }
}

TEST(Scenario, ConntrackDetailsDecide) {
  Harness h({Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
             Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  // A bare ACK is picked up as NEW (tcp_loose) and accepted by the stateful in rule.
  EXPECT_DECISION(h.ToVm(PeerTcp(kPeer, 41000, 22, kAck, 100, 200)), kAccept, kNew, kOriginal);
  // A bare FIN is INVALID: no stateful rule matches, the drop-all does.
  const Decision fin = h.ToVm(PeerTcp(kPeer, 41001, 22, kFin, 100, 0));
  EXPECT_EQ(fin.ct_state, ct::State::kInvalid);
  EXPECT_EQ(fin.verdict, Verdict::kDrop);
  // An echo reply without a request is INVALID.
  const Decision reply = h.ToVm(PeerPing(kPeer, 77, 1, 0));
  EXPECT_EQ(reply.ct_state, ct::State::kInvalid);
  EXPECT_EQ(reply.verdict, Verdict::kDrop);
}

// Finding i.11: a dropped first packet leaves no connection; the same packet accepted later
// is NEW again.
TEST(Scenario, DroppedFirstPacketLeavesNoState) {
  Harness h({Rule(Action::kDrop, Direction::kOut, Protocol::kUdp, {U(Attr::kDstPortStart, 9)}, 100),
             Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {}, 500),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto probe = PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).Udp(5000, 9).Build();
  EXPECT_DECISION(h.FromVm(probe), kDrop, kNew, kOriginal);
  // The peer's answer finds no connection: NEW in the reverse direction, dropped by FO.
  const auto back = PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4(kPeer, kVm).Udp(9, 5000).Build();
  EXPECT_DECISION(h.ToVm(back), kDrop, kNew, kOriginal);
  EXPECT_DECISION(h.FromVm(probe), kDrop, kNew, kOriginal);
}

// Semantics (i).6 / demo D: IPv6 neighbour discovery is UNTRACKED, so a stateful icmpv6 out
// rule misses it and all-ipv6 drop catches it; IPv4 is unfiltered by IPv6-only rules.
TEST(Scenario, Ipv6NeighbourDiscoveryUntracked) {
  Harness h(
      {Rule(Action::kAccept, Direction::kOut, Protocol::kIcmpv6),
       Rule(Action::kAccept, Direction::kIn, Protocol::kTcpIpv6, {U(Attr::kDstPortStart, 22)}),
       Rule(Action::kDrop, Direction::kInOut, Protocol::kAllIpv6, {}, 1000)});
  const auto ns = PacketBuilder()
                      .Eth(kVmMac, kPeerMac)
                      .Ipv6("2001:db8::2", "ff02::1:ff00:3")
                      .Icmpv6(135, 0)
                      .Payload(20)
                      .Build();
  const Decision d = h.FromVm(ns);
  EXPECT_EQ(d.ct_state, ct::State::kUntracked);
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  EXPECT_EQ(d.rule, 2);
  const auto echo6 = PacketBuilder()
                         .Eth(kVmMac, kPeerMac)
                         .Ipv6("2001:db8::2", "2001:db8::3")
                         .Icmpv6(128, 0, 1, 1)
                         .Build();
  EXPECT_DECISION(h.FromVm(echo6), kAccept, kNew, kOriginal);
  // No IPv4 rules at all: IPv4 passes (fell off).
  const Decision v4 = h.FromVm(VmPing(kPeer, 3, 1));
  EXPECT_EQ(v4.verdict, Verdict::kAccept);
  EXPECT_EQ(v4.reason, Reason::kFellOff);
}

// state='NONE' on an icmpv6 rule with a type: no state match at all, like any other
// state='NONE' rule (real libvirt 9.0: `FI -p ipv6-icmp --icmpv6-type 135 -j RETURN`,
// tests/oracle/reference/state-none-icmp; the semantics doc's finding i.4 said it kept
// NEW,ESTABLISHED), so it does match ND, which is UNTRACKED; so does statematch='false'.
TEST(Scenario, StateNoneIcmpv6TypeMatchesNd) {
  const auto ns = PacketBuilder()
                      .Eth(kVmMac, kPeerMac)
                      .Ipv6("2001:db8::2", "ff02::1:ff00:3")
                      .Icmpv6(135, 0)
                      .Payload(20)
                      .Build();
  Harness none({Rule(Action::kAccept, Direction::kOut, Protocol::kIcmpv6,
                     {U(Attr::kType, 135), States(kStateNone)}),
                Rule(Action::kDrop, Direction::kInOut, Protocol::kAllIpv6, {}, 1000)});
  EXPECT_EQ(none.FromVm(ns).verdict, Verdict::kAccept);
  Harness stateless(
      {Rule(Action::kAccept, Direction::kOut, Protocol::kIcmpv6, {U(Attr::kType, 135)}, 500, false),
       Rule(Action::kDrop, Direction::kInOut, Protocol::kAllIpv6, {}, 1000)});
  EXPECT_EQ(stateless.FromVm(ns).verdict, Verdict::kAccept);
}

// Finding i.6: an out icmp rule with only srcmacaddr has no reverse instance: the replies of
// the pings it allows are dropped.
TEST(Scenario, SrcMacOnlyRuleDropsReplies) {
  Harness h({Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp,
                  {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02")}),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  EXPECT_EQ(h.FromVm(VmPing(kPeer, 5, 1)).verdict, Verdict::kAccept);
  EXPECT_EQ(h.ToVm(PeerPing(kPeer, 5, 1, 0)).verdict, Verdict::kDrop);
}

// Finding i.9: return at the iptables level is a stateless pass in both directions.
TEST(Scenario, ReturnIsStatelessPass) {
  Harness h({Rule(Action::kReturn, Direction::kOut, Protocol::kTcp, {U(Attr::kDstPortStart, 80)}),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const Decision fin = h.ToVm(PeerTcp(kPeer, 80, 40000, kFin));  // INVALID, still passes
  EXPECT_EQ(fin.verdict, Verdict::kAccept);
  EXPECT_EQ(fin.rule, 0);
  EXPECT_EQ(h.FromVm(VmTcp(kPeer, 40000, 80, kSyn)).verdict, Verdict::kAccept);
}

// Finding i.2: continue means "no verdict, next rule" (libvirt would refuse it at L3).
TEST(Scenario, ContinueFallsThrough) {
  Harness h({Rule(Action::kContinue, Direction::kInOut, Protocol::kTcp),
             Rule(Action::kReject, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const Decision d = h.FromVm(VmTcp(kPeer, 1, 2, kSyn));
  EXPECT_EQ(d.verdict, Verdict::kReject);
  EXPECT_EQ(d.rule, 1);
}

TEST(Scenario, Layer2DropsBeforeConntrack) {
  Harness h({Rule(Action::kDrop, Direction::kOut, Protocol::kMac,
                  {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02", true)}),
             Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {}, 500),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto spoofed = PacketBuilder()
                           .Eth(nwfq::testing::ParseMac("52:54:00:00:00:09"), kPeerMac)
                           .Ipv4(kVm, kPeer)
                           .Udp(1000, 2000)
                           .Build();
  const Decision d = h.FromVm(spoofed);
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  EXPECT_EQ(d.rule, 0);
  EXPECT_FALSE(d.ct_looked_at);
  // ARP is not looked at by conntrack and passes L2 (no L2 rule matches): '-'.
  const auto arp = PacketBuilder()
                       .Eth(kVmMac, nwfq::testing::kBroadcastMac)
                       .Arp(1, kVmMac, kVm, {}, "198.18.0.1")
                       .Build();
  const Decision a = h.FromVm(arp);
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_FALSE(a.ct_looked_at);
}

TEST(Scenario, BindingsHaveSeparateConntrack) {
  Engine e(Harness::Small({}));
  InstantiatedBinding a = Bind({Rule(Action::kAccept, Direction::kOut, Protocol::kUdp),
                                Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  InstantiatedBinding b = a;
  b.portdev = "vnet1";
  ASSERT_TRUE(e.SetBinding(a).ok());
  ASSERT_TRUE(e.SetBinding(b).ok());
  const auto out = PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).Udp(1000, 53).Build();
  const auto back = PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4(kPeer, kVm).Udp(53, 1000).Build();
  PacketInput in;
  in.bytes = out;
  EXPECT_EQ(e.Decide("vnet0", View::kFromVm, in, 1).verdict, Verdict::kAccept);
  in.bytes = back;
  EXPECT_EQ(e.Decide("vnet1", View::kToVm, in, 2).verdict, Verdict::kDrop);  // not vnet1's
  EXPECT_EQ(e.Decide("vnet0", View::kToVm, in, 3).verdict, Verdict::kAccept);
  EXPECT_EQ(e.Decide("vnet9", View::kToVm, in, 4).reason, Reason::kNoBinding);
}

TEST(Scenario, MalformedAndChecksums) {
  Harness h({Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto trunc =
      PacketBuilder(PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4(kPeer, kVm).Tcp(1, 22, kSyn))
          .Truncate(30)
          .Build();
  const Decision m = h.ToVm(trunc);
  EXPECT_EQ(m.reason, Reason::kMalformed);
  EXPECT_EQ(m.verdict, Verdict::kDrop);
  EXPECT_EQ(m.malformed, Malformed::kTruncatedIpv4);
  EXPECT_EQ(h.engine.counters().malformed[static_cast<int>(Malformed::kTruncatedIpv4)], 1u);
  // A bad TCP checksum is INVALID (kernel: nf_conntrack_checksum=1)...
  const auto bad = PacketBuilder()
                       .Eth(kPeerMac, kVmMac)
                       .Ipv4(kPeer, kVm)
                       .Tcp(40000, 22, kSyn)
                       .CorruptChecksum()
                       .Build();
  const Decision d = h.ToVm(bad);
  EXPECT_EQ(d.ct_state, ct::State::kInvalid);
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  // ...unless the kernel said the checksum is not verified yet (offload).
  PacketInput in;
  in.bytes = bad;
  in.checksum_unverified = true;
  const Decision off = h.engine.Decide("vnet0", View::kToVm, in, h.clock.Now());
  EXPECT_EQ(off.ct_state, ct::State::kNew);
  EXPECT_EQ(off.verdict, Verdict::kAccept);
}

TEST(Scenario, VlanTaggedFramesBypassLayer3) {
  Harness h({Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto tagged =
      PacketBuilder().Eth(kVmMac, kPeerMac).Vlan(5).Ipv4(kVm, kPeer).Udp(1, 2).Build();
  const Decision d = h.FromVm(tagged);
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_FALSE(d.ct_looked_at);
}

// The datagram is reassembled before conntrack and the chains (engine/defrag.h; more in
// defrag_test.cc): a fragment is held until its datagram is complete, and the one that
// completes it carries the datagram's decision, which the held ones are released with.
TEST(Scenario, FragmentsShareTheirDatagramsDecision) {
  Harness h({Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {U(Attr::kDstPortStart, 53)}),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  std::vector<Released> released;
  for (const auto& [dport, want] :
       {std::pair<uint16_t, Verdict>{53, Verdict::kAccept}, {54, Verdict::kDrop}}) {
    PacketBuilder d;
    d.Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).IpId(dport).Udp(1000, dport).Payload(100);
    const auto last = PacketBuilder(d).Fragment(56, 52, false).Build();
    const auto first = PacketBuilder(d).Fragment(0, 56, true).Build();
    PacketInput in;
    in.bytes = last;
    in.token = 7;
    const Decision held = h.engine.Decide("vnet0", View::kFromVm, in, h.clock.Now());
    EXPECT_TRUE(held.held);
    EXPECT_EQ(held.reason, Reason::kFragment);
    h.engine.TakeReleased(&released);
    EXPECT_TRUE(released.empty());
    in.bytes = first;
    in.token = 8;
    const Decision d8 = h.engine.Decide("vnet0", View::kFromVm, in, h.clock.Now());
    EXPECT_FALSE(d8.held);
    EXPECT_TRUE(d8.reassembled);
    EXPECT_EQ(d8.verdict, want) << dport;
    EXPECT_EQ(d8.ct_state, ct::State::kNew);
    h.engine.TakeReleased(&released);
    ASSERT_EQ(released.size(), 1u);
    EXPECT_EQ(released[0].token, 7u);
    EXPECT_EQ(released[0].decision.verdict, want) << dport;
    EXPECT_EQ(released[0].decision.rule, d8.rule);
  }
  // A later fragment whose first never comes: held, then dropped with the datagram.
  PacketBuilder orphan;
  orphan.Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).IpId(13).Udp(1000, 53).Payload(100);
  const Decision o = h.FromVm(PacketBuilder(orphan).Fragment(56, 52, false).Build());
  EXPECT_TRUE(o.held);
  h.engine.FlushFragments();
  h.engine.TakeReleased(&released);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].decision.verdict, Verdict::kDrop);
  EXPECT_EQ(released[0].decision.frag, FragDrop::kIncomplete);
}

TEST(Scenario, NetworkLayerInputAsFromNfqueue) {
  Harness h({Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto syn = PacketBuilder().Ipv4(kPeer, kVm).Tcp(40000, 22, kSyn).BuildNetwork();
  PacketInput in;
  in.bytes = syn;
  in.layer = Layer::kNetwork;
  in.ethertype = 0x0800;
  const Decision d = h.engine.Decide("vnet0", View::kToVm, in, h.clock.Now());
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.ct_state, ct::State::kNew);
}

TEST(Scenario, ExplainNamesEveryRuleLookedAt) {
  Harness h({Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  PacketInput in;
  const auto f = PeerTcp(kPeer, 40000, 80, kSyn);
  in.bytes = f;
  std::string text;
  const Decision d = h.engine.Explain("vnet0", View::kToVm, in, h.clock.Now(), &text);
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  EXPECT_NE(text.find("test:1"), std::string::npos) << text;
  EXPECT_NE(text.find("no: --dport 22"), std::string::npos) << text;
  EXPECT_NE(text.find("test:2"), std::string::npos) << text;
  EXPECT_NE(text.find("matched"), std::string::npos) << text;
}

TEST(Scenario, RuleCounters) {
  Harness h({Rule(Action::kAccept, Direction::kOut, Protocol::kUdp),
             Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto out = PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).Udp(1000, 53).Build();
  h.FromVm(out);
  h.FromVm(out);
  uint64_t fi_udp = 0;
  for (const RuleCounter& c : h.engine.rule_counters("vnet0")) {
    if (c.rule == 0 && c.chain == "FI") fi_udp = c.packets;
  }
  EXPECT_EQ(fi_udp, 2u);
}

}  // namespace
}  // namespace nwfq::engine
