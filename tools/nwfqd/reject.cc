#include "tools/nwfqd/reject.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/packet_view.h"

namespace nwfq::nwfqd {
namespace {

using engine::PacketView;

constexpr size_t kIcmp4QuoteMax = 576 - 20 - 8;   // icmp_send: the reply fits in 576 bytes
constexpr size_t kIcmp6QuoteMax = 1280 - 40 - 8;  // icmpv6_send: the IPv6 minimum MTU
constexpr uint8_t kDefaultHopLimit = 64;

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}
uint32_t Sum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (; n >= 2; p += 2, n -= 2) sum += uint32_t{p[0]} << 8 | p[1];
  if (n) sum += uint32_t{p[0]} << 8;
  return sum;
}
uint16_t Checksum(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

bool NoReplyDestination(const PacketView& v) {
  // icmp_send / nf_send_reset do not answer packets to broadcast or multicast addresses,
  // nor packets from an unspecified or multicast source (the reply could not be routed).
  if (v.family == 4) {
    const uint8_t d0 = v.dst_ip[0], s0 = v.src_ip[0];
    const bool dst_bcast =
        v.dst_ip[0] == 255 && v.dst_ip[1] == 255 && v.dst_ip[2] == 255 && v.dst_ip[3] == 255;
    const bool src_zero = (v.src_ip[0] | v.src_ip[1] | v.src_ip[2] | v.src_ip[3]) == 0;
    return dst_bcast || (d0 >= 224 && d0 < 240) || src_zero || (s0 >= 224 && s0 < 240);
  }
  bool src_zero = true;
  for (int i = 0; i < 16; ++i) src_zero = src_zero && v.src_ip[i] == 0;
  return v.dst_ip[0] == 0xff || v.src_ip[0] == 0xff || src_zero;
}

// RST as nf_reject_ip(6)_tcphdr_put builds it, behind an IP header from the original
// destination to the original source.
void BuildRst(const PacketView& v, RejectReply& r) {
  const bool v4 = v.family == 4;
  const size_t ip = v4 ? 20 : 40;
  r.bytes.assign(ip + 20, 0);
  uint8_t* h = r.bytes.data();
  if (v4) {
    h[0] = 0x45;
    Put16(h + 2, 40);
    Put16(h + 6, 0x4000);  // DF
    h[8] = kDefaultHopLimit;
    h[9] = engine::kProtoTcp;
    std::memcpy(h + 12, v.dst_ip.data(), 4);
    std::memcpy(h + 16, v.src_ip.data(), 4);
    Put16(h + 10, Checksum(Sum(h, 20)));
  } else {
    h[0] = 0x60;
    Put16(h + 4, 20);
    h[6] = engine::kProtoTcp;
    h[7] = kDefaultHopLimit;
    std::memcpy(h + 8, v.dst_ip.data(), 16);
    std::memcpy(h + 24, v.src_ip.data(), 16);
  }
  uint8_t* t = h + ip;
  Put16(t, v.dport);
  Put16(t + 2, v.sport);
  uint8_t flags = ct::kTcpRst;
  if (v.tcp_flags & ct::kTcpAck) {
    Put32(t + 4, v.tcp_ack);
  } else {
    const uint32_t ack = v.tcp_seq + ((v.tcp_flags & ct::kTcpSyn) ? 1 : 0) +
                         ((v.tcp_flags & ct::kTcpFin) ? 1 : 0) + v.payload_len;
    Put32(t + 8, ack);
    flags |= ct::kTcpAck;
  }
  t[12] = 5 << 4;
  t[13] = flags;
  const size_t alen = v4 ? 4 : 16;
  uint32_t pseudo = Sum(v.dst_ip.data(), alen);
  pseudo = Sum(v.src_ip.data(), alen, pseudo);
  pseudo += engine::kProtoTcp + 20;
  Put16(t + 16, Checksum(Sum(t, 20, pseudo)));
  r.kind = RejectReply::Kind::kRaw;
  r.family = v.family;
  r.dst = v.src_ip;
}

}  // namespace

