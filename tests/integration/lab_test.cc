// End-to-end tests in the lab (tools/lab/lab.h): real programs (ping, socat) send traffic
// through the kernel bridge, the steering rules and nwfqd's verdicts, with the lab's
// default filter (tools/lab/filters/nwfq-demo.xml bound to vnet0 by
// tools/lab/vnet0-binding.xml: in tcp/22, out icmp and udp/53, drop all other IPv4).
//
// Each test brings the lab up, starts nwfqd inside nwfq-host, probes, then stops nwfqd and
// tears the lab down, checking that no nwfq rule and no namespace is left (LabFixture).
// Needs root; skips otherwise. All tests share the namespace names: ctest runs them under one
// RESOURCE_LOCK. Every probe is bounded (ping -c/-W, socat connect-timeout, timeout(1)).
#include "tools/lab/lab.h"

#include <signal.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/lab_fixture.h"
#include "tools/lab/subprocess.h"
#include "tools/nwfqd/steering.h"

namespace nwfq {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

// nwfqd with the lab's own filters and vnet0 binding, started in SetUp.
class LabTest : public testing::LabFixture {
 protected:
  void SetUp() override {
    LabFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    const std::string lab_dir = absl::StrCat(NWFQ_SOURCE_DIR, "/tools/lab");
    nwfqd_args_ = {"--filters", lab_dir + "/filters", "--binding", lab_dir + "/vnet0-binding.xml"};
    StartNwfqd();
  }

  // Connects from the peer to the VM's `port`; returns socat's result.
  static sub::RunResult ConnectFromPeer(int port) {
    return Connect(lab::kPeerNs, lab::kVmIp4, port, {.idle_timeout_s = 5, .close_timeout_s = 3});
  }
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
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4, 2, {"-s", "1400"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss"));
}

TEST_F(LabTest, FragmentedPingPassesReassembled) {
  // 3000-byte payload: three IPv4 fragments at MTU 1500 reach the queue unreassembled
  // (finding i.12); nwfqd holds them until the datagram is complete, decides it once and
  // releases every fragment, both ways. Without reassembly the later fragments were
  // decided alone (or dropped when out of order).
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4, 3, {"-s", "3000"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss"));
  EXPECT_THAT(NwfqdLog(), HasSubstr("ACCEPT       vnet0 from-vm    icmp 198.18.0.2 > 198.18.0.3"));
}

TEST_F(LabTest, PingFromVmToHostPasses) {
  // VM -> host goes through INPUT (libvirt's HI- chain): out icmp is allowed there too.
  sub::RunResult r = Ping(lab::kVmNs, lab::kHostIp4);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(NwfqdLog(), ContainsRegex("ACCEPT +vnet0 to-host +icmp 198.18.0.2 > 198.18.0.1"));
}

TEST_F(LabTest, PingFromPeerToVmIsDropped) {
  // The filter allows only outbound icmp: an inbound echo request meets the final drop.
  sub::RunResult r = Ping(lab::kPeerNs, lab::kVmIp4);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr(" 100% packet loss"));
  EXPECT_THAT(NwfqdLog(), HasSubstr("DROP         vnet0 to-vm      icmp 198.18.0.3 > 198.18.0.2"));
}

TEST_F(LabTest, TcpFromPeerToVmPort22Passes) {
  Listen(lab::kVmNs, 22);
  sub::RunResult r = ConnectFromPeer(22);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("nwfq-ok"));
}

TEST_F(LabTest, TcpFromPeerToVmPort23IsDropped) {
  Listen(lab::kVmNs,
         23);  // a real listener: a refusal would come from the VM, a timeout from nwfqd
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
  ASSERT_EQ(KillNwfqd(), 128 + SIGKILL);
  EXPECT_THAT(SteeringRules(), HasSubstr("NFQUEUE --queue-num 0"));
  EXPECT_THAT(SteeringRules(), Not(HasSubstr("queue-bypass")));
  sub::RunResult blocked = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_THAT(blocked.out, HasSubstr(" 100% packet loss"));
  // A new nwfqd removes the stale chains, installs fresh ones and filters again.
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  const std::string rules = SteeringRules();
  EXPECT_EQ(std::count(rules.begin(), rules.end(), '\n'), 14) << rules;  // 7 per family
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

}  // namespace
}  // namespace nwfq
