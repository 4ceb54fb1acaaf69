// Value syntax of every attribute type (section a.4): accepted input -> canonical text,
// and rejected input.
#include <gtest/gtest.h>

#include "parser/attr_table.h"

namespace nwfq {
namespace {

struct ValueCase {
  AttrType type;
  const char* input;
  const char* canonical;  // nullptr: must be rejected
};

const ValueCase kCases[] = {
    {AttrType::kMacAddr, "1:2:3:4:5:6", "01:02:03:04:05:06"},
    {AttrType::kMacAddr, "AA:bb:cc:dd:ee:FF", "aa:bb:cc:dd:ee:ff"},
    {AttrType::kMacAddr, "1:2:3:4:5", nullptr},
    {AttrType::kMacAddr, "1:2:3:4:5:100", nullptr},
    {AttrType::kMacAddr, "g:2:3:4:5:6", nullptr},
    {AttrType::kMacMask, "ff:ff:ff:ff:ff:80", "ff:ff:ff:ff:ff:80"},
    {AttrType::kMacMask, "ff:ff:ff:00:00:00", "ff:ff:ff:00:00:00"},
    {AttrType::kMacMask, "ff:00:ff:00:00:00", nullptr},
    {AttrType::kIpv4Addr, "10.1.2.3", "10.1.2.3"},
    {AttrType::kIpv4Addr, "10.1.2", nullptr},
    {AttrType::kIpv4Addr, "::1", nullptr},
    {AttrType::kIpv6Addr, "a:b:c::d:e:f", "a:b:c::d:e:f"},
    {AttrType::kIpv6Addr, "::ffff:10.1.2.3", "::ffff:10.1.2.3"},
    {AttrType::kIpv6Addr, "a:b:c", nullptr},
    {AttrType::kIpv4Mask, "22", "22"},
    {AttrType::kIpv4Mask, "255.255.255.255", "32"},
    {AttrType::kIpv4Mask, "255.255.128.0", "17"},
    {AttrType::kIpv4Mask, "33", nullptr},
    {AttrType::kIpv4Mask, "255.255.255.127", nullptr},
    {AttrType::kIpv6Mask, "128", "128"},
    {AttrType::kIpv6Mask, "ffff:ffff:ffff:ffff:8000::", "65"},
    {AttrType::kIpv6Mask, "129", nullptr},
    {AttrType::kIpv6Mask, "ffff::ffff", nullptr},
    {AttrType::kUint8, "255", "255"},
    {AttrType::kUint8, "0x12", "0x12"},
    {AttrType::kUint8, "ff", "0xff"},  // libvirt retries base 16 without 0x
    {AttrType::kUint8, "256", nullptr},
    {AttrType::kUint8, "-1", nullptr},
    {AttrType::kUint16, "65535", "65535"},
    {AttrType::kUint16, "0x4567", "0x4567"},
    {AttrType::kUint16, "65536", nullptr},
    {AttrType::kUint32, "0x11223344", "0x11223344"},
    {AttrType::kUint32, "4294967295", "4294967295"},
    {AttrType::kUint32, "4294967296", nullptr},
    {AttrType::kUint16Dec, "10", "10"},
    {AttrType::kUint16Dec, "0x10", nullptr},
    {AttrType::kDscp, "63", "63"},
    {AttrType::kDscp, "0x32", "0x32"},
    {AttrType::kDscp, "64", nullptr},
    {AttrType::kDscp, "0x40", nullptr},
    {AttrType::kVlanId, "4095", "4095"},
    {AttrType::kVlanId, "0x123", "0x123"},
    {AttrType::kVlanId, "0xffff", nullptr},
    {AttrType::kEtherType, "arp", "arp"},
    {AttrType::kEtherType, "0x0800", "ipv4"},  // known numbers print as names
    {AttrType::kEtherType, "1536", "1536"},
    {AttrType::kEtherType, "0x1234", "0x1234"},
    {AttrType::kEtherType, "15", nullptr},
    {AttrType::kEtherType, "ARP", nullptr},
    {AttrType::kEncapProtocol, "0x3c", "0x3c"},
    {AttrType::kEncapProtocol, "59", nullptr},
    {AttrType::kEncapProtocol, "vlan", "vlan"},
    {AttrType::kOpcode, "Request", "Request"},
    {AttrType::kOpcode, "reply_reverse", "Reply_Reverse"},
    {AttrType::kOpcode, "1", "Request"},
    {AttrType::kOpcode, "11", "11"},
    {AttrType::kOpcode, "65536", nullptr},
    {AttrType::kOpcode, "Bogus", nullptr},
    {AttrType::kIpProtocol, "udp", "udp"},
    {AttrType::kIpProtocol, "17", "udp"},
    {AttrType::kIpProtocol, "255", "255"},
    {AttrType::kIpProtocol, "256", nullptr},
    {AttrType::kIpProtocol, "TCP", nullptr},
    {AttrType::kTcpFlags, "SYN/ALL", "SYN/ALL"},
    {AttrType::kTcpFlags, "ack,syn/syn", "SYN,ACK/SYN"},
    {AttrType::kTcpFlags, "PSH/", "PSH/NONE"},
    {AttrType::kTcpFlags, "FIN,SYN,RST,PSH,ACK,URG/NONE", "ALL/NONE"},
    {AttrType::kTcpFlags, "SYN", nullptr},
    {AttrType::kTcpFlags, "SYN/BOGUS", nullptr},
    {AttrType::kState, "NEW,established", "NEW,ESTABLISHED"},
    {AttrType::kState, "RELATED,ESTABLISHED", "ESTABLISHED,RELATED"},
    {AttrType::kState, "NEW,NONE", "NONE"},
    {AttrType::kState, "INVALID", "INVALID"},
    {AttrType::kState, "NEW,", nullptr},
    {AttrType::kState, "OLD", nullptr},
    {AttrType::kBool, "true", "true"},
    {AttrType::kBool, "yes", "true"},
    {AttrType::kBool, "1", "true"},
    {AttrType::kBool, "TRUE", "false"},  // libvirt compares case-sensitively
    {AttrType::kIpsetName, "test:_.-+", "test:_.-+"},
    {AttrType::kIpsetName, "", nullptr},
    {AttrType::kIpsetName, "has/slash", nullptr},
    {AttrType::kIpsetName, "0123456789012345678901234567890123", nullptr},
    {AttrType::kIpsetFlags, "SRC,dSt,SRC", "src,dst,src"},
    {AttrType::kIpsetFlags, "src,src,src,src,src,src,src", nullptr},
    {AttrType::kIpsetFlags, "up", nullptr},
    {AttrType::kComment, "a 'b' <c>", "a 'b' <c>"},
};

class AttrValueTest : public testing::TestWithParam<ValueCase> {};

TEST_P(AttrValueTest, ParsesToCanonicalOrRejects) {
  const ValueCase& c = GetParam();
  absl::StatusOr<AttrValue> v = ParseAttrValue(c.type, c.input);
  if (c.canonical == nullptr) {
    EXPECT_FALSE(v.ok()) << "accepted '" << c.input << "' as " << FormatAttrValue(c.type, *v);
    if (!v.ok()) {
      EXPECT_NE(std::string(v.status().message()).find("allowed"), std::string::npos);
    }
    return;
  }
  ASSERT_TRUE(v.ok()) << c.input << ": " << v.status();
  EXPECT_EQ(v->kind, ValueKindOf(c.type));
  EXPECT_EQ(FormatAttrValue(c.type, *v), c.canonical);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, AttrValueTest, testing::ValuesIn(kCases));

TEST(AttrValue, TypedEncodings) {
  EXPECT_EQ(ParseAttrValue(AttrType::kTcpFlags, "SYN,ACK/SYN")->number, (0x12u << 8) | 0x02u);
  EXPECT_EQ(ParseAttrValue(AttrType::kState, "NEW,INVALID")->number, kStateNew | kStateInvalid);
  EXPECT_EQ(ParseAttrValue(AttrType::kIpsetFlags, "src,dst")->number, (2u << 8) | 0x2u);
  AttrValue ip = *ParseAttrValue(AttrType::kIpv4Addr, "10.1.2.3");
  EXPECT_EQ(ip.bytes[0], 10);
  EXPECT_EQ(ip.bytes[3], 3);
  AttrValue comment = *ParseAttrValue(AttrType::kComment, std::string(300, 'x'));
  EXPECT_EQ(comment.text.size(), 256u);  // libvirt truncates
}

TEST(AttrTable, ElementsHaveTheirAttributes) {
  EXPECT_NE(FindAttrSpec(Protocol::kTcp, "flags"), nullptr);
  EXPECT_EQ(FindAttrSpec(Protocol::kTcp, "flags")->attr, Attr::kTcpFlags);
  EXPECT_EQ(FindAttrSpec(Protocol::kStp, "flags")->attr, Attr::kStpFlags);
  EXPECT_EQ(FindAttrSpec(Protocol::kTcpIpv6, "flags"), nullptr);  // no flags on tcp-ipv6
  EXPECT_EQ(FindAttrSpec(Protocol::kTcp, "srcmacmask"), nullptr);
  EXPECT_EQ(FindAttrSpec(Protocol::kIpv6, "dscp"), nullptr);
  EXPECT_EQ(FindAttrSpec(Protocol::kUdp, "option"), nullptr);
  EXPECT_EQ(FindAttrSpec(Protocol::kAllIpv6, "dstipto")->type, AttrType::kIpv4Addr);  // quirk
  EXPECT_EQ(FindAttrSpec(Protocol::kAllIpv6, "srcipto")->type, AttrType::kIpv6Addr);
  EXPECT_TRUE(AttributesOf(Protocol::kNone).empty());
  for (int p = 1; p < kProtocolCount; ++p) {
    Protocol proto = static_cast<Protocol>(p);
    EXPECT_EQ(ProtocolFromName(ProtocolName(proto)), proto);
    EXPECT_NE(FindAttrSpec(proto, "comment"), nullptr) << ProtocolName(proto);
  }
}

}  // namespace
}  // namespace nwfq
