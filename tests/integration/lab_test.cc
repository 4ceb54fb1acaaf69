// End-to-end tests in the lab (tools/lab/lab.h): real programs (ping, socat) send traffic
// through the kernel bridge, the steering rules and nwfqd's verdicts, with the lab's
// default filter (tools/lab/filters/nwfq-demo.xml bound to vnet0 by
// tools/lab/vnet0-binding.xml: in tcp/22, out icmp and udp/53, drop all other IPv4).
//
// Each test brings the lab up, starts nwfqd inside nwfq-host, probes, then stops nwfqd and
// tears the lab down, checking that no steering rule and no namespace is left. Needs root;
// skips otherwise. All tests share the namespace names: ctest runs them under one
// RESOURCE_LOCK. Every probe is bounded (ping -c/-W, socat connect-timeout, timeout(1)).
#include "tools/lab/lab.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/lab/subprocess.h"
#include "tools/nwfqd/steering.h"

namespace nwfq {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Argv = std::vector<std::string>;

constexpr char kNwfqd[] = NWFQD_PATH;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

sub::RunResult MustRun(const Argv& argv, absl::Duration timeout = absl::Seconds(20)) {
  absl::StatusOr<sub::RunResult> r = sub::Run(argv, {.stdin_data = "", .timeout = timeout});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : sub::RunResult{};
}

// Lines of `iptables -S` / `ip6tables -S` in nwfq-host that mention nwfq's chains.
std::string SteeringRules() {
  std::string rules;
  for (const char* tool : {"iptables", "ip6tables"}) {
    sub::RunResult r = MustRun(lab::InNs(lab::kHostNs, {tool, "-w", "-S"}));
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (absl::StrContains(line, "NWFQ")) absl::StrAppend(&rules, tool, " ", line, "\n");
    }
  }
  return rules;
}

class LabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "integration tests need root (namespaces, iptables)";
    absl::StatusOr<sub::RunResult> ns = sub::Run({"ip", "netns", "list"});
    if (!ns.ok() || !ns->ok()) GTEST_SKIP() << "`ip netns` is unavailable here";
    // Start from nothing: a lab left by a crashed run may still hold a queue or rules.
    absl::Status down = lab::Down();
    ASSERT_TRUE(down.ok()) << down;
    absl::Status up = lab::Up();
    ASSERT_TRUE(up.ok()) << up;
    lab_up_ = true;
    char tmpl[] = "/tmp/nwfq-lab-test.XXXXXX";
    const int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    log_path_ = tmpl;
    StartNwfqd();
  }

  void TearDown() override {
    StopListeners();
    if (nwfqd_ > 0) {
      const int code = sub::Stop(nwfqd_, SIGTERM, absl::Seconds(10));
      EXPECT_EQ(code, 0) << "nwfqd log:\n" << ReadFile(log_path_);
      nwfqd_ = -1;
    }
    if (lab_up_) {
      EXPECT_EQ(SteeringRules(), "") << "nwfqd left steering rules behind";
      absl::Status down = lab::Down();
      EXPECT_TRUE(down.ok()) << down;
      for (const std::string& ns : lab::Namespaces()) {
        EXPECT_FALSE(lab::NamespaceExists(ns)) << ns << " still exists after lab down";
      }
    }
    if (!log_path_.empty()) {
      if (HasFailure()) std::fprintf(stderr, "nwfqd log:\n%s", ReadFile(log_path_).c_str());
      unlink(log_path_.c_str());
    }
  }

  void StartNwfqd() {
    const std::string lab_dir = absl::StrCat(NWFQ_SOURCE_DIR, "/tools/lab");
    absl::StatusOr<pid_t> pid =
        sub::Spawn(lab::InNs(lab::kHostNs, {kNwfqd, "--filters", lab_dir + "/filters", "--binding",
                                            lab_dir + "/vnet0-binding.xml", "--log-verdicts",
                                            "--log-rate", "1000"}),
                   log_path_);
    ASSERT_TRUE(pid.ok()) << pid.status();
    nwfqd_ = *pid;
    // Ready = queue bound and steering installed (bounded: 20 s).
    for (int i = 0; i < 200; ++i) {
      if (absl::StrContains(ReadFile(log_path_), "nwfqd: ready")) return;
      const int code = sub::WaitFor(nwfqd_, absl::Milliseconds(100));
      if (code != -1) {
        nwfqd_ = -1;
        FAIL() << "nwfqd exited with " << code << ":\n" << ReadFile(log_path_);
      }
    }
    FAIL() << "nwfqd not ready after 20 s:\n" << ReadFile(log_path_);
  }

  // A TCP server in the VM on `port` that answers every connection with "nwfq-ok".
  void Listen(int port) {
    absl::StatusOr<pid_t> pid = sub::Spawn(lab::InNs(
        lab::kVmNs, {"timeout", "60", "socat", absl::StrCat("TCP-LISTEN:", port, ",reuseaddr,fork"),
                     "EXEC:echo nwfq-ok"}));
    ASSERT_TRUE(pid.ok()) << pid.status();
    listeners_.push_back(*pid);
    // Wait until it listens (bounded: 5 s).
    for (int i = 0; i < 50; ++i) {
      sub::RunResult r =
          MustRun(lab::InNs(lab::kVmNs, {"ss", "-Hltn", absl::StrCat("sport = :", port)}));
      if (absl::StrContains(r.out, "LISTEN")) return;
      absl::SleepFor(absl::Milliseconds(100));
    }
    FAIL() << "listener on port " << port << " did not come up";
  }

  void StopListeners() {
    for (pid_t pid : listeners_) sub::Stop(pid, SIGTERM, absl::Seconds(2));
    listeners_.clear();
  }

  // Connects from the peer to the VM's `port`; returns socat's result.
  sub::RunResult ConnectFromPeer(int port) {
    return MustRun(lab::InNs(lab::kPeerNs,
                             {"timeout", "10", "socat", "-T", "5", "-t", "3", "-",
                              absl::StrCat("TCP:", lab::kVmIp4, ":", port, ",connect-timeout=2")}));
  }

  sub::RunResult Ping(const std::string& ns, const std::string& dst, Argv extra = {}) {
    Argv argv = {"ping", "-n", "-c", "2", "-i", "0.2", "-W", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(dst);
    return MustRun(lab::InNs(ns, argv));
  }

  std::string NwfqdLog() const { return ReadFile(log_path_); }

  bool lab_up_ = false;
  pid_t nwfqd_ = -1;
  std::vector<pid_t> listeners_;
  std::string log_path_;
};

