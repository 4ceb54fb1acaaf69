// Engine::Decide cost vs rule count. Rules: N-1 non-matching `in` tcp accepts (distinct
// ports, like a port allow-list) then an `out` udp accept; the measured packets match only
// the last rule, so the evaluator walks the whole list (the linear-scan worst case).
#include <benchmark/benchmark.h>

#include "engine/engine.h"
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

void BM_Established(benchmark::State& state) {
  EngineOptions o;
  o.conntrack_capacity = 65536;
  Engine e(o);
  if (!e.SetBinding(Rules(static_cast<int>(state.range(0)))).ok()) state.SkipWithError("bind");
  const auto f = PacketBuilder()
                     .Eth(nwfq::testing::kVmMac, nwfq::testing::kPeerMac)
                     .Ipv4("198.18.0.2", "198.18.0.3")
                     .Udp(5000, 53)
                     .Payload(64)
                     .Build();
  PacketInput in;
  in.bytes = f;
  ct::Nanos now = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(e.Decide("vnet0", View::kFromVm, in, now += 1000));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Established)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

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

}  // namespace
}  // namespace nwfq::engine

BENCHMARK_MAIN();
