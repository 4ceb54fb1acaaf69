// design.md: zero allocations per packet on the hot path. A global operator new counter
// (this binary only) around loops of Engine::Decide (and DecideBatch) on established connections
// (decision cache hits), new connections (classifier walk, tentative entries), replies and packets
// that bypass the cache (TCP flags rules), over a program large enough to have trees.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "engine/engine.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace {
std::atomic<uint64_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::kPeerMac;
using nwfq::testing::kVmMac;
using nwfq::testing::PacketBuilder;

TEST(HotPath, ZeroAllocationsPerPacket) {
  std::vector<ConcreteRule> rules;
  for (int i = 0; i < 1000; ++i) {
    rules.push_back(Rule(Action::kAccept, Direction::kIn, Protocol::kTcp,
                         {U(Attr::kDstPortStart, static_cast<uint32_t>(1000 + i))}));
  }
  rules.push_back(Rule(Action::kDrop, Direction::kOut, Protocol::kTcp, {Flags(0x01, 0x01)}));
  rules.push_back(Rule(Action::kAccept, Direction::kInOut, Protocol::kTcp, {}));
  rules.push_back(Rule(Action::kAccept, Direction::kInOut, Protocol::kUdp, {}));
  EngineOptions o;
  o.conntrack_capacity = 1 << 16;
  Engine e(o);
  ASSERT_TRUE(e.SetBinding(Bind(rules)).ok());

  // Frames built before counting.
  std::vector<std::vector<uint8_t>> out, back, tcp;
  for (int i = 0; i < 512; ++i) {
    const auto port = static_cast<uint16_t>(10000 + i);
    out.push_back(PacketBuilder()
                      .Eth(kVmMac, kPeerMac)
                      .Ipv4("198.18.0.2", "198.18.0.3")
                      .Udp(port, 53)
                      .Payload(64)
                      .Build());
    back.push_back(PacketBuilder()
                       .Eth(kPeerMac, kVmMac)
                       .Ipv4("198.18.0.3", "198.18.0.2")
                       .Udp(53, port)
                       .Payload(64)
                       .Build());
    tcp.push_back(PacketBuilder()
                      .Eth(kVmMac, kPeerMac)
                      .Ipv4("198.18.0.2", "198.18.0.4")
                      .Tcp(port, 1500, 0x10)
                      .Build());
  }
  PacketInput in;
  ct::Nanos now = 1'000'000'000;
  auto send = [&](View v, const std::vector<uint8_t>& f) {
    in.bytes = f;
    return e.Decide("vnet0", v, in, now += 1000);
  };
  // Warm-up: the first lookup fills the per-thread binding entry (no allocation either,
  // but keep the measured loop to the steady state).
  send(View::kFromVm, out[0]);

  const uint64_t before = g_allocations.load();
  uint64_t accepted = 0;
  for (int round = 0; round < 4; ++round) {
    for (size_t i = 0; i < out.size(); ++i) {
      accepted += send(View::kFromVm, out[i]).verdict == Verdict::kAccept;  // new, then cached
      accepted += send(View::kToVm, back[i]).verdict == Verdict::kAccept;   // reply
      accepted += send(View::kFromVm, tcp[i]).verdict == Verdict::kAccept;  // flags: no cache
    }
  }
  const uint64_t allocations = g_allocations.load() - before;
  EXPECT_EQ(allocations, 0u);

  // The batched path too (staging ring, binding references, prefetch).
  std::vector<Engine::BatchPacket> batch(3 * out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    batch[3 * i] = {"vnet0", View::kFromVm, {}};
    batch[3 * i].packet.bytes = out[i];
    batch[3 * i + 1] = {"vnet0", View::kToVm, {}};
    batch[3 * i + 1].packet.bytes = back[i];
    batch[3 * i + 2] = {"vnet0", View::kFromVm, {}};
    batch[3 * i + 2].packet.bytes = tcp[i];
  }
  std::vector<Decision> decisions(batch.size());
  const uint64_t before_batch = g_allocations.load();
  for (size_t at = 0; at < batch.size(); at += 32) {
    const size_t n = std::min<size_t>(32, batch.size() - at);
    e.DecideBatch(std::span(batch).subspan(at, n), now += 1000,
                  std::span(decisions).subspan(at, n));
  }
  EXPECT_EQ(g_allocations.load() - before_batch, 0u);
  for (const Decision& d : decisions) accepted += d.verdict == Verdict::kAccept;

  EXPECT_EQ(accepted, 3u * 5u * out.size());
  EXPECT_GT(e.counters().decision_cache_hits, 2u * out.size());
}

}  // namespace
}  // namespace nwfq::engine
