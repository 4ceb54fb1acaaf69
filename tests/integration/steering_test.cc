// Unit tests (no root, no kernel): the steering rule text nwfqd feeds to iptables-restore,
// the backend choice, interface-name validation, and the explicit-argv process runner the
// lab and the steering use.
#include "tools/nwfqd/steering.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine/packet_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"
#include "tools/lab/subprocess.h"
#include "tools/nwfqd/l2_offload.h"
#include "tools/nwfqd/reject.h"

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

TEST(SteeringScript, QueueBalanceFansOutOverTheRange) {
  steer::Options o;
  o.portdevs = {"vnet0"};
  o.queue_num = 4;
  o.queue_count = 4;
  const std::string s = steer::IptablesRestoreScript(o);
  EXPECT_THAT(s, HasSubstr("--physdev-in vnet0 -j NFQUEUE --queue-balance 4:7\n"));
  EXPECT_THAT(s, Not(HasSubstr("--queue-num")));
}

TEST(SteeringScript, UpdateRefillsTheChainsWithoutNewJumps) {
  steer::Options o;
  o.portdevs = {"vnet0", "vnet1"};
  const std::string full = steer::IptablesRestoreScript(o);
  const std::string update = steer::IptablesUpdateScript(o);
  EXPECT_THAT(update, Not(HasSubstr("-I FORWARD")));
  EXPECT_THAT(update, Not(HasSubstr("-I INPUT")));
  EXPECT_THAT(update, HasSubstr(":NWFQ-FWD - [0:0]\n"));  // flushes the chain in the transaction
  EXPECT_THAT(update, HasSubstr("--physdev-in vnet1"));
  EXPECT_EQ(full.substr(0, update.size() - 7), update.substr(0, update.size() - 7));
  EXPECT_TRUE(absl::EndsWith(update, "\nCOMMIT\n"));
}

TEST(SteeringScript, RoutedTapsMatchInterfacesNotPhysdev) {
  steer::Options o;
  o.portdevs = {"vnet0", "tap1"};
  o.routed = {"tap1"};
  o.fail_open = true;
  const std::string s = steer::IptablesRestoreScript(o);
  EXPECT_THAT(s, HasSubstr("-A NWFQ-FWD -i tap1 -j NFQUEUE --queue-num 0 --queue-bypass\n"));
  EXPECT_THAT(s, HasSubstr("-A NWFQ-FWD -o tap1 -j NFQUEUE --queue-num 0 --queue-bypass\n"));
  EXPECT_THAT(s, HasSubstr("-A NWFQ-IN -i tap1 -j NFQUEUE --queue-num 0 --queue-bypass\n"));
  EXPECT_THAT(s, Not(HasSubstr("physdev-in tap1")));
  EXPECT_THAT(s, HasSubstr("--physdev-in vnet0"));
}

