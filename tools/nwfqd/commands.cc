// The control requests (protocol: control.h; the nwfqctl side: tools/nwfqctl/cmd_control.cc).
#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "conntrack/clock.h"
#include "parser/rule_format.h"
#include "tools/nwfqd/daemon.h"

namespace nwfq::nwfqd {
namespace {

constexpr char kHelp[] =
    "requests (one line; answer: `ok` or `error`, then the body):\n"
    "  status\n"
    "  reload\n"
    "  conntrack list [--binding B] [--json]\n"
    "  conntrack stats [--binding B] [--json]\n"
    "  conntrack flush [--binding B]\n"
    "  timeout get [NAME] [--binding B]\n"
    "  timeout set NAME SECONDS [--binding B]\n"
    "  timeout reset NAME [--binding B]\n"
    "  counters [--binding B] [--json]\n"
    "  trace [--count N] [--rate N] [--seconds N] [EXPR: proto P | port N | host A | src A |"
    " dst A | binding B | view V ...]\n";

// Pulls `--name VALUE` / `--flag` out of args; what remains are the positional words.
struct Args {
  std::vector<std::string> words;
  std::map<std::string, std::string> opts;
  std::string error;
};

Args ParseArgs(const std::vector<std::string>& in, size_t from,
               const std::vector<std::string>& valued, const std::vector<std::string>& flags) {
  Args a;
  for (size_t i = from; i < in.size(); ++i) {
    const std::string& w = in[i];
    if (w.size() > 2 && w[0] == '-' && w[1] == '-') {
      const std::string name = w.substr(2);
      if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
        a.opts[name] = "1";
      } else if (std::find(valued.begin(), valued.end(), name) != valued.end() &&
                 i + 1 < in.size()) {
        a.opts[name] = in[++i];
      } else {
        a.error = absl::StrCat("unknown or incomplete option '", w, "'");
      }
      continue;
    }
    a.words.push_back(w);
  }
  return a;
}

std::string JsonStr(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Ip(const std::array<uint8_t, 16>& a, uint8_t family) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, a.data(), buf, sizeof(buf));
  return buf;
}

const char* ProtoName(uint8_t p) {
  switch (p) {
    case 1:
      return "icmp";
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 33:
      return "dccp";
    case 47:
      return "gre";
    case 58:
      return "icmpv6";
    case 132:
      return "sctp";
    case 136:
      return "udplite";
    default:
      return "unknown";
  }
}

uint8_t IcmpReplyType(uint8_t family, uint8_t type) {
  if (family == 4)
    return type == 8 ? 0 : type == 13 ? 14 : type == 15 ? 16 : type == 17 ? 18 : type;
  return type == 128 ? 129 : type;
}

// One connection as `conntrack -L` prints it (original tuple, reply tuple, flags), with
// the binding first: "vnet0 tcp 6 431999 ESTABLISHED src=... dst=... sport=... dport=...
// src=... dst=... sport=... dport=... [ASSURED]".
std::string ConnLine(const std::string& dev, const ct::ConnInfo& c) {
  const ct::FlowFacts& f = c.original;
  const int64_t left = std::max<int64_t>(0, c.expires_in / ct::kNanosPerSecond);
  std::string s = absl::StrFormat("%-8s %-8s %-3d %d ", dev, ProtoName(f.l4proto), f.l4proto, left);
  if (!c.state_name.empty()) absl::StrAppend(&s, std::string(c.state_name), " ");
  const std::string src = Ip(f.src, f.family), dst = Ip(f.dst, f.family);
  auto tuple = [&](const std::string& a, const std::string& b, bool reply) {
    std::string t = absl::StrCat("src=", a, " dst=", b);
    if (f.l4proto == 1 || f.l4proto == 58) {
      absl::StrAppend(&t, " type=", reply ? IcmpReplyType(f.family, f.icmp_type) : f.icmp_type,
                      " code=", f.icmp_code, " id=", f.icmp_id);
    } else if (f.sport != 0 || f.dport != 0) {
      absl::StrAppend(&t, " sport=", reply ? f.dport : f.sport,
                      " dport=", reply ? f.sport : f.dport);
    }
    return t;
  };
  absl::StrAppend(&s, tuple(src, dst, false), c.seen_reply ? " " : " [UNREPLIED] ",
                  tuple(dst, src, true));
  if (c.assured) absl::StrAppend(&s, " [ASSURED]");
  return s + "\n";
}

