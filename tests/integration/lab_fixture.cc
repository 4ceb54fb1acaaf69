#include "tests/integration/lab_fixture.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tools/lab/lab.h"

namespace nwfq::testing {
namespace {

constexpr char kNwfqd[] = NWFQD_PATH;
constexpr char kNwfqctl[] = NWFQCTL_PATH;

// Appends to `rules` the lines of `text` that mention an NWFQ chain, prefixed with `tool`.
void AppendNwfqLines(const std::string& tool, const std::string& text, std::string* rules) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StrContains(line, "NWFQ")) absl::StrAppend(rules, tool, " ", line, "\n");
  }
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

sub::RunResult MustRun(const Argv& argv, absl::Duration timeout) {
  absl::StatusOr<sub::RunResult> r = sub::Run(argv, {.stdin_data = "", .timeout = timeout});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : sub::RunResult{};
}

bool WaitForText(const std::string& path, const std::string& text, absl::Duration limit) {
  const absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (absl::StrContains(ReadFile(path), text)) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

void LabFixture::SetUp() {
  if (geteuid() != 0) GTEST_SKIP() << "integration tests need root (namespaces, iptables)";
  absl::StatusOr<sub::RunResult> ns = sub::Run({"ip", "netns", "list"});
  if (!ns.ok() || !ns->ok()) GTEST_SKIP() << "`ip netns` is unavailable here";
  // Start from nothing: a lab left by a crashed run may still hold a queue or rules.
  absl::Status down = lab::Down();
  ASSERT_TRUE(down.ok()) << down;
  lab_up_ = true;  // from here on TearDown takes the lab down, a half-built one too
  absl::Status up = lab::Up();
  ASSERT_TRUE(up.ok()) << up;
  std::string tmpl = absl::StrCat(
      "/tmp/nwfq-", ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name(),
      ".XXXXXX");
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  dir_ = tmpl;
  log_path_ = dir_ + "/nwfqd.log";
  control_ = dir_ + "/nwfqd.sock";
}

void LabFixture::TearDown() {
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    sub::Stop(*it, SIGTERM, absl::Seconds(3));
  }
  children_.clear();
  if (nwfqd_ > 0) StopNwfqd();
  if (lab_up_) {
    EXPECT_EQ(KernelRules(), "") << "nwfqd left rules behind";
    absl::Status down = lab::Down();
    EXPECT_TRUE(down.ok()) << down;
    for (const std::string& ns : lab::Namespaces()) {
      EXPECT_FALSE(lab::NamespaceExists(ns)) << ns << " still exists after lab down";
    }
    lab_up_ = false;
  }
  if (!dir_.empty()) {
    if (HasFailure()) std::fprintf(stderr, "nwfqd log:\n%s", NwfqdLog().c_str());
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void LabFixture::StartNwfqd(const Argv& extra) {
  Argv argv = {kNwfqd, "--log-verdicts", "--log-rate", "1000"};
  argv.insert(argv.end(), nwfqd_args_.begin(), nwfqd_args_.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  // Only what this start writes counts: an earlier run's "ready" is in the same log.
  const size_t before = NwfqdLog().size();
  absl::StatusOr<pid_t> pid = sub::Spawn(lab::InNs(lab::kHostNs, argv), log_path_);
  ASSERT_TRUE(pid.ok()) << pid.status();
  nwfqd_ = *pid;
  for (int i = 0; i < 200; ++i) {  // bounded: 20 s
    if (absl::StrContains(NwfqdLog().substr(before), "nwfqd: ready")) return;
    const int code = sub::WaitFor(nwfqd_, absl::Milliseconds(100));
    if (code != -1) {
      nwfqd_ = -1;
      FAIL() << "nwfqd exited with " << code << ":\n" << NwfqdLog();
    }
  }
  FAIL() << "nwfqd not ready after 20 s:\n" << NwfqdLog();
}

std::string LabFixture::StopNwfqd() {
  // Never signal pid -1 (kill(-1, ...) reaches every process).
  if (nwfqd_ <= 0) {
    ADD_FAILURE() << "StopNwfqd: nwfqd is not running";
  } else {
    EXPECT_EQ(sub::Stop(nwfqd_, SIGTERM, absl::Seconds(10)), 0)
        << "nwfqd did not exit cleanly on SIGTERM";
    nwfqd_ = -1;
  }
  return NwfqdLog();
}

int LabFixture::KillNwfqd() {
  if (nwfqd_ <= 0) return -1;
  const int code = sub::Stop(nwfqd_, SIGKILL, absl::Seconds(5));
  nwfqd_ = -1;
  return code;
}

std::string LabFixture::SteeringRules() {
  std::string rules;
  for (const char* tool : {"iptables", "ip6tables"}) {
    AppendNwfqLines(tool, MustRun(lab::InNs(lab::kHostNs, {tool, "-w", "-S"})).out, &rules);
  }
  return rules;
}

std::string LabFixture::KernelRules() {
  std::string rules = SteeringRules();
  AppendNwfqLines("ebtables", MustRun(lab::InNs(lab::kHostNs, {"ebtables-save", "-t", "nat"})).out,
                  &rules);
  return rules;
}

pid_t LabFixture::Spawn(const Argv& argv, const std::string& log) {
  absl::StatusOr<pid_t> pid = sub::Spawn(argv, log);
  EXPECT_TRUE(pid.ok()) << pid.status();
  if (!pid.ok()) return -1;
  children_.push_back(*pid);
  return *pid;
}

void LabFixture::Listen(const std::string& ns, int port, bool ipv6) {
  const pid_t pid = Spawn(
      lab::InNs(ns, {"timeout", "60", "socat",
                     absl::StrCat(ipv6 ? "TCP6-LISTEN:" : "TCP-LISTEN:", port, ",reuseaddr,fork"),
                     "EXEC:echo nwfq-ok"}));
  ASSERT_GT(pid, 0);
  if (!WaitListening(ns, port)) FAIL() << "listener on port " << port << " did not come up";
}

bool LabFixture::WaitListening(const std::string& ns, int port) {
  for (int i = 0; i < 50; ++i) {
    sub::RunResult r = MustRun(lab::InNs(ns, {"ss", "-Hltn", absl::StrCat("sport = :", port)}));
    if (absl::StrContains(r.out, "LISTEN")) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

sub::RunResult LabFixture::Connect(const std::string& ns, const std::string& addr, int port,
                                   const ConnectOptions& options) {
  const bool ipv6 = absl::StrContains(addr, ':');
  std::string target =
      absl::StrCat(ipv6 ? "TCP6:[" : "TCP:", addr, ipv6 ? "]:" : ":", port, ",connect-timeout=2");
  if (options.source_port != 0) {
    absl::StrAppend(&target, ",sourceport=", options.source_port, ",reuseaddr,linger=0");
  }
  return MustRun(
      lab::InNs(ns, {"timeout", "10", "socat", "-T", std::to_string(options.idle_timeout_s), "-t",
                     std::to_string(options.close_timeout_s), "-", target}));
}

sub::RunResult LabFixture::Ping(const std::string& ns, const std::string& dst, int count,
                                const Argv& extra) {
  Argv argv = {"ping", "-n", "-c", std::to_string(count), "-i", "0.2", "-W", "1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(dst);
  return MustRun(lab::InNs(ns, argv));
}

sub::RunResult LabFixture::Ctl(const Argv& args) {
  Argv argv = {kNwfqctl, "--control", control_};
  argv.insert(argv.end(), args.begin(), args.end());
  return MustRun(lab::InNs(lab::kHostNs, argv), absl::Seconds(15));
}

}  // namespace nwfq::testing
