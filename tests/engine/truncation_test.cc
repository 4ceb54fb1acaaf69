// Header-sized copies (NFQUEUE copy range < packet length): a copy that ends before the IP
// length is malformed unless the caller gives the wire length (ParseOptions::wire_len /
// PacketInput::wire_len); then the headers are parsed from the copy, lengths come from the
// IP header and checksums are skipped. Through the Engine facade, a truncated copy gets the
// same verdict and connection state as the whole packet.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/packet_view.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::kPeerMac;
using nwfq::testing::kVmMac;
using nwfq::testing::PacketBuilder;

struct Row {
  std::string what;
  std::vector<uint8_t> packet;  // the whole network-layer packet
  uint16_t ethertype;
  size_t copy;       // bytes given to the parser
  bool give_wire;    // pass wire_len = packet size
  Malformed expect;  // kNone: parses, with the transport header
};

std::vector<uint8_t> Tcp4(size_t payload) {
  return PacketBuilder()
      .Ipv4("198.18.0.3", "198.18.0.2")
      .Tcp(40000, 22, 0x18)
      .TcpOptions({1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
      .Payload(payload)
      .BuildNetwork();
}
std::vector<uint8_t> Udp6(size_t payload) {
  return PacketBuilder()
      .Ipv6("2001:db8::3", "2001:db8::2")
      .Ipv6Ext(0)
      .Udp(5353, 53)
      .Payload(payload)
      .BuildNetwork();
}
std::vector<uint8_t> Icmp4Echo(size_t payload) {
  return PacketBuilder()
      .Ipv4("198.18.0.2", "198.18.0.3")
      .Icmp(8, 0, 7, 1)
      .Payload(payload)
      .BuildNetwork();
}

std::vector<Row> Rows() {
  return {
      {"tcp4 whole", Tcp4(1400), kEtherIpv4, SIZE_MAX, false, Malformed::kNone},
      {"tcp4 512-byte copy, wire length given", Tcp4(1400), kEtherIpv4, 512, true,
       Malformed::kNone},
      {"tcp4 512-byte copy, no wire length", Tcp4(1400), kEtherIpv4, 512, false,
       Malformed::kTruncatedIpv4},
      {"tcp4 copy ends inside the TCP options", Tcp4(1400), kEtherIpv4, 40, true,
       Malformed::kTruncatedL4},
      {"tcp4 copy ends inside the IP header", Tcp4(1400), kEtherIpv4, 16, true,
       Malformed::kTruncatedIpv4},
      {"udp6 with hop-by-hop, 128-byte copy", Udp6(3000), kEtherIpv6, 128, true, Malformed::kNone},
      {"udp6 128-byte copy, no wire length", Udp6(3000), kEtherIpv6, 128, false,
       Malformed::kTruncatedIpv6},
      {"udp6 copy ends inside the extension header", Udp6(3000), kEtherIpv6, 44, true,
       Malformed::kTruncatedIpv6},
      {"icmp4 echo, 64-byte copy", Icmp4Echo(1000), kEtherIpv4, 64, true, Malformed::kNone},
  };
}

TEST(Truncation, ParseRows) {
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.what);
    const size_t copy = std::min(row.copy, row.packet.size());
    ParseOptions opt;
    opt.wire_len = row.give_wire ? static_cast<uint32_t>(row.packet.size()) : 0;
    const PacketView v =
        ParseNetwork(std::span<const uint8_t>(row.packet.data(), copy), row.ethertype, opt);
    const PacketView whole = ParseNetwork(row.packet, row.ethertype, {});
    ASSERT_EQ(whole.malformed, Malformed::kNone);
    EXPECT_EQ(v.malformed, row.expect) << MalformedName(v.malformed);
    if (row.expect != Malformed::kNone) continue;
    EXPECT_EQ(v.truncated, copy < row.packet.size());
    EXPECT_TRUE(v.has_l4);
    // Everything conntrack and the rules read agrees with the whole packet's parse.
    EXPECT_EQ(v.family, whole.family);
    EXPECT_EQ(v.src_ip, whole.src_ip);
    EXPECT_EQ(v.dst_ip, whole.dst_ip);
    EXPECT_EQ(v.l4proto, whole.l4proto);
    EXPECT_EQ(v.ip_len, whole.ip_len);
    EXPECT_EQ(v.sport, whole.sport);
    EXPECT_EQ(v.dport, whole.dport);
    EXPECT_EQ(v.tcp_flags, whole.tcp_flags);
    EXPECT_EQ(v.tcp_wscale, whole.tcp_wscale);
    EXPECT_EQ(v.icmp_type, whole.icmp_type);
    EXPECT_EQ(v.icmp_id, whole.icmp_id);
    EXPECT_EQ(v.payload_len, whole.payload_len);
    // A truncated copy cannot be checksummed; the whole packet was.
    EXPECT_EQ(v.checksum_checked, !v.truncated);
    EXPECT_TRUE(whole.checksum_checked);
    EXPECT_FALSE(v.bad_checksum);
  }
}

