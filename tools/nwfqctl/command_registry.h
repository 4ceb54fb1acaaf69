// nwfqctl is one CLI11 program whose subcommands live in files of their own
// (cmd_<area>.cc). Each file registers a function that adds its subcommands, so areas
// (parser, engine, lab, control) can grow without touching main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace nwfq::ctl {

// Process-wide settings shared by every subcommand.
struct GlobalOptions {
  std::string control_path = "/run/nwfq/nwfqd.sock";  // --control: nwfqd's control socket
};

// Adds subcommands to `app`. A subcommand's callback stores its process exit status in
// `*exit_code` (0 = success, 1 = a negative answer such as "invalid", 2 = usage or I/O error).
using CommandAdder = std::function<void(CLI::App& app, const GlobalOptions& globals,
                                        int* exit_code)>;

// Called from namespace-scope initialisers in cmd_*.cc; `order` sorts the help listing.
bool RegisterCommands(int order, CommandAdder adder);

}  // namespace nwfq::ctl
