// SCTP as the kernel tracks it (nf_conntrack_proto_sctp.c): the chunk walk and its basic
// checks, verification tags (RFC 9260 section 8.5), and the state table chunk by chunk.
// The same rules are compared with the kernel itself in KernelFidelity.SctpMatchesTheKernel.
#include "conntrack/sctp.h"

#include <optional>

#include "conntrack/table.h"
#include "gtest/gtest.h"
#include "tests/conntrack/packets.h"
#include "tests/testing/fake_clock.h"

namespace nwfq::ct {
namespace {

using namespace testing;  // NOLINT: packet builders
using nwfq::testing::SctpChunk;
using nwfq::testing::SctpInitChunk;

constexpr uint32_t kClientTag = 0x11111111;  // the client's initiate tag: what the server sends
constexpr uint32_t kServerTag = 0x22222222;  // the server's: what the client sends

class SctpTracking : public ::testing::Test {
 protected:
  TrackResult Send(const PacketFacts& p) {
    TrackResult r = table_.Track(p, timeouts_, clock_.Now());
    table_.Confirm(r, clock_.Now());
    return r;
  }
  TrackResult FromClient(uint32_t vtag, const std::vector<uint8_t>& chunks) {
    return Send(testing::Sctp(kClient, 5000, kServer, 38412, vtag, chunks));
  }
  TrackResult FromServer(uint32_t vtag, const std::vector<uint8_t>& chunks) {
    return Send(testing::Sctp(kServer, 38412, kClient, 5000, vtag, chunks));
  }
  std::optional<ConnInfo> Only() {
    std::optional<ConnInfo> out;
    table_.ForEach(clock_.Now(), [&](const ConnInfo& i) { out = i; });
    return out;
  }
  std::string_view StateName() { return Only() ? Only()->state_name : "none"; }
  void Establish() {
    FromClient(0, SctpInitChunk(kSctpInit, kClientTag));
    FromServer(kClientTag, SctpInitChunk(kSctpInitAck, kServerTag));
    FromClient(kServerTag, SctpChunk(kSctpCookieEcho, 0, {1, 2, 3, 4}));
    FromServer(kClientTag, SctpChunk(kSctpCookieAck));
    ASSERT_EQ(StateName(), "ESTABLISHED");
  }
  static std::vector<uint8_t> Data() { return SctpChunk(kSctpData, 3, std::vector<uint8_t>(16)); }

