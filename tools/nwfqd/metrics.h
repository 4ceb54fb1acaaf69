// `--metrics ADDR:PORT`: Prometheus text exposition (format 0.0.4) over a minimal
// HTTP/1.0 responder: `GET /metrics` answers the text, anything else 404; one request per
// connection, served on the server's own thread, 2 s to send the request.
//
// Metric names (all prefixed nwfq_; see nwfqd.8): verdicts by view and verdict, decision
// reasons, per-rule packets/bytes (labels binding, chain, rule, filter, origin, action),
// conntrack entries/capacity and table events per binding, NFQUEUE counters per queue and
// the kernel's queue drops from /proc/net/netfilter/nfnetlink_queue, reloads.
//
// Threading: the body callback runs on the metrics thread (nwfqd's takes a gate snapshot).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace nwfq::nwfqd {

class MetricsServer {
 public:
  // `addr` is "IPV4:PORT" or "[IPV6]:PORT" (port 0 = any free port, see port()).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Open(const std::string& addr);
  ~MetricsServer();  // Stop()s and closes
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void Start(std::function<std::string()> body);
  void Stop();
  int port() const { return port_; }

 private:
  MetricsServer(int fd, int port) : fd_(fd), port_(port) {}
  void Loop();

  int fd_;
  int port_;
  std::function<std::string()> body_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Prometheus label value escaping (backslash, quote, newline).
std::string PromEscape(absl::string_view s);

}  // namespace nwfq::nwfqd
