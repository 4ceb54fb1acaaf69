// The TCP transition table, row by row, checked through the whole tracker: a scripted
// connection is driven into each state, then one segment of each flag class is sent in
// each direction (in window), and the resulting TCP state and --ctstate are compared with
// the kernel's tcp_conntracks table (Linux 6.x), including the special cases around it
// (reopen from TIME_WAIT/CLOSE, simultaneous open, ignored packets keep the state).
#include <algorithm>
#include <string>
#include <vector>

#include "conntrack/entry.h"
#include "conntrack/table.h"
#include "gtest/gtest.h"
#include "tests/conntrack/packets.h"

namespace nwfq::ct {
namespace {

using testing::kAck;
using testing::kClient;
using testing::kFinAck;
using testing::kRst;
using testing::kServer;
using testing::kSyn;
using testing::kSynAck;
using testing::Tcp;

constexpr uint32_t kCIsn = 1000;
constexpr uint32_t kSIsn = 5000;

// Drives one connection through scripted segments and remembers each side's next seq.
class Script {
 public:
  Script() : table_(TableOptions{.capacity = 64}) {}

  TrackResult Send(int from, uint8_t flags, uint32_t len = 0) {
    const bool c = from == 0;
    uint32_t seq = c ? c_next_ : s_next_;
    uint32_t ack = (flags & kTcpAck) ? (c ? s_next_ : c_next_) : 0;
    PacketFacts p = c ? Tcp(kClient, 40000, kServer, 80, flags, seq, ack, 64240, len)
                      : Tcp(kServer, 80, kClient, 40000, flags, seq, ack, 65160, len);
    now_ += testing::kMs;
    TrackResult r = table_.Track(p, timeouts_, now_);
    table_.Confirm(r, now_);
    uint32_t adv = len + ((flags & kTcpSyn) ? 1 : 0) + ((flags & kTcpFin) ? 1 : 0);
    if (r.state != State::kInvalid) (c ? c_next_ : s_next_) += adv;
    return r;
  }

  // The TCP state of the (single) connection, or -1 if there is none.
  int StateNow() {
    int state = -1;
    table_.ForEach(now_, [&](const ConnInfo& i) { state = i.proto_state; });
    return state;
  }

