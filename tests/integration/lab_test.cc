// End-to-end tests in the lab (tools/lab/lab.h): real programs (ping, socat) send traffic
// through the kernel bridge, the steering rules and nwfqd's verdicts, with the lab's
// default filter (tools/lab/filters/nwfq-demo.xml bound to vnet0 by
// tools/lab/vnet0-binding.xml: in tcp/22, out icmp and udp/53, drop all other IPv4).
//
// Each test brings the lab up, starts nwfqd inside nwfq-host, probes, then stops nwfqd and
// tears the lab down, checking that no nwfq rule and no namespace is left (LabFixture).
// Needs root; skips otherwise. All tests share the namespace names: ctest runs them under one
// RESOURCE_LOCK. Every probe is bounded (ping -c/-W, socat connect-timeout, timeout(1)).
// IP fragment probes use tests/integration/frag_probe.py (python3: a raw sender, a UDP
// listener, an AF_PACKET frame counter, a metrics fetch; each bounded in time and count).
#include "tools/lab/lab.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
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

// IP fragments crafted in the lab (tests/integration/frag_probe.py: a raw IP_HDRINCL sender
// in the VM, a UDP listener or an AF_PACKET frame counter in the peer). These fail with
// the former first-fragment verdict cache: a fragment arriving before the first one was
// decided alone (dropped as an orphan), so an out-of-order datagram never completed.
std::string FragProbe() {
  return absl::StrCat(NWFQ_SOURCE_DIR, "/tests/integration/frag_probe.py");
}

testing::Argv InNs(const std::string& ns, testing::Argv argv) {
  argv.insert(argv.begin(), {"ip", "netns", "exec", ns, "python3", FragProbe()});
  return argv;
}

// A 300-byte UDP datagram from the VM to the peer's `port`, IP id `id`, as 3 fragments of
// 104 bytes of UDP data (the last 100) sent in `order`.
sub::RunResult SendFragments(int port, int id, const std::string& order) {
  return testing::MustRun(
      InNs(lab::kVmNs, {"send", lab::kVmIp4, lab::kPeerIp4, "33000", std::to_string(port),
                        std::to_string(id), "300", "104", order}));
}

// Checks nwfqd's Prometheus counter `name` (no labels) is at least `min`.
void ExpectCounterAtLeast(const std::string& metrics, const std::string& name, int min) {
  const size_t at = metrics.find("\n" + name + " ");
  ASSERT_NE(at, std::string::npos) << name << " missing in:\n" << metrics;
  EXPECT_GE(std::stoll(metrics.substr(at + name.size() + 2)), min) << name;
}

TEST_F(LabTest, OutOfOrderFragmentsToAllowedUdpPortArriveWhole) {
  StopNwfqd();
  StartNwfqd({"--metrics", "127.0.0.1:9109"});
  const std::string out = dir_ + "/listen.log";
  Spawn(InNs(lab::kPeerNs, {"listen", "53", "10"}), out);
  ASSERT_TRUE(testing::WaitForText(out, "ready", absl::Seconds(5))) << testing::ReadFile(out);
  // Last fragment first, then the first, then the middle one.
  sub::RunResult r = SendFragments(53, 4660, "2,0,1");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // The peer's socket gets the datagram only if all three fragments were forwarded: its 300
  // bytes (byte sum 37602: frag_probe.py's payload, (i * 7 + 3) & 0xff).
  EXPECT_TRUE(testing::WaitForText(out, "got 300 37602", absl::Seconds(5)))
      << testing::ReadFile(out);
  // Logged once, for the fragment that completed the datagram (here the middle one).
  EXPECT_THAT(NwfqdLog(), ContainsRegex("ACCEPT +vnet0 from-vm +(udp|proto 17) 198\\.18\\.0\\.2"));
  // nwfqd held the fragments and reassembled the datagram (counters, not the log).
  sub::RunResult m =
      testing::MustRun(InNs(lab::kHostNs, {"metrics", "127.0.0.1:9109"}), absl::Seconds(10));
  ASSERT_EQ(m.exit_code, 0) << m.err;
  ExpectCounterAtLeast(m.out, "nwfq_fragments_held_total", 2);
  ExpectCounterAtLeast(m.out, "nwfq_datagrams_reassembled_total", 1);
}

