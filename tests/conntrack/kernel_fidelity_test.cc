// Kernel fidelity: the same scripted packets go through the Linux kernel's conntrack (in
// network namespaces this test creates) and through nwfq's Table; after every packet the
// test compares what --ctstate/--ctdir saw and the connection's state (TCP state, ASSURED,
// UNREPLIED, present or not, seconds left on its timer).
//
// Topology (all names start with nwfq-ct, addresses 198.18.7.0/24):
//   nwfq-ct-inj [veth ci] --- [veth ck] nwfq-ct-k (forwarding, conntrack) [veth cs] ---
//   nwfq-ct-sink
// Frames of *both* directions are injected from nwfq-ct-inj through an AF_PACKET socket;
// nwfq-ct-k forwards them to the sink (static neighbours), so its conntrack confirms
// entries. Per-packet ctstate/ctdir come from counters of iptables mangle PREROUTING rules
// in nwfq-ct-k; connection state from `conntrack -L -o extended`.
//
// Needs root, ip, iptables and conntrack; skips clearly otherwise. Label: integration.
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "conntrack/clock.h"
#include "conntrack/table.h"
#include "gtest/gtest.h"
#include "tests/conntrack/kernel_lab.h"
#include "tests/conntrack/packets.h"

namespace nwfq::ct {
namespace {

using namespace testing;  // NOLINT: packet builders
using namespace lab;      // NOLINT: the lab and its helpers

struct Step {
  const char* what;
  PacketFacts p;
  double sleep_before = 0;       // seconds
  std::vector<uint8_t> l4 = {};  // SCTP: the transport bytes sent (p has what was parsed)
  // Set: before this step, that timeout becomes this many seconds on both sides (the
  // kernel's sysctl, KernelSysctl below; our TimeoutPolicy), as `nwfqctl timeout set` does.
  struct TimeoutChange {
    const char* name = nullptr;  // TimeoutPolicy name: "icmp", "udp", "tcp/established", ...
    int seconds = 0;
  } timeout = {};
};

// The kernel's sysctl for the TimeoutPolicy names the scenarios change.
std::string KernelSysctl(std::string_view name) {
  if (name == "icmp") return "net.netfilter.nf_conntrack_icmp_timeout";
  if (name == "udp") return "net.netfilter.nf_conntrack_udp_timeout";
  if (name == "udp/stream") return "net.netfilter.nf_conntrack_udp_timeout_stream";
  if (name == "tcp/established") return "net.netfilter.nf_conntrack_tcp_timeout_established";
  ADD_FAILURE() << "no sysctl known for " << name;
  return "";
}

struct Scenario {
  const char* name;
  std::vector<Step> steps;
};

PacketFacts T(bool from_client, uint8_t flags, uint32_t seq, uint32_t ack, uint32_t len = 0,
              uint16_t sport = 40000) {
  return from_client ? Tcp(kC, sport, kS, 80, flags, seq, ack, 64240, len)
                     : Tcp(kS, 80, kC, sport, flags, seq, ack, 65160, len);
}

// The client's SYN, the server's SYN/ACK and the client's ACK (sequence numbers from 1000
// and 5000) on client port `port`, then `then`.
std::vector<Step> AfterHandshake(uint16_t port, std::vector<Step> then) {
  std::vector<Step> steps = {{"SYN", T(true, kSyn, 1000, 0, 0, port)},
                             {"SYN/ACK", T(false, kSynAck, 5000, 1001, 0, port)},
                             {"ACK", T(true, kAck, 1001, 5001, 0, port)}};
  steps.insert(steps.end(), then.begin(), then.end());
  return steps;
}

PacketFacts Sack(PacketFacts p, bool permitted, uint32_t edge) {
  p.tcp_sack_perm = permitted;
  p.tcp_sack_present = edge != 0;
  p.tcp_sack_edge = edge;
  return p;
}

// A SYN announcing window scale `ws`, or (ws < 0) a TCP header without any option.
PacketFacts Opts(PacketFacts p, int ws) {
  p.tcp_no_options = ws < 0;
  if (ws >= 0) p.tcp_wscale = static_cast<uint8_t>(ws);
  return p;
}

// An SCTP packet between the client's port `cport` and the server's 38412: `vtag` in the
// common header, then `chunks`; our side gets the walk the parser makes of the same bytes.
Step Sctp(const char* what, bool from_client, uint32_t vtag, std::vector<uint8_t> chunks,
          uint16_t cport, bool v6 = false) {
  const auto& c = v6 ? kC6 : kC;
  const auto& s = v6 ? kS6 : kS;
  PacketFacts p = from_client ? testing::Sctp(c, cport, s, 38412, vtag, chunks)
                              : testing::Sctp(s, 38412, c, cport, vtag, chunks);
  p.flow.family = v6 ? 6 : 4;
  return {what, p, 0, SctpL4(p.flow, vtag, chunks)};
}

// A packet of protocol `proto` without ports (ESP, AH, GRE, or one conntrack knows
// nothing about: the generic tracker) between the lab's client and server.
PacketFacts Other(bool from_client, uint8_t proto, uint32_t spi = 0) {
  PacketFacts p;
  p.flow.l4proto = proto;
  p.flow.src = from_client ? kC : kS;
  p.flow.dst = from_client ? kS : kC;
  p.flow.spi = spi;
  return p;
}

PacketFacts six(PacketFacts p) {
  p.flow.family = 6;
  return p;
}

std::vector<Scenario> Scenarios() {
  using nwfq::testing::SctpChunk;
  using nwfq::testing::SctpInitChunk;
  const uint32_t ct = 0x11111111, st = 0x22222222;  // the client's / server's initiate tags
  const std::vector<uint8_t> data = SctpChunk(kSctpData, 3, std::vector<uint8_t>(16, 0));
  const std::vector<uint8_t> hb = SctpChunk(kSctpHeartbeat, 0, {0, 1, 0, 8, 1, 2, 3, 4});
  const std::vector<uint8_t> hb_ack = SctpChunk(kSctpHeartbeatAck, 0, {0, 1, 0, 8, 1, 2, 3, 4});
  const Step sctp4_init = Sctp("INIT", true, 0, SctpInitChunk(kSctpInit, ct), 5007);
  const Step sctp6_init = Sctp("INIT", true, 0, SctpInitChunk(kSctpInit, ct), 5006, true);
  PacketFacts udp_q = Udp(kC, 5353, kS, 53);
  PacketFacts udp_a = Udp(kS, 53, kC, 5353);
  PacketFacts udp_x = Udp(kC, 5354, kS, 9);
  return {
      {"tcp handshake, data, FIN both ways",
       {{"SYN", T(true, kSyn, 1000, 0)},
        {"SYN/ACK", T(false, kSynAck, 5000, 1001)},
        {"ACK", T(true, kAck, 1001, 5001)},
        {"data", T(true, kPshAck, 1001, 5001, 100)},
        {"ack of data", T(false, kAck, 5001, 1101)},
        {"FIN client", T(true, kFinAck, 1101, 5001)},
        {"ACK server", T(false, kAck, 5001, 1102)},
        {"FIN server", T(false, kFinAck, 5001, 1102)},
        {"last ACK", T(true, kAck, 1102, 5002)},
        {"SYN reopen", T(true, kSyn, 90000, 0)}}},
      {"tcp simultaneous open",
       {{"SYN a", T(true, kSyn, 1000, 0, 0, 40001)},
        {"SYN b", T(false, kSyn, 5000, 0, 0, 40001)},
        {"SYN/ACK a", T(true, kSynAck, 1000, 5001, 0, 40001)},
        {"SYN/ACK b", T(false, kSynAck, 5000, 1001, 0, 40001)},
        {"ACK b", T(false, kAck, 5001, 1001, 0, 40001)},
        {"ACK a", T(true, kAck, 1001, 5001, 0, 40001)}}},
      {"tcp RST then ACK",
       AfterHandshake(40002, {{"RST", T(true, kRst, 1001, 0, 0, 40002)},
                              {"ACK after RST", T(false, kAck, 5001, 1001, 0, 40002)}})},
      {"tcp RST as the only reply",
       {{"SYN", T(true, kSyn, 1000, 0, 0, 40003)},
        {"RST/ACK", T(false, kRstAck, 0, 1001, 0, 40003)},
        {"SYN again", T(true, kSyn, 1000, 0, 0, 40003)}}},
      {"tcp retransmission and out of window",
       {{"SYN", T(true, kSyn, 1000, 0, 0, 40004)},
        {"SYN again", T(true, kSyn, 1000, 0, 0, 40004)},
        {"SYN/ACK", T(false, kSynAck, 5000, 1001, 0, 40004)},
        {"SYN/ACK again", T(false, kSynAck, 5000, 1001, 0, 40004)},
        {"ACK", T(true, kAck, 1001, 5001, 0, 40004)},
        {"data", T(true, kPshAck, 1001, 5001, 100, 40004)},
        {"data again", T(true, kPshAck, 1001, 5001, 100, 40004)},
        {"data far ahead", T(true, kPshAck, 1001 + 5'000'000, 5001, 100, 40004)},
        {"ack of unseen data", T(false, kAck, 5001, 1101 + 5'000'000, 0, 40004)},
        {"ack", T(false, kAck, 5001, 1101, 0, 40004)}}},
      {"tcp mid-stream pickup and bare FIN",
       {{"bare ACK", T(true, kAck, 7000, 8000, 0, 40005)},
        {"reply ACK", T(false, kAck, 8000, 7000, 0, 40005)},
        {"ACK again", T(true, kAck, 7000, 8000, 0, 40005)},
        {"bare FIN new", T(true, kTcpFin, 100, 0, 0, 40006)},
        {"SYN/ACK new", T(false, kSynAck, 100, 200, 0, 40007)}}},
      // BE_LIBERAL is per side: a picked-up connection (liberal both ways) resynced by the
      // SYN/ACK answering an ignored SYN takes the SYN side's flags from that SYN, which
      // drops its liberal mode; the other side keeps it.
      {"tcp pickup, resync on an ignored SYN, liberal per side",
       {{"bare ACK", T(true, kAck, 7000, 8000, 0, 40011)},
        {"reply ACK", T(false, kAck, 8000, 7000, 0, 40011)},
        {"SYN inside the connection", T(true, kSyn, 20000, 0, 0, 40011)},
        {"SYN/ACK answering it", T(false, kSynAck, 30000, 20001, 0, 40011)},
        {"ACK", T(true, kAck, 20001, 30001, 0, 40011)},
        {"client data 5 MB ahead", T(true, kPshAck, 20001 + 5'000'000, 30001, 100, 40011)},
        {"server data 5 MB ahead", T(false, kPshAck, 30001 + 5'000'000, 20001, 100, 40011)}}},
      {"tcp with SACK",
       {{"SYN sackOK", Sack(T(true, kSyn, 1000, 0, 0, 40008), true, 0)},
        {"SYN/ACK sackOK", Sack(T(false, kSynAck, 5000, 1001, 0, 40008), true, 0)},
        {"ACK", T(true, kAck, 1001, 5001, 0, 40008)},
        {"data", T(false, kPshAck, 5001, 1001, 100, 40008)},
        {"SACK of sent data", Sack(T(true, kAck, 1001, 5001, 0, 40008), false, 5101)},
        {"SACK beyond sent data", Sack(T(true, kAck, 1001, 5001, 0, 40008), false, 900000)}}},
      // tcp_options() resets a side's scale only when the segment has options: the client's
      // re-sent SYN without any keeps its window scale 7, so scaling is on once the server
      // answers with one too, and a server segment 1 MB ahead fits the client's scaled
      // window (64240 << 7). Resetting would leave it out of window: INVALID.
      {"tcp SYN re-sent without options keeps the window scale",
       {{"SYN wscale 7", Opts(T(true, kSyn, 1000, 0, 0, 40009), 7)},
        {"SYN again, higher seq, no options", Opts(T(true, kSyn, 2000, 0, 0, 40009), -1)},
        {"SYN/ACK wscale 7", Opts(T(false, kSynAck, 5000, 2001, 0, 40009), 7)},
        {"ACK", T(true, kAck, 2001, 5001, 0, 40009)},
        {"server data 1 MB ahead", T(false, kPshAck, 5001 + 1'000'000, 2001, 100, 40009)}}},
      // The timeout an in-window segment chooses (tcp_packet's end): the state's own, cut
      // to tcp/unacknowledged while data waits for its ACK, to tcp/retrans after
      // tcp_max_retrans (3) repeats of one ACK segment and while the last ACK closed the
      // window. The lab compares the seconds left after every step.
      {"tcp timeouts: unacknowledged data, repeated ACKs, zero window",
       AfterHandshake(40012, {{"data, unacknowledged", T(true, kPshAck, 1001, 5001, 100, 40012)},
                              {"ack of data", T(false, kAck, 5001, 1101, 0, 40012)},
                              {"the same ACK, once more", T(false, kAck, 5001, 1101, 0, 40012)},
                              {"the same ACK, twice more", T(false, kAck, 5001, 1101, 0, 40012)},
                              {"the same ACK, 3 repeats", T(false, kAck, 5001, 1101, 0, 40012)},
                              {"the same ACK, 4 repeats", T(false, kAck, 5001, 1101, 0, 40012)},
                              {"the other side's ACK", T(true, kAck, 1101, 5001, 0, 40012)},
                              {"zero window", Tcp(kS, 80, kC, 40012, kAck, 5001, 1101, 0, 0)},
                              {"window open again", T(false, kAck, 5001, 1101, 0, 40012)},
                              {"data both ways", T(false, kPshAck, 5001, 1101, 50, 40012)},
                              {"ack of it", T(true, kAck, 1101, 5051, 0, 40012)}})},
      {"sctp handshake, tags, bundling, shutdown",
       {Sctp("DATA first", true, 0, data, 5001),
        Sctp("INIT with a tag", true, 7, SctpInitChunk(kSctpInit, ct), 5001),
        Sctp("INIT", true, 0, SctpInitChunk(kSctpInit, ct), 5001),
        Sctp("INIT_ACK, wrong tag", false, st, SctpInitChunk(kSctpInitAck, st), 5001),
        Sctp("INIT_ACK", false, ct, SctpInitChunk(kSctpInitAck, st), 5001),
        Sctp("COOKIE_ECHO, wrong tag", true, ct, SctpChunk(kSctpCookieEcho, 0, {1, 2, 3, 4}), 5001),
        Sctp("COOKIE_ECHO", true, st, SctpChunk(kSctpCookieEcho, 0, {1, 2, 3, 4}), 5001),
        Sctp("COOKIE_ACK + DATA", false, ct, Chunks({SctpChunk(kSctpCookieAck), data}), 5001),
        Sctp("DATA", true, st, data, 5001), Sctp("DATA, the peer's tag", true, ct, data, 5001),
        Sctp("DATA + COOKIE_ECHO", true, st, Chunks({data, SctpChunk(kSctpCookieEcho)}), 5001),
        Sctp("SACK + DATA", false, ct,
             Chunks({SctpChunk(kSctpSack, 0, std::vector<uint8_t>(12)), data}), 5001),
        Sctp("SHUTDOWN", true, st, SctpChunk(kSctpShutdown, 0, {0, 0, 0, 1}), 5001),
        Sctp("SHUTDOWN_ACK", false, ct, SctpChunk(kSctpShutdownAck), 5001),
        Sctp("SHUTDOWN_COMPLETE, peer's tag", true, ct, SctpChunk(kSctpShutdownComplete), 5001),
        Sctp("SHUTDOWN_COMPLETE T", true, ct, SctpChunk(kSctpShutdownComplete, 1), 5001)}},
      {"sctp out of the blue, abort, INIT again",
       {Sctp("ABORT alone", true, 0, SctpChunk(kSctpAbort), 5002),
        Sctp("COOKIE_ACK alone", true, 0, SctpChunk(kSctpCookieAck), 5002),
        Sctp("SHUTDOWN alone", true, 5, SctpChunk(kSctpShutdown, 0, {0, 0, 0, 1}), 5003),
        Sctp("INIT", true, 0, SctpInitChunk(kSctpInit, ct), 5002),
        Sctp("INIT retransmitted", true, 0, SctpInitChunk(kSctpInit, ct), 5002),
        Sctp("INIT_ACK", false, ct, SctpInitChunk(kSctpInitAck, st), 5002),
        Sctp("COOKIE_ECHO", true, st, SctpChunk(kSctpCookieEcho, 0, {1, 2, 3, 4}), 5002),
        Sctp("COOKIE_ACK", false, ct, SctpChunk(kSctpCookieAck), 5002),
        Sctp("ABORT, own tag of the wrong side", false, st, SctpChunk(kSctpAbort), 5002),
        Sctp("ABORT with T", false, st, SctpChunk(kSctpAbort, 1), 5002),
        Sctp("INIT after ABORT", true, 0, SctpInitChunk(kSctpInit, 0x3333), 5002)}},
      {"sctp heartbeats: new path, unknown tag, INIT collision",
       {Sctp("HEARTBEAT new", true, st, hb, 5004), Sctp("HEARTBEAT_ACK", false, ct, hb_ack, 5004),
        Sctp("DATA", true, st, data, 5004), Sctp("HEARTBEAT unknown tag", true, 0x7777, hb, 5004),
        Sctp("two HEARTBEATs unknown tag", true, 0x7777, Chunks({hb, hb}), 5004),
        Sctp("HEARTBEAT_ACK new tag", false, 0x8888, hb_ack, 5004),
        Sctp("DATA with the new tag", false, 0x8888, data, 5004),
        Sctp("DATA with the old tag", false, ct, data, 5004),
        Sctp("HEARTBEAT learns a tag", true, 0x9999, hb, 5004),
        Sctp("DATA learnt tag", true, 0x9999, data, 5004),
        Sctp("INIT a", true, 0, SctpInitChunk(kSctpInit, ct), 5005),
        Sctp("INIT b", false, 0, SctpInitChunk(kSctpInit, st), 5005),
        Sctp("INIT_ACK a, wrong tag", true, st, SctpInitChunk(kSctpInitAck, 0x3333), 5005),
        Sctp("INIT_ACK a", true, st, SctpInitChunk(kSctpInitAck, ct), 5005),
        Sctp("INIT_ACK b", false, ct, SctpInitChunk(kSctpInitAck, st), 5005)}},
      {"sctp over ipv6",
       {Sctp("INIT", true, 0, SctpInitChunk(kSctpInit, ct), 5006, true),
        Sctp("INIT_ACK", false, ct, SctpInitChunk(kSctpInitAck, st), 5006, true),
        Sctp("COOKIE_ECHO + DATA", true, st,
             Chunks({SctpChunk(kSctpCookieEcho, 0, {1, 2, 3, 4}), data}), 5006, true),
        Sctp("COOKIE_ACK", false, ct, SctpChunk(kSctpCookieAck), 5006, true),
        Sctp("ERROR", false, ct, SctpChunk(kSctpError, 0, {0, 1, 0, 4}), 5006, true),
        {"ICMPv6 unreachable quoting it", IcmpError(kS6, kC6, 1, 4, sctp6_init.p)},
        {"ICMPv6 unreachable, unknown association",
         IcmpError(kS6, kC6, 1, 4, Sctp("", true, 0, {}, 5999, true).p)}}},
      {"sctp: ICMP errors quoting an association",
       {sctp4_init,
        {"port unreachable quoting it", IcmpError(kS, kC, 3, 3, sctp4_init.p)},
        {"port unreachable, unknown association",
         IcmpError(kS, kC, 3, 3, Sctp("", true, 0, {}, 5998).p)}}},
      // The trackers without ports: generic for ESP, AH and unknown protocols (addresses
      // only, never ASSURED), GRE version 0 (addresses only; ASSURED once both ways are
      // seen), UDP-Lite like UDP; and ICMP errors quoting them.
      {"esp, ah, gre, udplite and a protocol of its own",
       {{"ESP out", Other(true, 50, 0x1001)},
        {"ESP back (its own SPI)", Other(false, 50, 0x2002)},
        {"ESP out again", Other(true, 50, 0x1001)},
        {"AH out", Other(true, 51, 0x3003)},
        {"AH back", Other(false, 51, 0x4004)},
        {"GRE out", Other(true, 47)},
        {"GRE back", Other(false, 47)},
        {"GRE out again", Other(true, 47)},
        {"protocol 253 out", Other(true, 253)},
        {"protocol 253 back", Other(false, 253)},
        {"UDP-Lite out",
         [] {
           PacketFacts p = Udp(kC, 7100, kS, 7200);
           p.flow.l4proto = 136;
           return p;
         }()},
        {"UDP-Lite back",
         [] {
           PacketFacts p = Udp(kS, 7200, kC, 7100);
           p.flow.l4proto = 136;
           return p;
         }()},
        {"unreachable quoting ESP", IcmpError(kS, kC, 3, 1, Other(true, 50, 0x1001))},
        {"unreachable quoting GRE", IcmpError(kS, kC, 3, 1, Other(true, 47))},
        {"unreachable quoting protocol 254", IcmpError(kS, kC, 3, 2, Other(true, 254))}}},
      // The run-time ICMP timeout (`nwfqctl timeout set icmp 1`) against the kernel's sysctl:
      // an existing connection keeps its deadline until its next packet, which refreshes it
      // with the new timeout; new connections get it at once. 30 s is the default.
      {"icmp timeout changed at run time",
       {{"echo request", Icmp(kC, kS, 8, 4301)},
        {"reply 1.5 s after the timeout became 1 s", Icmp(kS, kC, 0, 4301), 1.5, {}, {"icmp", 1}},
        {"request 1.5 s later: expired", Icmp(kC, kS, 8, 4301), 1.5},
        {"another echo", Icmp(kC, kS, 8, 4302)},
        {"its reply 1.5 s later: no request any more", Icmp(kS, kC, 0, 4302), 1.5},
        {"back to 30 s", Icmp(kC, kS, 8, 4303), 0, {}, {"icmp", 30}},
        {"reply 1.5 s later", Icmp(kS, kC, 0, 4303), 1.5}}},
      // The same for TCP's established and UDP's timeouts, seen on the timers: a live
      // connection keeps its deadline until its next packet, which takes the new value.
      {"tcp and udp timeouts changed at run time",
       {{"SYN", T(true, kSyn, 1000, 0, 0, 40014)},
        {"SYN/ACK", T(false, kSynAck, 5000, 1001, 0, 40014)},
        {"ACK", T(true, kAck, 1001, 5001, 0, 40014)},
        {"query", Udp(kC, 5360, kS, 53)},
        {"established 3600 s, the ACK again",
         T(true, kAck, 1001, 5001, 0, 40014),
         0,
         {},
         {"tcp/established", 3600}},
        {"udp 50 s, another query", Udp(kC, 5360, kS, 53), 0, {}, {"udp", 50}},
        {"answer", Udp(kS, 53, kC, 5360)},
        {"udp/stream 90 s, a query 2.2 s later",
         Udp(kC, 5360, kS, 53),
         2.2,
         {},
         {"udp/stream", 90}},
        {"established back to 432000 s, server ACK",
         T(false, kAck, 5001, 1001, 0, 40014),
         0,
         {},
         {"tcp/established", 432000}},
        {"udp back to 30 s, a new query", Udp(kC, 5361, kS, 53), 0, {}, {"udp", 30}},
        {"udp/stream back to 120 s, an answer",
         Udp(kS, 53, kC, 5360),
         0,
         {},
         {"udp/stream", 120}}}},
      {"udp unreplied, replied, stream",
       {{"query", udp_q},
        {"answer", udp_a},
        {"query 2", udp_q},
        {"after 2 s", udp_q, 2.2},
        {"answer 2", udp_a}}},
      {"icmp echo, lone reply, error",
       {{"echo request", Icmp(kC, kS, 8, 4242)},
        {"echo reply", Icmp(kS, kC, 0, 4242)},
        {"echo request again", Icmp(kC, kS, 8, 4242)},
        {"lone echo reply", Icmp(kS, kC, 0, 999)},
        {"udp to closed port", udp_x},
        {"port unreachable", IcmpError(kS, kC, 3, 3, udp_x)},
        {"unreachable for unknown flow", IcmpError(kS, kC, 3, 3, Udp(kC, 6000, kS, 9))}}},
      {"ipv6: tcp, icmpv6 echo, neighbour discovery, error",
       {{"SYN", six(Tcp(kC6, 40010, kS6, 22, kSyn, 1, 0))},
        {"SYN/ACK", six(Tcp(kS6, 22, kC6, 40010, kSynAck, 50, 2))},
        {"ACK", six(Tcp(kC6, 40010, kS6, 22, kAck, 2, 51))},
        {"echo request", Icmp6(kC6, kS6, 128, 7)},
        {"echo reply", Icmp6(kS6, kC6, 129, 7)},
        {"lone echo reply", Icmp6(kS6, kC6, 129, 8)},
        {"neighbour solicitation", Icmp6(kC6, kS6, 135)},
        {"neighbour advertisement", Icmp6(kS6, kC6, 136)},
        {"router solicitation", Icmp6(kC6, kS6, 133)},
        {"udp6", Udp(kC6, 7000, kS6, 9, 6)},
        {"unreachable6", IcmpError(kS6, kC6, 1, 4, Udp(kC6, 7000, kS6, 9, 6))}}},
  };
}

TEST(KernelFidelity, ScriptedSequencesMatchTheKernel) {
  std::string why;
  KernelLab kernel_lab;
  if (!StartLab(kernel_lab, &why)) GTEST_SKIP() << why;
  MonotonicClock clock;
  TimeoutPolicy timeouts;
  int steps = 0;
  int mismatches = 0;
  for (const Scenario& sc : Scenarios()) {
    kernel_lab.Flush();
    Table ours(TableOptions{.capacity = 1024});
    for (const Step& step : sc.steps) {
      if (step.timeout.name != nullptr) {
        ASSERT_TRUE(kernel_lab.SetSysctl(KernelSysctl(step.timeout.name),
                                         std::to_string(step.timeout.seconds)));
        ASSERT_TRUE(
            timeouts.Set(step.timeout.name, static_cast<uint32_t>(step.timeout.seconds)).ok());
      }
      if (step.sleep_before > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(step.sleep_before));
      }
      auto [kernel, mine] = Observe(kernel_lab, ours, timeouts, clock.Now(), step.p, step.l4);
      ++steps;
      if (!(kernel == mine)) ++mismatches;
      EXPECT_EQ(mine, kernel) << sc.name << ": " << step.what;
      if (getenv("NWFQ_CT_TRACE") != nullptr) {
        std::printf("%-40s %-28s kernel %s\n", sc.name, step.what,
                    ::testing::PrintToString(kernel).c_str());
      }
    }
  }
  if (getenv("NWFQ_CT_KEEP") == nullptr) kernel_lab.Down();
  std::printf("kernel fidelity: %d steps, %d mismatches\n", steps, mismatches);
}

// The kernel verifies UDP-Lite checksums with protocol 17 in the pseudo-header
// (udplite_error() passes IPPROTO_UDP): a packet whose checksum is made as RFC 3828 says,
// with 136, is INVALID to it when it checks (a packet without checksum offload, in
// PRE_ROUTING); one made with 17 is tracked. nwfq verifies as the RFC says (DIVERGENCES
// U1), and the lab builds UDP-Lite the kernel's way. This pins the kernel's side: a kernel
// that changes it fails here. Also pinned: a zero checksum and a coverage under 8 are
// INVALID to the kernel (malformed to nwfq's parser, P1).
TEST(KernelFidelity, UdpLiteChecksumQuirk) {
  std::string why;
  KernelLab kernel_lab;
  if (!StartLab(kernel_lab, &why)) GTEST_SKIP() << why;
  // How: 0 kernel's checksum, 1 RFC 3828 checksum, 2 zero checksum, 3 coverage 4.
  auto state_of = [&](uint16_t sport, int how) {
    PacketFacts p = Udp(kC, sport, kS, 7400);
    p.flow.l4proto = 136;
    std::vector<uint8_t> l4 = L4Bytes(p);
    if (how == 3) Put16(l4, 4, 4);
    std::vector<uint8_t> ip = Ipv4(p.flow, l4, /*rfc_udplite=*/how == 1);
    if (how == 2) Put16(ip, 20 + 6, 0);
    auto before = kernel_lab.Counters();
    EXPECT_TRUE(kernel_lab.SendIp(4, ip));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    auto after = kernel_lab.Counters();
    std::string state;
    for (const char* s : {"NEW", "INVALID"}) {
      if (after["st_" + std::string(s)] > before["st_" + std::string(s)]) state = s;
    }
    return state;
  };
  EXPECT_EQ(state_of(7300, 1), "INVALID");
  EXPECT_EQ(state_of(7301, 0), "NEW");
  EXPECT_EQ(state_of(7302, 2), "INVALID");
  EXPECT_EQ(state_of(7303, 3), "INVALID");
}

// DIVERGENCES T3, measured: nwfq's retransmission check compares direction, ack, end and
// window of consecutive ACK segments but not seq (the TCP record has no room for it), so a
// pure ACK that ends where the segment before it ended counts as a repeat of it. Here the
// client re-sends acknowledged data, then sends the same pure ACK three times: the kernel
// counts 2 retransmissions and keeps the established timeout, nwfq counts 3 and cuts it to
// tcp/retrans (300 s). Everything else agrees. A tracker that keeps seq fails here: then
// T3 is gone from DIVERGENCES.md and the steps belong in the scripted scenarios.
TEST(KernelFidelity, RetransmissionCountWithoutSeq) {
  std::string why;
  KernelLab kernel_lab;
  if (!StartLab(kernel_lab, &why)) GTEST_SKIP() << why;
  MonotonicClock clock;
  TimeoutPolicy timeouts;
  Table ours(TableOptions{.capacity = 64});
  const std::vector<Step> steps = AfterHandshake(
      40013, {
                 {"data", T(true, kPshAck, 1001, 5001, 100, 40013)},
                 {"ack of data", T(false, kAck, 5001, 1101, 0, 40013)},
                 {"data again (acknowledged)", T(true, kPshAck, 1001, 5001, 100, 40013)},
                 {"pure ACK ending where it ended", T(true, kAck, 1101, 5001, 0, 40013)},
                 {"the same pure ACK", T(true, kAck, 1101, 5001, 0, 40013)},
                 {"the same pure ACK again", T(true, kAck, 1101, 5001, 0, 40013)},
             });
  Seen kernel, mine;
  for (const Step& step : steps) {
    std::tie(kernel, mine) = Observe(kernel_lab, ours, timeouts, clock.Now(), step.p);
    EXPECT_EQ(mine.ctstate, kernel.ctstate) << step.what;
    EXPECT_EQ(mine.conn, kernel.conn) << step.what;
    if (&step != &steps.back()) {
      EXPECT_EQ(mine, kernel) << step.what;
    }
  }
  EXPECT_GT(kernel.timeout, 400'000) << kernel;  // established: 432000 s
  EXPECT_LE(mine.timeout, 300) << mine;          // tcp/retrans
  EXPECT_GT(mine.timeout, 290) << mine;
}

// DIVERGENCES T5, measured: the kernel's retransmission counter is a u8, so the 256th
// repeat of one ACK segment wraps it to 0, and that repeat and the next two choose the
// state's timeout again (431999 s left, not tcp/retrans's 299). nwfq's 4-bit counter
// stays at 15: 299 throughout. An 8-bit counter (the TCP state's byte has 4 spare bits)
// was tried: +11 instructions per TCP hit from spills in the hot path, for 256 identical
// segments in a row. A tracker that wraps fails here: then T5 is gone from DIVERGENCES.md.
// The first 250 repeats go to both trackers without a comparison each (a `conntrack -L`
// per packet would take 15 s).
TEST(KernelFidelity, RetransmissionCounterWrapsInTheKernelOnly) {
  std::string why;
  KernelLab kernel_lab;
  if (!StartLab(kernel_lab, &why)) GTEST_SKIP() << why;
  MonotonicClock clock;
  TimeoutPolicy timeouts;
  Table ours(TableOptions{.capacity = 64});
  for (const Step& step : AfterHandshake(40015, {})) {
    auto [kernel, mine] = Observe(kernel_lab, ours, timeouts, clock.Now(), step.p);
    EXPECT_EQ(mine, kernel) << step.what;
  }
  const PacketFacts ack = T(false, kAck, 5001, 1001, 0, 40015);  // then repeated
  for (int repeat = 0; repeat <= 250; ++repeat) {
    ASSERT_TRUE(kernel_lab.Send(ack));
    ours.Confirm(ours.Track(ack, timeouts, clock.Now()), clock.Now());
  }
  for (int repeat = 251; repeat <= 260; ++repeat) {
    auto [kernel, mine] = Observe(kernel_lab, ours, timeouts, clock.Now(), ack);
    EXPECT_EQ(mine.ctstate, kernel.ctstate) << repeat;
    EXPECT_EQ(mine.conn, kernel.conn) << repeat;
    EXPECT_LE(mine.timeout, 300) << repeat;  // tcp/retrans
    if (repeat >= 256 && repeat <= 258) {
      EXPECT_GT(kernel.timeout, 400'000) << repeat;  // wrapped: established again
    } else {
      EXPECT_EQ(mine, kernel) << repeat;
    }
  }
}

}  // namespace
}  // namespace nwfq::ct
