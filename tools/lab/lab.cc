#include "tools/lab/lab.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tools/lab/subprocess.h"

namespace nwfq::lab {
namespace {

using Argv = std::vector<std::string>;

void Say(bool verbose, const std::string& line) {
  if (verbose) std::fprintf(stderr, "[lab] %s\n", line.c_str());
}

absl::Status Do(const Argv& argv, bool verbose) {
  Say(verbose, sub::ShellQuote(argv));
  absl::StatusOr<std::string> out = sub::RunOk(argv);
  return out.status();
}

#define LAB_RETURN_IF_ERROR(expr) \
  do {                            \
    absl::Status _st = (expr);    \
    if (!_st.ok()) return _st;    \
  } while (0)

bool LinkExists(const std::string& ns, const std::string& link) {
  absl::StatusOr<sub::RunResult> r = sub::Run({"ip", "-n", ns, "link", "show", link});
  return r.ok() && r->ok();
}

// Sets sysctls inside `ns` (sysctl runs in that namespace: the root's are never written).
absl::Status NsSysctl(const std::string& ns, const Argv& settings, bool verbose) {
  Argv argv = {"sysctl", "-qw"};
  argv.insert(argv.end(), settings.begin(), settings.end());
  return Do(InNs(ns, argv), verbose);
}

// Bridge netfilter makes bridged IPv4/IPv6 traverse iptables FORWARD, which the physdev
// steering rules need. The sysctls are per namespace on this kernel; they exist only once
// br_netfilter is loaded (built in here; a module elsewhere).
absl::Status EnableBridgeNetfilter(bool verbose) {
  const Argv settings = {"net.bridge.bridge-nf-call-iptables=1",
                         "net.bridge.bridge-nf-call-ip6tables=1", "net.ipv4.ip_forward=0"};
  absl::Status st = NsSysctl(kHostNs, settings, verbose);
  if (st.ok()) return st;
  struct stat sb;
  if (stat("/proc/sys/net/bridge", &sb) != 0) {
    Say(verbose, "bridge netfilter absent; loading br_netfilter");
    absl::StatusOr<sub::RunResult> r = sub::Run({"modprobe", "br_netfilter"});
    if (r.ok() && r->ok()) st = NsSysctl(kHostNs, settings, verbose);
  }
  if (!st.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bridge netfilter unavailable in ", kHostNs,
        " (br_netfilter missing?): bridged traffic would bypass iptables: ", st.message()));
  }
  return st;
}