  Table table_;
  TimeoutPolicy timeouts_;
  Nanos now_ = 10 * testing::kSec;
  uint32_t c_next_ = kCIsn;
  uint32_t s_next_ = kSIsn;
};

// How to reach each state from nothing: (direction, flags) steps, 0 = client.
struct Step {
  int from;
  uint8_t flags;
};
const std::vector<Step>& PathTo(TcpState s) {
  static const std::vector<Step> kPaths[] = {
      /* NONE */ {},
      /* SYN_SENT */ {{0, kSyn}},
      /* SYN_RECV */ {{0, kSyn}, {1, kSynAck}},
      /* ESTABLISHED */ {{0, kSyn}, {1, kSynAck}, {0, kAck}},
      /* FIN_WAIT */ {{0, kSyn}, {1, kSynAck}, {0, kAck}, {0, kFinAck}},
      /* CLOSE_WAIT */ {{0, kSyn}, {1, kSynAck}, {0, kAck}, {0, kFinAck}, {1, kAck}},
      /* LAST_ACK */
      {{0, kSyn}, {1, kSynAck}, {0, kAck}, {0, kFinAck}, {1, kAck}, {1, kFinAck}},
      /* TIME_WAIT */
      {{0, kSyn}, {1, kSynAck}, {0, kAck}, {0, kFinAck}, {1, kAck}, {1, kFinAck}, {0, kAck}},
      /* CLOSE */ {{0, kSyn}, {1, kSynAck}, {0, kAck}, {0, kRst}},
      /* SYN_SENT2 */ {{0, kSyn}, {1, kSyn}},
  };
  return kPaths[static_cast<int>(s)];
}

constexpr int IV = 100;  // INVALID, state unchanged
constexpr int IG = 101;  // ignored: state unchanged, ctstate per direction
constexpr int RO = 102;  // reopen: old entry deleted, the SYN starts a new SYN_SENT entry
constexpr int sNO = 0, sSS = 1, sSR = 2, sES = 3, sFW = 4, sCW = 5, sLA = 6, sTW = 7, sCL = 8,
              sS2 = 9;

// Expected outcome [dir][flag class][state], from the kernel's table plus tcp_packet().
// Rows per flag class: syn, synack, fin, ack, rst.
constexpr int kExpected[2][5][10] = {
    {
        //           sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        /* syn    */ {sSS, sSS, IG, IG, IG, IG, IG, RO, RO, sS2},
        /* synack */ {IV, IV, sSR, IV, IV, IV, IV, IV, IV, sSR},
        /* fin    */ {IV, IV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, IV},
        /* ack    */ {sES, IV, sES, sES, sCW, sCW, sTW, sTW, sCL, IV},
        /* rst    */ {IV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
    },
    {
        //           sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
        /* syn    */ {IV, sS2, IV, IV, IV, IV, IV, RO, IV, sS2},
        /* synack */ {IV, sSR, IG, IG, IG, IG, IG, IG, IG, sSR},
        /* fin    */ {IV, IV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, IV},
        /* ack    */ {IV, IG, sSR, sES, sCW, sCW, sTW, sTW, sCL, IG},
        /* rst    */ {IV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
    },
};
constexpr uint8_t kProbeFlags[5] = {kSyn, kSynAck, kFinAck, kAck, kRst};
constexpr const char* kProbeNames[5] = {"syn", "synack", "fin", "ack", "rst"};

TEST(TcpTransition, EveryRowMatchesTheKernel) {
  for (int dir = 0; dir < 2; ++dir) {
    for (int cls = 0; cls < 5; ++cls) {
      for (int st = 0; st < 10; ++st) {
        const int want = kExpected[dir][cls][st];
        if (st == sNO && dir == 1) continue;  // no connection: every packet is "original"
        SCOPED_TRACE(std::string(dir ? "REPLY " : "ORIGINAL ") + kProbeNames[cls] + " in " +
                     std::string(TcpStateName(static_cast<TcpState>(st))));
        Script s;
        for (const Step& step : PathTo(static_cast<TcpState>(st))) {
          ASSERT_NE(s.Send(step.from, step.flags).state, State::kInvalid);
        }
        ASSERT_EQ(s.StateNow(), st == sNO ? -1 : st);
        TrackResult r = s.Send(dir, kProbeFlags[cls]);
        if (want == IV) {
          EXPECT_EQ(r.state, State::kInvalid);
          EXPECT_EQ(s.StateNow(), st == sNO ? -1 : st);
        } else if (want == IG) {
          EXPECT_NE(r.state, State::kInvalid);
          EXPECT_EQ(s.StateNow(), st);
        } else if (want == RO) {
          EXPECT_EQ(r.state, State::kNew);
          EXPECT_EQ(r.dir, Dir::kOriginal);
          EXPECT_EQ(s.StateNow(), sSS);
        } else if (cls == 4 && st == sSS) {
          // A RST before any reply deletes the connection (kernel nf_ct_kill); the RST
          // itself passes with its direction's state.
          EXPECT_EQ(r.state, dir ? State::kEstablished : State::kNew);
          EXPECT_EQ(s.StateNow(), -1);
        } else {
          EXPECT_NE(r.state, State::kInvalid);
          EXPECT_EQ(s.StateNow(), want);
        }
      }
    }
  }
}

TEST(TcpTransition, TableLookupMatchesKernelRows) {
  // Spot checks of the raw table for the rows the scenario above cannot reach directly.
  EXPECT_EQ(TcpTransition(0, kTcpNoneSet, TcpState::kEstablished), kTcpIv);
  EXPECT_EQ(TcpTransition(1, kTcpNoneSet, TcpState::kSynSent), kTcpIv);
  EXPECT_EQ(TcpTransition(1, kTcpSynSet, TcpState::kNone), kTcpIv);
  EXPECT_EQ(TcpTransition(0, kTcpAckSet, TcpState::kNone),
            static_cast<uint8_t>(TcpState::kEstablished));
}

TEST(TcpTransition, FlagClassAndValidity) {
  EXPECT_EQ(TcpIndexOf(kTcpRst | kTcpSyn), kTcpRstSet);
  EXPECT_EQ(TcpIndexOf(kTcpSyn | kTcpAck | kTcpPsh), kTcpSynAckSet);
  EXPECT_EQ(TcpIndexOf(kTcpFin), kTcpFinSet);
  EXPECT_EQ(TcpIndexOf(kTcpPsh), kTcpNoneSet);
  EXPECT_TRUE(TcpFlagsValid(kTcpAck | kTcpPsh));
  EXPECT_TRUE(TcpFlagsValid(kTcpFin | kTcpAck | kTcpPsh));
  EXPECT_FALSE(TcpFlagsValid(kTcpFin));  // a bare FIN
  EXPECT_FALSE(TcpFlagsValid(kTcpSyn | kTcpFin));
  EXPECT_FALSE(TcpFlagsValid(kTcpSyn | kTcpRst));
  EXPECT_FALSE(TcpFlagsValid(0));
}

// Every flag byte against the kernel's tcp_valid_flags[] (nf_conntrack_proto_tcp.c), whose
// index is FIN|SYN|RST|PSH|ACK|URG without PSH: these nine combinations, nothing else.
TEST(TcpTransition, ValidFlagsAreTheKernelsNine) {
  const std::vector<int> kernel_valid = {
      kTcpSyn,           kTcpSyn | kTcpUrg, kTcpSyn | kTcpAck,           kTcpRst,
      kTcpRst | kTcpAck, kTcpFin | kTcpAck, kTcpFin | kTcpAck | kTcpUrg, kTcpAck,
      kTcpAck | kTcpUrg};
  for (int flags = 0; flags < 64; ++flags) {  // our flag byte has no ECE/CWR
    const int without_psh = flags & ~kTcpPsh;
    const bool valid =
        std::find(kernel_valid.begin(), kernel_valid.end(), without_psh) != kernel_valid.end();
    EXPECT_EQ(TcpFlagsValid(static_cast<uint8_t>(flags)), valid) << "flags " << flags;
  }
}

}  // namespace
}  // namespace nwfq::ct
