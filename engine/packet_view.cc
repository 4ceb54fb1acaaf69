#include "engine/packet_view.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "conntrack/sctp.h"

namespace nwfq::engine {
namespace {

inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// Internet checksum (RFC 1071), 8 bytes at a time. The one's-complement sum is
// byte-order independent (section 2(B)) and may be accumulated in wider words with the
// carries added back (2(C)): words are loaded in native order and summed in a 128-bit
// accumulator (add + add-with-carry per word), whose high half is the count of carries.
// Every 16-bit lane thus holds bytes as they lie in memory; callers add header fields in
// the same representation (NetOrder16) and only compare the folded result with 0xffff,
// which is the same in either byte order.
using Acc128 = unsigned __int128;

inline uint64_t Load64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}
inline uint32_t Load32(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// A host-order 16-bit value as the native load of its network-order bytes would give it.
inline uint64_t NetOrder16(uint32_t x) {
  const uint16_t h = static_cast<uint16_t>(x);
  if constexpr (std::endian::native == std::endian::little) {
    return static_cast<uint16_t>(h << 8 | h >> 8);
  }
  return h;
}

// 64-bit one's-complement addition (end-around carry).
inline uint64_t AddEac(uint64_t a, uint64_t b) {
  a += b;
  return a + (a < b);
}

// Adds `n` bytes at `p` (`p` starts a 16-bit word of the checksummed data) to `acc`.
inline uint64_t SumBytes(const uint8_t* p, size_t n, uint64_t acc = 0) {
  Acc128 s0 = acc, s1 = 0;  // two chains: the adds of one 32-byte step overlap
  for (; n >= 32; p += 32, n -= 32) {
    s0 += Load64(p);
    s1 += Load64(p + 8);
    s0 += Load64(p + 16);
    s1 += Load64(p + 24);
  }
  for (; n >= 8; p += 8, n -= 8) s0 += Load64(p);
  // The tail, in whole 16-bit lanes (the lanes' positions in the word do not matter to
  // the sum, only which two bytes share a lane); an odd last byte pairs with a zero byte.
  if (n & 4) {
    s1 += Load32(p);
    p += 4;
  }
  if (n & 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    s1 += w;
    p += 2;
  }
  if (n & 1) {
    s1 += std::endian::native == std::endian::little ? uint64_t{p[0]} : uint64_t{p[0]} << 8;
  }
  const uint64_t a = AddEac(static_cast<uint64_t>(s0), static_cast<uint64_t>(s0 >> 64));
  const uint64_t b = AddEac(static_cast<uint64_t>(s1), static_cast<uint64_t>(s1 >> 64));
  return AddEac(a, b);
}

// True when the data summed into `acc` (checksum field included) verifies: the folded
// 16-bit sum is 0xffff.
inline bool ChecksumOk(uint64_t acc) {
  uint64_t s = (acc & 0xffffffffu) + (acc >> 32);  // <= 33 bits
  s = (s & 0xffff) + (s >> 16);                    // <= 18 bits
  s = (s & 0xffff) + (s >> 16);                    // <= 17 bits
  s = (s & 0xffff) + (s >> 16);
  return s == 0xffff;
}

// The IPv4/IPv6 pseudo header of a transport checksum over `len` bytes.
inline uint64_t PseudoHeaderSum(const PacketView& v, uint8_t proto, uint32_t len) {
  uint64_t acc = NetOrder16(proto) + NetOrder16(len >> 16) + NetOrder16(len & 0xffff);
  if (v.family == 4) return acc + Load32(v.src_ip.data()) + Load32(v.dst_ip.data());
  acc = AddEac(acc, Load64(v.src_ip.data()));
  acc = AddEac(acc, Load64(v.src_ip.data() + 8));
  acc = AddEac(acc, Load64(v.dst_ip.data()));
  return AddEac(acc, Load64(v.dst_ip.data() + 8));
}

// CRC32c (Castagnoli), as SCTP uses, bitwise: SCTP is rare enough not to need a table.
uint32_t Crc32c(const uint8_t* p, size_t n, size_t skip_at) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = (i >= skip_at && i < skip_at + 4) ? 0 : p[i];
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

bool IsIcmpError(uint8_t family, uint8_t type) {
  if (family == 4) return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
  return type >= 1 && type <= 4;
}

// Reads the start of a quoted packet (inside an ICMP error) into `f`. Best effort: the
// quote is often truncated; what cannot be read stays zero.
void ParseQuoted(const uint8_t* p, size_t n, uint8_t family, ct::FlowFacts& f) {
  f = ct::FlowFacts{};
  f.family = family;
  size_t l4 = 0;
  if (family == 4) {
    if (n < 20 || (p[0] >> 4) != 4) return;
    const size_t ihl = (p[0] & 0x0f) * 4u;
    f.l4proto = p[9];
    std::memcpy(f.src.data(), p + 12, 4);
    std::memcpy(f.dst.data(), p + 16, 4);
    l4 = ihl;
  } else {
    if (n < 40 || (p[0] >> 4) != 6) return;
    std::memcpy(f.src.data(), p + 8, 16);
    std::memcpy(f.dst.data(), p + 24, 16);
    uint8_t nh = p[6];
    size_t off = 40;
    for (int guard = 0; guard < 8; ++guard) {
      if (nh == 0 || nh == 43 || nh == 60 || nh == 51) {
        if (off + 2 > n) break;
        const size_t len = nh == 51 ? (p[off + 1] + 2u) * 4u : (p[off + 1] + 1u) * 8u;
        nh = p[off];
        off += len;
      } else if (nh == 44) {
        if (off + 8 > n) break;
        nh = p[off];
        off += 8;
      } else {
        break;
      }
    }
    f.l4proto = nh;
    l4 = off;
  }
  if (l4 >= n) return;
  const uint8_t* t = p + l4;
  const size_t tn = n - l4;
  switch (f.l4proto) {
    case kProtoTcp:
    case kProtoUdp:
    case kProtoUdplite:
    case kProtoSctp:
      if (tn >= 4) {
        f.sport = Be16(t);
        f.dport = Be16(t + 2);
      }
      break;
    case kProtoIcmp:
    case kProtoIcmpv6:
      if (tn >= 8) {
        f.icmp_type = t[0];
        f.icmp_code = t[1];
        f.icmp_id = Be16(t + 4);
      }
      break;
    case kProtoEsp:
      if (tn >= 4) f.spi = Be32(t);
      break;
    case kProtoAh:
      if (tn >= 8) f.spi = Be32(t + 4);
      break;
    default:
      break;
  }
}

void ParseTcpOptions(const uint8_t* p, size_t n, PacketView& v) {
  size_t i = 0;
  while (i < n) {
    const uint8_t kind = p[i];
    v.tcp_options[kind >> 3] |= static_cast<uint8_t>(1u << (kind & 7));
    if (kind == 0) break;
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= n) break;
    const uint8_t len = p[i + 1];
    if (len < 2 || i + len > n) break;
    if (kind == 3 && len == 3) v.tcp_wscale = p[i + 2];
    if (kind == 4 && len == 2) v.tcp_sack_perm = true;
    if (kind == 5 && len >= 10 && (len - 2) % 8 == 0 && !v.tcp_sack_present) {
      // As the kernel's tcp_sack(): the right edges of the first well-formed SACK option
      // (it returns after that one), kept when after the ACK or after the highest so far,
      // in sequence-space order.
      v.tcp_sack_edge = v.tcp_ack;
      v.tcp_sack_present = true;
      for (size_t b = i + 2; b + 8 <= i + len; b += 8) {
        const uint32_t right = Be32(p + b + 4);
        if (static_cast<int32_t>(right - v.tcp_sack_edge) > 0) v.tcp_sack_edge = right;
      }
    }
    i += len;
  }
}

// Transport header of an unfragmented packet or a first fragment. `p` = start of the
// transport header, `n` = bytes up to the end of the IP packet, `cap` = how many of them
// were captured (< n for a truncated copy: headers are read from the captured part,
// lengths come from `n`, checksums cannot be verified).
void ParseTransport(const uint8_t* p, size_t n, size_t cap, PacketView& v,
                    const ParseOptions& options) {
  const bool whole = !v.fragment;  // checksums only on complete datagrams
  const bool verify = options.verify_checksums && whole && cap == n;
  switch (v.l4proto) {
    case kProtoTcp: {
      if (cap < 20) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      const size_t doff = (p[12] >> 4) * 4u;
      if (doff < 20) {
        v.malformed = Malformed::kBadL4Header;
        return;
      }
      if (doff > n || doff > cap) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      v.sport = Be16(p);
      v.dport = Be16(p + 2);
      v.tcp_seq = Be32(p + 4);
      v.tcp_ack = Be32(p + 8);
      v.tcp_flags = p[13] & 0x3f;
      v.tcp_window = Be16(p + 14);
      v.tcp_no_options = doff == 20;
      ParseTcpOptions(p + 20, doff - 20, v);
      v.payload_len = static_cast<uint32_t>(n - doff);
      if (verify) {
        v.checksum_checked = true;
        v.bad_checksum =
            !ChecksumOk(SumBytes(p, n, PseudoHeaderSum(v, kProtoTcp, static_cast<uint32_t>(n))));
      }
      break;
    }
    case kProtoUdp:
    case kProtoUdplite: {
      if (cap < 8) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      v.sport = Be16(p);
      v.dport = Be16(p + 2);
      const uint16_t len = Be16(p + 4);
      v.payload_len = static_cast<uint32_t>(n - 8);
      if (v.l4proto == kProtoUdp && whole && (len < 8 || len > n)) {
        v.malformed = Malformed::kBadL4Header;
        return;
      }
      // UDP-Lite (conntrack's udplite_error): the field is the checksum coverage, 0 for
      // all or 8 up to the datagram's length; the checksum is mandatory.
      if (v.l4proto == kProtoUdplite && whole &&
          ((len != 0 && (len < 8 || len > n)) || Be16(p + 6) == 0)) {
        v.malformed = Malformed::kBadL4Header;
        return;
      }
      // A zero checksum means none (conntrack's udp_error, IPv6 included). UDP is summed
      // as nf_checksum does: over the whole IP payload, with that length in the pseudo
      // header, whatever the UDP length says (bytes after it make the packet INVALID, as
      // in the kernel: found by tests/conntrack/kernel_defrag_fidelity_test.cc). UDPLite:
      // over its checksum coverage, with 136 in the pseudo header as RFC 3828 says (the
      // kernel's conntrack uses 17: DIVERGENCES U1).
      if (verify && Be16(p + 6) != 0) {
        const size_t cover =
            v.l4proto == kProtoUdp || len == 0 || len < 8 || len > n ? n : size_t{len};
        v.checksum_checked = true;
        v.bad_checksum = !ChecksumOk(
            SumBytes(p, cover, PseudoHeaderSum(v, v.l4proto, static_cast<uint32_t>(n))));
      }
      break;
    }
    case kProtoSctp: {
      if (cap < 12) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      v.sport = Be16(p);
      v.dport = Be16(p + 2);
      v.sctp_vtag = Be32(p + 4);
      v.sctp = ct::WalkSctpChunks(p + 12, std::min(cap, n) - 12, n - 12);
      v.payload_len = static_cast<uint32_t>(n - 12);
      if (verify) {
        v.checksum_checked = true;
        const uint32_t want =
            uint32_t{p[8]} | uint32_t{p[9]} << 8 | uint32_t{p[10]} << 16 | uint32_t{p[11]} << 24;
        v.bad_checksum = Crc32c(p, n, 8) != want;
      }
      break;
    }
    case kProtoIcmp:
    case kProtoIcmpv6: {
      if (cap < 8) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      v.icmp_type = p[0];
      v.icmp_code = p[1];
      v.icmp_id = Be16(p + 4);
      v.payload_len = static_cast<uint32_t>(n - 8);
      if (IsIcmpError(v.family, v.icmp_type)) {
        v.icmp_error = true;
        ParseQuoted(p + 8, cap - 8, v.family, v.inner);
      }
      if (verify) {
        v.checksum_checked = true;
        const uint64_t seed = v.l4proto == kProtoIcmpv6
                                  ? PseudoHeaderSum(v, kProtoIcmpv6, static_cast<uint32_t>(n))
                                  : 0;
        v.bad_checksum = !ChecksumOk(SumBytes(p, n, seed));
      }
      break;
    }
    case kProtoEsp:
      if (cap < 8) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      v.spi = Be32(p);
      v.payload_len = static_cast<uint32_t>(n - 8);
      break;
    case kProtoAh:
      if (cap < 12) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      v.spi = Be32(p + 4);
      break;
    case kProtoIgmp:
      if (cap < 8) {
        v.malformed = Malformed::kTruncatedL4;
        return;
      }
      v.icmp_type = p[0];  // IGMP type, kept for --explain
      break;
    default:
      v.payload_len = static_cast<uint32_t>(n);
      break;
  }
  if (v.malformed == Malformed::kNone) v.has_l4 = true;
}

void ParseIpv4(const uint8_t* p, size_t n, PacketView& v, const ParseOptions& options) {
  if (n < 20) {
    v.malformed = Malformed::kTruncatedIpv4;
    return;
  }
  const size_t ihl = (p[0] & 0x0f) * 4u;
  const size_t total = Be16(p + 2);
  if ((p[0] >> 4) != 4 || ihl < 20 || total < ihl) {
    v.malformed = Malformed::kBadIpv4Header;
    return;
  }
  // A copy shorter than the IP length is malformed unless the caller says the packet on
  // the wire is whole (NFQUEUE copy range): then only the captured headers are parsed.
  if (ihl > n || (total > n && options.wire_len < total)) {
    v.malformed = Malformed::kTruncatedIpv4;
    return;
  }
  v.truncated = total > n;
  const size_t avail = v.truncated ? n : total;
  const uint64_t header_sum =
      ihl == 20 ? AddEac(AddEac(Load64(p), Load64(p + 8)), Load32(p + 16)) : SumBytes(p, ihl);
  if (!ChecksumOk(header_sum)) {
    v.malformed = Malformed::kBadIpv4Checksum;
    return;
  }
  // Options: walk them so a malformed option list is caught as the kernel's
  // ip_options_compile would (bad lengths).
  for (size_t i = 20; i < ihl;) {
    const uint8_t kind = p[i];
    if (kind == 0) break;
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= ihl || p[i + 1] < 2 || i + p[i + 1] > ihl) {
      v.malformed = Malformed::kBadIpv4Options;
      return;
    }
    i += p[i + 1];
  }
  v.family = 4;
  v.tos = p[1];
  v.ip_len = static_cast<uint32_t>(total);
  v.frag_id = Be16(p + 4);
  const uint16_t frag = Be16(p + 6);
  v.more_fragments = frag & 0x2000;
  v.frag_offset = static_cast<uint16_t>((frag & 0x1fff) * 8u);
  v.fragment = v.more_fragments || v.frag_offset != 0;
  v.l4proto = p[9];
  // Whole 16-byte stores (address in bytes [0, 4), zeros after): the 8- and 16-byte loads
  // that read the addresses right after parsing (ToPacketFacts, the checksum's pseudo
  // header, the cache key) are then forwarded from one store instead of waiting for a
  // 4-byte store and the view's zeroing to reach the cache (a store-forwarding stall).
  std::array<uint8_t, 16> a{};
  std::memcpy(a.data(), p + 12, 4);
  v.src_ip = a;
  std::memcpy(a.data(), p + 16, 4);
  v.dst_ip = a;
  v.l4_offset = static_cast<uint16_t>(v.l3_offset + ihl);
  if (v.frag_offset != 0) {
    v.payload_len = static_cast<uint32_t>(total - ihl);
    return;  // no transport header in a non-first fragment
  }
  ParseTransport(p + ihl, total - ihl, avail - ihl, v, options);
}

