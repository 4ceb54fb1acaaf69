// nwfqd: enforces libvirt nwfilter policies on VM tap devices from userspace, through
// NFQUEUE. See daemon.h for the life cycle, config.h for the options.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>

#include "tools/nwfqd/config.h"
#include "tools/nwfqd/daemon.h"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void OnStopSignal(int) { g_stop.store(true); }
void OnHangup(int) { g_reload.store(true); }

constexpr char kDescription[] =
    "nwfqd: enforce libvirt nwfilter policies in userspace, through NFQUEUE.\n\n"
    "Loads the filters (libvirt XML) and one <filterbinding> per VM tap device (what\n"
    "`virsh nwfilter-binding-dumpxml vnetN` prints), steers each tap's IP traffic to an\n"
    "NFQUEUE with iptables/ip6tables rules in its own chains (NWFQ-FWD, NWFQ-IN), and\n"
    "returns a verdict per packet from its own connection tracking and the VM's rules in\n"
    "libvirt's order. Run it as root in the network namespace that holds the taps.\n\n"
    "Signals: SIGHUP reloads the filters and bindings (an invalid set is refused with\n"
    "file:line and the old policy stays; established connections survive); SIGINT/SIGTERM\n"
    "remove the steering rules, print counters and exit.\n\n"
    "Control (root, through the --control socket): nwfqctl status | reload | counters |\n"
    "conntrack list|stats|flush | timeout get|set | trace  (see nwfqctl --help, nwfqd(8)).\n\n"
    "Example (the lab, see `nwfqctl lab up`):\n"
    "  ip netns exec nwfq-host nwfqd --filters tools/lab/filters \\\n"
    "      --binding tools/lab/vnet0-binding.xml --control /run/nwfq/lab.sock --log-verdicts\n"
    "  ip netns exec nwfq-host nwfqctl --control /run/nwfq/lab.sock conntrack list\n";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription};
  nwfq::nwfqd::CommandLine command_line(app);
  app.footer(nwfq::nwfqd::ConfigFileHelp());
  CLI11_PARSE(app, argc, argv);
  absl::StatusOr<nwfq::nwfqd::Config> config = command_line.Finish();
  if (!config.ok()) {
    std::fprintf(stderr, "nwfqd: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }

  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;  // no SA_RESTART: blocking calls return EINTR promptly
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = OnHangup;
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::Status st = nwfq::nwfqd::Run(*config, g_stop, g_reload);
  if (!st.ok()) {
    std::fprintf(stderr, "nwfqd: %s\n", std::string(st.message()).c_str());
    return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
