// Runs external programs (ip, iptables, sysctl, ...) with an explicit argv: no shell, so
// no quoting or injection issues. Used by the lab, nwfqd's steering and the integration
// tests.
//
// Thread-safety: each call is independent; safe from any thread (uses posix_spawn).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nwfq::sub {

struct RunOptions {
  std::string stdin_data;                      // written to the child's stdin, which is then closed
  absl::Duration timeout = absl::Seconds(30);  // the child is SIGKILLed after this
};

struct RunResult {
  int exit_code = -1;  // exit status, or 128 + signal number when killed by a signal
  bool timed_out = false;
  std::string out;  // captured stdout
  std::string err;  // captured stderr
  bool ok() const { return exit_code == 0 && !timed_out; }
};

// Runs argv[0] (looked up in PATH) and waits for it. An error status only when the program
// could not be started; a non-zero exit is a RunResult.
absl::StatusOr<RunResult> Run(const std::vector<std::string>& argv, const RunOptions& options = {});

// Like Run, but a non-zero exit or a timeout is an error whose message holds the command
// and the first line(s) of its stderr. Returns stdout.
absl::StatusOr<std::string> RunOk(const std::vector<std::string>& argv,
                                  const RunOptions& options = {});

// Starts argv in the background with stdout/stderr redirected to `log_path` (appended;
// "" = inherit). Returns the child's PID; the caller owns it (Stop it, or wait for it).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path = "");

// Sends `sig` to `pid` (a child started by Spawn) and waits up to `grace` for it to exit;
// then SIGKILLs it. Returns the exit code as in RunResult::exit_code.
int Stop(pid_t pid, int sig, absl::Duration grace);

// Waits up to `timeout` for child `pid` to exit without signalling it. Returns its exit
// code, or -1 if it is still running.
int WaitFor(pid_t pid, absl::Duration timeout);

// "a b 'c d'" for messages.
std::string ShellQuote(const std::vector<std::string>& argv);

}  // namespace nwfq::sub
