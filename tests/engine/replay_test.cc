// Replay: CSV rows for a capture written here, and every shared capture runs without a
// crash (skipped when ../shared is absent).
#include "engine/replay.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <filesystem>
#include <sstream>

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
