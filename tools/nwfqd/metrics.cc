#include "tools/nwfqd/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/nwfqd/daemon.h"

namespace nwfq::nwfqd {

std::string PromEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Open(const std::string& addr) {
  const size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("metrics: expected ADDR:PORT");
  std::string host = addr.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(addr.substr(colon + 1), &port) || port < 0 || port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("metrics: bad port in '", addr, "'"));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  sockaddr_storage ss = {};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("metrics: '", host, "' is not an IP address"));
  }
  const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("metrics socket: ", strerror(errno)));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 16) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("metrics ", addr, ": ", strerror(err)));
  }
  sockaddr_storage bound = {};
  socklen_t blen = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  const int real_port =
      ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return std::unique_ptr<MetricsServer>(new MetricsServer(fd, real_port));
}

MetricsServer::~MetricsServer() {
  Stop();
  close(fd_);
}

void MetricsServer::Start(std::function<std::string()> body) {
  body_ = std::move(body);
  thread_ = std::thread([this] { Loop(); });
}

void MetricsServer::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void MetricsServer::Loop() {
  while (!stop_.load()) {
    pollfd pfd = {fd_, POLLIN, 0};
    if (poll(&pfd, 1, 200) <= 0) continue;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::string req;
    char buf[1024];
    pollfd cp = {c, POLLIN, 0};
    while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos &&
           req.size() < 8192 && poll(&cp, 1, 2000) > 0) {
      const ssize_t n = read(c, buf, sizeof(buf));
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
    if (absl::StartsWith(req, "GET /metrics ") || absl::StartsWith(req, "GET /metrics?")) {
      body = body_();
    } else if (absl::StartsWith(req, "GET / ")) {
      type = "text/html";
      body = "<html><body><a href=\"/metrics\">nwfqd metrics</a></body></html>\n";
    } else {
      status = "404 Not Found";
      body = "not found: try GET /metrics\n";
    }
    const std::string head =
        absl::StrCat("HTTP/1.0 ", status, "\r\nContent-Type: ", type,
                     "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n");
    const std::string all = head + body;
    size_t off = 0;
    while (off < all.size()) {
      const ssize_t n = send(c, all.data() + off, all.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(c);
  }
}

namespace {

struct Prom {
  std::string out;
  void Head(absl::string_view name, absl::string_view type, absl::string_view help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  void Sample(absl::string_view name, absl::string_view labels, uint64_t v) {
    absl::StrAppend(&out, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ",
                    v, "\n");
  }
};

}  // namespace

std::string Daemon::MetricsText() {
  const Snapshot s = TakeSnapshot();
  Prom p;
  p.Head("nwfq_verdicts_total", "counter", "Verdicts by view and verdict.");
  static constexpr const char* kVerdicts[] = {"accept", "drop", "reject"};
  for (engine::View v : {engine::View::kFromVm, engine::View::kToVm, engine::View::kVmToHost}) {
    for (int d = 0; d < 3; ++d) {
      p.Sample("nwfq_verdicts_total",
               absl::StrCat("view=\"", ViewName(v), "\",verdict=\"", kVerdicts[d], "\""),
               s.handler.decisions[static_cast<int>(v)][d]);
    }
  }
  p.Head("nwfq_decision_reasons_total", "counter", "Why packets got their verdict.");
  for (int r = 0; r < 5; ++r) {
    p.Sample("nwfq_decision_reasons_total",
             absl::StrCat("reason=\"", ReasonName(static_cast<engine::Reason>(r)), "\""),
             s.handler.by_reason[r]);
  }
  p.Head("nwfq_not_ours_total", "counter", "Queued packets of no bound tap (accepted).");
  p.Sample("nwfq_not_ours_total", "", s.handler.not_ours);
  uint64_t malformed = 0;
  for (uint64_t m : s.engine.malformed) malformed += m;
  p.Head("nwfq_malformed_total", "counter", "Packets the engine could not parse.");
  p.Sample("nwfq_malformed_total", "", malformed);
  p.Head("nwfq_fragments_held_total", "counter",
         "IP fragments held until their datagram was complete.");
  p.Sample("nwfq_fragments_held_total", "", s.engine.fragments_held);
  p.Head("nwfq_datagrams_reassembled_total", "counter",
         "Fragmented datagrams reassembled and decided once.");
  p.Sample("nwfq_datagrams_reassembled_total", "", s.engine.datagrams_reassembled);
  p.Head("nwfq_fragments_dropped_total", "counter",
         "IP fragments the defragmenter dropped, by reason (overlap, timeout, no-memory, ...).");
  for (int r = 1; r < engine::kFragDropCount; ++r) {
    p.Sample(
        "nwfq_fragments_dropped_total",
        absl::StrCat("reason=\"",
                     std::string(engine::FragDropName(static_cast<engine::FragDrop>(r))), "\""),
        s.engine.frag_dropped[r]);
  }

  p.Head("nwfq_rule_packets_total", "counter", "Packets that matched a rule (per chain).");
  std::string bytes;
  for (const Snapshot::Binding& b : s.bindings) {
    auto inst = s.policy->bindings.find(b.portdev);
    for (const engine::RuleCounter& rc : b.rules) {
      std::string origin, filter, action;
      if (inst != s.policy->bindings.end() && rc.rule < inst->second.rules.size()) {
        const ConcreteRule& r = inst->second.rules[rc.rule];
        origin = absl::StrCat(r.origin.file, ":", r.origin.line);
        filter = r.origin.filter;
        action = std::string(ActionName(r.action));
      }
      const std::string labels =
          absl::StrCat("binding=\"", PromEscape(b.portdev), "\",chain=\"", PromEscape(rc.chain),
                       "\",rule=\"", rc.rule, "\",filter=\"", PromEscape(filter), "\",origin=\"",
                       PromEscape(origin), "\",action=\"", action, "\"");
      p.Sample("nwfq_rule_packets_total", labels, rc.packets);
      absl::StrAppend(&bytes, "nwfq_rule_bytes_total{", labels, "} ", rc.bytes, "\n");
    }
  }
  p.Head("nwfq_rule_bytes_total", "counter", "Bytes of the packets that matched a rule.");
  p.out += bytes;

  p.Head("nwfq_conntrack_entries", "gauge", "Connections in the table (per binding).");
  for (const auto& b : s.bindings)
    p.Sample("nwfq_conntrack_entries", absl::StrCat("binding=\"", PromEscape(b.portdev), "\""),
             b.entries);
  p.Head("nwfq_conntrack_capacity", "gauge", "Connection-table capacity (per binding).");
  for (const auto& b : s.bindings)
    p.Sample("nwfq_conntrack_capacity", absl::StrCat("binding=\"", PromEscape(b.portdev), "\""),
             b.capacity);
  p.Head("nwfq_conntrack_events_total", "counter",
         "Connection-table events (conntrack -S style) per binding.");
  for (const auto& b : s.bindings) {
    const ct::TableStats& t = b.stats;
    for (auto [name, v] :
         {std::pair{"found", t.found}, std::pair{"new", t.new_conns},
          std::pair{"confirmed", t.confirmed}, std::pair{"invalid", t.invalid},
          std::pair{"ignored", t.ignored}, std::pair{"related", t.related},
          std::pair{"early_drop", t.early_drop}, std::pair{"insert_failed", t.insert_failed},
          std::pair{"expired", t.expired}}) {
      p.Sample("nwfq_conntrack_events_total",
               absl::StrCat("binding=\"", PromEscape(b.portdev), "\",event=\"", name, "\""), v);
    }
  }

  p.Head("nwfq_queue_packets_total", "counter", "Packets received from NFQUEUE.");
  for (const auto& q : s.queues)
    p.Sample("nwfq_queue_packets_total", absl::StrCat("queue=\"", q.num, "\""), q.counters.packets);
  p.Head("nwfq_queue_errors_total", "counter", "NFQUEUE I/O problems by kind.");
  for (const auto& q : s.queues) {
    for (auto [name, v] :
         {std::pair{"truncated", q.counters.truncated},
          std::pair{"bad_message", q.counters.bad_messages},
          std::pair{"enobufs", q.counters.enobufs}, std::pair{"recv_error", q.counters.recv_errors},
          std::pair{"send_error", q.counters.send_errors}}) {
      p.Sample("nwfq_queue_errors_total", absl::StrCat("queue=\"", q.num, "\",kind=\"", name, "\""),
               v);
    }
  }
  p.Head("nwfq_kernel_queue_dropped_total", "counter",
         "Packets the kernel dropped (or, fail-open, accepted unfiltered) because the queue was "
         "full (/proc/net/netfilter/nfnetlink_queue).");
  for (const auto& q : s.queues)
    if (q.kernel_ok)
      p.Sample("nwfq_kernel_queue_dropped_total", absl::StrCat("queue=\"", q.num, "\""),
               q.kernel.queue_dropped);
  p.Head("nwfq_kernel_queue_user_dropped_total", "counter",
         "Packets lost because nwfqd's netlink socket overran.");
  for (const auto& q : s.queues)
    if (q.kernel_ok)
      p.Sample("nwfq_kernel_queue_user_dropped_total", absl::StrCat("queue=\"", q.num, "\""),
               q.kernel.user_dropped);
  p.Head("nwfq_kernel_queue_waiting", "gauge", "Packets waiting for a verdict in the kernel.");
  for (const auto& q : s.queues)
    if (q.kernel_ok)
      p.Sample("nwfq_kernel_queue_waiting", absl::StrCat("queue=\"", q.num, "\""),
               q.kernel.waiting);

  p.Head("nwfq_reloads_total", "counter", "Policy reloads by result.");
  p.Sample("nwfq_reloads_total", "result=\"ok\"", reloads_ok_.load());
  p.Sample("nwfq_reloads_total", "result=\"error\"", reloads_failed_.load());
  p.Head("nwfq_bindings", "gauge", "Bindings in force.");
  p.Sample("nwfq_bindings", "", s.policy->bindings.size());
  return p.out;
}

}  // namespace nwfq::nwfqd
