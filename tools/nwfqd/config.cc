#include "tools/nwfqd/config.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "conntrack/timeouts.h"

namespace nwfq::nwfqd {
namespace {

enum class Kind {
  kValue,  // the last one wins
  kList,   // every occurrence adds one value
  kBool,   // a flag on the command line (with a negation), yes/no in the file
};

struct Option {
  const char* key;       // config-file key = long flag name without "--"
  const char* negation;  // kBool: the flag that sets false ("" = none)
  const char* arg;       // value name in --help
  Kind kind;
  const char* help;
  absl::Status (*set)(Config*, absl::string_view);
};

absl::StatusOr<int64_t> ParseInt(absl::string_view v, int64_t lo, int64_t hi) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n))
    return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not a number"));
  if (n < lo || n > hi) {
    return absl::InvalidArgumentError(absl::StrCat(n, " is out of range [", lo, ", ", hi, "]"));
  }
  return n;
}

absl::StatusOr<bool> ParseBool(absl::string_view v) {
  const std::string s = absl::AsciiStrToLower(v);
  if (s == "yes" || s == "true" || s == "on" || s == "1") return true;
  if (s == "no" || s == "false" || s == "off" || s == "0") return false;
  return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not yes/no/true/false/on/off/1/0"));
}

absl::Status IsDirectory(absl::string_view v) {
  struct stat st;
  if (stat(std::string(v).c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return absl::NotFoundError(absl::StrCat("no directory '", v, "'"));
  return absl::OkStatus();
}

absl::Status IsFile(absl::string_view v) {
  struct stat st;
  if (stat(std::string(v).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return absl::NotFoundError(absl::StrCat("no file '", v, "'"));
  return absl::OkStatus();
}

template <typename T>
absl::Status SetInt(T* out, absl::string_view v, int64_t lo, int64_t hi) {
  absl::StatusOr<int64_t> n = ParseInt(v, lo, hi);
  if (!n.ok()) return n.status();
  *out = static_cast<T>(*n);
  return absl::OkStatus();
}

// "icmp=3", "tcp/established = 3600".
absl::Status AddTimeout(Config* c, absl::string_view name, absl::string_view seconds) {
  name = absl::StripAsciiWhitespace(name);
  absl::StatusOr<ct::TimeoutClass> cls =
      ct::TimeoutPolicy::ParseName(std::string_view(name.data(), name.size()));
  if (!cls.ok()) return cls.status();
  absl::StatusOr<int64_t> s =
      ParseInt(absl::StripAsciiWhitespace(seconds), 1, ct::kMaxTimeoutSeconds);
  if (!s.ok()) return s.status();
  c->timeouts.emplace_back(std::string(ct::TimeoutPolicy::Name(*cls)), static_cast<uint32_t>(*s));
  return absl::OkStatus();
}

const Option kOptions[] = {
    {"filters", "", "DIR", Kind::kValue,
     "directory of libvirt filter XML files (every *.xml is loaded; libvirt's own "
     "/etc/libvirt/nwfilter works as it is)",
     [](Config* c, absl::string_view v) {
       c->filters_dir = std::string(v);
       return IsDirectory(v);
     }},
    {"bindings", "", "DIR", Kind::kValue,
     "directory of <filterbinding> XML files, one per VM tap (what `virsh "
     "nwfilter-binding-dumpxml vnetN` prints); re-read on reload",
     [](Config* c, absl::string_view v) {
       c->bindings_dir = std::string(v);
       return IsDirectory(v);
     }},
    {"binding", "", "FILE", Kind::kList, "one more <filterbinding> XML file (repeatable)",
     [](Config* c, absl::string_view v) {
       c->binding_files.emplace_back(v);
       return IsFile(v);
     }},
    {"control", "", "PATH", Kind::kValue,
     "control socket for nwfqctl (Unix stream socket, mode 0600; `none` = no socket)",
     [](Config* c, absl::string_view v) {
       c->control_path = std::string(v);
       return absl::OkStatus();
     }},
    {"metrics", "", "ADDR:PORT", Kind::kValue,
     "serve Prometheus metrics over HTTP at this TCP address (e.g. 127.0.0.1:9101); off by "
     "default",
     [](Config* c, absl::string_view v) {
       c->metrics_addr = std::string(v);
       if (!v.empty() && v.rfind(':') == absl::string_view::npos)
         return absl::InvalidArgumentError("expected ADDR:PORT");
       return absl::OkStatus();
     }},
    {"queues", "", "LIST", Kind::kValue,
     "NFQUEUE numbers to bind and steer to, e.g. 0 or 0-3 or 0,2 (one worker per queue; "
     "the kernel spreads by address pair, not ports)",
     [](Config* c, absl::string_view v) {
       absl::StatusOr<std::vector<uint16_t>> q = ParseQueues(v);
       if (!q.ok()) return q.status();
       c->queues = *std::move(q);
       return absl::OkStatus();
     }},
    {"queue", "", "N", Kind::kValue, "one NFQUEUE number (same as --queues N)",
     [](Config* c, absl::string_view v) {
       uint16_t q = 0;
       absl::Status st = SetInt(&q, v, 0, 65535);
       c->queues = {q};
       return st;
     }},
    {"steer", "", "HOW", Kind::kValue,
     "who installs the kernel rules that send each tap's traffic to the queues: auto "
     "(detect), iptables, or none (you do it)",
     [](Config* c, absl::string_view v) {
       c->steer = std::string(v);
       if (v != "auto" && v != "iptables" && v != "none")
         return absl::InvalidArgumentError("expected auto, iptables or none");
       return absl::OkStatus();
     }},
    {"fail-open", "fail-closed", "", Kind::kBool,
     "when nwfqd is gone or its queue is full, let packets pass (kernel bypass). Default: "
     "fail closed (they are dropped), as a firewall should",
     [](Config* c, absl::string_view v) {
       absl::StatusOr<bool> b = ParseBool(v);
       if (b.ok()) c->fail_open = *b;
       return b.status();
     }},
    {"connlimit-idle", "", "SECONDS", Kind::kValue,
     "connlimit-above rules do not count connections idle for longer than this, so an idle "
     "session (an ssh left open) no longer blocks a new one; 0 = count every live connection, "
     "as the kernel does (default 0)",
     [](Config* c, absl::string_view v) {
       return SetInt(&c->connlimit_idle_seconds, v, 0, 100'000'000);
     }},
    {"conntrack-size", "", "N", Kind::kValue,
     "connection-table capacity per binding, fixed at start (kernel default 262144)",
     [](Config* c, absl::string_view v) { return SetInt(&c->conntrack_size, v, 64, 1 << 26); }},
    {"timeout", "", "NAME=SECONDS", Kind::kList,
     "conntrack timeout override, e.g. icmp=3 or tcp/established=3600 (repeatable; names "
     "as `nwfqctl timeout get` lists them; in the file: timeout.NAME = SECONDS)",
     [](Config* c, absl::string_view v) {
       const size_t eq = v.find('=');
       if (eq == absl::string_view::npos)
         return absl::InvalidArgumentError("expected NAME=SECONDS");
       return AddTimeout(c, v.substr(0, eq), v.substr(eq + 1));
     }},
    {"log-verdicts", "no-log-verdicts", "", Kind::kBool,
     "log one line per verdict to stderr (rate-limited, see log-rate)",
     [](Config* c, absl::string_view v) {
       absl::StatusOr<bool> b = ParseBool(v);
       if (b.ok()) c->log_verdicts = *b;
       return b.status();
     }},
    {"log-rate", "", "N", Kind::kValue, "log lines per second at most (default 20)",
     [](Config* c, absl::string_view v) { return SetInt(&c->log_rate, v, 1, 100000); }},
    {"copy-range", "", "BYTES", Kind::kValue, "bytes of each packet copied from the kernel",
     [](Config* c, absl::string_view v) { return SetInt(&c->copy_range, v, 64, 65535); }},
    {"malformed", "", "VERDICT", Kind::kValue,
     "verdict for packets that cannot be parsed (truncated or broken headers; counted per "
     "reason): drop (default) or accept",
     [](Config* c, absl::string_view v) {
       if (v != "drop" && v != "accept")
         return absl::InvalidArgumentError("expected drop or accept");
       c->malformed_accept = v == "accept";
       return absl::OkStatus();
     }},
    {"reject-tcp-with", "", "HOW", Kind::kValue,
     "what a reject rule sends for TCP: icmp (port unreachable, as libvirt's -j REJECT; "
     "default) or rst (a TCP reset, as --reject-with tcp-reset). Other protocols always get "
     "ICMP/ICMPv6 port unreachable",
     [](Config* c, absl::string_view v) {
       c->reject_tcp_with = std::string(v);
       if (v != "icmp" && v != "rst") return absl::InvalidArgumentError("expected icmp or rst");
       return absl::OkStatus();
     }},
    {"l2-offload", "no-l2-offload", "", Kind::kBool,
     "enforce layer-2 rules (mac, arp, rarp, vlan, stp, ip, ipv6) in the kernel's bridge "
     "filtering (ebtables nat, nwfq's own chains), since non-IP frames cannot be queued here. "
     "With --no-l2-offload nwfqd lists at start the rules non-IP frames bypass (default on)",
     [](Config* c, absl::string_view v) {
       absl::StatusOr<bool> b = ParseBool(v);
       if (b.ok()) c->l2_offload = *b;
       return b.status();
     }},
    {"batch", "", "N", Kind::kValue, "packets per receive batch and verdict write (default 64)",
     [](Config* c, absl::string_view v) { return SetInt(&c->batch, v, 1, 4096); }},
    {"queue-maxlen", "", "N", Kind::kValue,
     "packets the kernel keeps waiting per queue before it drops (fail-closed) or lets "
     "through (fail-open) the rest: absorbs bursts, not sustained overload (default 4096)",
     [](Config* c, absl::string_view v) { return SetInt(&c->queue_maxlen, v, 16, 1 << 20); }},
    {"drop-capabilities", "keep-capabilities", "", Kind::kBool,
     "after start-up keep only CAP_NET_ADMIN and CAP_NET_RAW (default yes)",
     [](Config* c, absl::string_view v) {
       absl::StatusOr<bool> b = ParseBool(v);
       if (b.ok()) c->drop_capabilities = *b;
       return b.status();
     }},
};

const Option* FindOption(absl::string_view key) {
  for (const Option& o : kOptions)
    if (key == o.key) return &o;
  return nullptr;
}

}  // namespace

absl::StatusOr<std::vector<uint16_t>> ParseQueues(absl::string_view text) {
  std::set<uint16_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    std::pair<absl::string_view, absl::string_view> range =
        absl::StrSplit(part, absl::MaxSplits('-', 1));
    if (range.second.empty()) range.second = range.first;
    absl::StatusOr<int64_t> lo = ParseInt(range.first, 0, 65535);
    absl::StatusOr<int64_t> hi = ParseInt(range.second, 0, 65535);
    if (!lo.ok() || !hi.ok() || *lo > *hi)
      return absl::InvalidArgumentError(
          absl::StrCat("bad queue list '", text, "' (e.g. 0, 0-3, 0,2)"));
    for (int64_t q = *lo; q <= *hi; ++q) {
      out.insert(static_cast<uint16_t>(q));
      if (out.size() > 64) return absl::InvalidArgumentError("at most 64 queues");
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("no queue given");
  return std::vector<uint16_t>(out.begin(), out.end());
}

absl::Status ApplyConfigText(absl::string_view text, absl::string_view file, Config* config,
                             const std::vector<std::string>& skip) {
  std::vector<std::string> errors;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto error = [&](absl::string_view msg) {
      errors.push_back(absl::StrCat(file, ":", line_no, ": ", msg));
    };
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      error(absl::StrCat("expected `key = value`, got '", line, "'"));
      continue;
    }
    const std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, eq)));
    const absl::string_view value = absl::StripAsciiWhitespace(line.substr(eq + 1));
    // Set on the command line: still checked, not applied (the command line wins).
    const bool skipped = std::find(skip.begin(), skip.end(), key) != skip.end();
    if (absl::StartsWith(key, "timeout.")) {
      Config scratch;
      if (absl::Status st = AddTimeout(&scratch, key.substr(8), value); !st.ok()) {
        error(absl::StrCat(key, ": ", st.message()));
      } else {
        config->timeouts.push_back(scratch.timeouts[0]);  // the command line's come later
      }
      continue;
    }
    const Option* o = FindOption(key);
    if (o == nullptr || key == "timeout") {
      std::vector<std::string> known;
      for (const Option& k : kOptions) known.push_back(k.key);
      error(absl::StrCat("unknown key '", key, "' (known: ", absl::StrJoin(known, ", "),
                         ", timeout.NAME)"));
      continue;
    }
    Config scratch = *config;
    Config* target = skipped ? &scratch : config;  // still checked when overridden
    absl::Status st = o->set(target, value);
    if (!st.ok()) error(absl::StrCat(key, ": ", st.message()));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return absl::OkStatus();
}

