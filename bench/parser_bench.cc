// Parser benchmarks.
//
// BM_CleanTraffic1000Bindings: one iteration = parse 1,000 <filterbinding> documents
// (each its own MAC and IP) and instantiate each against the 24 predefined filters,
// which are loaded once beforehand (as nwfqd does at start). Target: < 100 ms.
// BM_LoadPredefinedDirectory: parse and validate the 24 predefined filter files.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "parser/binding.h"
#include "parser/filter_parser.h"
#include "parser/filter_set.h"
#include "parser/instantiate.h"

namespace nwfq {
namespace {

const std::string kPredefined = std::string(NWFQ_SHARED_DIR) + "/nwfilter/predefined";

std::vector<std::string> MakeBindings(int n) {
  std::vector<std::string> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    out.push_back(absl::StrFormat(
        "<filterbinding>\n"
        "  <owner><name>vm%d</name><uuid>6f726163-6c65-4000-8000-%012x</uuid></owner>\n"
        "  <portdev name='vnet%d'/>\n"
        "  <mac address='52:54:00:%02x:%02x:%02x'/>\n"
        "  <filterref filter='clean-traffic'>\n"
        "    <parameter name='IP' value='198.18.%d.%d'/>\n"
        "  </filterref>\n"
        "</filterbinding>\n",
        i, i, i, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff, (i >> 8) & 0xff, i & 0xff));
  }
  return out;
}

void BM_CleanTraffic1000Bindings(benchmark::State& state) {
  if (!std::filesystem::exists(kPredefined)) {
    state.SkipWithError("shared predefined filters not found");
    return;
  }
  absl::StatusOr<FilterSet> set = FilterSet::LoadDirectory(kPredefined);
  if (!set.ok()) {
    state.SkipWithError(std::string(set.status().message()).c_str());
    return;
  }
  const std::vector<std::string> docs = MakeBindings(1000);
  size_t rules = 0;
  for (auto _ : state) {
    for (const std::string& d : docs) {
      absl::StatusOr<Binding> b = ParseBindingString(d, "bench");
      absl::StatusOr<InstantiatedBinding> inst = Instantiate(*set, *b);
      rules += inst->rules.size();
      benchmark::DoNotOptimize(inst);
    }
  }
  state.counters["bindings/s"] = benchmark::Counter(
      1000.0 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["rules/binding"] =
      static_cast<double>(rules) / (1000.0 * static_cast<double>(state.iterations()));
}
BENCHMARK(BM_CleanTraffic1000Bindings)->Unit(benchmark::kMillisecond);

void BM_LoadPredefinedDirectory(benchmark::State& state) {
  if (!std::filesystem::exists(kPredefined)) {
    state.SkipWithError("shared predefined filters not found");
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<FilterSet> set = FilterSet::LoadDirectory(kPredefined);
    benchmark::DoNotOptimize(set);
  }
}
BENCHMARK(BM_LoadPredefinedDirectory)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace nwfq

BENCHMARK_MAIN();