void ParseIpv6(const uint8_t* p, size_t n, PacketView& v, const ParseOptions& options) {
  if (n < 40) {
    v.malformed = Malformed::kTruncatedIpv6;
    return;
  }
  if ((p[0] >> 4) != 6) {
    v.malformed = Malformed::kBadIpv6Header;
    return;
  }
  const size_t total = 40u + Be16(p + 4);
  if (total > n && options.wire_len < total) {  // see ParseIpv4
    v.malformed = Malformed::kTruncatedIpv6;
    return;
  }
  v.truncated = total > n;
  const size_t avail = v.truncated ? n : total;
  v.family = 6;
  v.tos = static_cast<uint8_t>((p[0] & 0x0f) << 4 | p[1] >> 4);
  v.ip_len = static_cast<uint32_t>(total);
  std::memcpy(v.src_ip.data(), p + 8, 16);
  std::memcpy(v.dst_ip.data(), p + 24, 16);
  // Extension headers, skipped as the kernel's ipv6_skip_exthdr does (AH included, so the
  // transport protocol is what follows AH, for ip6tables -p and for conntrack alike).
  uint8_t nh = p[6];
  size_t off = 40;
  for (int guard = 0;; ++guard) {
    if (guard > 16) {
      v.malformed = Malformed::kBadIpv6ExtHeader;
      return;
    }
    if ((nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 44) && off + 8 <= total &&
        off + 8 > avail) {
      v.malformed = Malformed::kTruncatedIpv6;  // extension headers beyond the copy
      return;
    }
    if (nh == 0 || nh == 43 || nh == 60 || nh == 51) {
      if (off + 8 > total) {
        v.malformed = Malformed::kBadIpv6ExtHeader;
        return;
      }
      const size_t len = nh == 51 ? (p[off + 1] + 2u) * 4u : (p[off + 1] + 1u) * 8u;
      if (nh == 51) v.spi = Be32(p + off + 4);
      nh = p[off];
      off += len;
      if (off > total) {
        v.malformed = Malformed::kBadIpv6ExtHeader;
        return;
      }
    } else if (nh == 44) {
      if (off + 8 > total) {
        v.malformed = Malformed::kBadIpv6ExtHeader;
        return;
      }
      const uint16_t fo = Be16(p + off + 2);
      v.fragment = true;
      v.frag_offset = static_cast<uint16_t>(fo & 0xfff8);
      v.more_fragments = fo & 1;
      v.frag_id = Be32(p + off + 4);
      nh = p[off];
      off += 8;
      if (v.frag_offset != 0) break;
    } else {
      break;
    }
  }
  v.l4proto = nh;
  v.l4_offset = static_cast<uint16_t>(v.l3_offset + off);
  if (v.frag_offset != 0 || nh == 59) {
    v.payload_len = static_cast<uint32_t>(total - off);
    return;
  }
  ParseTransport(p + off, total - off, avail > off ? avail - off : 0, v, options);
}

