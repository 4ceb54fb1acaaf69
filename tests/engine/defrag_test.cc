// IP fragment reassembly through the Engine facade: every fragment's final verdict (held
// ones resolved through TakeReleased, the rest flushed at the end as the end of a capture
// would) for orders, duplicates, overlaps, timeouts, memory bounds, tiny first fragments,
// IPv6 extension headers and checksums over the whole datagram.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "engine/engine.h"
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
constexpr const char* kVm6 = "2001:db8::2";
constexpr const char* kPeer6 = "2001:db8::3";

// VM may send UDP to port 53 and TCP to port 22 (v4 and v6); everything else is dropped.
std::vector<ConcreteRule> Rules() {
  return {Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {U(Attr::kDstPortStart, 53)}),
          Rule(Action::kAccept, Direction::kOut, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
          Rule(Action::kAccept, Direction::kOut, Protocol::kUdpIpv6, {U(Attr::kDstPortStart, 53)}),
          Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000),
          Rule(Action::kDrop, Direction::kInOut, Protocol::kAllIpv6, {}, 1000)};
}

struct Piece {
  uint16_t offset, len;
  bool more;
};

// Sends fragments (tokens 0, 1, ...) and resolves every one to its final outcome:
// "accept", "drop", "drop:<FragDropName>"; plus the decision of the packet that completed
// a datagram.
struct Defrag {
  explicit Defrag(EngineOptions o = {}) : engine(Small(o)) {
    binding = Bind(Rules());
    EXPECT_TRUE(engine.SetBinding(binding).ok());
  }
  static EngineOptions Small(EngineOptions o) {
    o.conntrack_capacity = 4096;
    return o;
  }
  static std::string Outcome(const Decision& d) {
    std::string s(d.verdict == Verdict::kAccept ? "accept" : "drop");
    if (d.frag != FragDrop::kNone) s += ":" + std::string(FragDropName(d.frag));
    return s;
  }
  void Settle() {
    engine.TakeReleased(&released);
    for (const Released& r : released) {
      EXPECT_EQ(outcome.count(r.token), 0u) << "token " << r.token << " settled twice";
      outcome[r.token] = Outcome(r.decision);
      decision[r.token] = r.decision;
    }
  }
  Decision Send(std::span<const uint8_t> bytes, View view = View::kFromVm, uint32_t wire_len = 0,
                Layer layer = Layer::kEthernet, uint16_t ethertype = 0) {
    PacketInput in;
    in.bytes = bytes;
    in.token = next++;
    in.layer = layer;
    in.ethertype = ethertype;
    in.wire_len = wire_len;
    const Decision d = engine.Decide("vnet0", view, in, clock.Now());
    if (!d.held) {
      outcome[in.token] = Outcome(d);
      decision[in.token] = d;
    }
    Settle();
    return d;
  }
  // Fragments of `datagram` in the order given; returns the outcomes in that order.
  std::vector<std::string> Play(const PacketBuilder& datagram, const std::vector<Piece>& pieces) {
    const uint64_t first = next;
    for (const Piece& p : pieces)
      Send(PacketBuilder(datagram).Fragment(p.offset, p.len, p.more).Build());
    engine.FlushFragments();
    Settle();
    std::vector<std::string> out;
    for (uint64_t t = first; t < next; ++t)
      out.push_back(outcome.count(t) ? outcome[t] : "unsettled");
    return out;
  }
  InstantiatedBinding binding;
  Engine engine;
  FakeClock clock{1'000'000'000};
  uint64_t next = 0;
  std::vector<Released> released;
  std::map<uint64_t, std::string> outcome;
  std::map<uint64_t, Decision> decision;
};

PacketBuilder Udp4(uint16_t dport, uint16_t id = 7) {
  PacketBuilder b;
  b.Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).IpId(id).Udp(1000, dport).Payload(100);  // 108 B
  return b;
}

struct Row {
  const char* name;
  uint16_t dport;
  std::vector<Piece> pieces;
  std::vector<std::string> want;
};

