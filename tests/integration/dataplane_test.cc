// Data-plane end-to-end tests in the lab (tools/lab/lab.h): nwfqd on NFQUEUE with real
// programs (socat, ping) on both sides of the bound tap, each test with its own filter:
//
//   * the seed's statematch='false' example (tcp 12345 in): peer -> VM:12345 and VM from
//     source port 12345 -> peer pass, other ports are dropped;
//   * reject: a TCP connect is refused at once (RST with --reject-tcp-with rst), a UDP
//     datagram gets ICMP port unreachable (socat reports "Connection refused");
//   * fail-open vs fail-closed after kill -9;
//   * steering (iptables, ip6tables) and layer-2 offload (ebtables) rules gone after exit;
//   * IPv6: ping6 and TCP with neighbour discovery allowed the way a libvirt user writes it
//     (icmpv6 ND types, statematch='false', because ND is UNTRACKED);
//   * layer-2 offload: clean-traffic drops a spoofed source MAC and ARP for a foreign IP
//     (frames nwfqd never sees), while proper traffic passes.
//
// Needs root (skips otherwise). Shares the lab's namespace names with lab_test: ctest
// runs them under one RESOURCE_LOCK. Every probe is bounded (timeout(1), ping -c/-W,
// socat connect-timeout); only processes this test started are stopped, by PID.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parser/binding.h"
#include "parser/filter_set.h"
#include "parser/instantiate.h"
#include "tests/integration/lab_fixture.h"
#include "tools/lab/lab.h"
#include "tools/lab/subprocess.h"
#include "tools/nwfqd/l2_offload.h"

namespace nwfq {
namespace {

using ::testing::HasSubstr;
using testing::MustRun;
using ::testing::Not;
using testing::ReadFile;
using testing::WriteFile;

constexpr char kNs[] = "nwfq-dpl2";  // scratch namespace of L2OffloadFidelity

std::string BindingXml(const std::string& filter, const std::string& params) {
  return absl::StrCat(
      "<filterbinding>\n  <owner><name>nwfq-lab-vm</name>"
      "<uuid>6e776671-6c61-4200-8000-000000000002</uuid></owner>\n"
      "  <portdev name='vnet0'/>\n  <mac address='52:54:00:00:00:02'/>\n"
      "  <filterref filter='",
      filter, "'>", params, "</filterref>\n</filterbinding>\n");
}

// The seed's statematch='false' example (semantics e.1), plus a final drop.
constexpr char kStatelessFilter[] = R"(<filter name='nwfq-stateless' chain='root'>
  <rule direction='in' action='accept' statematch='false'>
    <tcp dstportstart='12345'/>
  </rule>
  <rule direction='inout' action='drop'>
    <all/>
  </rule>
</filter>
)";

constexpr char kRejectFilter[] = R"(<filter name='nwfq-reject' chain='root'>
  <rule direction='in' action='reject'>
    <tcp dstportstart='23'/>
  </rule>
  <rule direction='in' action='reject'>
    <udp dstportstart='5000'/>
  </rule>
  <rule direction='inout' action='accept'>
    <all/>
  </rule>
</filter>
)";

// IPv6 as a libvirt user writes it: neighbour discovery is UNTRACKED, so its types are
// allowed without state (and per direction: an inout icmpv6 rule with a type gets no
// instance at all, c.2); echo out and ssh in are stateful; everything else IPv6 is dropped.
constexpr char kIpv6Filter[] = R"(<filter name='nwfq-ipv6' chain='root'>
  <rule direction='out' action='accept' statematch='false'><icmpv6 type='135'/></rule>
  <rule direction='out' action='accept' statematch='false'><icmpv6 type='136'/></rule>
  <rule direction='in' action='accept' statematch='false'><icmpv6 type='135'/></rule>
  <rule direction='in' action='accept' statematch='false'><icmpv6 type='136'/></rule>
  <rule direction='out' action='accept'><icmpv6/></rule>
  <rule direction='in' action='accept'><tcp-ipv6 dstportstart='22'/></rule>
  <rule direction='inout' action='drop'><all-ipv6/></rule>
</filter>
)";

