// Internal: the fixed-size table entry and the per-protocol tracker interface used by
// table.cc. Not part of the public API (the engine includes table.h only).
#pragma once

#include <array>
#include <cstdint>

#include "conntrack/table.h"
#include "conntrack/timeouts.h"
#include "conntrack/types.h"

namespace nwfq::ct {

// Per-direction TCP window-tracking flags (kernel IP_CT_TCP_FLAG_*; the ones we need).
enum TcpDirFlag : uint8_t {
  kTdWindowScale = 0x01,  // this side sent the window-scale option
  kTdCloseInit = 0x02,    // this side sent the first FIN
  kTdUnacked = 0x04,      // this side has data the other side has not acked yet
  kTdMaxackSet = 0x08,    // td_maxack is valid
};

// Kernel enum tcp_bit_set: the flag class of a segment (the transition table's row).
enum TcpIndex : uint8_t {
  kTcpSynSet,
  kTcpSynAckSet,
  kTcpFinSet,
  kTcpAckSet,
  kTcpRstSet,
  kTcpNoneSet,
};

// TCP state of one connection: the kernel's struct ip_ct_tcp minus what we never read
// (SACK blocks are not in PacketFacts; last_seq is not kept, so a retransmission is
// recognised by direction, ack, end and window: see DIVERGENCES.md).
struct TcpConn {
  uint32_t td_end[2];     // max(seq + len) sent by each direction
  uint32_t td_maxend[2];  // max(ack + window) seen from the other direction
  uint32_t td_maxwin[2];  // max(window) announced by each direction
  uint32_t td_maxack[2];  // max ack sent by each direction (kTdMaxackSet)
  uint32_t last_end;      // end of the last ACK (retransmission check) or ignored packet
  uint32_t last_ack;      // ack of the last ACK (retransmission check; challenge ACK)
  uint16_t last_win;      // raw window of the last ACK / ignored packet
  uint8_t td_scale;       // low nibble: ORIGINAL's window scale, high nibble: REPLY's
  uint8_t td_flags;       // low nibble: ORIGINAL's TcpDirFlag bits, high nibble: REPLY's
};
static_assert(sizeof(TcpConn) == 44);

// SCTP state beside Entry::pstate: the verification tag each direction must carry (kernel
// ct->proto.sctp.vtag; its init/flags/last_dir bits live in Entry::tcp_last).
struct SctpConn {
  uint32_t vtag[2];
};

// The table's entry: 32 bytes, two per cache line, holding everything a lookup compares
// and what UDP/ICMP/GRE/generic connections need. What only some connections need lives in
// records allocated on demand from three pools (see Table::Pool): the TCP window state
// (TcpConn, 44-byte record), SCTP's verification tags (SctpConn, 8 bytes) and 28 of the 32
// bytes of IPv6 addresses (the other 4 are in `dst`). An IPv4 UDP connection thus costs one
// 32-byte entry + 1-byte tag; TCP adds 44 bytes, SCTP 8, IPv6 28.
struct Table::Entry {
  // ---- Key: the original direction's tuple. IPv4: addresses in network order. IPv6
  // (kEfIpv6): `src` is the index of the address record (original src, then the first 12
  // bytes of the original dst), `dst` the original dst's last 4 bytes.
  // ICMP/ICMPv6: sport = echo id, dport = type << 8 | code of the request.
  uint32_t src;
  uint32_t dst;
  uint16_t sport;
  uint16_t dport;
  uint8_t l4proto;
  uint8_t flags;          // EntryFlag
  uint8_t pstate;         // TcpState / SctpState
  uint8_t tcp_last;       // TCP: last_index:3 | last_dir:1 | retrans:4 (saturating at 15);
                          // SCTP: init seen per direction, heartbeat tag failed, last_dir
  uint32_t generation;    // low 24 bits: generation (EntryRef); high 8 bits: TCP (tcp.cc)
  uint32_t deadline_ms;   // absolute, ms since the table epoch, serial arithmetic
  uint32_t last_seen_ms;  // time of the last packet, same scale
  // UDP/UDPLite: the 2-second stream rule's point in time (ms). TCP / SCTP: index of the
  // TcpConn / SctpConn record. Unused otherwise.
  uint32_t aux;
};
static_assert(sizeof(Table::Entry) == 32, "entry size is part of the memory budget");

enum EntryFlag : uint8_t {
  kEfUsed = 0x01,
  kEfIpv6 = 0x02,
  kEfSeenReply = 0x04,
  kEfAssured = 0x08,
  kEfLiberal = 0x10,    // TCP: ORIGINAL's BE_LIBERAL (picked up mid-stream); REPLY's: tcp.cc
  kEfSimOpen = 0x20,    // TCP: IP_CT_TCP_SIMULTANEOUS_OPEN
  kEfChallenge = 0x40,  // TCP: IP_CT_EXP_CHALLENGE_ACK
  kEfLastWs = 0x80,     // TCP: last ignored SYN carried a window-scale option
};

// What a protocol tracker decided for one packet.
enum class Verdict : uint8_t {
  kAccept,   // tracked: refresh done, state per direction
  kIgnore,   // kernel NF_ACCEPT without update (TCP sIG, out-of-window "ignore")
  kInvalid,  // kernel -NF_ACCEPT: INVALID, entry kept
  kRepeat,   // TCP reopen from TIME_WAIT/CLOSE: delete the entry, track again as new
  kKill,     // accepted, then the entry is deleted (TCP RST as the only reply)
};

struct TrackContext {
  const PacketFacts& p;
  TcpConn* tcp;    // TCP: the connection's window-tracking record; null otherwise
  SctpConn* sctp;  // SCTP: the connection's verification tags; null otherwise
  const TimeoutPolicy& timeouts;
  const TableOptions& options;
  uint32_t now_ms;
  int dir;      // 0 ORIGINAL, 1 REPLY
  bool is_new;  // entry is being created by this packet (kernel: !nf_ct_is_confirmed)
};

inline uint32_t SecondsToMs(uint32_t s) { return s * 1000u; }
// Inlined by force: once the short hit paths were inlined into Table::Track, GCC made it a
// call (eight call sites in the hit path's code).
[[gnu::always_inline]] inline uint32_t TimeoutMs(const TimeoutPolicy& t, TimeoutClass c) {
  return SecondsToMs(t.Seconds(c));
}

// TCP (tcp.cc). `TcpNew` initialises a tentative entry (kernel tcp_new); false = INVALID.
bool TcpNew(Table::Entry& e, const TrackContext& ctx);
// Kernel tcp_packet(), every case, the short path's (TcpEstablishedAck, tcp_window.h)
// included. The table tries the short path first for every packet of a live connection
// (TableInternals::PortHit) and calls this when it declines, and for new connections.
Verdict TcpPacketFull(Table::Entry& e, const TrackContext& ctx);
// The kernel's tcp_valid_flags check (tcp_error): false = INVALID before any lookup. One bit
// per valid combination of FIN, SYN, RST, ACK and URG; PSH (and ECE/CWR, not in our flag
// byte) are always valid. Inline: both lookups run it first, for every TCP packet.
inline constexpr uint64_t kTcpValidFlagSets =
    uint64_t{1} << kTcpSyn | uint64_t{1} << (kTcpSyn | kTcpUrg) |
    uint64_t{1} << (kTcpSyn | kTcpAck) | uint64_t{1} << kTcpRst |
    uint64_t{1} << (kTcpRst | kTcpAck) | uint64_t{1} << (kTcpFin | kTcpAck) |
    uint64_t{1} << (kTcpFin | kTcpAck | kTcpUrg) | uint64_t{1} << kTcpAck |
    uint64_t{1} << (kTcpAck | kTcpUrg);
inline bool TcpFlagsValid(uint8_t flags) {
  return (kTcpValidFlagSets >> (flags & (kTcpFin | kTcpSyn | kTcpRst | kTcpAck | kTcpUrg))) & 1;
}
// Transition table lookup, exposed for the row-by-row test: returns a TcpState value,
// kTcpIv (invalid) or kTcpIg (ignore).
inline constexpr uint8_t kTcpIv = 10;
inline constexpr uint8_t kTcpIg = 11;
uint8_t TcpTransition(int dir, TcpIndex index, TcpState state);
TcpIndex TcpIndexOf(uint8_t tcp_flags);

// SCTP (sctp.cc): kernel nf_conntrack_sctp_packet(), with sctp_new() when ctx.is_new.
Verdict SctpPacket(Table::Entry& e, const TrackContext& ctx);

}  // namespace nwfq::ct
