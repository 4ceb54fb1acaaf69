// Plain facts exchanged between the engine and the connection tracker. conntrack/ never
// includes engine headers: the engine's packet parser fills a PacketFacts, the tracker
// answers with a TrackResult.
#pragma once

#include <array>
#include <cstdint>

namespace nwfq::ct {

// Monotonic time in nanoseconds. Wall clock for nwfqd, capture timestamps for replay.
using Nanos = int64_t;
inline constexpr Nanos kNanosPerSecond = 1'000'000'000;

// The source of time. Only the real seams get an interface: see MonotonicClock
// (conntrack/clock.h) and FakeClock (tests/testing/fake_clock.h).
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Nanos Now() const = 0;
};

// Connection state as iptables' conntrack match (--ctstate) sees it.
enum class State : uint8_t { kNew, kEstablished, kRelated, kInvalid, kUntracked };
// Packet direction relative to the connection's originator (--ctdir).
enum class Dir : uint8_t { kOriginal, kReply };

// TCP header flag bits as on the wire.
enum TcpFlag : uint8_t {
  kTcpFin = 0x01,
  kTcpSyn = 0x02,
  kTcpRst = 0x04,
  kTcpPsh = 0x08,
  kTcpAck = 0x10,
  kTcpUrg = 0x20,
};

// The transport facts of one IP packet (or of the packet quoted inside an ICMP error).
// Addresses in network byte order (IPv4 in bytes [0, 4)); ports and ids in host order.
struct FlowFacts {
  uint8_t family = 4;   // 4 or 6
  uint8_t l4proto = 0;  // IP protocol number after IPv6 extension headers
  std::array<uint8_t, 16> src{};
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 0;  // tcp, udp, udplite, sctp; 0 otherwise
  uint16_t dport = 0;
  uint8_t icmp_type = 0;  // icmp / icmpv6
  uint8_t icmp_code = 0;
  uint16_t icmp_id = 0;  // echo identifier
  uint32_t spi = 0;      // esp / ah
  uint16_t gre_key = 0;  // gre: key or call id when present
};

// What the kernel's walk over an SCTP packet's chunks (for_each_sctp_chunk in
// nf_conntrack_proto_sctp.c) finds, in the form its tracker needs: filled by
// WalkSctpChunks (conntrack/sctp.h) from the packet's bytes.
struct SctpChunks {
  static constexpr int kKept = 8;
  static constexpr uint8_t kFlagT = 0x80;  // in `kept`: the chunk's T flag (bit 0 of its flags)
  bool ok = false;         // do_basic_checks passed (chunks present, none empty, bundling)
  bool stateless = false;  // a chunk of a type that changes no state (DATA, SACK, ...)
  bool overflow = false;   // more than kKept state-changing chunks: the rest are not applied
  bool truncated = false;  // the walk stopped at the end of a truncated copy of the packet
  uint8_t count = 0;       // state-changing chunks in `kept`, in packet order
  uint16_t map = 0;        // bit t: a chunk of type t (< 16) is present
  std::array<uint8_t, kKept> kept{};  // type | kFlagT; every state-changing type is < 16
  bool init_header = false;           // the INIT / INIT_ACK's 16-byte header is present
  uint32_t init_tag = 0;              // and its initiate tag
};

struct PacketFacts {
  FlowFacts flow;
  // TCP.
  uint8_t tcp_flags = 0;
  uint32_t tcp_seq = 0;
  uint32_t tcp_ack = 0;
  uint16_t tcp_window = 0;    // raw, unscaled
  uint8_t tcp_wscale = 0xff;  // window-scale option on SYN, 0xff = absent
  bool tcp_sack_perm = false;
  // The TCP header has no options (data offset 5). The kernel's tcp_options() then leaves
  // the side's window scale and flags as they were (it resets them only when it parses
  // options), which matters when a SYN re-initialises a side.
  bool tcp_no_options = false;
  // SACK option (kind 5) present: the highest right edge of its blocks (host order). The
  // kernel uses it instead of the ACK in its window checks when SACK was permitted.
  bool tcp_sack_present = false;
  uint32_t tcp_sack_edge = 0;
  uint32_t payload_len = 0;  // L4 payload bytes (TCP: data after the header)
  // SCTP: the common header's verification tag and the packet's chunks.
  uint32_t sctp_vtag = 0;
  SctpChunks sctp;
  // ICMP/ICMPv6 error messages quote an earlier packet; `inner` is that packet's flow
  // as written in the quote (from the original sender's point of view).
  bool icmp_error = false;
  FlowFacts inner;
  // The transport checksum was verified and is wrong (the kernel marks INVALID).
  bool bad_checksum = false;
  // A non-first IP fragment: no transport header to read.
  bool fragment = false;
};

// Handle to a table entry, valid while `generation` matches the slot's.
struct EntryRef {
  uint32_t slot = UINT32_MAX;
  uint32_t generation = 0;
  bool valid() const { return slot != UINT32_MAX; }
};

// What Table::Track answers for one packet.
// Field order is for the return registers (x86-64: 12 bytes come back in rax:rdx): the
// entry fills rax, the four one-byte fields the low bytes of rdx. With the bytes first
// (16 bytes, padding inside), callers spilled the pair and re-read it across the two
// stores: a store-forwarding stall on every packet (found with perf on the engine).
struct TrackResult {
  EntryRef entry;  // the connection (existing or tentative); invalid for kInvalid/kUntracked
  State state = State::kInvalid;
  Dir dir = Dir::kOriginal;
  bool tentative = false;  // a new connection that exists only once Confirm() is called
  bool assured = false;
};

}  // namespace nwfq::ct
