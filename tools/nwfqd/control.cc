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
#include "absl/strings/strip.h"

namespace nwfq::nwfqd {

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Open(const std::string& path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("control socket path too long: ", path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(absl::StrCat(path, " exists and is not a socket"));
    }
    unlink(path.c_str());  // left by a crashed run
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  const mode_t old = umask(0177);  // the socket is created 0600
  const int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (rc != 0 || listen(fd, 8) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("control socket ", path, ": ", strerror(err)));
  }
  return std::unique_ptr<ControlServer>(new ControlServer(fd, path));
}

ControlServer::~ControlServer() {
  close(fd_);
  unlink(path_.c_str());
}

void ControlServer::Poll(const std::function<std::string(std::string_view)>& handler) {
  for (int served = 0; served < 8; ++served) {
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;  // EAGAIN: nobody waiting
    std::string line;
    char buf[256];
    pollfd pfd = {c, POLLIN, 0};
    while (line.find('\n') == std::string::npos && line.size() < 1024 && poll(&pfd, 1, 200) > 0) {
      const ssize_t n = read(c, buf, sizeof(buf));
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    const std::string request(absl::StripAsciiWhitespace(line.substr(0, line.find('\n'))));
    const std::string answer = handler(request);
    (void)send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
    close(c);
  }
}

}  // namespace nwfq::nwfqd
