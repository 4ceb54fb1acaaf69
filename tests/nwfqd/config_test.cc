// nwfqd's configuration: the config file (key = value with file:line errors), the command
// line over it, queue lists.
#include "tools/nwfqd/config.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nwfq::nwfqd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

struct QueueRow {
  const char* text;
  std::vector<uint16_t> want;  // empty = error
};

TEST(ParseQueuesTest, Rows) {
  const QueueRow rows[] = {
      {"0", {0}},
      {"3", {3}},
      {"0-3", {0, 1, 2, 3}},
      {"0,2,5-6", {0, 2, 5, 6}},
      {"2,2,1", {1, 2}},
      {" 1 , 4 ", {1, 4}},
      {"65535", {65535}},
      {"", {}},
      {"3-1", {}},
      {"a", {}},
      {"65536", {}},
      {"0-64", {}},  // 65 queues: more than 64
  };
  for (const QueueRow& r : rows) {
    absl::StatusOr<std::vector<uint16_t>> q = ParseQueues(r.text);
    if (r.want.empty()) {
      EXPECT_FALSE(q.ok()) << r.text;
    } else {
      ASSERT_TRUE(q.ok()) << r.text << ": " << q.status();
      EXPECT_EQ(*q, r.want) << r.text;
    }
  }
}

TEST(ConfigFileTest, AppliesKeys) {
  Config c;
  const absl::Status st = ApplyConfigText(
      "# nwfqd.conf\n"
      "queues = 2-3\n"
      "fail-open = yes     # trailing comment\n"
      "conntrack-size = 4096\n"
      "connlimit-idle = 600\n"
      "timeout.icmp = 3\n"
      "timeout.tcp/established = 3600\n"
      "control = none\n"
      "metrics = 127.0.0.1:9101\n"
      "\n"
      "steer = none\n"
      "queue-maxlen = 65536\n"
      "malformed = accept\n"
      "log-rate = 5\n",
      "nwfqd.conf", &c);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(c.queues, (std::vector<uint16_t>{2, 3}));
  EXPECT_TRUE(c.fail_open);
  EXPECT_EQ(c.conntrack_size, 4096u);
  EXPECT_EQ(c.connlimit_idle_seconds, 600u);
  EXPECT_THAT(c.timeouts, ElementsAre(Pair("icmp", 3u), Pair("tcp/established", 3600u)));
  EXPECT_FALSE(c.has_control());
  EXPECT_EQ(c.metrics_addr, "127.0.0.1:9101");
  EXPECT_EQ(c.steer, "none");
  EXPECT_EQ(c.queue_maxlen, 65536u);
  EXPECT_TRUE(c.malformed_accept);
  EXPECT_EQ(c.log_rate, 5);
}

struct ErrorRow {
  const char* text;
  const char* want;  // substring of the error
};

TEST(ConfigFileTest, ErrorsNameFileAndLine) {
  const ErrorRow rows[] = {
      {"queues 3\n", "f.conf:1: expected `key = value`"},
      {"\n\nbogus = 1\n", "f.conf:3: unknown key 'bogus'"},
      {"queues = 9-1\n", "f.conf:1: queues: bad queue list"},
      {"fail-open = maybe\n", "f.conf:1: fail-open: 'maybe' is not yes/no"},
      {"conntrack-size = 10\n", "f.conf:1: conntrack-size: 10 is out of range"},
      {"connlimit-idle = -1\n", "f.conf:1: connlimit-idle:"},
      {"timeout.icmpp = 3\n", "f.conf:1: timeout.icmpp:"},
      {"timeout.icmp = 0\n", "f.conf:1: timeout.icmp: 0 is out of range"},
      {"steer = nft-please\n", "f.conf:1: steer: expected auto, iptables or none"},
      {"metrics = 9101\n", "f.conf:1: metrics: expected ADDR:PORT"},
      {"filters = /nonexistent/nwfq\n", "f.conf:1: filters: no directory"},
      {"timeout = icmp=3\n", "f.conf:1: unknown key 'timeout'"},
      {"queue-maxlen = 8\n", "f.conf:1: queue-maxlen: 8 is out of range"},
      {"malformed = reject\n", "f.conf:1: malformed: expected drop or accept"},
  };
  for (const ErrorRow& r : rows) {
    Config c;
    const absl::Status st = ApplyConfigText(r.text, "f.conf", &c);
    EXPECT_FALSE(st.ok()) << r.text;
    EXPECT_THAT(std::string(st.message()), HasSubstr(r.want)) << r.text;
  }
}

TEST(ConfigFileTest, AllErrorsAreReportedTogether) {
  Config c;
  const absl::Status st = ApplyConfigText("a = 1\nqueues = 1\nb = 2\n", "x.conf", &c);
  EXPECT_THAT(std::string(st.message()), HasSubstr("x.conf:1:"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("x.conf:3:"));
}

class CommandLineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nwfqd-config-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    binding_ = dir_ + "/vnet0.xml";
    std::ofstream(binding_) << "<filterbinding/>\n";
  }
  void TearDown() override {
    unlink(binding_.c_str());
    unlink((dir_ + "/nwfqd.conf").c_str());
    rmdir(dir_.c_str());
  }
  std::string WriteConf(const std::string& text) {
    const std::string path = dir_ + "/nwfqd.conf";
    std::ofstream(path) << text;
    return path;
  }
  absl::StatusOr<Config> Parse(std::vector<std::string> args) {
    CLI::App app;
    CommandLine cl(app);
    std::vector<const char*> argv = {"nwfqd"};
    for (const std::string& a : args) argv.push_back(a.c_str());
    app.parse(static_cast<int>(argv.size()), argv.data());
    return cl.Finish();
  }
  std::string dir_, binding_;
};

TEST_F(CommandLineTest, FlagsOverrideTheFile) {
  const std::string conf = WriteConf(
      "queues = 4\nfail-open = yes\ntimeout.icmp = 10\nlog-rate = 7\nbinding = " + binding_ + "\n");
  absl::StatusOr<Config> c =
      Parse({"--config", conf, "--queue", "1", "--fail-closed", "--timeout", "icmp=3"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->queues, (std::vector<uint16_t>{1}));  // the flag, not the file's 4
  EXPECT_FALSE(c->fail_open);                        // --fail-closed beats fail-open = yes
  EXPECT_EQ(c->log_rate, 7);                         // from the file
  // File first, then the command line: the effective icmp timeout is the later 3.
  EXPECT_THAT(c->timeouts, ElementsAre(Pair("icmp", 10u), Pair("icmp", 3u)));
  EXPECT_EQ(c->binding_files, (std::vector<std::string>{binding_}));
}

TEST_F(CommandLineTest, DefaultsWithoutFile) {
  absl::StatusOr<Config> c = Parse({"--binding", binding_});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->filters_dir, "/etc/libvirt/nwfilter");
  EXPECT_EQ(c->control_path, "/run/nwfq/nwfqd.sock");
  EXPECT_EQ(c->queues, (std::vector<uint16_t>{0}));
  EXPECT_FALSE(c->fail_open);
  EXPECT_TRUE(c->drop_capabilities);
}

TEST_F(CommandLineTest, NoBindingIsAnError) {
  absl::StatusOr<Config> c = Parse({"--queues", "0-1"});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("no binding"));
}

TEST_F(CommandLineTest, BadFileLineIsReported) {
  const std::string conf = WriteConf("queues = 1\nfail-open = perhaps\n");
  absl::StatusOr<Config> c = Parse({"--config", conf, "--binding", binding_});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(conf + ":2: fail-open"));
}

}  // namespace
}  // namespace nwfq::nwfqd
