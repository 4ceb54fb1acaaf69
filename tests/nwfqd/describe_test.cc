// nwfqd's one-line packet description (verdict log and trace): ports for packets with a
// transport header, the fragment's place for a later fragment (it has no ports).
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/packet_builder.h"
#include "tools/nwfqd/handler.h"

namespace nwfq::nwfqd {
namespace {

using nwfq::testing::PacketBuilder;

std::string DescribeIp(const std::vector<uint8_t>& frame) {
  nfq::Packet p;
  p.hw_protocol = 0x0800;
  p.payload = std::span<const uint8_t>(frame).subspan(14);  // NFQUEUE: from the IP header
  p.wire_len = static_cast<uint32_t>(p.payload.size());
  return Describe(p);
}

TEST(Describe, PortsForWholePacketsAndFirstFragments) {
  const auto udp = PacketBuilder().Ipv4("198.18.0.2", "198.18.0.3").Udp(40000, 53).Payload(64);
  EXPECT_EQ(DescribeIp(PacketBuilder(udp).Build()), "udp 198.18.0.2:40000 > 198.18.0.3:53");
  EXPECT_EQ(DescribeIp(PacketBuilder(udp).Fragment(0, 48, true).Build()),
            "udp 198.18.0.2:40000 > 198.18.0.3:53");
}

TEST(Describe, LaterFragmentsShowTheirPlaceNotPortZero) {
  const auto udp = PacketBuilder().Ipv4("198.18.0.2", "198.18.0.3").Udp(40000, 53).Payload(64);
  const std::string middle = DescribeIp(PacketBuilder(udp).Fragment(48, 16, true).Build());
  EXPECT_EQ(middle.find(":0"), std::string::npos) << middle;
  EXPECT_NE(middle.find("udp 198.18.0.2 > 198.18.0.3 fragment id "), std::string::npos) << middle;
  EXPECT_NE(middle.find(" offset 48"), std::string::npos) << middle;
  EXPECT_EQ(middle.find("(last)"), std::string::npos) << middle;
  const std::string last = DescribeIp(PacketBuilder(udp).Fragment(64, 8, false).Build());
  EXPECT_NE(last.find(" offset 64 (last)"), std::string::npos) << last;
}

}  // namespace
}  // namespace nwfq::nwfqd