TEST_F(LabTest, DeniedOrOverlappingFragmentedDatagramsNeverArrive) {
  const std::string out = dir_ + "/count.log";
  Spawn(InNs(lab::kPeerNs, {"count", lab::kVmIp4, "4"}), out);
  ASSERT_TRUE(testing::WaitForText(out, "ready", absl::Seconds(5))) << testing::ReadFile(out);
  // udp/54 is denied (the demo filter's final drop); its non-first fragments come first, so
  // nothing but reassembly can tell that they belong to a denied datagram.
  sub::RunResult r = SendFragments(54, 4661, "1,2,0");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // Overlapping fragments to the allowed udp/53 kill the datagram (as the kernel's
  // IPFRAG_OVERLAP): the first fragment, already legitimate-looking, must not pass either.
  r = SendFragments(53, 4663, "0:104,96:212");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // A control: an allowed datagram's three fragments are seen by the same capture.
  r = SendFragments(53, 4662, "0,1,2");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(testing::WaitForText(out, "done", absl::Seconds(10))) << testing::ReadFile(out);
  const std::string seen = testing::ReadFile(out);
  EXPECT_THAT(seen, HasSubstr("id 4662 frames 3 offsets 0,104,208"));
  EXPECT_THAT(seen, Not(HasSubstr("id 4661 "))) << "a fragment of the denied datagram arrived";
  EXPECT_THAT(seen, Not(HasSubstr("id 4663 "))) << "a fragment of the overlapping datagram arrived";
  EXPECT_THAT(NwfqdLog(), ContainsRegex("DROP +vnet0 from-vm +udp 198\\.18\\.0\\.2:33000 > "
                                        "198\\.18\\.0\\.3:54"));
}

// nwfq-host's NFQUEUE 0: how many packets wait for a verdict (queue_total in
// /proc/net/netfilter/nfnetlink_queue), -1 if the queue is not bound.
int KernelQueueWaiting() {
  sub::RunResult r = testing::MustRun(
      {"ip", "netns", "exec", lab::kHostNs, "cat", "/proc/net/netfilter/nfnetlink_queue"});
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    int queue = -1, portid = 0, waiting = -1;
    if (f >> queue >> portid >> waiting && queue == 0) return waiting;
  }
  return -1;
}

// A held fragment whose binding goes away (a reload without it) is given a drop verdict at
// once (Engine::RemoveBinding settles it; nwfqd's sweep issues the verdict) instead of
// waiting in the kernel's queue until nwfqd stops.
TEST_F(LabTest, HeldFragmentIsDroppedWhenItsBindingIsRemoved) {
  StopNwfqd();
  const std::string bindings = dir_ + "/bindings";
  ASSERT_EQ(mkdir(bindings.c_str(), 0755), 0);
  const std::string vnet0 =
      testing::ReadFile(absl::StrCat(NWFQ_SOURCE_DIR, "/tools/lab/vnet0-binding.xml"));
  ASSERT_THAT(vnet0, HasSubstr("<portdev name='vnet0'/>"));
  testing::WriteFile(bindings + "/vnet0.xml", vnet0);
  // A second binding (no such device) keeps the policy non-empty once vnet0's is gone.
  std::string vnet9 = vnet0;
  vnet9.replace(vnet9.find("name='vnet0'"), 12, "name='vnet9'");
  testing::WriteFile(bindings + "/vnet9.xml", vnet9);
  nwfqd_args_ = {"--filters", absl::StrCat(NWFQ_SOURCE_DIR, "/tools/lab/filters"), "--bindings",
                 bindings};
  StartNwfqd({"--metrics", "127.0.0.1:9109"});

  // Only the first of three fragments: nwfqd holds it, the kernel queue keeps it.
  sub::RunResult r = SendFragments(53, 4664, "0");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (KernelQueueWaiting() != 1 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(50));
  ASSERT_EQ(KernelQueueWaiting(), 1) << "the fragment is not held in the queue";

  std::filesystem::remove(bindings + "/vnet0.xml");
  ASSERT_EQ(kill(nwfqd_, SIGHUP), 0);
  ASSERT_TRUE(testing::WaitForText(log_path_, "1 removed", absl::Seconds(5))) << NwfqdLog();
  const absl::Time deadline2 = absl::Now() + absl::Seconds(5);
  while (KernelQueueWaiting() != 0 && absl::Now() < deadline2)
    absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(KernelQueueWaiting(), 0) << "the held fragment still waits for a verdict";
  sub::RunResult m =
      testing::MustRun(InNs(lab::kHostNs, {"metrics", "127.0.0.1:9109"}), absl::Seconds(10));
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_THAT(m.out, HasSubstr("nwfq_fragments_dropped_total{reason=\"binding-removed\"} 1"));
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
