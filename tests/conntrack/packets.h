// Builders of PacketFacts for conntrack tests: a client/server pair and short helpers per
// protocol, so test rows read like packet traces.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "conntrack/sctp.h"
#include "conntrack/table.h"
#include "conntrack/types.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::ct::testing {

inline std::array<uint8_t, 16> V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  std::array<uint8_t, 16> r{};
  r[0] = a;
  r[1] = b;
  r[2] = c;
  r[3] = d;
  return r;
}

inline std::array<uint8_t, 16> V6(uint16_t last) {  // 2001:db8::<last>
  std::array<uint8_t, 16> r{};
  r[0] = 0x20;
  r[1] = 0x01;
  r[2] = 0x0d;
  r[3] = 0xb8;
  r[14] = static_cast<uint8_t>(last >> 8);
  r[15] = static_cast<uint8_t>(last);
  return r;
}

inline const std::array<uint8_t, 16> kClient = V4(198, 18, 0, 2);
inline const std::array<uint8_t, 16> kServer = V4(198, 18, 0, 3);

// A TCP segment from `from` to `to`.
inline PacketFacts Tcp(const std::array<uint8_t, 16>& from, uint16_t sport,
                       const std::array<uint8_t, 16>& to, uint16_t dport, uint8_t flags,
                       uint32_t seq, uint32_t ack, uint16_t win = 64240, uint32_t len = 0,
                       uint8_t wscale = 0xff) {
  PacketFacts p;
  p.flow.family = 4;
  p.flow.l4proto = 6;
  p.flow.src = from;
  p.flow.dst = to;
  p.flow.sport = sport;
  p.flow.dport = dport;
  p.tcp_flags = flags;
  p.tcp_seq = seq;
  p.tcp_ack = ack;
  p.tcp_window = win;
  p.payload_len = len;
  p.tcp_wscale = wscale;
  return p;
}

inline PacketFacts Udp(const std::array<uint8_t, 16>& from, uint16_t sport,
                       const std::array<uint8_t, 16>& to, uint16_t dport, uint8_t family = 4) {
  PacketFacts p;
  p.flow.family = family;
  p.flow.l4proto = 17;
  p.flow.src = from;
  p.flow.dst = to;
  p.flow.sport = sport;
  p.flow.dport = dport;
  p.payload_len = 10;
  return p;
}

// An SCTP packet with verification tag `vtag` carrying `chunks` (nwfq::testing::SctpChunk,
// SctpInitChunk, concatenated), walked as the parser walks them.
inline PacketFacts Sctp(const std::array<uint8_t, 16>& from, uint16_t sport,
                        const std::array<uint8_t, 16>& to, uint16_t dport, uint32_t vtag,
                        const std::vector<uint8_t>& chunks) {
  PacketFacts p = Udp(from, sport, to, dport);
  p.flow.l4proto = 132;
  p.sctp_vtag = vtag;
  p.sctp = WalkSctpChunks(chunks.data(), chunks.size(), chunks.size());
  p.payload_len = static_cast<uint32_t>(chunks.size());
  return p;
}
// Chunks in one packet, in order.
inline std::vector<uint8_t> Chunks(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& c : parts) out.insert(out.end(), c.begin(), c.end());
  return out;
}

inline PacketFacts Icmp(const std::array<uint8_t, 16>& from, const std::array<uint8_t, 16>& to,
                        uint8_t type, uint16_t id, uint8_t code = 0) {
  PacketFacts p;
  p.flow.family = 4;
  p.flow.l4proto = 1;
  p.flow.src = from;
  p.flow.dst = to;
  p.flow.icmp_type = type;
  p.flow.icmp_code = code;
  p.flow.icmp_id = id;
  return p;
}

inline PacketFacts Icmp6(const std::array<uint8_t, 16>& from, const std::array<uint8_t, 16>& to,
                         uint8_t type, uint16_t id = 0) {
  PacketFacts p = Icmp(from, to, type, id);
  p.flow.family = 6;
  p.flow.l4proto = 58;
  return p;
}

// An ICMP error from `from` to `to` quoting `quoted` (the packet as its sender wrote it).
inline PacketFacts IcmpError(const std::array<uint8_t, 16>& from, const std::array<uint8_t, 16>& to,
                             uint8_t type, uint8_t code, const PacketFacts& quoted) {
  PacketFacts p = Icmp(from, to, type, 0, code);
  if (quoted.flow.family == 6) {
    p.flow.family = 6;
    p.flow.l4proto = 58;
  }
  p.icmp_error = true;
  p.inner = quoted.flow;
  return p;
}

inline constexpr uint8_t kSyn = kTcpSyn;
inline constexpr uint8_t kSynAck = kTcpSyn | kTcpAck;
inline constexpr uint8_t kAck = kTcpAck;
inline constexpr uint8_t kFinAck = kTcpFin | kTcpAck;
inline constexpr uint8_t kRst = kTcpRst;
inline constexpr uint8_t kRstAck = kTcpRst | kTcpAck;
inline constexpr uint8_t kPshAck = kTcpPsh | kTcpAck;

inline constexpr Nanos kSec = kNanosPerSecond;
inline constexpr Nanos kMs = 1'000'000;

}  // namespace nwfq::ct::testing