// Each test binds vnet0 to a filter of its own (UseFilter) or a predefined one, then starts
// nwfqd with a control socket.
class DataplaneTest : public testing::LabFixture {
 protected:
  // Filter `xml` in the test's own directory, bound to vnet0 with `params`.
  void UseFilter(const std::string& name, const std::string& xml,
                 const std::string& params = "<parameter name='IP' value='198.18.0.2'/>") {
    std::filesystem::create_directories(dir_ + "/filters");
    WriteFile(absl::StrCat(dir_, "/filters/", name, ".xml"), xml);
    Bind(dir_ + "/filters", name, params);
  }
  void UsePredefined(const std::string& filter, const std::string& params) {
    Bind(absl::StrCat(NWFQ_SHARED_DIR, "/nwfilter/predefined"), filter, params);
  }

  std::string filters_dir_;

 private:
  // vnet0 -> `filter` from `filters_dir` in dir_/binding.xml, and nwfqd's arguments for it.
  void Bind(const std::string& filters_dir, const std::string& filter, const std::string& params) {
    filters_dir_ = filters_dir;
    WriteFile(dir_ + "/binding.xml", BindingXml(filter, params));
    nwfqd_args_ = {"--filters",           filters_dir_, "--binding",
                   dir_ + "/binding.xml", "--control",  control_};
  }
};

TEST_F(DataplaneTest, StatematchFalseTcp12345PassesBothWays) {
  UseFilter("nwfq-stateless", kStatelessFilter);
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  Listen(lab::kPeerNs, 80);
  // VM from source port 12345 -> peer:80: FI --sport 12345 RETURN, replies FO --dport
  // 12345 ACCEPT (the stateless rule read the other way round).
  sub::RunResult r = Connect(lab::kVmNs, lab::kPeerIp4, 80, {.source_port = 12345});
  EXPECT_THAT(r.out, HasSubstr("nwfq-ok")) << r.err;
  // Any other source port: the final drop (a timeout, not a refusal).
  r = Connect(lab::kVmNs, lab::kPeerIp4, 80, {.source_port = 12346});
  EXPECT_THAT(r.out, Not(HasSubstr("nwfq-ok")));
  EXPECT_THAT(r.err, HasSubstr("timed out"));
  // peer -> VM:12345: FO --dport 12345 ACCEPT, replies FI --sport 12345 RETURN.
  Listen(lab::kVmNs, 12345);
  Listen(lab::kVmNs, 80);
  r = Connect(lab::kPeerNs, lab::kVmIp4, 12345);
  EXPECT_THAT(r.out, HasSubstr("nwfq-ok")) << r.err;
  // peer -> VM:80: dropped.
  r = Connect(lab::kPeerNs, lab::kVmIp4, 80);
  EXPECT_THAT(r.out, Not(HasSubstr("nwfq-ok")));
  EXPECT_THAT(r.err, HasSubstr("timed out"));
}

// --queues 0-3: four workers, the rules fan out with --queue-balance (symmetric per address
// pair), so both directions of each connection meet the same state.
TEST_F(DataplaneTest, FourQueuesFanOutAndKeepConnectionsWhole) {
  UseFilter("nwfq-stateless", kStatelessFilter);
  ASSERT_NO_FATAL_FAILURE(StartNwfqd({"--queues", "0-3"}));
  EXPECT_THAT(KernelRules(), HasSubstr("-j NFQUEUE --queue-balance 0:3"));
  Listen(lab::kVmNs, 12345);
  for (int i = 0; i < 3; ++i) {  // bounded: three connections
    sub::RunResult r = Connect(lab::kPeerNs, lab::kVmIp4, 12345);
    EXPECT_THAT(r.out, HasSubstr("nwfq-ok")) << r.err;
  }
  sub::RunResult r = Connect(lab::kPeerNs, lab::kVmIp4, 80);
  EXPECT_THAT(r.err, HasSubstr("timed out"));
  const std::string log = StopNwfqd();
  for (int q = 0; q < 4; ++q) EXPECT_THAT(log, HasSubstr(absl::StrCat("queue ", q, ": packets")));
}

