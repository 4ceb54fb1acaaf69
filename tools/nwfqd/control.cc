#include "tools/nwfqd/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace nwfq::nwfqd {

std::vector<std::string> SplitRequest(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty());
}

bool Reply::Send(absl::string_view text) {
  while (!failed_ && !text.empty()) {
    const ssize_t n = send(fd_, text.data(), text.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      failed_ = true;
      break;
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
  return !failed_;
}

void Reply::Ok(absl::string_view body) {
  if (!started_) {
    started_ = true;
    Send("ok\n");
  }
  Send(body);
}

void Reply::Error(absl::string_view message) {
  if (started_) {  // already streaming: the error becomes a body line
    Send(absl::StrCat("error: ", message, "\n"));
    return;
  }
  started_ = true;
  Send(absl::StrCat("error\n", message, absl::EndsWith(message, "\n") ? "" : "\n"));
}

bool Reply::Write(absl::string_view text) {
  Ok(text);
  return !failed_;
}

bool Reply::ClientGone() const {
  if (failed_) return true;
  pollfd pfd = {fd_, POLLRDHUP, 0};
  return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Open(const std::string& path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("control socket path too long: ", path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (const size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
  }
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(absl::StrCat(path, " exists and is not a socket"));
    }
    // A socket someone still answers on belongs to a running nwfqd: do not steal it.
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live =
        probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      return absl::AlreadyExistsError(
          absl::StrCat(path, ": another nwfqd is listening there (use --control PATH)"));
    }
    unlink(path.c_str());  // left by a crashed run
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  const mode_t old = umask(0177);  // the socket is created 0600
  const int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (rc != 0 || listen(fd, 16) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("control socket ", path, ": ", strerror(err)));
  }
  return std::unique_ptr<ControlServer>(new ControlServer(fd, path));
}

ControlServer::~ControlServer() {
  Stop();
  close(fd_);
  unlink(path_.c_str());
}

void ControlServer::Start(Handler handler, std::function<void()> on_tick) {
  handler_ = std::move(handler);
  on_tick_ = std::move(on_tick);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

void ControlServer::Stop() {
  stop_.store(true);
  if (accept_thread_.joinable()) accept_thread_.join();
  // Connection threads are detached; handlers end promptly once stopping() (a gate Run
  // waits at most for one worker poll). Wait for them: they use `this`.
  std::unique_lock<std::mutex> lock(clients_mu_);
  clients_cv_.wait(lock, [&] { return active_ == 0; });
}

void ControlServer::AcceptLoop() {
  while (!stop_.load()) {
    pollfd pfd = {fd_, POLLIN, 0};
    const int ready = poll(&pfd, 1, 200);
    if (on_tick_) on_tick_();
    if (ready <= 0) continue;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    ucred cred = {};
    socklen_t len = sizeof(cred);
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
      Reply(c).Error("permission denied: the control socket is for root only");
      close(c);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(clients_mu_);
      if (active_ >= kMaxClients) {
        Reply(c).Error("busy: too many control connections");
        close(c);
        continue;
      }
      ++active_;
    }
    std::thread([this, c] {
      Serve(c);
      close(c);
      std::lock_guard<std::mutex> lock(clients_mu_);
      --active_;
      clients_cv_.notify_all();
    }).detach();
  }
}

void ControlServer::Serve(int c) {
  std::string line;
  char buf[512];
  pollfd pfd = {c, POLLIN, 0};
  // The request line: 2 s to send it.
  while (line.find('\n') == std::string::npos && line.size() <= 4096 && poll(&pfd, 1, 2000) > 0) {
    const ssize_t n = read(c, buf, sizeof(buf));
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  Reply reply(c);
  if (line.size() > 4096) {
    reply.Error("request line longer than 4096 bytes");
    return;
  }
  std::vector<std::string> args = SplitRequest(line.substr(0, line.find('\n')));
  if (args.empty()) {
    reply.Error("empty request (try `help`)");
    return;
  }
  handler_(args, reply);
  reply.Ok();  // nothing sent (a handler with an empty answer): still say ok
}

}  // namespace nwfq::nwfqd
