// Test helper for the kernel fidelity tests: a namespace lab whose kernel conntrack sees
// the same packets as nwfq's Table, a frame builder (Ethernet + IPv4/IPv6 + TCP/UDP/ICMP
// with checksums) and summaries of what each tracker made of a packet. Test-only code.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "conntrack/clock.h"
#include "conntrack/table.h"
#include "gtest/gtest.h"
#include "tests/conntrack/packets.h"

namespace nwfq::ct::lab {

using namespace ::nwfq::ct::testing;  // NOLINT: packet builders

inline const auto kC = V4(198, 18, 7, 2);  // client
inline const auto kS = V4(198, 18, 7, 3);  // server

inline std::array<uint8_t, 16> Lab6(uint8_t last) {  // 2001:db8:7::<last>
  std::array<uint8_t, 16> a = V6(last);
  a[4] = 0;
  a[5] = 7;
  return a;
}
inline const auto kC6 = Lab6(2);
inline const auto kS6 = Lab6(3);

inline std::string Run(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* f = popen(("timeout 20 " + cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = pclose(f);
  if (status != nullptr) *status = st;
  return out;
}

inline bool Ok(const std::string& cmd) {
  int st = 0;
  Run(cmd, &st);
  return st == 0;
}

// ---- Frame building (test helper only: Ethernet + IPv4 + TCP/UDP/ICMP with checksums).
inline uint16_t Checksum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline void Put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
inline void Put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  Put16(b, at, static_cast<uint16_t>(v >> 16));
  Put16(b, at + 2, static_cast<uint16_t>(v));
}

// The L4 bytes of a (non-error) packet, checksum left zero.
inline std::vector<uint8_t> L4Bytes(const PacketFacts& p) {
  std::vector<uint8_t> l4;
  const FlowFacts& f = p.flow;
  if (f.l4proto == 6) {
    const bool syn = p.tcp_flags & kTcpSyn;
    std::vector<uint8_t> opt;
    if (syn && !p.tcp_no_options) {
      opt = {2, 4, 0x05, 0xb4};  // MSS 1460
      if (p.tcp_wscale != 0xff) opt.insert(opt.end(), {1, 3, 3, p.tcp_wscale});
      if (p.tcp_sack_perm) opt.insert(opt.end(), {1, 1, 4, 2});
    }
    if (p.tcp_sack_present && !p.tcp_no_options) {  // one block [edge - 1, edge)
      const uint32_t l = p.tcp_sack_edge - 1, r = p.tcp_sack_edge;
      opt.insert(
          opt.end(),
          {1, 1, 5, 10, static_cast<uint8_t>(l >> 24), static_cast<uint8_t>(l >> 16),
           static_cast<uint8_t>(l >> 8), static_cast<uint8_t>(l), static_cast<uint8_t>(r >> 24),
           static_cast<uint8_t>(r >> 16), static_cast<uint8_t>(r >> 8), static_cast<uint8_t>(r)});
    }
    const size_t olen = opt.size();
    l4.assign(20 + olen + p.payload_len, 0);
    Put16(l4, 0, f.sport);
    Put16(l4, 2, f.dport);
    Put32(l4, 4, p.tcp_seq);
    Put32(l4, 8, p.tcp_ack);
    l4[12] = static_cast<uint8_t>(((20 + olen) / 4) << 4);
    l4[13] = p.tcp_flags;
    Put16(l4, 14, p.tcp_window);
    std::copy(opt.begin(), opt.end(), l4.begin() + 20);
  } else if (f.l4proto == 132) {  // only quoted in ICMP errors: the common header, no chunk
    l4.assign(12, 0);
    Put16(l4, 0, f.sport);
    Put16(l4, 2, f.dport);
  } else if (f.l4proto == 47) {  // GRE version 0 carrying IPv4, no key
    l4 = {0, 0, 0x08, 0x00};
  } else if (f.l4proto == 50) {  // ESP: SPI, sequence number, 8 bytes of "ciphertext"
    l4.assign(16, 0);
    Put32(l4, 0, f.spi);
    Put32(l4, 4, 1);
  } else if (f.l4proto == 51) {  // AH: next header none, length 4 (24 bytes), SPI, sequence
    l4.assign(24, 0);
    l4[0] = 59;
    l4[1] = 4;
    Put32(l4, 4, f.spi);
    Put32(l4, 8, 1);
  } else if (f.l4proto == 17 || f.l4proto == 136) {
    l4.assign(8 + p.payload_len, 0);
    Put16(l4, 0, f.sport);
    Put16(l4, 2, f.dport);
    Put16(l4, 4, static_cast<uint16_t>(l4.size()));
  } else if (f.l4proto == 1 || f.l4proto == 58) {
    const bool nd = f.l4proto == 58 && f.icmp_type >= 133 && f.icmp_type <= 137;
    l4.assign(nd ? 8 + 16 : 8 + 8, 0);
    l4[0] = f.icmp_type;
    l4[1] = f.icmp_code;
    if (nd) {
      std::memcpy(&l4[8], f.dst.data(), 16);  // target address
    } else {
      Put16(l4, 4, f.icmp_id);
      Put16(l4, 6, 1);
    }
  }
  return l4;
}

// The protocol number in a transport checksum's pseudo-header. UDP-Lite: 17, because the
// kernel's conntrack verifies UDP-Lite with IPPROTO_UDP (udplite_error() in
// nf_conntrack_proto_udp.c) and calls the RFC 3828 checksum, made with 136, wrong
// (DIVERGENCES U1; KernelFidelity.UdpLiteChecksumQuirk pins it).
inline uint32_t PseudoProto(const FlowFacts& f, bool rfc_udplite) {
  return f.l4proto == 136 && !rfc_udplite ? 17u : f.l4proto;
}

inline std::vector<uint8_t> Ipv4(const FlowFacts& f, std::vector<uint8_t> l4,
                                 bool rfc_udplite = false) {
  std::vector<uint8_t> ip(20, 0);
  ip[0] = 0x45;
  Put16(ip, 2, static_cast<uint16_t>(20 + l4.size()));
  ip[8] = 64;
  ip[9] = f.l4proto;
  std::memcpy(&ip[12], f.src.data(), 4);
  std::memcpy(&ip[16], f.dst.data(), 4);
  Put16(ip, 10, Checksum(ip.data(), 20));
  // Transport checksum.
  if (f.l4proto == 6 || f.l4proto == 17 || f.l4proto == 136) {  // UDP-Lite: full coverage
    uint32_t pseudo = 0;
    for (int i = 0; i < 4; i += 2) {
      pseudo += static_cast<uint32_t>(f.src[i] << 8 | f.src[i + 1]);
      pseudo += static_cast<uint32_t>(f.dst[i] << 8 | f.dst[i + 1]);
    }
    pseudo += PseudoProto(f, rfc_udplite) + static_cast<uint32_t>(l4.size());
    size_t at = f.l4proto == 6 ? 16 : 6;
    Put16(l4, at, Checksum(l4.data(), l4.size(), pseudo));
  } else if (f.l4proto == 1) {
    Put16(l4, 2, Checksum(l4.data(), l4.size()));
  }
  ip.insert(ip.end(), l4.begin(), l4.end());
  return ip;
}

inline std::vector<uint8_t> Ipv6(const FlowFacts& f, std::vector<uint8_t> l4,
                                 bool rfc_udplite = false) {
  std::vector<uint8_t> ip(40, 0);
  ip[0] = 0x60;
  Put16(ip, 4, static_cast<uint16_t>(l4.size()));
  ip[6] = f.l4proto;
  const bool nd = f.l4proto == 58 && f.icmp_type >= 133 && f.icmp_type <= 137;
  ip[7] = nd ? 255 : 64;
  std::memcpy(&ip[8], f.src.data(), 16);
  std::memcpy(&ip[24], f.dst.data(), 16);
  uint32_t pseudo = 0;
  for (int i = 0; i < 16; i += 2) {
    pseudo += static_cast<uint32_t>(f.src[i] << 8 | f.src[i + 1]);
    pseudo += static_cast<uint32_t>(f.dst[i] << 8 | f.dst[i + 1]);
  }
  pseudo += PseudoProto(f, rfc_udplite) + static_cast<uint32_t>(l4.size());
  size_t at = f.l4proto == 6 ? 16 : (f.l4proto == 17 || f.l4proto == 136) ? 6 : 2;
  // SCTP carries a CRC32c instead; GRE, ESP and AH no checksum of this kind.
  if (f.l4proto == 6 || f.l4proto == 17 || f.l4proto == 136 || f.l4proto == 58) {
    Put16(l4, at, Checksum(l4.data(), l4.size(), pseudo));
  }
  ip.insert(ip.end(), l4.begin(), l4.end());
  return ip;
}

// An SCTP packet's transport bytes: the common header (ports, verification tag) and
// `chunks`, with its CRC32c.
inline std::vector<uint8_t> SctpL4(const FlowFacts& f, uint32_t vtag,
                                   const std::vector<uint8_t>& chunks) {
  std::vector<uint8_t> l4(12 + chunks.size(), 0);
  Put16(l4, 0, f.sport);
  Put16(l4, 2, f.dport);
  Put32(l4, 4, vtag);
  std::copy(chunks.begin(), chunks.end(), l4.begin() + 12);
  const uint32_t crc = nwfq::testing::Crc32c(l4);
  for (int i = 0; i < 4; ++i) l4[8 + i] = static_cast<uint8_t>(crc >> (8 * i));
  return l4;
}

inline std::vector<uint8_t> IpPacket(const PacketFacts& p) {
  if (p.flow.family == 6) {
    if (p.icmp_error) {
      PacketFacts inner;
      inner.flow = p.inner;
      std::vector<uint8_t> quoted = Ipv6(p.inner, L4Bytes(inner));
      quoted.resize(48);
      std::vector<uint8_t> icmp(8, 0);
      icmp[0] = p.flow.icmp_type;
      icmp[1] = p.flow.icmp_code;
      icmp.insert(icmp.end(), quoted.begin(), quoted.end());
      return Ipv6(p.flow, icmp);
    }
    return Ipv6(p.flow, L4Bytes(p));
  }
  if (p.flow.l4proto == 1 && p.icmp_error) {
    // ICMP error quoting the inner packet's IP header + first 8 bytes of its transport.
    PacketFacts inner;
    inner.flow = p.inner;
    std::vector<uint8_t> quoted = Ipv4(p.inner, L4Bytes(inner));
    quoted.resize(28);
    std::vector<uint8_t> icmp(8, 0);
    icmp[0] = p.flow.icmp_type;
    icmp[1] = p.flow.icmp_code;
    icmp.insert(icmp.end(), quoted.begin(), quoted.end());
    return Ipv4(p.flow, icmp);
  }
  return Ipv4(p.flow, L4Bytes(p));
}

// ---- The kernel side.
// Owns the three namespaces: they are removed by Down() and, whatever happens to the
// test (failed assertion, early return), by the destructor.
class KernelLab {
 public:
  KernelLab() = default;
  KernelLab(const KernelLab&) = delete;
  KernelLab& operator=(const KernelLab&) = delete;
  ~KernelLab() {
    if (getenv("NWFQ_CT_KEEP") == nullptr) Down();
  }

  bool Up(std::string* why) {
    Down();
    const char* setup[] = {
        "ip netns add nwfq-ct-inj",
        "ip netns add nwfq-ct-k",
        "ip netns add nwfq-ct-sink",
        "ip link add ci netns nwfq-ct-inj type veth peer name ck netns nwfq-ct-k",
        "ip link add cs netns nwfq-ct-k type veth peer name cz netns nwfq-ct-sink",
        "ip netns exec nwfq-ct-inj sysctl -qw net.ipv6.conf.ci.disable_ipv6=1",
        "ip -n nwfq-ct-inj link set ci up",
        "ip -n nwfq-ct-k link set ck up",
        "ip -n nwfq-ct-k link set cs up",
        "ip -n nwfq-ct-sink link set cz up",
        "ip -n nwfq-ct-k link set lo up",
        "ip -n nwfq-ct-k addr add 198.18.6.1/24 dev ck",
        "ip -n nwfq-ct-k addr add 198.18.8.1/24 dev cs",
        "ip -n nwfq-ct-k route add 198.18.7.0/24 dev cs",
        "ip -n nwfq-ct-k neigh add 198.18.7.2 lladdr 02:00:00:00:07:02 dev cs",
        "ip -n nwfq-ct-k neigh add 198.18.7.3 lladdr 02:00:00:00:07:03 dev cs",
        "ip netns exec nwfq-ct-k sysctl -qw net.ipv4.ip_forward=1",
        "ip netns exec nwfq-ct-k sysctl -qw net.ipv4.conf.all.rp_filter=0",
        "ip netns exec nwfq-ct-k sysctl -qw net.ipv4.conf.ck.rp_filter=0",
        "ip netns exec nwfq-ct-k sysctl -qw net.ipv4.conf.ck.accept_local=1",
        "ip netns exec nwfq-ct-k sysctl -qw net.ipv6.conf.all.forwarding=1",
        "ip netns exec nwfq-ct-k sysctl -qw net.ipv6.conf.ck.accept_dad=0",
        "ip netns exec nwfq-ct-k sysctl -qw net.ipv6.conf.cs.accept_dad=0",
        "ip -n nwfq-ct-k addr add 2001:db8:6::1/64 dev ck nodad",
        "ip -n nwfq-ct-k addr add 2001:db8:8::1/64 dev cs nodad",
        "ip -n nwfq-ct-k route add 2001:db8:7::/64 dev cs",
        "ip -n nwfq-ct-k neigh add 2001:db8:7::2 lladdr 02:00:00:00:07:02 dev cs",
        "ip -n nwfq-ct-k neigh add 2001:db8:7::3 lladdr 02:00:00:00:07:03 dev cs",
    };
    for (const char* cmd : setup) {
      if (!Ok(cmd)) {
        *why = std::string("setup failed: ") + cmd + ": " + Run(cmd);
        return false;
      }
    }
    const char* states[] = {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"};
    for (const char* tool : {"iptables", "ip6tables"}) {
      // Only the lab's own packets (not the interface's own IPv6 chatter).
      const std::string lab = std::string(tool) == "iptables"
                                  ? " -s 198.18.7.0/24 -d 198.18.7.0/24"
                                  : " -s 2001:db8:7::/64 -d 2001:db8:7::/64";
      const std::string base = std::string("ip netns exec nwfq-ct-k ") + tool +
                               " -t mangle -A PREROUTING -i ck" + lab + " -m conntrack ";
      for (const char* s : states) {
        std::string cmd = base + "--ctstate " + s + " -m comment --comment st_" + s;
        if (!Ok(cmd)) {
          *why = "iptables failed: " + Run(cmd);
          return false;
        }
      }
      for (const char* d : {"ORIGINAL", "REPLY"}) {
        std::string cmd = base + "--ctdir " + d + " -m comment --comment dir_" + d;
        if (!Ok(cmd)) {
          *why = "iptables failed: " + Run(cmd);
          return false;
        }
      }
    }
    ck_mac_ = Run("ip -n nwfq-ct-k -br link show ck");
    std::istringstream ls(ck_mac_);
    std::string name, state, mac;
    ls >> name >> state >> mac;
    if (sscanf(mac.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst_mac_[0], &dst_mac_[1],
               &dst_mac_[2], &dst_mac_[3], &dst_mac_[4], &dst_mac_[5]) != 6) {
      *why = "cannot read ck's MAC from: " + ck_mac_;
      return false;
    }
    // An AF_PACKET socket inside nwfq-ct-inj (setns for this thread, then back).
    int self = open("/proc/self/ns/net", O_RDONLY);
    int target = open("/run/netns/nwfq-ct-inj", O_RDONLY);
    if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
      *why = "setns failed";
      return false;
    }
    sock_ = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    ifindex_ = if_nametoindex("ci");
    setns(self, CLONE_NEWNET);
    close(self);
    close(target);
    if (sock_ < 0 || ifindex_ == 0) {
      *why = "AF_PACKET socket in nwfq-ct-inj failed";
      return false;
    }
    Ok("ip netns exec nwfq-ct-k conntrack -F");
    return true;
  }

  void Down() {
    if (sock_ >= 0) close(sock_);
    sock_ = -1;
    for (const char* ns : {"nwfq-ct-inj", "nwfq-ct-k", "nwfq-ct-sink"}) {
      Run(std::string("ip netns del ") + ns);
    }
  }

  void Flush() { Ok("ip netns exec nwfq-ct-k conntrack -F"); }

  // A sysctl of the conntrack namespace (its own netns copy; the root's is not touched).
  bool SetSysctl(const std::string& name, const std::string& value) {
    return Ok("ip netns exec nwfq-ct-k sysctl -qw " + name + "=" + value);
  }

  // `l4`: the transport bytes to send instead of the ones rebuilt from `p` (SCTP chunks).
  // `rfc_udplite`: a UDP-Lite checksum as RFC 3828 makes it (see PseudoProto).
  bool Send(const PacketFacts& p, const std::vector<uint8_t>& l4 = {}, bool rfc_udplite = false) {
    return SendIp(p.flow.family, l4.empty()           ? IpPacket(p)
                                 : p.flow.family == 6 ? Ipv6(p.flow, l4, rfc_udplite)
                                                      : Ipv4(p.flow, l4, rfc_udplite));
  }
  // An IP packet as given, in an Ethernet frame to the conntrack namespace.
  bool SendIp(uint8_t family, const std::vector<uint8_t>& ip) {
    std::vector<uint8_t> frame(14, 0);
    std::memcpy(frame.data(), dst_mac_.data(), 6);
    const uint8_t src_mac[6] = {0x02, 0, 0, 0, 0x06, 0x02};
    std::memcpy(frame.data() + 6, src_mac, 6);
    frame[12] = family == 6 ? 0x86 : 0x08;
    frame[13] = family == 6 ? 0xdd : 0x00;
    frame.insert(frame.end(), ip.begin(), ip.end());
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = static_cast<int>(ifindex_);
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, dst_mac_.data(), 6);
    ssize_t n =
        sendto(sock_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    return n == static_cast<ssize_t>(frame.size());
  }

  std::map<std::string, long> Counters() {
    std::map<std::string, long> c;
    std::istringstream in(
        Run("ip netns exec nwfq-ct-k iptables -t mangle -L PREROUTING -v -x -n") +
        Run("ip netns exec nwfq-ct-k ip6tables -t mangle -L PREROUTING -v -x -n"));
    std::string line;
    while (std::getline(in, line)) {
      size_t at = line.find("/* ");
      if (at == std::string::npos) continue;
      std::string name = line.substr(at + 3, line.find(" */") - at - 3);
      c[name] += std::stol(line);
    }
    return c;
  }

  // Lines of `conntrack -L -o extended` for the lab's addresses. Its closing message goes to
  // stderr, unbuffered, while the entries leave through a pipe in 4 KB blocks: merged, the
  // message landed inside an entry once the table outgrew 4 KB, and that entry's line was
  // not found. So stderr is discarded.
  std::string Table() {
    return Run("ip netns exec nwfq-ct-k sh -c 'conntrack -L -o extended 2>/dev/null'");
  }

 private:
  int sock_ = -1;
  unsigned ifindex_ = 0;
  std::string ck_mac_;
  std::array<uint8_t, 6> dst_mac_{};
};

// What one packet looked like to a tracker.
struct Seen {
  std::string ctstate;  // NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED
  std::string ctdir;    // ORIGINAL, REPLY or "" (no conntrack)
  std::string conn;     // "<proto state> [ASSURED] [UNREPLIED]" or "none"
  // Whole seconds left on the connection's timer after the packet (-1: no entry): the
  // kernel's from `conntrack -L`, ours from ConnInfo::expires_in. Compares the timeout each
  // packet chose (per state, after retransmissions, unacknowledged data, a zero window, a
  // run-time change) and which packets refresh it at all.
  int64_t timeout = -1;
  // Ours is taken as it stood when `conntrack -L` had returned, both rounded down: timers
  // within kTimeoutSlack seconds of each other agree (a slow machine may take a while to
  // run the command). The closest distinct default timeouts differ by 7 s (SCTP's 3 and
  // 10 s, conntrack/timeouts.h).
  static constexpr int64_t kTimeoutSlack = 2;
  bool operator==(const Seen& o) const {
    return ctstate == o.ctstate && ctdir == o.ctdir && conn == o.conn &&
           (timeout < 0) == (o.timeout < 0) && std::abs(timeout - o.timeout) <= kTimeoutSlack;
  }
};
inline std::ostream& operator<<(std::ostream& os, const Seen& s) {
  os << s.ctstate << "/" << (s.ctdir.empty() ? "-" : s.ctdir) << " {" << s.conn;
  if (s.timeout >= 0) os << ", " << s.timeout << " s left";
  return os << "}";
}

// The kernel's entry for the flow of `p` (both directions), summarised like ours into
// `seen->conn` and `seen->timeout`.
inline void KernelConn(const std::string& table, const PacketFacts& p, Seen* seen) {
  seen->conn = "none";
  seen->timeout = -1;
  const FlowFacts& f = p.icmp_error ? p.inner : p.flow;
  auto ip = [&](const std::array<uint8_t, 16>& a) {
    char b[INET6_ADDRSTRLEN];
    inet_ntop(f.family == 6 ? AF_INET6 : AF_INET, a.data(), b, sizeof b);
    return std::string(b) + " ";
  };
  std::istringstream in(table);
  std::string line;
  while (std::getline(in, line)) {
    // The flow's own address pair and ports, each followed by its separator: "src=A dst=B "
    // alone would also take an entry of B with another host, "dport=25" one of port 2500.
    if (line.find("src=" + ip(f.src) + "dst=" + ip(f.dst)) == std::string::npos &&
        line.find("src=" + ip(f.dst) + "dst=" + ip(f.src)) == std::string::npos) {
      continue;
    }
    // "ipv4 2 udp 17 29 src=...": the fourth field is the protocol number, the fifth the
    // seconds left on the timer.
    std::istringstream fields(line);
    std::string l3, l3num, l4name, l4num;
    int64_t timeout = -1;
    fields >> l3 >> l3num >> l4name >> l4num >> timeout;
    if ((f.family == 6) != (l3 == "ipv6")) continue;
    if (l4num != std::to_string(f.l4proto)) continue;
    const bool ports_in_tuple =
        f.l4proto == 6 || f.l4proto == 17 || f.l4proto == 136 || f.l4proto == 132;
    if (ports_in_tuple) {
      std::string ports =
          "sport=" + std::to_string(f.sport) + " dport=" + std::to_string(f.dport) + " ";
      std::string rports =
          "sport=" + std::to_string(f.dport) + " dport=" + std::to_string(f.sport) + " ";
      if (line.find(ports) == std::string::npos && line.find(rports) == std::string::npos) continue;
    } else if ((f.l4proto == 1 || f.l4proto == 58) &&
               line.find("id=" + std::to_string(f.icmp_id) + " ") == std::string::npos) {
      continue;
    }
    std::string out;
    if (f.l4proto == 6) {
      for (const char* s : {"SYN_SENT2", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
                            "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"}) {
        if (line.find(std::string(" ") + s + " ") != std::string::npos) {
          out = s;
          break;
        }
      }
    }
    if (f.l4proto == 132) {
      for (const char* s :
           {"CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED", "SHUTDOWN_SENT",
            "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT"}) {
        if (line.find(std::string(" ") + s + " ") != std::string::npos) {
          out = s;
          break;
        }
      }
    }
    if (line.find("[ASSURED]") != std::string::npos) out += " ASSURED";
    if (line.find("[UNREPLIED]") != std::string::npos) out += " UNREPLIED";
    seen->conn = out.empty() ? "tracked" : out;
    seen->timeout = timeout;
    return;
  }
}

// `read_at`: when the kernel's figures were read; our timer is given as it stood then.
inline void OurConn(const Table& t, const PacketFacts& p, Nanos now, Nanos read_at, Seen* seen) {
  seen->conn = "none";
  seen->timeout = -1;
  std::optional<ConnInfo> c = t.Lookup(p.icmp_error ? p.inner : p.flow, now);
  if (!c) return;
  std::string out(c->state_name);
  if (c->assured) out += " ASSURED";
  if (!c->seen_reply) out += " UNREPLIED";
  seen->conn = out.empty() ? "tracked" : out;
  const Nanos left = c->expires_in - (read_at - now);
  seen->timeout = left > 0 ? left / kNanosPerSecond : 0;
}

inline std::string StateName(State s) {
  switch (s) {
    case State::kNew:
      return "NEW";
    case State::kEstablished:
      return "ESTABLISHED";
    case State::kRelated:
      return "RELATED";
    case State::kInvalid:
      return "INVALID";
    case State::kUntracked:
      return "UNTRACKED";
  }
  return "?";
}

// Sends `p` through the kernel lab and through `ours`; what each made of it.
inline std::pair<Seen, Seen> Observe(KernelLab& kernel_lab, Table& ours,
                                     const TimeoutPolicy& timeouts, Nanos now, const PacketFacts& p,
                                     const std::vector<uint8_t>& l4 = {}) {
  auto before = kernel_lab.Counters();
  Seen kernel;
  if (!kernel_lab.Send(p, l4)) {
    kernel.ctstate = "send failed";
    return {kernel, kernel};
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  auto after = kernel_lab.Counters();
  for (const char* s : {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"}) {
    if (after["st_" + std::string(s)] > before["st_" + std::string(s)]) kernel.ctstate = s;
  }
  for (const char* d : {"ORIGINAL", "REPLY"}) {
    if (after["dir_" + std::string(d)] > before["dir_" + std::string(d)]) kernel.ctdir = d;
  }
  KernelConn(kernel_lab.Table(), p, &kernel);
  const Nanos read_at = MonotonicClock().Now();

  // Every other packet the batched way (Engine::DecideBatch: Probe, the prefetch stages'
  // slot hint, Track with the probe, i.e. the short hit paths), the others as Engine::Decide
  // and nwfqd track them (plain Track): both ways meet the kernel, on one table.
  static unsigned observed = 0;
  TrackResult r;
  if (observed++ % 2 == 0) {
    FlowProbe probe = ours.Probe(p);
    ours.PrefetchIndex(probe);
    ours.PrefetchEntry(probe);
    ours.PrefetchRecord(probe);
    r = ours.Track(p, probe, timeouts, now);
  } else {
    r = ours.Track(p, timeouts, now);
  }
  ours.Confirm(r, now);  // the lab drops nothing
  Seen mine;
  mine.ctstate = StateName(r.state);
  if (r.state != State::kInvalid && r.state != State::kUntracked) {
    mine.ctdir = r.dir == Dir::kOriginal ? "ORIGINAL" : "REPLY";
  }
  OurConn(ours, p, now, read_at, &mine);
  return {kernel, mine};
}

// Skips the calling test unless root and the tools are there.
inline bool LabPrerequisites(std::string* why) {
  if (geteuid() != 0) {
    *why = "needs root (network namespaces)";
    return false;
  }
  for (const char* tool : {"ip", "iptables", "ip6tables", "conntrack"}) {
    if (!Ok(std::string("which ") + tool)) {
      *why = std::string(tool) + " not installed (tools/install-deps.sh lists it)";
      return false;
    }
  }
  return true;
}

// The prerequisites, then the lab: false (the lab torn down) with the reason to skip on.
inline bool StartLab(KernelLab& kernel_lab, std::string* why) {
  if (!LabPrerequisites(why)) return false;
  if (kernel_lab.Up(why)) return true;
  kernel_lab.Down();
  *why = "kernel lab unavailable: " + *why;
  return false;
}

}  // namespace nwfq::ct::lab