absl::Status ApplyConfigFile(const std::string& path, Config* config,
                             const std::vector<std::string>& skip) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("config file ", path, ": cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ApplyConfigText(ss.str(), path, config, skip);
}

absl::Status Validate(const Config& config) {
  if (config.bindings_dir.empty() && config.binding_files.empty()) {
    return absl::InvalidArgumentError(
        "no binding: give --bindings DIR (or `bindings = DIR` in the config file) and/or "
        "--binding FILE");
  }
  return absl::OkStatus();
}

struct CommandLine::Raw {
  std::string config_file;
  std::map<std::string, std::vector<std::string>> values;
  std::map<std::string, int64_t> flags;
};

CommandLine::CommandLine(CLI::App& app) : raw_(std::make_shared<Raw>()), app_(app) {
  app.add_option("--config", raw_->config_file,
                 "daemon config file of `key = value` lines (keys = the long options below "
                 "without --; see the end of this help); options given here override it")
      ->check(CLI::ExistingFile);
  Config defaults;
  for (const Option& o : kOptions) {
    const std::string flag = absl::StrCat("--", o.key);
    if (o.kind == Kind::kBool) {
      std::string names = flag;
      if (*o.negation != '\0') absl::StrAppend(&names, ",!--", o.negation);
      app.add_flag(names, raw_->flags[o.key], o.help);
      continue;
    }
    CLI::Option* opt = app.add_option(flag, raw_->values[o.key], o.help);
    opt->type_name(o.arg)->expected(1)->allow_extra_args(false);
    if (o.kind == Kind::kList) {
      opt->take_all();
    } else {
      opt->take_last();
    }
  }
}

