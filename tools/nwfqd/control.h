// nwfqd's control socket (first slice): a Unix stream socket, mode 0600 (root only), one
// request line per connection, one text answer, then close. Requests: `status`. The full
// protocol (conntrack, timeouts, counters per rule, reload, trace) is issue 6.
//
// Threading: Poll() from the worker's loop; it never blocks for long (non-blocking accept,
// a client gets 200 ms to send its line).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace nwfq::nwfqd {

class ControlServer {
 public:
  // Binds `path` (a stale socket file from a crashed run is replaced; anything else at
  // that path is refused).
  static absl::StatusOr<std::unique_ptr<ControlServer>> Open(const std::string& path);
  ~ControlServer();  // closes and unlinks the socket
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Serves the connections waiting now: `handler(request line)` gives the answer.
  void Poll(const std::function<std::string(std::string_view)>& handler);

 private:
  ControlServer(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

}  // namespace nwfq::nwfqd
