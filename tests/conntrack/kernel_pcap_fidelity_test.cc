// Kernel fidelity over real captures: packets of ../shared/pcaps/ (TCP, UDP, UDP-Lite, ICMP,
// ICMPv6, SCTP, GRE, ESP and AH ones) are parsed with the engine's parser, their addresses
// mapped into the lab's 198.18.7.0/24 and 2001:db8:7::/64, rebuilt with correct checksums
// (captures taken with checksum offload would otherwise be INVALID for both; SCTP, GRE, ESP
// and AH keep their captured transport bytes) and played, as fast as the per-packet
// comparison allows, through the kernel's conntrack and through ours; after every packet
// the lab compares ctstate, ctdir, the connection's state and its timer (kernel_lab.h).
// NWFQ_CT_PCAPS=a.pcap:b.pcap replays other Ethernet captures instead, and
// NWFQ_CT_PCAP_PACKETS=N replays up to N packets of each (default 150: the comparison after
// every packet makes a long capture take minutes). Skips when the captures, root or the
// tools are missing. Label: integration.
#include <pcap/pcap.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "conntrack/clock.h"
#include "conntrack/table.h"
#include "engine/packet_view.h"
#include "gtest/gtest.h"
#include "tests/conntrack/kernel_lab.h"

namespace nwfq::ct {
namespace {

using namespace lab;  // NOLINT: the lab and its helpers

// Packets replayed per capture unless NWFQ_CT_PCAP_PACKETS says otherwise.
constexpr size_t kDefaultPacketsPerCapture = 150;

size_t PacketsPerCapture() {
  const char* env = getenv("NWFQ_CT_PCAP_PACKETS");
  if (env == nullptr || *env == '\0') return kDefaultPacketsPerCapture;
  return std::strtoul(env, nullptr, 10);
}

// Captures replayed, relative to the shared pcaps directory (<= 150 packets each).
const char* const kCaptures[] = {
    "icmp/cs_icmp_echo.pcap",
    "icmp/zeek_icmp-ping.pcap",
    "icmp/ppp_IcmpPackets.pcap",
    "icmp/zeek_icmp-destunreach-udp.pcap",
    "icmp/sv_icmp-fragneeded-smtp.pcap",
    "tcp/arkime_wireshark-retrans.pcap",
    "tcp/cs_tcp_zerowindowdead.pcap",
    "tcp/ppp_fin_rst_close.pcap",
    "tcp/ppp_one_tcp_stream_max_seq.pcap",
    "tcp/sv_out-of-window-ipv4.pcap",
    "tcp/sv_out-of-window-ipv6.pcap",
    "tcp/sv_split-handshake-4whs.pcap",
    "tcp/sv_split-handshake-5whs.pcap",
    "tcp/sv_syn-same-port-new-isn.pcap",
    "tcp/ndpi_synscan.pcap",     // one source port to many ports: 25 next to 2500
    "udp/ppp_DnsPackets.pcap",   // dozens of flows at once: a conntrack -L over 4 KB
    "tunnels/zeek_Teredo.pcap",  // IPv6 in UDP
    "ipv6/zeek_icmp6-ping.pcap",
    "ipv6/zeek_icmp6-nd-options.pcap",
    "ipv6/sv_kill_router6.pcap",
    "other/zeek_communityid-sctp.pcap",
    "icmp/zeek_gre-sample-icmp-errors.pcap",  // GRE
    "other/ndpi_esp.pcap",
    "other/ndpi_ah.pcap",
};

// Maps capture addresses into the lab's prefixes, one new host number per address.
class AddressMap {
 public:
  void Map(uint8_t family, std::array<uint8_t, 16>& a) {
    auto [it, fresh] = map_.try_emplace({family, a}, next_);
    if (fresh) ++next_;
    const uint8_t host = static_cast<uint8_t>(it->second);
    a = family == 6 ? Lab6(host) : testing::V4(198, 18, 7, host);
  }
  bool Full() const { return next_ > 250; }

