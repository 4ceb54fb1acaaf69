// Replay: CSV rows for a capture written here, and every shared capture runs without a
// crash (skipped when ../shared is absent); the timeout study built on it.
#include "engine/replay.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <filesystem>
#include <sstream>
#include <tuple>

#include "engine/timeout_study.h"
#include "tests/engine/rule_helpers.h"
#include "tests/testing/packet_builder.h"

namespace nwfq::engine {
namespace {

using namespace testutil;  // NOLINT
using nwfq::testing::kPeerMac;
using nwfq::testing::kVmMac;
using nwfq::testing::PacketBuilder;

std::string WritePcap(const std::vector<std::pair<double, std::vector<uint8_t>>>& frames) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("nwfq_replay_" + std::to_string(getpid()) + ".pcap"))
                               .string();
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  for (const auto& [t, f] : frames) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(t);
    h.ts.tv_usec = static_cast<suseconds_t>((t - static_cast<double>(h.ts.tv_sec)) * 1e6 + 0.5);
    h.caplen = h.len = static_cast<uint32_t>(f.size());
    pcap_dump(reinterpret_cast<u_char*>(d), &h, f.data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
  return path;
}

EngineOptions Opts(uint32_t capacity) {
  EngineOptions o;
  o.conntrack_capacity = capacity;
  return o;
}

TEST(Replay, CsvRowsWithMacDirectionAndHostAddr) {
  InstantiatedBinding b =
      Bind({Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
            Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp),
            Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const std::string path = WritePcap({
      {10.0, PacketBuilder()
                 .Eth(kPeerMac, kVmMac)
                 .Ipv4("198.18.0.3", "198.18.0.2")
                 .Tcp(40000, 22, 0x02, 5000)
                 .Build()},
      {10.5, PacketBuilder()
                 .Eth(kVmMac, kPeerMac)
                 .Ipv4("198.18.0.2", "198.18.0.3")
                 .Tcp(22, 40000, 0x12, 100, 5001)
                 .Build()},
      {11.0, PacketBuilder()
                 .Eth(kVmMac, kPeerMac)
                 .Ipv4("198.18.0.2", "198.18.0.1")
                 .Icmp(8, 0, 1, 1)
                 .Build()},
      {12.0, PacketBuilder()
                 .Eth(kPeerMac, kVmMac)
                 .Ipv4("198.18.0.3", "198.18.0.2")
                 .Tcp(40001, 80, 0x02)
                 .Build()},
      {13.0, PacketBuilder()
                 .Eth(kVmMac, nwfq::testing::kBroadcastMac)
                 .Arp(1, kVmMac, "198.18.0.2", {}, "198.18.0.1")
                 .Build()},
  });
  Engine e(Opts(1024));
  ASSERT_TRUE(e.SetBinding(b).ok());
  ReplayOptions o;
  std::array<uint8_t, 16> host{198, 18, 0, 1};
  o.host_addrs.push_back(host);
  o.host_families.push_back(4);
  std::ostringstream csv;
  absl::StatusOr<ReplaySummary> sum = Replay(e, b, path, csv, o);
  std::filesystem::remove(path);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->frames, 5u);
  EXPECT_EQ(csv.str(),
            "index,time,direction,verdict,rule,ctstate\n"
            "0,10.000000,to-vm,accept,test:1,NEW/ORIGINAL\n"
            "1,10.500000,from-vm,accept,test:1,ESTABLISHED/REPLY\n"
            "2,11.000000,to-host,accept,test:2,NEW/ORIGINAL\n"
            "3,12.000000,to-vm,drop,test:3,NEW/ORIGINAL\n"
            "4,13.000000,from-vm,accept,-,-\n");
}

// Fragments: rows stay in frame order; a datagram's fragments carry its verdict, rule and
// ctstate (the last fragment, first in the capture, is written once the datagram is
// complete); a datagram still incomplete at the end is dropped, with the reason in the
// explanation; one whose 30 s ran out in capture time is dropped as timed out.
TEST(Replay, FragmentsTakeTheirDatagramsRow) {
  InstantiatedBinding b =
      Bind({Rule(Action::kAccept, Direction::kOut, Protocol::kUdp, {U(Attr::kDstPortStart, 53)}),
            Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  auto udp = [](uint16_t id, uint16_t dport) {
    PacketBuilder d;
    d.Eth(kVmMac, kPeerMac).Ipv4("198.18.0.2", "198.18.0.3").IpId(id).Udp(1000, dport).Payload(100);
    return d;
  };
  auto frag = [](const PacketBuilder& d, uint16_t off, uint16_t len, bool more) {
    return PacketBuilder(d).Fragment(off, len, more).Build();
  };
  const std::string path = WritePcap({
      {10.0, frag(udp(1, 53), 56, 52, false)},  // 0: held until frame 2
      {10.1,
       PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4("198.18.0.2", "198.18.0.3").Udp(7, 53).Build()},
      {10.2, frag(udp(1, 53), 0, 56, true)},    // 2: completes datagram 1
      {10.3, frag(udp(2, 54), 0, 56, true)},    // 3: denied port, completed by 4
      {10.4, frag(udp(2, 54), 56, 52, false)},  // 4
      {10.5, frag(udp(3, 53), 0, 56, true)},    // 5: never completed: times out at 40.5
      {25.0, frag(udp(4, 53), 0, 56, true)},    // 6: incomplete at the end (50.0 < 55.0)
      {50.0, frag(udp(5, 53), 56, 52, false)},  // 7: also incomplete
  });
  Engine e(Opts(1024));
  ASSERT_TRUE(e.SetBinding(b).ok());
  std::ostringstream csv, why;
  ReplayOptions o;
  o.explain = true;
  o.explain_out = &why;
  absl::StatusOr<ReplaySummary> sum = Replay(e, b, path, csv, o);
  std::filesystem::remove(path);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(csv.str(),
            "index,time,direction,verdict,rule,ctstate\n"
            "0,10.000000,from-vm,accept,test:1,NEW/ORIGINAL\n"
            "1,10.100000,from-vm,accept,test:1,NEW/ORIGINAL\n"
            "2,10.200000,from-vm,accept,test:1,NEW/ORIGINAL\n"
            "3,10.300000,from-vm,drop,test:2,NEW/ORIGINAL\n"
            "4,10.400000,from-vm,drop,test:2,NEW/ORIGINAL\n"
            "5,10.500000,from-vm,drop,-,-\n"
            "6,25.000000,from-vm,drop,-,-\n"
            "7,50.000000,from-vm,drop,-,-\n");
  EXPECT_EQ(sum->accepted, 3u);
  EXPECT_EQ(sum->dropped, 5u);
  const std::string text = why.str();
  EXPECT_NE(text.find("frame 5 10.500000 from-vm -> drop (rule -, ct -) fragment: timeout"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("frame 6 25.000000 from-vm -> drop (rule -, ct -) fragment: incomplete "
                      "datagram"),
            std::string::npos);
  EXPECT_NE(text.find("frame 0 10.000000 from-vm -> accept (rule test:1, ct NEW/ORIGINAL) "
                      "(reassembled datagram)\n  fragment of the datagram decided with frame 2"),
            std::string::npos);
}

// A Linux cooked (SLL / SLL2) record of an Ethernet frame, as the kernel's packet socket
// writes it: the sender's MAC, the ethertype and the packet type; no destination MAC.
std::vector<uint8_t> Cooked(int dlt, uint8_t pkttype, const std::vector<uint8_t>& eth) {
  std::vector<uint8_t> r;
  const auto mac = std::vector<uint8_t>(eth.begin() + 6, eth.begin() + 12);
  if (dlt == DLT_LINUX_SLL2) {
    r = {eth[12], eth[13], 0, 0, 0, 0, 0, 7, 0, 1, pkttype, 6};
  } else {
    r = {0, pkttype, 0, 1, 0, 6};
  }
  r.insert(r.end(), mac.begin(), mac.end());
  r.insert(r.end(), 2, 0);  // the 8-byte address field's padding
  if (dlt == DLT_LINUX_SLL) r.insert(r.end(), {eth[12], eth[13]});
  r.insert(r.end(), eth.begin() + 14, eth.end());
  return r;
}

std::string WriteRaw(int dlt,
                     const std::vector<std::tuple<long, long, std::vector<uint8_t>>>& recs) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("nwfq_replay_cooked_" + std::to_string(getpid()) + ".pcap"))
                               .string();
  pcap_t* dead = pcap_open_dead(dlt, 65535);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  for (const auto& [sec, usec, f] : recs) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(sec);
    h.ts.tv_usec = static_cast<suseconds_t>(usec);
    h.caplen = h.len = static_cast<uint32_t>(f.size());
    pcap_dump(reinterpret_cast<u_char*>(d), &h, f.data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
  return path;
}

// Linux cooked captures (tcpdump on "any", or -y LINUX_SLL2 on the tap): the packet type
// gives the direction (outgoing on the tap = to the VM), the header's address is the
// source MAC layer-2 matches see; a tv_usec beyond a second is carried into the seconds.
TEST(Replay, LinuxCookedCapturesGiveDirectionAndSourceMac) {
  InstantiatedBinding b =
      Bind({Rule(Action::kDrop, Direction::kOut, Protocol::kIcmp,
                 {MacAttr(Attr::kSrcMacAddr, "52:54:00:00:00:02", true)}),
            Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
            Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp),
            Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto syn = PacketBuilder()
                       .Eth(kPeerMac, kVmMac)
                       .Ipv4("198.18.0.3", "198.18.0.2")
                       .Tcp(40000, 22, 0x02, 5000);
  const auto synack = PacketBuilder()
                          .Eth(kVmMac, kPeerMac)
                          .Ipv4("198.18.0.2", "198.18.0.3")
                          .Tcp(22, 40000, 0x12, 100, 5001);
  const nwfq::testing::Mac spoofed = {0x02, 0, 0, 0, 0, 0x66};
  const auto ping = [](const nwfq::testing::Mac& src, uint16_t seq) {
    return PacketBuilder().Eth(src, kPeerMac).Ipv4("198.18.0.2", "198.18.0.3").Icmp(8, 0, 7, seq);
  };
  struct Case {
    int dlt;
    std::string want;
  };
  for (const Case& c : {Case{DLT_LINUX_SLL2, "SLL2"}, Case{DLT_LINUX_SLL, "SLL"}}) {
    SCOPED_TRACE(c.want);
    const std::string path =
        WriteRaw(c.dlt, {{10, 0, Cooked(c.dlt, 4, PacketBuilder(syn).Build())},
                         {10, 500000, Cooked(c.dlt, 0, PacketBuilder(synack).Build())},
                         {11, 0, Cooked(c.dlt, 0, ping(spoofed, 1).Build())},
                         {12, 1500000, Cooked(c.dlt, 0, ping(kVmMac, 2).Build())}});
    Engine e(Opts(1024));
    ASSERT_TRUE(e.SetBinding(b).ok());
    std::ostringstream csv;
    absl::StatusOr<ReplaySummary> sum = Replay(e, b, path, csv, ReplayOptions{});
    std::filesystem::remove(path);
    ASSERT_TRUE(sum.ok()) << sum.status();
    EXPECT_EQ(sum->direction_from_capture, 4u);
    EXPECT_EQ(csv.str(),
              "index,time,direction,verdict,rule,ctstate\n"
              "0,10.000000,to-vm,accept,test:2,NEW/ORIGINAL\n"
              "1,10.500000,from-vm,accept,test:2,ESTABLISHED/REPLY\n"
              "2,11.000000,from-vm,drop,test:1,NEW/ORIGINAL\n"
              "3,13.500000,from-vm,accept,test:3,NEW/ORIGINAL\n");
  }
}

// The timeout study: a late echo reply (8 s after the last packet of its ping) passes
// when the ICMP timeout outlasts the gap and is INVALID, hence dropped, when it does not;
// each value is its own run, the kernel default (30 s) is added as the reference.
TEST(TimeoutStudy, LateReplyDroppedOnlyBelowTheGap) {
  InstantiatedBinding b = Bind({Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp),
                                Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  const auto to_peer = PacketBuilder().Eth(kVmMac, kPeerMac).Ipv4("198.18.0.2", "198.18.0.3");
  const auto to_vm = PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4("198.18.0.3", "198.18.0.2");
  const std::string path = WritePcap({
      {100.0, PacketBuilder(to_peer).Icmp(8, 0, 7, 1).Build()},
      {100.01, PacketBuilder(to_vm).Icmp(0, 0, 7, 1).Build()},
      {108.0, PacketBuilder(to_vm).Icmp(0, 0, 7, 2).Build()},
  });
  StudyOptions o;
  o.timeout_class = ct::TimeoutClass::kIcmp;
  o.seconds = {10, 1, 5, 10};  // a repeated value runs once
  o.engine = Opts(1024);
  std::vector<size_t> progress;
  o.progress = [&](size_t run, uint64_t frames) {
    EXPECT_EQ(frames, 3u);
    progress.push_back(run);
  };
  absl::StatusOr<std::vector<StudyRow>> rows = RunTimeoutStudy(b, path, o);
  std::filesystem::remove(path);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(progress, (std::vector<size_t>{0, 1, 2, 3}));  // 3 values + the default's run
  ASSERT_EQ(rows->size(), 4u);
  struct Want {
    uint32_t seconds;
    bool kernel_default;
    uint64_t accepted, dropped, changed, expired;
  };
  const Want want[] = {{1, false, 2, 1, 1, 1},
                       {5, false, 2, 1, 1, 1},
                       {10, false, 3, 0, 0, 0},
                       {30, true, 3, 0, 0, 0}};
  for (size_t i = 0; i < 4; ++i) {
    const StudyRow& r = (*rows)[i];
    SCOPED_TRACE(r.seconds);
    EXPECT_EQ(r.seconds, want[i].seconds);
    EXPECT_EQ(r.kernel_default, want[i].kernel_default);
    EXPECT_EQ(r.frames, 3u);
    EXPECT_EQ(r.accepted, want[i].accepted);
    EXPECT_EQ(r.dropped, want[i].dropped);
    EXPECT_EQ(r.changed, want[i].changed);
    EXPECT_EQ(r.changed_frames,
              want[i].changed ? std::vector<uint64_t>{2} : std::vector<uint64_t>{});
    EXPECT_EQ(r.new_connections, 1u);
    EXPECT_EQ(r.expired, want[i].expired);
  }
  const std::string svg = StudySvg(*rows, "icmp", "icmp <study> & plot");
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("icmp &lt;study&gt; &amp; plot"), std::string::npos);  // escaped title
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1))
    ++polylines;
  EXPECT_EQ(polylines, 3u);  // accepted, dropped + rejected, changed
  EXPECT_NE(svg.find("font-weight='bold'>30<"), std::string::npos);  // the default's tick
  EXPECT_NE(svg.find("log scale"), std::string::npos);               // 1..30 spans > 20x
}

TEST(TimeoutStudy, BadInputsAreErrors) {
  InstantiatedBinding b = Bind({Rule(Action::kAccept, Direction::kOut, Protocol::kIcmp)});
  StudyOptions o;
  EXPECT_FALSE(RunTimeoutStudy(b, "/nonexistent.pcap", o).ok());  // no values
  o.seconds = {3};
  const absl::StatusOr<std::vector<StudyRow>> r = RunTimeoutStudy(b, "/nonexistent.pcap", o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("icmp=3"), std::string_view::npos) << r.status();
}

TEST(Replay, SharedCapturesNeverCrash) {
  const std::filesystem::path root = std::filesystem::path(NWFQ_SHARED_DIR) / "pcaps";
  if (!std::filesystem::exists(root)) GTEST_SKIP() << "no shared captures at " << root;
  InstantiatedBinding b =
      Bind({Rule(Action::kDrop, Direction::kIn, Protocol::kTcp, {U(Attr::kConnlimitAbove, 1)}, 400),
            Rule(Action::kAccept, Direction::kIn, Protocol::kTcp, {U(Attr::kDstPortStart, 22)}),
            Rule(Action::kAccept, Direction::kOut, Protocol::kAll),
            Rule(Action::kAccept, Direction::kOut, Protocol::kAllIpv6),
            Rule(Action::kDrop, Direction::kOut, Protocol::kArp, {U(Attr::kOpcode, 9)}),
            Rule(Action::kDrop, Direction::kInOut, Protocol::kAll, {}, 1000)});
  int replayed = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    const std::string p = entry.path().string();
    if (!entry.is_regular_file() || (p.find(".pcap") == std::string::npos)) continue;
    if (entry.file_size() > 20 * 1024 * 1024) continue;  // keep the unit test quick
    SCOPED_TRACE(p);
    Engine e(Opts(8192));
    ASSERT_TRUE(e.SetBinding(b).ok());
    std::ostringstream csv;
    absl::StatusOr<ReplaySummary> sum = Replay(e, b, p, csv, ReplayOptions{});
    if (!sum.ok()) continue;  // unsupported link types are refused, not crashed on
    const std::string text = csv.str();
    const size_t rows = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
    EXPECT_EQ(rows, sum->frames + 1);
    ++replayed;
  }
  EXPECT_GT(replayed, 10);
}

}  // namespace
}  // namespace nwfq::engine
