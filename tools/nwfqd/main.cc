// nwfqd: enforces libvirt nwfilter policies on VM tap devices from userspace, through
// NFQUEUE. See daemon.h for the loop and steering.h for the kernel rules it installs.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>

#include "tools/nwfqd/daemon.h"

namespace {

std::atomic<bool> g_stop{false};

void OnStopSignal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  nwfq::nwfqd::Config config;
  CLI::App app{
      "nwfqd: enforce libvirt nwfilter policies in userspace, through NFQUEUE.\n\n"
      "Loads the filters (libvirt XML) and one <filterbinding> per VM tap device (what\n"
      "`virsh nwfilter-binding-dumpxml` prints), steers each tap's IP traffic to an NFQUEUE\n"
      "with iptables/ip6tables rules in its own chains (NWFQ-FWD, NWFQ-IN), and returns a\n"
      "verdict per packet from its own connection tracking and the VM's rules in libvirt's\n"
      "order. Run it as root in the network namespace that holds the taps and the bridge.\n"
      "SIGINT/SIGTERM: remove the steering rules, print counters, exit.\n\n"
      "Example (the lab, see `nwfqctl lab up`):\n"
      "  ip netns exec nwfq-host nwfqd --filters tools/lab/filters \\\n"
      "      --binding tools/lab/vnet0-binding.xml --log-verdicts\n"};
  app.add_option("--filters", config.filters_dir,
                 "directory of filter XML files (libvirt's format; every *.xml is loaded)")
      ->capture_default_str()
      ->check(CLI::ExistingDirectory);
  app.add_option("--binding", config.binding_files,
                 "a <filterbinding> XML file: which filter (and parameters such as IP) applies "
                 "to which tap (portdev); repeat for more taps")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--queue", config.queue, "NFQUEUE number to bind and steer to")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--steer", config.steer,
                 "who installs the kernel rules: auto (detect: nft queue, else iptables "
                 "NFQUEUE), iptables, or none (you steer to --queue yourself)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "iptables", "none"}));
  app.add_flag("--fail-open", config.fail_open,
               "when nwfqd is not listening or its queue is full, let packets pass "
               "(--queue-bypass, NFQA_CFG_F_FAIL_OPEN). Default: fail closed (they are "
               "dropped), as a firewall should");
  app.add_flag("--log-verdicts", config.log_verdicts,
               "log one line per verdict to stderr (rate-limited, see --log-rate)");
  app.add_option("--log-rate", config.log_rate, "verdict log lines per second at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--copy-range", config.copy_range, "bytes of each packet copied from the kernel")
      ->capture_default_str()
      ->check(CLI::Range(64, 65535));
  app.add_option("--batch", config.batch, "packets per receive batch and verdict write")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--control", config.control_path,
                 "Unix socket (mode 0600) answering `status` with the counters; e.g. "
                 "/run/nwfq/nwfqd.sock. Try: echo status | socat - UNIX-CONNECT:PATH");
  CLI11_PARSE(app, argc, argv);

  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;  // no SA_RESTART: poll() returns EINTR promptly
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // SIGHUP will mean reload (issue 6); until then it must not kill nwfqd with its rules in
  // place.
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  absl::Status st = nwfq::nwfqd::Run(config, g_stop);
  if (!st.ok()) {
    std::fprintf(stderr, "nwfqd: %s\n", std::string(st.message()).c_str());
    return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
