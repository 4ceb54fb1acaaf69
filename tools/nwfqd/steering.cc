#include "tools/nwfqd/steering.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/lab/subprocess.h"

namespace nwfq::steer {
namespace {

constexpr const char* kIptables[] = {"iptables", "ip6tables"};

// "-w" waits for the xtables lock instead of failing when another tool holds it.
absl::StatusOr<sub::RunResult> Xt(const char* tool, std::vector<std::string> args,
                                  const std::string& stdin_data = "") {
  args.insert(args.begin(), {tool, "-w"});
  return sub::Run(args, {.stdin_data = stdin_data, .timeout = absl::Seconds(20)});
}

bool ChainExists(const char* tool, const char* chain) {
  absl::StatusOr<sub::RunResult> r = Xt(tool, {"-S", chain});
  return r.ok() && r->ok();
}

absl::Status RemoveIptables() {
  for (const char* tool : kIptables) {
    for (auto [base, chain] :
         {std::pair{"FORWARD", kForwardChain}, std::pair{"INPUT", kInputChain}}) {
      // Delete every jump (a crashed run may have left several), then the chain.
      for (int i = 0; i < 16; ++i) {
        absl::StatusOr<sub::RunResult> r = Xt(tool, {"-D", base, "-j", chain});
        if (!r.ok() || !r->ok()) break;
      }
      if (!ChainExists(tool, chain)) continue;
      absl::StatusOr<sub::RunResult> f = Xt(tool, {"-F", chain});
      absl::StatusOr<sub::RunResult> x = Xt(tool, {"-X", chain});
      if (!x.ok()) return x.status();
      if (!x->ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat(tool, " -X ", chain, " failed: ", x->err));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* BackendName(Backend b) {
  switch (b) {
    case Backend::kNone:
      return "none";
    case Backend::kIptables:
      return "iptables";
    case Backend::kNft:
      return "nft";
  }
  return "?";
}

Detection Detect() {
  Detection d;
  // nft: a transaction with a queue rule, checked by the kernel and then aborted (-c).
  absl::StatusOr<sub::RunResult> nft =
      sub::Run({"nft", "-c", "-f", "-"},
               {.stdin_data = "table inet nwfq_probe { chain c { type filter hook forward "
                              "priority 0; queue num 0 bypass; } }\n",
                .timeout = absl::Seconds(10)});
  d.nft_queue = nft.ok() && nft->ok();
  // iptables: the NFQUEUE target must be known to the iptables binary and the kernel; a
  // listing proves the tool and the table work, `-j NFQUEUE --help` the extension.
  absl::StatusOr<sub::RunResult> ipt = Xt("iptables", {"-S", "FORWARD"});
  absl::StatusOr<sub::RunResult> ext = sub::Run({"iptables", "-j", "NFQUEUE", "--help"});
  d.iptables = ipt.ok() && ipt->ok() && ext.ok() && absl::StrContains(ext->out, "NFQUEUE");
  d.detail = absl::StrCat("nft queue expression: ", d.nft_queue ? "available" : "not available",
                          "; iptables NFQUEUE: ", d.iptables ? "available" : "not available");
  return d;
}

absl::StatusOr<Backend> Choose(const std::string& requested, const Detection& detection) {
  if (requested == "none") return Backend::kNone;
  if (requested == "iptables" || requested == "auto") {
    if (detection.iptables) return Backend::kIptables;
    return absl::FailedPreconditionError(
        absl::StrCat("no usable steering backend (", detection.detail,
                     "); install iptables, or use --steer none and steer yourself"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown --steer '", requested, "' (auto, iptables, none)"));
}

absl::Status ValidatePortdev(const std::string& dev) {
  // Device names reach iptables-restore as text: refuse anything that could break a line
  // or add an option. Linux names are at most 15 bytes.
  if (dev.empty() || dev.size() > 15 ||
      dev.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
          std::string::npos ||
      dev[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat("bad interface name '", dev, "'"));
  }
  return absl::OkStatus();
}

bool IsBridgePort(const std::string& dev) {
  if (!ValidatePortdev(dev).ok()) return false;
  absl::StatusOr<sub::RunResult> r = sub::Run({"ip", "-d", "-o", "link", "show", "dev", dev},
                                              {.stdin_data = "", .timeout = absl::Seconds(10)});
  return r.ok() && r->ok() && absl::StrContains(r->out, "bridge_slave");
}

bool LooksBridged(const std::string& dev) {
  if (!ValidatePortdev(dev).ok()) return true;
  absl::StatusOr<sub::RunResult> r = sub::Run({"ip", "-d", "-o", "link", "show", "dev", dev},
                                              {.stdin_data = "", .timeout = absl::Seconds(10)});
  if (!r.ok() || !r->ok()) return true;  // not there (yet): libvirt's default, a bridge port
  return absl::StrContains(r->out, "bridge_slave");
}

std::string IptablesRestoreScript(const Options& options) {
  const std::string queue = options.queue_count > 1
                                ? absl::StrCat("--queue-balance ", options.queue_num, ":",
                                               options.queue_num + options.queue_count - 1)
                                : absl::StrCat("--queue-num ", options.queue_num);
  const std::string target =
      absl::StrCat("-j NFQUEUE ", queue, options.fail_open ? " --queue-bypass" : "");
  std::string s =
      absl::StrCat("*filter\n:", kForwardChain, " - [0:0]\n:", kInputChain, " - [0:0]\n");
  for (const std::string& dev : options.portdevs) {
    if (std::find(options.routed.begin(), options.routed.end(), dev) != options.routed.end()) {
      absl::StrAppend(&s, "-A ", kForwardChain, " -i ", dev, " ", target, "\n");
      absl::StrAppend(&s, "-A ", kForwardChain, " -o ", dev, " ", target, "\n");
      absl::StrAppend(&s, "-A ", kInputChain, " -i ", dev, " ", target, "\n");
      continue;
    }
    absl::StrAppend(&s, "-A ", kForwardChain, " -m physdev --physdev-in ", dev, " ", target, "\n");
    absl::StrAppend(&s, "-A ", kForwardChain, " -m physdev --physdev-out ", dev,
                    " --physdev-is-bridged ", target, "\n");
    absl::StrAppend(&s, "-A ", kInputChain, " -m physdev --physdev-in ", dev, " ", target, "\n");
  }
  absl::StrAppend(&s, "-I FORWARD 1 -j ", kForwardChain, "\n-I INPUT 1 -j ", kInputChain,
                  "\nCOMMIT\n");
  return s;
}

std::string IptablesUpdateScript(const Options& options) {
  std::string s = IptablesRestoreScript(options);
  const size_t jumps = s.find("-I FORWARD 1 -j ");
  return s.substr(0, jumps) + "COMMIT\n";
}

absl::Status Install(Backend backend, const Options& options) {
  if (backend == Backend::kNone) return absl::OkStatus();
  if (backend == Backend::kNft) return absl::UnimplementedError("nft steering backend");
  for (const std::string& dev : options.portdevs) {
    if (absl::Status st = ValidatePortdev(dev); !st.ok()) return st;
  }
  if (options.queue_count < 1 || options.queue_num + options.queue_count - 1 > 65535)
    return absl::InvalidArgumentError("queue range out of [0, 65535]");
  if (absl::Status st = Remove(backend); !st.ok()) return st;
  Options resolved = options;
  if (options.detect_routed) {
    for (const std::string& dev : options.portdevs) {
      if (!LooksBridged(dev)) resolved.routed.push_back(dev);
    }
  }
  const std::string script = IptablesRestoreScript(resolved);
  for (const char* tool : kIptables) {
    const std::string restore = absl::StrCat(tool, "-restore");
    absl::StatusOr<sub::RunResult> r = sub::Run(
        {restore, "-w", "--noflush"}, {.stdin_data = script, .timeout = absl::Seconds(20)});
    if (!r.ok() || !r->ok()) {
      std::string why = r.ok() ? r->err : std::string(r.status().message());
      (void)Remove(backend);
      return absl::FailedPreconditionError(absl::StrCat(restore, " failed: ", why));
    }
  }
  return absl::OkStatus();
}

absl::Status Update(Backend backend, const Options& options) {
  if (backend != Backend::kIptables) return Install(backend, options);
  for (const std::string& dev : options.portdevs) {
    if (absl::Status st = ValidatePortdev(dev); !st.ok()) return st;
  }
  for (const char* tool : kIptables) {
    for (auto [base, chain] :
         {std::pair{"FORWARD", kForwardChain}, std::pair{"INPUT", kInputChain}}) {
      absl::StatusOr<sub::RunResult> r = Xt(tool, {"-C", base, "-j", chain});
      if (!r.ok() || !r->ok()) return Install(backend, options);  // not ours any more
    }
  }
  Options resolved = options;
  if (options.detect_routed) {
    for (const std::string& dev : options.portdevs) {
      if (!LooksBridged(dev)) resolved.routed.push_back(dev);
    }
  }
  const std::string script = IptablesUpdateScript(resolved);
  for (const char* tool : kIptables) {
    const std::string restore = absl::StrCat(tool, "-restore");
    absl::StatusOr<sub::RunResult> r = sub::Run(
        {restore, "-w", "--noflush"}, {.stdin_data = script, .timeout = absl::Seconds(20)});
    if (!r.ok() || !r->ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          restore, " (update) failed: ", r.ok() ? r->err : std::string(r.status().message())));
    }
  }
  return absl::OkStatus();
}

absl::Status Remove(Backend backend) {
  if (backend != Backend::kIptables) return absl::OkStatus();
  return RemoveIptables();
}

}  // namespace nwfq::steer
