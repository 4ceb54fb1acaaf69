#include "tests/testing/packet_builder.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>

namespace nwfq::testing {
namespace {

void Put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(static_cast<uint8_t>(x >> 8));
  v.push_back(static_cast<uint8_t>(x));
}
void Put32(std::vector<uint8_t>& v, uint32_t x) {
  Put16(v, static_cast<uint16_t>(x >> 16));
  Put16(v, static_cast<uint16_t>(x));
}
void Set16(std::vector<uint8_t>& v, size_t at, uint16_t x) {
  v[at] = static_cast<uint8_t>(x >> 8);
  v[at + 1] = static_cast<uint8_t>(x);
}

uint32_t Sum(const std::vector<uint8_t>& v, uint32_t s = 0) {
  for (size_t i = 0; i + 1 < v.size(); i += 2) s += uint32_t{v[i]} << 8 | v[i + 1];
  if (v.size() % 2) s += uint32_t{v.back()} << 8;
  return s;
}
uint16_t Csum(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

std::vector<uint8_t> ParseIp(const std::string& s, int family) {
  std::vector<uint8_t> out(family == 4 ? 4 : 16);
  if (inet_pton(family == 4 ? AF_INET : AF_INET6, s.c_str(), out.data()) != 1) {
    std::fprintf(stderr, "PacketBuilder: bad address %s\n", s.c_str());
    std::abort();
  }
  return out;
}

}  // namespace

uint32_t Crc32c(const std::vector<uint8_t>& bytes) {
  uint32_t crc = 0xffffffffu;
  for (uint8_t b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::vector<uint8_t> SctpChunk(uint8_t type, uint8_t flags, std::vector<uint8_t> body) {
  std::vector<uint8_t> c = {type, flags, 0, 0};
  Set16(c, 2, static_cast<uint16_t>(4 + body.size()));
  c.insert(c.end(), body.begin(), body.end());
  c.resize((c.size() + 3) & ~size_t{3}, 0);
  return c;
}

std::vector<uint8_t> SctpInitChunk(uint8_t type, uint32_t tag) {
  const uint8_t t[4] = {static_cast<uint8_t>(tag >> 24), static_cast<uint8_t>(tag >> 16),
                        static_cast<uint8_t>(tag >> 8), static_cast<uint8_t>(tag)};
  // initiate tag, a_rwnd 106496, 10 outbound / 65535 inbound streams, initial TSN = tag.
  return SctpChunk(
      type, 0, {t[0], t[1], t[2], t[3], 0, 1, 0xa0, 0, 0, 10, 0xff, 0xff, t[0], t[1], t[2], t[3]});
}

Mac ParseMac(const std::string& s) {
  Mac m{};
  unsigned b[6];
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
    std::abort();
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(b[i]);
  return m;
}

PacketBuilder& PacketBuilder::Eth(const Mac& src, const Mac& dst) {
  src_mac_ = src;
  dst_mac_ = dst;
  return *this;
}
PacketBuilder& PacketBuilder::Vlan(uint16_t id, uint16_t tpid) {
  vlans_.push_back({tpid, id});
  return *this;
}
PacketBuilder& PacketBuilder::EtherType(uint16_t type) {
  ethertype_ = type;
  return *this;
}
PacketBuilder& PacketBuilder::Ipv4(const std::string& src, const std::string& dst) {
  l3_ = L3::kIpv4;
  src_ip_ = ParseIp(src, 4);
  dst_ip_ = ParseIp(dst, 4);
  ethertype_ = 0x0800;
  return *this;
}
PacketBuilder& PacketBuilder::Ipv6(const std::string& src, const std::string& dst) {
  l3_ = L3::kIpv6;
  src_ip_ = ParseIp(src, 6);
  dst_ip_ = ParseIp(dst, 6);
  ethertype_ = 0x86dd;
  return *this;
}
PacketBuilder& PacketBuilder::Tos(uint8_t tos) {
  tos_ = tos;
  return *this;
}
PacketBuilder& PacketBuilder::Ttl(uint8_t ttl) {
  ttl_ = ttl;
  return *this;
}
PacketBuilder& PacketBuilder::IpId(uint16_t id) {
  ip_id_ = id;
  return *this;
}
PacketBuilder& PacketBuilder::Ipv4Options(std::vector<uint8_t> options) {
  while (options.size() % 4) options.push_back(0);
  ipv4_options_ = std::move(options);
  return *this;
}
PacketBuilder& PacketBuilder::Ipv6Ext(uint8_t type) {
  ipv6_ext_.push_back(type);
  return *this;
}
PacketBuilder& PacketBuilder::Fragment(uint16_t offset, uint16_t len, bool more_fragments) {
  fragment_ = true;
  frag_offset_ = offset;
  frag_len_ = len;
  frag_mf_ = more_fragments;
  return *this;
}
PacketBuilder& PacketBuilder::Tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq,
                                  uint32_t ack, uint16_t window) {
  proto_ = 6;
  sport_ = sport;
  dport_ = dport;
  tcp_flags_ = flags;
  seq_ = seq;
  ack_ = ack;
  window_ = window;
  return *this;
}
PacketBuilder& PacketBuilder::TcpOptions(std::vector<uint8_t> options) {
  while (options.size() % 4) options.push_back(0);
  tcp_options_ = std::move(options);
  return *this;
}
PacketBuilder& PacketBuilder::Udp(uint16_t sport, uint16_t dport) {
  proto_ = 17;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::Udplite(uint16_t sport, uint16_t dport) {
  proto_ = 136;
  sport_ = sport;
  dport_ = dport;
  return *this;
}
PacketBuilder& PacketBuilder::Sctp(uint16_t sport, uint16_t dport, uint32_t vtag, uint8_t chunk) {
  proto_ = 132;
  sport_ = sport;
  dport_ = dport;
  vtag_ = vtag;
  chunk_ = chunk;
  return *this;
}
PacketBuilder& PacketBuilder::SctpChunks(std::vector<uint8_t> chunks) {
  sctp_chunks_ = std::move(chunks);
  return *this;
}
PacketBuilder& PacketBuilder::Icmp(uint8_t type, uint8_t code, uint16_t id, uint16_t seq) {
  proto_ = 1;
  icmp_type_ = type;
  icmp_code_ = code;
  icmp_id_ = id;
  icmp_seq_ = seq;
  return *this;
}
PacketBuilder& PacketBuilder::Icmpv6(uint8_t type, uint8_t code, uint16_t id, uint16_t seq) {
  proto_ = 58;
  icmp_type_ = type;
  icmp_code_ = code;
  icmp_id_ = id;
  icmp_seq_ = seq;
  return *this;
}
PacketBuilder& PacketBuilder::IcmpError(uint8_t type, uint8_t code,
                                        const std::vector<uint8_t>& quoted) {
  proto_ = l3_ == L3::kIpv6 ? 58 : 1;
  icmp_type_ = type;
  icmp_code_ = code;
  icmp_id_ = 0;
  icmp_seq_ = 0;
  payload_ = quoted;
  return *this;
}
PacketBuilder& PacketBuilder::Esp(uint32_t spi) {
  proto_ = 50;
  spi_ = spi;
  return *this;
}
PacketBuilder& PacketBuilder::Ah(uint32_t spi) {
  proto_ = 51;
  spi_ = spi;
  return *this;
}
PacketBuilder& PacketBuilder::Igmp(uint8_t type) {
  proto_ = 2;
  icmp_type_ = type;
  return *this;
}
PacketBuilder& PacketBuilder::Payload(std::vector<uint8_t> bytes) {
  payload_ = std::move(bytes);
  return *this;
}
PacketBuilder& PacketBuilder::Payload(size_t n, uint8_t fill) {
  payload_.assign(n, fill);
  return *this;
}
PacketBuilder& PacketBuilder::Arp(uint16_t opcode, const Mac& sha, const std::string& spa,
                                  const Mac& tha, const std::string& tpa, uint16_t ethertype) {
  l3_ = L3::kArp;
  ethertype_ = ethertype;
  raw_.clear();
  Put16(raw_, 1);
  Put16(raw_, 0x0800);
  raw_.push_back(6);
  raw_.push_back(4);
  Put16(raw_, opcode);
  raw_.insert(raw_.end(), sha.begin(), sha.end());
  auto s = ParseIp(spa, 4);
  raw_.insert(raw_.end(), s.begin(), s.end());
  raw_.insert(raw_.end(), tha.begin(), tha.end());
  auto t = ParseIp(tpa, 4);
  raw_.insert(raw_.end(), t.begin(), t.end());
  return *this;
}
PacketBuilder& PacketBuilder::Raw(std::vector<uint8_t> bytes) {
  l3_ = L3::kRaw;
  raw_ = std::move(bytes);
  return *this;
}
PacketBuilder& PacketBuilder::CorruptChecksum() {
  corrupt_ = true;
  return *this;
}
PacketBuilder& PacketBuilder::Truncate(size_t n) {
  truncate_ = n;
  return *this;
}

std::vector<uint8_t> PacketBuilder::BuildTransport(const std::vector<uint8_t>& src,
                                                   const std::vector<uint8_t>& dst) const {
  std::vector<uint8_t> t;
  size_t csum_at = SIZE_MAX;
  switch (proto_) {
    case 6:
      Put16(t, sport_);
      Put16(t, dport_);
      Put32(t, seq_);
      Put32(t, ack_);
      t.push_back(static_cast<uint8_t>((20 + tcp_options_.size()) / 4 << 4));
      t.push_back(tcp_flags_);
      Put16(t, window_);
      Put16(t, 0);
      Put16(t, 0);
      t.insert(t.end(), tcp_options_.begin(), tcp_options_.end());
      csum_at = 16;
      break;
    case 17:
    case 136:
      Put16(t, sport_);
      Put16(t, dport_);
      Put16(t, static_cast<uint16_t>(proto_ == 17 ? 8 + payload_.size() : 0));
      Put16(t, 0);
      csum_at = 6;
      break;
    case 132:
      Put16(t, sport_);
      Put16(t, dport_);
      Put32(t, vtag_);
      Put32(t, 0);
      if (!sctp_chunks_.empty()) {
        t.insert(t.end(), sctp_chunks_.begin(), sctp_chunks_.end());
      } else if (chunk_ == 1 || chunk_ == 2) {  // INIT / INIT_ACK with their header
        const std::vector<uint8_t> c = SctpInitChunk(chunk_, 0x0a0b0c0d);
        t.insert(t.end(), c.begin(), c.end());
      } else {
        t.push_back(chunk_);
        t.push_back(0);
        Put16(t, 4);
      }
      break;
    case 1:
    case 58:
      t.push_back(icmp_type_);
      t.push_back(icmp_code_);
      Put16(t, 0);
      Put16(t, icmp_id_);
      Put16(t, icmp_seq_);
      csum_at = 2;
      break;
    case 50:
      Put32(t, spi_);
      Put32(t, 1);
      break;
    case 51:
      t.push_back(59);
      t.push_back(4);  // (len + 2) * 4 = 24 bytes
      Put16(t, 0);
      Put32(t, spi_);
      Put32(t, 1);
      for (int i = 0; i < 12; ++i) t.push_back(0);
      break;
    case 2:
      t.push_back(icmp_type_);
      t.push_back(0);
      Put16(t, 0);
      Put32(t, 0);
      csum_at = 2;
      break;
    default:
      break;
  }
  t.insert(t.end(), payload_.begin(), payload_.end());
  if (proto_ == 132) {
    const uint32_t c = Crc32c(t);
    t[8] = static_cast<uint8_t>(c);
    t[9] = static_cast<uint8_t>(c >> 8);
    t[10] = static_cast<uint8_t>(c >> 16);
    t[11] = static_cast<uint8_t>(c >> 24);
    if (corrupt_) t[8] ^= 1;
  } else if (csum_at != SIZE_MAX) {
    uint32_t s = 0;
    const bool pseudo = proto_ != 1 && proto_ != 2;
    if (pseudo) {
      s = Sum(src, s);
      s = Sum(dst, s);
      s += proto_;
      s += static_cast<uint32_t>(t.size());
    }
    uint16_t c = Csum(Sum(t, s));
    if (c == 0 && (proto_ == 17 || proto_ == 136)) c = 0xffff;
    if (corrupt_) c = static_cast<uint16_t>(c + 1);
    Set16(t, csum_at, c);
  }
  return t;
}

std::vector<uint8_t> PacketBuilder::BuildL3() const {
  std::vector<uint8_t> out;
  if (l3_ == L3::kArp || l3_ == L3::kRaw) return raw_;
  std::vector<uint8_t> t = BuildTransport(src_ip_, dst_ip_);
  if (fragment_) {
    const size_t end = std::min<size_t>(t.size(), size_t{frag_offset_} + frag_len_);
    t = std::vector<uint8_t>(t.begin() + std::min<size_t>(frag_offset_, t.size()),
                             t.begin() + static_cast<std::ptrdiff_t>(end));
  }
  if (l3_ == L3::kIpv4) {
    const size_t ihl = 20 + ipv4_options_.size();
    out.push_back(static_cast<uint8_t>(0x40 | ihl / 4));
    out.push_back(tos_);
    Put16(out, static_cast<uint16_t>(ihl + t.size()));
    Put16(out, ip_id_);
    uint16_t frag = 0;
    if (fragment_) frag = static_cast<uint16_t>((frag_mf_ ? 0x2000 : 0) | (frag_offset_ / 8));
    Put16(out, frag);
    out.push_back(ttl_);
    out.push_back(proto_);
    Put16(out, 0);
    out.insert(out.end(), src_ip_.begin(), src_ip_.end());
    out.insert(out.end(), dst_ip_.begin(), dst_ip_.end());
    out.insert(out.end(), ipv4_options_.begin(), ipv4_options_.end());
    Set16(out, 10, Csum(Sum(out)));
  } else {
    std::vector<uint8_t> ext;
    std::vector<uint8_t> chain(ipv6_ext_.begin(), ipv6_ext_.end());
    if (fragment_) chain.push_back(44);
    const uint8_t first = chain.empty() ? proto_ : chain[0];
    for (size_t i = 0; i < chain.size(); ++i) {
      const uint8_t next = i + 1 < chain.size() ? chain[i + 1] : proto_;
      ext.push_back(next);
      if (chain[i] == 44) {
        ext.push_back(0);
        Put16(ext, static_cast<uint16_t>((frag_offset_ & 0xfff8) | (frag_mf_ ? 1 : 0)));
        Put32(ext, ip_id_);
      } else {
        ext.push_back(0);  // 8 bytes
        ext.push_back(1);  // PadN
        ext.push_back(4);
        for (int k = 0; k < 4; ++k) ext.push_back(0);
      }
    }
    out.push_back(static_cast<uint8_t>(0x60 | tos_ >> 4));
    out.push_back(static_cast<uint8_t>(tos_ << 4));
    Put16(out, 0);
    Put16(out, static_cast<uint16_t>(ext.size() + t.size()));
    out.push_back(first);
    out.push_back(ttl_);
    out.insert(out.end(), src_ip_.begin(), src_ip_.end());
    out.insert(out.end(), dst_ip_.begin(), dst_ip_.end());
    out.insert(out.end(), ext.begin(), ext.end());
  }
  out.insert(out.end(), t.begin(), t.end());
  return out;
}

std::vector<uint8_t> PacketBuilder::BuildNetwork() const {
  std::vector<uint8_t> out = BuildL3();
  if (out.size() > truncate_) out.resize(truncate_);
  return out;
}

std::vector<uint8_t> PacketBuilder::Build() const {
  std::vector<uint8_t> out(dst_mac_.begin(), dst_mac_.end());
  out.insert(out.end(), src_mac_.begin(), src_mac_.end());
  for (const auto& [tpid, id] : vlans_) {
    Put16(out, tpid);
    Put16(out, id);
  }
  Put16(out, ethertype_);
  std::vector<uint8_t> l3 = BuildL3();
  out.insert(out.end(), l3.begin(), l3.end());
  if (out.size() > truncate_) out.resize(truncate_);
  return out;
}

}  // namespace nwfq::testing