// REJECT's reply, byte by byte where it matters (nf_reject_ipv4/6, icmp_send).
TEST(RejectBuild, Rows) {
  using nwfq::testing::PacketBuilder;
  using nwfqd::RejectReply;
  using nwfqd::TcpReject;
  const std::vector<uint8_t> syn =
      PacketBuilder().Ipv4("198.18.0.3", "198.18.0.2").Tcp(40000, 80, 0x02, 1000).BuildNetwork();
  const std::vector<uint8_t> ack = PacketBuilder()
                                       .Ipv4("198.18.0.3", "198.18.0.2")
                                       .Tcp(40000, 80, 0x18, 1000, 777)
                                       .Payload(10)
                                       .BuildNetwork();
  const std::vector<uint8_t> udp6 =
      PacketBuilder().Ipv6("2001:db8::3", "2001:db8::2").Udp(5000, 53).Payload(20).BuildNetwork();
  const std::vector<uint8_t> big_udp =
      PacketBuilder().Ipv4("198.18.0.2", "198.18.0.3").Udp(5000, 53).Payload(1400).BuildNetwork();
  const std::vector<uint8_t> unreach =
      PacketBuilder().Ipv4("198.18.0.1", "198.18.0.2").IcmpError(3, 3, syn).BuildNetwork();
  const std::vector<uint8_t> rst =
      PacketBuilder().Ipv4("198.18.0.3", "198.18.0.2").Tcp(40000, 80, 0x04).BuildNetwork();
  const std::vector<uint8_t> bcast =
      PacketBuilder().Ipv4("198.18.0.2", "255.255.255.255").Udp(68, 67).BuildNetwork();

  // ICMP port unreachable for TCP (libvirt's plain -j REJECT), quoting the whole SYN.
  RejectReply r = nwfqd::BuildReject(syn, 0, false, TcpReject::kIcmp);
  ASSERT_EQ(r.kind, RejectReply::Kind::kIcmp);
  EXPECT_EQ(r.family, 4);
  EXPECT_EQ(r.bytes[0], 3);
  EXPECT_EQ(r.bytes[1], 3);
  EXPECT_EQ(r.bytes.size(), 8 + syn.size());
  EXPECT_TRUE(std::equal(syn.begin(), syn.end(), r.bytes.begin() + 8));
  EXPECT_EQ(r.dst[0], 198);
  EXPECT_EQ(r.dst[3], 3);
  EXPECT_FALSE(r.use_src);  // forwarded: the host's routing picks its own address
  {
    // The reply parses as an ICMP error quoting the SYN's flow, with a valid checksum.
    const std::vector<uint8_t> whole =
        PacketBuilder().Ipv4("198.18.0.1", "198.18.0.3").IcmpError(3, 3, syn).BuildNetwork();
    EXPECT_TRUE(std::equal(whole.begin() + 20, whole.end(), r.bytes.begin()));
  }
  // To the host itself: from the address it was sent to.
  r = nwfqd::BuildReject(syn, 0, true, TcpReject::kIcmp);
  EXPECT_TRUE(r.use_src);
  EXPECT_EQ(r.src[3], 2);

  // RST for a SYN: RST|ACK acking seq + 1, from the original destination.
  r = nwfqd::BuildReject(syn, 0, false, TcpReject::kRst);
  ASSERT_EQ(r.kind, RejectReply::Kind::kRaw);
  ASSERT_EQ(r.bytes.size(), 40u);
  {
    const engine::PacketView v = engine::ParseNetwork(r.bytes, engine::kEtherIpv4, {});
    EXPECT_EQ(v.malformed, engine::Malformed::kNone);
    EXPECT_FALSE(v.bad_checksum);
    EXPECT_EQ(v.src_ip[3], 2);
    EXPECT_EQ(v.dst_ip[3], 3);
    EXPECT_EQ(v.sport, 80);
    EXPECT_EQ(v.dport, 40000);
    EXPECT_EQ(v.tcp_flags, ct::kTcpRst | ct::kTcpAck);
    EXPECT_EQ(v.tcp_seq, 0u);
    EXPECT_EQ(v.tcp_ack, 1001u);
  }
  // RST for a data segment with ACK: seq = their ack, RST only.
  r = nwfqd::BuildReject(ack, 0, false, TcpReject::kRst);
  {
    const engine::PacketView v = engine::ParseNetwork(r.bytes, engine::kEtherIpv4, {});
    EXPECT_FALSE(v.bad_checksum);
    EXPECT_EQ(v.tcp_flags, ct::kTcpRst);
    EXPECT_EQ(v.tcp_seq, 777u);
  }
  // ICMPv6 port unreachable (type 1 code 4).
  r = nwfqd::BuildReject(udp6, 0, false, TcpReject::kRst);
  ASSERT_EQ(r.kind, RejectReply::Kind::kIcmp);
  EXPECT_EQ(r.family, 6);
  EXPECT_EQ(r.bytes[0], 1);
  EXPECT_EQ(r.bytes[1], 4);
  EXPECT_EQ(r.bytes.size(), 8 + udp6.size());
  // A 512-byte copy of a 1428-byte datagram: the quote is what was copied.
  r = nwfqd::BuildReject(std::span<const uint8_t>(big_udp.data(), 512),
                         static_cast<uint32_t>(big_udp.size()), false, TcpReject::kIcmp);
  ASSERT_EQ(r.kind, RejectReply::Kind::kIcmp);
  EXPECT_EQ(r.bytes.size(), 8u + 512u);
  // Never in reply to an ICMP error, a RST, or a broadcast.
  EXPECT_EQ(nwfqd::BuildReject(unreach, 0, false, TcpReject::kIcmp).kind, RejectReply::Kind::kNone);
  EXPECT_EQ(nwfqd::BuildReject(rst, 0, false, TcpReject::kRst).kind, RejectReply::Kind::kNone);
  EXPECT_EQ(nwfqd::BuildReject(bcast, 0, false, TcpReject::kIcmp).kind, RejectReply::Kind::kNone);
}

