// Unit tests (no root, no kernel): the steering rule text nwfqd feeds to iptables-restore,
// the backend choice, interface-name validation, and the explicit-argv process runner the
// lab and the steering use.
#include "tools/nwfqd/steering.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/lab/subprocess.h"

namespace nwfq {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(SteeringScript, OneTapFailClosed) {
  EXPECT_EQ(steer::IptablesRestoreScript({.portdevs = {"vnet0"}, .queue_num = 3}),
            "*filter\n"
            ":NWFQ-FWD - [0:0]\n"
            ":NWFQ-IN - [0:0]\n"
            "-A NWFQ-FWD -m physdev --physdev-in vnet0 -j NFQUEUE --queue-num 3\n"
            "-A NWFQ-FWD -m physdev --physdev-out vnet0 --physdev-is-bridged -j NFQUEUE "
            "--queue-num 3\n"
            "-A NWFQ-IN -m physdev --physdev-in vnet0 -j NFQUEUE --queue-num 3\n"
            "-I FORWARD 1 -j NWFQ-FWD\n"
            "-I INPUT 1 -j NWFQ-IN\n"
            "COMMIT\n");
}

TEST(SteeringScript, FailOpenBypassesOnEveryRule) {
  const std::string s =
      steer::IptablesRestoreScript({.portdevs = {"vnet0", "vnet1"}, .fail_open = true});
  size_t rules = 0, bypass = 0;
  for (size_t p = s.find("-j NFQUEUE"); p != std::string::npos; p = s.find("-j NFQUEUE", p + 1))
    ++rules;
  for (size_t p = s.find("--queue-bypass"); p != std::string::npos;
       p = s.find("--queue-bypass", p + 1))
    ++bypass;
  EXPECT_EQ(rules, 6u);  // 3 per tap
  EXPECT_EQ(bypass, 6u);
  EXPECT_THAT(s, HasSubstr("--physdev-in vnet1 -j NFQUEUE --queue-num 0 --queue-bypass"));
}

TEST(SteeringScript, FailClosedNeverBypasses) {
  EXPECT_THAT(steer::IptablesRestoreScript({.portdevs = {"vnet0"}}), Not(HasSubstr("bypass")));
}

TEST(SteeringPortdev, Validation) {
  struct Row {
    std::string name;
    bool ok;
  } rows[] = {
      {"vnet0", true},
      {"tap-vm_1.2", true},
      {"a", true},
      {"123456789012345", true},
      {"1234567890123456", false},
      {"", false},
      {"vnet0 -j ACCEPT", false},
      {"vnet0\n-A INPUT", false},
      {"-vnet0", false},
      {"vnet+", false},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(steer::ValidatePortdev(r.name).ok(), r.ok) << "'" << r.name << "'";
  }
}

TEST(SteeringChoose, Backends) {
  steer::Detection none, ipt;
  ipt.iptables = true;
  EXPECT_EQ(*steer::Choose("none", none), steer::Backend::kNone);
  EXPECT_EQ(*steer::Choose("auto", ipt), steer::Backend::kIptables);
  EXPECT_EQ(*steer::Choose("iptables", ipt), steer::Backend::kIptables);
  EXPECT_FALSE(steer::Choose("auto", none).ok());
  EXPECT_FALSE(steer::Choose("iptables", none).ok());
  EXPECT_EQ(steer::Choose("nft-please", ipt).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Subprocess, CapturesOutputAndExitCode) {
  absl::StatusOr<sub::RunResult> r = sub::Run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
}

TEST(Subprocess, PassesArgumentsVerbatimWithoutAShell) {
  absl::StatusOr<sub::RunResult> r = sub::Run({"printf", "%s|", "a b", "$(id)", "'"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out, "a b|$(id)|'|");
}

TEST(Subprocess, FeedsStdin) {
  absl::StatusOr<sub::RunResult> r =
      sub::Run({"cat"}, {.stdin_data = std::string(200000, 'x'), .timeout = absl::Seconds(10)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out.size(), 200000u);  // larger than a pipe buffer: no deadlock
}

TEST(Subprocess, KillsAfterTimeout) {
  absl::StatusOr<sub::RunResult> r =
      sub::Run({"sleep", "30"}, {.stdin_data = "", .timeout = absl::Milliseconds(200)});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->ok());
}

TEST(Subprocess, MissingProgramIsAnError) {
  EXPECT_FALSE(sub::Run({"nwfq-no-such-program"}).ok());
  absl::StatusOr<std::string> out = sub::RunOk({"false"});
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("false: exit 1"));
}

TEST(Subprocess, ShellQuoteForMessages) {
  EXPECT_EQ(sub::ShellQuote({"ip", "-n", "nwfq-host", "a b", "it's"}),
            "ip -n nwfq-host 'a b' 'it'\\''s'");
}

}  // namespace
}  // namespace nwfq
