// nwfqctl lab up|down|status: the three-namespace lab (tools/lab/lab.h) that plays a KVM
// host, a VM and a remote peer, so nwfqd can filter real traffic without a VM.
#include <cstdio>

#include "tools/lab/lab.h"
#include "tools/nwfqctl/command_registry.h"

namespace nwfq::ctl {
namespace {

bool g_verbose = false;  // lab -v: print each command

int Report(const absl::Status& st) {
  if (st.ok()) return 0;
  std::fprintf(stderr, "nwfqctl lab: %s\n", std::string(st.message()).c_str());
  return 2;
}

const bool kRegistered =
    RegisterCommands(30, [](CLI::App& app, const GlobalOptions&, int* exit_code) {
      CLI::App* lab = app.add_subcommand(
          "lab",
          "Network-namespace lab: nwfq-vm (the VM, 198.18.0.2), nwfq-host (bridge br0 with the\n"
          "VM's tap vnet0; run nwfqd here) and nwfq-peer (198.18.0.3/.4). Needs root; never\n"
          "touches the root namespace.");
      lab->require_subcommand(1);
      lab->add_flag("-v,--verbose", g_verbose, "print each command");

      lab->add_subcommand("up",
                          "create the namespaces, links and addresses (idempotent; rebuilds a "
                          "half-up lab)")
          ->callback([exit_code] {
            *exit_code = Report(lab::Up(g_verbose));
            if (*exit_code == 0) {
              std::printf("lab up: ip netns exec %s ping -c1 %s ; nwfqd runs in %s\n", lab::kVmNs,
                          lab::kPeerIp4, lab::kHostNs);
            }
          });
      lab->add_subcommand("down",
                          "end the processes left inside and delete the namespaces "
                          "(idempotent, also after a crash)")
          ->callback([exit_code] { *exit_code = Report(lab::Down(g_verbose)); });
      lab->add_subcommand("status",
                          "show namespaces, addresses, processes, steering rules and "
                          "NFQUEUE state; exit 0 iff the lab is up")
          ->callback([exit_code] {
            absl::StatusOr<lab::LabStatus> s = lab::Status();
            if (!s.ok()) {
              *exit_code = Report(s.status());
              return;
            }
            std::fputs(s->report.c_str(), stdout);
            *exit_code = s->complete ? 0 : 1;
          });
    });

}  // namespace
}  // namespace nwfq::ctl
