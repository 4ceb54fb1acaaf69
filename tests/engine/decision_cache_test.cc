// The per-connection decision cache (engine.cc, CachedDecision): every decision and every
// rule counter must be what evaluating each packet gives. The reference run goes through
// Engine::Explain, which never uses the cache (and scans chains linearly); the run under
// test goes through Engine::Decide. Same rules, same packets, same clock.
#include <gtest/gtest.h>

#include <random>

#include "engine/engine.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::kPeerMac;
using nwfq::testing::kVmMac;
using nwfq::testing::PacketBuilder;

constexpr const char* kVm = "198.18.0.2";

// Rules that read cached-keyed fields (dscp), per-packet fields (tcp flags), ct state,
// continue rules (counted on every packet) and a catch-all; 40 filler rules so that the
// classifier is built.
std::vector<ConcreteRule> MixedRules() {
  std::vector<ConcreteRule> r;
  for (int i = 0; i < 40; ++i) {
    r.push_back(Rule(Action::kAccept, Direction::kIn, Protocol::kTcp,
                     {U(Attr::kDstPortStart, static_cast<uint32_t>(2000 + i))}));
  }
  r.push_back(Rule(Action::kContinue, Direction::kInOut, Protocol::kUdp, {}));
  r.push_back(Rule(Action::kDrop, Direction::kOut, Protocol::kUdp, {U(Attr::kDscp, 2)}));
  r.push_back(Rule(Action::kAccept, Direction::kOut, Protocol::kUdp,
                   {U(Attr::kDstPortStart, 53), U(Attr::kDstPortEnd, 60)}));
  r.push_back(Rule(Action::kAccept, Direction::kIn, Protocol::kUdp, {U(Attr::kDstPortStart, 53)}));
  r.push_back(Rule(Action::kReject, Direction::kOut, Protocol::kTcp,
                   {U(Attr::kDstPortStart, 80), Flags(0x02, 0x02)}));
  r.push_back(Rule(Action::kAccept, Direction::kOut, Protocol::kTcp, {U(Attr::kDstPortStart, 80)}));
  r.push_back(Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp, {U(Attr::kType, 8)}));
  r.push_back(Rule(Action::kAccept, Direction::kInOut, Protocol::kIcmp, {States(kStateRelated)}));
  r.push_back(Rule(Action::kReturn, Direction::kIn, Protocol::kUdp, {U(Attr::kSrcPortStart, 7)}));
  r.push_back(Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}));
  return r;
}

struct Flow {
  std::string peer;
  uint16_t vm_port, peer_port;
  int kind;  // 0 udp, 1 tcp, 2 icmp echo
};

class Traffic {
 public:
  explicit Traffic(uint32_t seed) : rng_(seed) {
    static const char* kPeers[] = {"198.18.0.3", "198.18.0.4", "198.18.1.7"};
    static const uint16_t kPorts[] = {53, 55, 60, 80, 7, 2001, 4000};
    for (int i = 0; i < 24; ++i) {
      flows_.push_back(
          {kPeers[N(3)], static_cast<uint16_t>(30000 + i), kPorts[N(7)], static_cast<int>(N(3))});
    }
  }
  uint32_t N(uint32_t n) { return rng_() % n; }

  // One packet of a random flow in a random direction, with a random TOS and TCP flags.
  std::vector<uint8_t> Next(bool& from_vm) {
    const Flow& f = flows_[N(static_cast<uint32_t>(flows_.size()))];
    from_vm = N(3) != 0;
    PacketBuilder b;
    b.Eth(from_vm ? kVmMac : kPeerMac, from_vm ? kPeerMac : kVmMac);
    b.Ipv4(from_vm ? kVm : f.peer, from_vm ? f.peer : kVm);
    b.Tos(N(4) == 0 ? 0x08 : 0);  // dscp 2 now and then
    const uint16_t sp = from_vm ? f.vm_port : f.peer_port;
    const uint16_t dp = from_vm ? f.peer_port : f.vm_port;
    switch (f.kind) {
      case 0:
        b.Udp(sp, dp);
        break;
      case 1: {
        static const uint8_t kFlags[] = {0x02, 0x12, 0x10, 0x18, 0x11, 0x10};
        b.Tcp(sp, dp, kFlags[N(6)], 1000 + N(3) * 100, 5000);
        break;
      }
      default:
        b.Icmp(from_vm ? 8 : 0, 0, f.vm_port, static_cast<uint16_t>(N(100)));
        break;
    }
    return b.Build();
  }

