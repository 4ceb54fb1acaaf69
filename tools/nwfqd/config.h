// nwfqd's configuration: one option table shared by the command line and the config file,
// so every option exists in both places under the same name.
//
//   command line:  nwfqd --queues 0-3 --timeout icmp=3 --fail-open
//   config file:   queues = 0-3          (--config FILE; `key = value` lines, '#' comments)
//                  timeout.icmp = 3
//                  fail-open = yes
//
// Precedence: defaults < config file < command line. For list options (binding, timeout)
// the command line adds to / overrides entries of the file: a --binding given on the
// command line replaces the file's `binding` lines; --timeout NAME=S overrides that one
// class. Errors name the file and line ("nwfqd.conf:7: queues: ...").
//
// Thread-safety: plain values; parse on the main thread before anything starts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace CLI {
class App;
}

namespace nwfq::nwfqd {

struct Config {
  std::string config_file;  // "" = none
  std::string filters_dir = "/etc/libvirt/nwfilter";
  std::string bindings_dir;                           // every *.xml in it is a <filterbinding>
  std::vector<std::string> binding_files;             // more <filterbinding> files
  std::string control_path = "/run/nwfq/nwfqd.sock";  // "none" = no control socket
  std::string metrics_addr;                           // "" = no metrics; "ADDR:PORT"
  std::vector<uint16_t> queues = {0};                 // NFQUEUE numbers, one worker each
  std::string steer = "auto";                         // auto | iptables | none
  bool fail_open = false;
  uint32_t conntrack_size = 262'144;    // connections per binding (fixed at start)
  uint32_t connlimit_idle_seconds = 0;  // connlimit ignores connections idle longer; 0 = off
  // Timeout overrides in order of application ("icmp", 3), ("tcp/established", 3600).
  std::vector<std::pair<std::string, uint32_t>> timeouts;
  bool log_verdicts = false;
  int log_rate = 20;  // log lines per second at most (the rest are counted)
  // Bytes of each packet copied from the kernel: headers (IPv6 extension headers, TCP
  // options, an ICMP error's quote) fit; the engine parses a truncated copy from its
  // headers (PacketInput::wire_len), so long packets stay in the kernel.
  uint32_t copy_range = 512;
  // Data plane: what a reject verdict sends for TCP ("icmp": port unreachable, as libvirt's
  // plain -j REJECT; "rst": a TCP reset), and whether layer-2 rules are offloaded to the
  // kernel's bridge filtering (ebtables, l2_offload.h).
  std::string reject_tcp_with = "icmp";
  bool l2_offload = true;
  int batch = 64;
  uint32_t queue_maxlen = 4096;   // NFQA_CFG_QUEUE_MAXLEN: the kernel queue's length
  bool malformed_accept = false;  // verdict for unparsable packets (EngineOptions)
  bool drop_capabilities = true;  // keep only CAP_NET_ADMIN and CAP_NET_RAW after start-up

  bool has_control() const { return !control_path.empty() && control_path != "none"; }
};

// Parses "0", "0-3", "0,2,5-6" into queue numbers (sorted, unique, at most 64).
absl::StatusOr<std::vector<uint16_t>> ParseQueues(absl::string_view text);

// Applies config-file text (`key = value` lines) to `config`. `file` names the source in
// errors. Keys listed in `skip` (set on the command line) are checked but not applied.
// All errors are reported together, one "file:line: message" per line.
absl::Status ApplyConfigText(absl::string_view text, absl::string_view file, Config* config,
                             const std::vector<std::string>& skip = {});

// Reads and applies a config file.
absl::Status ApplyConfigFile(const std::string& path, Config* config,
                             const std::vector<std::string>& skip = {});

// Checks what the options cannot check alone (some binding given, ...).
absl::Status Validate(const Config& config);

// The command line: the constructor registers --config and every option on `app`; after
// app.parse(), Finish() applies the defaults, then --config FILE, then the command line,
// and validates the result.
class CommandLine {
 public:
  explicit CommandLine(CLI::App& app);
  absl::StatusOr<Config> Finish() const;

 private:
  struct Raw;
  std::shared_ptr<Raw> raw_;
  CLI::App& app_;
};

// The text of the config-file section of `nwfqd --help` (every key with its meaning).
std::string ConfigFileHelp();

}  // namespace nwfq::nwfqd