 private:
  std::map<std::pair<uint8_t, std::array<uint8_t, 16>>, int> map_;
  int next_ = 10;
};

// A packet to replay: what our parser made of it and, for SCTP, its transport bytes (the
// chunks as captured, checksum recomputed) since PacketFacts cannot rebuild them.
struct Replayed {
  PacketFacts p;
  std::vector<uint8_t> l4;
};

// The protocols the lab sends (kernel_lab.h: TCP, UDP, UDP-Lite, ICMP, ICMPv6, SCTP, GRE,
// ESP, AH).
bool Rebuildable(uint8_t proto) {
  switch (proto) {
    case 6:
    case 17:
    case 136:
    case 1:
    case 58:
    case 132:
    case 47:
    case 50:
    case 51:
      return true;
    default:
      return false;
  }
}

// Packets of `path` the lab can rebuild faithfully, addresses mapped.
std::vector<Replayed> Load(const std::string& path, std::string* why) {
  std::vector<Replayed> out;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* pc = pcap_open_offline(path.c_str(), err);
  if (pc == nullptr) {
    *why = err;
    return out;
  }
  if (pcap_datalink(pc) != DLT_EN10MB) {
    *why = "not Ethernet";
    pcap_close(pc);
    return out;
  }
  AddressMap map;
  pcap_pkthdr* h;
  const u_char* data;
  const size_t limit = PacketsPerCapture();
  while (pcap_next_ex(pc, &h, &data) == 1 && out.size() < limit) {
    engine::PacketView v = engine::ParseEthernet({data, h->caplen}, engine::ParseOptions{});
    if (v.malformed != engine::Malformed::kNone || v.family == 0 || v.fragment || !v.has_l4) {
      continue;
    }
    if (!Rebuildable(v.l4proto)) continue;
    // SCTP, GRE, ESP and AH are replayed with their transport bytes as captured (SCTP's
    // checksum recomputed): PacketFacts holds too little of them to rebuild them.
    std::vector<uint8_t> raw;
    if (v.l4proto == 132 || v.l4proto == 47 || v.l4proto == 50 || v.l4proto == 51) {
      const size_t ip_end = size_t{v.l3_offset} + v.ip_len;
      if (ip_end > h->caplen || ip_end < v.l4_offset + (v.l4proto == 132 ? 12u : 0u)) {
        continue;  // cut short by the capture
      }
      raw.assign(data + v.l4_offset, data + ip_end);
    }
    PacketFacts p = engine::ToPacketFacts(v);
    if (p.icmp_error && !Rebuildable(p.inner.l4proto)) continue;
    p.bad_checksum = false;  // rebuilt with correct checksums
    if (p.flow.l4proto == 6) p.payload_len = std::min<uint32_t>(p.payload_len, 1400);
    map.Map(p.flow.family, p.flow.src);
    map.Map(p.flow.family, p.flow.dst);
    if (p.icmp_error) {
      map.Map(p.inner.family, p.inner.src);
      map.Map(p.inner.family, p.inner.dst);
    }
    if (map.Full()) break;
    if (v.l4proto == 132) {
      raw = SctpL4(p.flow, p.sctp_vtag, std::vector<uint8_t>(raw.begin() + 12, raw.end()));
    }
    out.push_back({p, raw});
  }
  pcap_close(pc);
  return out;
}

// "proto src sport > dst dport" of a packet, for failure messages.
std::string Describe(const PacketFacts& p) {
  char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
  const int af = p.flow.family == 6 ? AF_INET6 : AF_INET;
  inet_ntop(af, p.flow.src.data(), a, sizeof a);
  inet_ntop(af, p.flow.dst.data(), b, sizeof b);
  return "proto " + std::to_string(p.flow.l4proto) + " " + a + " " + std::to_string(p.flow.sport) +
         " > " + b + " " + std::to_string(p.flow.dport) + (p.icmp_error ? " (ICMP error)" : "");
}

// The captures to replay: NWFQ_CT_PCAPS (colon-separated paths) when set, to check captures
// taken elsewhere (e.g. fresh ones of a host's own traffic) with the same comparison;
// otherwise kCaptures from the shared directory, empty if it is absent.
std::vector<std::string> CapturesToReplay() {
  std::vector<std::string> paths;
  if (const char* env = getenv("NWFQ_CT_PCAPS"); env != nullptr && *env != '\0') {
    std::string list = env;
    for (size_t start = 0; start <= list.size();) {
      const size_t end = std::min(list.find(':', start), list.size());
      if (end > start) paths.push_back(list.substr(start, end - start));
      start = end + 1;
    }
    return paths;
  }
  const std::filesystem::path dir = std::filesystem::path(NWFQ_SHARED_DIR) / "pcaps";
  if (!std::filesystem::exists(dir)) return paths;
  for (const char* name : kCaptures) paths.push_back((dir / name).string());
  return paths;
}

TEST(KernelPcapFidelity, CapturesMatchTheKernel) {
  const std::vector<std::string> captures = CapturesToReplay();
  if (captures.empty()) {
    GTEST_SKIP() << "no shared captures at " << NWFQ_SHARED_DIR << "/pcaps (or set NWFQ_CT_PCAPS)";
  }
  std::string why;
  KernelLab kernel_lab;
  if (!StartLab(kernel_lab, &why)) GTEST_SKIP() << why;
  MonotonicClock clock;
  TimeoutPolicy timeouts;
  int total = 0;
  int mismatches = 0;
  for (const std::string& name : captures) {
    why.clear();
    std::vector<Replayed> pkts = Load(name, &why);
    if (pkts.empty()) {
      std::printf("%s: skipped (%s)\n", name.c_str(),
                  why.empty() ? "no trackable packets" : why.c_str());
      continue;
    }
    kernel_lab.Flush();
    Table ours(TableOptions{.capacity = 4096});
    int here = 0;
    for (size_t i = 0; i < pkts.size(); ++i) {
      auto [kernel, mine] = Observe(kernel_lab, ours, timeouts, clock.Now(), pkts[i].p, pkts[i].l4);
      ++total;
      if (!(kernel == mine)) {
        ++here;
        ADD_FAILURE() << name << " packet #" << i + 1 << " (" << Describe(pkts[i].p) << "): kernel "
                      << kernel << ", nwfq " << mine;
        if (getenv("NWFQ_CT_TRACE") != nullptr) std::printf("%s", kernel_lab.Table().c_str());
      }
    }
    mismatches += here;
    std::printf("%s: %zu packets, %d mismatches\n", name.c_str(), pkts.size(), here);
  }
  kernel_lab.Down();
  std::printf("pcap fidelity: %d packets, %d mismatches\n", total, mismatches);
}

}  // namespace
}  // namespace nwfq::ct