// A reload that adds a tap refills nwfq's chains in place (steer::Update): one jump per
// base chain and family, the new tap's rules, and the existing tap steered throughout.
TEST_F(DataplaneTest, ReloadAddingATapUpdatesSteeringInPlace) {
  UseFilter("nwfq-stateless", kStatelessFilter);
  std::filesystem::create_directory(dir_ + "/bindings");
  std::filesystem::rename(dir_ + "/binding.xml", dir_ + "/bindings/vnet0.xml");
  // Started with --bindings DIR (UseFilter binds with --binding FILE), so a reload re-reads it.
  nwfqd_args_ = {"--filters",        filters_dir_, "--bindings",
                 dir_ + "/bindings", "--control",  control_};
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  Listen(lab::kVmNs, 12345);
  const std::string vnet1 = absl::StrReplaceAll(
      ReadFile(dir_ + "/bindings/vnet0.xml"),
      {{"vnet0", "vnet1"},
       {"6e776671-6c61-4200-8000-000000000002", "6e776671-6c61-4200-8000-000000000003"},
       {"52:54:00:00:00:02", "52:54:00:00:00:12"}});
  WriteFile(dir_ + "/bindings/vnet1.xml", vnet1);
  ASSERT_EQ(kill(nwfqd_, SIGHUP), 0);
  for (int i = 0; i < 100 && !absl::StrContains(ReadFile(log_path_), "reloaded"); ++i) {
    // While the reload runs, the existing tap keeps working (bounded: 10 s in all).
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_THAT(ReadFile(log_path_), HasSubstr("reloaded"));
  const std::string rules = KernelRules();
  EXPECT_THAT(rules, HasSubstr("iptables -A NWFQ-FWD -m physdev --physdev-in vnet1"));
  EXPECT_THAT(rules, HasSubstr("ip6tables -A NWFQ-FWD -m physdev --physdev-in vnet1"));
  size_t jumps = 0;
  for (absl::string_view line : absl::StrSplit(rules, '\n')) {
    jumps += absl::StrContains(line, "-A FORWARD -j NWFQ-FWD") ||
             absl::StrContains(line, "-A INPUT -j NWFQ-IN");
  }
  EXPECT_EQ(jumps, 4u) << rules;  // FORWARD and INPUT, IPv4 and IPv6: not duplicated
  sub::RunResult r = Connect(lab::kPeerNs, lab::kVmIp4, 12345);
  EXPECT_THAT(r.out, HasSubstr("nwfq-ok")) << r.err;
}

TEST_F(DataplaneTest, RejectRefusesTcpWithRstAndUdpWithIcmpPortUnreachable) {
  UseFilter("nwfq-reject", kRejectFilter);
  ASSERT_NO_FATAL_FAILURE(StartNwfqd({"--reject-tcp-with", "rst"}));
  Listen(lab::kVmNs, 23);  // a listener: without the reject the connect would succeed
  const absl::Time t0 = absl::Now();
  sub::RunResult r = Connect(lab::kPeerNs, lab::kVmIp4, 23);
  const absl::Duration took = absl::Now() - t0;
  EXPECT_THAT(r.out, Not(HasSubstr("nwfq-ok")));
  EXPECT_THAT(r.err, HasSubstr("Connection refused"));
  EXPECT_LT(took, absl::Seconds(1.5)) << "refused at once, not after the connect timeout";
  RecordProperty("tcp_refused_after_ms", static_cast<int>(absl::ToInt64Milliseconds(took)));
  // UDP: the datagram is rejected; the ICMP port unreachable makes the connected UDP
  // socket's next read fail with ECONNREFUSED.
  absl::StatusOr<sub::RunResult> udp =
      sub::Run(lab::InNs(lab::kPeerNs, {"timeout", "10", "socat", "-T", "3", "-",
                                        absl::StrCat("UDP:", lab::kVmIp4, ":5000")}),
               {.stdin_data = "nwfq\n", .timeout = absl::Seconds(15)});
  ASSERT_TRUE(udp.ok()) << udp.status();
  r = *udp;
  EXPECT_THAT(r.err, HasSubstr("Connection refused"));
  const std::string log = StopNwfqd();
  EXPECT_THAT(log, HasSubstr("REJECT"));
  EXPECT_THAT(log, HasSubstr("> 198.18.0.2:23 [S]"));
  EXPECT_THAT(log, HasSubstr("> 198.18.0.2:5000"));
  // The counters at exit name what was sent: one RST at least, one ICMP at least.
  EXPECT_THAT(log, ::testing::ContainsRegex("reject: rst [1-9][0-9]*, icmp [1-9]"));
}

TEST_F(DataplaneTest, FailOpenPassesAndFailClosedBlocksAfterKill9) {
  UseFilter("nwfq-stateless", kStatelessFilter);
  // Fail-open: --queue-bypass on every rule and nobody listening = the kernel accepts.
  ASSERT_NO_FATAL_FAILURE(StartNwfqd({"--fail-open"}));
  ASSERT_EQ(KillNwfqd(), 128 + SIGKILL);
  EXPECT_THAT(KernelRules(), HasSubstr("--queue-bypass"));
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss")) << "fail-open must let traffic through";
  // Fail-closed: a new nwfqd replaces the stale rules; after kill -9, traffic stops.
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  EXPECT_THAT(KernelRules(), Not(HasSubstr("--queue-bypass")));
  ASSERT_EQ(KillNwfqd(), 128 + SIGKILL);
  r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_THAT(r.out, HasSubstr(" 100% packet loss")) << "fail-closed must block";
  // A clean run removes everything (checked again in TearDown).
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  StopNwfqd();
  EXPECT_EQ(KernelRules(), "");
}

TEST_F(DataplaneTest, SteeringAndOffloadRulesGoneAfterExit) {
  UsePredefined("clean-traffic", "<parameter name='IP' value='198.18.0.2'/>");
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  const std::string rules = KernelRules();
  EXPECT_THAT(rules, HasSubstr("iptables -A NWFQ-FWD -m physdev --physdev-in vnet0"));
  EXPECT_THAT(rules, HasSubstr("ip6tables -A NWFQ-FWD -m physdev --physdev-in vnet0"));
  EXPECT_THAT(rules, HasSubstr("ebtables -A PREROUTING -i vnet0 -j NWFQ-I-vnet0"));
  EXPECT_THAT(rules, HasSubstr("ebtables -A POSTROUTING -o vnet0 -j NWFQ-O-vnet0"));
  StopNwfqd();
  EXPECT_EQ(KernelRules(), "");
}

TEST_F(DataplaneTest, Ipv6PingAndTcpWithNeighbourDiscovery) {
  UseFilter("nwfq-ipv6", kIpv6Filter);
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  // Fresh neighbour caches: discovery itself goes through nwfqd.
  MustRun(lab::InNs(lab::kVmNs, {"ip", "-6", "neigh", "flush", "all"}));
  MustRun(lab::InNs(lab::kPeerNs, {"ip", "-6", "neigh", "flush", "all"}));
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp6);
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss")) << r.out << r.err;
  Listen(lab::kVmNs, 22, /*ipv6=*/true);
  Listen(lab::kVmNs, 23, /*ipv6=*/true);
  r = Connect(lab::kPeerNs, lab::kVmIp6, 22);
  EXPECT_THAT(r.out, HasSubstr("nwfq-ok")) << r.err;
  r = Connect(lab::kPeerNs, lab::kVmIp6, 23);
  EXPECT_THAT(r.out, Not(HasSubstr("nwfq-ok")));
  EXPECT_THAT(r.err, HasSubstr("timed out"));
  // The peer -> VM echo request is not allowed (only out icmpv6).
  r = Ping(lab::kPeerNs, lab::kVmIp6);
  EXPECT_THAT(r.out, HasSubstr(" 100% packet loss"));
  const std::string log = StopNwfqd();
  EXPECT_THAT(log, HasSubstr("icmpv6 2001:db8::2 > ff02::1:ff00:3 type 135"));
  EXPECT_THAT(log, HasSubstr("type 136"));
}