absl::Status BuildTopology(bool verbose) {
  for (const std::string& ns : Namespaces()) {
    LAB_RETURN_IF_ERROR(Do({"ip", "netns", "add", ns}, verbose));
    LAB_RETURN_IF_ERROR(AssertNotCallerNamespace(ns));
    // No DAD and no router solicitations: addresses work at once and the wire stays quiet.
    LAB_RETURN_IF_ERROR(
        NsSysctl(ns,
                 {"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                  "net.ipv6.conf.all.router_solicitations=0",
                  "net.ipv6.conf.default.router_solicitations=0"},
                 verbose));
    LAB_RETURN_IF_ERROR(Do({"ip", "-n", ns, "link", "set", "lo", "up"}, verbose));
  }
  const std::string h = kHostNs;
  // Links are created inside the namespaces; nothing is ever added to the caller's.
  const std::vector<Argv> host = {
      {"ip", "-n", h, "link", "add", kBridge, "type", "bridge", "stp_state", "0", "forward_delay",
       "0"},
      {"ip", "-n", h, "link", "add", kTap, "type", "veth", "peer", "name", "eth0", "netns", kVmNs},
      {"ip", "-n", h, "link", "add", kUplink, "type", "veth", "peer", "name", "eth0", "netns",
       kPeerNs},
      // libvirt gives a tap the guest MAC with the first byte set to 0xfe.
      {"ip", "-n", h, "link", "set", kTap, "address", kTapMac},
      {"ip", "-n", h, "link", "set", kTap, "master", kBridge},
      {"ip", "-n", h, "link", "set", kUplink, "master", kBridge},
      {"ip", "-n", h, "addr", "add", absl::StrCat(kHostIp4, "/24"), "dev", kBridge},
      {"ip", "-n", h, "addr", "add", absl::StrCat(kHostIp6, "/64"), "dev", kBridge, "nodad"},
      {"ip", "-n", h, "link", "set", kBridge, "up"},
      {"ip", "-n", h, "link", "set", kTap, "up"},
      {"ip", "-n", h, "link", "set", kUplink, "up"},
  };
  for (const Argv& a : host) LAB_RETURN_IF_ERROR(Do(a, verbose));
  LAB_RETURN_IF_ERROR(EnableBridgeNetfilter(verbose));

  const std::string v = kVmNs, p = kPeerNs;
  const std::vector<Argv> ends = {
      {"ip", "-n", v, "link", "set", "eth0", "address", kVmMac},
      {"ip", "-n", v, "addr", "add", absl::StrCat(kVmIp4, "/24"), "dev", "eth0"},
      {"ip", "-n", v, "addr", "add", absl::StrCat(kVmIp6, "/64"), "dev", "eth0", "nodad"},
      {"ip", "-n", v, "link", "set", "eth0", "up"},
      {"ip", "-n", p, "link", "set", "eth0", "address", kPeerMac},
      {"ip", "-n", p, "addr", "add", absl::StrCat(kPeerIp4, "/24"), "dev", "eth0"},
      {"ip", "-n", p, "addr", "add", absl::StrCat(kPeerIp4b, "/24"), "dev", "eth0"},
      {"ip", "-n", p, "addr", "add", absl::StrCat(kPeerIp6, "/64"), "dev", "eth0", "nodad"},
      {"ip", "-n", p, "addr", "add", absl::StrCat(kPeerIp6b, "/64"), "dev", "eth0", "nodad"},
      {"ip", "-n", p, "link", "set", "eth0", "up"},
  };
  for (const Argv& a : ends) LAB_RETURN_IF_ERROR(Do(a, verbose));

  // The unfiltered L2 path must work before any filter is put on it (bounded: 5 x 1 s).
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<sub::RunResult> r = sub::Run(InNs(kVmNs, {"ping", "-c1", "-W1", "-q", kPeerIp4}),
                                                {.stdin_data = "", .timeout = absl::Seconds(3)});
    if (r.ok() && r->ok()) return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("no connectivity ", kVmNs, " -> ", kPeerIp4, " before any filter"));
}

bool Complete() {
  for (const std::string& ns : Namespaces())
    if (!NamespaceExists(ns)) return false;
  return LinkExists(kHostNs, kBridge) && LinkExists(kHostNs, kTap) &&
         LinkExists(kHostNs, kUplink) && LinkExists(kVmNs, "eth0") && LinkExists(kPeerNs, "eth0");
}

// PIDs of the processes inside `ns`, never our own.
std::set<pid_t> PidsIn(const std::string& ns) {
  std::set<pid_t> pids;
  absl::StatusOr<sub::RunResult> r = sub::Run({"ip", "netns", "pids", ns});
  if (!r.ok() || !r->ok()) return pids;
  for (absl::string_view tok : absl::StrSplit(r->out, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(tok, &pid) && pid > 1 && pid != getpid()) pids.insert(pid);
  }
  return pids;
}

}  // namespace

std::vector<std::string> Namespaces() { return {kHostNs, kVmNs, kPeerNs}; }

std::vector<std::string> InNs(const std::string& ns, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
  return argv;
}

bool NamespaceExists(const std::string& ns) {
  struct stat sb;
  return stat(absl::StrCat("/run/netns/", ns).c_str(), &sb) == 0;
}

absl::Status AssertNotCallerNamespace(const std::string& ns) {
  struct stat mine, theirs;
  if (stat("/proc/self/ns/net", &mine) != 0)
    return absl::InternalError("cannot stat /proc/self/ns/net");
  const std::string path = absl::StrCat("/run/netns/", ns);
  if (stat(path.c_str(), &theirs) != 0) return absl::NotFoundError(absl::StrCat("no ", path));
  if (mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino) {
    return absl::FailedPreconditionError(
        absl::StrCat("namespace ", ns, " is the caller's own network namespace; refusing"));
  }
  return absl::OkStatus();
}

