// Table mechanics: tentative entries, capacity and early drop, lazy expiry and sweep,
// flush/erase, stale references, and zero heap allocations per packet.
#include "conntrack/table.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/conntrack/packets.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// Counts every heap allocation of this test binary (the zero-allocation test reads it).
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace nwfq::ct {
namespace {

using namespace testing;  // NOLINT: packet builders

PacketFacts UdpN(uint32_t n) {  // distinct flows from 198.18.x.y:port
  return Udp(V4(198, 18, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)),
             static_cast<uint16_t>(1000 + (n >> 16)), kServer, 53);
}

TEST(Table, EntryAndSlotSizes) {
  EXPECT_EQ(Table::kEntryBytes, 32u);
  EXPECT_EQ(Table::kSlotBytes, 33u);
  Table t(TableOptions{.capacity = 1 << 20});
  EXPECT_GE(t.MemoryBytes(), static_cast<size_t>(1 << 20) * 33);
  EXPECT_LE(t.MemoryBytes(), static_cast<size_t>(1 << 20) * 33 * 17 / 16 + 33 * 8);
  EXPECT_EQ(t.MemoryBytes(), size_t{t.slot_count()} * Table::kSlotBytes);
  // Nothing taken from the pools yet.
  EXPECT_EQ(t.ResidentBytes(), t.MemoryBytes());
  EXPECT_GT(t.ReservedBytes(), t.ResidentBytes());
}

// TCP and IPv6 connections take pool records; removed connections give them back, so
// churn does not grow the memory in use.
TEST(Table, PoolRecordsAreRecycled) {
  Table t(TableOptions{.capacity = 64});
  TimeoutPolicy to;
  auto syn = [](uint32_t n, bool v6) {
    PacketFacts p = UdpN(n);
    if (v6) {
      p.flow.family = 6;
      p.flow.src = {0x20,
                    0x01,
                    0x0d,
                    0xb8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    static_cast<uint8_t>(n >> 8),
                    static_cast<uint8_t>(n)};
      p.flow.dst = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    }
    p.flow.l4proto = 6;
    p.tcp_flags = kTcpSyn;
    p.tcp_seq = 1000 + n;
    p.tcp_window = 1000;
    return p;
  };
  Nanos now = kSec;
  size_t peak = 0;
  for (int round = 0; round < 20; ++round) {
    for (uint32_t i = 0; i < 32; ++i) {
      const PacketFacts p = syn(round * 32 + i, i & 1);
      TrackResult r = t.Track(p, to, now);
      ASSERT_EQ(r.state, State::kNew) << round << " " << i;
      t.Confirm(r, now);
      // The connection is found again in both directions, with its own tuple.
      std::optional<ConnInfo> info = t.Lookup(p.flow, now);
      ASSERT_TRUE(info.has_value());
      EXPECT_EQ(info->original.src, p.flow.src);
      EXPECT_EQ(info->state_name, "SYN_SENT");
    }
    EXPECT_EQ(t.size(), 32u);
    if (round == 0) peak = t.ResidentBytes();
    EXPECT_EQ(t.ResidentBytes(), peak) << "round " << round;
    now += 200 * kSec;  // past SYN_SENT's 120 s
    EXPECT_EQ(t.Sweep(t.slot_count(), now), 32u);
  }
  EXPECT_GT(peak, t.MemoryBytes());
  t.Flush();
  EXPECT_EQ(t.ResidentBytes(), t.MemoryBytes());
}

TEST(Table, TentativeEntryIsDiscardedByTheNextTrack) {
  Table t(TableOptions{.capacity = 16});
  TimeoutPolicy to;
  TrackResult a = t.Track(UdpN(1), to, kSec);
  EXPECT_TRUE(a.tentative);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_FALSE(t.IsLive(a.entry, kSec));
  TrackResult b = t.Track(UdpN(2), to, kSec);  // a is never confirmed
  t.Confirm(a, kSec);                          // too late: no-op
  t.Confirm(b, kSec);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_TRUE(t.IsLive(b.entry, kSec));
  EXPECT_EQ(t.Track(UdpN(1), to, kSec).state, State::kNew);  // a left nothing
  t.Discard(t.Track(UdpN(3), to, kSec));
  EXPECT_EQ(t.stats().confirmed, 1u);
}

TEST(Table, FullTableEvictsUnassuredAndRefusesWhenAllAssured) {
  const uint32_t cap = 64;
  TimeoutPolicy to;
  Nanos now = kSec;
  auto fill = [&](Table& t) {
    uint32_t i = 0;
    while (t.size() < cap && i < 100 * cap) t.Confirm(t.Track(UdpN(i++), to, now), now);
    ASSERT_EQ(t.size(), cap);
  };
  Table t(TableOptions{.capacity = cap});
  fill(t);
  // One more: the table is full of unassured flows: one of them is evicted.
  const uint64_t drops = t.stats().early_drop;
  TrackResult r = t.Track(UdpN(100000), to, now);
  EXPECT_EQ(r.state, State::kNew);
  t.Confirm(r, now);
  EXPECT_EQ(t.size(), cap);
  EXPECT_EQ(t.stats().early_drop, drops + 1);

  // Make every flow assured (reply, then a packet > 2 s later): a new flow is refused.
  Table full(TableOptions{.capacity = cap});
  fill(full);
  std::vector<FlowFacts> live;
  full.ForEach(now, [&](const ConnInfo& i) { live.push_back(i.original); });
  ASSERT_EQ(live.size(), cap);
  now += 3 * kSec;
  for (const FlowFacts& f : live) {
    PacketFacts back;
    back.flow = f;
    std::swap(back.flow.src, back.flow.dst);
    std::swap(back.flow.sport, back.flow.dport);
    full.Track(back, to, now);
    PacketFacts fwd;
    fwd.flow = f;
    EXPECT_TRUE(full.Track(fwd, to, now).assured);
  }
  r = full.Track(UdpN(100001), to, now);
  EXPECT_EQ(r.state, State::kInvalid);
  EXPECT_FALSE(r.entry.valid());
  EXPECT_EQ(full.stats().insert_failed, 1u);
  // Once they expire (120 s stream timeout) there is room again.
  now += 121 * kSec;
  EXPECT_EQ(full.Track(UdpN(100001), to, now).state, State::kNew);
}

TEST(Table, SweepRemovesExpiredIncrementally) {
  Table t(TableOptions{.capacity = 1000});
  TimeoutPolicy to;
  for (uint32_t i = 0; i < 500; ++i) t.Confirm(t.Track(UdpN(i), to, kSec), kSec);
  EXPECT_EQ(t.size(), 500u);
  EXPECT_EQ(t.Sweep(100000, 10 * kSec), 0u);
  size_t removed = 0;
  int calls = 0;
  while (t.size() > 0 && calls < 1000) {
    removed += t.Sweep(64, 40 * kSec);
    ++calls;
  }
  EXPECT_EQ(removed, 500u);
  EXPECT_GT(calls, 1);  // bounded work per call
  EXPECT_EQ(t.stats().expired, 500u);
}

TEST(Table, FlushEraseAndStaleRefs) {
  Table t(TableOptions{.capacity = 100});
  TimeoutPolicy to;
  TrackResult a = t.Track(UdpN(1), to, kSec);
  t.Confirm(a, kSec);
  EXPECT_TRUE(t.Erase(a.entry));
  EXPECT_FALSE(t.Erase(a.entry));
  EXPECT_FALSE(t.IsLive(a.entry, kSec));
  TrackResult b = t.Track(UdpN(1), to, kSec);
  t.Confirm(b, kSec);
  EXPECT_FALSE(t.Get(a.entry, kSec).has_value());  // the slot may be reused: generation
  EXPECT_TRUE(t.Get(b.entry, kSec).has_value());
  t.Flush();
  EXPECT_EQ(t.size(), 0u);
  EXPECT_FALSE(t.IsLive(b.entry, kSec));
}

TEST(Table, ManyFlowsAreAllFoundAgain) {
  const uint32_t n = 50000;
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  for (uint32_t i = 0; i < n; ++i) t.Confirm(t.Track(UdpN(i), to, kSec), kSec);
  EXPECT_EQ(t.size(), n);
  uint64_t new_before = t.stats().new_conns;
  for (uint32_t i = 0; i < n; ++i) {
    TrackResult r = t.Track(UdpN(i), to, 2 * kSec);
    ASSERT_FALSE(r.tentative) << i;
  }
  EXPECT_EQ(t.stats().new_conns, new_before);
  EXPECT_EQ(t.stats().early_drop, 0u);
}

// The batched way through the table (Probe for a whole batch first, the prefetch stages,
// then Track with the probe, whose TCP/UDP hits take a short path of their own) must
// decide every packet exactly as plain Track does: same results, counters and connections.
// A random mix over few flows in a small table, so that hits, new connections, reopens,
// RSTs, expiry, eviction, refusals, ICMP errors, fragments and bad checksums all occur,
// with a random half of the new connections confirmed (the filter's verdict).
TEST(Table, BatchedPathDecidesAsTrack) {
  std::mt19937 rng(7);
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  auto endpoint = [&](bool v6) {
    if (!v6) return V4(198, 18, 0, static_cast<uint8_t>(1 + pick(3)));
    // 2001:db8:0:0::n and 2001:db8:1:0::n share their last 4 bytes (the entry's `dst`
    // word): only the address record tells them apart.
    auto a = V6(static_cast<uint16_t>(1 + pick(3)));
    a[5] = static_cast<uint8_t>(pick(2));
    return a;
  };
  auto packet = [&]() {
    const bool v6 = pick(2) == 0;
    const auto a = endpoint(v6), b = endpoint(v6);
    const uint16_t pa = static_cast<uint16_t>(1000 + pick(3)),
                   pb = static_cast<uint16_t>(80 + pick(2));
    PacketFacts p;
    switch (pick(7)) {
      case 0:
      case 1: {
        static constexpr uint8_t kFlags[] = {kSyn,    kSynAck, kAck,    kPshAck,
                                             kFinAck, kRst,    kRstAck, 0};
        p = Tcp(a, pa, b, pb, kFlags[pick(8)], 1000 + pick(3) * 100, 5000 + pick(3) * 100,
                static_cast<uint16_t>(pick(2) ? 64240 : 0), pick(2) * 100);
        break;
      }
      case 2:
      case 3:
        p = Udp(a, pa, b, pb);
        break;
      case 4:
        if (pick(2)) {
          p = Udp(a, pa, b, pb);
          p.flow.l4proto = 136;  // UDPLite
        } else {                 // SCTP: one chunk of a random type, tag 0 or the INIT's
          const auto type = static_cast<uint8_t>(pick(12));
          p = Sctp(a, pa, b, pb, pick(2) ? 0 : 77,
                   type == kSctpInit || type == kSctpInitAck
                       ? nwfq::testing::SctpInitChunk(type, 77)
                       : nwfq::testing::SctpChunk(type));
        }
        break;
      case 5:
        p = Icmp(a, b, pick(2) ? 8 : 0, static_cast<uint16_t>(pick(3)));
        break;
      default:
        p = IcmpError(a, b, 3, 1, Udp(b, pb, a, pa));
        break;
    }
    if (v6) {
      p.flow.family = 6;
      if (p.flow.l4proto == 1) {
        p.flow.l4proto = 58;
        p.flow.icmp_type = p.icmp_error ? 1 : (p.flow.icmp_type == 8 ? 128 : 129);
      }
    }
    p.bad_checksum = pick(40) == 0;
    p.fragment = pick(50) == 0;
    return p;
  };
  auto same = [](const TrackResult& x, const TrackResult& y) {
    return x.entry.slot == y.entry.slot && x.entry.generation == y.entry.generation &&
           x.state == y.state && x.dir == y.dir && x.tentative == y.tentative &&
           x.assured == y.assured;
  };
  Table plain(TableOptions{.capacity = 24});
  Table batched(TableOptions{.capacity = 24});
  TimeoutPolicy to;
  ASSERT_TRUE(to.Set(TimeoutClass::kUdpUnreplied, 2).ok());
  Nanos now = kSec;
  uint64_t fast_hits[2] = {0, 0};  // IPv4, IPv6
  for (int batch = 0; batch < 8000; ++batch) {
    std::vector<PacketFacts> pkts;
    for (uint32_t i = 0, n = 1 + pick(16); i < n; ++i) pkts.push_back(packet());
    std::vector<FlowProbe> probes;
    for (const PacketFacts& p : pkts) probes.push_back(batched.Probe(p));
    for (const FlowProbe& w : probes) batched.PrefetchIndex(w);
    // Most entries are looked up before any packet of the batch is tracked, as TrackBatch
    // does (8 packets ahead): their slot hints go stale when earlier packets insert, move
    // or remove entries. The others just before their packet, or never (no hint).
    uint32_t when[16];  // a batch has up to 16 packets
    for (size_t i = 0; i < pkts.size(); ++i) {
      when[i] = pick(4);
      if (when[i] >= 2) batched.PrefetchEntry(probes[i]);
    }
    for (size_t i = 0; i < pkts.size(); ++i) {
      if (when[i] == 1) batched.PrefetchEntry(probes[i]);
      batched.PrefetchRecord(probes[i]);
      const uint64_t found_before = batched.stats().found;
      const TrackResult a = plain.Track(pkts[i], to, now);
      const TrackResult b = batched.Track(pkts[i], probes[i], to, now);
      ASSERT_TRUE(same(a, b)) << "batch " << batch << " packet " << i;
      if (probes[i].port_flow && batched.stats().found > found_before) {
        ++fast_hits[pkts[i].flow.family == 6];
      }
      if (a.tentative && pick(2)) {
        plain.Confirm(a, now);
        batched.Confirm(b, now);
      }
      now += pick(3) == 0 ? 700 * kMs : kMs;
    }
    if (pick(10) == 0) {
      plain.Sweep(8, now);
      batched.Sweep(8, now);
    }
  }
  const TableStats& x = plain.stats();
  const TableStats& y = batched.stats();
  EXPECT_EQ(x.found, y.found);
  EXPECT_EQ(x.new_conns, y.new_conns);
  EXPECT_EQ(x.confirmed, y.confirmed);
  EXPECT_EQ(x.invalid, y.invalid);
  EXPECT_EQ(x.ignored, y.ignored);
  EXPECT_EQ(x.related, y.related);
  EXPECT_EQ(x.early_drop, y.early_drop);
  EXPECT_EQ(x.insert_failed, y.insert_failed);
  EXPECT_EQ(x.expired, y.expired);
  EXPECT_EQ(x.tcp_ignored, y.tcp_ignored);
  // Every kind of outcome occurred (else the comparison above proves little).
  EXPECT_GT(fast_hits[0], 1000u) << "too few IPv4 TCP/UDP hits to compare";
  EXPECT_GT(fast_hits[1], 300u) << "too few IPv6 TCP/UDP hits to compare";
  EXPECT_GT(x.related, 0u);
  EXPECT_GT(x.early_drop + x.insert_failed, 0u);
  EXPECT_GT(x.expired, 0u);
  EXPECT_GT(x.tcp_ignored, 0u);
  std::vector<std::string> conns[2];
  for (int k = 0; k < 2; ++k) {
    (k == 0 ? plain : batched).ForEach(now, [&](const ConnInfo& c) {
      conns[k].push_back(std::to_string(c.ref.slot) + "/" + std::string(c.state_name) + "/" +
                         std::to_string(c.seen_reply) + std::to_string(c.assured) + "/" +
                         std::to_string(c.expires_in) + "/" + std::to_string(c.last_seen));
    });
  }
  EXPECT_EQ(conns[0], conns[1]);
  EXPECT_FALSE(conns[0].empty());
}

// An IPv6 connection's addresses are split between its record (28 bytes) and the entry (the
// destination's last 4 bytes): addresses differing only in either part stay distinct
// connections, replies find them, and the original tuple reads back whole.
TEST(Table, Ipv6AddressesSplitAcrossEntryAndRecordStayExact) {
  Table t(TableOptions{.capacity = 64});
  TimeoutPolicy to;
  const auto client = V6(0x10);
  auto server = [](uint8_t prefix_byte, uint16_t last) {
    std::array<uint8_t, 16> a = V6(last);
    a[4] = prefix_byte;  // differs inside the record's 12 destination bytes
    return a;
  };
  const std::array<uint8_t, 16> servers[] = {server(0, 1), server(1, 1), server(0, 2),
                                             server(1, 2)};
  std::vector<EntryRef> refs;
  for (const auto& s : servers) {
    const TrackResult r = t.Track(Udp(client, 4000, s, 53, 6), to, kSec);
    ASSERT_TRUE(r.tentative);
    t.Confirm(r, kSec);
    refs.push_back(r.entry);
  }
  EXPECT_EQ(t.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const TrackResult reply = t.Track(Udp(servers[i], 53, client, 4000, 6), to, 2 * kSec);
    EXPECT_EQ(reply.entry.slot, refs[i].slot) << i;
    EXPECT_EQ(reply.dir, Dir::kReply) << i;
    EXPECT_EQ(reply.state, State::kEstablished) << i;
    const std::optional<ConnInfo> info = t.Get(refs[i], 2 * kSec);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->original.family, 6);
    EXPECT_EQ(info->original.src, client);
    EXPECT_EQ(info->original.dst, servers[i]) << i;
  }
  EXPECT_EQ(t.stats().new_conns, 4u);
}

