// UDP (unreplied / stream / ASSURED after 2 s), ICMP and ICMPv6 (echo ids, errors as
// RELATED, untracked neighbour discovery) and the generic tracker.
#include <optional>

#include "conntrack/table.h"
#include "gtest/gtest.h"
#include "tests/conntrack/packets.h"
#include "tests/testing/fake_clock.h"

namespace nwfq::ct {
namespace {

using namespace testing;  // NOLINT: packet builders

class Stateless : public ::testing::Test {
 protected:
  TrackResult Send(const PacketFacts& p, bool accept = true) {
    TrackResult r = table_.Track(p, timeouts_, clock_.Now());
    if (accept) table_.Confirm(r, clock_.Now());
    return r;
  }
  std::optional<ConnInfo> Only() {
    std::optional<ConnInfo> out;
    table_.ForEach(clock_.Now(), [&](const ConnInfo& i) { out = i; });
    return out;
  }
  Table table_{TableOptions{.capacity = 1024}};
  TimeoutPolicy timeouts_;
  nwfq::testing::FakeClock clock_{5 * kSec};
};

TEST_F(Stateless, UdpUnrepliedThenStreamAfterTwoSeconds) {
  TrackResult r = Send(Udp(kClient, 5353, kServer, 53));
  EXPECT_EQ(r.state, State::kNew);
  EXPECT_EQ(Only()->expires_in, 30 * kSec);
  r = Send(Udp(kClient, 5353, kServer, 53));
  EXPECT_EQ(r.state, State::kNew);  // no reply yet
  clock_.AdvanceSeconds(0.5);
  r = Send(Udp(kServer, 53, kClient, 5353));
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(r.dir, Dir::kReply);
  EXPECT_FALSE(r.assured);
  EXPECT_EQ(Only()->expires_in, 30 * kSec);  // the first reply still gets "unreplied"
  clock_.AdvanceSeconds(1.0);
  r = Send(Udp(kClient, 5353, kServer, 53));
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_FALSE(r.assured);  // 1.5 s after the first packet
  EXPECT_EQ(Only()->expires_in, 30 * kSec);
  clock_.AdvanceSeconds(0.5);  // exactly 2 s: not yet *after* the stream point
  r = Send(Udp(kClient, 5353, kServer, 53));
  EXPECT_FALSE(r.assured);
  clock_.AdvanceSeconds(0.001);
  r = Send(Udp(kServer, 53, kClient, 5353));
  EXPECT_TRUE(r.assured);
  EXPECT_EQ(Only()->expires_in, 120 * kSec);
}

TEST_F(Stateless, UdpExpires) {
  Send(Udp(kClient, 1000, kServer, 2000));
  clock_.AdvanceSeconds(29.9);
  EXPECT_TRUE(Only().has_value());
  clock_.AdvanceSeconds(0.1);
  EXPECT_FALSE(Only().has_value());
  EXPECT_EQ(Send(Udp(kServer, 2000, kClient, 1000)).state, State::kNew);  // a new flow
}

TEST_F(Stateless, IcmpEcho) {
  TrackResult r = Send(Icmp(kClient, kServer, 8, 77));
  EXPECT_EQ(r.state, State::kNew);
  r = Send(Icmp(kServer, kClient, 0, 77));
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(r.dir, Dir::kReply);
  EXPECT_FALSE(r.assured);  // ICMP is never assured
  r = Send(Icmp(kClient, kServer, 8, 77));
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(r.dir, Dir::kOriginal);
  // Another id is another connection.
  EXPECT_EQ(Send(Icmp(kClient, kServer, 8, 78)).state, State::kNew);
  EXPECT_EQ(table_.size(), 2u);
}

TEST_F(Stateless, EchoReplyWithoutRequestIsInvalid) {
  EXPECT_EQ(Send(Icmp(kServer, kClient, 0, 5)).state, State::kInvalid);
  EXPECT_EQ(table_.size(), 0u);
  // Types without an inverse (router advertisement) are INVALID too.
  EXPECT_EQ(Send(Icmp(kServer, kClient, 9, 0)).state, State::kInvalid);
  EXPECT_EQ(Send(Icmp(kServer, kClient, 40, 0)).state, State::kInvalid);  // > 18
}

TEST_F(Stateless, IcmpErrorQuotingATrackedConnectionIsRelated) {
  PacketFacts q = Udp(kClient, 5000, kServer, 9999);
  Send(q);
  // Port unreachable from the server back to the client quoting the datagram.
  TrackResult r = Send(IcmpError(kServer, kClient, 3, 3, q));
  EXPECT_EQ(r.state, State::kRelated);
  EXPECT_EQ(r.dir, Dir::kReply);
  EXPECT_TRUE(r.entry.valid());
  EXPECT_EQ(table_.size(), 1u);  // the error is no connection of its own
  // An error quoting nothing known is INVALID.
  PacketFacts other = Udp(kClient, 5001, kServer, 9999);
  EXPECT_EQ(Send(IcmpError(kServer, kClient, 3, 3, other)).state, State::kInvalid);
  // ... and so is one sent to someone else than the quoted sender.
  EXPECT_EQ(Send(IcmpError(kServer, V4(198, 18, 0, 9), 3, 3, q)).state, State::kInvalid);
  // An error travelling in the original direction (quoting a reply) is RELATED ORIGINAL.
  PacketFacts reply = Udp(kServer, 9999, kClient, 5000);
  r = Send(IcmpError(kClient, kServer, 3, 3, reply));
  EXPECT_EQ(r.state, State::kRelated);
  EXPECT_EQ(r.dir, Dir::kOriginal);
}

TEST_F(Stateless, IcmpErrorQuotingAnEcho) {
  PacketFacts echo = Icmp(kClient, kServer, 8, 42);
  Send(echo);
  TrackResult r = Send(IcmpError(V4(198, 18, 0, 1), kClient, 11, 0, echo));  // TTL exceeded
  EXPECT_EQ(r.state, State::kRelated);
}

TEST_F(Stateless, Icmpv6EchoAndUntrackedNeighbourDiscovery) {
  auto a = V6(2), b = V6(3);
  EXPECT_EQ(Send(Icmp6(a, b, 128, 9)).state, State::kNew);
  EXPECT_EQ(Send(Icmp6(b, a, 129, 9)).state, State::kEstablished);
  for (uint8_t nd : {133, 134, 135, 136, 130, 131, 132, 143}) {
    TrackResult r = Send(Icmp6(a, b, nd));
    EXPECT_EQ(r.state, State::kUntracked) << int{nd};
    EXPECT_FALSE(r.entry.valid());
  }
  EXPECT_EQ(Send(Icmp6(a, b, 137)).state, State::kInvalid);  // redirect: tracked, no inverse
  EXPECT_EQ(Send(Icmp6(b, a, 129, 10)).state, State::kInvalid);
  EXPECT_EQ(table_.size(), 1u);
  EXPECT_EQ(table_.stats().ignored, 8u);
  PacketFacts q = Udp(a, 1, b, 2, 6);
  Send(q);
  EXPECT_EQ(Send(IcmpError(b, a, 1, 4, q)).state, State::kRelated);
}

TEST_F(Stateless, GenericProtocolsAndGre) {
  PacketFacts esp;
  esp.flow.l4proto = 50;
  esp.flow.src = kClient;
  esp.flow.dst = kServer;
  esp.flow.spi = 1;
  EXPECT_EQ(Send(esp).state, State::kNew);
  EXPECT_EQ(Only()->expires_in, 600 * kSec);
  esp.flow.spi = 2;  // the kernel's generic tracker keys on addresses only
  EXPECT_EQ(Send(esp).state, State::kNew);
  std::swap(esp.flow.src, esp.flow.dst);
  TrackResult r = Send(esp);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_FALSE(r.assured);
  EXPECT_EQ(table_.size(), 1u);

  PacketFacts gre = esp;
  gre.flow.l4proto = 47;
  Send(gre);
  std::swap(gre.flow.src, gre.flow.dst);
  r = Send(gre);
  EXPECT_FALSE(r.assured);  // first reply: SEEN_REPLY is set after it
  // Two connections now (ESP, GRE): look the GRE one up (slot order is hash order).
  EXPECT_EQ(table_.Lookup(gre.flow, clock_.Now())->expires_in, 30 * kSec);
  r = Send(gre);
  EXPECT_TRUE(r.assured);
}

TEST_F(Stateless, IcmpTimeoutChangeAppliesFromTheNextPacket) {
  Send(Icmp(kClient, kServer, 8, 1));
  EXPECT_EQ(Only()->expires_in, 30 * kSec);
  ASSERT_TRUE(timeouts_.Set("icmp", 3).ok());
  EXPECT_EQ(Only()->expires_in, 30 * kSec);  // unchanged until its next packet
  clock_.AdvanceSeconds(1);
  Send(Icmp(kServer, kClient, 0, 1));
  EXPECT_EQ(Only()->expires_in, 3 * kSec);
  clock_.AdvanceSeconds(3);
  EXPECT_FALSE(Only().has_value());
  // New connections get it at once.
  Send(Icmp(kClient, kServer, 8, 2));
  EXPECT_EQ(Only()->expires_in, 3 * kSec);
}

TEST_F(Stateless, PerBindingPolicyOverridesOnlyWhatItSets) {
  TimeoutPolicy vm(&timeouts_);
  ASSERT_TRUE(vm.Set(TimeoutClass::kIcmp, 5).ok());
  table_.Confirm(table_.Track(Icmp(kClient, kServer, 8, 1), vm, clock_.Now()), clock_.Now());
  EXPECT_EQ(Only()->expires_in, 5 * kSec);
  table_.Confirm(table_.Track(Udp(kClient, 1, kServer, 2), vm, clock_.Now()), clock_.Now());
  int udp_seen = 0;
  table_.ForEach(clock_.Now(), [&](const ConnInfo& i) {
    if (i.original.l4proto == 17) {
      ++udp_seen;
      EXPECT_EQ(i.expires_in, 30 * kSec);
    }
  });
  EXPECT_EQ(udp_seen, 1);
}

TEST_F(Stateless, UnassembledFragmentIsInvalid) {
  PacketFacts p = Udp(kClient, 1, kServer, 2);
  p.fragment = true;
  EXPECT_EQ(Send(p).state, State::kInvalid);
}

}  // namespace
}  // namespace nwfq::ct