TEST(Defrag, SequencesOfOneDatagram) {
  const std::vector<Row> rows = {
      {"in order", 53, {{0, 56, true}, {56, 52, false}}, {"accept", "accept"}},
      {"last first", 53, {{56, 52, false}, {0, 56, true}}, {"accept", "accept"}},
      {"shuffled three",
       53,
       {{32, 32, true}, {64, 44, false}, {0, 32, true}},
       {"accept", "accept", "accept"}},
      {"denied port: all dropped by the rule",
       54,
       {{56, 52, false}, {0, 56, true}},
       {"drop", "drop"}},
      {"exact duplicate dropped alone",
       53,
       {{0, 56, true}, {0, 56, true}, {56, 52, false}},
       {"accept", "drop:duplicate", "accept"}},
      // [0,32) then [32,64) in order form one run: [16,48) lies inside it (IPFRAG_DUP).
      {"inside a run: duplicate",
       53,
       {{0, 32, true}, {32, 32, true}, {16, 32, true}, {64, 44, false}},
       {"accept", "accept", "drop:duplicate", "accept"}},
      // Out of order they are two runs: the same [16,48) overlaps (IPFRAG_OVERLAP).
      {"across two runs: overlap",
       53,
       {{32, 32, true}, {0, 32, true}, {16, 32, true}},
       {"drop:overlap", "drop:overlap", "drop:overlap"}},
      {"overlap kills the datagram",
       53,
       {{0, 56, true}, {48, 60, false}},
       {"drop:overlap", "drop:overlap"}},
      {"incomplete: dropped at the end", 53, {{0, 56, true}}, {"drop:incomplete datagram"}},
      {"hole: dropped at the end",
       53,
       {{0, 32, true}, {64, 44, false}},
       {"drop:incomplete datagram", "drop:incomplete datagram"}},
      {"two different ends",
       53,
       {{56, 52, false}, {0, 56, true}, {48, 60, false}},
       {"accept", "accept", "drop:incomplete datagram"}},
      {"last shorter than data seen",
       53,
       {{32, 40, true}, {8, 16, false}},
       {"drop:bad-length", "drop:bad-length"}},
  };
  for (const Row& r : rows) {
    Defrag h;
    EXPECT_EQ(h.Play(Udp4(r.dport), r.pieces), r.want) << r.name;
  }
}

// After an overlap killed the queue, the next fragment starts a new one, which never
// completes: the datagram is lost as a whole.
TEST(Defrag, FragmentAfterAKilledQueueStartsANewOne) {
  Defrag h;
  EXPECT_EQ(h.Play(Udp4(53), {{56, 52, false}, {40, 24, true}, {0, 56, true}}),
            (std::vector<std::string>{"drop:overlap", "drop:overlap", "drop:incomplete datagram"}));
}

TEST(Defrag, InterleavedDatagramsAreKeptApart) {
  Defrag h;
  const PacketBuilder a = Udp4(53, 1), b = Udp4(54, 2), c = Udp4(53, 3);
  h.Send(PacketBuilder(a).Fragment(56, 52, false).Build());  // 0
  h.Send(PacketBuilder(b).Fragment(0, 56, true).Build());    // 1
  h.Send(PacketBuilder(c).Fragment(0, 56, true).Build());    // 2
  h.Send(PacketBuilder(b).Fragment(56, 52, false).Build());  // 3: b complete
  h.Send(PacketBuilder(a).Fragment(0, 56, true).Build());    // 4: a complete
  h.engine.FlushFragments();
  h.Settle();
  EXPECT_EQ(h.outcome[0], "accept");
  EXPECT_EQ(h.outcome[4], "accept");
  EXPECT_EQ(h.outcome[1], "drop");
  EXPECT_EQ(h.outcome[3], "drop");
  EXPECT_EQ(h.outcome[2], "drop:incomplete datagram");
  EXPECT_TRUE(h.decision[4].reassembled);
  EXPECT_EQ(h.decision[0].rule, h.decision[4].rule);
  const EngineCounters c2 = h.engine.counters();
  EXPECT_EQ(c2.datagrams_reassembled, 2u);
  EXPECT_EQ(c2.frag_dropped[static_cast<int>(FragDrop::kIncomplete)], 1u);
}

