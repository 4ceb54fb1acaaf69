// live_udp_sender — the traffic side of bench/live_bench.sh (nwfqd's live throughput).
//
//   send: UDP datagrams from one socket with sendmmsg(), cycling over the destination
//         addresses and ports given, until --count datagrams are sent or --seconds pass.
//         One JSON line on stdout: sent, send errors, seconds, pps.
//   sink: binds one UDP socket per port and never reads, so datagrams that reach the peer
//         are consumed by the kernel (counted in the peer's Udp InDatagrams/RcvbufErrors)
//         instead of answered with ICMP port unreachable, and the sink costs no CPU. Ends
//         after --seconds.
//
// Bounded by design (count and time are both required to be finite); never changes any
// system setting. Addresses are checked to lie in 198.18.0.0/15 (the lab's range).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Args {
  std::string mode;
  std::vector<in_addr> dsts;
  uint16_t port = 9000;
  int ports = 1;
  int size = 64;  // UDP payload bytes
  uint64_t count = 1000000;
  double seconds = 5;
  int batch = 64;
};

void Usage() {
  std::fprintf(stderr,
               "usage: live_udp_sender send --dst IP[,IP...] [--port P] [--ports N] [--size B]\n"
               "                            [--count N] [--seconds S] [--batch N]\n"
               "       live_udp_sender sink [--port P] [--ports N] [--seconds S]\n"
               "send: UDP with sendmmsg() until COUNT datagrams or S seconds (default 1000000,\n"
               "5 s), cycling destinations and ports P..P+N-1; prints one JSON line.\n"
               "sink: binds ports P..P+N-1 and never reads (no ICMP unreachables) for S s.\n"
               "Addresses must be in 198.18.0.0/15.\n");
}

bool InLabRange(in_addr a) { return (ntohl(a.s_addr) & 0xfffe0000u) == 0xc6120000u; }

bool Parse(int argc, char** argv, Args* a) {
  if (argc < 2) return false;
  a->mode = argv[1];
  if (a->mode != "send" && a->mode != "sink") return false;
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (k == "--dst") {
      std::string s = v;
      size_t start = 0;
      while (start <= s.size()) {
        size_t end = s.find(',', start);
        if (end == std::string::npos) end = s.size();
        in_addr addr{};
        if (inet_pton(AF_INET, s.substr(start, end - start).c_str(), &addr) != 1) return false;
        if (!InLabRange(addr)) {
          std::fprintf(stderr, "live_udp_sender: %s is outside 198.18.0.0/15\n", v);
          return false;
        }
        a->dsts.push_back(addr);
        start = end + 1;
      }
    } else if (k == "--port") {
      a->port = static_cast<uint16_t>(std::atoi(v));
    } else if (k == "--ports") {
      a->ports = std::atoi(v);
    } else if (k == "--size") {
      a->size = std::atoi(v);
    } else if (k == "--count") {
      a->count = std::strtoull(v, nullptr, 10);
    } else if (k == "--seconds") {
      a->seconds = std::atof(v);
    } else if (k == "--batch") {
      a->batch = std::atoi(v);
    } else {
      return false;
    }
  }
  if (a->ports < 1 || a->ports > 1024 || a->port == 0 || a->port + a->ports > 65536) return false;
  if (a->size < 0 || a->size > 1472 || a->batch < 1 || a->batch > 1024) return false;
  if (!(a->seconds > 0 && a->seconds <= 600) || a->count == 0) return false;
  return a->mode == "sink" || !a->dsts.empty();
}

int Sink(const Args& a) {
  std::vector<int> fds;
  for (int i = 0; i < a.ports; ++i) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(a.port + i));
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      std::perror("live_udp_sender: sink bind");
      return 1;
    }
    fds.push_back(fd);
  }
  std::fprintf(stderr, "live_udp_sender: sink on ports %d..%d for %.1f s\n", a.port,
               a.port + a.ports - 1, a.seconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  for (int fd : fds) close(fd);
  return 0;
}

int Send(const Args& a) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    std::perror("live_udp_sender: socket");
    return 1;
  }
  // One message per (destination, port) pair, reused for every batch: the payload is the
  // same bytes each time (the filter looks at headers only).
  const size_t n = static_cast<size_t>(a.batch);
  std::vector<char> payload(static_cast<size_t>(a.size), 'n');
  std::vector<sockaddr_in> addrs(a.dsts.size() * static_cast<size_t>(a.ports));
  for (size_t d = 0; d < a.dsts.size(); ++d) {
    for (int p = 0; p < a.ports; ++p) {
      sockaddr_in& sa = addrs[d * static_cast<size_t>(a.ports) + static_cast<size_t>(p)];
      sa.sin_family = AF_INET;
      sa.sin_addr = a.dsts[d];
      sa.sin_port = htons(static_cast<uint16_t>(a.port + p));
    }
  }
  std::vector<iovec> iov(n);
  std::vector<mmsghdr> msgs(n);
  size_t next_addr = 0;
  uint64_t sent = 0, errors = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(a.seconds));
  auto now = start;
  while (sent < a.count && now < deadline) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(n, a.count - sent));
    for (size_t i = 0; i < want; ++i) {
      iov[i] = {payload.data(), payload.size()};
      std::memset(&msgs[i], 0, sizeof(mmsghdr));
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &addrs[next_addr];
      msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      if (++next_addr == addrs.size()) next_addr = 0;
    }
    int r = sendmmsg(fd, msgs.data(), static_cast<unsigned>(want), 0);
    if (r < 0) {
      // ENOBUFS / EAGAIN (device queue full) or ECONNREFUSED (an ICMP unreachable came
      // back): count and carry on; the sender is bounded by count and time anyway.
      ++errors;
    } else {
      sent += static_cast<uint64_t>(r);
    }
    now = std::chrono::steady_clock::now();
  }
  const double secs = std::chrono::duration<double>(now - start).count();
  close(fd);
  std::printf(
      "{\"sent\": %llu, \"send_errors\": %llu, \"seconds\": %.3f, \"pps\": %.0f, "
      "\"payload_bytes\": %d, \"flows\": %zu}\n",
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(errors), secs,
      secs > 0 ? static_cast<double>(sent) / secs : 0.0, a.size, addrs.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    Usage();
    return 0;
  }
  if (!Parse(argc, argv, &a)) {
    Usage();
    return 2;
  }
  return a.mode == "send" ? Send(a) : Sink(a);
}