 private:
  std::mt19937 rng_;
  std::vector<Flow> flows_;
};

EngineOptions Opts() {
  EngineOptions o;
  o.conntrack_capacity = 4096;
  return o;
}

void ExpectSame(const Decision& a, const Decision& b, int k) {
  EXPECT_EQ(a.verdict, b.verdict) << "packet " << k;
  EXPECT_EQ(a.reason, b.reason) << "packet " << k;
  EXPECT_EQ(a.rule, b.rule) << "packet " << k;
  EXPECT_EQ(a.ct_state, b.ct_state) << "packet " << k;
  EXPECT_EQ(a.ct_dir, b.ct_dir) << "packet " << k;
}

void ExpectSameCounters(const Engine& a, const Engine& b) {
  const auto ca = a.rule_counters("vnet0"), cb = b.rule_counters("vnet0");
  ASSERT_EQ(ca.size(), cb.size());
  for (size_t i = 0; i < ca.size(); ++i) {
    EXPECT_EQ(ca[i].rule, cb[i].rule);
    EXPECT_EQ(ca[i].chain, cb[i].chain);
    EXPECT_EQ(ca[i].packets, cb[i].packets) << "rule " << ca[i].rule << " " << ca[i].chain;
    EXPECT_EQ(ca[i].bytes, cb[i].bytes) << "rule " << ca[i].rule << " " << ca[i].chain;
  }
}

class DecisionCache : public ::testing::TestWithParam<uint32_t> {};

