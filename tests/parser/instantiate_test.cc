// Instantiation: filterref expansion, variable scoping, iterators, typed values and
// libvirt's evaluation order (semantics sections a.3, a.6, b.3, c.1, e.6).
#include "parser/instantiate.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "parser/binding.h"
#include "parser/filter_set.h"

namespace nwfq {
namespace {

FilterSet MakeSet(const std::vector<std::string>& docs) {
  FilterSet set;
  int n = 0;
  for (const std::string& d : docs) {
    absl::Status s = set.AddString(d, "f" + std::to_string(n++) + ".xml");
    EXPECT_TRUE(s.ok()) << s;
  }
  return set;
}

Binding MakeBinding(const std::string& filter,
                    std::vector<std::pair<std::string, std::vector<std::string>>> params = {}) {
  Binding b;
  b.owner_name = "vm";
  b.portdev = "vnet0";
  b.mac = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
  b.filter = filter;
  b.params = std::move(params);
  return b;
}

std::string Ip4(const AttrSlot* s) {
  if (s == nullptr) return "<none>";
  return std::to_string(s->value.bytes[0]) + "." + std::to_string(s->value.bytes[1]) + "." +
         std::to_string(s->value.bytes[2]) + "." + std::to_string(s->value.bytes[3]);
}

TEST(Instantiate, PlainL3RuleValuesAreFullyTyped) {
  FilterSet set = MakeSet({R"(<filter name='t'>
    <rule action='accept' direction='in' priority='100' statematch='false'>
      <tcp srcipaddr='10.1.2.3' srcipmask='255.255.0.0' dstportstart='0x16' dstportend='23'
           state='NEW,ESTABLISHED' flags='SYN,ACK/SYN' connlimit-above='3'/>
    </rule>
    <rule action='drop' direction='out'><udp match='no' srcportstart='53' dstportstart='54'/></rule>
  </filter>)"});
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding("t"));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rules.size(), 2u);
  const ConcreteRule& r = b->rules[0];
  EXPECT_EQ(r.protocol, Protocol::kTcp);
  EXPECT_EQ(r.action, Action::kAccept);
  EXPECT_EQ(r.direction, Direction::kIn);
  EXPECT_EQ(r.priority, 100);
  EXPECT_FALSE(r.statematch);
  EXPECT_EQ(r.origin.filter, "t");
  EXPECT_EQ(r.origin.line, 2);
  EXPECT_EQ(Ip4(r.Find(Attr::kSrcIpAddr)), "10.1.2.3");
  ASSERT_NE(r.Find(Attr::kSrcIpMask), nullptr);
  EXPECT_EQ(r.Find(Attr::kSrcIpMask)->value.kind, ValueKind::kPrefix);
  EXPECT_EQ(r.Find(Attr::kSrcIpMask)->value.number, 16u);
  EXPECT_EQ(r.Find(Attr::kDstPortStart)->value.number, 22u);
  EXPECT_TRUE(r.Find(Attr::kDstPortStart)->value.hex);
  EXPECT_EQ(r.Find(Attr::kDstPortEnd)->value.number, 23u);
  EXPECT_EQ(r.Find(Attr::kState)->value.number, kStateNew | kStateEstablished);
  EXPECT_EQ(r.Find(Attr::kTcpFlags)->value.number, (0x12u << 8) | 0x02u);
  EXPECT_EQ(r.Find(Attr::kConnlimitAbove)->value.number, 3u);
  // Slots are in Attr order.
  for (size_t i = 1; i < r.attrs.size(); ++i) EXPECT_LT(r.attrs[i - 1].attr, r.attrs[i].attr);
  // Negation per slot after inheritance: dstportstart follows srcportstart.
  const ConcreteRule& u = b->rules[1];
  EXPECT_TRUE(u.Find(Attr::kSrcPortStart)->negated);
  EXPECT_TRUE(u.Find(Attr::kDstPortStart)->negated);
  EXPECT_EQ(b->l3_order, (std::vector<uint32_t>{0, 1}));
}

TEST(Instantiate, IpProtocolNamesBecomeNumbers) {
  FilterSet set = MakeSet({R"(<filter name='t' chain='ipv4'>
    <rule action='accept' direction='out'><ip protocol='udp' dstportstart='53'/></rule>
  </filter>)"});
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding("t"));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rules.size(), 1u);
  EXPECT_EQ(b->rules[0].Find(Attr::kProtocol)->value.number, 17u);
}

