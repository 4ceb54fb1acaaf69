// TCP connection tracking, following Linux's nf_conntrack_proto_tcp.c (6.x) decision by
// decision: the transition table, tcp_new, tcp_in_window (window tracking after Guido van
// Rooij's "Real Stateful TCP Packet Filtering in IP Filter"), the ignore/resync logic, RST
// validation and the timeout choice. Deviations are listed in DIVERGENCES.md.
#include <algorithm>
#include <cstring>

#include "conntrack/entry.h"
#include "conntrack/tcp_window.h"

namespace nwfq::ct {
namespace {

using namespace tcp;  // NOLINT(google-build-using-namespace): the tracker's own helpers

// [direction][flag class][current state] -> next state, sIV (invalid) or sIG (ignore).
// Identical to the kernel's tcp_conntracks (Linux 6.x).
constexpr uint8_t kTransitions[2][6][10] = {
    {
        // ORIGINAL        sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        /* syn    */ {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
        // NO->SS new connection; SS->SS retransmitted SYN; S2->S2 late retransmitted SYN;
        // SR..LA->IG a SYN inside a live connection: the receiver answers with RST (or we
        // are out of sync: remember it, see the resync in TcpPacketFull); TW,CL->SS reopen
        // (RFC 1122) — TcpPacketFull deletes the old entry and tracks the SYN as new.
        /* synack */ {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
        // the client cannot send SYN/ACK, except in a simultaneous open: S2->SR, and
        // SR->SR a late retransmitted SYN/ACK of that simultaneous open.
        /* fin    */ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
        // NO,SS,S2->IV no FIN before the SYN/ACK; SR,ES->FW close started; FW,CW->LA FIN
        // seen both ways (or a retransmitted FIN); LA,TW,CL stay.
        /* ack    */ {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
        // NO->ES mid-stream pickup (tcp_loose); SS,S2->IV no ACK before the SYN/ACK;
        // SR->ES handshake complete; FW->CW close answered; LA->TW last ACK; TW,CL stay.
        /* rst    */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
        // any RST closes (TcpPacketFull validates its sequence number first); NO->IV.
        /* none   */ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
        // a segment with none of SYN/FIN/ACK/RST is always invalid.
    },
    {
        // REPLY           sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        /* syn    */ {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2},
        // SS->S2 simultaneous open; S2->S2 its retransmission; TW->SS reopen by the other
        // side (roles switch); the server sending SYN anywhere else is invalid.
        /* synack */ {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
        // SS,S2->SR the normal (or simultaneous) open; elsewhere a late or retransmitted
        // SYN/ACK, possibly answering a SYN we ignored: ignore (resync in TcpPacketFull).
        /* fin    */ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
        // as in ORIGINAL.
        /* ack    */ {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
        // SS,S2->IG might be a half-open connection (or a challenge ACK); SR->SR might answer
        // a late resent SYN (a simultaneous open completes to ES in TcpPacketFull); else as
        // ORIGINAL.
        /* rst    */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
        /* none   */ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
    },
};

// seq + payload + SYN + FIN (kernel segment_seq_plus_len).
inline uint32_t SegmentEnd(const PacketFacts& p) {
  return p.tcp_seq + p.payload_len + ((p.tcp_flags & kTcpSyn) ? 1 : 0) +
         ((p.tcp_flags & kTcpFin) ? 1 : 0);
}

// Kernel tcp_options(): window scale (capped at 14) and flags, reset first, but only when
// the segment has options at all: an option-less SYN re-initialising a side keeps the
// scale and SACK permission that side announced before.
void ParseOptions(Table::Entry& e, TcpConn& t, int dir, const PacketFacts& p) {
  if (p.tcp_no_options) return;
  SetScale(t, dir, 0);
  SetDirFlags(t, dir, 0);
  SetSackPerm(e, dir, p.tcp_sack_perm);
  if (p.tcp_wscale != 0xff) {
    SetScale(t, dir, std::min<uint8_t>(p.tcp_wscale, 14));
    SetDirFlag(t, dir, kTdWindowScale);
  }
}

// Kernel tcp_init_sender(): a SYN/ACK answering the SYN, or a SYN from the reply side.
void InitSender(Table::Entry& e, TcpConn& t, int dir, const PacketFacts& p, uint32_t end,
                uint32_t win) {
  t.td_end[dir] = t.td_maxend[dir] = end;
  t.td_maxwin[dir] = win == 0 ? 1 : win;
  ParseOptions(e, t, dir, p);
  // RFC 1323: scaling applies only if both sides sent the option.
  if (dir == 1 && !((DirFlags(t, 1) & kTdWindowScale) && (DirFlags(t, 0) & kTdWindowScale))) {
    SetScale(t, 0, 0);
    SetScale(t, 1, 0);
  }
}

enum class WindowResult { kIgnore, kInvalid, kAccept };

// nf_tcp_log_invalid(): liberal tracking of the sender (or the global switch) turns every
// window complaint into "accept".
inline WindowResult Complain(const Table::Entry& e, const TrackContext& ctx, WindowResult r) {
  if (Liberal(e, ctx.dir) || ctx.options.tcp_be_liberal) return WindowResult::kAccept;
  return r;
}

// Kernel tcp_in_window().
WindowResult InWindow(Table::Entry& e, const TrackContext& ctx, int index) {
  const PacketFacts& p = ctx.p;
  TcpConn& t = *ctx.tcp;
  const int s = ctx.dir;
  const int r = 1 - s;
  const bool syn = p.tcp_flags & kTcpSyn;
  const bool has_ack = p.tcp_flags & kTcpAck;
  uint32_t seq = p.tcp_seq;
  uint32_t ack = p.tcp_ack;
  uint32_t sack = SackOrAck(e, p, r);
  const uint16_t win_raw = p.tcp_window;
  uint32_t win = win_raw;
  uint32_t end = SegmentEnd(p);

  if (t.td_maxwin[s] == 0) {
    if (syn) {
      InitSender(e, t, s, p, end, win);
      if (!has_ack) return WindowResult::kAccept;  // simultaneous open
    } else {
      // Mid-connection: its history is lost for us; use the packet's data.
      t.td_end[s] = end;
      uint32_t swin = win << Scale(t, s);
      t.td_maxwin[s] = swin == 0 ? 1 : swin;
      t.td_maxend[s] = end + t.td_maxwin[s];
      if (t.td_maxwin[r] == 0) {
        // No traffic seen the other way yet: make III and IV pass until there is.
        t.td_end[r] = t.td_maxend[r] = sack;
      } else if (sack == t.td_end[r] + 1) {
        ++t.td_end[r];  // likely the answer to a keepalive
      }
    }
  } else if (syn && After(end, t.td_end[s]) &&
             (e.pstate == static_cast<uint8_t>(TcpState::kSynSent) ||
              e.pstate == static_cast<uint8_t>(TcpState::kSynRecv))) {
    // RFC 793: a reinitialised TCP uses higher sequence numbers: re-init this side.
    InitSender(e, t, s, p, end, win);
    if (s == 1 && !has_ack) return WindowResult::kAccept;
  }

  if (!has_ack) {
    ack = sack = t.td_end[r];  // pretend an acceptable ACK
  } else if ((p.tcp_flags & (kTcpAck | kTcpRst)) == (kTcpAck | kTcpRst) && ack == 0) {
    ack = sack = t.td_end[r];  // broken stacks: RST+ACK with ack 0
  }

  if ((p.tcp_flags & kTcpRst) && seq == 0 && e.pstate == static_cast<uint8_t>(TcpState::kSynSent)) {
    seq = end = t.td_end[s];  // RST answering a SYN
  }

  switch (CheckWindow(t, s, seq, end, sack)) {
    case WindowCheck::kInWindow:
      break;
    case WindowCheck::kAboveWindow: {
      uint32_t overshot = end - t.td_maxend[s] + 1;
      bool ack_ok = After(sack, t.td_end[r] - MaxAckWindow(t.td_maxwin[s]) - 1);
      bool in_recv_win = t.td_maxwin[r] && After(end, t.td_end[s] - t.td_maxwin[r] - 1);
      if (in_recv_win && ack_ok && overshot <= t.td_maxwin[r] && Before(sack, t.td_end[r] + 1)) {
        // A TCP sending more than the window allows: remember the data so that its ACK
        // does not look like acking unseen data later.
        t.td_end[s] = end;
        SetDirFlag(t, s, kTdUnacked);
        return Complain(e, ctx, WindowResult::kIgnore);
      }
      return Complain(e, ctx, WindowResult::kInvalid);
    }
    case WindowCheck::kAckAboveData:
      return Complain(e, ctx, WindowResult::kInvalid);
    case WindowCheck::kOldData:
    case WindowCheck::kOldAck:
      return Complain(e, ctx, WindowResult::kIgnore);
  }
  UpdateWindows(e, t, s, end, ack, sack, win_raw, syn, has_ack, index);
  return WindowResult::kAccept;
}

bool CanEarlyDrop(uint8_t state) {
  switch (static_cast<TcpState>(state)) {
    case TcpState::kFinWait:
    case TcpState::kLastAck:
    case TcpState::kTimeWait:
    case TcpState::kClose:
    case TcpState::kCloseWait:
      return true;
    default:
      return false;
  }
}

// Kernel nf_tcp_handle_invalid(): an out-of-window FIN/RST answering the peer's FIN/RST
// on an assured connection shortens its timeout to "unacknowledged".
void HandleInvalid(Table::Entry& e, const TrackContext& ctx, int index) {
  if (!(e.flags & kEfAssured)) return;
  if (index != kTcpRstSet && index != kTcpFinSet) return;
  if (LastDir(e) != ctx.dir && (LastIndex(e) == kTcpFinSet || LastIndex(e) == kTcpRstSet)) {
    int32_t expires = static_cast<int32_t>(e.deadline_ms - ctx.now_ms);
    if (expires < 120 * 1000) return;
    uint32_t timeout = TimeoutMs(ctx.timeouts, TimeoutClass::kTcpUnack);
    if (static_cast<uint32_t>(expires) > timeout) e.deadline_ms = ctx.now_ms + timeout;
  } else {
    SetLast(e, index, ctx.dir);
  }
}

}  // namespace

TcpIndex TcpIndexOf(uint8_t f) {
  if (f & kTcpRst) return kTcpRstSet;
  if (f & kTcpSyn) return (f & kTcpAck) ? kTcpSynAckSet : kTcpSynSet;
  if (f & kTcpFin) return kTcpFinSet;
  if (f & kTcpAck) return kTcpAckSet;
  return kTcpNoneSet;
}

uint8_t TcpTransition(int dir, TcpIndex index, TcpState state) {
  return kTransitions[dir][index][static_cast<int>(state)];
}

bool TcpNew(Table::Entry& e, const TrackContext& ctx) {
  const PacketFacts& p = ctx.p;
  TcpIndex index = TcpIndexOf(p.tcp_flags);
  uint8_t new_state = kTransitions[0][index][sNO];
  if (new_state >= sIV) return false;
  std::memset(ctx.tcp, 0, sizeof(TcpConn));
  e.pstate = sNO;
  e.tcp_last = kTcpNoneSet;  // tcp_packet sets them
  SetLastWscale(e, 0);
  TcpConn& t = *ctx.tcp;
  uint32_t win = p.tcp_window;
  if (new_state == sSS) {
    t.td_end[0] = SegmentEnd(p);
    t.td_maxwin[0] = win == 0 ? 1 : win;
    t.td_maxend[0] = t.td_end[0];
    ParseOptions(e, t, 0, p);
  } else if (!ctx.options.tcp_loose) {
    return false;  // do not pick up connections mid-stream
  } else {
    t.td_end[0] = SegmentEnd(p);
    t.td_maxwin[0] = win == 0 ? 1 : win;
    t.td_maxend[0] = t.td_end[0] + t.td_maxwin[0];
    // The kernel assumes SACK and liberal window checking to cope with window scaling.
    SetLiberal(e, 0, true);
    SetLiberal(e, 1, true);
    SetSackPerm(e, 0, true);
    SetSackPerm(e, 1, true);
  }
  return true;
}

Verdict TcpPacketFull(Table::Entry& e, const TrackContext& ctx) {
  const PacketFacts& p = ctx.p;
  TcpConn& t = *ctx.tcp;
  const int dir = ctx.dir;
  const TcpIndex index = TcpIndexOf(p.tcp_flags);
  uint8_t old_state = e.pstate;
  uint8_t new_state = kTransitions[dir][index][old_state];
  bool skip_window = false;

  switch (new_state) {
    case sSS:
      if (old_state < sTW) break;
      // Reopening a closed/aborted connection: delete it and track the SYN as new.
      if (((DirFlags(t, 0) | DirFlags(t, 1)) & kTdCloseInit) ||
          (LastDir(e) == dir && LastIndex(e) == kTcpRstSet)) {
        return Verdict::kRepeat;
      }
      [[fallthrough]];
    case sIG: {
      if (index == kTcpSynAckSet && LastIndex(e) == kTcpSynSet && LastDir(e) != dir &&
          p.tcp_ack == t.last_end) {
        // This SYN/ACK acknowledges a SYN we ignored: both ends are in sync, we are not.
        // Resync from the values noted then.
        const int ld = LastDir(e);
        old_state = sSS;
        new_state = sSR;
        t.td_end[ld] = t.td_maxend[ld] = t.last_end;
        t.td_maxwin[ld] = t.last_win == 0 ? 1 : t.last_win;
        SetScale(t, ld, LastWscale(e));
        e.flags &= ~kEfChallenge;
        SetDirFlags(t, ld, (e.flags & kEfLastWs) ? kTdWindowScale : 0);
        SetSackPerm(e, ld, e.generation & kLastSackBit);
        SetLiberal(e, ld, false);  // seen[last_dir].flags = last_flags
        t.td_end[dir] = t.td_maxend[dir] = t.td_maxwin[dir] = t.td_maxack[dir] = 0;
        SetScale(t, dir, 0);
        SetDirFlags(t, dir, 0);
        SetSackPerm(e, dir, false);
        break;
      }
      SetLast(e, index, dir);
      t.last_end = SegmentEnd(p);
      t.last_win = p.tcp_window;
      if (index == kTcpSynSet && dir == 0) {
        // A SYN in ORIGINAL inside a connection: note its options; if the server answers
        // with a SYN/ACK we resync above. In LAST_ACK, expect an RFC 5961 challenge ACK.
        e.flags &= ~(kEfLastWs | kEfChallenge);
        SetLastWscale(e, 0);
        e.generation &= ~kLastSackBit;
        if (p.tcp_sack_perm) e.generation |= kLastSackBit;
        if (p.tcp_wscale != 0xff) {
          e.flags |= kEfLastWs;
          SetLastWscale(e, std::min<uint8_t>(p.tcp_wscale, 14));
        }
        if (old_state == sLA) e.flags |= kEfChallenge;
      }
      if (old_state == sSS && index == kTcpAckSet && dir == 1) t.last_ack = p.tcp_ack;
      return Verdict::kIgnore;
    }
    case sIV:
      return Verdict::kInvalid;
    case sTW:
      // RFC 5961: a challenge ACK answering a SYN must not be taken as the last ACK.
      if (old_state == sLA && index == kTcpAckSet && LastDir(e) != dir &&
          LastIndex(e) == kTcpSynSet && (e.flags & kEfChallenge)) {
        e.flags &= ~kEfChallenge;
        return Verdict::kIgnore;
      }
      break;
    case sS2:
      e.flags |= kEfSimOpen;  // the table alone cannot follow a simultaneous open
      break;
    case sSR:
      if (dir == 1 && index == kTcpAckSet && (e.flags & kEfSimOpen)) new_state = sES;
      break;
    case sCL: {
      if (index != kTcpRstSet) break;
      // Closing already: the tuple may have been reused; skip the window checks.
      if (CanEarlyDrop(old_state)) {
        skip_window = true;
        break;
      }
      const bool established = old_state == sES && (e.flags & kEfAssured);
      if ((DirFlags(t, 1 - dir) & kTdMaxackSet) && LastIndex(e) != kTcpSynSet) {
        const uint32_t seq = p.tcp_seq;
        if (seq == 0 && !established) break;  // answer to a SYN we let through
        if (Before(seq, t.td_maxack[1 - dir]) && !ctx.options.tcp_ignore_invalid_rst) {
          return Verdict::kInvalid;  // RST below the highest ack: invalid
        }
        if (!established || seq == t.td_maxack[1 - dir]) break;
        // Part of a train (data then RST at its end)?
        if (LastIndex(e) == kTcpAckSet && LastDir(e) == dir && seq == t.last_end) break;
        // Sequence number not exact: keep the state to allow a challenge ACK.
        new_state = old_state;
      }
      if ((((e.flags & kEfSeenReply) && LastIndex(e) == kTcpSynSet) ||
           (!(e.flags & kEfAssured) && LastIndex(e) == kTcpAckSet)) &&
          p.tcp_ack == t.last_end) {
        // RST answering a SYN or ACK we let through: delete, skip the window check.
        skip_window = true;
        break;
      }
      if (old_state == sSS && LastIndex(e) == kTcpAckSet && LastDir(e) == 1 &&
          p.tcp_seq == t.last_ack) {
        skip_window = true;  // reset answering a challenge ACK we let through
      }
      break;
    }
    default:
      break;
  }

  if (!skip_window) {
    switch (InWindow(e, ctx, index)) {
      case WindowResult::kIgnore:
        return Verdict::kIgnore;
      case WindowResult::kInvalid:
        HandleInvalid(e, ctx, index);
        return Verdict::kInvalid;
      case WindowResult::kAccept:
        break;
    }
  }

  // In-window from here on.
  SetLast(e, index, dir);
  e.pstate = new_state;
  if (old_state != new_state && new_state == sFW) SetDirFlag(t, dir, kTdCloseInit);

  uint32_t timeout = Timeout(e, t, ctx.timeouts, ctx.options, new_state, index);
  if (!(e.flags & kEfSeenReply)) {
    // The only reply is a RST: not an established connection, delete it at once.
    if (p.tcp_flags & kTcpRst) return Verdict::kKill;
    // Do not renew the timeout on a retransmitted SYN (port reuse could keep it forever).
    if (index == kTcpSynSet && old_state == sSS) return Verdict::kAccept;
    // Picked up mid-stream without a reply yet: no long ESTABLISHED timeout.
    const uint32_t unack_timeout = TimeoutMs(ctx.timeouts, TimeoutClass::kTcpUnack);
    if (new_state == sES && timeout > unack_timeout) timeout = unack_timeout;
  } else if (!(e.flags & kEfAssured) && (old_state == sSR || old_state == sES) &&
             new_state == sES) {
    e.flags |= kEfAssured;  // valid ACK after SYN_RECV, or an answer to a picked-up one
  }
  e.deadline_ms = ctx.now_ms + timeout;
  return Verdict::kAccept;
}

}  // namespace nwfq::ct