void ParseArp(const uint8_t* p, size_t n, PacketView& v) {
  if (n < 8) {
    v.malformed = Malformed::kTruncatedArp;
    return;
  }
  v.is_arp = true;
  v.arp_hwtype = Be16(p);
  v.arp_ptype = Be16(p + 2);
  v.arp_opcode = Be16(p + 6);
  if (p[4] == 6 && p[5] == 4) {
    if (n < 28) {
      v.malformed = Malformed::kTruncatedArp;
      return;
    }
    v.arp_ipv4_eth = true;
    std::memcpy(v.arp_sha.data(), p + 8, 6);
    std::memcpy(v.arp_spa.data(), p + 14, 4);
    std::memcpy(v.arp_tha.data(), p + 18, 6);
    std::memcpy(v.arp_tpa.data(), p + 24, 4);
  }
}

// Configuration/TCN BPDU after the LLC header 42 42 03.
void ParseStp(const uint8_t* p, size_t n, PacketView& v) {
  if (n < 3 + 4) return;
  v.is_stp = true;
  const uint8_t* b = p + 3;
  const size_t bn = n - 3;
  v.stp_type = b[3];
  if (v.stp_type == 0 && bn >= 35) {
    v.stp_config = true;
    v.stp_flags = b[4];
    v.stp_root_priority = Be16(b + 5);
    std::memcpy(v.stp_root_addr.data(), b + 7, 6);
    v.stp_root_cost = Be32(b + 13);
    v.stp_sender_priority = Be16(b + 17);
    std::memcpy(v.stp_sender_addr.data(), b + 19, 6);
    v.stp_port = Be16(b + 25);
    v.stp_age = Be16(b + 27);
    v.stp_max_age = Be16(b + 29);
    v.stp_hello = Be16(b + 31);
    v.stp_fwd_delay = Be16(b + 33);
  }
}