std::string ConnJson(const std::string& dev, const ct::ConnInfo& c) {
  const ct::FlowFacts& f = c.original;
  std::string s = absl::StrCat(
      "{\"binding\":", JsonStr(dev), ",\"proto\":", JsonStr(ProtoName(f.l4proto)),
      ",\"protonum\":", f.l4proto, ",\"family\":", f.family == 4 ? "\"ipv4\"" : "\"ipv6\"",
      ",\"state\":", JsonStr(std::string(c.state_name)),
      ",\"timeout\":", std::max<int64_t>(0, c.expires_in / ct::kNanosPerSecond),
      ",\"src\":", JsonStr(Ip(f.src, f.family)), ",\"dst\":", JsonStr(Ip(f.dst, f.family)));
  if (f.l4proto == 1 || f.l4proto == 58) {
    absl::StrAppend(&s, ",\"type\":", f.icmp_type, ",\"code\":", f.icmp_code,
                    ",\"id\":", f.icmp_id);
  } else {
    absl::StrAppend(&s, ",\"sport\":", f.sport, ",\"dport\":", f.dport);
  }
  absl::StrAppend(&s, ",\"seen_reply\":", c.seen_reply ? "true" : "false",
                  ",\"assured\":", c.assured ? "true" : "false", "}");
  return s;
}

}  // namespace

void Daemon::Handle(const std::vector<std::string>& args, Reply& reply) {
  const std::string& cmd = args[0];
  if (cmd == "help") return reply.Ok(kHelp);
  if (cmd == "status") return reply.Ok(StatusText());
  if (cmd == "reload") {
    absl::StatusOr<std::string> r = Reload("control");
    if (!r.ok()) return reply.Error(absl::StrCat(r.status().message(), "\n(old policy kept)"));
    return reply.Ok(*r + "\n");
  }
  if (cmd == "conntrack") return HandleConntrack(args, reply);
  if (cmd == "timeout") return HandleTimeout(args, reply);
  if (cmd == "counters") return HandleCounters(args, reply);
  if (cmd == "trace") return HandleTrace(args, reply);
  reply.Error(absl::StrCat("unknown request '", cmd, "'\n", kHelp));
}

void Daemon::HandleConntrack(const std::vector<std::string>& args, Reply& reply) {
  Args a = ParseArgs(args, 1, {"binding"}, {"json"});
  if (!a.error.empty()) return reply.Error(a.error);
  if (a.words.size() != 1)
    return reply.Error("usage: conntrack list|stats|flush [--binding B] [--json]");
  const std::string& sub = a.words[0];
  const bool json = a.opts.count("json") != 0;
  std::lock_guard<std::mutex> lock(reload_mu_);  // the binding set stays as it is
  std::vector<std::string> devs;
  if (a.opts.count("binding")) {
    if (policy_->bindings.count(a.opts["binding"]) == 0)
      return reply.Error(absl::StrCat("no binding '", a.opts["binding"], "'"));
    devs.push_back(a.opts["binding"]);
  } else {
    devs = Portdevs();
  }
  std::string out;
  if (sub == "list") {
    const ct::Nanos now = ct::MonotonicClock().Now();
    size_t n = 0;
    gate_.Run([&] {
      for (const std::string& dev : devs) {
        const ct::Table* t = engine_.conntrack_table(dev);
        if (t == nullptr) continue;
        t->ForEach(now, [&](const ct::ConnInfo& c) {
          if (json) {
            absl::StrAppend(&out, n == 0 ? "[\n" : ",\n", ConnJson(dev, c));
          } else {
            absl::StrAppend(&out, ConnLine(dev, c));
          }
          ++n;
        });
      }
    });
    if (json) {
      out = n == 0 ? "[]\n" : out + "\n]\n";
    } else {
      absl::StrAppend(&out, "nwfqd: ", n, " flow entries have been shown.\n");
    }
    return reply.Ok(out);
  }
  if (sub == "stats") {
    gate_.Run([&] {
      if (json) out = "[";
      bool first = true;
      for (const std::string& dev : devs) {
        const ct::Table* t = engine_.conntrack_table(dev);
        if (t == nullptr) continue;
        const ct::TableStats& s = t->stats();
        if (json) {
          absl::StrAppend(
              &out, first ? "" : ",", "\n{\"binding\":", JsonStr(dev), ",\"entries\":", t->size(),
              ",\"capacity\":", t->capacity(), ",\"found\":", s.found, ",\"new\":", s.new_conns,
              ",\"confirmed\":", s.confirmed, ",\"invalid\":", s.invalid, ",\"ignore\":", s.ignored,
              ",\"related\":", s.related, ",\"early_drop\":", s.early_drop,
              ",\"insert_failed\":", s.insert_failed, ",\"expired\":", s.expired, "}");
        } else {
          absl::StrAppend(&out, dev, ": entries=", t->size(), " capacity=", t->capacity(),
                          " found=", s.found, " new=", s.new_conns, " confirmed=", s.confirmed,
                          " invalid=", s.invalid, " ignore=", s.ignored, " related=", s.related,
                          " early_drop=", s.early_drop, " insert_failed=", s.insert_failed,
                          " expired=", s.expired, "\n");
        }
        first = false;
      }
      if (json) out += "\n]\n";
    });
    return reply.Ok(out);
  }
  if (sub == "flush") {
    size_t n = 0;
    gate_.Run([&] {
      for (const std::string& dev : devs) {
        if (ct::Table* t = engine_.conntrack_table(dev); t != nullptr) {
          n += t->size();
          t->Flush();
        }
      }
    });
    std::fprintf(stderr, "nwfqd: conntrack flush (control): %zu entries removed\n", n);
    return reply.Ok(absl::StrCat("flushed ", n, " entries from ", devs.size(), " binding(s)\n"));
  }
  reply.Error(absl::StrCat("unknown conntrack request '", sub, "' (list, stats, flush)"));
}

