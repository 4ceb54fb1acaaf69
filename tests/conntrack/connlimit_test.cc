// connlimit counting: per source address, per rule instance, TIME_WAIT/CLOSE not counted,
// refused flows forgotten (default) or sticky (kernel compatibility), idle limit.
#include "conntrack/connlimit.h"

#include "conntrack/table.h"
#include "gtest/gtest.h"
#include "tests/conntrack/packets.h"
#include "tests/testing/fake_clock.h"

namespace nwfq::ct {
namespace {

using namespace testing;  // NOLINT: packet builders

// A rule "drop if more than `limit` connections from this source" in front of an accept:
// counts, and confirms the connection only when the packet is accepted.
class Rule : public ::testing::Test {
 protected:
  // Returns true if the packet is accepted.
  bool Pass(const PacketFacts& p, ConnLimiter& limiter, uint32_t limit = 1) {
    TrackResult r = table_.Track(p, timeouts_, clock_.Now());
    uint32_t n = limiter.Count(p.flow, r, table_, clock_.Now());
    last_count_ = n;
    if (n > limit) return false;  // dropped: a tentative entry is not confirmed
    table_.Confirm(r, clock_.Now());
    return true;
  }
  Table table_{TableOptions{.capacity = 1024}};
  TimeoutPolicy timeouts_;
  nwfq::testing::FakeClock clock_{10 * kSec};
  uint32_t last_count_ = 0;
};

TEST_F(Rule, SecondPingRefusedFirstKeepsItsSlot) {
  ConnLimiter limiter;
  auto peer2 = V4(198, 18, 0, 4);
  EXPECT_TRUE(Pass(Icmp(kClient, kServer, 8, 1), limiter));
  EXPECT_EQ(last_count_, 1u);
  EXPECT_TRUE(Pass(Icmp(kServer, kClient, 0, 1), limiter));  // counted by the server's key
  EXPECT_FALSE(Pass(Icmp(kClient, peer2, 8, 2), limiter));   // 2 > 1
  EXPECT_EQ(last_count_, 2u);
  // The first ping goes on: its own connection is counted once (semantics i.1, default).
  clock_.AdvanceSeconds(1);
  EXPECT_TRUE(Pass(Icmp(kClient, kServer, 8, 1), limiter));
  EXPECT_EQ(last_count_, 1u);
  // Stop ping 1: after the ICMP timeout its slot frees.
  clock_.AdvanceSeconds(29);
  EXPECT_FALSE(Pass(Icmp(kClient, peer2, 8, 3), limiter));
  clock_.AdvanceSeconds(1.01);
  EXPECT_TRUE(Pass(Icmp(kClient, peer2, 8, 3), limiter));
}

TEST_F(Rule, KernelCompatStickyStallsTheUnassuredFlow) {
  ConnLimiter limiter(ConnLimiterOptions{.kernel_compat_sticky = true});
  auto peer2 = V4(198, 18, 0, 4);
  EXPECT_TRUE(Pass(Icmp(kClient, kServer, 8, 1), limiter));
  EXPECT_FALSE(Pass(Icmp(kClient, peer2, 8, 2), limiter));
  // As on kernel 6.18: the first (never assured) ping now counts 2 as well.
  clock_.AdvanceSeconds(1);
  EXPECT_FALSE(Pass(Icmp(kClient, kServer, 8, 1), limiter));
  EXPECT_EQ(last_count_, 2u);
  // When it stops and expires, the next new ping collects both stale entries.
  clock_.AdvanceSeconds(30.5);
  EXPECT_TRUE(Pass(Icmp(kClient, peer2, 8, 3), limiter));
  EXPECT_EQ(last_count_, 1u);
}

TEST_F(Rule, TcpInTimeWaitIsNotCounted) {
  ConnLimiter limiter;
  auto c = [&](uint16_t sp, uint8_t f, uint32_t seq, uint32_t ack) {
    return Pass(Tcp(kClient, sp, kServer, 22, f, seq, ack), limiter);
  };
  auto s = [&](uint16_t dp, uint8_t f, uint32_t seq, uint32_t ack) {
    return Pass(Tcp(kServer, 22, kClient, dp, f, seq, ack), limiter, 100);
  };
  EXPECT_TRUE(c(1000, kSyn, 1, 0));
  EXPECT_TRUE(s(1000, kSynAck, 50, 2));
  EXPECT_TRUE(c(1000, kAck, 2, 51));
  EXPECT_FALSE(c(1001, kSyn, 500, 0));  // second concurrent connection refused
  // Close the first: FIN both ways, last ACK -> TIME_WAIT.
  EXPECT_TRUE(c(1000, kFinAck, 2, 51));
  EXPECT_TRUE(s(1000, kAck, 51, 3));
  EXPECT_TRUE(s(1000, kFinAck, 51, 3));
  EXPECT_TRUE(c(1000, kAck, 3, 52));
  EXPECT_TRUE(c(1001, kSyn, 500, 0));  // TIME_WAIT does not count
  EXPECT_EQ(last_count_, 1u);
}

TEST_F(Rule, IdleLimitStopsCountingIdleConnections) {
  ConnLimiter limiter(ConnLimiterOptions{.idle_limit_seconds = 60});
  EXPECT_TRUE(Pass(Udp(kClient, 1, kServer, 2), limiter));
  EXPECT_TRUE(Pass(Udp(kServer, 2, kClient, 1), limiter, 100));
  clock_.AdvanceSeconds(3);
  EXPECT_TRUE(Pass(Udp(kClient, 1, kServer, 2), limiter));  // assured stream, 120 s
  EXPECT_FALSE(Pass(Udp(kClient, 3, kServer, 4), limiter));
  clock_.AdvanceSeconds(61);  // flow 1 idle for 61 s, still alive (stream timeout 120)
  EXPECT_TRUE(Pass(Udp(kClient, 3, kServer, 4), limiter));
  EXPECT_EQ(last_count_, 1u);
}

TEST_F(Rule, CountsPerSourceAddress) {
  ConnLimiter limiter;
  auto other = V4(198, 18, 0, 9);
  EXPECT_TRUE(Pass(Udp(kClient, 1, kServer, 2), limiter));
  EXPECT_TRUE(Pass(Udp(other, 1, kServer, 2), limiter));
  EXPECT_EQ(last_count_, 1u);
  EXPECT_EQ(limiter.Remembered(), 2u);
}

}  // namespace
}  // namespace nwfq::ct