absl::StatusOr<Config> CommandLine::Finish() const {
  Config config;
  std::vector<std::string> given;
  for (const Option& o : kOptions) {
    if (app_.get_option(absl::StrCat("--", o.key))->count() > 0) given.push_back(o.key);
  }
  // --queue and --queues are one setting; a --binding replaces the file's `binding` lines.
  if (std::find(given.begin(), given.end(), "queue") != given.end()) given.push_back("queues");
  if (std::find(given.begin(), given.end(), "queues") != given.end()) given.push_back("queue");
  if (!raw_->config_file.empty()) {
    config.config_file = raw_->config_file;
    if (absl::Status st = ApplyConfigFile(raw_->config_file, &config, given); !st.ok()) return st;
  }
  std::vector<std::string> errors;
  for (const Option& o : kOptions) {
    if (o.kind == Kind::kBool) {
      auto it = raw_->flags.find(o.key);
      if (app_.get_option(absl::StrCat("--", o.key))->count() == 0) continue;
      (void)o.set(&config, it->second > 0 ? "yes" : "no");
      continue;
    }
    for (const std::string& v : raw_->values.at(o.key)) {
      if (absl::Status st = o.set(&config, v); !st.ok())
        errors.push_back(absl::StrCat("--", o.key, " ", v, ": ", st.message()));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  if (absl::Status st = Validate(config); !st.ok()) return st;
  return config;
}

std::string ConfigFileHelp() {
  std::string out =
      "Config file (--config FILE): one `key = value` per line, '#' starts a comment; keys are "
      "the long\noptions without `--`; booleans take yes/no. Example /etc/nwfq/nwfqd.conf:\n"
      "  filters = /etc/libvirt/nwfilter\n"
      "  bindings = /etc/nwfq/bindings      # virsh nwfilter-binding-dumpxml vnet0 > vnet0.xml\n"
      "  queues = 0-1\n"
      "  fail-open = no\n"
      "  conntrack-size = 65536\n"
      "  timeout.icmp = 10                  # any `nwfqctl timeout get` name\n"
      "  metrics = 127.0.0.1:9101\n";
  return out;
}

}  // namespace nwfq::nwfqd
