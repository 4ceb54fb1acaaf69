// nwfqctl check | xml2xml | show: offline tools over libvirt nwfilter XML.
//
//   check [--filters DIR] [--strict] FILE...   validate filters (and bindings with --filters)
//   xml2xml FILE                               libvirt's canonical form of a filter
//   show --filters DIR BINDING.xml [--format text|json]
//                                              the instantiated rules in evaluation order,
//                                              then per view as the engine compiled them
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/compiler.h"
#include "engine/explain.h"
#include "engine/program.h"
#include "parser/binding.h"
#include "parser/filter_parser.h"
#include "parser/filter_set.h"
#include "parser/instantiate.h"
#include "parser/rule_format.h"
#include "parser/strutil.h"
#include "parser/xml_writer.h"
#include "tools/nwfqctl/command_registry.h"

namespace nwfq::ctl {
namespace {

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

void PrintWarning(const std::string& file, int line, const std::string& message) {
  std::fprintf(stderr, "%s:%d: warning: %s\n", file.c_str(), line, message.c_str());
}

void PrintWarnings(const InstantiatedBinding& b, const std::string& skip_file = "") {
  for (const Warning& w : b.warnings) {
    if (!skip_file.empty() && w.origin.file == skip_file) continue;
    PrintWarning(w.origin.file.empty() ? "<memory>" : w.origin.file, w.origin.line, w.message);
  }
}

bool LooksLikeBinding(const std::string& text) {
  return text.find("<filterbinding") != std::string::npos;
}

// check: exit 0 when every file is valid, 1 otherwise (2 for unreadable files).
int RunCheck(const std::string& filters_dir, bool strict, const std::vector<std::string>& files) {
  FilterSet set;
  int rc = 0;
  if (!filters_dir.empty()) {
    absl::StatusOr<FilterSet> loaded = FilterSet::LoadDirectory(filters_dir);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", Msg(loaded.status()).c_str());
      return 1;
    }
    set = *std::move(loaded);
  }
  std::vector<std::string> tops;
  for (const std::string& file : files) {
    absl::StatusOr<std::string> text = ReadFileToString(file);
    if (!text.ok()) {
      std::fprintf(stderr, "%s\n", Msg(text.status()).c_str());
      rc = 2;
      continue;
    }
    if (LooksLikeBinding(*text)) {
      absl::StatusOr<Binding> b = ParseBindingString(*text, file);
      if (!b.ok()) {
        std::fprintf(stderr, "%s\n", Msg(b.status()).c_str());
        rc = std::max(rc, 1);
        continue;
      }
      if (filters_dir.empty()) {
        std::printf("%s: binding ok (filter '%s'; give --filters DIR to instantiate it)\n",
                    file.c_str(), b->filter.c_str());
        continue;
      }
      absl::StatusOr<InstantiatedBinding> inst = Instantiate(set, *b);
      if (!inst.ok()) {
        std::fprintf(stderr, "%s\n", Msg(inst.status()).c_str());
        rc = std::max(rc, 1);
        continue;
      }
      PrintWarnings(*inst);
      std::printf("%s: binding ok (%zu rules: %zu layer-3, %zu layer-2 chains)\n", file.c_str(),
                  inst->rules.size(), inst->l3_order.size(), inst->l2_chains.size());
      continue;
    }
    absl::StatusOr<Filter> f = ParseFilterString(*text, file);
    if (!f.ok()) {
      std::fprintf(stderr, "%s\n", Msg(f.status()).c_str());
      rc = std::max(rc, 1);
      continue;
    }
    for (const Note& n : f->notes) {
      if (n.strict && !strict) continue;
      PrintWarning(file, n.line, n.message);
    }
    size_t rules = 0, refs = 0;
    for (const FilterEntry& e : f->entries) (e.rule ? rules : refs)++;
    std::printf("%s: ok (filter '%s', chain '%s', %zu rules, %zu filterrefs)\n", file.c_str(),
                f->name.c_str(), f->chain.c_str(), rules, refs);
    if (!filters_dir.empty()) {
      tops.push_back(f->name);
      set.AddOrReplace(*std::move(f));
    }
  }
  // With a filter directory: resolve each checked filter's references and report what
  // instantiation would (unknown filters, cycles, ordering surprises).
  for (const std::string& top : tops) {
    absl::StatusOr<InstantiatedBinding> inst = InstantiateStructure(set, top);
    if (!inst.ok()) {
      std::fprintf(stderr, "%s\n", Msg(inst.status()).c_str());
      rc = std::max(rc, 1);
      continue;
    }
    // Notes of the checked file itself were printed above.
    const Filter* f = set.Find(top);
    PrintWarnings(*inst, f ? f->file : "");
  }
  return rc;
}

int RunXml2Xml(const std::string& file) {
  absl::StatusOr<Filter> f = ParseFilterFile(file);
  if (!f.ok()) {
    std::fprintf(stderr, "%s\n", Msg(f.status()).c_str());
    return f.status().code() == absl::StatusCode::kInvalidArgument ? 1 : 2;
  }
  std::fputs(FormatFilterXml(*f).c_str(), stdout);
  return 0;
}

std::string MacText(const std::array<uint8_t, 6>& m) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

std::string Origin(const RuleOrigin& o) {
  return str::Cat(o.filter, " ", o.file.empty() ? "<memory>" : o.file, ":", o.line);
}

// Which libvirt views a rule's direction feeds (semantics b.3 / c.2); the exact
// per-view placement (swaps, state, ICMP type quirks) is the engine compiler's job.
const char* L2Views(Direction d) {
  return d == Direction::kOut ? "I" : d == Direction::kIn ? "O" : "I+O";
}

// One compiled chain of one view: what nwfqd evaluates for packets meeting that view, with
// libvirt's placement already applied (swaps, state matches, one-direction rules, c.2-d.4).
struct ViewChain {
  std::string name;  // "FI ipv4", "O root", "I arp-mac", ...
  std::vector<const engine::Instr*> instrs;
};

std::vector<ViewChain> CompiledViews(const engine::Program& prog, const InstantiatedBinding& b) {
  static constexpr const char* kL3[] = {"FI (from the VM)", "FO (to the VM)",
                                        "HI (from the VM to the host)"};
  std::vector<ViewChain> out;
  for (int dir = 0; dir < 2; ++dir) {
    for (size_t c = 0; c < prog.l2[dir].size() && c < b.l2_chains.size(); ++c) {
      const engine::ChainRange& r = prog.l2[dir][c];
      if (r.count == 0) continue;
      ViewChain v{str::Cat(dir == 0 ? "I" : "O", " ", b.l2_chains[c].name, " (layer 2)"), {}};
      for (uint32_t i = r.first; i < r.first + r.count; ++i) v.instrs.push_back(&prog.instrs[i]);
      out.push_back(std::move(v));
    }
  }
  for (int chain = 0; chain < engine::kL3ChainCount; ++chain) {
    for (int family = 0; family < 2; ++family) {
      const engine::ChainRange& r = prog.l3[chain][family];
      if (r.count == 0) continue;
      ViewChain v{str::Cat(kL3[chain], ", ", family == 0 ? "IPv4" : "IPv6"), {}};
      for (uint32_t i = r.first; i < r.first + r.count; ++i) v.instrs.push_back(&prog.instrs[i]);
      out.push_back(std::move(v));
    }
  }
  return out;
}

void ShowViewsText(const engine::Program& prog, const InstantiatedBinding& b) {
  std::printf(
      "\nviews (as nwfqd evaluates them: each rule placed in libvirt's chains, swapped or\n"
      "  stateful as libvirt generates it; first terminal action wins)\n");
  for (const ViewChain& v : CompiledViews(prog, b)) {
    std::printf("  %s\n", v.name.c_str());
    int n = 0;
    for (const engine::Instr* in : v.instrs) {
      const std::string who = in->jump >= 0 ? "" : engine::RuleLabel(prog, in->rule);
      std::printf("    %3d  %-70s %s\n", ++n, engine::DescribeInstr(prog, *in).c_str(),
                  who.c_str());
    }
  }
}

void ShowText(const InstantiatedBinding& b) {
  std::printf("binding %s (owner %s %s), mac %s, filter %s\n", b.portdev.c_str(),
              b.owner_name.c_str(), b.owner_uuid.c_str(), MacText(b.mac).c_str(),
              b.top_filter.c_str());
  std::printf("\nlayer 2 (ebtables order; I = frames from the VM, O = frames to the VM)\n");
  for (const L2Chain& c : b.l2_chains) {
    if (c.name == "root")
      std::printf("  chain root\n");
    else
      std::printf("  chain %s (priority %d; falling off its end accepts the frame)\n",
                  c.name.c_str(), c.priority);
    int n = 0;
    for (const L2Entry& e : c.entries) {
      if (e.kind == L2Entry::Kind::kJump) {
        const L2Chain& t = b.l2_chains[e.index];
        std::printf("    %3d  %5d  jump %s\n", ++n, t.priority, t.name.c_str());
        continue;
      }
      const ConcreteRule& r = b.rules[e.index];
      std::printf("    %3d  %5d  %-3s %-8s %-40s  %s\n", ++n, r.priority, L2Views(r.direction),
                  std::string(ActionName(r.action)).c_str(), FormatRuleMatch(r).c_str(),
                  Origin(r.origin).c_str());
    }
  }
  std::printf(
      "\nlayer 3 (iptables order, the same for FI = from the VM, FO = to the VM, HI = VM to "
      "host;\n  each rule applies in the views its direction selects, see semantics c.2)\n");
  int n = 0;
  for (uint32_t i : b.l3_order) {
    const ConcreteRule& r = b.rules[i];
    std::printf("    %3d  %5d  %-5s %-8s %-40s  %s%s\n", ++n, r.priority,
                std::string(DirectionName(r.direction)).c_str(),
                std::string(ActionName(r.action)).c_str(), FormatRuleMatch(r).c_str(),
                Origin(r.origin).c_str(),
                r.from_root_filter ? "" : str::Cat(" [chain ", r.chain, "]").c_str());
  }
  if (b.l3_order.empty()) std::printf("    (none)\n");
  if (!b.warnings.empty()) {
    std::printf("\nwarnings\n");
    for (const Warning& w : b.warnings)
      std::printf("  %s:%d: %s\n", w.origin.file.c_str(), w.origin.line, w.message.c_str());
  }
}

std::string Json(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += absl::StrFormat("\\u%04x", c);
        else
          out += c;
    }
  }
  return out + "\"";
}

