// The compiled program with its classifier against ClassBench's own answers: for every
// header of an hs1 trace, the deciding rule must be the first matching rule the trace
// names (1-based line, FORMAT.md section 2), for the 100, 1K and 10K acl1 and fw1 sets.
// GRE headers are skipped (no layer-3 nwfilter element; see classbench.h).
#include "tests/engine/classbench.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <iostream>

#include "engine/compiler.h"
#include "engine/evaluator.h"

namespace nwfq::engine {
namespace {

class ClassBenchFirstMatch : public ::testing::TestWithParam<const char*> {};

TEST_P(ClassBenchFirstMatch, AgreesWithTraceIds) {
  const std::string dir = std::string(NWFQ_SHARED_DIR) + "/classbench";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " is absent (shared data)";
  const std::string name = GetParam();
  const auto rules = classbench::LoadRules(dir + "/rules/" + name);
  const auto trace = classbench::LoadTrace(dir + "/traces/" + name + "_trace");
  ASSERT_FALSE(rules.empty()) << name;
  ASSERT_FALSE(trace.empty()) << name;
  std::vector<int> line_of;
  const InstantiatedBinding b = classbench::ToBinding(rules, &line_of);
  auto prog = Compile(b);
  ASSERT_TRUE(prog.ok()) << prog.status();
  const Program& p = **prog;
  const Classifier& cls = p.classifiers[static_cast<int>(L3Chain::kFI)][0];
  ASSERT_TRUE(cls.built());
  if (rules.size() >= 1000) {
    // A real tree: short leaves, far below the rule count.
    EXPECT_LE(cls.stats().max_leaf, 64u) << name;
    std::cout << name << ": leaves " << cls.stats().leaves << " max_leaf " << cls.stats().max_leaf
              << " cands " << cls.stats().candidates << " bytes " << cls.MemoryBytes() << " depth "
              << cls.stats().max_depth << " trees " << cls.stats().trees << "\n";
    EXPECT_GT(cls.stats().leaves, rules.size() / 16) << name;
  }
  size_t checked = 0, skipped = 0;
  for (size_t k = 0; k < trace.size(); ++k) {
    const classbench::CbHeader& h = trace[k];
    if (!classbench::Mappable(h.proto)) {
      ++skipped;
      continue;
    }
    PacketView v;
    v.family = 4;
    const uint32_t s = htonl(h.src), d = htonl(h.dst);
    std::memcpy(v.src_ip.data(), &s, 4);
    std::memcpy(v.dst_ip.data(), &d, 4);
    v.l4proto = h.proto;
    v.has_l4 = true;
    v.sport = h.sport;
    v.dport = h.dport;
    EvalContext ctx{&v};
    ctx.tracked = true;
    ctx.state = ct::State::kNew;
    const ChainOutcome o = RunL3(p, L3Chain::kFI, ctx);
    ASSERT_TRUE(o.terminal) << name << " line " << k + 1;
    ASSERT_EQ(line_of[o.rule] + 1, h.id) << name << " trace line " << k + 1;
    ++checked;
  }
  EXPECT_GT(checked, trace.size() * 9 / 10) << skipped << " skipped";
}

INSTANTIATE_TEST_SUITE_P(Sets, ClassBenchFirstMatch,
                         ::testing::Values("acl1_100", "acl1_1K", "acl1_10K", "fw1_100", "fw1_1K",
                                           "fw1_10K"));

}  // namespace
}  // namespace nwfq::engine
