// Conntrack micro-benchmarks (one core): lookup-and-update of existing connections (UDP and
// established TCP with window tracking), insert of new connections, expiry sweep; at 1k,
// 100k and 1M connections. Counters: items/s and bytes_per_conn (table memory / capacity).
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "conntrack/table.h"

namespace nwfq::ct {
namespace {

constexpr Nanos kMs = 1'000'000;

// Table sizes. Debug builds (the ctest smoke run) skip 1M: their figures mean nothing and
// filling 1M entries there takes half a minute.
void Sizes(benchmark::internal::Benchmark* b) {
  b->Arg(1'000)->Arg(100'000);
#ifdef NDEBUG
  b->Arg(1'000'000);
#endif
}

// Writes flow i's tuple (client 10.x.y.z:1024+, server 198.18.0.1:53) into `p`, touching
// only the tuple: the per-batch packet buffers are rewritten in place like a parser does.
void SetTuple(PacketFacts& p, uint32_t i, bool reply) {
  uint8_t* a = reply ? p.flow.dst.data() : p.flow.src.data();
  uint8_t* b = reply ? p.flow.src.data() : p.flow.dst.data();
  if (p.flow.family == 6) {  // 2001:db8::10.x.y.z and 2001:db8::198.18.0.1
    std::memset(a, 0, 16);
    std::memset(b, 0, 16);
    a[0] = b[0] = 0x20;
    a[1] = b[1] = 0x01;
    a[2] = b[2] = 0x0d;
    a[3] = b[3] = 0xb8;
    a += 12;
    b += 12;
  }
  a[0] = 10;
  a[1] = static_cast<uint8_t>(i >> 16);
  a[2] = static_cast<uint8_t>(i >> 8);
  a[3] = static_cast<uint8_t>(i);
  b[0] = 198;
  b[1] = 18;
  b[2] = 0;
  b[3] = 1;
  const uint16_t sp = static_cast<uint16_t>(1024 + (i % 50000)), dp = 53;
  p.flow.sport = reply ? dp : sp;
  p.flow.dport = reply ? sp : dp;
}

PacketFacts UdpFlow(uint32_t i, bool reply, bool v6 = false) {
  PacketFacts p;
  p.flow.family = 4;
  p.flow.l4proto = 17;
  std::array<uint8_t, 16> a{}, b{};
  a[0] = 10;
  a[1] = static_cast<uint8_t>(i >> 16);
  a[2] = static_cast<uint8_t>(i >> 8);
  a[3] = static_cast<uint8_t>(i);
  b[0] = 198;
  b[1] = 18;
  b[3] = 1;
  uint16_t sp = static_cast<uint16_t>(1024 + (i % 50000)), dp = 53;
  p.flow.src = reply ? b : a;
  p.flow.dst = reply ? a : b;
  p.flow.sport = reply ? dp : sp;
  p.flow.dport = reply ? sp : dp;
  p.payload_len = 64;
  if (v6) {
    p.flow.family = 6;
    SetTuple(p, i, reply);
  }
  return p;
}

// Memory in use (slot array + touched pool pages, Table::ResidentBytes) divided by the
// connections tracked: entries, tags, spare slots and pool records all count.
void SetBytes(benchmark::State& state, const Table& t, uint32_t conns) {
  state.counters["bytes_per_conn"] =
      static_cast<double>(t.ResidentBytes()) / static_cast<double>(conns);
}

// The NFQUEUE worker's way through a received batch (up to kBatch packets): hash every
// packet once, then per packet prefetch the tag line 16 ahead, the entry 8 ahead and the
// TCP/IPv6 record 2 ahead, and track. `after(i, r)` runs after Track of packet i (Confirm,
// test bookkeeping). No pipelining across batches: each batch starts cold.
constexpr size_t kBatch = 64;
// Prefetch distances in packets: a miss on this VM takes ~220 ns (measured with a
// dependent-load loop), a packet ~50-100 ns of work.
constexpr size_t kIndexAhead = 16;
constexpr size_t kEntryAhead = 8;
constexpr size_t kRecordAhead = 2;
template <typename After>
void TrackBatch(Table& t, PacketFacts* const* pkts, size_t n, const TimeoutPolicy& to, Nanos now,
                After&& after) {
  FlowProbe probe[kBatch];
  for (size_t i = 0; i < n; ++i) probe[i] = t.Probe(*pkts[i]);
  for (size_t i = 0; i < n && i < kIndexAhead; ++i) t.PrefetchIndex(probe[i]);
  for (size_t i = 0; i < n && i < kEntryAhead; ++i) t.PrefetchEntry(probe[i]);
  for (size_t i = 0; i < n; ++i) {
    if (i + kIndexAhead < n) t.PrefetchIndex(probe[i + kIndexAhead]);
    if (i + kEntryAhead < n) t.PrefetchEntry(probe[i + kEntryAhead]);
    if (i + kRecordAhead < n) t.PrefetchRecord(probe[i + kRecordAhead]);
    after(i, t.Track(*pkts[i], probe[i], to, now));
  }
}

// TrackBatch without Track: hashing and the prefetch stages only, i.e. what finding the
// batch's entries costs. For the control rows: next to the hit rows it splits a hit's time
// into locating the entry and tracking the packet.
size_t LocateBatch(const Table& t, PacketFacts* const* pkts, size_t n) {
  FlowProbe probe[kBatch];
  for (size_t i = 0; i < n; ++i) probe[i] = t.Probe(*pkts[i]);
  for (size_t i = 0; i < n && i < kIndexAhead; ++i) t.PrefetchIndex(probe[i]);
  size_t found = 0;
  for (size_t i = 0; i < n && i < kEntryAhead; ++i)
    found += t.PrefetchEntry(probe[i]) != UINT32_MAX;
  for (size_t i = kEntryAhead; i < n; ++i) {
    if (i + kIndexAhead - kEntryAhead < n) t.PrefetchIndex(probe[i + kIndexAhead - kEntryAhead]);
    found += t.PrefetchEntry(probe[i]) != UINT32_MAX;
  }
  return found;
}

// The packet stream of the hit benchmarks: connection ids in random order (4 bytes per
// packet); PacketFacts are built per batch into a small buffer that stays in L1, as the
// worker parses each received batch into PacketFacts on its stack. (A 1M-entry array of
// 136-byte PacketFacts would make the benchmark measure its own DRAM traffic.)
std::vector<uint32_t> Shuffled(uint32_t n, uint32_t seed) {
  std::vector<uint32_t> order(n);
  for (uint32_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

// Lookup-and-update of existing UDP connections in random order, both directions.
// `batched`: in batches of kBatch through TrackBatch, as the worker does; else one Track
// per packet (same packet construction, no prefetch).
// `locate_only`: LocateBatch instead (the control row), checked to find every entry.
void UdpHit(benchmark::State& state, bool batched, bool v6 = false, bool locate_only = false) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  Nanos now = 1'000 * kMs;
  for (uint32_t i = 0; i < n; ++i) t.Confirm(t.Track(UdpFlow(i, false, v6), to, now), now);
  const std::vector<uint32_t> order = Shuffled(n, 1);
  const uint64_t created = t.stats().new_conns;
  PacketFacts buf[kBatch];
  for (PacketFacts& p : buf) p = UdpFlow(0, false, v6);
  PacketFacts* ptrs[kBatch];
  for (size_t j = 0; j < kBatch; ++j) ptrs[j] = &buf[j];
  size_t k = 0;
  int64_t items = 0;
  size_t located = 0;
  for (auto _ : state) {
    const size_t m = std::min<size_t>(kBatch, n - k);
    for (size_t j = 0; j < m; ++j) SetTuple(buf[j], order[k + j], order[k + j] & 1);
    if (locate_only) {
      located += LocateBatch(t, ptrs, m);
    } else if (batched) {
      TrackBatch(t, ptrs, m, to, now,
                 [](size_t, const TrackResult& r) { benchmark::DoNotOptimize(r); });
    } else {
      for (size_t j = 0; j < m; ++j) benchmark::DoNotOptimize(t.Track(buf[j], to, now));
    }
    items += static_cast<int64_t>(m);
    k += m;
    if (k == n) {
      k = 0;
      now += kMs;
    }
  }
  state.SetItemsProcessed(items);
  SetBytes(state, t, n);
  if (t.stats().new_conns != created) state.SkipWithError("a lookup missed");
  if (locate_only && located != static_cast<size_t>(items)) {
    state.SkipWithError("an entry was not located");
  }
}
void BM_UdpHit(benchmark::State& state) { UdpHit(state, false); }
void BM_UdpHitBatch(benchmark::State& state) { UdpHit(state, true); }
BENCHMARK(BM_UdpHit)->Apply(Sizes);
BENCHMARK(BM_UdpHitBatch)->Apply(Sizes);
// IPv6 (each entry has a 28-byte address record: one or two more lines per lookup).
void BM_Udp6Hit(benchmark::State& state) { UdpHit(state, false, true); }
void BM_Udp6HitBatch(benchmark::State& state) { UdpHit(state, true, true); }
BENCHMARK(BM_Udp6Hit)->Apply(Sizes);
BENCHMARK(BM_Udp6HitBatch)->Apply(Sizes);
// Control: the UdpHitBatch packets, located (hash, tag lines, entry prefetched) but not
// tracked. At 1M the gap between this row and UdpHitBatch is the tracking work plus the
// wait for entries still in flight; the gap to the 1k row is memory.
void BM_UdpLocateControl(benchmark::State& state) { UdpHit(state, true, false, true); }
BENCHMARK(BM_UdpLocateControl)->Apply(Sizes);

PacketFacts TcpSegment(uint32_t i, bool reply, uint8_t flags, uint32_t seq, uint32_t ack,
                       uint32_t len) {
  PacketFacts p = UdpFlow(i, reply);
  p.flow.l4proto = 6;
  p.tcp_flags = flags;
  p.tcp_seq = seq;
  p.tcp_ack = ack;
  p.tcp_window = 65535;
  p.payload_len = len;
  return p;
}

// Lookup-and-update of established TCP connections: in-window data segments (one pass
// over all connections in random order) alternating with passes of their ACKs: the full
// window-tracking path.
void TcpHit(benchmark::State& state, bool batched) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  Nanos now = 1'000 * kMs;
  // The clients' next sequence number: every data pass sends 100 bytes on every connection,
  // so all connections share it (a per-connection array read at random would add a cache
  // miss of the benchmark's own to every packet at 1M).
  uint32_t next_seq = 1001;
  for (uint32_t i = 0; i < n; ++i) {
    t.Confirm(t.Track(TcpSegment(i, false, kTcpSyn, 1000, 0, 0), to, now), now);
    t.Track(TcpSegment(i, true, kTcpSyn | kTcpAck, 5000, 1001, 0), to, now);
  }
  const std::vector<uint32_t> order = Shuffled(n, 2);
  const uint64_t created = t.stats().new_conns;
  PacketFacts buf[kBatch];
  for (PacketFacts& p : buf) p = TcpSegment(0, false, kTcpAck, 0, 0, 0);
  PacketFacts* ptrs[kBatch];
  for (size_t j = 0; j < kBatch; ++j) ptrs[j] = &buf[j];
  size_t k = 0;
  bool data = true;
  int64_t items = 0;
  for (auto _ : state) {
    const size_t m = std::min<size_t>(kBatch, n - k);
    for (size_t j = 0; j < m; ++j) {
      const uint32_t i = order[k + j];
      PacketFacts& p = buf[j];
      SetTuple(p, i, !data);
      p.tcp_flags = data ? kTcpAck | kTcpPsh : kTcpAck;
      p.tcp_seq = data ? next_seq : 5001;
      p.tcp_ack = data ? 5001 : next_seq + 100;
      p.payload_len = data ? 100 : 0;
    }
    if (batched) {
      TrackBatch(t, ptrs, m, to, now,
                 [](size_t, const TrackResult& r) { benchmark::DoNotOptimize(r); });
    } else {
      for (size_t j = 0; j < m; ++j) benchmark::DoNotOptimize(t.Track(buf[j], to, now));
    }
    items += static_cast<int64_t>(m);
    k += m;
    if (k == n) {
      k = 0;
      if (!data) next_seq += 100;  // a data pass and its ACKs done
      data = !data;
      now += kMs;
    }
  }
  state.SetItemsProcessed(items);
  SetBytes(state, t, n);
  if (t.stats().invalid != 0) state.SkipWithError("a segment was INVALID");
  if (t.stats().new_conns != created) state.SkipWithError("a lookup missed");
}
void BM_TcpHit(benchmark::State& state) { TcpHit(state, false); }
void BM_TcpHitBatch(benchmark::State& state) { TcpHit(state, true); }
BENCHMARK(BM_TcpHit)->Apply(Sizes);
BENCHMARK(BM_TcpHitBatch)->Apply(Sizes);

// Insert of new connections (Track + Confirm of a first packet) up to `n`, then the table
// is flushed (outside the timing) and filled again. Packets built per batch as above.
void Insert(benchmark::State& state, bool batched) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  Nanos now = 1'000 * kMs;
  PacketFacts buf[kBatch];
  PacketFacts* ptrs[kBatch];
  for (size_t j = 0; j < kBatch; ++j) ptrs[j] = &buf[j];
  for (PacketFacts& p : buf) p = UdpFlow(0, false);
  uint32_t k = 0;
  int64_t items = 0;
  for (auto _ : state) {
    const size_t m = std::min<size_t>(kBatch, n - k);
    for (size_t j = 0; j < m; ++j) SetTuple(buf[j], k + static_cast<uint32_t>(j), false);
    if (batched) {
      TrackBatch(t, ptrs, m, to, now, [&](size_t, const TrackResult& r) { t.Confirm(r, now); });
    } else {
      for (size_t j = 0; j < m; ++j) t.Confirm(t.Track(buf[j], to, now), now);
    }
    items += static_cast<int64_t>(m);
    k += static_cast<uint32_t>(m);
    if (k == n) {
      state.PauseTiming();
      if (t.size() != n) state.SkipWithError("an insert failed");
      t.Flush();
      k = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(items);
  SetBytes(state, t, n);
}
void BM_Insert(benchmark::State& state) { Insert(state, false); }
void BM_InsertBatch(benchmark::State& state) { Insert(state, true); }
BENCHMARK(BM_Insert)->Apply(Sizes);
BENCHMARK(BM_InsertBatch)->Apply(Sizes);

// Expiry sweep: a full table whose entries have all expired, swept in budgets of 1024
// slots. Items = entries removed.
void BM_Sweep(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  std::vector<PacketFacts> pkts;
  pkts.reserve(n);
  for (uint32_t i = 0; i < n; ++i) pkts.push_back(UdpFlow(i, false));
  int64_t removed = 0;
  Nanos now = 1'000 * kMs;
  for (auto _ : state) {
    state.PauseTiming();
    t.Flush();
    for (uint32_t i = 0; i < n; ++i) t.Confirm(t.Track(pkts[i], to, now), now);
    now += 31'000 * kMs;  // past the 30 s UDP timeout
    state.ResumeTiming();
    while (t.size() > 0) removed += static_cast<int64_t>(t.Sweep(1024, now));
  }
  state.SetItemsProcessed(removed);
  SetBytes(state, t, n);
}
BENCHMARK(BM_Sweep)->Apply(Sizes)->Unit(benchmark::kMillisecond);

// Control, no table involved: independent loads of random cache lines over a 64 MB
// huge-page mapping (the size of the 1M-connection slot array and more), i.e. how many
// lines per second this machine's memory system serves to one core when nothing depends
// on them. A batched hit at 1M needs about three such lines (two tag lines, the entry):
// this row bounds the hit rates above.
void BM_RandomLineControl(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0)) << 20;
  const size_t lines = bytes / 64;
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  madvise(m, bytes, MADV_HUGEPAGE);
  auto* mem = static_cast<char*>(m);
  std::memset(mem, 1, bytes);
  std::vector<uint32_t> order = Shuffled(static_cast<uint32_t>(lines), 3);
  size_t k = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    for (int j = 0; j < 64; ++j, ++k) {  // 64 loads per iteration, like a batch
      if (k == lines) k = 0;
      uint64_t v;
      std::memcpy(&v, mem + size_t{order[k]} * 64, 8);
      sum += v;
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 64);
  munmap(m, bytes);
}
#ifdef NDEBUG
BENCHMARK(BM_RandomLineControl)->Arg(64);
#endif

}  // namespace
}  // namespace nwfq::ct

BENCHMARK_MAIN();