TEST(Instantiate, RootFilterL3RulesComeFirstWithWarning) {
  FilterSet set = MakeSet({R"(<filter name='top'>
      <filterref filter='sub'/>
      <rule action='drop' direction='inout' priority='900'><all/></rule>
      <rule action='accept' direction='in' priority='300'><tcp dstportstart='22'/></rule>
    </filter>)",
                           R"(<filter name='sub' chain='ipv4'>
      <rule action='accept' direction='in' priority='100'><tcp dstportstart='80'/></rule>
    </filter>)"});
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding("top"));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rules.size(), 3u);
  EXPECT_EQ(b->rules[0].origin.filter, "sub");  // depth-first document order
  // Root rules by priority (300, 900), then the ipv4-chain rule despite priority 100.
  EXPECT_EQ(b->l3_order, (std::vector<uint32_t>{2, 1, 0}));
  bool warned = false;
  for (const Warning& w : b->warnings)
    warned |=
        w.origin.filter == "sub" && w.message.find("after root-filter rule") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(Instantiate, CallerValueWinsAndFilterrefParametersFillTheRest) {
  FilterSet set = MakeSet({R"(<filter name='top'>
      <filterref filter='sub'><parameter name='IP' value='10.9.9.9'/>
        <parameter name='PORT' value='8080'/></filterref>
    </filter>)",
                           R"(<filter name='sub'>
      <rule action='accept' direction='in'><tcp dstipaddr='$IP' dstportstart='$PORT'/></rule>
    </filter>)"});
  absl::StatusOr<InstantiatedBinding> b =
      Instantiate(set, MakeBinding("top", {{"IP", {"198.18.0.2"}}}));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rules.size(), 1u);
  EXPECT_EQ(Ip4(b->rules[0].Find(Attr::kDstIpAddr)), "198.18.0.2");
  EXPECT_EQ(b->rules[0].Find(Attr::kDstPortStart)->value.number, 8080u);
}

TEST(Instantiate, MacVariableIsTheInterfaceMac) {
  FilterSet set = MakeSet({R"(<filter name='t' chain='mac'>
      <rule action='return' direction='out'><mac srcmacaddr='$MAC'/></rule></filter>)"});
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding("t"));
  ASSERT_TRUE(b.ok()) << b.status();
  const AttrSlot* mac = b->rules[0].Find(Attr::kSrcMacAddr);
  ASSERT_NE(mac, nullptr);
  EXPECT_EQ(mac->value.kind, ValueKind::kMac);
  EXPECT_EQ(mac->value.bytes[0], 0x52);
  EXPECT_EQ(mac->value.bytes[5], 0x02);
}

// Iterator semantics with the values of libvirt's firewall test harness.
struct IterCase {
  const char* name;
  const char* element;
  size_t expected_rules;
};
const IterCase kIterCases[] = {
    {"plain_vars_lockstep_dups_skipped", "<tcp srcipaddr='$A' srcportstart='$B'/>", 3},
    {"same_iterator_lockstep", "<tcp srcipaddr='$A[@1]' srcportstart='$B[@1]'/>", 3},
    {"two_iterators_cartesian", "<udp srcipaddr='$A[@1]' dstipaddr='$A[@2]'/>", 9},
    {"three_lists_two_iterators",
     "<sctp srcipaddr='$A[@1]' srcportstart='$B[@2]' dstportstart='$C[@2]'/>", 12},
    {"pinned_elements", "<tcp srcipaddr='$A[1]' srcportstart='$B[2]'/>", 1},
    {"pinned_and_iterated", "<tcp srcipaddr='$A[3]' srcportstart='$C'/>", 4},
    {"no_variables", "<tcp srcportstart='1'/>", 1},
};

class IteratorTest : public testing::TestWithParam<IterCase> {};

TEST_P(IteratorTest, ProducesExpectedCombinations) {
  FilterSet set = MakeSet({std::string("<filter name='t'><rule action='accept' direction='out'>") +
                           GetParam().element + "</rule></filter>"});
  absl::StatusOr<InstantiatedBinding> b =
      Instantiate(set, MakeBinding("t", {{"A", {"1.1.1.1", "2.2.2.2", "3.3.3.3", "3.3.3.3"}},
                                         {"B", {"80", "90", "80", "80"}},
                                         {"C", {"1080", "1090", "1100", "1110"}}}));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->rules.size(), GetParam().expected_rules);
}

