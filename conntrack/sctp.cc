// SCTP tracking as the kernel's nf_conntrack_proto_sctp.c (Linux 6.x) does it: the chunk
// walk with its basic checks, the verification-tag rules of RFC 9260 section 8.5.1, and the
// state table applied chunk by chunk.
#include "conntrack/sctp.h"

#include "conntrack/entry.h"

namespace nwfq::ct {
namespace {

inline uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

constexpr uint16_t Bit(uint8_t type) { return static_cast<uint16_t>(1u << type); }

// Kernel sctp_conntracks[dir][chunk row][state]; kSctpIv = invalid (sIV).
constexpr uint8_t kSctpIv = 9;
constexpr uint8_t kSctpTransitions[2][11][9] = {
    {
        // ORIGINAL      sNO sCL sCW sCE sES sSS sSR sSA sHS
        /* init       */ {1, 1, 2, 3, 4, 1, 1, 7, 2},
        /* init_ack   */ {1, 1, 2, 3, 4, 5, 6, 7, 1},
        /* abort      */ {1, 1, 1, 1, 1, 1, 1, 1, 1},
        /* shutdown   */ {1, 1, 2, 3, 5, 5, 6, 7, 1},
        /* shutdn_ack */ {7, 1, 2, 3, 4, 7, 7, 7, 7},
        /* error      */ {1, 1, 2, 3, 4, 5, 6, 7, 1},
        /* cookie_echo*/ {1, 1, 3, 3, 4, 5, 6, 7, 1},
        /* cookie_ack */ {1, 1, 2, 4, 4, 5, 6, 7, 1},
        /* shutdn_comp*/ {1, 1, 2, 3, 4, 5, 6, 1, 1},
        /* heartbeat  */ {8, 1, 2, 3, 4, 5, 6, 7, 8},
        /* hb_ack     */ {1, 1, 2, 3, 4, 5, 6, 7, 8},
    },
    {
        // REPLY         sNO sCL sCW sCE sES sSS sSR sSA sHS
        /* init       */ {9, 1, 2, 3, 4, 5, 6, 7, 9},
        /* init_ack   */ {9, 2, 2, 3, 4, 5, 6, 7, 9},
        /* abort      */ {9, 1, 1, 1, 1, 1, 1, 1, 9},
        /* shutdown   */ {9, 1, 2, 3, 6, 5, 6, 7, 9},
        /* shutdn_ack */ {9, 1, 2, 3, 4, 7, 7, 7, 9},
        /* error      */ {9, 1, 2, 1, 4, 5, 6, 7, 9},
        /* cookie_echo*/ {9, 1, 3, 3, 4, 5, 6, 7, 9},
        /* cookie_ack */ {9, 1, 2, 4, 4, 5, 6, 7, 9},
        /* shutdn_comp*/ {9, 1, 2, 3, 4, 5, 6, 1, 9},
        /* heartbeat  */ {9, 1, 2, 3, 4, 5, 6, 7, 8},
        /* hb_ack     */ {9, 1, 2, 3, 4, 5, 6, 7, 4},
    },
};

// Chunk type -> row of the table; -1: the chunk changes no state (DATA, SACK, AUTH, ...).
int SctpChunkRow(uint8_t type) {
  switch (type) {
    case kSctpInit:
      return 0;
    case kSctpInitAck:
      return 1;
    case kSctpAbort:
      return 2;
    case kSctpShutdown:
      return 3;
    case kSctpShutdownAck:
      return 4;
    case kSctpError:
      return 5;
    case kSctpCookieEcho:
      return 6;
    case kSctpCookieAck:
      return 7;
    case kSctpShutdownComplete:
      return 8;
    case kSctpHeartbeat:
      return 9;
    case kSctpHeartbeatAck:
      return 10;
    default:
      return -1;
  }
}

TimeoutClass SctpTimeout(uint8_t state) {
  switch (static_cast<SctpState>(state)) {
    case SctpState::kCookieWait:
      return TimeoutClass::kSctpCookieWait;
    case SctpState::kCookieEchoed:
      return TimeoutClass::kSctpCookieEchoed;
    case SctpState::kEstablished:
      return TimeoutClass::kSctpEstablished;
    case SctpState::kShutdownSent:
      return TimeoutClass::kSctpShutdownSent;
    case SctpState::kShutdownRecd:
      return TimeoutClass::kSctpShutdownRecd;
    case SctpState::kShutdownAckSent:
      return TimeoutClass::kSctpShutdownAckSent;
    case SctpState::kHeartbeatSent:
      return TimeoutClass::kSctpHeartbeatSent;
    default:  // NONE and CLOSED: the kernel's timeouts[0] is CLOSED's
      return TimeoutClass::kSctpClosed;
  }
}

// The kernel's per-connection flags beside the two verification tags (ct->proto.sctp), in
// Entry::tcp_last, which SCTP entries do not otherwise use.
constexpr uint8_t kSctpInitSeen[2] = {0x01, 0x02};  // init[dir]: an INIT seen from dir
constexpr uint8_t kSctpHeartbeatVtagFailed = 0x04;  // SCTP_FLAG_HEARTBEAT_VTAG_FAILED
constexpr uint8_t kSctpLastDir = 0x08;              // last_dir: REPLY

}  // namespace

SctpChunks WalkSctpChunks(const uint8_t* chunks, size_t n, size_t wire_n) {
  SctpChunks c;
  bool bundling_forbidden = false;  // do_basic_checks' `flag`: an INIT-type chunk seen
  size_t count = 0;
  for (size_t off = 0; off < wire_n; ++count) {
    if (off + 4 > wire_n) break;  // a partial chunk header ends the kernel's walk too
    if (off + 4 > n) {            // the kernel would read on; this copy ends here
      c.truncated = true;
      break;
    }
    const uint8_t type = chunks[off];
    const uint8_t flags = chunks[off + 1];
    const uint16_t length = static_cast<uint16_t>(chunks[off + 2] << 8 | chunks[off + 3]);
    if (type == kSctpInit || type == kSctpInitAck || type == kSctpShutdownComplete) {
      bundling_forbidden = true;
    }
    // COOKIE_ECHO / COOKIE_ACK only first; INIT, INIT_ACK, SHUTDOWN_COMPLETE only alone;
    // no empty chunk (its length would not move the walk on).
    if (((type == kSctpCookieAck || type == kSctpCookieEcho || bundling_forbidden) && count != 0) ||
        length == 0) {
      return c;  // ok stays false
    }
    if (type < 16) c.map |= Bit(type);
    if (SctpChunkRow(type) < 0) {
      c.stateless = true;
    } else if (c.count == SctpChunks::kKept) {
      c.overflow = true;
    } else {
      c.kept[c.count++] = static_cast<uint8_t>(type | ((flags & 1) ? SctpChunks::kFlagT : 0));
    }
    if (type == kSctpInit || type == kSctpInitAck) {
      // sctp_inithdr: initiate tag, a_rwnd, stream counts, initial TSN (16 bytes).
      c.init_header = off + 4 + 16 <= wire_n;
      if (c.init_header && off + 4 + 16 > n) c.truncated = true;
      if (c.init_header && !c.truncated) c.init_tag = Be32(chunks + off + 4);
    }
    off += (size_t{length} + 3) & ~size_t{3};
  }
  c.ok = count != 0;
  return c;
}

// Kernel nf_conntrack_sctp_packet() with sctp_new() for a new connection. Tag and state
// changes made by the chunks before one that fails stay, as in the kernel.
Verdict SctpPacket(Table::Entry& e, const TrackContext& ctx) {
  const PacketFacts& p = ctx.p;
  const SctpChunks& c = p.sctp;
  SctpConn& s = *ctx.sctp;
  const int dir = ctx.dir;
  const uint32_t vtag = p.sctp_vtag;
  if (!c.ok) return Verdict::kInvalid;
  if (ctx.is_new) {
    // Out-of-the-blue packets with these chunks are discarded (RFC 9260 section 8.4).
    if (c.map & (Bit(kSctpAbort) | Bit(kSctpShutdownComplete) | Bit(kSctpCookieAck))) {
      return Verdict::kInvalid;
    }
    // sctp_new(): every chunk must be able to start an association (a state-less one
    // leaves it in NONE: invalid), and notes the tags the two sides will use.
    if (c.stateless) return Verdict::kInvalid;
    s = SctpConn{};
    e.tcp_last = 0;
    for (int i = 0; i < c.count; ++i) {
      const uint8_t type = c.kept[i] & ~SctpChunks::kFlagT;
      if (type == kSctpInit) {
        if (vtag != 0 || !c.init_header) return Verdict::kInvalid;  // section 8.5.1 (A)
        s.vtag[1] = c.init_tag;
      } else if (type == kSctpHeartbeat) {
        s.vtag[0] = vtag;
      } else {  // SHUTDOWN_ACK expects a SHUTDOWN_COMPLETE back, anything else an ABORT
        s.vtag[1] = vtag;
      }
    }
    e.pstate = static_cast<uint8_t>(SctpState::kNone);
  }
  // Section 8.5: the tag must be the receiver's, except for the chunks with rules of their
  // own below.
  constexpr uint16_t kOwnRules = Bit(kSctpInit) | Bit(kSctpShutdownComplete) |
                                 Bit(kSctpCookieEcho) | Bit(kSctpAbort) | Bit(kSctpShutdownAck) |
                                 Bit(kSctpHeartbeat) | Bit(kSctpHeartbeatAck);
  if (!(c.map & kOwnRules) && vtag != s.vtag[dir]) return Verdict::kInvalid;

  bool ignore = false;
  for (int i = 0; i < c.count; ++i) {
    const uint8_t type = c.kept[i] & ~SctpChunks::kFlagT;
    const bool t_flag = c.kept[i] & SctpChunks::kFlagT;
    switch (type) {
      case kSctpInit:  // (A) the tag must be zero
        if (vtag != 0) return Verdict::kInvalid;
        break;
      case kSctpAbort:  // (B), (C): own tag, or the peer's with the T flag
      case kSctpShutdownComplete:
        if (vtag != s.vtag[t_flag ? 1 - dir : dir]) return Verdict::kInvalid;
        break;
      case kSctpCookieEcho:  // (D) the tag of the INIT_ACK
        if (vtag != s.vtag[dir]) return Verdict::kInvalid;
        break;
      case kSctpCookieAck:
        e.tcp_last &= static_cast<uint8_t>(~(kSctpInitSeen[0] | kSctpInitSeen[1]));
        break;
      case kSctpHeartbeat:
        if (s.vtag[dir] == 0) {
          s.vtag[dir] = vtag;
        } else if (vtag != s.vtag[dir]) {
          // Perhaps a restarted peer (multihoming): let it through once, unrefreshed, and
          // take the new tag if the answer confirms it.
          if ((c.map & Bit(kSctpData)) || ignore) return Verdict::kInvalid;
          e.tcp_last =
              static_cast<uint8_t>((e.tcp_last | kSctpHeartbeatVtagFailed) & ~kSctpLastDir) |
              (dir == 1 ? kSctpLastDir : 0);
          ignore = true;
          continue;  // no state change for this chunk
        } else {
          e.tcp_last &= static_cast<uint8_t>(~kSctpHeartbeatVtagFailed);
        }
        break;
      case kSctpHeartbeatAck:
        if (s.vtag[dir] == 0) {
          s.vtag[dir] = vtag;
        } else if (vtag != s.vtag[dir]) {
          if ((c.map & Bit(kSctpData)) || ignore) return Verdict::kInvalid;
          const int last_dir = (e.tcp_last & kSctpLastDir) ? 1 : 0;
          if (!(e.tcp_last & kSctpHeartbeatVtagFailed) || last_dir == dir) {
            return Verdict::kInvalid;
          }
          e.tcp_last &= static_cast<uint8_t>(~kSctpHeartbeatVtagFailed);
          s.vtag[dir] = vtag;
          s.vtag[1 - dir] = 0;
        } else {
          e.tcp_last &= static_cast<uint8_t>(~kSctpHeartbeatVtagFailed);
        }
        break;
      default:
        break;
    }
    const int row = SctpChunkRow(type);
    if (row < 0) continue;  // not kept by the walk: cannot happen
    const uint8_t old_state = e.pstate;
    const uint8_t new_state = kSctpTransitions[dir][row][old_state];
    if (new_state == kSctpIv) return Verdict::kInvalid;
    if (type == kSctpInit) {  // note the tag the other side must use
      if (!c.init_header) return Verdict::kInvalid;
      if ((e.tcp_last & kSctpInitSeen[dir]) && (e.tcp_last & kSctpInitSeen[1 - dir])) {
        e.tcp_last &= static_cast<uint8_t>(~kSctpInitSeen[1 - dir]);
      }
      e.tcp_last |= kSctpInitSeen[dir];
      s.vtag[1 - dir] = c.init_tag;
      // An INIT retransmitted in CLOSED does not renew the timeout: port reuse cannot keep
      // the entry alive for ever.
      const uint8_t closed = static_cast<uint8_t>(SctpState::kClosed);
      if (new_state == closed && old_state == closed && !ctx.is_new) ignore = true;
    } else if (type == kSctpInitAck) {
      if (!c.init_header) return Verdict::kInvalid;
      const uint32_t peer = s.vtag[1 - dir];
      const bool init_here = e.tcp_last & kSctpInitSeen[dir];
      const bool init_there = e.tcp_last & kSctpInitSeen[1 - dir];
      if (!init_there && peer != 0 && peer != c.init_tag) return Verdict::kInvalid;
      if (init_here && init_there && peer != c.init_tag) return Verdict::kInvalid;  // collision
      s.vtag[1 - dir] = c.init_tag;
    }
    e.pstate = new_state;
    if (old_state != new_state && new_state == static_cast<uint8_t>(SctpState::kEstablished)) {
      e.flags |= kEfAssured;
    }
  }
  if (ignore) return Verdict::kIgnore;  // accepted, timeout not renewed
  e.deadline_ms = ctx.now_ms + TimeoutMs(ctx.timeouts, SctpTimeout(e.pstate));
  return Verdict::kAccept;
}

}  // namespace nwfq::ct
