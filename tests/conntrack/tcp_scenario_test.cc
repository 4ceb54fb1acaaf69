// TCP scenarios with a FakeClock: what --ctstate/--ctdir each packet sees, the connection's
// state and timeout, as the kernel's conntrack (Linux 6.x, tcp_loose=1, be_liberal=0).
#include <optional>

#include "conntrack/table.h"
#include "gtest/gtest.h"
#include "tests/conntrack/packets.h"
#include "tests/testing/fake_clock.h"

namespace nwfq::ct {
namespace {

using namespace testing;  // NOLINT: packet builders

class TcpScenario : public ::testing::Test {
 protected:
  TrackResult Send(const PacketFacts& p, bool accept = true) {
    TrackResult r = table_.Track(p, timeouts_, clock_.Now());
    if (accept) table_.Confirm(r, clock_.Now());
    return r;
  }
  // Client -> server / server -> client segments of the one connection under test.
  TrackResult C(uint8_t flags, uint32_t seq, uint32_t ack, uint32_t len = 0) {
    return Send(Tcp(kClient, 40000, kServer, 80, flags, seq, ack, 64240, len));
  }
  TrackResult S(uint8_t flags, uint32_t seq, uint32_t ack, uint32_t len = 0) {
    return Send(Tcp(kServer, 80, kClient, 40000, flags, seq, ack, 65160, len));
  }
  std::optional<ConnInfo> Only() {
    std::optional<ConnInfo> out;
    table_.ForEach(clock_.Now(), [&](const ConnInfo& i) { out = i; });
    return out;
  }
  void Handshake() {
    C(kSyn, 1000, 0);
    S(kSynAck, 5000, 1001);
    C(kAck, 1001, 5001);
  }