// The batched path's IPv6 hit (Track with a probe) compares a packet with the entry's
// address record: a flow whose source or destination differs from a tracked one only in the
// record's bytes, with the same bucket and tag (so PrefetchEntry names the tracked one's
// slot), is a new connection in either direction.
TEST(Table, Ipv6ShortPathComparesTheAddressRecord) {
  for (const bool vary_src : {false, true}) {
    Table t(TableOptions{.capacity = 16});
    TimeoutPolicy to;
    const PacketFacts a = Udp(V6(0x10), 4000, V6(0x20), 53, 6);
    const FlowProbe pa = t.Probe(a);
    // A variant of a's address in bytes 6-7 (inside the record for the source and for the
    // destination) that hashes to a's first bucket and tag: about 1 in 500 do.
    std::optional<PacketFacts> b;
    for (uint32_t v = 1; v < 65536 && !b; ++v) {
      PacketFacts c = a;
      auto& addr = vary_src ? c.flow.src : c.flow.dst;
      addr[6] = static_cast<uint8_t>(v >> 8);
      addr[7] = static_cast<uint8_t>(v);
      const FlowProbe pc = t.Probe(c);
      if (pc.tag == pa.tag && pc.bucket[0] == pa.bucket[0]) b = c;
    }
    ASSERT_TRUE(b.has_value());
    const TrackResult ra = t.Track(a, to, kSec);
    t.Confirm(ra, kSec);
    for (const bool reply : {false, true}) {
      PacketFacts p = *b;
      if (reply) {
        std::swap(p.flow.src, p.flow.dst);
        std::swap(p.flow.sport, p.flow.dport);
      }
      FlowProbe w = t.Probe(p);
      ASSERT_EQ(t.PrefetchEntry(w), ra.entry.slot) << "the hint names the tracked flow's slot";
      const TrackResult r = t.Track(p, w, to, 2 * kSec);
      EXPECT_EQ(r.state, State::kNew) << "vary_src " << vary_src << " reply " << reply;
      EXPECT_TRUE(r.tentative);
      EXPECT_NE(r.entry.slot, ra.entry.slot);
      t.Discard(r);
    }
    EXPECT_EQ(t.stats().found, 0u);
  }
}

TEST(Table, NoHeapAllocationPerPacket) {
  Table t(TableOptions{.capacity = 4096});
  TimeoutPolicy to;
  PacketFacts syn = Tcp(kClient, 1, kServer, 2, kSyn, 1, 0);
  PacketFacts synack = Tcp(kServer, 2, kClient, 1, kSynAck, 9, 2);
  PacketFacts ack = Tcp(kClient, 1, kServer, 2, kAck, 2, 10);
  const long before = g_allocations.load();
  Nanos now = kSec;
  for (uint32_t i = 0; i < 2000; ++i) {
    now += kMs;
    t.Confirm(t.Track(UdpN(i), to, now), now);
    t.Confirm(t.Track(Icmp(kClient, kServer, 8, static_cast<uint16_t>(i)), to, now), now);
    t.Confirm(t.Track(syn, to, now), now);
    t.Confirm(t.Track(synack, to, now), now);
    t.Confirm(t.Track(ack, to, now), now);
    t.Sweep(8, now);
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
}

}  // namespace
}  // namespace nwfq::ct
