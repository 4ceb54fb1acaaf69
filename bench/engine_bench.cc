// Engine::Decide cost vs rule count, all in one run so that ratios are meaningful.
//
// Synthetic (BM_Established*, BM_NewConnection): N-1 non-matching `in` tcp accepts
// (distinct ports, like a port allow-list) then an `out` udp accept; the measured packets
// match only the last rule (the linear-scan worst case). Established variants: checksum
// verified / skipped, Decide() / DecideBatch(), one flow / 64K flows (see RunEstablished);
// `ns/pkt` is the per-packet time also for batches.
//
// ClassBench (BM_CB_*; ../shared/classbench, FORMAT.md): acl1 and fw1 at 100/1K/10K rules
// as `out` accept rules (tests/engine/classbench.h), packets from the set's trace
// (distinct 5-tuples; GRE and non-tcp/udp/icmp headers left out: no frame for them):
//  * BM_CB_New: every packet a new connection (Decide: parse, conntrack, classifier);
//  * BM_CB_Established: the same tuples again, connections known (decision cache);
//  * BM_CB_Classify: the layer-3 chain alone (RunL3 on a parsed header, no conntrack).
// BM_Compile: Compile() time, with the classifier's memory per rule as a counter.
// Skipped, with a message, when ../shared is absent.
#include <benchmark/benchmark.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include "engine/compiler.h"
#include "engine/engine.h"
#include "engine/evaluator.h"
#include "tests/engine/classbench.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::PacketBuilder;

InstantiatedBinding Rules(int n) {
  std::vector<ConcreteRule> rules;
  for (int i = 0; i < n - 1; ++i) {
    rules.push_back(Rule(Action::kAccept, Direction::kIn, Protocol::kTcp,
                         {U(Attr::kDstPortStart, static_cast<uint32_t>(1000 + i))}));
  }
  rules.push_back(Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {}, 900));
  return Bind(std::move(rules));
}

// Established packets through the full path: parse (+ checksum), conntrack, cached
// decision, counters. `csum`: the transport checksum verified by the engine (what the
// kernel's conntrack does for a packet whose checksum nobody vouched for) or skipped
// (PacketInput::checksum_unverified: NFQUEUE reports the NIC/kernel state per packet, and
// a tap's packets usually come with the checksum left to offload). `batch`: Decide() per
// packet, or DecideBatch() over 32 packets (as the NFQUEUE worker receives them).
// `flows`: 1 = one connection (everything in L1), else that many connections round robin
// (the conntrack entries and cache lines come from memory: what batching hides).
enum class Csum { kVerify, kSkip };
void RunEstablished(benchmark::State& state, Csum csum, bool batch, int flows) {
  EngineOptions o;
  o.conntrack_capacity = flows > 1 ? 1 << 20 : 65536;
  Engine e(o);
  if (!e.SetBinding(Rules(static_cast<int>(state.range(0)))).ok()) state.SkipWithError("bind");
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < flows; ++i) {
    frames.push_back(PacketBuilder()
                         .Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac)
                         .Ipv4("198.18.0.2", "198.18." + std::to_string(1 + i / 250 % 250) + "." +
                                                 std::to_string(1 + i % 250))
                         .Udp(static_cast<uint16_t>(5000 + i / 62500), 53)
                         .Payload(64)
                         .Build());
  }
  constexpr size_t kBatch = 32;
  std::vector<Engine::BatchPacket> batch_in(std::max<size_t>(kBatch, frames.size()));
  for (size_t i = 0; i < batch_in.size(); ++i) {
    batch_in[i].portdev = "vnet0";
    batch_in[i].view = View::kFromVm;
    batch_in[i].packet.bytes = frames[i % frames.size()];
    batch_in[i].packet.checksum_unverified = csum == Csum::kSkip;
  }
  std::vector<Decision> out(kBatch);
  ct::Nanos now = 1;
  // Create the connections (first packet: new; the cache fills on the second).
  for (int round = 0; round < 2; ++round) {
    for (const auto& p : batch_in) e.Decide(p.portdev, p.view, p.packet, now += 10);
  }
  const uint64_t hits0 = e.counters().decision_cache_hits;
  size_t i = 0;
  int64_t packets = 0;
  for (auto _ : state) {
    if (batch) {
      e.DecideBatch(std::span(batch_in).subspan(i, kBatch), now += 10, out);
      benchmark::DoNotOptimize(out.data());
      i += kBatch;
      if (i + kBatch > batch_in.size()) i = 0;
      packets += kBatch;
    } else {
      const auto& p = batch_in[i];
      benchmark::DoNotOptimize(e.Decide(p.portdev, p.view, p.packet, now += 10));
      if (++i == batch_in.size()) i = 0;
      ++packets;
    }
  }
  state.SetItemsProcessed(packets);
  state.counters["ns/pkt"] = benchmark::Counter(
      static_cast<double>(packets), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["hit%"] = 100.0 * static_cast<double>(e.counters().decision_cache_hits - hits0) /
                           static_cast<double>(std::max<int64_t>(1, packets));
}

