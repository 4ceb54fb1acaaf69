// <filterbinding> parsing.
#include "parser/binding.h"

#include <gtest/gtest.h>

namespace nwfq {
namespace {

TEST(Binding, ParsesLibvirtLayout) {
  absl::StatusOr<Binding> b = ParseBindingString(R"(<filterbinding>
  <owner><name>oracle-vm</name><uuid>6f726163-6c65-4000-8000-000000000001</uuid></owner>
  <portdev name='vnet0'/>
  <linkdev name='eth0'/>
  <mac address='52:54:00:0a:0B:2'/>
  <filterref filter='clean-traffic'>
    <parameter name='IP' value='198.18.0.2'/>
    <parameter name='DHCPSERVER' value='198.18.0.1'/>
    <parameter name='IP' value='198.18.0.3'/>
  </filterref>
</filterbinding>)",
                                                 "b.xml");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->owner_name, "oracle-vm");
  EXPECT_EQ(b->owner_uuid, "6f726163-6c65-4000-8000-000000000001");
  EXPECT_EQ(b->portdev, "vnet0");
  EXPECT_EQ(b->linkdev, "eth0");
  EXPECT_EQ(b->mac, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x0a, 0x0b, 0x02}));
  EXPECT_EQ(b->filter, "clean-traffic");
  EXPECT_EQ(b->line, 6);
  ASSERT_NE(b->Param("IP"), nullptr);
  EXPECT_EQ(*b->Param("IP"), (std::vector<std::string>{"198.18.0.2", "198.18.0.3"}));
  EXPECT_EQ(b->params[1].first, "DHCPSERVER");
  EXPECT_EQ(b->Param("NOPE"), nullptr);
}

struct BadBinding {
  const char* name;
  const char* xml;
  const char* expected;
};
const BadBinding kBad[] = {
    {"not_xml", "<filterbinding>", "not well-formed XML"},
    {"wrong_root", "<filter name='x'/>", "unknown root element"},
    {"no_owner",
     "<filterbinding><portdev name='v'/><mac address='1:2:3:4:5:6'/><filterref "
     "filter='f'/></filterbinding>",
     "filterbinding/owner: missing"},
    {"no_portdev",
     "<filterbinding><owner><name>a</name><uuid>u</uuid></owner><mac "
     "address='1:2:3:4:5:6'/><filterref filter='f'/></filterbinding>",
     "portdev/name: missing"},
    {"bad_mac",
     "<filterbinding><owner><name>a</name><uuid>u</uuid></owner><portdev name='v'/><mac "
     "address='1:2:3'/><filterref filter='f'/></filterbinding>",
     "mac/address: '1:2:3' is not a MAC address"},
    {"no_filterref",
     "<filterbinding><owner><name>a</name><uuid>u</uuid></owner><portdev name='v'/><mac "
     "address='1:2:3:4:5:6'/></filterbinding>",
     "filterref/filter: missing"},
    {"bad_parameter_value",
     "<filterbinding><owner><name>a</name><uuid>u</uuid></owner><portdev name='v'/><mac "
     "address='1:2:3:4:5:6'/><filterref filter='f'><parameter name='IP' value='a b'/>"
     "</filterref></filterbinding>",
     "parameter: needs name"},
};

class BadBindingTest : public testing::TestWithParam<BadBinding> {};

TEST_P(BadBindingTest, RejectedWithReason) {
  absl::StatusOr<Binding> b = ParseBindingString(GetParam().xml, "b.xml");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(std::string(b.status().message()).find(GetParam().expected), std::string::npos)
      << b.status().message();
  EXPECT_EQ(std::string(b.status().message()).rfind("b.xml:", 0), 0u) << b.status().message();
}

INSTANTIATE_TEST_SUITE_P(Errors, BadBindingTest, testing::ValuesIn(kBad),
                         [](const auto& i) { return std::string(i.param.name); });

TEST(Binding, MissingFileIsNotFound) {
  absl::StatusOr<Binding> b = ParseBindingFile("/nonexistent/binding.xml");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace nwfq