std::string RuleJson(const InstantiatedBinding& b, uint32_t i) {
  const ConcreteRule& r = b.rules[i];
  std::string attrs;
  for (const AttrSlot& s : r.attrs) {
    if (!attrs.empty()) attrs += ",";
    str::Append(&attrs, "{\"name\":", Json(AttrName(s.attr)),
                ",\"value\":", Json(FormatSlotValue(r.protocol, s)),
                ",\"negated\":", s.negated ? "true" : "false", "}");
  }
  return str::Cat("{\"index\":", i, ",\"action\":", Json(ActionName(r.action)),
                  ",\"direction\":", Json(DirectionName(r.direction)), ",\"priority\":", r.priority,
                  ",\"statematch\":", r.statematch ? "true" : "false", ",\"protocol\":",
                  Json(r.protocol == Protocol::kNone ? "" : ProtocolName(r.protocol)),
                  ",\"match\":", Json(FormatRuleMatch(r)), ",\"attrs\":[", attrs,
                  "],\"filter\":", Json(r.origin.filter), ",\"file\":", Json(r.origin.file),
                  ",\"line\":", r.origin.line, ",\"chain\":", Json(r.chain), "}");
}

void ShowJson(const InstantiatedBinding& b, const engine::Program& prog) {
  std::string out =
      str::Cat("{\"binding\":{\"portdev\":", Json(b.portdev), ",\"owner\":", Json(b.owner_name),
               ",\"uuid\":", Json(b.owner_uuid), ",\"mac\":", Json(MacText(b.mac)),
               ",\"filter\":", Json(b.top_filter), "},\"l2\":[");
  for (size_t c = 0; c < b.l2_chains.size(); ++c) {
    const L2Chain& ch = b.l2_chains[c];
    if (c) out += ",";
    str::Append(&out, "{\"chain\":", Json(ch.name), ",\"priority\":", ch.priority,
                ",\"entries\":[");
    for (size_t k = 0; k < ch.entries.size(); ++k) {
      const L2Entry& e = ch.entries[k];
      if (k) out += ",";
      if (e.kind == L2Entry::Kind::kJump) {
        str::Append(&out, "{\"jump\":", Json(b.l2_chains[e.index].name),
                    ",\"priority\":", b.l2_chains[e.index].priority, "}");
      } else {
        str::Append(&out, "{\"rule\":", RuleJson(b, e.index), "}");
      }
    }
    out += "]}";
  }
  out += "],\"l3\":[";
  for (size_t k = 0; k < b.l3_order.size(); ++k) {
    if (k) out += ",";
    out += RuleJson(b, b.l3_order[k]);
  }
  out += "],\"views\":[";
  bool first_view = true;
  for (const ViewChain& v : CompiledViews(prog, b)) {
    str::Append(&out, first_view ? "" : ",", "{\"chain\":", Json(v.name), ",\"rules\":[");
    first_view = false;
    for (size_t k = 0; k < v.instrs.size(); ++k) {
      const engine::Instr& in = *v.instrs[k];
      str::Append(&out, k ? "," : "", "{\"match\":", Json(engine::DescribeInstr(prog, in)),
                  ",\"rule\":", in.jump >= 0 ? "null" : Json(engine::RuleLabel(prog, in.rule)),
                  "}");
    }
    out += "]}";
  }
  out += "],\"warnings\":[";
  for (size_t k = 0; k < b.warnings.size(); ++k) {
    const Warning& w = b.warnings[k];
    if (k) out += ",";
    str::Append(&out, "{\"filter\":", Json(w.origin.filter), ",\"file\":", Json(w.origin.file),
                ",\"line\":", w.origin.line, ",\"message\":", Json(w.message), "}");
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
}

int RunShow(const std::string& filters_dir, const std::string& binding_file,
            const std::string& format) {
  absl::StatusOr<FilterSet> set = FilterSet::LoadDirectory(filters_dir);
  if (!set.ok()) {
    std::fprintf(stderr, "%s\n", Msg(set.status()).c_str());
    return 1;
  }
  absl::StatusOr<Binding> b = ParseBindingFile(binding_file);
  if (!b.ok()) {
    std::fprintf(stderr, "%s\n", Msg(b.status()).c_str());
    return 1;
  }
  absl::StatusOr<InstantiatedBinding> inst = Instantiate(*set, *b);
  if (!inst.ok()) {
    std::fprintf(stderr, "%s\n", Msg(inst.status()).c_str());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<const engine::Program>> prog = engine::Compile(*inst);
  if (!prog.ok()) {
    std::fprintf(stderr, "%s\n", Msg(prog.status()).c_str());
    return 1;
  }
  if (format == "json") {
    ShowJson(*inst, **prog);
  } else {
    ShowText(*inst);
    ShowViewsText(**prog, *inst);
  }
  return 0;
}

struct Options {
  std::string filters_dir;
  bool strict = false;
  std::vector<std::string> files;
  std::string file;
  std::string format = "text";
};

const bool kRegistered =
    RegisterCommands(10, [](CLI::App& app, const GlobalOptions&, int* exit_code) {
      auto opts = std::make_shared<Options>();
      CLI::App* check = app.add_subcommand(
          "check",
          "Validate nwfilter documents (exit 0 valid, 1 invalid). Filters are checked like\n"
          "libvirt does (any bad value rejects the document); warnings name what libvirt\n"
          "would do silently. With --filters, references are resolved and <filterbinding>\n"
          "files are instantiated.");
      check->add_option("--filters", opts->filters_dir, "directory of filter XMLs")
          ->check(CLI::ExistingDirectory);
      check->add_flag("--strict", opts->strict,
                      "also warn about unknown attributes and ignored elements");
      check->add_option("FILE", opts->files, "filter or binding XML files")->required();
      check->callback([opts, exit_code] {
        *exit_code = RunCheck(opts->filters_dir, opts->strict, opts->files);
      });

      CLI::App* x2x = app.add_subcommand(
          "xml2xml", "Print a filter in libvirt's canonical form (as virsh nwfilter-dumpxml)");
      x2x->add_option("FILE", opts->file, "filter XML file")->required();
      x2x->callback([opts, exit_code] { *exit_code = RunXml2Xml(opts->file); });

      CLI::App* show = app.add_subcommand(
          "show",
          "Instantiate a <filterbinding> against a filter directory and print its rules in\n"
          "evaluation order per layer, each with its filter and source line");
      show->add_option("--filters", opts->filters_dir, "directory of filter XMLs")
          ->required()
          ->check(CLI::ExistingDirectory);
      show->add_option("--format", opts->format, "text or json")
          ->check(CLI::IsMember({"text", "json"}))
          ->capture_default_str();
      show->add_option("BINDING", opts->file, "filterbinding XML")->required();
      show->callback(
          [opts, exit_code] { *exit_code = RunShow(opts->filters_dir, opts->file, opts->format); });
    });

}  // namespace
}  // namespace nwfq::ctl
