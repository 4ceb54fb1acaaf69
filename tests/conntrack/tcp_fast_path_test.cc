// The TCP short path (TcpEstablishedAck) against the full tracker (TcpPacketFull): on random
// connection states and random segments around every window bound, the short path either
// declines without touching anything, or leaves the entry and the window record exactly as
// the full path does, with the same verdict. The kernel fidelity tests check the full path
// (and through Table::Track the short one) against the kernel itself.
#include <cstring>
#include <random>

#include "conntrack/entry.h"
#include "conntrack/tcp_window.h"
#include "gtest/gtest.h"

namespace nwfq::ct {
namespace {

constexpr uint8_t kEstablished = static_cast<uint8_t>(TcpState::kEstablished);

class Random {
 public:
  explicit Random(uint32_t seed) : rng_(seed) {}
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }
  uint32_t Word() { return static_cast<uint32_t>(rng_()); }
  bool OneIn(uint32_t n) { return Below(n) == 0; }
  // `base` moved by a random amount of a random magnitude either way, so that values land
  // on both sides of (and exactly on) the bounds built from it.
  uint32_t Near(uint32_t base, uint32_t span) {
    switch (Below(4)) {
      case 0:
        return base;
      case 1:
        return base + Below(4) - 2;
      case 2:
        return base + Below(2 * span + 1) - span;
      default:
        return base + Below(2 * span * 64 + 1) - span * 64;
    }
  }