TEST_F(DataplaneTest, L2OffloadDropsSpoofedMacAndForeignArp) {
  const std::string predefined = absl::StrCat(NWFQ_SHARED_DIR, "/nwfilter/predefined");
  if (!std::filesystem::exists(predefined)) GTEST_SKIP() << "no shared data at " << predefined;
  UsePredefined("clean-traffic", "<parameter name='IP' value='198.18.0.2'/>");
  ASSERT_NO_FATAL_FAILURE(StartNwfqd());
  EXPECT_THAT(ReadFile(log_path_), HasSubstr("layer 2 offloaded"));
  // Proper traffic passes.
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss")) << r.out << r.err;
  // A foreign source IP: its ARP request never reaches the peer (ebtables I-vnet0-arp-ip),
  // so the peer learns no neighbour for it, and its pings are dropped.
  MustRun(lab::InNs(lab::kVmNs, {"ip", "addr", "add", "198.18.0.9/24", "dev", "eth0"}));
  MustRun(lab::InNs(lab::kPeerNs, {"ip", "neigh", "flush", "all"}));
  MustRun(lab::InNs(lab::kVmNs, {"ip", "neigh", "flush", "all"}));  // the VM must ARP
  r = Ping(lab::kVmNs, lab::kPeerIp4, 2, {"-I", "198.18.0.9"});
  EXPECT_THAT(r.out, HasSubstr(" 100% packet loss"));
  r = MustRun(lab::InNs(lab::kPeerNs, {"ip", "neigh", "show", "198.18.0.9"}));
  EXPECT_EQ(r.out, "") << "the spoofed ARP reached the peer";
  MustRun(lab::InNs(lab::kVmNs, {"ip", "addr", "del", "198.18.0.9/24", "dev", "eth0"}));
  // A spoofed source MAC: everything from it is dropped (ebtables I-vnet0-mac), ARP too.
  MustRun(lab::InNs(lab::kVmNs, {"ip", "link", "set", "eth0", "address", "52:54:00:00:00:99"}));
  MustRun(lab::InNs(lab::kPeerNs, {"ip", "neigh", "flush", "all"}));
  MustRun(lab::InNs(lab::kVmNs, {"ip", "neigh", "flush", "all"}));  // the VM must ARP
  r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_THAT(r.out, HasSubstr(" 100% packet loss"));
  r = MustRun(lab::InNs(lab::kPeerNs, {"ip", "neigh", "show", lab::kVmIp4}));
  EXPECT_THAT(r.out, Not(HasSubstr("52:54:00:00:00:99")));
  // Back to the real MAC: traffic flows again.
  MustRun(lab::InNs(lab::kVmNs, {"ip", "link", "set", "eth0", "address", lab::kVmMac}));
  r = Ping(lab::kVmNs, lab::kPeerIp4);
  EXPECT_THAT(r.out, HasSubstr(" 0% packet loss")) << r.out << r.err;
}