absl::Status Up(bool verbose) {
  if (geteuid() != 0) return absl::PermissionDeniedError("the lab needs root");
  if (Complete()) {
    Say(verbose, "lab already up");
    return absl::OkStatus();
  }
  LAB_RETURN_IF_ERROR(Down(verbose));  // half up (crash?): start clean
  absl::Status st = BuildTopology(verbose);
  if (!st.ok()) {
    (void)Down(false);  // leave nothing half-built behind
    return st;
  }
  Say(verbose, "lab up");
  return absl::OkStatus();
}

absl::Status Down(bool verbose) {
  if (geteuid() != 0) return absl::PermissionDeniedError("the lab needs root");
  for (const std::string& ns : Namespaces()) {
    if (!NamespaceExists(ns)) continue;
    LAB_RETURN_IF_ERROR(AssertNotCallerNamespace(ns));
    // End what still runs inside (nwfqd, listeners): SIGTERM lets nwfqd remove its rules.
    std::set<pid_t> pids = PidsIn(ns);
    for (pid_t pid : pids) {
      Say(verbose, absl::StrCat("ending pid ", pid, " in ", ns));
      kill(pid, SIGTERM);
    }
    for (int i = 0; i < 40 && !pids.empty(); ++i) {
      absl::SleepFor(absl::Milliseconds(50));
      std::erase_if(pids, [](pid_t pid) { return kill(pid, 0) != 0; });
    }
    for (pid_t pid : pids) kill(pid, SIGKILL);
    LAB_RETURN_IF_ERROR(Do({"ip", "netns", "del", ns}, verbose));
  }
  Say(verbose, "lab down");
  return absl::OkStatus();
}

absl::StatusOr<LabStatus> Status() {
  LabStatus s;
  s.complete = Complete();
  for (const std::string& ns : Namespaces()) {
    if (!NamespaceExists(ns)) {
      absl::StrAppend(&s.report, ns, ": absent\n");
      continue;
    }
    s.any = true;
    absl::StrAppend(&s.report, ns, ":\n");
    absl::StatusOr<sub::RunResult> r = sub::Run({"ip", "-n", ns, "-br", "addr", "show"});
    if (r.ok()) {
      for (absl::string_view line : absl::StrSplit(r->out, '\n', absl::SkipEmpty()))
        absl::StrAppend(&s.report, "  ", line, "\n");
    }
    std::set<pid_t> pids = PidsIn(ns);
    for (pid_t pid : pids) {
      std::string comm;
      FILE* f = std::fopen(absl::StrCat("/proc/", pid, "/comm").c_str(), "r");
      if (f != nullptr) {
        char buf[64] = {};
        if (std::fgets(buf, sizeof(buf), f) != nullptr)
          comm = std::string(absl::StripAsciiWhitespace(buf));
        std::fclose(f);
      }
      absl::StrAppend(&s.report, "  process ", pid, " ", comm, "\n");
    }
  }
  if (NamespaceExists(kHostNs)) {
    for (const char* tool : {"iptables", "ip6tables"}) {
      absl::StatusOr<sub::RunResult> r = sub::Run(InNs(kHostNs, {tool, "-w", "-S"}));
      if (!r.ok() || !r->ok()) continue;
      for (absl::string_view line : absl::StrSplit(r->out, '\n', absl::SkipEmpty())) {
        if (absl::StrContains(line, "NWFQ"))
          absl::StrAppend(&s.report, "  ", tool, " ", line, "\n");
      }
    }
    absl::StatusOr<sub::RunResult> q =
        sub::Run(InNs(kHostNs, {"cat", "/proc/net/netfilter/nfnetlink_queue"}));
    if (q.ok() && q->ok() && !q->out.empty()) {
      absl::StrAppend(&s.report,
                      "  nfnetlink_queue (queue portid waiting mode range dropped user_dropped "
                      "last_id 1):\n");
      for (absl::string_view line : absl::StrSplit(q->out, '\n', absl::SkipEmpty()))
        absl::StrAppend(&s.report, "    ", line, "\n");
    }
  }
  absl::StrAppend(&s.report, s.complete ? "lab: up\n" : (s.any ? "lab: partial\n" : "lab: down\n"));
  return s;
}

}  // namespace nwfq::lab