void ParsePayload(const uint8_t* p, size_t n, PacketView& v, const ParseOptions& options) {
  switch (v.ethertype) {
    case kEtherIpv4:
      ParseIpv4(p, n, v, options);
      break;
    case kEtherIpv6:
      ParseIpv6(p, n, v, options);
      break;
    case kEtherArp:
    case kEtherRarp:
      ParseArp(p, n, v);
      break;
    default:
      break;
  }
}

}  // namespace

std::string_view MalformedName(Malformed m) {
  switch (m) {
    case Malformed::kNone:
      return "none";
    case Malformed::kTruncatedEthernet:
      return "truncated-ethernet";
    case Malformed::kTruncatedVlan:
      return "truncated-vlan";
    case Malformed::kTruncatedArp:
      return "truncated-arp";
    case Malformed::kTruncatedIpv4:
      return "truncated-ipv4";
    case Malformed::kBadIpv4Header:
      return "bad-ipv4-header";
    case Malformed::kBadIpv4Checksum:
      return "bad-ipv4-checksum";
    case Malformed::kBadIpv4Options:
      return "bad-ipv4-options";
    case Malformed::kTruncatedIpv6:
      return "truncated-ipv6";
    case Malformed::kBadIpv6Header:
      return "bad-ipv6-header";
    case Malformed::kBadIpv6ExtHeader:
      return "bad-ipv6-extension-header";
    case Malformed::kTruncatedL4:
      return "truncated-transport";
    case Malformed::kBadL4Header:
      return "bad-transport-header";
    case Malformed::kBadFragment:
      return "bad-fragment";
    case Malformed::kCount:
      break;
  }
  return "?";
}