TEST(Defrag, ConntrackSeesTheDatagramOnce) {
  Defrag h;
  h.Play(Udp4(53), {{56, 52, false}, {0, 56, true}});
  // One NEW connection; the first fragment (decided last) carries NEW/ORIGINAL.
  EXPECT_EQ(h.decision[1].ct_state, ct::State::kNew);
  EXPECT_EQ(h.decision[0].ct_state, ct::State::kNew);  // released with the same decision
  EXPECT_EQ(h.engine.conntrack_table("vnet0")->size(), 1u);
  // The rule counter counts the datagram once, with its whole length.
  uint64_t packets = 0, bytes = 0;
  for (const RuleCounter& c : h.engine.rule_counters("vnet0")) {
    if (c.rule == 0 && c.chain == "FI") {
      packets += c.packets;
      bytes += c.bytes;
    }
  }
  EXPECT_EQ(packets, 1u);
  EXPECT_EQ(bytes, 20u + 108u);
}

TEST(Defrag, TimeoutDropsEveryHeldFragment) {
  Defrag h;
  h.Send(PacketBuilder(Udp4(53)).Fragment(0, 32, true).Build());
  h.Send(PacketBuilder(Udp4(53)).Fragment(32, 32, true).Build());
  h.clock.Advance(29 * ct::kNanosPerSecond);
  h.engine.Maintain(h.clock.Now());
  h.Settle();
  EXPECT_TRUE(h.outcome.empty());  // ipfrag_time is 30 s
  h.clock.Advance(1 * ct::kNanosPerSecond);
  h.engine.Maintain(h.clock.Now());
  h.Settle();
  EXPECT_EQ(h.outcome[0], "drop:timeout");
  EXPECT_EQ(h.outcome[1], "drop:timeout");
  // The last piece now starts a new queue: the datagram is never delivered.
  h.Send(PacketBuilder(Udp4(53)).Fragment(64, 44, false).Build());
  EXPECT_EQ(h.outcome.count(2), 0u);
  EXPECT_EQ(h.engine.held_fragments(), 1u);
}

// A removed binding's held fragments are settled, dropped, by the next TakeReleased (nwfqd
// then issues their NFQUEUE verdicts); a binding installed again under the same name
// starts with no queue.
TEST(Defrag, RemoveBindingDropsItsHeldFragments) {
  Defrag h;
  h.Send(PacketBuilder(Udp4(53)).Fragment(0, 32, true).Build());
  h.Send(PacketBuilder(Udp4(53)).Fragment(32, 32, true).Build());
  EXPECT_TRUE(h.outcome.empty());
  ASSERT_EQ(h.engine.held_fragments(), 2u);
  h.engine.RemoveBinding("vnet0");
  EXPECT_EQ(h.engine.held_fragments(), 0u);
  h.Settle();
  EXPECT_EQ(h.outcome[0], "drop:binding-removed");
  EXPECT_EQ(h.outcome[1], "drop:binding-removed");
  EXPECT_EQ(h.decision[0].reason, Reason::kFragment);
  EXPECT_EQ(h.engine.counters().frag_dropped[static_cast<int>(FragDrop::kBindingRemoved)], 2u);
  h.Settle();  // settled once only
  EXPECT_EQ(h.released.size(), 0u);
  ASSERT_TRUE(h.engine.SetBinding(h.binding).ok());
  h.Send(PacketBuilder(Udp4(53)).Fragment(64, 44, false).Build());
  EXPECT_EQ(h.outcome.count(2), 0u);  // a new queue: the old fragments are gone
  EXPECT_EQ(h.engine.held_fragments(), 1u);
  h.engine.FlushFragments();
  h.Settle();
  EXPECT_EQ(h.outcome[2], "drop:incomplete datagram");
}