// The ebtables layout of a small binding: a root rule, a sub-chain with its guard, both
// directions, falling off = ACCEPT; an untranslatable attribute blocks the binding.
TEST(L2Offload, PlanLayout) {
  using namespace engine::testutil;  // NOLINT
  ConcreteRule mac_return = Rule(Action::kReturn, Direction::kOut, Protocol::kMac,
                                 {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02")}, -800);
  ConcreteRule mac_drop = Rule(Action::kDrop, Direction::kOut, Protocol::kMac, {}, -800);
  ConcreteRule arp_accept = Rule(Action::kAccept, Direction::kInOut, Protocol::kArp,
                                 {Ip(Attr::kArpSrcIpAddr, "198.18.0.2")});
  InstantiatedBinding b = Bind({arp_accept});
  b.l2_chains.push_back(L2Chain{"mac", ChainKind::kMac, -800, {}});
  b.rules.push_back(mac_return);
  b.rules.push_back(mac_drop);
  b.l2_chains[1].entries = {{L2Entry::Kind::kRule, 1}, {L2Entry::Kind::kRule, 2}};
  b.l2_chains[0].entries.insert(b.l2_chains[0].entries.begin(), {L2Entry::Kind::kJump, 1});
  l2::Plan plan = l2::BuildPlan({b});
  EXPECT_EQ(plan.offloaded, std::vector<std::string>{"vnet0"});
  EXPECT_THAT(plan.not_offloaded, ::testing::IsEmpty());
  EXPECT_EQ(plan.script,
            "*nat\n"
            ":NWFQ-I-vnet0 ACCEPT\n"
            ":NWFQ-I-vnet0-mac ACCEPT\n"
            ":NWFQ-O-vnet0 ACCEPT\n"
            "-A NWFQ-I-vnet0 -j NWFQ-I-vnet0-mac\n"
            "-A NWFQ-I-vnet0 -p ARP --arp-ip-dst 198.18.0.2 -j ACCEPT\n"
            "-A NWFQ-I-vnet0 -j ACCEPT\n"
            "-A NWFQ-I-vnet0-mac -s 52:54:00:00:00:02 -j RETURN\n"
            "-A NWFQ-I-vnet0-mac -j DROP\n"
            "-A NWFQ-I-vnet0-mac -j ACCEPT\n"
            "-A NWFQ-O-vnet0 -p ARP --arp-ip-src 198.18.0.2 -j ACCEPT\n"
            "-A NWFQ-O-vnet0 -j ACCEPT\n"
            "-A PREROUTING -i vnet0 -j NWFQ-I-vnet0\n"
            "-A POSTROUTING -o vnet0 -j NWFQ-O-vnet0\n"
            "COMMIT\n");
  // The engine's copy has no layer-2 rules left.
  for (const L2Chain& c : l2::WithoutL2(b).l2_chains) EXPECT_TRUE(c.entries.empty());

  InstantiatedBinding stp =
      Bind({Rule(Action::kDrop, Direction::kOut, Protocol::kStp, {U(Attr::kRootPriority, 5)})});
  stp.portdev = "vnet1";
  plan = l2::BuildPlan({b, stp});
  EXPECT_EQ(plan.offloaded, std::vector<std::string>{"vnet0"});
  ASSERT_EQ(plan.not_offloaded.size(), 1u);
  EXPECT_THAT(plan.not_offloaded[0], HasSubstr("vnet1: "));
  EXPECT_THAT(plan.not_offloaded[0], HasSubstr("has no layer-2 offload translation"));
  EXPECT_THAT(plan.script, Not(HasSubstr("vnet1")));
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