INSTANTIATE_TEST_SUITE_P(Iterators, IteratorTest, testing::ValuesIn(kIterCases),
                         [](const auto& i) { return std::string(i.param.name); });

TEST(Instantiate, FirstIteratorVariesFastest) {
  FilterSet set = MakeSet({R"(<filter name='t'><rule action='accept' direction='out'>
      <udp srcipaddr='$A[@1]' dstipaddr='$B[@2]'/></rule></filter>)"});
  absl::StatusOr<InstantiatedBinding> b = Instantiate(
      set, MakeBinding("t", {{"A", {"1.1.1.1", "2.2.2.2"}}, {"B", {"9.9.9.8", "9.9.9.9"}}}));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->rules.size(), 4u);
  std::vector<std::string> got;
  for (const ConcreteRule& r : b->rules)
    got.push_back(Ip4(r.Find(Attr::kSrcIpAddr)) + ">" + Ip4(r.Find(Attr::kDstIpAddr)));
  EXPECT_EQ(got, (std::vector<std::string>{"1.1.1.1>9.9.9.8", "2.2.2.2>9.9.9.8", "1.1.1.1>9.9.9.9",
                                           "2.2.2.2>9.9.9.9"}));
}

// Errors of instantiation, each naming what is wrong.
struct ErrorCase {
  const char* name;
  std::vector<std::string> docs;
  std::vector<std::pair<std::string, std::vector<std::string>>> params;
  const char* expected;
};
const ErrorCase kErrorCases[] = {
    {"unknown_filter",
     {"<filter name='t'><filterref filter='nope'/></filter>"},
     {},
     "filter 'nope' (referenced by 't') is not defined"},
    {"cycle",
     {"<filter name='a'><filterref filter='b'/></filter>",
      "<filter name='b'><filterref filter='c'/></filter>",
      "<filter name='c'><filterref filter='a'/></filter>"},
     {},
     "reference cycle a -> b -> c -> a"},
    {"undefined_variable",
     {"<filter name='t'><rule action='accept' direction='in'><tcp "
      "srcipaddr='$X'/></rule></filter>"},
     {},
     "variable $X used in filter 't' is not defined"},
    {"unset_ip_hint",
     {"<filter name='t'><rule action='accept' direction='in'><tcp "
      "srcipaddr='$IP'/></rule></filter>"},
     {},
     "does not learn guest addresses"},
    {"wrong_type_after_substitution",
     {"<filter name='t'><rule action='accept' direction='in'><tcp "
      "srcipaddr='$X'/></rule></filter>"},
     {{"X", {"fe80::1"}}},
     "tcp/srcipaddr: value 'fe80::1' of $X is not an IPv4 address"},
    {"port_out_of_range_after_substitution",
     {"<filter name='t'><rule action='accept' direction='in'><tcp "
      "dstportstart='$P'/></rule></filter>"},
     {{"P", {"70000"}}},
     "value '70000' of $P is not a 16-bit number"},
    {"lockstep_lengths_differ",
     {"<filter name='t'><rule action='accept' direction='in'><tcp srcipaddr='$A' "
      "dstportstart='$P'/></rule></filter>"},
     {{"A", {"1.1.1.1", "2.2.2.2"}}, {"P", {"1", "2", "3"}}},
     "must have the same length"},
    {"element_out_of_range",
     {"<filter name='t'><rule action='accept' direction='in'><tcp "
      "srcipaddr='$A[2]'/></rule></filter>"},
     {{"A", {"1.1.1.1", "2.2.2.2"}}},
     "$A[2] is out of range ($A has 2 values)"},
};

class InstantiateErrorTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(InstantiateErrorTest, FailsNamingTheProblem) {
  const ErrorCase& c = GetParam();
  FilterSet set = MakeSet(c.docs);
  std::string top = c.docs[0].substr(c.docs[0].find("name='") + 6);
  top = top.substr(0, top.find('\''));
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding(top, c.params));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(std::string(b.status().message()).find(c.expected), std::string::npos)
      << b.status().message();
}

INSTANTIATE_TEST_SUITE_P(Errors, InstantiateErrorTest, testing::ValuesIn(kErrorCases),
                         [](const auto& i) { return std::string(i.param.name); });

TEST(Instantiate, TopFilterMissing) {
  FilterSet set;
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding("clean-traffic"));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(std::string(b.status().message()).find("'clean-traffic' is not defined"),
            std::string::npos);
}