TEST_P(DecisionCache, SameDecisionsAndCountersAsEvaluatingEveryPacket) {
  const InstantiatedBinding binding = Bind(MixedRules());
  Engine cached(Opts()), reference(Opts());
  ASSERT_TRUE(cached.SetBinding(binding).ok());
  ASSERT_TRUE(reference.SetBinding(binding).ok());
  Traffic t(GetParam());
  ct::Nanos now = 1'000'000'000;
  std::string why;
  for (int k = 0; k < 4000; ++k) {
    bool from_vm = false;
    const auto f = t.Next(from_vm);
    PacketInput in;
    in.bytes = f;
    const View view = from_vm ? (k % 5 == 0 ? View::kVmToHost : View::kFromVm) : View::kToVm;
    now += 1'000'000;
    const Decision a = cached.Decide("vnet0", view, in, now);
    const Decision b = reference.Explain("vnet0", view, in, now, &why);
    ExpectSame(a, b, k);
    if (::testing::Test::HasFailure()) return;
  }
  ExpectSameCounters(cached, reference);
  EXPECT_EQ(reference.counters().decision_cache_hits, 0u);
  EXPECT_GT(cached.counters().decision_cache_hits, 1000u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, DecisionCache, ::testing::Values(1u, 5u, 77u));

std::vector<uint8_t> VmUdp(uint16_t sport, uint16_t dport, uint8_t tos = 0) {
  return PacketBuilder()
      .Eth(kVmMac, kPeerMac)
      .Ipv4(kVm, "198.18.0.3")
      .Tos(tos)
      .Udp(sport, dport)
      .Build();
}
std::vector<uint8_t> PeerUdp(uint16_t sport, uint16_t dport) {
  return PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4("198.18.0.3", kVm).Udp(sport, dport).Build();
}

Decision Send(Engine& e, View view, const std::vector<uint8_t>& f, ct::Nanos now) {
  PacketInput in;
  in.bytes = f;
  return e.Decide("vnet0", view, in, now);
}

// A reload (SetBinding) changes the decision of an established connection at its next
// packet, and the counters of the new program start from zero.
TEST(DecisionCacheInvalidation, ReloadTakesEffectAtOnce) {
  Engine e(Opts());
  std::vector<ConcreteRule> accept = {Rule(Action::kAccept, Direction::kOut, Protocol::kUdp)};
  ASSERT_TRUE(e.SetBinding(Bind(accept)).ok());
  ct::Nanos now = 1'000'000'000;
  for (int i = 0; i < 3; ++i) {
    const Decision d = Send(e, View::kFromVm, VmUdp(4000, 53), now += 1000);
    EXPECT_EQ(d.verdict, Verdict::kAccept);
    EXPECT_EQ(d.rule, 0);
  }
  EXPECT_EQ(e.counters().decision_cache_hits, 1u);  // packets 1 (tentative) and 2 evaluate
  std::vector<ConcreteRule> drop = {Rule(Action::kDrop, Direction::kOut, Protocol::kUdp),
                                    Rule(Action::kAccept, Direction::kOut, Protocol::kUdp)};
  ASSERT_TRUE(e.SetBinding(Bind(drop)).ok());
  const Decision d = Send(e, View::kFromVm, VmUdp(4000, 53), now += 1000);
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  EXPECT_EQ(d.rule, 0);
  EXPECT_EQ(e.counters().decision_cache_hits, 1u);
  const auto c = e.rule_counters("vnet0");
  uint64_t packets = 0;
  for (const RuleCounter& rc : c) packets += rc.packets;
  EXPECT_EQ(packets, 1u);
}

// The ct state is part of the key: a UDP flow is NEW until the reply, then ESTABLISHED; a
// rule for ESTABLISHED only must start deciding at once.
TEST(DecisionCacheInvalidation, StateChangeIsSeen) {
  Engine e(Opts());
  std::vector<ConcreteRule> rules = {
      Rule(Action::kDrop, Direction::kOut, Protocol::kUdp, {States(kStateEstablished)}),
      Rule(Action::kAccept, Direction::kInOut, Protocol::kUdp, {}),
  };
  ASSERT_TRUE(e.SetBinding(Bind(rules)).ok());
  ct::Nanos now = 1'000'000'000;
  for (int i = 0; i < 3; ++i) {
    const Decision d = Send(e, View::kFromVm, VmUdp(4000, 53), now += 1000);
    EXPECT_EQ(d.ct_state, ct::State::kNew);
    EXPECT_EQ(d.verdict, Verdict::kAccept);
  }
  EXPECT_EQ(Send(e, View::kToVm, PeerUdp(53, 4000), now += 1000).ct_state, ct::State::kEstablished);
  const Decision d = Send(e, View::kFromVm, VmUdp(4000, 53), now += 1000);
  EXPECT_EQ(d.ct_state, ct::State::kEstablished);
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  EXPECT_EQ(d.rule, 0);
}

// Keyed per-packet fields: the TOS of a packet changes the decision of a dscp rule even on
// an established connection; TCP flags rules make the flow bypass the cache.
TEST(DecisionCacheInvalidation, PerPacketFields) {
  Engine e(Opts());
  std::vector<ConcreteRule> rules = {
      Rule(Action::kDrop, Direction::kOut, Protocol::kUdp, {U(Attr::kDscp, 2)}),
      Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {}),
  };
  ASSERT_TRUE(e.SetBinding(Bind(rules)).ok());
  ct::Nanos now = 1'000'000'000;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(Send(e, View::kFromVm, VmUdp(4000, 53), now += 1000).verdict, Verdict::kAccept);
  }
  EXPECT_EQ(Send(e, View::kFromVm, VmUdp(4000, 53, 0x08), now += 1000).verdict, Verdict::kDrop);
  EXPECT_EQ(Send(e, View::kFromVm, VmUdp(4000, 53), now += 1000).verdict, Verdict::kAccept);

  Engine f(Opts());
  std::vector<ConcreteRule> flags = {
      Rule(Action::kDrop, Direction::kOut, Protocol::kTcp, {Flags(0x01, 0x01)}),
      Rule(Action::kAccept, Direction::kInOut, Protocol::kTcp, {}),
  };
  ASSERT_TRUE(f.SetBinding(Bind(flags)).ok());
  auto vm_tcp = [](uint8_t fl, uint32_t seq, uint32_t ack) {
    return PacketBuilder()
        .Eth(kVmMac, kPeerMac)
        .Ipv4(kVm, "198.18.0.3")
        .Tcp(4000, 80, fl, seq, ack)
        .Build();
  };
  EXPECT_EQ(Send(f, View::kFromVm, vm_tcp(0x02, 100, 0), now += 1000).verdict, Verdict::kAccept);
  const auto synack = PacketBuilder()
                          .Eth(kPeerMac, kVmMac)
                          .Ipv4("198.18.0.3", kVm)
                          .Tcp(80, 4000, 0x12, 900, 101)
                          .Build();
  EXPECT_EQ(Send(f, View::kToVm, synack, now += 1000).verdict, Verdict::kAccept);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Send(f, View::kFromVm, vm_tcp(0x10, 101, 901), now += 1000).verdict,
              Verdict::kAccept);
  }
  EXPECT_EQ(Send(f, View::kFromVm, vm_tcp(0x11, 101, 901), now += 1000).verdict, Verdict::kDrop);
  EXPECT_EQ(f.counters().decision_cache_hits, 0u);
}

}  // namespace
}  // namespace nwfq::engine

