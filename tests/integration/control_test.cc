// nwfqd's control plane in the lab (tools/lab/lab.h) with real programs:
//  * reload under traffic: a long TCP transfer (socat) keeps going across `nwfqctl reload`
//    and SIGHUP that change the filter and add/remove a binding; a bad filter is refused
//    with file:line and the old policy stays enforced;
//  * libvirt's connlimit example (filters/nwfq-test-connlimit.xml): one outbound ping at a
//    time; after `nwfqctl timeout set icmp 3` a new ping passes about 3 s after the first
//    stopped; one inbound ssh per remote source with a real sshd in nwfq-vm and a real ssh
//    client in nwfq-peer; `conntrack list` and `counters` show them.
//
// Needs root (namespaces, iptables, sshd); skips otherwise. Everything is bounded in time
// (timeout(1), ping -c/-W, ssh ConnectTimeout) and only the PIDs started here are ended.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/lab_fixture.h"
#include "tools/lab/lab.h"
#include "tools/lab/subprocess.h"

namespace nwfq {
namespace {

using testing::Argv;
using ::testing::HasSubstr;
using testing::MustRun;
using ::testing::Not;
using testing::ReadFile;
using testing::WaitForText;
using testing::WriteFile;
namespace fs = std::filesystem;

// A filter in the reload test's own directory: tcp/5001 in (the transfer), ping out, the
// rest dropped. `extra` adds rules inside the filter.
std::string TransferFilter(const std::string& extra = "") {
  return absl::StrCat(
      "<filter name='nwfq-test-transfer' chain='root'>\n"
      "  <rule action='accept' direction='in' priority='100'>\n"
      "    <tcp dstportstart='5001'/>\n"
      "  </rule>\n"
      "  <rule action='accept' direction='out' priority='200'>\n"
      "    <icmp/>\n"
      "  </rule>\n",
      extra,
      "  <rule action='drop' direction='inout' priority='1000'>\n"
      "    <all/>\n"
      "  </rule>\n"
      "</filter>\n");
}

std::string BindingXml(const std::string& dev, const std::string& filter) {
  return absl::StrCat("<filterbinding>\n  <owner><name>nwfq-test-", dev,
                      "</name><uuid>6e776671-6c61-4200-8000-0000000000aa</uuid></owner>\n"
                      "  <portdev name='",
                      dev, "'/>\n  <mac address='52:54:00:00:00:02'/>\n  <filterref filter='",
                      filter, "'/>\n</filterbinding>\n");
}

// nwfqd with a control socket (nwfqctl talks to it); each test starts it with its filters.
class ControlTest : public testing::LabFixture {
 protected:
  void SetUp() override {
    LabFixture::SetUp();
    nwfqd_args_ = {"--control", control_};
  }
};

TEST_F(ControlTest, ReloadUnderTrafficKeepsConnectionsAndRefusesBadFilters) {
  const std::string filters = dir_ + "/filters", bindings = dir_ + "/bindings";
  fs::create_directories(filters);
  fs::create_directories(bindings);
  WriteFile(filters + "/transfer.xml", TransferFilter());
  WriteFile(bindings + "/vnet0.xml", BindingXml("vnet0", "nwfq-test-transfer"));
  ASSERT_NO_FATAL_FAILURE(StartNwfqd({"--filters", filters, "--bindings", bindings}));

  // The VM sends 80 lines, one every 0.1 s (8 s); the peer reads them all.
  const Argv server = {"timeout", "40", "socat", "TCP-LISTEN:5001,reuseaddr",
                       "SYSTEM:for i in $(seq 1 80); do echo line$i; sleep 0.1; done"};
  Spawn(lab::InNs(lab::kVmNs, server), dir_ + "/server.log");
  ASSERT_TRUE(WaitListening(lab::kVmNs, 5001));
  const std::string received = dir_ + "/received.txt";
  const pid_t client =
      Spawn(lab::InNs(lab::kPeerNs, {"timeout", "30", "socat", "-u",
                                     absl::StrCat("TCP:", lab::kVmIp4, ":5001,connect-timeout=3"),
                                     absl::StrCat("CREATE:", received)}),
            dir_ + "/client.log");
  ASSERT_TRUE(WaitForText(received, "line5\n", absl::Seconds(5))) << ReadFile(dir_ + "/client.log");

  // 1. nwfqctl reload: vnet0's filter changes (an extra rule: its program is replaced) and
  //    a second binding appears.
  WriteFile(filters + "/transfer.xml",
            TransferFilter("  <rule action='accept' direction='out' priority='300'>\n"
                           "    <udp dstportstart='53'/>\n  </rule>\n"));
  WriteFile(bindings + "/vnet9.xml", BindingXml("vnet9", "nwfq-test-transfer"));
  sub::RunResult r = Ctl({"reload"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 binding(s): 1 added, 1 changed, 0 unchanged, 0 removed"));

  // 2. SIGHUP: the second binding goes again.
  fs::remove(bindings + "/vnet9.xml");
  ASSERT_EQ(kill(nwfqd_, SIGHUP), 0);
  EXPECT_TRUE(WaitForText(log_path_,
                          "reloaded (SIGHUP): 1 binding(s): 0 added, 0 changed, 1 "
                          "unchanged, 1 removed",
                          absl::Seconds(5)));

  // 3. A bad filter: refused with file:line, by nwfqctl (exit 1) and by SIGHUP (log).
  WriteFile(filters + "/transfer.xml",
            TransferFilter("  <rule action='accept' direction='sideways' priority='300'>\n"
                           "    <udp/>\n  </rule>\n"));
  r = Ctl({"reload"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(filters + "/transfer.xml:8"));
  EXPECT_THAT(r.err, HasSubstr("old policy kept"));
  ASSERT_EQ(kill(nwfqd_, SIGHUP), 0);
  EXPECT_TRUE(WaitForText(log_path_, "reload (SIGHUP) refused, old policy kept", absl::Seconds(5)));
  EXPECT_THAT(ReadFile(log_path_), HasSubstr("transfer.xml:8"));

  // The transfer went on through all of it and completes.
  EXPECT_EQ(sub::WaitFor(client, absl::Seconds(20)), 0) << ReadFile(dir_ + "/client.log");
  const std::string got = ReadFile(received);
  EXPECT_THAT(got, HasSubstr("line80\n"));
  EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), 80);

  // The old (valid) policy is still enforced: ping out passes, tcp/5002 in is dropped.
  EXPECT_EQ(Ping(lab::kVmNs, lab::kPeerIp4, 1).exit_code, 0);
  sub::RunResult blocked = Connect(lab::kPeerNs, lab::kVmIp4, 5002);
  EXPECT_NE(blocked.exit_code, 0);
  EXPECT_THAT(blocked.err, HasSubstr("timed out"));
  r = Ctl({"status"});
  EXPECT_THAT(r.out, HasSubstr("reloads 2 ok / 2 refused"));
  EXPECT_THAT(r.out, HasSubstr("binding vnet0: filter nwfq-test-transfer, 4 rules"));
}

class ConnlimitTest : public ControlTest {
 protected:
  void TearDown() override {
    ControlTest::TearDown();                    // stops sshd first
    if (created_sshd_dir_) rmdir("/run/sshd");  // only if we made it and it is empty
  }

  void StartWithConnlimit() {
    const std::string src = NWFQ_SOURCE_DIR "/tests/integration";
    StartNwfqd({"--filters", src + "/filters", "--binding", src + "/bindings/vnet0-connlimit.xml"});
  }

  bool created_sshd_dir_ = false;
};

TEST_F(ConnlimitTest, OnePingAtATimeAndIcmpTimeoutAtRunTime) {
  ASSERT_NO_FATAL_FAILURE(StartWithConnlimit());
  sub::RunResult r = Ctl({"timeout", "set", "icmp", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Ctl({"timeout", "get", "icmp"}).out, HasSubstr("icmp 3 *"));

  // The first ping runs for ~4 s (20 x 0.2 s).
  const std::string first_log = dir_ + "/ping1.log";
  const pid_t first = Spawn(
      lab::InNs(lab::kVmNs, {"ping", "-n", "-c", "20", "-i", "0.2", "-W", "1", lab::kPeerIp4}),
      first_log);
  ASSERT_TRUE(WaitForText(first_log, "icmp_seq=3", absl::Seconds(5)));
  // A second ping while the first lives: over the limit, dropped.
  sub::RunResult second = Ping(lab::kVmNs, lab::kPeerIp4, 2);
  EXPECT_THAT(second.out, HasSubstr(" 100% packet loss"));
  sub::RunResult list = Ctl({"conntrack", "list"});
  EXPECT_THAT(list.out, HasSubstr("icmp     1"));
  EXPECT_THAT(list.out, HasSubstr("src=198.18.0.2 dst=198.18.0.3 type=8"));

  // When the first ends, its connection lives 3 s more: a new ping passes only then.
  EXPECT_EQ(sub::WaitFor(first, absl::Seconds(10)), 0) << ReadFile(first_log);
  const absl::Time stopped = absl::Now();
  absl::Duration passed_after = absl::InfiniteDuration();
  while (absl::Now() - stopped < absl::Seconds(12)) {
    const absl::Time attempt = absl::Now();
    sub::RunResult p = Ping(lab::kVmNs, lab::kPeerIp4, 1);
    if (p.exit_code == 0) {
      passed_after = attempt - stopped;
      break;
    }
  }
  EXPECT_GE(passed_after, absl::Seconds(2)) << "a new ping passed before the ICMP timeout";
  EXPECT_LE(passed_after, absl::Seconds(6)) << "the 3 s ICMP timeout did not apply";
  std::fprintf(stderr, "new ping passed %s after the first stopped (icmp timeout 3 s)\n",
               absl::FormatDuration(passed_after).c_str());

  sub::RunResult counters = Ctl({"counters", "--json"});
  EXPECT_EQ(counters.exit_code, 0) << counters.err;
  // The connlimit drop rule (nwfq-test-connlimit.xml:12) matched the second ping's requests.
  EXPECT_THAT(counters.out, HasSubstr("nwfq-test-connlimit.xml:12"));
  EXPECT_THAT(Ctl({"counters"}).out, HasSubstr("drop    icmp connlimit-above=1"));

  // No packet meets the expired echo connections again: `conntrack list` hides them at
  // once, but only nwfqd's sweep removes them from the table, which `conntrack stats`
  // counts (3 s timeout, plus one walk of the table at 4,096 slots per 50 ms).
  bool swept = false;
  for (const absl::Time end = absl::Now() + absl::Seconds(12); !swept && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(500));
    swept = absl::StrContains(Ctl({"conntrack", "stats"}).out, "vnet0: entries=0 ");
  }
  EXPECT_TRUE(swept) << "expired ICMP connections were not swept from the table:\n"
                     << Ctl({"conntrack", "stats"}).out;
}

TEST_F(ConnlimitTest, OneInboundSshPerRemoteSource) {
  // A real sshd in the VM: own config, host key and client key in the test's directory.
  if (access("/usr/sbin/sshd", X_OK) != 0) GTEST_SKIP() << "openssh-server is not installed";
  if (mkdir("/run/sshd", 0755) == 0) created_sshd_dir_ = true;  // sshd's privsep directory
  const std::string ssh = dir_ + "/ssh";
  fs::create_directories(ssh);
  ASSERT_TRUE(MustRun({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh + "/host"}).ok());
  ASSERT_TRUE(MustRun({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh + "/client"}).ok());
  fs::copy_file(ssh + "/client.pub", ssh + "/authorized_keys");
  WriteFile(ssh + "/sshd_config",
            absl::StrCat("ListenAddress ", lab::kVmIp4, ":22\nHostKey ", ssh,
                         "/host\nAuthorizedKeysFile ", ssh,
                         "/authorized_keys\nPubkeyAuthentication yes\nPasswordAuthentication "
                         "no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin "
                         "prohibit-password\nStrictModes no\nPidFile ",
                         ssh, "/sshd.pid\n"));
  ASSERT_NO_FATAL_FAILURE(StartWithConnlimit());
  Spawn(lab::InNs(lab::kVmNs,
                  {"timeout", "60", "/usr/sbin/sshd", "-D", "-e", "-f", ssh + "/sshd_config"}),
        dir_ + "/sshd.log");
  ASSERT_TRUE(WaitListening(lab::kVmNs, 22)) << ReadFile(dir_ + "/sshd.log");

  auto ssh_argv = [&](const std::string& bind, const std::string& command) {
    return lab::InNs(lab::kPeerNs, {"timeout",
                                    "30",
                                    "ssh",
                                    "-F",
                                    "/dev/null",
                                    "-i",
                                    ssh + "/client",
                                    "-b",
                                    bind,
                                    "-o",
                                    "BatchMode=yes",
                                    "-o",
                                    "StrictHostKeyChecking=no",
                                    "-o",
                                    "UserKnownHostsFile=/dev/null",
                                    "-o",
                                    "ConnectTimeout=3",
                                    "-o",
                                    "LogLevel=ERROR",
                                    absl::StrCat("root@", lab::kVmIp4),
                                    command});
  };
  // 1. The first session from 198.18.0.3, held open.
  const std::string first_log = dir_ + "/ssh1.log";
  Spawn(ssh_argv(lab::kPeerIp4, "echo nwfq-ssh-1; sleep 15"), first_log);
  ASSERT_TRUE(WaitForText(first_log, "nwfq-ssh-1", absl::Seconds(10)))
      << ReadFile(first_log) << ReadFile(dir_ + "/sshd.log");
  // 2. A second one from the same source: refused (its SYN is dropped) while the first lives.
  sub::RunResult second = MustRun(ssh_argv(lab::kPeerIp4, "echo nwfq-ssh-2"), absl::Seconds(40));
  EXPECT_NE(second.exit_code, 0);
  EXPECT_THAT(second.out, Not(HasSubstr("nwfq-ssh-2")));
  EXPECT_THAT(second.err, HasSubstr("timed out"));
  // 3. From the peer's second address: its own limit, passes.
  sub::RunResult other = MustRun(ssh_argv(lab::kPeerIp4b, "echo nwfq-ssh-3"), absl::Seconds(40));
  EXPECT_EQ(other.exit_code, 0) << other.err;
  EXPECT_THAT(other.out, HasSubstr("nwfq-ssh-3"));

  sub::RunResult list = Ctl({"conntrack", "list", "--binding", "vnet0"});
  EXPECT_THAT(list.out, HasSubstr("ESTABLISHED src=198.18.0.3 dst=198.18.0.2"));
  EXPECT_THAT(list.out, HasSubstr("dport=22"));
  EXPECT_THAT(list.out, HasSubstr("[ASSURED]"));
  EXPECT_THAT(list.out, HasSubstr("src=198.18.0.4 dst=198.18.0.2"));
  sub::RunResult json = Ctl({"conntrack", "list", "--json"});
  EXPECT_THAT(json.out, HasSubstr("\"src\":\"198.18.0.3\",\"dst\":\"198.18.0.2\""));
  // The connlimit drop (line 6) and the ssh accept (line 9) rules were hit.
  sub::RunResult counters = Ctl({"counters"});
  EXPECT_THAT(counters.out, HasSubstr("drop    tcp connlimit-above=1"));
  EXPECT_THAT(counters.out, HasSubstr("nwfq-test-connlimit.xml:6"));
  EXPECT_THAT(counters.out, HasSubstr("nwfq-test-connlimit.xml:9"));
  EXPECT_THAT(Ctl({"conntrack", "stats"}).out, HasSubstr("vnet0: entries="));
}

}  // namespace
}  // namespace nwfq