TEST(Defrag, TimerIsNotExtendedByLaterFragments) {
  Defrag h;
  h.Send(PacketBuilder(Udp4(53)).Fragment(0, 32, true).Build());
  h.clock.Advance(20 * ct::kNanosPerSecond);
  h.Send(PacketBuilder(Udp4(53)).Fragment(32, 32, true).Build());
  h.clock.Advance(10 * ct::kNanosPerSecond);                        // 30 s after the first
  h.Send(PacketBuilder(Udp4(53)).Fragment(64, 44, false).Build());  // expiry runs first
  EXPECT_EQ(h.outcome[0], "drop:timeout");
  EXPECT_EQ(h.outcome[1], "drop:timeout");
  EXPECT_EQ(h.outcome.count(2), 0u);  // held in a new queue
}

TEST(Defrag, Ipv6WaitsSixtySeconds) {
  Defrag h;
  PacketBuilder d;
  d.Eth(kVmMac, kPeerMac).Ipv6(kVm6, kPeer6).IpId(9).Udp(1000, 53).Payload(100);
  h.Send(PacketBuilder(d).Fragment(0, 56, true).Build());
  h.clock.Advance(45 * ct::kNanosPerSecond);
  h.engine.Maintain(h.clock.Now());
  h.Settle();
  EXPECT_TRUE(h.outcome.empty());
  h.Send(PacketBuilder(d).Fragment(56, 52, false).Build());
  EXPECT_EQ(h.outcome[0], "accept");
  EXPECT_EQ(h.outcome[1], "accept");
}

TEST(Defrag, MemoryBoundRefusesFragments) {
  EngineOptions o;
  o.defrag.max_fragments = 3;
  Defrag h(o);
  for (uint16_t id = 1; id <= 4; ++id)
    h.Send(PacketBuilder(Udp4(53, id)).Fragment(0, 56, true).Build());
  EXPECT_EQ(h.outcome[3], "drop:no-memory");
  EXPECT_EQ(h.engine.held_fragments(), 3u);
  // As in the kernel above ipfrag_high_thresh, nothing is evicted and every fragment is
  // refused, also one that would complete a queued datagram...
  h.Send(PacketBuilder(Udp4(53, 1)).Fragment(56, 52, false).Build());
  EXPECT_EQ(h.outcome[4], "drop:no-memory");
  EXPECT_EQ(h.outcome.count(0), 0u);
  EXPECT_EQ(h.engine.counters().frag_dropped[static_cast<int>(FragDrop::kNoMemory)], 2u);
  // ... until the queues' timers free the memory.
  h.clock.Advance(30 * ct::kNanosPerSecond);
  h.engine.Maintain(h.clock.Now());
  h.Settle();
  EXPECT_EQ(h.outcome[0], "drop:timeout");
  EXPECT_EQ(h.engine.held_fragments(), 0u);
  h.Send(PacketBuilder(Udp4(53, 9)).Fragment(56, 52, false).Build());
  h.Send(PacketBuilder(Udp4(53, 9)).Fragment(0, 56, true).Build());
  EXPECT_EQ(h.outcome[5], "accept");
  EXPECT_EQ(h.outcome[6], "accept");
}

TEST(Defrag, QueueBoundRefusesNewDatagrams) {
  EngineOptions o;
  o.defrag.max_queues = 2;
  Defrag h(o);
  for (uint16_t id = 1; id <= 3; ++id)
    h.Send(PacketBuilder(Udp4(53, id)).Fragment(0, 56, true).Build());
  EXPECT_EQ(h.outcome[2], "drop:no-memory");
  EXPECT_EQ(h.engine.held_fragments(), 2u);
}