namespace nwfq::engine {
namespace {

// DecideBatch must give what Decide gives packet by packet: same decisions, rule
// counters, engine counters and conntrack state; batches of every size from 1 to 40
// (shorter and longer than the prefetch distances), two bindings interleaved and
// packets for an unknown interface.
TEST(DecideBatch, SameAsDecideOneByOne) {
  const InstantiatedBinding b0 = Bind(MixedRules());
  InstantiatedBinding b1 = Bind(MixedRules());
  b1.portdev = "vnet1";
  Engine batched(Opts()), single(Opts());
  for (Engine* e : {&batched, &single}) {
    ASSERT_TRUE(e->SetBinding(b0).ok());
    ASSERT_TRUE(e->SetBinding(b1).ok());
  }
  Traffic t(9);
  ct::Nanos now = 1'000'000'000;
  std::vector<std::vector<uint8_t>> frames;
  std::vector<Engine::BatchPacket> batch;
  std::vector<Decision> out;
  int k = 0;
  for (size_t size = 1; size <= 40; ++size) {
    frames.clear();
    batch.clear();
    for (size_t i = 0; i < size; ++i) {
      bool from_vm = false;
      frames.push_back(t.Next(from_vm));
      Engine::BatchPacket p;
      p.portdev = (i % 7 == 3) ? "vnet1" : (i % 11 == 5 ? "nope0" : "vnet0");
      p.view = from_vm ? (i % 5 == 0 ? View::kVmToHost : View::kFromVm) : View::kToVm;
      p.packet.checksum_unverified = i % 4 == 1;
      batch.push_back(p);
    }
    for (size_t i = 0; i < size; ++i) batch[i].packet.bytes = frames[i];
    now += 1'000'000;
    out.assign(size + 1, Decision{});
    out[size].rule = 12345;  // beyond the batch: untouched
    batched.DecideBatch(batch, now, out);
    EXPECT_EQ(out[size].rule, 12345);
    for (size_t i = 0; i < size; ++i, ++k) {
      const Decision d = single.Decide(batch[i].portdev, batch[i].view, batch[i].packet, now);
      ExpectSame(out[i], d, k);
      EXPECT_EQ(out[i].l2_rule, d.l2_rule) << "packet " << k;
    }
    if (::testing::Test::HasFailure()) return;
  }
  ExpectSameCounters(batched, single);
  const auto cb = batched.rule_counters("vnet1"), cs = single.rule_counters("vnet1");
  ASSERT_EQ(cb.size(), cs.size());
  for (size_t i = 0; i < cb.size(); ++i) EXPECT_EQ(cb[i].packets, cs[i].packets);
  const EngineCounters a = batched.counters(), b = single.counters();
  EXPECT_EQ(a.packets, b.packets);
  EXPECT_EQ(a.no_binding, b.no_binding);
  EXPECT_GT(a.no_binding, 0u);
  EXPECT_EQ(a.decision_cache_hits, b.decision_cache_hits);
  EXPECT_GT(a.decision_cache_hits, 100u);
  EXPECT_EQ(batched.conntrack_table("vnet0")->size(), single.conntrack_table("vnet0")->size());
  EXPECT_EQ(batched.conntrack_table("vnet1")->size(), single.conntrack_table("vnet1")->size());
}

// Maintain() sweeps expired connections out of every binding's table (incrementally,
// within its budget), and leaves live ones.
TEST(Maintain, RemovesExpiredConnectionsAcrossBindings) {
  EngineOptions o;
  o.conntrack_capacity = 1024;
  Engine e(o);
  std::vector<ConcreteRule> accept = {Rule(Action::kAccept, Direction::kInOut, Protocol::kUdp)};
  InstantiatedBinding b0 = Bind(accept), b1 = Bind(accept);
  b1.portdev = "vnet1";
  ASSERT_TRUE(e.SetBinding(b0).ok());
  ASSERT_TRUE(e.SetBinding(b1).ok());
  ct::Nanos now = 1'000'000'000;
  for (uint16_t port = 1000; port < 1010; ++port) {
    PacketInput in;
    const auto f = VmUdp(port, 53);
    in.bytes = f;
    ASSERT_EQ(e.Decide("vnet0", View::kFromVm, in, now).verdict, Verdict::kAccept);
    ASSERT_EQ(e.Decide("vnet1", View::kFromVm, in, now).verdict, Verdict::kAccept);
  }
  EXPECT_EQ(e.conntrack_table("vnet0")->size(), 10u);
  EXPECT_EQ(e.conntrack_table("vnet1")->size(), 10u);
  // Not expired yet (UDP unreplied: 30 s): nothing removed, whatever the budget.
  EXPECT_EQ(e.Maintain(now + 10 * ct::kNanosPerSecond, 1 << 20), 0u);
  EXPECT_EQ(e.conntrack_table("vnet0")->size(), 10u);
  // A fresh connection on vnet0 that stays alive.
  const ct::Nanos later = now + 25 * ct::kNanosPerSecond;
  {
    PacketInput in;
    const auto f = VmUdp(2000, 53);
    in.bytes = f;
    ASSERT_EQ(e.Decide("vnet0", View::kFromVm, in, later).verdict, Verdict::kAccept);
  }
  const ct::Nanos expired = now + 40 * ct::kNanosPerSecond;
  // A small budget removes at most what it examines; repeated calls finish the job.
  const size_t slots =
      e.conntrack_table("vnet0")->slot_count() + e.conntrack_table("vnet1")->slot_count();
  size_t removed = e.Maintain(expired, 8);
  EXPECT_LE(removed, 8u);
  for (size_t spent = 8; spent < 4 * slots; spent += 64) removed += e.Maintain(expired, 64);
  EXPECT_EQ(removed, 20u);
  EXPECT_EQ(e.conntrack_table("vnet0")->size(), 1u);
  EXPECT_EQ(e.conntrack_table("vnet1")->size(), 0u);
}

}  // namespace
}  // namespace nwfq::engine