  Table table_{TableOptions{.capacity = 1024}};
  TimeoutPolicy timeouts_;
  nwfq::testing::FakeClock clock_{5 * kSec};
};

TEST(SctpWalk, BasicChecks) {
  struct Row {
    const char* what;
    std::vector<uint8_t> chunks;
    bool ok;
  };
  const std::vector<Row> rows = {
      {"no chunk", {}, false},
      {"one DATA", SctpChunk(kSctpData, 0, {0, 0, 0, 1}), true},
      {"SACK then DATA", Chunks({SctpChunk(kSctpSack), SctpChunk(kSctpData)}), true},
      {"COOKIE_ECHO first, then DATA", Chunks({SctpChunk(kSctpCookieEcho), SctpChunk(kSctpData)}),
       true},
      {"COOKIE_ECHO after DATA", Chunks({SctpChunk(kSctpData), SctpChunk(kSctpCookieEcho)}), false},
      {"COOKIE_ACK after SACK", Chunks({SctpChunk(kSctpSack), SctpChunk(kSctpCookieAck)}), false},
      {"INIT then anything", Chunks({SctpInitChunk(kSctpInit, 1), SctpChunk(kSctpData)}), false},
      {"SHUTDOWN_COMPLETE bundled", Chunks({SctpChunk(kSctpShutdownComplete), SctpChunk(3)}),
       false},
      {"a chunk of length 0", {kSctpData, 0, 0, 0}, false},
      {"a partial chunk header after one", Chunks({SctpChunk(kSctpData), {kSctpSack, 0}}), true},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    EXPECT_EQ(WalkSctpChunks(row.chunks.data(), row.chunks.size(), row.chunks.size()).ok, row.ok);
  }
}

TEST(SctpWalk, KeepsStateChunksInOrderWithFlagsAndTheInitTag) {
  const std::vector<uint8_t> good =
      Chunks({SctpChunk(kSctpSack), SctpChunk(kSctpHeartbeat, 0, {0, 1, 0, 8, 9, 9, 9, 9}),
              SctpChunk(kSctpAbort, 1), SctpChunk(200)});
  SctpChunks c = WalkSctpChunks(good.data(), good.size(), good.size());
  EXPECT_TRUE(c.ok);
  EXPECT_TRUE(c.stateless);  // SACK, type 200
  ASSERT_EQ(c.count, 2);
  EXPECT_EQ(c.kept[0], kSctpHeartbeat);
  EXPECT_EQ(c.kept[1], kSctpAbort | SctpChunks::kFlagT);
  EXPECT_EQ(c.map, (1u << kSctpSack) | (1u << kSctpHeartbeat) | (1u << kSctpAbort));

  // More state-changing chunks than kept (DIVERGENCES S1): the first 8, and it says so.
  std::vector<uint8_t> many;
  for (int i = 0; i < 9; ++i) many = Chunks({many, SctpChunk(kSctpHeartbeat)});
  c = WalkSctpChunks(many.data(), many.size(), many.size());
  EXPECT_TRUE(c.ok && c.overflow);
  EXPECT_EQ(c.count, SctpChunks::kKept);

  const std::vector<uint8_t> init = SctpInitChunk(kSctpInitAck, 0xdeadbeef);
  c = WalkSctpChunks(init.data(), init.size(), init.size());
  EXPECT_TRUE(c.ok && c.init_header);
  EXPECT_EQ(c.init_tag, 0xdeadbeefu);
  // Cut short: a truncated copy says so; a packet that really ends there has no header.
  c = WalkSctpChunks(init.data(), 10, init.size());
  EXPECT_TRUE(c.truncated);
  c = WalkSctpChunks(init.data(), 10, 10);
  EXPECT_FALSE(c.init_header);
  EXPECT_FALSE(c.truncated);
  c = WalkSctpChunks(init.data(), 2, 2);  // a packet ending inside the first chunk header
  EXPECT_FALSE(c.ok || c.truncated);
}

TEST_F(SctpTracking, FourWayHandshakeShutdownAndTimeouts) {
  EXPECT_EQ(FromClient(0, Data()).state, State::kInvalid);  // DATA cannot start one
  EXPECT_EQ(FromClient(7, SctpInitChunk(kSctpInit, kClientTag)).state,
            State::kInvalid);  // section 8.5.1 (A): an INIT's tag is 0
  EXPECT_EQ(FromClient(0, SctpInitChunk(kSctpInit, kClientTag)).state, State::kNew);
  EXPECT_EQ(StateName(), "CLOSED");
  EXPECT_EQ(Only()->expires_in, 10 * kSec);
  EXPECT_EQ(FromServer(kServerTag, SctpInitChunk(kSctpInitAck, kServerTag)).state,
            State::kInvalid);  // must carry the client's initiate tag
  EXPECT_EQ(FromServer(kClientTag, SctpInitChunk(kSctpInitAck, kServerTag)).state,
            State::kEstablished);
  EXPECT_EQ(StateName(), "COOKIE_WAIT");
  EXPECT_EQ(Only()->expires_in, 3 * kSec);
  EXPECT_EQ(FromClient(kClientTag, SctpChunk(kSctpCookieEcho)).state,
            State::kInvalid);  // (D): the tag of the INIT_ACK
  EXPECT_EQ(FromClient(kServerTag, SctpChunk(kSctpCookieEcho)).state, State::kEstablished);
  EXPECT_EQ(StateName(), "COOKIE_ECHOED");
  const TrackResult r = FromServer(kClientTag, Chunks({SctpChunk(kSctpCookieAck), Data()}));
  EXPECT_TRUE(r.assured);
  EXPECT_EQ(StateName(), "ESTABLISHED");
  EXPECT_EQ(Only()->expires_in, 210 * kSec);

  EXPECT_EQ(FromClient(kServerTag, Data()).state, State::kEstablished);
  EXPECT_EQ(FromClient(kClientTag, Data()).state, State::kInvalid);  // the wrong side's tag
  EXPECT_EQ(FromClient(kServerTag, Chunks({Data(), SctpChunk(kSctpCookieEcho)})).state,
            State::kInvalid);  // COOKIE_ECHO bundled after DATA

  FromClient(kServerTag, SctpChunk(kSctpShutdown, 0, {0, 0, 0, 1}));
  EXPECT_EQ(StateName(), "SHUTDOWN_SENT");
  FromServer(kClientTag, SctpChunk(kSctpShutdownAck));
  EXPECT_EQ(StateName(), "SHUTDOWN_ACK_SENT");
  // SHUTDOWN_COMPLETE: own tag, or with the T flag the peer's.
  EXPECT_EQ(FromClient(kClientTag, SctpChunk(kSctpShutdownComplete)).state, State::kInvalid);
  EXPECT_EQ(FromClient(kClientTag, SctpChunk(kSctpShutdownComplete, 1)).state, State::kEstablished);
  EXPECT_EQ(StateName(), "CLOSED");
  EXPECT_EQ(Only()->expires_in, 10 * kSec);
}

TEST_F(SctpTracking, AbortTagRulesAndOutOfTheBluePackets) {
  EXPECT_EQ(FromClient(0, SctpChunk(kSctpAbort)).state, State::kInvalid);  // OOTB ABORT
  EXPECT_EQ(FromClient(0, SctpChunk(kSctpCookieAck)).state, State::kInvalid);
  Establish();
  EXPECT_EQ(FromServer(kServerTag, SctpChunk(kSctpAbort)).state, State::kInvalid);
  EXPECT_EQ(StateName(), "ESTABLISHED");
  EXPECT_EQ(FromServer(kServerTag, SctpChunk(kSctpAbort, 1)).state, State::kEstablished);
  EXPECT_EQ(StateName(), "CLOSED");
}

TEST_F(SctpTracking, RetransmittedInitInClosedDoesNotRenewTheTimeout) {
  FromClient(0, SctpInitChunk(kSctpInit, kClientTag));
  clock_.AdvanceSeconds(4);
  EXPECT_EQ(FromClient(0, SctpInitChunk(kSctpInit, kClientTag)).state, State::kNew);
  EXPECT_EQ(Only()->expires_in, 6 * kSec);  // 10 s from the first INIT, not from this one
}

// A peer that restarted (or another path) sends a HEARTBEAT with a tag the connection does
// not know: it passes once without renewing the timeout; a HEARTBEAT_ACK from the other
// side with a new tag then replaces the tags.
TEST_F(SctpTracking, HeartbeatWithAnUnknownTagPassesOnceAndTheAckAdoptsIt) {
  Establish();
  clock_.AdvanceSeconds(10);
  const std::vector<uint8_t> hb = SctpChunk(kSctpHeartbeat, 0, {0, 1, 0, 8, 1, 2, 3, 4});
  EXPECT_EQ(FromClient(0x7777, hb).state, State::kEstablished);
  EXPECT_EQ(Only()->expires_in, 200 * kSec);                               // not renewed
  EXPECT_EQ(FromClient(0x7777, Chunks({hb, hb})).state, State::kInvalid);  // once per packet
  EXPECT_EQ(FromServer(0x8888, SctpChunk(kSctpHeartbeatAck, 0, {0, 1, 0, 8, 1, 2, 3, 4})).state,
            State::kEstablished);
  EXPECT_EQ(Only()->expires_in, 210 * kSec);
  // The server's side now expects 0x8888 and the client's tag is unknown (0): a HEARTBEAT
  // from the client learns it.
  EXPECT_EQ(FromServer(0x8888, Data()).state, State::kEstablished);
  EXPECT_EQ(FromServer(kClientTag, Data()).state, State::kInvalid);
  EXPECT_EQ(FromClient(0x9999, hb).state, State::kEstablished);
  EXPECT_EQ(FromClient(0x9999, Data()).state, State::kEstablished);
}

TEST_F(SctpTracking, HeartbeatStartsAnEntryOfItsOwn) {
  // A HEARTBEAT on a path the table has not seen (multihoming): HEARTBEAT_SENT, and its
  // answer makes it ESTABLISHED and ASSURED.
  const std::vector<uint8_t> hb = SctpChunk(kSctpHeartbeat, 0, {0, 1, 0, 8, 1, 2, 3, 4});
  EXPECT_EQ(FromClient(kServerTag, hb).state, State::kNew);
  EXPECT_EQ(StateName(), "HEARTBEAT_SENT");
  EXPECT_EQ(Only()->expires_in, 30 * kSec);
  const TrackResult r =
      FromServer(kClientTag, SctpChunk(kSctpHeartbeatAck, 0, {0, 1, 0, 8, 1, 2, 3, 4}));
  EXPECT_TRUE(r.assured);
  EXPECT_EQ(StateName(), "ESTABLISHED");
  EXPECT_EQ(FromClient(kServerTag, Data()).state, State::kEstablished);
  EXPECT_EQ(FromServer(kClientTag, Data()).state, State::kEstablished);
}

TEST_F(SctpTracking, InitCollisionNeedsMatchingTags) {
  // Both sides send INIT (RFC 9260 5.2.1); an INIT_ACK must then carry the tag the other
  // side's INIT announced.
  FromClient(0, SctpInitChunk(kSctpInit, kClientTag));
  EXPECT_EQ(FromServer(0, SctpInitChunk(kSctpInit, kServerTag)).state, State::kEstablished);
  EXPECT_EQ(FromClient(kServerTag, SctpInitChunk(kSctpInitAck, 0x3333)).state, State::kInvalid);
  EXPECT_EQ(FromClient(kServerTag, SctpInitChunk(kSctpInitAck, kClientTag)).state,
            State::kEstablished);
  EXPECT_EQ(StateName(), "CLOSED");  // the kernel's table: INIT_ACK in ORIGINAL keeps CLOSED
}

TEST_F(SctpTracking, RecordsAreReturnedWithTheirConnections) {
  Establish();
  const size_t resident = table_.ResidentBytes();
  EXPECT_EQ(Table::kSctpRecordBytes, 8u);
  table_.Flush();
  EXPECT_LT(table_.ResidentBytes(), resident);
  Establish();  // a fresh record: zeroed tags, not the old ones
  EXPECT_EQ(FromClient(kServerTag, Data()).state, State::kEstablished);
}

}  // namespace
}  // namespace nwfq::ct
