// nwfqd's live loop (first slice of issue 6): one NFQUEUE, one worker (the main thread).
//
//   queued packet --(physindev/physoutdev ifindex + hook)--> (portdev, view)
//                 --> Engine::Decide --> NF_ACCEPT / NF_DROP, batched per receive batch
//
// View mapping (libvirt's chains, nwfilter-semantics b.4): FORWARD with physin = a bound
// tap -> kFromVm (FI); INPUT with physin = a bound tap -> kVmToHost (HI); FORWARD with
// physout = a bound tap -> kToVm (FO). A packet bridged from one bound tap to another is
// checked by both (the sender's FI, then the receiver's FO), as libvirt's chains do.
// A reject verdict is sent as a drop for now (issue 6 adds the RST / ICMP error).
//
// Threading: Run() on one thread; Stop() from a signal handler is fine (atomic flag).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace nwfq::nwfqd {

struct Config {
  std::string filters_dir = "/etc/libvirt/nwfilter";
  std::vector<std::string> binding_files;
  uint16_t queue = 0;
  std::string steer = "auto";  // auto | iptables | none
  bool fail_open = false;
  bool log_verdicts = false;
  int log_rate = 20;  // verdict lines per second at most (the rest are counted)
  // Bytes of each packet copied from the kernel. The engine's parser currently refuses a
  // packet whose IP length exceeds the bytes it gets, so the default copies whole packets;
  // lower it once the parser takes truncated tails (headers fit in 512 bytes).
  uint32_t copy_range = 0xffff;
  int batch = 64;
  std::string control_path;  // "" = no control socket
};

// Loads the policy, binds the queue, installs steering, runs until `stop` becomes true,
// then removes steering and prints counters to stderr. Errors before the loop starts are
// returned (nothing is left installed).
absl::Status Run(const Config& config, const std::atomic<bool>& stop);

}  // namespace nwfq::nwfqd