TEST_F(LabTest, PingFromVmToPeerPasses) {
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss"));
  // Both legs went through nwfqd: the request from the VM and the reply to it.
  EXPECT_THAT(NwfqdLog(), HasSubstr("ACCEPT       vnet0 from-vm    icmp 198.18.0.2 > 198.18.0.3"));
  EXPECT_THAT(NwfqdLog(), HasSubstr("ACCEPT       vnet0 to-vm      icmp 198.18.0.3 > 198.18.0.2"));
}

TEST_F(LabTest, LargePingPassesWhole) {
  // 1400-byte payload: more than a header-sized copy range; must still pass intact.
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4, {"-s", "1400"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss"));
}

TEST_F(LabTest, PingFromVmToHostPasses) {
  // VM -> host goes through INPUT (libvirt's HI- chain): out icmp is allowed there too.
  sub::RunResult r = Ping(lab::kVmNs, lab::kHostIp4);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(NwfqdLog(), HasSubstr("vnet0 vm-to-host icmp 198.18.0.2 > 198.18.0.1"));
}

TEST_F(LabTest, PingFromPeerToVmIsDropped) {
  // The filter allows only outbound icmp: an inbound echo request meets the final drop.
  sub::RunResult r = Ping(lab::kPeerNs, lab::kVmIp4);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr(" 100% packet loss"));
  EXPECT_THAT(NwfqdLog(), HasSubstr("DROP         vnet0 to-vm      icmp 198.18.0.3 > 198.18.0.2"));
}

TEST_F(LabTest, TcpFromPeerToVmPort22Passes) {
  Listen(22);
  sub::RunResult r = ConnectFromPeer(22);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("nwfq-ok"));
}

TEST_F(LabTest, TcpFromPeerToVmPort23IsDropped) {
  Listen(23);  // a real listener: a refusal would come from the VM, a timeout from nwfqd
  sub::RunResult r = ConnectFromPeer(23);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, Not(HasSubstr("nwfq-ok")));
  EXPECT_THAT(r.err, HasSubstr("timed out")) << "expected a silent drop, got: " << r.err;
  EXPECT_THAT(NwfqdLog(), HasSubstr("> 198.18.0.2:23 [S]"));
  EXPECT_THAT(NwfqdLog(), HasSubstr("DROP         vnet0 to-vm      tcp 198.18.0.3:"));
}

TEST_F(LabTest, FailClosedWhenNwfqdDiesAndStaleSteeringIsRemovedOnRestart) {
  // A crash (SIGKILL) leaves the steering behind; with no listener the kernel drops the
  // steered packets (fail-closed, no --queue-bypass).
  ASSERT_EQ(sub::Stop(nwfqd_, SIGKILL, absl::Seconds(5)), 128 + SIGKILL);
  nwfqd_ = -1;
  EXPECT_THAT(SteeringRules(), HasSubstr("NFQUEUE --queue-num 0"));
  EXPECT_THAT(SteeringRules(), Not(HasSubstr("queue-bypass")));
  sub::RunResult blocked = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_THAT(blocked.out, HasSubstr(" 100% packet loss"));
  // A new nwfqd removes the stale chains, installs fresh ones and filters again.
  StartNwfqd();
  const std::string rules = SteeringRules();
  EXPECT_EQ(std::count(rules.begin(), rules.end(), '\n'), 14) << rules;  // 7 per family
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

}  // namespace
}  // namespace nwfq