TEST(Defrag, TinyFirstFragmentGetsPortVerdicts) {
  // The first fragment holds 8 bytes of the TCP header (ports, no flags): decided alone it
  // was malformed; reassembled, the SYN to port 22 is accepted and the one to 23 dropped.
  for (const auto& [dport, want] : {std::pair<uint16_t, const char*>{22, "accept"}, {23, "drop"}}) {
    Defrag h;
    PacketBuilder syn;
    syn.Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).IpId(5).Tcp(40000, dport, 0x02).Payload(40);
    const auto out = h.Play(syn, {{0, 8, true}, {8, 52, false}});
    EXPECT_EQ(out, (std::vector<std::string>{want, want})) << dport;
    EXPECT_EQ(h.decision[1].ct_state, ct::State::kNew) << dport;
    EXPECT_EQ(h.decision[1].reason, Reason::kRule) << dport;
  }
}

TEST(Defrag, Ipv6WithExtensionHeadersBeforeTheFragmentHeader) {
  for (const auto& [dport, want] : {std::pair<uint16_t, const char*>{53, "accept"}, {54, "drop"}}) {
    Defrag h;
    PacketBuilder d;
    d.Eth(kVmMac, kPeerMac)
        .Ipv6(kVm6, kPeer6)
        .Ipv6Ext(0)
        .Ipv6Ext(60)
        .IpId(77)
        .Udp(1000, dport)
        .Payload(100);
    const auto out = h.Play(d, {{56, 52, false}, {0, 56, true}});
    EXPECT_EQ(out, (std::vector<std::string>{want, want})) << dport;
    EXPECT_EQ(h.decision[1].ct_state, ct::State::kNew) << dport;  // checksum verified: good
  }
}

TEST(Defrag, Ipv6FirstFragmentWithoutTheUpperHeaderIsDropped) {
  Defrag h;
  PacketBuilder d;
  d.Eth(kVmMac, kPeerMac).Ipv6(kVm6, kPeer6).IpId(78).Udp(1000, 53).Payload(100);
  // 0..8 holds the UDP header: fine. A TCP header cut at 8 bytes is not (RFC 8200 4.5).
  PacketBuilder t;
  t.Eth(kVmMac, kPeerMac).Ipv6(kVm6, kPeer6).IpId(79).Tcp(4000, 22, 0x02).Payload(40);
  EXPECT_EQ(h.Play(t, {{0, 8, true}}), (std::vector<std::string>{"drop:truncated-first"}));
  EXPECT_EQ(h.Play(d, {{0, 8, true}, {8, 100, false}}),
            (std::vector<std::string>{"accept", "accept"}));
}

TEST(Defrag, Ipv6AtomicFragmentIsNotReassembled) {
  Defrag h;
  PacketBuilder d;
  d.Eth(kVmMac, kPeerMac).Ipv6(kVm6, kPeer6).IpId(80).Udp(1000, 53).Payload(20);
  const Decision got = h.Send(PacketBuilder(d).Fragment(0, 28, false).Build());
  EXPECT_FALSE(got.held);
  EXPECT_FALSE(got.reassembled);
  EXPECT_EQ(got.verdict, Verdict::kAccept);
  EXPECT_EQ(h.engine.held_fragments(), 0u);
}

TEST(Defrag, ChecksumIsVerifiedOverTheWholeDatagram) {
  struct Case {
    const char* name;
    bool corrupt;
    bool v6;
    ct::State want;
  };
  for (const Case& c : {Case{"good v4", false, false, ct::State::kNew},
                        Case{"bad v4", true, false, ct::State::kInvalid},
                        Case{"good v6", false, true, ct::State::kNew},
                        Case{"bad v6", true, true, ct::State::kInvalid}}) {
    Defrag h;
    PacketBuilder d;
    d.Eth(kVmMac, kPeerMac);
    if (c.v6) {
      d.Ipv6(kVm6, kPeer6);
    } else {
      d.Ipv4(kVm, kPeer);
    }
    d.IpId(3).Udp(1000, 53).Payload(301);  // odd length: the last fragment ends mid-word
    if (c.corrupt) d.CorruptChecksum();
    h.Play(d, {{104, 205, false}, {0, 48, true}, {48, 56, true}});
    EXPECT_EQ(h.decision[2].ct_state, c.want) << c.name;
    EXPECT_EQ(h.decision[0].ct_state, c.want) << c.name;
  }
}