// Live form: an in tcp/22 rule (stateful) and a final drop. The handshake and a long data
// segment, each given as a 128-byte copy with the wire length, decide as whole packets do.
TEST(Truncation, EngineDecidesTruncatedCopiesLikeWholePackets) {
  std::vector<ConcreteRule> rules = {
      Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
      Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}),
  };
  InstantiatedBinding binding = Bind(rules);
  EngineOptions options;
  options.conntrack_capacity = 1024;
  Engine engine{options};
  ASSERT_TRUE(engine.SetBinding(binding).ok());
  ct::Nanos now = 1'000'000'000;
  auto decide = [&](View view, const std::vector<uint8_t>& pkt) {
    PacketInput in;
    in.layer = Layer::kNetwork;
    in.ethertype = kEtherIpv4;
    in.bytes = std::span<const uint8_t>(pkt.data(), std::min<size_t>(128, pkt.size()));
    in.wire_len = static_cast<uint32_t>(pkt.size());
    now += 1'000'000;
    return engine.Decide("vnet0", view, in, now);
  };
  auto peer = [](uint8_t flags, uint32_t seq, uint32_t ack, size_t payload, uint16_t dport = 22) {
    return PacketBuilder()
        .Ipv4("198.18.0.3", "198.18.0.2")
        .Tcp(40000, dport, flags, seq, ack)
        .Payload(payload)
        .BuildNetwork();
  };
  auto vm = [](uint8_t flags, uint32_t seq, uint32_t ack) {
    return PacketBuilder()
        .Ipv4("198.18.0.2", "198.18.0.3")
        .Tcp(22, 40000, flags, seq, ack)
        .BuildNetwork();
  };
  Decision d = decide(View::kToVm, peer(0x02, 100, 0, 0));
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.ct_state, ct::State::kNew);
  d = decide(View::kFromVm, vm(0x12, 900, 101));
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.ct_state, ct::State::kEstablished);
  d = decide(View::kToVm, peer(0x10, 101, 901, 0));
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  d = decide(View::kToVm, peer(0x18, 101, 901, 1400));  // 1440 bytes on the wire, 128 copied
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.reason, Reason::kRule);
  EXPECT_EQ(d.ct_state, ct::State::kEstablished);
  // Without the wire length the same copy is malformed (and dropped by default).
  const std::vector<uint8_t> big = peer(0x18, 1501, 901, 1400);
  PacketInput in;
  in.layer = Layer::kNetwork;
  in.ethertype = kEtherIpv4;
  in.bytes = std::span<const uint8_t>(big.data(), 128);
  d = engine.Decide("vnet0", View::kToVm, in, now + 1'000'000);
  EXPECT_EQ(d.reason, Reason::kMalformed);
  EXPECT_EQ(d.malformed, Malformed::kTruncatedIpv4);
  // Another port meets the final drop, truncated or not.
  d = decide(View::kToVm, peer(0x02, 100, 0, 0, 23));
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  // Rule counters count wire bytes, not copied bytes.
  uint64_t bytes = 0;
  for (const RuleCounter& c : engine.rule_counters("vnet0")) {
    if (c.rule == 0) bytes += c.bytes;
  }
  EXPECT_GE(bytes, 1440u);
}

}  // namespace
}  // namespace nwfq::engine
