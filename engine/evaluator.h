// Runs a compiled Program's chains over one parsed packet: first terminal action wins.
//
// The evaluator is pure except for the optional connlimit callback and the trace; it
// allocates nothing unless a Trace is passed (only --explain does).
#pragma once

#include <cstdint>
#include <vector>

#include "conntrack/types.h"
#include "engine/packet_view.h"
#include "engine/program.h"

namespace nwfq::engine {

enum class TestResult : uint8_t { kMatch, kNoMatch, kNotApplicable };

// What a rule may consult beyond the packet bytes.
struct EvalContext {
  const PacketView* pkt = nullptr;
  bool tracked = false;  // conntrack looked at the packet (state/dir are meaningful)
  ct::State state = ct::State::kUntracked;
  ct::Dir dir = ct::Dir::kOriginal;
  // connlimit: number of connections counted by limiter `id` for this packet (the kernel's
  // connlimit count including the packet's own connection). Null = count 0.
  uint32_t (*connlimit)(void* arg, uint32_t id) = nullptr;
  void* connlimit_arg = nullptr;
};

// One step of --explain.
struct TraceStep {
  bool layer2 = false;
  uint32_t chain = 0;  // L3Chain or layer-2 chain index
  uint32_t instr = 0;
  bool matched = false;
  int32_t failed_test = -1;  // index into Program::tests of the first test that failed
  TestResult failed_result = TestResult::kMatch;
};
using Trace = std::vector<TraceStep>;

struct ChainOutcome {
  bool terminal = false;  // a rule with a terminal action matched
  Action action = Action::kAccept;
  int32_t instr = -1;  // the deciding instruction
  uint32_t rule = 0;   // its rule index
};

TestResult EvalTest(const Test& t, const EvalContext& ctx);

// What the engine's decision cache needs to replay a chain's outcome for later packets of
// the same connection without evaluating: the instructions that matched (their counters
// move on every packet) and whether any instruction looked at reads per-packet fields
// (Instr::per_packet), which makes the outcome unfit for reuse.
struct MatchLog {
  static constexpr int kMax = 4;
  int32_t matched[kMax] = {};
  uint8_t n = 0;
  bool overflow = false;    // more than kMax instructions matched
  bool per_packet = false;  // an instruction looked at has Instr::per_packet
  bool Cacheable() const { return !overflow && !per_packet; }
};

// Layer 3: the chain for `chain` and the packet's family (IPv4 or IPv6 list).
// `counters`, when given, has 2 entries per instruction (packets, bytes) and is bumped for
// every instruction that matched, as iptables counts rules. Without a trace, the chain's
// classifier (when built) picks the candidates; with one (--explain), every instruction
// is looked at in order, so the explanation lists them all. Both give the same outcome.
// `log`, when given, records what the decision cache needs.
ChainOutcome RunL3(const Program& prog, L3Chain chain, const EvalContext& ctx,
                   Trace* trace = nullptr, uint64_t* counters = nullptr, uint32_t bytes = 0,
                   MatchLog* log = nullptr);
// RunL3 by a linear scan of every instruction, whatever the classifier (for tests).
ChainOutcome RunL3Linear(const Program& prog, L3Chain chain, const EvalContext& ctx);

// Layer 2: root chain of `dir` with jumps into sub-chains. Outcomes: terminal accept/drop
// (reject = drop at layer 2), `return` at the root = pass (terminal=false), falling off a
// sub-chain = ACCEPT (b.3).
struct L2Outcome {
  bool dropped = false;
  int32_t instr = -1;  // deciding instruction (accept or drop), -1 when fallen off
  uint32_t rule = 0;
};
L2Outcome RunL2(const Program& prog, L2Dir dir, const EvalContext& ctx, Trace* trace = nullptr,
                uint64_t* counters = nullptr, uint32_t bytes = 0);

// True when every test of `in` matches; otherwise the first failing test.
bool InstrMatches(const Program& prog, const Instr& in, const EvalContext& ctx,
                  int32_t* failed_test = nullptr, TestResult* failed_result = nullptr);

}  // namespace nwfq::engine