TEST(Defrag, TcpChecksumOverTheWholeDatagram) {
  for (const bool corrupt : {false, true}) {
    Defrag h;
    PacketBuilder d;
    d.Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).IpId(4).Tcp(40000, 22, 0x02).Payload(1000);
    if (corrupt) d.CorruptChecksum();
    h.Play(d, {{0, 512, true}, {512, 508, false}});
    EXPECT_EQ(h.decision[1].ct_state, corrupt ? ct::State::kInvalid : ct::State::kNew);
  }
}

TEST(Defrag, TruncatedCopiesLeaveTheChecksumUnverified) {
  // NFQUEUE-style network-layer copies of 120 bytes of 548-byte fragments: the corrupt
  // checksum cannot be seen, as with PacketInput::checksum_unverified.
  Defrag h;
  PacketBuilder d;
  d.Ipv4(kVm, kPeer).IpId(6).Udp(1000, 53).Payload(1000).CorruptChecksum();
  const auto f0 = PacketBuilder(d).Fragment(0, 528, true).BuildNetwork();
  const auto f1 = PacketBuilder(d).Fragment(528, 480, false).BuildNetwork();
  const std::vector<uint8_t> c0(f0.begin(), f0.begin() + 120), c1(f1.begin(), f1.begin() + 120);
  h.Send(c1, View::kFromVm, static_cast<uint32_t>(f1.size()), Layer::kNetwork, 0x0800);
  const Decision got =
      h.Send(c0, View::kFromVm, static_cast<uint32_t>(f0.size()), Layer::kNetwork, 0x0800);
  EXPECT_TRUE(got.reassembled);
  EXPECT_EQ(got.verdict, Verdict::kAccept);
  EXPECT_EQ(got.ct_state, ct::State::kNew);
  EXPECT_EQ(h.outcome[0], "accept");
}

TEST(Defrag, OversizeDatagramIsDropped) {
  // Fragments covering [0, 65568): with its 20-byte header the datagram would be 65588
  // bytes, over 65535 (ip_frag_reasm: -E2BIG): every fragment is dropped.
  Defrag h;
  PacketBuilder d;
  d.Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).IpId(8).Udp(1000, 53).Payload(65560);
  std::vector<Piece> pieces;
  for (uint32_t off = 0; off < 57344; off += 8192)
    pieces.push_back({static_cast<uint16_t>(off), 8192, true});
  pieces.push_back({57344, 8184, true});
  pieces.push_back({65528, 40, false});
  const auto out = h.Play(d, pieces);
  EXPECT_EQ(out, std::vector<std::string>(pieces.size(), "drop:oversize"));
}

TEST(Defrag, BatchDecidesFragmentsAsDecideDoes) {
  Defrag h;
  const PacketBuilder d = Udp4(53, 21);
  const auto f1 = PacketBuilder(d).Fragment(56, 52, false).Build();
  const auto f0 = PacketBuilder(d).Fragment(0, 56, true).Build();
  const auto other = PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4(kVm, kPeer).Udp(1, 53).Build();
  std::vector<Engine::BatchPacket> batch(3);
  const std::vector<uint8_t>* frames[] = {&f1, &other, &f0};
  for (int i = 0; i < 3; ++i) {
    batch[i].portdev = "vnet0";
    batch[i].packet.bytes = *frames[i];
    batch[i].packet.token = 100 + i;
  }
  std::vector<Decision> out(3);
  h.engine.DecideBatch(batch, h.clock.Now(), out);
  EXPECT_TRUE(out[0].held);
  EXPECT_EQ(out[1].verdict, Verdict::kAccept);
  EXPECT_TRUE(out[2].reassembled);
  EXPECT_EQ(out[2].verdict, Verdict::kAccept);
  h.Settle();
  ASSERT_EQ(h.released.size(), 1u);
  EXPECT_EQ(h.released[0].token, 100u);
  EXPECT_EQ(h.released[0].decision.verdict, Verdict::kAccept);
}

}  // namespace
}  // namespace nwfq::engine
