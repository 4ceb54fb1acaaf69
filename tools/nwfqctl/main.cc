// nwfqctl: offline tools for libvirt nwfilter policies (check, show, replay, explain), the
// built-in lab, and the control client of a running nwfqd.
#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

#include "tools/nwfqctl/command_registry.h"

namespace nwfq::ctl {
namespace {

std::vector<std::pair<int, CommandAdder>>& Registry() {
  static auto* registry = new std::vector<std::pair<int, CommandAdder>>();
  return *registry;
}

}  // namespace

bool RegisterCommands(int order, CommandAdder adder) {
  Registry().emplace_back(order, std::move(adder));
  return true;
}

}  // namespace nwfq::ctl

int main(int argc, char** argv) {
  using nwfq::ctl::Registry;
  CLI::App app{
      "nwfqctl: check, show and replay libvirt nwfilter policies, run the nwfq lab, and\n"
      "control a running nwfqd.\n"};
  app.require_subcommand(1);
  nwfq::ctl::GlobalOptions globals;
  app.add_option("--control", globals.control_path, "nwfqd control socket")
      ->capture_default_str();
  int exit_code = 0;
  auto& registry = Registry();
  std::stable_sort(registry.begin(), registry.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, adder] : registry) adder(app, globals, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 reports usage errors by exception; this is the one place we catch them.
    return app.exit(e) == 0 ? 0 : 2;
  }
  return exit_code;
}