PacketView ParseEthernet(std::span<const uint8_t> frame, const ParseOptions& options) {
  PacketView v;
  const uint8_t* p = frame.data();
  const size_t n = frame.size();
  if (n < 14) {
    v.malformed = Malformed::kTruncatedEthernet;
    return v;
  }
  v.has_l2 = true;
  v.has_src_mac = true;
  std::memcpy(v.dst_mac.data(), p, 6);
  std::memcpy(v.src_mac.data(), p + 6, 6);
  size_t off = 12;
  uint16_t type = Be16(p + off);
  v.outer_ethertype = type;
  off += 2;
  while (type == kEtherVlan || type == kEtherQinQ) {
    if (off + 4 > n) {
      v.malformed = Malformed::kTruncatedVlan;
      return v;
    }
    if (v.vlan_tags == 0) {
      v.vlan_id = Be16(p + off) & 0x0fff;
      v.vlan_encap = Be16(p + off + 2);
    }
    ++v.vlan_tags;
    type = Be16(p + off + 2);
    off += 4;
  }
  v.ethertype = type;
  v.l2_len = static_cast<uint16_t>(off);
  v.l3_offset = static_cast<uint16_t>(off);
  if (type < 0x0600) {  // 802.3 length: LLC follows
    v.llc = true;
    static constexpr uint8_t kStpDst[6] = {0x01, 0x80, 0xc2, 0x00, 0x00, 0x00};
    if (n >= off + 3 && std::memcmp(v.dst_mac.data(), kStpDst, 6) == 0 && p[off] == 0x42 &&
        p[off + 1] == 0x42 && p[off + 2] == 0x03) {
      ParseStp(p + off, n - off, v);
    }
    return v;
  }
  ParsePayload(p + off, n - off, v, options);
  return v;
}