 private:
  std::mt19937 rng_;
};

// A connection state as the tracker can reach it: mostly ESTABLISHED with a reply seen and
// both windows known, sometimes not (the short path must then decline).
void RandomState(Random& rnd, Table::Entry& e, TcpConn& t) {
  std::memset(&e, 0, sizeof e);
  std::memset(&t, 0, sizeof t);
  e.l4proto = 6;
  e.flags = static_cast<uint8_t>(kEfUsed | kEfSeenReply | (rnd.OneIn(3) ? 0 : kEfAssured) |
                                 (rnd.OneIn(8) ? kEfLiberal : 0));
  if (rnd.OneIn(10)) e.flags &= static_cast<uint8_t>(~kEfSeenReply);
  e.pstate = rnd.OneIn(8) ? static_cast<uint8_t>(rnd.Below(10)) : kEstablished;
  e.tcp_last = static_cast<uint8_t>(rnd.Below(256));
  e.generation = (rnd.Word() & 0xff000000u) | 0x123456u;  // TCP bits: SACK, liberal, ...
  e.deadline_ms = rnd.Word();
  e.last_seen_ms = rnd.Word();
  t.td_scale = static_cast<uint8_t>(rnd.Below(15) | rnd.Below(15) << 4);
  t.td_flags = static_cast<uint8_t>(rnd.Below(256));
  for (int d = 0; d < 2; ++d) {
    t.td_end[d] = rnd.Word();
    t.td_maxwin[d] = rnd.OneIn(10) ? 0 : 1 + rnd.Below(rnd.OneIn(4) ? 1u << 30 : 65535);
  }
  for (int d = 0; d < 2; ++d) {
    t.td_maxend[d] = rnd.Near(t.td_end[1 - d] + t.td_maxwin[d], 2000);
    t.td_maxack[d] = rnd.Near(t.td_end[1 - d], 70000);
  }
  // The last ACK segment: often one in window (its repeat then counts as a retransmission).
  const int last_dir = (e.tcp_last >> 3) & 1;
  t.last_end = rnd.OneIn(2) ? rnd.Near(t.td_end[last_dir], 100) : rnd.Word();
  t.last_ack = rnd.OneIn(2) ? rnd.Near(t.td_end[1 - last_dir], 100) : rnd.Word();
  t.last_win = static_cast<uint16_t>(rnd.Below(3) == 0 ? 0 : rnd.Word());
}

// A segment from `dir`: mostly an ACK (with PSH/URG at times) whose sequence, ack and SACK
// edge lie near the bounds of checks I-IV; sometimes a repeat of the last ACK segment
// (retransmission counting), sometimes SYN/FIN/RST (the full path's cases).
PacketFacts RandomSegment(Random& rnd, const TcpConn& t, int dir) {
  PacketFacts p;
  p.flow.family = 4;
  p.flow.l4proto = 6;
  const int r = 1 - dir;
  p.tcp_flags =
      static_cast<uint8_t>(kTcpAck | (rnd.OneIn(3) ? kTcpPsh : 0) | (rnd.OneIn(20) ? kTcpUrg : 0));
  if (rnd.OneIn(10)) p.tcp_flags = static_cast<uint8_t>(1u << rnd.Below(6) | kTcpAck);
  p.payload_len = rnd.OneIn(2) ? 0 : rnd.Below(3000);
  const uint32_t window_span = t.td_maxwin[r] != 0 ? t.td_maxwin[r] : 65535;
  switch (rnd.Below(4)) {
    case 0:  // near the sender's data end
      p.tcp_seq = rnd.Near(t.td_end[dir] - p.payload_len, window_span);
      break;
    case 1:  // near the upper bound (check I)
      p.tcp_seq = rnd.Near(t.td_maxend[dir], 3000);
      break;
    case 2:  // near the lower bound (check II)
      p.tcp_seq = rnd.Near(t.td_end[dir] - t.td_maxwin[r] - p.payload_len, 3000);
      break;
    default:
      p.tcp_seq = rnd.Word();
      break;
  }
  // Near the ack's upper bound (check III) or its lower one (IV: the kernel's MAXACKWINDOW).
  const uint32_t max_ack_window = t.td_maxwin[dir] > 66000 ? t.td_maxwin[dir] : 66000;
  p.tcp_ack =
      rnd.OneIn(2) ? rnd.Near(t.td_end[r], 3000) : rnd.Near(t.td_end[r] - max_ack_window, 3000);
  p.tcp_window = static_cast<uint16_t>(rnd.OneIn(8) ? 0 : rnd.Word());
  if (rnd.OneIn(4)) {
    p.tcp_sack_present = true;
    p.tcp_sack_edge = rnd.Near(p.tcp_ack, 3000);
  }
  if (rnd.OneIn(6)) {  // the last ACK segment again (a retransmission, if it was ours)
    p.tcp_flags = kTcpAck;
    p.tcp_ack = t.last_ack;
    p.payload_len = rnd.Below(100);
    p.tcp_seq = t.last_end - p.payload_len;
    p.tcp_window = t.last_win;
  }
  return p;
}

TEST(TcpFastPath, DecidesAsTheFullTracker) {
  Random rnd(20261129);
  TimeoutPolicy timeouts;
  ASSERT_TRUE(timeouts.Set(TimeoutClass::kTcpUnack, 250).ok());  // all timeouts distinct
  int taken = 0, declined = 0, retransmissions = 0;
  int full_verdicts[5] = {};
  for (int i = 0; i < 400000; ++i) {
    Table::Entry e;
    TcpConn t;
    RandomState(rnd, e, t);
    const int dir = static_cast<int>(rnd.Below(2));
    const PacketFacts p = RandomSegment(rnd, t, dir);
    TableOptions options;
    options.tcp_max_retrans = static_cast<uint8_t>(1 + rnd.Below(4));
    options.tcp_be_liberal = rnd.OneIn(10);
    const uint32_t now_ms = rnd.Word();

    Table::Entry fast_e = e, full_e = e;
    TcpConn fast_t = t, full_t = t;
    const bool fast = TcpEstablishedAck(fast_e, fast_t, p, dir, now_ms, timeouts, options);
    const TrackContext full_ctx{p, &full_t, nullptr, timeouts, options, now_ms, dir, false};
    const Verdict full = TcpPacketFull(full_e, full_ctx);
    ++full_verdicts[static_cast<int>(full)];
    if (!fast) {
      ++declined;
      ASSERT_EQ(std::memcmp(&fast_e, &e, sizeof e), 0) << "declined, but changed the entry: " << i;
      ASSERT_EQ(std::memcmp(&fast_t, &t, sizeof t), 0) << "declined, but changed the record: " << i;
      continue;
    }
    ++taken;
    if ((fast_e.tcp_last >> 4) > (e.tcp_last >> 4)) ++retransmissions;
    ASSERT_EQ(full, Verdict::kAccept) << "case " << i;
    ASSERT_EQ(std::memcmp(&fast_e, &full_e, sizeof e), 0) << "entry differs, case " << i;
    ASSERT_EQ(std::memcmp(&fast_t, &full_t, sizeof t), 0) << "record differs, case " << i;
  }
  // The random cases reached both sides of the short path and every full-path outcome.
  EXPECT_GT(taken, 40000);
  EXPECT_GT(declined, 40000);
  EXPECT_GT(retransmissions, 1000);
  EXPECT_GT(full_verdicts[static_cast<int>(Verdict::kIgnore)], 1000);
  EXPECT_GT(full_verdicts[static_cast<int>(Verdict::kInvalid)], 1000);
}

}  // namespace
}  // namespace nwfq::ct