// Not the engine: 288-byte clears of an L1-resident buffer, as many stores as a packet's
// parse. On a shared host this core's store throughput changes over time (another
// tenant on the sibling hyperthread); the Established rows move with it, by up to 1.7x
// within one process and one memory layout, while a latency-bound loop does not. A run
// whose control is well above its usual ~14 ns was taken in that slow mode.
void BM_StoreControl(benchmark::State& state) {
  alignas(64) unsigned char buf[8 * 320];
  size_t i = 0;
  for (auto _ : state) {
    unsigned char* b = buf + (i++ & 7) * 320;
    std::memset(b, static_cast<int>(i), 288);
    benchmark::DoNotOptimize(b);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_StoreControl);

void BM_Established(benchmark::State& state) { RunEstablished(state, Csum::kVerify, false, 1); }
void BM_Established_CsumSkipped(benchmark::State& state) {
  RunEstablished(state, Csum::kSkip, false, 1);
}
void BM_EstablishedBatch(benchmark::State& state) { RunEstablished(state, Csum::kVerify, true, 1); }
void BM_EstablishedBatch_CsumSkipped(benchmark::State& state) {
  RunEstablished(state, Csum::kSkip, true, 1);
}
void BM_Established64KFlows(benchmark::State& state) {
  RunEstablished(state, Csum::kVerify, false, 65536);
}
void BM_Established64KFlowsBatch(benchmark::State& state) {
  RunEstablished(state, Csum::kVerify, true, 65536);
}
BENCHMARK(BM_Established)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_Established_CsumSkipped)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_EstablishedBatch)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_EstablishedBatch_CsumSkipped)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_Established64KFlows)->Arg(10)->Arg(10000);
BENCHMARK(BM_Established64KFlowsBatch)->Arg(10)->Arg(10000);

void BM_NewConnection(benchmark::State& state) {
  EngineOptions o;
  o.conntrack_capacity = 1 << 20;
  Engine e(o);
  if (!e.SetBinding(Rules(static_cast<int>(state.range(0)))).ok()) state.SkipWithError("bind");
  // Pre-built frames with distinct source ports and addresses: every packet is a new flow.
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 4096; ++i) {
    frames.push_back(PacketBuilder()
                         .Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac)
                         .Ipv4("198.18.0.2", "198.18." + std::to_string(1 + i / 250) + "." +
                                                 std::to_string(1 + i % 250))
                         .Udp(static_cast<uint16_t>(1024 + i), 53)
                         .Build());
  }
  PacketInput in;
  ct::Nanos now = 1;
  size_t i = 0;
  uint16_t round = 0;
  for (auto _ : state) {
    auto& f = frames[i];
    in.bytes = f;
    benchmark::DoNotOptimize(e.Decide("vnet0", View::kFromVm, in, now += 1000));
    if (++i == frames.size()) {
      i = 0;
      // Move to fresh flows: advance the clock past the UDP timeout so entries expire.
      now += 31 * ct::kNanosPerSecond;
      ++round;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NewConnection)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

// ---- ClassBench

const char* const kSets[] = {"acl1_100", "acl1_1K", "acl1_10K", "fw1_100", "fw1_1K", "fw1_10K"};

std::string CbDir() { return std::string(NWFQ_SHARED_DIR) + "/classbench"; }

struct CbData {
  InstantiatedBinding binding;
  size_t rules = 0;
  std::vector<std::vector<uint8_t>> frames;  // distinct tuples, from the VM
  std::vector<PacketView> views;             // the same, parsed
};

// Loaded once per set (benchmarks run one after the other).
const CbData* LoadSet(const std::string& name) {
  static std::map<std::string, CbData> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return &it->second;
  const auto rules = classbench::LoadRules(CbDir() + "/rules/" + name);
  const auto trace = classbench::LoadTrace(CbDir() + "/traces/" + name + "_trace");
  if (rules.empty() || trace.empty()) return nullptr;
  CbData d;
  std::vector<int> line_of;
  d.binding = classbench::ToBinding(rules, &line_of);
  d.rules = rules.size();
  std::set<std::tuple<uint32_t, uint32_t, uint16_t, uint16_t, uint8_t>> seen;
  for (const auto& h : trace) {
    if (h.proto != 6 && h.proto != 17 && h.proto != 1) continue;
    if (!seen.insert({h.src, h.dst, h.sport, h.dport, h.proto}).second) continue;
    PacketBuilder b;
    b.Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac)
        .Ipv4(classbench::Dotted(h.src), classbench::Dotted(h.dst));
    if (h.proto == 6) {
      b.Tcp(h.sport, h.dport, 0x02);
    } else if (h.proto == 17) {
      b.Udp(h.sport, h.dport);
    } else {
      b.Icmp(8, 0, h.sport, 1);
    }
    d.frames.push_back(b.Build());
    d.views.push_back(ParseEthernet(d.frames.back(), {}));
  }
  return &cache.emplace(name, std::move(d)).first->second;
}