PacketView ParseNetwork(std::span<const uint8_t> packet, uint16_t ethertype,
                        const ParseOptions& options) {
  PacketView v;
  v.ethertype = ethertype;
  v.outer_ethertype = ethertype;
  ParsePayload(packet.data(), packet.size(), v, options);
  return v;
}

ct::PacketFacts ToPacketFacts(const PacketView& v) {
  ct::PacketFacts f;
  f.flow.family = v.family;
  f.flow.l4proto = v.l4proto;
  f.flow.src = v.src_ip;
  f.flow.dst = v.dst_ip;
  if (v.has_l4) {
    switch (v.l4proto) {
      case kProtoTcp:
      case kProtoUdp:
      case kProtoUdplite:
      case kProtoSctp:
        f.flow.sport = v.sport;
        f.flow.dport = v.dport;
        break;
      case kProtoIcmp:
      case kProtoIcmpv6:
        f.flow.icmp_type = v.icmp_type;
        f.flow.icmp_code = v.icmp_code;
        f.flow.icmp_id = v.icmp_id;
        break;
      case kProtoEsp:
      case kProtoAh:
        f.flow.spi = v.spi;
        break;
      default:
        break;
    }
  }
  // The TCP and SCTP fields of the view are set only for their protocol (defaults, equal
  // to PacketFacts' own, otherwise): copied only then.
  if (v.l4proto == kProtoTcp) {
    f.tcp_flags = v.tcp_flags;
    f.tcp_seq = v.tcp_seq;
    f.tcp_ack = v.tcp_ack;
    f.tcp_window = v.tcp_window;
    f.tcp_wscale = v.tcp_wscale;
    f.tcp_sack_perm = v.tcp_sack_perm;
    f.tcp_no_options = v.tcp_no_options;
    f.tcp_sack_present = v.tcp_sack_present;
    f.tcp_sack_edge = v.tcp_sack_edge;
  } else if (v.l4proto == kProtoSctp) {
    f.sctp = v.sctp;
    f.sctp_vtag = v.sctp_vtag;
  }
  f.payload_len = v.payload_len;
  f.icmp_error = v.icmp_error;
  if (v.icmp_error) f.inner = v.inner;  // default (zero) otherwise, as in the view
  f.bad_checksum = v.bad_checksum;
  f.fragment = v.fragment && v.frag_offset != 0;
  return f;
}

bool IsIcmpv6Untracked(uint8_t type) { return (type >= 130 && type <= 136) || type == 143; }

}  // namespace nwfq::engine