TEST_F(DataplaneTest, NoL2OffloadSaysWhichRulesAreNotEnforced) {
  const std::string predefined = absl::StrCat(NWFQ_SHARED_DIR, "/nwfilter/predefined");
  if (!std::filesystem::exists(predefined)) GTEST_SKIP() << "no shared data at " << predefined;
  UsePredefined("clean-traffic", "<parameter name='IP' value='198.18.0.2'/>");
  ASSERT_NO_FATAL_FAILURE(StartNwfqd({"--no-l2-offload"}));
  const std::string log = ReadFile(log_path_);
  EXPECT_THAT(log, HasSubstr("not enforced for non-IP frames"));
  EXPECT_THAT(log, HasSubstr("no-arp-mac-spoofing.xml"));
  EXPECT_THAT(KernelRules(), Not(HasSubstr("ebtables")));
  // As announced: ARP for a foreign source IP now reaches the peer (the offload test's
  // counterpart), while the engine still drops the IP packets from it.
  MustRun(lab::InNs(lab::kVmNs, {"ip", "addr", "add", "198.18.0.9/24", "dev", "eth0"}));
  MustRun(lab::InNs(lab::kPeerNs, {"ip", "neigh", "flush", "all"}));
  MustRun(lab::InNs(lab::kVmNs, {"ip", "neigh", "flush", "all"}));  // the VM must ARP
  sub::RunResult r = Ping(lab::kVmNs, lab::kPeerIp4, 2, {"-I", "198.18.0.9"});
  EXPECT_THAT(r.out, HasSubstr(" 100% packet loss"));
  r = MustRun(lab::InNs(lab::kPeerNs, {"ip", "neigh", "show", "198.18.0.9"}));
  EXPECT_THAT(r.out, HasSubstr("52:54:00:00:00:02"));
  EXPECT_THAT(ReadFile(log_path_), HasSubstr("DROP         vnet0 from-vm    icmp 198.18.0.9 >"));
}