  TableOptions options_{.capacity = 1024};
  Table table_{options_};
  TimeoutPolicy timeouts_;
  nwfq::testing::FakeClock clock_{100 * kSec};
};

TEST_F(TcpScenario, ThreeWayHandshake) {
  TrackResult r = C(kSyn, 1000, 0);
  EXPECT_EQ(r.state, State::kNew);
  EXPECT_EQ(r.dir, Dir::kOriginal);
  EXPECT_TRUE(r.tentative);
  EXPECT_EQ(Only()->state_name, "SYN_SENT");
  EXPECT_EQ(Only()->expires_in, 120 * kSec);

  clock_.AdvanceSeconds(0.01);
  r = S(kSynAck, 5000, 1001);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(r.dir, Dir::kReply);
  EXPECT_FALSE(r.tentative);
  EXPECT_EQ(Only()->state_name, "SYN_RECV");
  EXPECT_EQ(Only()->expires_in, 60 * kSec);
  EXPECT_FALSE(r.assured);

  r = C(kAck, 1001, 5001);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(r.dir, Dir::kOriginal);
  EXPECT_TRUE(r.assured);
  EXPECT_EQ(Only()->state_name, "ESTABLISHED");
  EXPECT_EQ(Only()->expires_in, 432000 * kSec);

  // Data: unacknowledged data caps the timeout at 300 s until it is acked.
  r = C(kPshAck, 1001, 5001, 100);
  EXPECT_EQ(Only()->expires_in, 300 * kSec);
  r = S(kAck, 5001, 1101);
  EXPECT_EQ(Only()->expires_in, 432000 * kSec);
  EXPECT_EQ(table_.stats().new_conns, 1u);
}

TEST_F(TcpScenario, SimultaneousOpen) {
  EXPECT_EQ(C(kSyn, 1000, 0).state, State::kNew);
  TrackResult r = S(kSyn, 5000, 0);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(r.dir, Dir::kReply);
  EXPECT_EQ(Only()->state_name, "SYN_SENT2");
  r = C(kSynAck, 1000, 5001);
  EXPECT_EQ(Only()->state_name, "SYN_RECV");
  r = S(kSynAck, 5000, 1001);
  EXPECT_NE(r.state, State::kInvalid);
  r = S(kAck, 5001, 1001);
  EXPECT_EQ(Only()->state_name, "ESTABLISHED");
}

TEST_F(TcpScenario, RstThenAckIsStillEstablishedInClose) {
  Handshake();
  TrackResult r = C(kRst, 1001, 0);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(Only()->state_name, "CLOSE");
  EXPECT_EQ(Only()->expires_in, 10 * kSec);
  r = S(kAck, 5001, 1001);  // semantics i.11: an ACK after the RST is ESTABLISHED
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(Only()->state_name, "CLOSE");
  clock_.AdvanceSeconds(10.5);
  EXPECT_FALSE(Only().has_value());
}

TEST_F(TcpScenario, RstAsOnlyReplyDeletesTheConnection) {
  C(kSyn, 1000, 0);
  TrackResult r = S(kRstAck, 0, 1001);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(r.dir, Dir::kReply);
  EXPECT_FALSE(Only().has_value());
}

TEST_F(TcpScenario, FinBothWaysReachesTimeWait) {
  Handshake();
  C(kFinAck, 1001, 5001);
  EXPECT_EQ(Only()->state_name, "FIN_WAIT");
  S(kAck, 5001, 1002);
  EXPECT_EQ(Only()->state_name, "CLOSE_WAIT");
  S(kFinAck, 5001, 1002);
  EXPECT_EQ(Only()->state_name, "LAST_ACK");
  TrackResult r = C(kAck, 1002, 5002);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_EQ(Only()->state_name, "TIME_WAIT");
  EXPECT_EQ(Only()->expires_in, 120 * kSec);
  // A new SYN on the same tuple reopens: the old entry goes, the SYN is NEW.
  clock_.AdvanceSeconds(1);
  r = C(kSyn, 90000, 0);
  EXPECT_EQ(r.state, State::kNew);
  EXPECT_EQ(Only()->state_name, "SYN_SENT");
}

TEST_F(TcpScenario, RetransmittedSynDoesNotRenewTheTimeout) {
  C(kSyn, 1000, 0);
  clock_.AdvanceSeconds(50);
  TrackResult r = C(kSyn, 1000, 0);
  EXPECT_EQ(r.state, State::kNew);
  EXPECT_FALSE(r.tentative);
  EXPECT_EQ(Only()->expires_in, 70 * kSec);
}

TEST_F(TcpScenario, RetransmissionsShortenTheTimeout) {
  Handshake();
  EXPECT_EQ(Only()->expires_in, 432000 * kSec);
  // The same ACK segment again and again: from the 3rd repetition (tcp_max_retrans) the
  // connection gets the 300 s "retrans" timeout although nothing is unacknowledged.
  C(kAck, 1001, 5001);  // repetition 1
  C(kAck, 1001, 5001);  // 2
  EXPECT_EQ(Only()->expires_in, 432000 * kSec);
  C(kAck, 1001, 5001);  // 3
  EXPECT_EQ(Only()->expires_in, 300 * kSec);
  // Any other segment resets the count.
  S(kAck, 5001, 1001);
  EXPECT_EQ(Only()->expires_in, 432000 * kSec);
}

TEST_F(TcpScenario, OutOfWindowDataIsInvalid) {
  Handshake();
  // Far beyond what the server announced (window 65160, no scaling).
  TrackResult r = C(kPshAck, 1001 + 10'000'000, 5001, 100);
  EXPECT_EQ(r.state, State::kInvalid);
  // An ACK for data the server never sent.
  r = C(kAck, 1001, 5001 + 1'000'000);
  EXPECT_EQ(r.state, State::kInvalid);
  EXPECT_EQ(Only()->state_name, "ESTABLISHED");
}

TEST_F(TcpScenario, BeLiberalAcceptsOutOfWindow) {
  Table liberal(TableOptions{.capacity = 64, .tcp_be_liberal = true});
  auto send = [&](const PacketFacts& p) {
    TrackResult r = liberal.Track(p, timeouts_, clock_.Now());
    liberal.Confirm(r, clock_.Now());
    return r;
  };
  send(Tcp(kClient, 40000, kServer, 80, kSyn, 1000, 0));
  send(Tcp(kServer, 80, kClient, 40000, kSynAck, 5000, 1001));
  send(Tcp(kClient, 40000, kServer, 80, kAck, 1001, 5001));
  TrackResult r =
      send(Tcp(kClient, 40000, kServer, 80, kPshAck, 1001 + 10'000'000, 5001, 64240, 100));
  EXPECT_EQ(r.state, State::kEstablished);
}

TEST_F(TcpScenario, LoosePicksUpABareAckButNotABareFin) {
  TrackResult r = C(kAck, 777, 888);
  EXPECT_EQ(r.state, State::kNew);  // semantics i.11
  EXPECT_EQ(Only()->state_name, "ESTABLISHED");
  EXPECT_EQ(Only()->expires_in, 300 * kSec);  // no reply yet: capped at "unacknowledged"
  r = S(kAck, 888, 777);
  EXPECT_EQ(r.state, State::kEstablished);
  EXPECT_FALSE(r.assured);  // the reply bit is set only after this packet
  r = C(kAck, 777, 888);
  EXPECT_TRUE(r.assured);  // "a valid answer for a picked up connection"
  EXPECT_EQ(Only()->expires_in, 432000 * kSec);

  Table strict(TableOptions{.capacity = 64, .tcp_loose = false});
  r = strict.Track(Tcp(kClient, 40001, kServer, 80, kAck, 1, 1), timeouts_, clock_.Now());
  EXPECT_EQ(r.state, State::kInvalid);
  r = strict.Track(Tcp(kClient, 40001, kServer, 80, kTcpFin, 1, 0), timeouts_, clock_.Now());
  EXPECT_EQ(r.state, State::kInvalid);
  r = table_.Track(Tcp(kClient, 40002, kServer, 80, kTcpFin, 1, 0), timeouts_, clock_.Now());
  EXPECT_EQ(r.state, State::kInvalid);
}

TEST_F(TcpScenario, DroppedFirstPacketLeavesNoState) {
  TrackResult r = Send(Tcp(kClient, 40000, kServer, 80, kSyn, 1000, 0), /*accept=*/false);
  EXPECT_EQ(r.state, State::kNew);
  // The SYN/ACK answering a SYN that was dropped finds nothing and is not a valid start.
  r = S(kSynAck, 5000, 1001);
  EXPECT_EQ(r.state, State::kInvalid);
  EXPECT_FALSE(Only().has_value());
  EXPECT_EQ(table_.size(), 0u);
}

TEST_F(TcpScenario, DroppedPacketOfExistingConnectionStillUpdatesIt) {
  C(kSyn, 1000, 0);
  Send(Tcp(kServer, 80, kClient, 40000, kSynAck, 5000, 1001, 65160), /*accept=*/false);
  EXPECT_EQ(Only()->state_name, "SYN_RECV");
}

TEST_F(TcpScenario, BadChecksumIsInvalid) {
  PacketFacts p = Tcp(kClient, 40000, kServer, 80, kSyn, 1000, 0);
  p.bad_checksum = true;
  EXPECT_EQ(Send(p).state, State::kInvalid);
  Table nocheck(TableOptions{.capacity = 64, .check_checksums = false});
  EXPECT_EQ(nocheck.Track(p, timeouts_, clock_.Now()).state, State::kNew);
}

TEST_F(TcpScenario, SackEdgeCountsOnlyWhenPermitted) {
  auto with_sack = [](PacketFacts p) {
    p.tcp_sack_perm = true;
    return p;
  };
  auto sacking = [](PacketFacts p, uint32_t edge) {
    p.tcp_sack_present = true;
    p.tcp_sack_edge = edge;
    return p;
  };
  // SACK permitted both ways: a SACK edge beyond anything the server sent is INVALID
  // (kernel: "ACK is over upper bound"), although the ACK number itself is fine.
  Send(with_sack(Tcp(kClient, 40000, kServer, 80, kSyn, 1000, 0)));
  Send(with_sack(Tcp(kServer, 80, kClient, 40000, kSynAck, 5000, 1001)));
  C(kAck, 1001, 5001);
  TrackResult r = Send(sacking(Tcp(kClient, 40000, kServer, 80, kAck, 1001, 5001), 9'000'000));
  EXPECT_EQ(r.state, State::kInvalid);
  r = Send(sacking(Tcp(kClient, 40000, kServer, 80, kAck, 1001, 5001), 5001));
  EXPECT_EQ(r.state, State::kEstablished);

  // Not permitted: the SACK option is not looked at.
  Table plain(options_);
  auto send = [&](const PacketFacts& p) {
    TrackResult res = plain.Track(p, timeouts_, clock_.Now());
    plain.Confirm(res, clock_.Now());
    return res;
  };
  send(Tcp(kClient, 40000, kServer, 80, kSyn, 1000, 0));
  send(Tcp(kServer, 80, kClient, 40000, kSynAck, 5000, 1001));
  send(Tcp(kClient, 40000, kServer, 80, kAck, 1001, 5001));
  r = send(sacking(Tcp(kClient, 40000, kServer, 80, kAck, 1001, 5001), 9'000'000));
  EXPECT_EQ(r.state, State::kEstablished);
}

// tcp_options() resets a side's window scale only when it parses options: a SYN re-sent
// with a higher sequence number and no options keeps the scale of the first SYN (checked
// against the kernel in KernelFidelity, "tcp SYN re-sent without options ...").
TEST_F(TcpScenario, OptionlessSynKeepsTheWindowScale) {
  auto options = [](PacketFacts p, int ws) {
    p.tcp_no_options = ws < 0;
    if (ws >= 0) p.tcp_wscale = static_cast<uint8_t>(ws);
    return p;
  };
  for (const bool resend_has_options : {false, true}) {
    SCOPED_TRACE(resend_has_options ? "re-sent SYN with options, no scale" : "no options");
    Table t(options_);
    auto send = [&](const PacketFacts& p) {
      TrackResult res = t.Track(p, timeouts_, clock_.Now());
      t.Confirm(res, clock_.Now());
      return res;
    };
    send(options(Tcp(kClient, 40000, kServer, 80, kSyn, 1000, 0), 7));
    // With options but no window scale, tcp_options() does reset the scale.
    send(options(Tcp(kClient, 40000, kServer, 80, kSyn, 2000, 0), resend_has_options ? 0xff : -1));
    send(options(Tcp(kServer, 80, kClient, 40000, kSynAck, 5000, 2001), 7));
    send(Tcp(kClient, 40000, kServer, 80, kAck, 2001, 5001));
    // 1 MB ahead: inside the client's window only if it is scaled (64240 << 7).
    const TrackResult r =
        send(Tcp(kServer, 80, kClient, 40000, kPshAck, 5001 + 1'000'000, 2001, 65160, 100));
    EXPECT_EQ(r.state, resend_has_options ? State::kInvalid : State::kEstablished);
  }
}

// BE_LIBERAL is per side (checked against the kernel in KernelFidelity, "tcp pickup,
// resync on an ignored SYN, liberal per side"): a connection picked up mid-stream is
// liberal both ways; the SYN/ACK answering a SYN that was ignored resyncs the SYN's side
// from that SYN, without liberal mode; the other side keeps it.
TEST_F(TcpScenario, ResyncOnAnIgnoredSynEndsLiberalModeForThatSideOnly) {
  C(kAck, 7000, 8000);  // mid-stream pickup
  S(kAck, 8000, 7000);
  EXPECT_EQ(C(kSyn, 20000, 0).state, State::kEstablished);  // ignored
  S(kSynAck, 30000, 20001);
  EXPECT_EQ(Only()->state_name, "SYN_RECV");
  C(kAck, 20001, 30001);
  EXPECT_EQ(C(kPshAck, 20001 + 5'000'000, 30001, 100).state, State::kInvalid);
  EXPECT_EQ(S(kPshAck, 30001 + 5'000'000, 20001, 100).state, State::kEstablished);
}

TEST_F(TcpScenario, Ipv6Handshake) {
  auto c6 = V6(2), s6 = V6(3);
  auto six = [](PacketFacts p) {
    p.flow.family = 6;
    return p;
  };
  EXPECT_EQ(Send(six(Tcp(c6, 1234, s6, 22, kSyn, 1, 0))).state, State::kNew);
  EXPECT_EQ(Send(six(Tcp(s6, 22, c6, 1234, kSynAck, 9, 2))).dir, Dir::kReply);
  TrackResult r = Send(six(Tcp(c6, 1234, s6, 22, kAck, 2, 10)));
  EXPECT_TRUE(r.assured);
  EXPECT_EQ(Only()->original.family, 6);
}

}  // namespace
}  // namespace nwfq::ct
