// The fixture shared by the end-to-end tests in the lab (tools/lab/lab.h): lab_test,
// control_test and dataplane_test. Each test starts from a fresh lab, gets its own temporary
// directory (nwfqd's log and control socket live there), may start nwfqd in nwfq-host and
// helper processes (listeners, clients, sshd) anywhere in the lab, and ends with every check
// that nothing is left behind:
//   * the helpers are stopped (by PID, SIGTERM, newest first), nwfqd exits 0 on SIGTERM;
//   * no nwfq rule is left in nwfq-host: iptables, ip6tables (NWFQ-*) nor ebtables nat;
//   * lab::Down succeeds and no lab namespace is left;
//   * on failure, nwfqd's log is printed.
//
// Needs root and `ip netns`; SetUp skips the test otherwise (a derived SetUp must return when
// IsSkipped() or HasFatalFailure()). All lab tests share the namespace names: ctest runs them
// under one RESOURCE_LOCK. Every wait here is bounded; only PIDs started here are signalled.
// Thread-safety: none (one test at a time).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tools/lab/subprocess.h"

namespace nwfq::testing {

using Argv = std::vector<std::string>;

// The whole file as text; "" if it cannot be read.
std::string ReadFile(const std::string& path);

// Replaces the content of `path` with `text`.
void WriteFile(const std::string& path, const std::string& text);

// Runs `argv` (killed after `timeout`) with an empty stdin. A program that cannot be started
// is a test failure (EXPECT) and yields an empty RunResult; a non-zero exit is in the result.
sub::RunResult MustRun(const Argv& argv, absl::Duration timeout = absl::Seconds(20));

// Waits until the file at `path` contains `text`, at most `limit`.
bool WaitForText(const std::string& path, const std::string& text, absl::Duration limit);

// How Connect runs its socat client.
struct ConnectOptions {
  int source_port = 0;      // 0: any; else bound with reuseaddr and linger=0
  int idle_timeout_s = 3;   // socat -T: ends after this long without data
  int close_timeout_s = 2;  // socat -t: waits this long for the other side after EOF
};

class LabFixture : public ::testing::Test {
 protected:
  // Skips unless root with `ip netns`; lab down (a crashed run may have left one) then up;
  // creates dir_ and sets log_path_ and control_ in it.
  void SetUp() override;
  // The checks listed at the top of this file.
  void TearDown() override;

  // Starts nwfqd in nwfq-host: `nwfqd --log-verdicts --log-rate 1000 <nwfqd_args_> <extra>`,
  // output appended to log_path_. Waits (bounded: 20 s) until the log written since this start
  // says "nwfqd: ready" (queue bound, steering and control socket in place); a fatal failure
  // if nwfqd exits or is not ready by then.
  void StartNwfqd(const Argv& extra = {});
  // SIGTERM; expects exit 0. Returns the whole log.
  std::string StopNwfqd();
  // SIGKILL (a crash: the steering stays behind). Returns the exit code (128 + SIGKILL),
  // -1 if nwfqd was not running.
  int KillNwfqd();
  std::string NwfqdLog() const { return ReadFile(log_path_); }

  // nwfq's steering rules in nwfq-host: the lines of `iptables -S` and `ip6tables -S` that
  // name an NWFQ chain, each prefixed with the tool.
  static std::string SteeringRules();
  // SteeringRules plus nwfq's layer-2 offload rules (`ebtables-save -t nat`, NWFQ chains),
  // prefixed "ebtables".
  static std::string KernelRules();

  // Starts `argv` in the background (output to `log`, "" = inherit); stopped in TearDown.
  // Returns its PID, or -1 (a test failure) if it could not be started.
  pid_t Spawn(const Argv& argv, const std::string& log = "");
  // A TCP server in `ns` on `port` answering every connection with "nwfq-ok" (socat, ends
  // after 60 s); a fatal failure unless it listens within 5 s.
  void Listen(const std::string& ns, int port, bool ipv6 = false);
  // True once something in `ns` listens on TCP `port` (bounded: 5 s).
  static bool WaitListening(const std::string& ns, int port);
  // A TCP client in `ns` to addr:port (IPv6 if `addr` has a ':'; connect timeout 2 s, all
  // bounded by 10 s), sending nothing; socat's result.
  static sub::RunResult Connect(const std::string& ns, const std::string& addr, int port,
                                const ConnectOptions& options = {});
  // `count` echo requests from `ns` to `dst`, 0.2 s apart, 1 s wait; `extra` before `dst`.
  static sub::RunResult Ping(const std::string& ns, const std::string& dst, int count = 2,
                             const Argv& extra = {});
  // nwfqctl --control control_ <args> in nwfq-host (bounded: 15 s). nwfqd must have been
  // started with {"--control", control_}.
  sub::RunResult Ctl(const Argv& args);

  std::string dir_;       // the test's temporary directory, removed in TearDown
  std::string log_path_;  // nwfqd's output: dir_/nwfqd.log
  std::string control_;   // a control socket path for nwfqd: dir_/nwfqd.sock
  // nwfqd's arguments before StartNwfqd's `extra` (say its filters and bindings); set by the
  // derived fixture or the test.
  Argv nwfqd_args_;
  pid_t nwfqd_ = -1;  // running nwfqd, or -1

 private:
  bool lab_up_ = false;
  std::vector<pid_t> children_;  // started by Spawn, in start order
};

}  // namespace nwfq::testing