void Daemon::HandleTimeout(const std::vector<std::string>& args, Reply& reply) {
  Args a = ParseArgs(args, 1, {"binding"}, {});
  if (!a.error.empty()) return reply.Error(a.error);
  if (a.words.empty())
    return reply.Error("usage: timeout get [NAME] | set NAME SECONDS | reset NAME [--binding B]");
  ct::TimeoutPolicy* policy = &engine_.timeouts();
  std::string scope = "global";
  if (a.opts.count("binding")) {
    policy = engine_.binding_timeouts(a.opts["binding"]);  // stable until RemoveBinding
    if (policy == nullptr) return reply.Error(absl::StrCat("no binding '", a.opts["binding"], "'"));
    scope = absl::StrCat("binding ", a.opts["binding"]);
  }
  const std::string& sub = a.words[0];
  if (sub == "get") {
    if (a.words.size() == 1) return reply.Ok(policy->Format());
    absl::StatusOr<ct::TimeoutClass> c = ct::TimeoutPolicy::ParseName(a.words[1]);
    if (!c.ok()) return reply.Error(c.status().message());
    return reply.Ok(absl::StrCat(std::string(ct::TimeoutPolicy::Name(*c)), " ", policy->Seconds(*c),
                                 policy->IsOverridden(*c) ? " *" : "", "\n"));
  }
  if (sub == "set" && a.words.size() == 3) {
    uint32_t seconds = 0;
    if (!absl::SimpleAtoi(a.words[2], &seconds))
      return reply.Error(absl::StrCat("'", a.words[2], "' is not a number of seconds"));
    absl::StatusOr<ct::TimeoutClass> c = ct::TimeoutPolicy::ParseName(a.words[1]);
    if (!c.ok()) return reply.Error(c.status().message());
    if (absl::Status st = policy->Set(*c, seconds); !st.ok()) return reply.Error(st.message());
    std::fprintf(stderr, "nwfqd: timeout %s = %u s (%s, control)\n",
                 std::string(std::string(ct::TimeoutPolicy::Name(*c))).c_str(), seconds,
                 scope.c_str());
    return reply.Ok(
        absl::StrCat(scope, ": ", std::string(ct::TimeoutPolicy::Name(*c)), " ", seconds, "\n"));
  }
  if (sub == "reset" && a.words.size() == 2) {
    absl::StatusOr<ct::TimeoutClass> c = ct::TimeoutPolicy::ParseName(a.words[1]);
    if (!c.ok()) return reply.Error(c.status().message());
    policy->Clear(*c);
    return reply.Ok(absl::StrCat(scope, ": ", std::string(ct::TimeoutPolicy::Name(*c)), " ",
                                 policy->Seconds(*c), " (inherited)\n"));
  }
  reply.Error("usage: timeout get [NAME] | set NAME SECONDS | reset NAME [--binding B]");
}