TEST(Instantiate, SameFilterTwiceIsExpandedTwice) {
  FilterSet set =
      MakeSet({R"(<filter name='t'><filterref filter='s'/><filterref filter='s'/></filter>)",
               R"(<filter name='s'><rule action='drop' direction='in'><all/></rule></filter>)"});
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding("t"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->rules.size(), 2u);
}

TEST(Instantiate, L2RootChainInterleavesJumpsByPriorityJumpFirstOnTie) {
  FilterSet set = MakeSet({R"(<filter name='top'>
      <rule action='accept' direction='out' priority='-500'><mac protocolid='arp'/></rule>
      <filterref filter='arpf'/>
      <rule action='drop' direction='inout' priority='-900'/>
      <filterref filter='macf'/>
    </filter>)",
                           R"(<filter name='arpf' chain='arp'>
      <rule action='drop' direction='out' priority='-600'><arp/></rule>
      <rule action='return' direction='out' priority='-700'><arp opcode='Request'/></rule>
    </filter>)",
                           R"(<filter name='macf' chain='mac'>
      <rule action='return' direction='out'><mac srcmacaddr='$MAC'/></rule>
    </filter>)"});
  absl::StatusOr<InstantiatedBinding> b = Instantiate(set, MakeBinding("top"));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->l2_chains.size(), 3u);
  std::vector<std::string> root;
  for (const L2Entry& e : b->l2_chains[0].entries) {
    root.push_back(e.kind == L2Entry::Kind::kJump
                       ? "jump " + b->l2_chains[e.index].name
                       : "rule " + std::to_string(b->rules[e.index].priority));
  }
  EXPECT_EQ(root, (std::vector<std::string>{"rule -900", "jump mac", "jump arp", "rule -500"}));
  // Inside the arp chain: by rule priority; both raised to the chain priority (-500).
  const L2Chain& arp = b->l2_chains[1].name == "arp" ? b->l2_chains[1] : b->l2_chains[2];
  ASSERT_EQ(arp.entries.size(), 2u);
  EXPECT_EQ(b->rules[arp.entries[0].index].origin.line, 3);
  EXPECT_EQ(b->rules[arp.entries[0].index].priority, -500);
  EXPECT_TRUE(b->l3_order.empty());
}

TEST(Instantiate, CleanTrafficMatchesLibvirtLayout) {
  const std::string dir = std::string(NWFQ_SHARED_DIR) + "/nwfilter/predefined";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "shared data not found at " << dir;
  absl::StatusOr<FilterSet> set = FilterSet::LoadDirectory(dir);
  ASSERT_TRUE(set.ok()) << set.status();
  absl::StatusOr<InstantiatedBinding> b =
      Instantiate(*set, MakeBinding("clean-traffic", {{"IP", {"198.18.0.2", "198.18.0.3"}}}));
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<std::string> root;
  for (const L2Entry& e : b->l2_chains[0].entries) {
    if (e.kind == L2Entry::Kind::kJump) {
      root.push_back("jump " + b->l2_chains[e.index].name + " " +
                     std::to_string(b->l2_chains[e.index].priority));
    } else {
      root.push_back(std::string(ActionName(b->rules[e.index].action)) + " " +
                     std::to_string(b->rules[e.index].priority));
    }
  }
  // Section e.6 (ipv4 at -700 carries allow-incoming-ipv4's in rule).
  EXPECT_EQ(root,
            (std::vector<std::string>{"jump mac -800", "jump ipv4-ip -710", "jump ipv4 -700",
                                      "accept -650", "jump arp-mac -520", "jump arp-ip -510",
                                      "accept -500", "jump rarp -400", "accept 500", "drop 1000"}));
  // I-vnet0-ipv4-ip: UDP from 0.0.0.0 (100), one return per $IP value (500), drop (1000).
  for (const L2Chain& c : b->l2_chains) {
    if (c.name != "ipv4-ip") continue;
    std::vector<std::string> got;
    for (const L2Entry& e : c.entries) {
      const ConcreteRule& r = b->rules[e.index];
      got.push_back(std::string(ActionName(r.action)) + " " + Ip4(r.Find(Attr::kSrcIpAddr)));
    }
    EXPECT_EQ(got, (std::vector<std::string>{"return 0.0.0.0", "return 198.18.0.2",
                                             "return 198.18.0.3", "drop <none>"}));
  }
  EXPECT_TRUE(b->l3_order.empty());
}

}  // namespace
}  // namespace nwfq
