// nwfqd's control socket: a Unix stream socket, mode 0600, peers checked to be uid 0
// (SO_PEERCRED), served by a thread of its own.
//
// Protocol (also in nwfqd.8; `socat - UNIX-CONNECT:PATH` speaks it):
//   request   one line of words separated by blanks, at most 4096 bytes, ending in '\n':
//             the nwfqctl words, e.g. `conntrack list --binding vnet0 --json`,
//             `timeout set icmp 3`, `counters`, `status`, `reload`, `trace --count 5 proto icmp`
//   answer    a status line, `ok` or `error`, then the body (any number of lines), then
//             the server closes the connection. After `error` the body says why (reload:
//             one `file:line: message` per problem). Streaming requests (`trace`) send
//             `ok` and then one body line per event until done or the client closes.
// So a client reads to EOF; the first line is the outcome.
//
// Threading: Start() runs an accept thread; each connection is served on a thread of its
// own (at most kMaxClients at once; more are answered `error busy`). The handler
// therefore runs concurrently with itself and with the packet workers: it must use the
// gate (gate.h) for worker state. `on_tick` runs on the accept thread about every 200 ms
// (nwfqd: SIGHUP reloads from there).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nwfq::nwfqd {

// One client connection's answer.
class Reply {
 public:
  explicit Reply(int fd) : fd_(fd) {}
  // Sends the status line (once; the first of Ok/Error/Write decides it) and `body`.
  void Ok(absl::string_view body = "");
  void Error(absl::string_view message);
  // For streaming: sends `ok` first if nothing was sent yet, then `text`. False once the
  // client is gone.
  bool Write(absl::string_view text);
  // True when the client closed its end (checked without blocking).
  bool ClientGone() const;

 private:
  bool Send(absl::string_view text);
  int fd_;
  bool started_ = false;
  bool failed_ = false;
};

class ControlServer {
 public:
  static constexpr int kMaxClients = 8;
  using Handler = std::function<void(const std::vector<std::string>& args, Reply& reply)>;

  // Binds `path` (mode 0600; its directory is created 0755 if missing). A stale socket of
  // a crashed run is replaced; a live one (another nwfqd answers) or any other file is
  // refused.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Open(const std::string& path);
  ~ControlServer();  // Stop()s, closes and unlinks the socket
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  void Start(Handler handler, std::function<void()> on_tick);
  // Stops accepting, waits for the connection threads (streaming handlers must watch
  // stopping()), joins the accept thread.
  void Stop();
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

  const std::string& path() const { return path_; }

 private:
  ControlServer(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  void AcceptLoop();
  void Serve(int fd);

  int fd_;
  std::string path_;
  Handler handler_;
  std::function<void()> on_tick_;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex clients_mu_;
  std::condition_variable clients_cv_;
  int active_ = 0;  // connection threads running; guarded by clients_mu_
};

// Splits a request line into words (blanks separate; no quoting).
std::vector<std::string> SplitRequest(absl::string_view line);

}  // namespace nwfq::nwfqd
