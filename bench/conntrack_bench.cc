// Conntrack micro-benchmarks (one core): lookup-and-update of existing connections (UDP and
// established TCP with window tracking), insert of new connections, expiry sweep; at 1k,
// 100k and 1M connections. Counters: items/s and bytes_per_conn (table memory / capacity).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
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

PacketFacts UdpFlow(uint32_t i, bool reply) {
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
  return p;
}

// Memory in use (slot array + touched pool pages, Table::ResidentBytes) divided by the
// connections tracked: entries, tags, spare slots and pool records all count.
void SetBytes(benchmark::State& state, const Table& t, uint32_t conns) {
  state.counters["bytes_per_conn"] =
      static_cast<double>(t.ResidentBytes()) / static_cast<double>(conns);
}

// Lookup-and-update of existing UDP connections in random order (the packets themselves
// are read sequentially, as a worker reads its batch). `prefetch`: PrefetchIndex 8 and
// PrefetchEntry 4 packets ahead, as a batching worker would.
void UdpHit(benchmark::State& state, bool prefetch) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  Nanos now = 1'000 * kMs;
  std::vector<PacketFacts> pkts;
  pkts.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    PacketFacts p = UdpFlow(i, false);
    t.Confirm(t.Track(p, to, now), now);
    pkts.push_back(UdpFlow(i, i & 1));
  }
  std::mt19937 rng(1);
  std::shuffle(pkts.begin(), pkts.end(), rng);
  const uint64_t created = t.stats().new_conns;
  size_t k = 0;
  for (auto _ : state) {
    if (prefetch) {
      t.PrefetchIndex(pkts[k + 8 < n ? k + 8 : k + 8 - n]);
      t.PrefetchEntry(pkts[k + 4 < n ? k + 4 : k + 4 - n]);
    }
    TrackResult r = t.Track(pkts[k], to, now);
    benchmark::DoNotOptimize(r);
    if (++k == n) {
      k = 0;
      now += kMs;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  SetBytes(state, t, n);
  if (t.stats().new_conns != created) state.SkipWithError("a lookup missed");
}
void BM_UdpHit(benchmark::State& state) { UdpHit(state, false); }
void BM_UdpHitPrefetch(benchmark::State& state) { UdpHit(state, true); }
BENCHMARK(BM_UdpHit)->Apply(Sizes);
BENCHMARK(BM_UdpHitPrefetch)->Apply(Sizes);

// Lookup-and-update of established TCP connections: in-window data segments alternating
// with their ACKs (the full window-tracking path).
void BM_TcpHit(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  Nanos now = 1'000 * kMs;
  std::vector<PacketFacts> c(n), s(n);
  for (uint32_t i = 0; i < n; ++i) {
    PacketFacts base = UdpFlow(i, false);
    base.flow.l4proto = 6;
    base.tcp_window = 65535;
    base.payload_len = 0;
    PacketFacts syn = base;
    syn.tcp_flags = kTcpSyn;
    syn.tcp_seq = 1000;
    t.Confirm(t.Track(syn, to, now), now);
    PacketFacts synack = UdpFlow(i, true);
    synack.flow.l4proto = 6;
    synack.payload_len = 0;
    synack.tcp_flags = kTcpSyn | kTcpAck;
    synack.tcp_seq = 5000;
    synack.tcp_ack = 1001;
    synack.tcp_window = 65535;
    t.Track(synack, to, now);
    c[i] = base;
    c[i].tcp_flags = kTcpAck | kTcpPsh;
    c[i].tcp_seq = 1001;
    c[i].tcp_ack = 5001;
    c[i].payload_len = 100;
    s[i] = synack;
    s[i].tcp_flags = kTcpAck;
    s[i].tcp_seq = 5001;
    s[i].tcp_ack = 1001;
  }
  // Shuffle the connections (the table order is random anyway; packets are read in order).
  std::mt19937 rng(2);
  for (uint32_t i = n; i > 1; --i) {
    uint32_t j = static_cast<uint32_t>(rng() % i);
    std::swap(c[i - 1], c[j]);
    std::swap(s[i - 1], s[j]);
  }
  size_t k = 0;
  bool data = true;
  for (auto _ : state) {
    const uint32_t i = static_cast<uint32_t>(k);
    if (data) {
      benchmark::DoNotOptimize(t.Track(c[i], to, now));
      s[i].tcp_ack = c[i].tcp_seq + 100;
      c[i].tcp_seq += 100;
    } else {
      benchmark::DoNotOptimize(t.Track(s[i], to, now));
    }
    if (++k == n) {
      k = 0;
      data = !data;
      now += kMs;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  SetBytes(state, t, n);
  if (t.stats().invalid != 0) state.SkipWithError("a segment was INVALID");
}
BENCHMARK(BM_TcpHit)->Apply(Sizes);

// Insert of new connections (Track + Confirm of a first packet) up to `n`, then the table
// is flushed (outside the timing) and filled again.
void BM_Insert(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Table t(TableOptions{.capacity = n});
  TimeoutPolicy to;
  std::vector<PacketFacts> pkts;
  pkts.reserve(n);
  for (uint32_t i = 0; i < n; ++i) pkts.push_back(UdpFlow(i, false));
  Nanos now = 1'000 * kMs;
  uint32_t k = 0;
  for (auto _ : state) {
    TrackResult r = t.Track(pkts[k], to, now);
    t.Confirm(r, now);
    if (++k == n) {
      state.PauseTiming();
      t.Flush();
      k = 0;
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  SetBytes(state, t, n);
}
BENCHMARK(BM_Insert)->Apply(Sizes);

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

}  // namespace
}  // namespace nwfq::ct

BENCHMARK_MAIN();
