#include "conntrack/timeouts.h"

#include "gtest/gtest.h"

namespace nwfq::ct {
namespace {

TEST(Timeouts, KernelDefaults) {
  struct Row {
    const char* name;
    uint32_t seconds;
  };
  const Row rows[] = {
      {"tcp/syn_sent", 120},
      {"tcp/syn_recv", 60},
      {"tcp/established", 432000},
      {"tcp/fin_wait", 120},
      {"tcp/close_wait", 60},
      {"tcp/last_ack", 30},
      {"tcp/time_wait", 120},
      {"tcp/close", 10},
      {"tcp/syn_sent2", 120},
      {"tcp/retrans", 300},
      {"tcp/unacknowledged", 300},
      {"udp", 30},
      {"udp/stream", 120},
      {"icmp", 30},
      {"icmpv6", 30},
      {"generic", 600},
      {"gre", 30},
      {"gre/stream", 180},
      {"sctp/established", 210},
      {"sctp/cookie_wait", 3},
      {"sctp/heartbeat_sent", 30},
  };
  TimeoutPolicy p;
  for (const Row& r : rows) {
    auto c = TimeoutPolicy::ParseName(r.name);
    ASSERT_TRUE(c.ok()) << r.name;
    EXPECT_EQ(p.Seconds(*c), r.seconds) << r.name;
  }
}

TEST(Timeouts, NamesRoundTripAndAliases) {
  for (int i = 0; i < kTimeoutClassCount; ++i) {
    auto c = static_cast<TimeoutClass>(i);
    auto parsed = TimeoutPolicy::ParseName(TimeoutPolicy::Name(c));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, c);
  }
  EXPECT_EQ(*TimeoutPolicy::ParseName("UDP/Replied"), TimeoutClass::kUdpStream);
  EXPECT_EQ(*TimeoutPolicy::ParseName(" icmp6 "), TimeoutClass::kIcmpv6);
  EXPECT_EQ(*TimeoutPolicy::ParseName("tcp/time-wait"), TimeoutClass::kTcpTimeWait);
  EXPECT_FALSE(TimeoutPolicy::ParseName("tcp").ok());
  EXPECT_FALSE(TimeoutPolicy::ParseName("tcp/bogus").ok());
}

TEST(Timeouts, SetClearAndParent) {
  TimeoutPolicy global;
  TimeoutPolicy vm(&global);
  ASSERT_TRUE(global.Set("icmp", 3).ok());
  EXPECT_EQ(vm.Seconds(TimeoutClass::kIcmp), 3u);  // inherited, read live
  ASSERT_TRUE(vm.Set("icmp", 7).ok());
  EXPECT_EQ(vm.Seconds(TimeoutClass::kIcmp), 7u);
  EXPECT_EQ(global.Seconds(TimeoutClass::kIcmp), 3u);
  vm.Clear(TimeoutClass::kIcmp);
  EXPECT_EQ(vm.Seconds(TimeoutClass::kIcmp), 3u);
  global.Clear(TimeoutClass::kIcmp);
  EXPECT_EQ(vm.Seconds(TimeoutClass::kIcmp), 30u);
  EXPECT_EQ(vm.Get(TimeoutClass::kUdpStream), 120 * kNanosPerSecond);
  EXPECT_FALSE(global.Set("tcp/established", kMaxTimeoutSeconds + 1).ok());
  EXPECT_TRUE(global.Set("tcp/established", kMaxTimeoutSeconds).ok());
}

TEST(Timeouts, ConfigText) {
  TimeoutPolicy p;
  ASSERT_TRUE(p.ApplyConfig("# comment\nicmp = 3\n\nudp/stream 90  # trailing\n").ok());
  EXPECT_EQ(p.Seconds(TimeoutClass::kIcmp), 3u);
  EXPECT_EQ(p.Seconds(TimeoutClass::kUdpStream), 90u);
  absl::Status st = p.ApplyConfig("icmp 3\nbogus 4\n");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("line 2"), std::string::npos);
  EXPECT_FALSE(p.ApplyConfig("icmp x\n").ok());
  std::string f = p.Format();
  EXPECT_NE(f.find("icmp 3 *\n"), std::string::npos);
  EXPECT_NE(f.find("tcp/established 432000\n"), std::string::npos);
}

}  // namespace
}  // namespace nwfq::ct
