// Table mechanics: tentative entries, capacity and early drop, lazy expiry and sweep,
// flush/erase, stale references, and zero heap allocations per packet.
#include "conntrack/table.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <set>
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