void Daemon::HandleCounters(const std::vector<std::string>& args, Reply& reply) {
  Args a = ParseArgs(args, 1, {"binding"}, {"json", "all"});
  if (!a.error.empty() || !a.words.empty())
    return reply.Error(a.error.empty() ? "usage: counters [--binding B] [--json] [--all]"
                                       : a.error);
  const bool json = a.opts.count("json") != 0;
  const bool all = a.opts.count("all") != 0 || json;  // text hides rules never hit
  const Snapshot s = TakeSnapshot();
  std::string out = json ? "[" : "";
  bool first = true;
  for (const Snapshot::Binding& b : s.bindings) {
    if (a.opts.count("binding") && a.opts["binding"] != b.portdev) continue;
    auto inst = s.policy->bindings.find(b.portdev);
    if (inst == s.policy->bindings.end()) continue;
    if (!json)
      absl::StrAppend(&out, "binding ", b.portdev, " (filter ", inst->second.top_filter, "):\n");
    for (const engine::RuleCounter& rc : b.rules) {
      if (!all && rc.packets == 0) continue;
      if (rc.rule >= inst->second.rules.size()) continue;
      const ConcreteRule& r = inst->second.rules[rc.rule];
      const std::string origin = absl::StrCat(r.origin.file, ":", r.origin.line);
      if (json) {
        absl::StrAppend(&out, first ? "\n" : ",\n", "{\"binding\":", JsonStr(b.portdev),
                        ",\"chain\":", JsonStr(rc.chain), ",\"rule\":", rc.rule,
                        ",\"filter\":", JsonStr(r.origin.filter), ",\"origin\":", JsonStr(origin),
                        ",\"action\":", JsonStr(std::string(ActionName(r.action))),
                        ",\"match\":", JsonStr(FormatRuleMatch(r)), ",\"packets\":", rc.packets,
                        ",\"bytes\":", rc.bytes, "}");
        first = false;
      } else {
        absl::StrAppend(
            &out, absl::StrFormat("  %-6s %8d pkts %10d bytes  #%-3d %-7s %s  %s (%s)\n", rc.chain,
                                  rc.packets, rc.bytes, rc.rule, std::string(ActionName(r.action)),
                                  FormatRuleMatch(r), r.origin.filter, origin));
      }
    }
  }
  if (json) out += "\n]\n";
  reply.Ok(out);
}

void Daemon::HandleTrace(const std::vector<std::string>& args, Reply& reply) {
  Args a = ParseArgs(args, 1, {"count", "rate", "seconds"}, {});
  if (!a.error.empty()) return reply.Error(a.error);
  int64_t count = 0, rate = 10, seconds = 0;  // 0 = unbounded (until the client goes)
  if ((a.opts.count("count") && (!absl::SimpleAtoi(a.opts["count"], &count) || count < 0)) ||
      (a.opts.count("rate") &&
       (!absl::SimpleAtoi(a.opts["rate"], &rate) || rate < 1 || rate > 1000)) ||
      (a.opts.count("seconds") &&
       (!absl::SimpleAtoi(a.opts["seconds"], &seconds) || seconds < 0))) {
    return reply.Error("trace: --count N (>= 0), --rate N (1..1000 lines/s), --seconds N (>= 0)");
  }
  absl::StatusOr<TraceFilter> filter = TraceFilter::Parse(a.words);
  if (!filter.ok()) return reply.Error(filter.status().message());
  if (absl::Status st = tracer_.Begin(*std::move(filter), static_cast<int>(rate)); !st.ok())
    return reply.Error(st.message());
  reply.Write(absl::StrCat("# tracing ",
                           a.words.empty() ? "all packets" : absl::StrJoin(a.words, " "),
                           ", at most ", rate, " per second\n"));
  const absl::Time deadline =
      seconds > 0 ? absl::Now() + absl::Seconds(seconds) : absl::InfiniteFuture();
  int64_t shown = 0;
  while ((count == 0 || shown < count) && absl::Now() < deadline && !control_->stopping() &&
         !reply.ClientGone()) {
    uint64_t skipped = 0;
    for (std::string& line : tracer_.Take(absl::Milliseconds(200), &skipped)) {
      if (count != 0 && shown >= count) break;
      if (!reply.Write(line)) break;
      ++shown;
    }
    if (skipped > 0 &&
        !reply.Write(absl::StrCat("# ", skipped, " matching packets not shown (rate limit)\n")))
      break;
  }
  tracer_.End();
}

}  // namespace nwfq::nwfqd