RejectReply BuildReject(std::span<const uint8_t> packet, uint32_t wire_len, bool to_host,
                        TcpReject tcp) {
  RejectReply r;
  if (packet.size() < 1) {
    r.why_none = "empty packet";
    return r;
  }
  const uint16_t ethertype = (packet[0] >> 4) == 6 ? engine::kEtherIpv6 : engine::kEtherIpv4;
  engine::ParseOptions opt;
  opt.verify_checksums = false;
  opt.wire_len = std::max<uint32_t>(wire_len, static_cast<uint32_t>(packet.size()));
  const PacketView v = engine::ParseNetwork(packet, ethertype, opt);
  if (v.malformed != engine::Malformed::kNone || v.family == 0) {
    r.why_none = "malformed packet";
    return r;
  }
  if (v.fragment && v.frag_offset != 0) {
    r.why_none = "not the first fragment";
    return r;
  }
  if (NoReplyDestination(v)) {
    r.why_none = "broadcast, multicast or unspecified address";
    return r;
  }
  if (v.icmp_error || (v.l4proto == engine::kProtoIcmpv6 && v.icmp_type < 128)) {
    r.why_none = "an ICMP error is never answered with one";
    return r;
  }
  if (v.l4proto == engine::kProtoTcp && tcp == TcpReject::kRst) {
    if (!v.has_l4 || (v.tcp_flags & ct::kTcpRst)) {
      r.why_none = "a RST is never answered with one";
      return r;
    }
    BuildRst(v, r);
    return r;
  }
  // ICMP / ICMPv6 port unreachable quoting the packet from its IP header on.
  const bool v4 = v.family == 4;
  const size_t quote = std::min(packet.size(), v4 ? kIcmp4QuoteMax : kIcmp6QuoteMax);
  r.bytes.assign(8 + quote, 0);
  r.bytes[0] = v4 ? 3 : 1;  // destination unreachable
  r.bytes[1] = v4 ? 3 : 4;  // port unreachable
  std::memcpy(r.bytes.data() + 8, packet.data(), quote);
  if (v4) {
    Put16(r.bytes.data() + 2, Checksum(Sum(r.bytes.data(), r.bytes.size())));
  }  // ICMPv6: the kernel computes the checksum on raw ICMPv6 sockets (RFC 3542)
  r.kind = RejectReply::Kind::kIcmp;
  r.family = v.family;
  r.dst = v.src_ip;
  r.use_src = to_host;  // addressed to the host: reply from that address, as icmp_send does
  r.src = v.dst_ip;
  return r;
}

absl::StatusOr<std::unique_ptr<Rejecter>> Rejecter::Open(TcpReject tcp) {
  std::unique_ptr<Rejecter> r(new Rejecter(tcp));
  r->icmp4_ = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  const int err4 = errno;
  r->icmp6_ = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  r->raw4_ = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);   // IP_HDRINCL implied
  r->raw6_ = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);  // IPV6_HDRINCL implied
  if (r->icmp4_ < 0 && r->icmp6_ < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("raw sockets for reject: ", strerror(err4), " (CAP_NET_RAW needed)"));
  }
  return r;
}

Rejecter::~Rejecter() {
  for (int fd : {icmp4_, icmp6_, raw4_, raw6_}) {
    if (fd >= 0) close(fd);
  }
}

bool Rejecter::Reject(std::span<const uint8_t> packet, uint32_t wire_len, bool to_host) {
  const RejectReply r = BuildReject(packet, wire_len, to_host, tcp_);
  if (r.kind == RejectReply::Kind::kNone) {
    counters_.suppressed.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const bool v4 = r.family == 4;
  sockaddr_storage ss = {};
  socklen_t sl;
  if (v4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, r.dst.data(), 4);
    sl = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, r.dst.data(), 16);
    sl = sizeof(sockaddr_in6);
  }
  const int fd = r.kind == RejectReply::Kind::kRaw ? (v4 ? raw4_ : raw6_) : (v4 ? icmp4_ : icmp6_);
  iovec iov = {const_cast<uint8_t*>(r.bytes.data()), r.bytes.size()};
  msghdr msg = {};
  msg.msg_name = &ss;
  msg.msg_namelen = sl;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  if (r.kind == RejectReply::Kind::kIcmp && r.use_src) {
    // Source address per message (the host's address the packet was sent to).
    msg.msg_control = control;
    cmsghdr* c = reinterpret_cast<cmsghdr*>(control);
    if (v4) {
      msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo pi = {};
      std::memcpy(&pi.ipi_spec_dst, r.src.data(), 4);
      std::memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    } else {
      msg.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo pi = {};
      std::memcpy(&pi.ipi6_addr, r.src.data(), 16);
      std::memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    }
  }
  if (fd < 0 || sendmsg(fd, &msg, MSG_DONTWAIT) < 0) {
    counters_.send_errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  (r.kind == RejectReply::Kind::kRaw ? counters_.rst : counters_.icmp)
      .fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace nwfq::nwfqd
