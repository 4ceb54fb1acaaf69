#include "tools/lab/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace nwfq::sub {
namespace {

std::vector<char*> MakeArgv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Closes both ends of the given pipes (ignoring -1).
void ClosePipes(std::initializer_list<int*> fds) {
  for (int* fd : fds) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

}  // namespace

std::string ShellQuote(const std::vector<std::string>& argv) {
  std::vector<std::string> parts;
  for (const std::string& a : argv) {
    if (!a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-_./:=,@+") == std::string::npos) {
      parts.push_back(a);
    } else {
      parts.push_back(absl::StrCat("'", absl::StrJoin(absl::StrSplit(a, '\''), "'\\''"), "'"));
    }
  }
  return absl::StrJoin(parts, " ");
}

absl::StatusOr<RunResult> Run(const std::vector<std::string>& argv, const RunOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("Run: empty argv");
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    ClosePipes({&in[0], &in[1], &out[0], &out[1], &err[0], &err[1]});
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> cargv = MakeArgv(argv);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ClosePipes({&in[0], &out[1], &err[1]});
  if (rc != 0) {
    ClosePipes({&in[1], &out[0], &err[0]});
    return absl::NotFoundError(absl::StrCat("cannot run ", argv[0], ": ", strerror(rc)));
  }
  // A broken stdin pipe (child exited early) must not kill us.
  signal(SIGPIPE, SIG_IGN);
  for (int fd : {in[1], out[0], err[0]}) fcntl(fd, F_SETFL, O_NONBLOCK);

  RunResult result;
  size_t written = 0;
  if (options.stdin_data.empty()) ClosePipes({&in[1]});
  const absl::Time deadline = absl::Now() + options.timeout;
  char buf[4096];
  while (out[0] >= 0 || err[0] >= 0) {
    pollfd fds[3];
    int n = 0;
    int* slots[3];
    for (int* fd : {&in[1], &out[0], &err[0]}) {
      if (*fd < 0) continue;
      fds[n] = {*fd, static_cast<short>(fd == &in[1] ? POLLOUT : POLLIN), 0};
      slots[n++] = fd;
    }
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      result.timed_out = true;
      break;
    }
    if (poll(fds, n, static_cast<int>(std::min<int64_t>(left_ms, 1000))) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      int* fd = slots[i];
      if (fd == &in[1]) {
        ssize_t w =
            write(*fd, options.stdin_data.data() + written, options.stdin_data.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) written = options.stdin_data.size();
        if (written >= options.stdin_data.size()) ClosePipes({fd});
        continue;
      }
      ssize_t r = read(*fd, buf, sizeof(buf));
      if (r > 0) {
        (fd == &out[0] ? result.out : result.err).append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EAGAIN) {
        ClosePipes({fd});
      }
    }
  }
  ClosePipes({&in[1], &out[0], &err[0]});
  int status = 0;
  if (result.timed_out) {
    kill(pid, SIGKILL);  // our own child, by PID
  }
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = DecodeStatus(status);
  return result;
}

absl::StatusOr<std::string> RunOk(const std::vector<std::string>& argv, const RunOptions& options) {
  absl::StatusOr<RunResult> r = Run(argv, options);
  if (!r.ok()) return r.status();
  if (r->timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(ShellQuote(argv), ": timed out after ",
                                                    absl::FormatDuration(options.timeout)));
  }
  if (r->exit_code != 0) {
    std::string err(r->err.substr(0, 400));
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    return absl::FailedPreconditionError(
        absl::StrCat(ShellQuote(argv), ": exit ", r->exit_code, err.empty() ? "" : ": ", err));
  }
  return std::move(r->out);
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) return absl::InvalidArgumentError("Spawn: empty argv");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!log_path.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  std::vector<char*> cargv = MakeArgv(argv);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return absl::NotFoundError(absl::StrCat("cannot run ", argv[0], ": ", strerror(rc)));
  return pid;
}

int WaitFor(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return DecodeStatus(status);
    if (r < 0 && errno != EINTR) return -1;
    if (absl::Now() >= deadline) return -1;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

int Stop(pid_t pid, int sig, absl::Duration grace) {
  kill(pid, sig);
  int code = WaitFor(pid, grace);
  if (code != -1) return code;
  kill(pid, SIGKILL);
  return WaitFor(pid, absl::Seconds(5));
}

}  // namespace nwfq::sub