// The offloaded rules are libvirt's own: the plan for the oracle's demo C binding
// (clean-traffic + a chain='ipv4' sub-filter), loaded into a scratch namespace and saved
// by ebtables, equals the ebtables rules real libvirt 9.0 created for it, chain by chain
// (names mapped: NWFQ-I-vnet0 = libvirt-I-vnet0, NWFQ-I-vnet0-X = I-vnet0-X; nwfq's final
// `-j ACCEPT` per chain is libvirt's fall-through, i.8).
TEST(L2OffloadFidelity, CleanTrafficRulesEqualLibvirts) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a scratch network namespace)";
  const std::string ref = absl::StrCat(NWFQ_SHARED_DIR, "/oracle/reference-captures/demo/C");
  const std::string predefined = absl::StrCat(NWFQ_SHARED_DIR, "/nwfilter/predefined");
  if (!std::filesystem::exists(ref)) GTEST_SKIP() << "no oracle captures at " << ref;
  absl::StatusOr<FilterSet> set = FilterSet::LoadDirectory(predefined);
  ASSERT_TRUE(set.ok()) << set.status();
  for (const char* f : {"oracle-chain-top.xml", "oracle-chain-web.xml"}) {
    absl::Status st = set->AddFile(absl::StrCat(ref, "/filters/", f));
    ASSERT_TRUE(st.ok()) << st;
  }
  absl::StatusOr<Binding> binding = ParseBindingFile(ref + "/binding.xml");
  ASSERT_TRUE(binding.ok()) << binding.status();
  absl::StatusOr<InstantiatedBinding> inst = Instantiate(*set, *binding);
  ASSERT_TRUE(inst.ok()) << inst.status();
  const l2::Plan plan = l2::BuildPlan({*inst});
  ASSERT_EQ(plan.offloaded, std::vector<std::string>{"vnet0"});

  struct NsGuard {
    ~NsGuard() { (void)sub::Run({"ip", "netns", "del", kNs}); }
  } guard;
  (void)sub::Run({"ip", "netns", "del", kNs});
  ASSERT_TRUE(MustRun({"ip", "netns", "add", kNs}).ok());
  ASSERT_TRUE(lab::AssertNotCallerNamespace(kNs).ok());
  absl::StatusOr<sub::RunResult> load =
      sub::Run(lab::InNs(kNs, {"ebtables-restore", "--noflush"}),
               {.stdin_data = plan.script, .timeout = absl::Seconds(20)});
  ASSERT_TRUE(load.ok() && load->ok()) << (load.ok() ? load->err : "") << plan.script;
  const sub::RunResult saved = MustRun(lab::InNs(kNs, {"ebtables-save", "-t", "nat"}));

  // chain -> its rules, in order.
  using Chains = std::map<std::string, std::vector<std::string>>;
  auto parse = [](const std::string& text, bool ours) {
    Chains chains;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::string l(line);
      if (ours) {
        l = absl::StrReplaceAll(l, {{"NWFQ-I-vnet0-", "I-vnet0-"}, {"NWFQ-O-vnet0-", "O-vnet0-"}});
        l = absl::StrReplaceAll(
            l, {{"NWFQ-I-vnet0", "libvirt-I-vnet0"}, {"NWFQ-O-vnet0", "libvirt-O-vnet0"}});
      }
      if (!absl::StartsWith(l, "-A ")) continue;
      std::vector<std::string> w = absl::StrSplit(l, absl::MaxSplits(' ', 2));
      if (w.size() == 3) chains[w[1]].push_back(w[2]);
    }
    if (ours) {
      for (auto& [name, rules] : chains) {
        if (name == "PREROUTING" || name == "POSTROUTING") continue;
        EXPECT_EQ(rules.empty() ? "" : rules.back(), "-j ACCEPT") << name;
        if (!rules.empty()) rules.pop_back();
      }
    }
    return chains;
  };
  const Chains ours = parse(saved.out, true);
  const Chains libvirt = parse(ReadFile(ref + "/ebtables.rules"), false);
  size_t n = 0;
  for (const auto& [name, rules] : libvirt) n += rules.size();
  ASSERT_EQ(libvirt.size(), 11u);  // 9 chains + PREROUTING/POSTROUTING
  ASSERT_EQ(n, 29u);
  EXPECT_EQ(ours, libvirt) << "ours:\n" << saved.out;
}

