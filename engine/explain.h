// Human-readable rendering of compiled instructions and evaluation traces (--explain).
#pragma once

#include <string>

#include "engine/evaluator.h"
#include "engine/program.h"

namespace nwfq::engine {

// One test in iptables/ebtables-like syntax, e.g. "! --dport 22:25" or "--ctdir REPLY".
std::string DescribeTest(const Test& t);
// All tests of an instruction, space separated, followed by "-> ACTION".
std::string DescribeInstr(const Program& prog, const Instr& in);
// "filter:line" of a rule (the CSV's rule column).
std::string RuleLabel(const Program& prog, uint32_t rule);
// One line per trace step: "  FI  #3 http:12 [--dport 80 -> accept]  no: --dport 80".
std::string FormatTrace(const Program& prog, const Trace& trace);

}  // namespace nwfq::engine
