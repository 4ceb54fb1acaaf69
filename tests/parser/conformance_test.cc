// libvirt's own XML round-trip conformance set (../shared/nwfilter/conformance): the 21
// inputs of EXPECTED.md table 2 must parse and format byte-identically to out/, the 21
// of table 1 must be rejected with a message naming the bad attribute and its line.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "parser/filter_parser.h"
#include "parser/filter_set.h"
#include "parser/xml_writer.h"

namespace nwfq {
namespace {

const std::string kConformance = std::string(NWFQ_SHARED_DIR) + "/nwfilter/conformance";

bool HaveShared() { return std::filesystem::exists(kConformance + "/in"); }

#define SKIP_WITHOUT_SHARED()                                 \
  if (!HaveShared())                                          \
  GTEST_SKIP() << "shared data not found at " << kConformance \
               << " (set NWFQ_SHARED_DIR); conformance set skipped"

struct Accepted {
  const char* in;
  const char* out;
};
const Accepted kAccepted[] = {
    {"stp-test", "stp-test"},
    {"igmp-test", "igmp-test"},
    {"udplite-test", "udplite-test"},
    {"esp-test", "esp-test"},
    {"ah-test", "ah-test"},
    {"all-test", "all-test"},
    {"ref-test", "ref-test"},
    {"ref-rule-test", "ref-rule-test"},
    {"ipt-no-macspoof-test", "ipt-no-macspoof-test"},
    {"icmp-direction-test", "icmp-direction-test"},
    {"icmp-direction2-test", "icmp-direction2-test"},
    {"icmp-direction3-test", "icmp-direction3-test"},
    {"conntrack-test", "conntrack-test"},
    {"example-1", "example-1"},
    {"example-2", "example-2"},
    {"quirks-invalid", "quirks-invalid"},
    {"attr-value-test", "attr-value-test"},
    {"iter-test1", "iter-test1"},
    {"iter-test2", "iter-test2"},
    {"iter-test3", "iter-test3"},
    {"ipset-test", "ipset-test"},
};

class AcceptedTest : public testing::TestWithParam<Accepted> {};

TEST_P(AcceptedTest, ParsesAndRoundTripsByteForByte) {
  SKIP_WITHOUT_SHARED();
  const Accepted& c = GetParam();
  absl::StatusOr<Filter> f = ParseFilterFile(kConformance + "/in/" + c.in + ".xml");
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<std::string> want = ReadFileToString(kConformance + "/out/" + c.out + ".xml");
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(FormatFilterXml(*f), *want);
  // The canonical form is a fixed point.
  absl::StatusOr<Filter> again = ParseFilterString(FormatFilterXml(*f), "canonical");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(FormatFilterXml(*again), *want);
}

INSTANTIATE_TEST_SUITE_P(Table2, AcceptedTest, testing::ValuesIn(kAccepted),
                         [](const testing::TestParamInfo<Accepted>& i) {
                           std::string n = i.param.in;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

struct Rejected {
  const char* in;
  // Every one of these must appear in the error text: "line: element/attribute".
  std::vector<std::string> expected;
};
const Rejected kRejected[] = {
    {"mac-test-invalid", {":17: mac/protocolid: '15'"}},
    {"vlan-test-invalid", {":27: vlan/vlanid: '0xffff'"}},
    {"arp-test-invalid",
     {":30: arp/hwtype: '65536'", ":30: arp/protocoltype: '65536'", ":30: arp/opcode: '65536'"}},
    {"rarp-test-invalid", {":30: rarp/hwtype: '65536'", ":30: rarp/opcode: '65536'"}},
    {"chain_prefixtest1-invalid", {":30: arp/hwtype: '65536'"}},
    {"ip-test-invalid",
     {":24: ip/dscp: '64'", ":29: ip/srcipmask: '255.255.255.127'", ":31: ip/protocol: '256'",
      ":31: ip/dscp: '64'"}},
    {"ipv6-test-invalid", {":31: ipv6/dstportend: '65536'"}},
    {"tcp-test-invalid", {":20: tcp/dstportend: '65536'"}},
    {"udp-test-invalid", {":20: udp/dstportend: '65536'"}},
    {"sctp-test-invalid", {":20: sctp/dstportend: '65536'"}},
    {"icmp-test-invalid", {":16: icmp/type: '256'", ":16: icmp/code: '256'"}},
    {"tcp-ipv6-test-invalid", {"tcp-ipv6/srcipmask: '129'", "tcp-ipv6/dstportend: '65536'"}},
    {"udp-ipv6-test-invalid",
     {"udp-ipv6/srcipaddr: 'a:b:c'", "udp-ipv6/srcipmask: '129'", "udp-ipv6/dstportend: '65536'"}},
    {"sctp-ipv6-test-invalid", {"sctp-ipv6/srcipmask: '129'", "sctp-ipv6/dstportend: '65536'"}},
    {"icmpv6-test-invalid",
     {":16: icmpv6/srcipmask: '129'", ":17: icmpv6/type: '256'", ":17: icmpv6/code: '256'"}},
    {"udplite-ipv6-test-invalid", {":16: udplite-ipv6/srcipmask: '129'"}},
    {"esp-ipv6-test-invalid", {":16: esp-ipv6/srcipmask: '129'"}},
    {"ah-ipv6-test-invalid", {":16: ah-ipv6/srcipmask: '129'"}},
    {"all-ipv6-test-invalid", {":16: all-ipv6/srcipmask: '129'"}},
    {"hex-data-test-invalid", {":51: tcp-ipv6/dscp: '0x40'"}},
    {"comment-test-invalid", {":53: tcp-ipv6/dscp: '0x40'"}},
};

class RejectedTest : public testing::TestWithParam<Rejected> {};

TEST_P(RejectedTest, RejectedNamingAttributeAndLine) {
  SKIP_WITHOUT_SHARED();
  const Rejected& c = GetParam();
  const std::string path = kConformance + "/in/" + c.in + ".xml";
  absl::StatusOr<Filter> f = ParseFilterFile(path);
  ASSERT_FALSE(f.ok()) << c.in << " was accepted";
  const std::string msg(f.status().message());
  EXPECT_NE(msg.find(path + ":"), std::string::npos) << msg;
  for (const std::string& e : c.expected)
    EXPECT_NE(msg.find(e), std::string::npos) << e << "\n" << msg;
  // Nothing is half-loaded: the same document cannot be added to a set.
  FilterSet set;
  EXPECT_FALSE(set.AddFile(path).ok());
  EXPECT_EQ(set.size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Table1, RejectedTest, testing::ValuesIn(kRejected),
                         [](const testing::TestParamInfo<Rejected>& i) {
                           std::string n = i.param.in;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(ConformanceSet, EveryInputIsCovered) {
  SKIP_WITHOUT_SHARED();
  size_t count = 0;
  for (const auto& e : std::filesystem::directory_iterator(kConformance + "/in")) {
    (void)e;
    ++count;
  }
  EXPECT_EQ(count, std::size(kAccepted) + std::size(kRejected));
}

TEST(PredefinedFilters, AllLoadAsOneDirectory) {
  const std::string dir = std::string(NWFQ_SHARED_DIR) + "/nwfilter/predefined";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "shared data not found at " << dir;
  absl::StatusOr<FilterSet> set = FilterSet::LoadDirectory(dir);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->size(), 24u);
  for (const char* name : {"clean-traffic", "no-arp-spoofing", "allow-dhcpv6-server",
                           "qemu-announce-self-rarp", "clean-traffic-gateway"})
    EXPECT_TRUE(set->Contains(name)) << name;
}

}  // namespace
}  // namespace nwfq