// Install() replaces whatever NWFQ chains the kernel holds in one ebtables-restore
// transaction: a reload never leaves a window without layer-2 filtering, a second binding's
// plan replaces the first's completely, reinstalling adds no duplicate jumps, and a plan the
// kernel refuses changes nothing. Runs in a scratch namespace entered with setns(2).
TEST(L2Offload, InstallReplacesTheLiveChainsInOneTransaction) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a scratch network namespace)";
  constexpr char kFilter[] = R"(<filter name='l2' chain='root'>
  <rule action='drop' direction='out'><mac srcmacaddr='52:54:00:00:00:09'/></rule>
  <rule action='accept' direction='out'><arp arpsrcipaddr='$IP'/></rule>
  <rule action='drop' direction='inout' priority='1000'><arp/></rule>
</filter>)";
  FilterSet set;
  ASSERT_TRUE(set.AddString(kFilter, "l2.xml").ok());
  auto plan_for = [&](const std::string& dev, const std::string& ip) {
    absl::StatusOr<Binding> b = ParseBindingString(
        absl::StrCat("<filterbinding><owner><name>vm</name><uuid>6f726163-6c65-4000-8000-",
                     "000000000001</uuid></owner><portdev name='", dev,
                     "'/><mac address='52:54:00:00:00:02'/><filterref filter='l2'><parameter ",
                     "name='IP' value='", ip, "'/></filterref></filterbinding>"),
        "binding.xml");
    EXPECT_TRUE(b.ok()) << b.status();
    absl::StatusOr<InstantiatedBinding> inst = Instantiate(set, *b);
    EXPECT_TRUE(inst.ok()) << inst.status();
    return l2::BuildPlan({*inst});
  };
  const l2::Plan a = plan_for("vnet0", "198.18.0.2");
  const l2::Plan b = plan_for("vnet1", "198.18.0.5");
  ASSERT_EQ(a.offloaded, std::vector<std::string>{"vnet0"});

  constexpr char kScratch[] = "nwfq-l2swap";
  (void)sub::Run({"ip", "netns", "del", kScratch});
  ASSERT_TRUE(MustRun({"ip", "netns", "add", kScratch}).ok());
  const int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  const int scratch = open(absl::StrCat("/run/netns/", kScratch).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(home, 0);
  ASSERT_GE(scratch, 0);
  struct Restore {  // back home and scratch namespace gone, also when an assertion fails
    int home, scratch;
    const char* name;
    ~Restore() {
      (void)setns(home, CLONE_NEWNET);
      close(home);
      close(scratch);
      (void)sub::Run({"ip", "netns", "del", name});
    }
  } restore{home, scratch, kScratch};
  ASSERT_TRUE(lab::AssertNotCallerNamespace(kScratch).ok());
  ASSERT_EQ(setns(scratch, CLONE_NEWNET), 0);
  auto ours = [] {
    std::string lines;
    for (absl::string_view l : absl::StrSplit(MustRun({"ebtables-save", "-t", "nat"}).out, '\n'))
      if (absl::StrContains(l, "NWFQ")) absl::StrAppend(&lines, l, "\n");
    return lines;
  };

  ASSERT_TRUE(l2::Install(a).ok());
  const std::string after_a = ours();
  EXPECT_THAT(after_a, HasSubstr("-j NWFQ-I-vnet0"));
  ASSERT_TRUE(l2::Install(b).ok());
  const std::string after_b = ours();
  EXPECT_THAT(after_b, HasSubstr("-j NWFQ-I-vnet1"));
  EXPECT_THAT(after_b, Not(HasSubstr("vnet0"))) << "plan A's chains or jumps survived";
  ASSERT_TRUE(l2::Install(b).ok());
  EXPECT_EQ(ours(), after_b) << "reinstalling the same plan changed the rules";

  l2::Plan broken = b;
  broken.script =
      absl::StrReplaceAll(b.script, {{"COMMIT", "-A NWFQ-I-vnet1 --no-such-option\nCOMMIT"}});
  EXPECT_FALSE(l2::Install(broken).ok());
  EXPECT_EQ(ours(), after_b) << "a refused plan must leave the previous rules in place";

  ASSERT_TRUE(l2::Remove().ok());
  EXPECT_EQ(ours(), "");
}

}  // namespace
}  // namespace nwfq