// Longer than every timeout of a connection left after one packet (generic 600 s).
constexpr ct::Nanos kPastTimeouts = 601 * ct::kNanosPerSecond;

void BM_CB_New(benchmark::State& state, const std::string& name) {
  const CbData* d = LoadSet(name);
  if (d == nullptr) return state.SkipWithError("ClassBench files unreadable");
  EngineOptions o;
  o.conntrack_capacity = 1 << 17;
  Engine e(o);
  if (!e.SetBinding(d->binding).ok()) return state.SkipWithError("bind");
  PacketInput in;
  ct::Nanos now = 1;
  size_t i = 0;
  for (auto _ : state) {
    in.bytes = d->frames[i];
    benchmark::DoNotOptimize(e.Decide("vnet0", View::kFromVm, in, now += 1000));
    if (++i == d->frames.size()) {
      i = 0;
      now += kPastTimeouts;  // every tuple is new again
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["rules"] = static_cast<double>(d->rules);
  state.counters["tuples"] = static_cast<double>(d->frames.size());
}

void BM_CB_Established(benchmark::State& state, const std::string& name) {
  const CbData* d = LoadSet(name);
  if (d == nullptr) return state.SkipWithError("ClassBench files unreadable");
  EngineOptions o;
  o.conntrack_capacity = 1 << 17;
  Engine e(o);
  if (!e.SetBinding(d->binding).ok()) return state.SkipWithError("bind");
  PacketInput in;
  ct::Nanos now = 1;
  for (const auto& f : d->frames) {  // create every connection
    in.bytes = f;
    e.Decide("vnet0", View::kFromVm, in, now += 1000);
  }
  size_t i = 0;
  for (auto _ : state) {
    in.bytes = d->frames[i];
    benchmark::DoNotOptimize(e.Decide("vnet0", View::kFromVm, in, now += 10));
    if (++i == d->frames.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["rules"] = static_cast<double>(d->rules);
  state.counters["hit%"] = 100.0 * static_cast<double>(e.counters().decision_cache_hits) /
                           static_cast<double>(std::max<uint64_t>(1, state.iterations()));
}

void BM_CB_Classify(benchmark::State& state, const std::string& name) {
  const CbData* d = LoadSet(name);
  if (d == nullptr) return state.SkipWithError("ClassBench files unreadable");
  auto prog = Compile(d->binding);
  if (!prog.ok()) return state.SkipWithError("compile");
  size_t i = 0;
  EvalContext ctx;
  ctx.tracked = true;
  ctx.state = ct::State::kNew;
  for (auto _ : state) {
    ctx.pkt = &d->views[i];
    benchmark::DoNotOptimize(RunL3(**prog, L3Chain::kFI, ctx));
    if (++i == d->views.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["rules"] = static_cast<double>(d->rules);
}

void BM_Compile(benchmark::State& state, const std::string& name) {
  InstantiatedBinding b;
  size_t n = 0;
  if (name == "synthetic_10000") {
    b = Rules(10000);
    n = 10000;
  } else {
    const CbData* d = LoadSet(name);
    if (d == nullptr) return state.SkipWithError("ClassBench files unreadable");
    b = d->binding;
    n = d->rules;
  }
  size_t bytes = 0;
  for (auto _ : state) {
    auto prog = Compile(b);
    if (!prog.ok()) return state.SkipWithError("compile");
    bytes = 0;
    for (const auto& chain : (*prog)->classifiers) {
      for (const Classifier& c : chain) bytes += c.MemoryBytes();
    }
  }
  // Three views (FI, FO, HI) hold a tree each for the same rules.
  state.counters["tree_bytes_per_rule"] = static_cast<double>(bytes) / static_cast<double>(n);
}

void RegisterClassBench() {
  BENCHMARK_CAPTURE(BM_Compile, synthetic_10000, std::string("synthetic_10000"))
      ->Unit(benchmark::kMillisecond);
  if (!std::filesystem::exists(CbDir())) {
    benchmark::RegisterBenchmark("BM_CB_skipped", [](benchmark::State& s) {
      s.SkipWithError("ClassBench benchmarks skipped: ../shared/classbench is absent");
    });
    return;
  }
  for (const char* set : kSets) {
    const std::string n = set;
    benchmark::RegisterBenchmark(("BM_CB_New/" + n).c_str(), BM_CB_New, n);
    benchmark::RegisterBenchmark(("BM_CB_Established/" + n).c_str(), BM_CB_Established, n);
    benchmark::RegisterBenchmark(("BM_CB_Classify/" + n).c_str(), BM_CB_Classify, n);
  }
  for (const char* set : {"acl1_10K", "fw1_10K"}) {
    benchmark::RegisterBenchmark((std::string("BM_Compile/") + set).c_str(), BM_Compile,
                                 std::string(set))
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace nwfq::engine

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  nwfq::engine::RegisterClassBench();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
