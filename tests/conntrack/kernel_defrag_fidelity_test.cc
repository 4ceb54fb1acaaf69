// Kernel fidelity of IP defragmentation over the real fragment captures
// (../shared/pcaps/fragments/, at most 200 frames each): every frame is rebuilt with its
// addresses mapped into the lab's 198.18.7.0/24 and 2001:db8:7::/64, TTL / hop limit 64, the
// IPv4 header checksum recomputed and the transport checksum adjusted for the new
// pseudo-header (RFC 1624, in whichever fragment holds the checksum field), then played
// back to back (capture timestamps ignored: no reassembly or conntrack timer runs out)
// through
//  * the kernel: the routed lab of kernel_lab.h (nwfq-ct-inj -> nwfq-ct-k -> nwfq-ct-sink).
//    nf_defrag reassembles in PREROUTING before conntrack; mangle PREROUTING rules write the
//    datagram's --ctstate/--ctdir into its DSCP; the router forwards it (refragmented) to the
//    sink, where an AF_PACKET socket sees what was delivered. After each frame a probe
//    packet is sent on the same path (the test thread is pinned to one CPU: one backlog, in
//    order): what the sink receives before the probe was released by that frame;
//  * nwfq: Engine::Decide (one binding without rules: everything falls through to accept)
//    on the same rebuilt frames, in real time like the kernel.
// Per frame, the datagrams delivered (with their ctstate) must be equal: the kernel's
// delivery right after frame i vs nwfq's immediate decision of frame i (a whole packet, or
// the fragment that completed its datagram, accepted). Frames the routed lab cannot carry
// (VLAN-tagged, not IP) are played to neither. Listed divergences (kAllowed, rows of
// conntrack/DIVERGENCES.md) must still diverge. Skips without ../shared, root or the tools.
// Label: integration; about 9 s (18 fresh labs), plus 4 s for the crafted rows.
//
// What the kernel (6.18, nf_defrag_ipv4 / nf_defrag_ipv6 + conntrack) does with each capture,
// nwfq the same unless said otherwise:
//   cs_ipv6_fragments: 10 ICMPv6 echo datagrams of 2 fragments reassembled at the 2nd,
//     NEW then ESTABLISHED both ways; 2 neighbour-discovery packets UNTRACKED.
//   ndpi_dns_fragmented: DNS answers of 2 fragments (IPv4 and IPv6) reassembled
//     (ESTABLISHED/REPLY); the capture's unfragmented answers carry offloaded checksums:
//     INVALID; 59 datagrams from 66 frames.
//   ndpi_ip_fragmented_garbage: 200 tiny TCP fragments (16-byte steps) held, none completes,
//     nothing delivered.
//   ppp_frag_with_padding (VLAN removed): 8 UDP fragments with Ethernet padding, padding
//     trimmed, one datagram delivered at the last fragment (NEW).
//   ppp_ip4_bad_fragment (MPLS removed): a fragment claiming more bytes than the frame: dropped
//     before defrag (ip_rcv_core; nwfq: malformed truncated-ipv4).
//   ppp_ip4_fragments: NFS 8 KB writes of 6 fragments reassembled; retransmitted fragments
//     inside a complete run dropped alone (IPFRAG_DUP), the datagrams delivered once.
//   ppp_ip6_fragments: 4 mDNS/WS-Discovery datagrams reassembled, INVALID: 4 bytes follow the
//     UDP length and nf_checksum() sums the whole payload (nwfq: NEW, bug, see
//     DefragChecksum.FragmentedUdpAsTheKernel).
//   sv_frag-eth-vlan-ip-tcp-syn (VLAN removed): a SYN in 3 fragments, NEW at the 3rd.
//   sv_ipv6-atomic-frag-toobig: atomic fragments are not queued (passed as they are):
//     5 packets, NEW / INVALID (packet-too-big without a connection) / UNTRACKED.
//   sv_ipv6-frag-1: an echo in 2 fragments plus a duplicate: duplicate dropped alone, the
//     datagram INVALID (its echo id was answered already).
//   sv_ipv6-frag-15: a 64 KB echo in 1232-byte fragments whose last one ends past 65535:
//     that one dropped alone (nf_ct_frag6_queue: end > IPV6_MAXPLEN), the rest held, never
//     delivered; the target's parameter problem and small pings tracked.
//   sv_ipv6-frag-30: incomplete chains held (never delivered), overlapping and badly sized
//     ones killed; echoes and errors around them tracked.
//   zeek_ipv4-fragmented-1: a last fragment before data already queued, then a conflicting
//     first fragment: the queue is killed (bad length), nothing delivered.
//   zeek_ipv4-fragmented-4: unfragmented SYN delivered (NEW); overlapping fragments with ID 0
//     kill their queue (IPFRAG_OVERLAP); the unfragmented FIN delivered INVALID.
//   zeek_ipv4-fragmented-syn: SYN whose first fragment cuts the TCP header: reassembled, NEW.
//   zeek_ipv6-fragmented-dns: DNS TXT answers of 2-3 fragments reassembled (ESTABLISHED/REPLY),
//     one left without its first fragment, held and never delivered.
//   zeek_ipv6-http-atomic-frag: 38 packets with atomic fragment headers: not queued, tracked
//     as the HTTP connection they are.
//   zeek_ipv6-reassembly-state-leak: two HBH chains covering [0, 65528): 8 + 65528 bytes of
//     payload is over IPV6_MAXPLEN, both die at completion; nothing delivered.
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "conntrack/clock.h"
#include "engine/engine.h"
#include "engine/replay.h"
#include "gtest/gtest.h"
#include "tests/conntrack/kernel_lab.h"

namespace nwfq::engine {
namespace {

using ct::lab::KernelLab;
using ct::lab::Lab6;
using ct::lab::Ok;
using ct::lab::Run;

constexpr size_t kMaxFrames = 200;
constexpr uint8_t kFirstHost = 10;  // capture addresses map to hosts 10, 11, ...
constexpr uint8_t kProbeSrc = 250, kProbeDst = 251;

const char* const kCaptures[] = {
    "cs_ipv6_fragments.pcap",
    "ndpi_dns_fragmented.pcap",
    "ndpi_ip_fragmented_garbage.pcap",
    "ppp_frag_with_padding.pcap",
    "ppp_ip4_bad_fragment.pcap",
    "ppp_ip4_fragments.pcap",
    "ppp_ip6_fragments.pcap",
    "sv_frag-eth-vlan-ip-tcp-syn.pcap",
    "sv_ipv6-atomic-frag-toobig.pcap",
    "sv_ipv6-frag-1.pcap",
    "sv_ipv6-frag-15.pcap",
    "sv_ipv6-frag-30.pcap",
    "zeek_ipv4-fragmented-1.pcap",
    "zeek_ipv4-fragmented-4.pcap",
    "zeek_ipv4-fragmented-syn.pcap",
    "zeek_ipv6-fragmented-dns.pcap",
    "zeek_ipv6-http-atomic-frag.pcap",
    "zeek_ipv6-reassembly-state-leak.pcap",
};

// Frames where nwfq deliberately differs from the kernel (conntrack/DIVERGENCES.md, table
// "IP defragmentation"); 1-based frame numbers as in Wireshark.
struct Allowed {
  const char* capture;
  int frame;
  const char* row;
};
// None so far: every frame of the 18 captures matches (see the file comment).
const std::vector<Allowed> kAllowed = {};

// ---- Frame rewriting.
inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Be32(const uint8_t* p) { return uint32_t{Be16(p)} << 16 | Be16(p + 2); }
inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
bool IsExt(uint8_t nh) { return nh == 0 || nh == 43 || nh == 60 || nh == 51; }
size_t ExtLen(uint8_t nh, const uint8_t* p) {
  return nh == 51 ? (p[1] + 2u) * 4u : (p[1] + 1u) * 8u;
}

// Where the parts of an IP packet are in an Ethernet frame (untagged).
struct IpLayout {
  uint8_t family = 0;
  size_t end = 0;         // end of the IP packet in the frame (total length, captured)
  size_t payload = 0;     // start of the fragmentable part (or of the upper layer)
  bool fragment = false;  // not an IPv6 atomic fragment
  uint32_t frag_off = 0;  // bytes
  bool more = false;
  uint32_t id = 0;
  uint8_t proto = 0;  // upper layer when known (offset 0), else the header's
  long l4 = -1;       // upper-layer header, relative to `payload`; -1 unknown
};

// Parses the IP layout; false when the frame is no IP packet the lab can carry.
bool ParseIp(const std::vector<uint8_t>& f, IpLayout* out, std::string* why) {
  if (f.size() < 14) return *why = "runt frame", false;
  const uint16_t et = Be16(&f[12]);
  IpLayout l;
  if (et == 0x0800) {
    if (f.size() < 34 || (f[14] >> 4) != 4) return *why = "short IPv4", false;
    l.family = 4;
    const size_t ihl = (f[14] & 0x0f) * 4u;
    l.end = std::min<size_t>(f.size(), 14u + Be16(&f[16]));
    l.payload = 14 + ihl;
    const uint16_t fo = Be16(&f[20]);
    l.more = fo & 0x2000;
    l.frag_off = (fo & 0x1fff) * 8u;
    l.fragment = l.more || l.frag_off != 0;
    l.id = Be16(&f[18]);
    l.proto = f[23];
    if (l.frag_off == 0) l.l4 = 0;
  } else if (et == 0x86dd) {
    if (f.size() < 54 || (f[14] >> 4) != 6) return *why = "short IPv6", false;
    l.family = 6;
    l.end = std::min<size_t>(f.size(), 54u + Be16(&f[18]));
    uint8_t nh = f[20];
    size_t off = 54;
    bool frag_hdr = false;
    while (IsExt(nh) || (nh == 44 && !frag_hdr)) {
      if (off + 8 > l.end) break;
      if (nh == 44) {
        frag_hdr = true;
        l.frag_off = Be16(&f[off + 2]) & 0xfff8u;
        l.more = f[off + 3] & 1;
        l.id = Be32(&f[off + 4]);
        l.fragment = l.more || l.frag_off != 0;
        l.payload = off + 8;
        nh = f[off];
        off += 8;
        if (l.frag_off != 0) break;
        continue;
      }
      const size_t len = ExtLen(nh, &f[off]);
      nh = f[off];
      off += len;
    }
    l.proto = nh;
    if (!frag_hdr) l.payload = off;
    if (l.frag_off == 0 && !IsExt(nh)) l.l4 = static_cast<long>(off - l.payload);
  } else {
    return *why = "not IP (ethertype " + std::to_string(et) + ")", false;
  }
  *out = l;
  return true;
}

// Where the transport checksum lies relative to the upper-layer header (-1: none, or not
// over a pseudo-header).
int ChecksumField(uint8_t family, uint8_t proto) {
  if (proto == 6) return 16;
  if (proto == 17 || proto == 136) return 6;
  if (proto == 58 && family == 6) return 2;
  return -1;
}

// RFC 1624 eqn. 3: the checksum `hc` after `from` became `to` (16-bit words).
uint16_t Adjust(uint16_t hc, const uint8_t* from, const uint8_t* to, size_t n) {
  uint32_t sum = static_cast<uint16_t>(~hc);
  for (size_t i = 0; i < n; i += 2)
    sum += static_cast<uint16_t>(~Be16(from + i)) + uint32_t{Be16(to + i)};
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

struct Frame {
  std::vector<uint8_t> bytes;
  std::string skip;       // why neither side plays it ("" = played)
  bool untagged = false;  // a VLAN tag or an MPLS label stack was removed
  uint8_t family = 0;
  std::array<uint8_t, 16> src{}, dst{};  // mapped addresses
};

using FragKey =
    std::tuple<uint8_t, std::array<uint8_t, 16>, std::array<uint8_t, 16>, uint32_t, uint8_t>;

// The first kMaxFrames frames of `path`, rebuilt for the lab (see the file comment).
std::vector<Frame> Load(const std::string& path, const std::array<uint8_t, 6>& dst_mac,
                        std::string* why) {
  std::vector<Frame> frames;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* pc = pcap_open_offline(path.c_str(), err);
  if (pc == nullptr) {
    *why = err;
    return frames;
  }
  if (pcap_datalink(pc) != DLT_EN10MB) {
    *why = "not Ethernet";
    pcap_close(pc);
    return frames;
  }
  pcap_pkthdr* h;
  const u_char* data;
  while (frames.size() < kMaxFrames && pcap_next_ex(pc, &h, &data) == 1) {
    frames.emplace_back();
    frames.back().bytes.assign(data, data + h->caplen);
  }
  pcap_close(pc);

  // VLAN tags and MPLS label stacks are removed: the routed lab has no VLAN device, and
  // the kernel's bridge (bridge-nf-filter-vlan-tagged=0) like nwfq (layer 2 only) lets
  // tagged frames bypass defragmentation and conntrack altogether; untagged, the fragments
  // inside are compared.
  for (Frame& fr : frames) {
    std::vector<uint8_t>& b = fr.bytes;
    while (b.size() >= 18 && (Be16(&b[12]) == 0x8100 || Be16(&b[12]) == 0x88a8)) {
      b.erase(b.begin() + 12, b.begin() + 16);
      fr.untagged = true;
    }
    if (b.size() >= 18 && Be16(&b[12]) == 0x8847) {
      size_t at = 14;
      while (at + 4 <= b.size() && !(b[at + 2] & 1)) at += 4;  // to the bottom of the stack
      at += 4;
      if (at < b.size()) {
        const uint8_t version = b[at] >> 4;
        b.erase(b.begin() + 14, b.begin() + static_cast<long>(at));
        Put16(&b[12], version == 6 ? 0x86dd : 0x0800);
        fr.untagged = true;
      }
    }
  }

  // Pass 1: the upper-layer header of each datagram, from its offset-0 fragment.
  std::vector<IpLayout> layout(frames.size());
  std::map<FragKey, std::pair<long, uint8_t>> l4_of;  // key -> (l4, proto)
  auto key = [](const Frame& fr, const IpLayout& l) {
    std::array<uint8_t, 16> s{}, d{};
    const size_t alen = l.family == 4 ? 4 : 16, at = l.family == 4 ? 26 : 22;
    std::memcpy(s.data(), &fr.bytes[at], alen);
    std::memcpy(d.data(), &fr.bytes[at + alen], alen);
    return FragKey{l.family, s, d, l.id, l.family == 4 ? fr.bytes[23] : 0};
  };
  for (size_t i = 0; i < frames.size(); ++i) {
    if (!ParseIp(frames[i].bytes, &layout[i], &frames[i].skip)) continue;
    if (layout[i].fragment && layout[i].l4 >= 0)
      l4_of.try_emplace(key(frames[i], layout[i]), layout[i].l4, layout[i].proto);
  }

  // Pass 2: addresses mapped (one host number per capture address), checksums fixed.
  std::map<std::pair<uint8_t, std::array<uint8_t, 16>>, uint8_t> hosts;
  auto map = [&](uint8_t family, const uint8_t* a) {
    std::array<uint8_t, 16> k{};
    std::memcpy(k.data(), a, family == 4 ? 4 : 16);
    auto [it, fresh] = hosts.try_emplace({family, k}, 0);
    if (fresh) it->second = static_cast<uint8_t>(kFirstHost + hosts.size() - 1);
    std::array<uint8_t, 16> m{};
    if (family == 4) {
      m = ct::testing::V4(198, 18, 7, it->second);
    } else {
      m = Lab6(it->second);
    }
    return m;
  };
  for (size_t i = 0; i < frames.size(); ++i) {
    Frame& fr = frames[i];
    if (!fr.skip.empty()) continue;
    if (hosts.size() > 200) {
      fr.skip = "too many addresses";
      continue;
    }
    const IpLayout& l = layout[i];
    std::vector<uint8_t>& b = fr.bytes;
    fr.family = l.family;
    const size_t alen = l.family == 4 ? 4 : 16, at = l.family == 4 ? 26 : 22;
    fr.src = map(l.family, &b[at]);
    fr.dst = map(l.family, &b[at + alen]);
    // The transport checksum, wherever the fragment holds it.
    long l4 = l.l4;
    uint8_t proto = l.proto;
    if (l.fragment) {
      auto it = l4_of.find(key(fr, l));
      if (it != l4_of.end()) std::tie(l4, proto) = it->second;
      if (l.family == 4) l4 = 0, proto = b[23];
    }
    const int field = ChecksumField(l.family, proto);
    if (l4 >= 0 && field >= 0) {
      const long pos = l4 + field - static_cast<long>(l.frag_off);  // in this fragment
      const size_t at_sum = l.payload + static_cast<size_t>(pos);
      if (pos >= 0 && at_sum + 2 <= l.end) {
        const uint16_t hc = Be16(&b[at_sum]);
        if (!(proto == 17 && l.family == 4 && hc == 0)) {  // IPv4 UDP without checksum
          std::vector<uint8_t> from(b.begin() + at, b.begin() + at + 2 * alen), to(2 * alen);
          std::memcpy(to.data(), fr.src.data(), alen);
          std::memcpy(to.data() + alen, fr.dst.data(), alen);
          uint16_t nc = Adjust(hc, from.data(), to.data(), 2 * alen);
          if (nc == 0 && proto == 17) nc = 0xffff;
          Put16(&b[at_sum], nc);
        }
      }
    }
    std::memcpy(&b[at], fr.src.data(), alen);
    std::memcpy(&b[at + alen], fr.dst.data(), alen);
    if (l.family == 4) {
      b[22] = 64;  // TTL: forwarded, whatever the capture had (multicast often 1)
      const size_t ihl = (b[14] & 0x0f) * 4u;
      if (ihl >= 20 && 14 + ihl <= b.size()) {
        Put16(&b[24], 0);
        Put16(&b[24], ct::lab::Checksum(&b[14], ihl));
      }
    } else {
      b[21] = 64;  // hop limit
    }
    std::memcpy(b.data(), dst_mac.data(), 6);
    const uint8_t src_mac[6] = {0x02, 0, 0, 0, 0x06, 0x02};
    std::memcpy(b.data() + 6, src_mac, 6);
  }
  return frames;
}

// ---- The kernel side: the routed lab, plus DSCP marks, neighbours, a sink socket.
std::string StateOfDscp(uint8_t dscp) {
  switch (dscp) {
    case 1:
      return "NEW/ORIGINAL";
    case 2:
      return "ESTABLISHED/ORIGINAL";
    case 3:
      return "ESTABLISHED/REPLY";
    case 4:
      return "RELATED/ORIGINAL";
    case 5:
      return "RELATED/REPLY";
    case 6:
      return "INVALID";
    case 7:
      return "UNTRACKED";
    case 63:
      return "no-ctstate";
  }
  return "dscp" + std::to_string(dscp);
}

int SocketIn(const char* ns, const char* dev, unsigned* ifindex) {
  int self = open("/proc/self/ns/net", O_RDONLY);
  int target = open((std::string("/run/netns/") + ns).c_str(), O_RDONLY);
  int s = -1;
  if (self >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0) {
    s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    *ifindex = if_nametoindex(dev);
    if (s >= 0 && *ifindex != 0) {
      sockaddr_ll at{};
      at.sll_family = AF_PACKET;
      at.sll_protocol = htons(ETH_P_ALL);
      at.sll_ifindex = static_cast<int>(*ifindex);
      if (bind(s, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
        close(s);
        s = -1;
      }
    }
    setns(self, CLONE_NEWNET);
  }
  if (self >= 0) close(self);
  if (target >= 0) close(target);
  return s;
}

// One datagram the sink received (its first or only packet).
struct Delivered {
  std::string state;
  uint8_t family = 0;
  std::array<uint8_t, 16> src{}, dst{};
};

class DefragLab {
 public:
  ~DefragLab() {
    if (inj_ >= 0) close(inj_);
    if (sink_ >= 0) close(sink_);
  }
  bool Up(std::string* why) {
    if (inj_ >= 0) close(inj_);
    if (sink_ >= 0) close(sink_);
    inj_ = sink_ = -1;
    if (!lab_.Up(why)) return false;
    std::string ipcmds, v4, v6;
    // Frames up to 1818 bytes in the captures; the kernel refragments what it forwards.
    for (const char* cmd :
         {"ip -n nwfq-ct-inj link set ci mtu 9000", "ip -n nwfq-ct-sink link set cz mtu 9000"}) {
      if (!Ok(cmd)) return *why = std::string(cmd) + " failed", false;
    }
    ipcmds += "link set ck mtu 9000\nlink set cs mtu 9000\n";
    for (int h = kFirstHost; h <= kProbeDst; ++h) {
      char mac[32];
      std::snprintf(mac, sizeof mac, "02:00:00:00:07:%02x", h);
      ipcmds += "neigh replace 198.18.7." + std::to_string(h) + " lladdr " + mac + " dev cs\n";
      char six[40];
      std::snprintf(six, sizeof six, "2001:db8:7::%x", h);
      ipcmds += std::string("neigh replace ") + six + " lladdr " + mac + " dev cs\n";
    }
    // The datagram's ctstate and direction, as the mangle table sees it after defrag and
    // conntrack, into its DSCP (63: no rule matched).
    const char* marks[][3] = {{"", "", "63"},
                              {"NEW", "", "1"},
                              {"ESTABLISHED", "ORIGINAL", "2"},
                              {"ESTABLISHED", "REPLY", "3"},
                              {"RELATED", "ORIGINAL", "4"},
                              {"RELATED", "REPLY", "5"},
                              {"INVALID", "", "6"},
                              {"UNTRACKED", "", "7"}};
    for (const auto& m : marks) {
      std::string match;
      if (*m[0]) match += std::string(" -m conntrack --ctstate ") + m[0];
      if (*m[1]) match += std::string(" --ctdir ") + m[1];
      const std::string rule =
          std::string("-A PREROUTING -i ck") + match + " -j DSCP --set-dscp " + m[2] + "\n";
      v4 += rule;
      v6 += rule;
    }
    v4 = "*mangle\n" + v4 + "COMMIT\n";
    v6 = "*mangle\n" + v6 + "COMMIT\n";
    if (!Batch("ip -n nwfq-ct-k -batch", ipcmds, why) ||
        !Batch("ip netns exec nwfq-ct-k iptables-restore --noflush", v4, why) ||
        !Batch("ip netns exec nwfq-ct-k ip6tables-restore --noflush", v6, why)) {
      return false;
    }
    unsigned ifx = 0;
    inj_ = SocketIn("nwfq-ct-inj", "ci", &inj_ifindex_);
    sink_ = SocketIn("nwfq-ct-sink", "cz", &ifx);
    if (inj_ < 0 || sink_ < 0) return *why = "AF_PACKET sockets in the lab failed", false;
    std::istringstream ls(Run("ip -n nwfq-ct-k -br link show ck"));
    std::string name, state, mac;
    ls >> name >> state >> mac;
    if (std::sscanf(mac.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &ck_mac_[0], &ck_mac_[1],
                    &ck_mac_[2], &ck_mac_[3], &ck_mac_[4], &ck_mac_[5]) != 6) {
      return *why = "cannot read ck's MAC: " + mac, false;
    }
    return true;
  }
  void Down() {
    if (inj_ >= 0) close(inj_);
    if (sink_ >= 0) close(sink_);
    inj_ = sink_ = -1;
    lab_.Down();
  }
  const std::array<uint8_t, 6>& ck_mac() const { return ck_mac_; }

  // Sends `frame` and then a probe; returns the datagrams the sink got before the probe
  // (nullopt: the probe did not arrive within a second).
  std::optional<std::vector<Delivered>> Play(const std::vector<uint8_t>& frame) {
    std::vector<Delivered> got;
    if (!Send(frame)) return std::nullopt;
    const uint32_t seq = ++probe_seq_;
    if (!Send(Probe(seq))) return std::nullopt;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    uint8_t buf[10000];
    while (std::chrono::steady_clock::now() < deadline) {
      sockaddr_ll from{};
      socklen_t fl = sizeof from;
      const ssize_t n =
          recvfrom(sink_, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
      if (n < 0) {
        pollfd p{sink_, POLLIN, 0};
        poll(&p, 1, 20);
        continue;
      }
      if (from.sll_pkttype == PACKET_OUTGOING) continue;
      uint32_t probe = 0;
      Delivered d;
      if (Parse(buf, static_cast<size_t>(n), &d, &probe)) {
        got.push_back(d);
      } else if (probe == seq) {
        return got;
      }
    }
    return std::nullopt;
  }

 private:
  static bool Batch(const std::string& cmd, const std::string& input, std::string* why) {
    char path[] = "/tmp/nwfq-defragcap-XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) return *why = "mkstemp failed", false;
    const bool wrote = write(fd, input.data(), input.size()) == static_cast<ssize_t>(input.size());
    close(fd);
    int st = 0;
    const std::string out =
        Run(cmd + " " + (cmd.find("-batch") != std::string::npos ? "" : "< ") + path, &st);
    unlink(path);
    if (!wrote || st != 0) return *why = cmd + " failed: " + out, false;
    return true;
  }

  bool Send(const std::vector<uint8_t>& frame) {
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = static_cast<int>(inj_ifindex_);
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, ck_mac_.data(), 6);
    return sendto(inj_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to),
                  sizeof to) == static_cast<ssize_t>(frame.size());
  }

  // UDP 198.18.7.250:9 -> 198.18.7.251:9 carrying `seq`.
  std::vector<uint8_t> Probe(uint32_t seq) const {
    ct::PacketFacts p;
    p.flow.family = 4;
    p.flow.l4proto = 17;
    p.flow.src = ct::testing::V4(198, 18, 7, kProbeSrc);
    p.flow.dst = ct::testing::V4(198, 18, 7, kProbeDst);
    p.flow.sport = p.flow.dport = 9;
    p.payload_len = 4;
    std::vector<uint8_t> ip =
        ct::lab::Ipv4(p.flow, {0, 9, 0, 9, 0, 12, 0, 0, static_cast<uint8_t>(seq >> 24),
                               static_cast<uint8_t>(seq >> 16), static_cast<uint8_t>(seq >> 8),
                               static_cast<uint8_t>(seq)});
    std::vector<uint8_t> f(14, 0);
    std::memcpy(f.data(), ck_mac_.data(), 6);
    f[6] = 0x02;
    f[10] = 0x06;
    f[11] = 0x02;
    f[12] = 0x08;
    f.insert(f.end(), ip.begin(), ip.end());
    return f;
  }

  // A lab datagram's first (or only) packet: true with `d` filled. A probe: false with
  // `*probe` set. Anything else (later fragments, the sink's own chatter): false.
  static bool Parse(const uint8_t* f, size_t n, Delivered* d, uint32_t* probe) {
    if (n < 14) return false;
    const uint16_t et = Be16(f + 12);
    if (et == 0x0800 && n >= 34) {
      if (f[26] != 198 || f[27] != 18 || f[28] != 7 || f[30] != 198 || f[31] != 18 || f[32] != 7) {
        return false;
      }
      if (f[29] == kProbeSrc) {
        const size_t ihl = (f[14] & 0x0f) * 4u;
        if (n >= 14 + ihl + 12) *probe = Be32(f + 14 + ihl + 8);
        return false;
      }
      if ((Be16(f + 20) & 0x1fff) != 0) return false;
      d->family = 4;
      d->state = StateOfDscp(f[15] >> 2);
      std::memcpy(d->src.data(), f + 26, 4);
      std::memcpy(d->dst.data(), f + 30, 4);
      return true;
    }
    if (et == 0x86dd && n >= 54) {
      const auto lab = Lab6(0);
      if (std::memcmp(f + 22, lab.data(), 8) != 0 || std::memcmp(f + 38, lab.data(), 8) != 0)
        return false;
      uint8_t nh = f[20];
      size_t off = 54;
      while (IsExt(nh) && off + 8 <= n) {
        const size_t len = ExtLen(nh, f + off);
        nh = f[off];
        off += len;
      }
      if (nh == 44 && off + 8 <= n && (Be16(f + off + 2) & 0xfff8) != 0) return false;
      d->family = 6;
      d->state = StateOfDscp(static_cast<uint8_t>(((f[14] & 0x0f) << 4 | f[15] >> 4) >> 2));
      std::memcpy(d->src.data(), f + 22, 16);
      std::memcpy(d->dst.data(), f + 38, 16);
      return true;
    }
    return false;
  }

  KernelLab lab_;
  int inj_ = -1, sink_ = -1;
  unsigned inj_ifindex_ = 0;
  std::array<uint8_t, 6> ck_mac_{};
  uint32_t probe_seq_ = 0;
};

std::string Outcome(const Decision& d) {
  std::string s(VerdictText(d.verdict));
  if (d.frag != FragDrop::kNone) s += ":" + std::string(FragDropName(d.frag));
  if (d.reason == Reason::kMalformed) s += ":" + std::string(MalformedName(d.malformed));
  if (d.verdict == Verdict::kAccept) s += " " + CtStateText(d);
  return s;
}

// Pins the calling thread to the CPU it runs on (one backlog queue: frames and probes stay
// in order); restores the previous mask when destroyed.
class PinToCpu {
 public:
  PinToCpu() {
    sched_getaffinity(0, sizeof old_, &old_);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    sched_setaffinity(0, sizeof one, &one);
  }
  ~PinToCpu() { sched_setaffinity(0, sizeof old_, &old_); }

 private:
  cpu_set_t old_;
};

// ---- Crafted UDP datagrams for the checksum questions the captures raised (the kernel's
// udp_error: a zero checksum is no checksum, in IPv6 too; otherwise nf_checksum() sums
// skb->len - dataoff bytes, the whole IP payload, whatever the UDP length says).
struct Crafted {
  const char* name;
  uint8_t family;
  uint16_t trailing;  // IP payload bytes after the UDP length
  bool zero_sum;      // UDP checksum 0 (else correct over the UDP length, as a sender)
  uint16_t fragment;  // payload bytes per fragment (0: not fragmented)
};

// The Ethernet frames of one crafted datagram (198.18.7.20 -> .21 or 2001:db8:7::14 -> ::15,
// UDP 1000 -> 53, 600 bytes of UDP payload).
std::vector<std::vector<uint8_t>> CraftFrames(const Crafted& c,
                                              const std::array<uint8_t, 6>& dst_mac) {
  const bool v6 = c.family == 6;
  const auto src = v6 ? Lab6(20) : ct::testing::V4(198, 18, 7, 20);
  const auto dst = v6 ? Lab6(21) : ct::testing::V4(198, 18, 7, 21);
  const size_t alen = v6 ? 16 : 4;
  const uint16_t udp_len = 8 + 600;
  std::vector<uint8_t> l4(udp_len + c.trailing);
  for (size_t i = 8; i < l4.size(); ++i) l4[i] = static_cast<uint8_t>(i * 7 + 1);
  Put16(&l4[0], 1000);
  Put16(&l4[2], 53);
  Put16(&l4[4], udp_len);
  if (!c.zero_sum) {
    uint32_t pseudo = 17 + udp_len;
    for (size_t i = 0; i < alen; i += 2) pseudo += Be16(&src[i]) + Be16(&dst[i]);
    uint16_t sum = ct::lab::Checksum(l4.data(), udp_len, pseudo);
    Put16(&l4[6], sum == 0 ? 0xffff : sum);
  }
  std::vector<uint8_t> hdr(v6 ? 40 : 20, 0);
  if (v6) {
    hdr[0] = 0x60;
    hdr[6] = 17;
    hdr[7] = 64;
    std::memcpy(&hdr[8], src.data(), 16);
    std::memcpy(&hdr[24], dst.data(), 16);
  } else {
    hdr[0] = 0x45;
    Put16(&hdr[4], 0x1234);
    hdr[8] = 64;
    hdr[9] = 17;
    std::memcpy(&hdr[12], src.data(), 4);
    std::memcpy(&hdr[16], dst.data(), 4);
  }
  const size_t step = c.fragment == 0 ? l4.size() : c.fragment;
  std::vector<std::vector<uint8_t>> frames;
  for (size_t off = 0; off < l4.size(); off += step) {
    const size_t n = std::min(step, l4.size() - off);
    const bool more = off + n < l4.size();
    std::vector<uint8_t> ip = hdr;
    if (c.fragment != 0 && v6) {
      ip[6] = 44;
      const uint8_t fh[8] = {17,
                             0,
                             static_cast<uint8_t>(off >> 8),
                             static_cast<uint8_t>((off & 0xf8) | (more ? 1 : 0)),
                             0,
                             0,
                             0x12,
                             0x34};
      ip.insert(ip.end(), fh, fh + 8);
    } else if (c.fragment != 0) {
      Put16(&ip[6], static_cast<uint16_t>((more ? 0x2000 : 0) | off / 8));
    }
    ip.insert(ip.end(), l4.begin() + static_cast<long>(off),
              l4.begin() + static_cast<long>(off + n));
    if (v6) {
      Put16(&ip[4], static_cast<uint16_t>(ip.size() - 40));
    } else {
      Put16(&ip[2], static_cast<uint16_t>(ip.size()));
      Put16(&ip[10], ct::lab::Checksum(ip.data(), 20));
    }
    std::vector<uint8_t> f(14, 0);
    std::memcpy(f.data(), dst_mac.data(), 6);
    f[6] = 0x02;
    f[10] = 0x06;
    f[11] = 0x02;
    Put16(&f[12], v6 ? 0x86dd : 0x0800);
    f.insert(f.end(), ip.begin(), ip.end());
    frames.push_back(std::move(f));
  }
  return frames;
}

// nwfq's decision for the datagram (the decision of its last frame; "" when none accepted).
std::string NwfqDatagram(const std::vector<std::vector<uint8_t>>& frames) {
  EngineOptions eo;
  eo.conntrack_capacity = 64;
  Engine engine(eo);
  InstantiatedBinding binding;
  binding.portdev = "vnet0";
  EXPECT_TRUE(engine.SetBinding(binding).ok());
  std::string out;
  for (size_t i = 0; i < frames.size(); ++i) {
    PacketInput in;
    in.bytes = frames[i];
    in.token = i;
    const Decision d = engine.Decide("vnet0", View::kFromVm, in, 1'000'000'000);
    if (!d.held && d.verdict == Verdict::kAccept) out += CtStateText(d);
  }
  return out;
}

// The kernel's answers (from KernelDefragFidelity.CraftedDatagramsMatchTheKernel).
struct CraftedRow {
  Crafted c;
  const char* kernel;
};
const CraftedRow kCraftedRows[] = {
    {{"IPv4 UDP, 4 bytes after the UDP length, fragmented", 4, 4, false, 304}, "INVALID"},
    {{"IPv6 UDP, 4 bytes after the UDP length, fragmented", 6, 4, false, 304}, "INVALID"},
    {{"IPv6 UDP, zero checksum, fragmented", 6, 0, true, 304}, "NEW/ORIGINAL"},
    {{"IPv4 UDP, zero checksum, fragmented", 4, 0, true, 304}, "NEW/ORIGINAL"},
    {{"IPv4 UDP, 4 bytes after the UDP length", 4, 4, false, 0}, "INVALID"},
    {{"IPv6 UDP, 4 bytes after the UDP length", 6, 4, false, 0}, "INVALID"},
    {{"IPv6 UDP, zero checksum", 6, 0, true, 0}, "NEW/ORIGINAL"},
    {{"IPv6 UDP, correct checksum, fragmented", 6, 0, false, 304}, "NEW/ORIGINAL"},
};

// No root needed: nwfq against the kernel's recorded answers. Fragmented rows go through
// DatagramChecksum (engine/defrag.cc), the others through the parser (engine/packet_view.cc).
TEST(DefragChecksum, FragmentedUdpAsTheKernel) {
  for (const CraftedRow& row : kCraftedRows) {
    if (row.c.fragment == 0) continue;
    EXPECT_EQ(NwfqDatagram(CraftFrames(row.c, {2, 0, 0, 0, 0, 1})), row.kernel) << row.c.name;
  }
}
TEST(DefragChecksum, UnfragmentedUdpAsTheKernel) {
  for (const CraftedRow& row : kCraftedRows) {
    if (row.c.fragment != 0) continue;
    EXPECT_EQ(NwfqDatagram(CraftFrames(row.c, {2, 0, 0, 0, 0, 1})), row.kernel) << row.c.name;
  }
}

// The same rows through the kernel lab: the recorded answers above are the kernel's.
TEST(KernelDefragFidelity, CraftedDatagramsMatchTheKernel) {
  std::string why;
  if (!ct::lab::LabPrerequisites(&why)) GTEST_SKIP() << why;
  for (const char* tool : {"iptables-restore", "ip6tables-restore"}) {
    if (!Ok(std::string("which ") + tool)) GTEST_SKIP() << tool << " not installed";
  }
  PinToCpu pin;
  DefragLab kernel;
  for (const CraftedRow& row : kCraftedRows) {
    if (!kernel.Up(&why)) {
      kernel.Down();
      GTEST_SKIP() << "kernel lab unavailable: " << why;
    }
    std::string got;
    for (const auto& f : CraftFrames(row.c, kernel.ck_mac())) {
      std::optional<std::vector<Delivered>> d = kernel.Play(f);
      ASSERT_TRUE(d.has_value()) << row.c.name << ": probe lost";
      for (const Delivered& x : *d) got += x.state;
    }
    EXPECT_EQ(got, row.kernel) << row.c.name;
    kernel.Down();
  }
}

TEST(KernelDefragFidelity, FragmentCapturesMatchTheKernel) {
  const std::filesystem::path dir = std::filesystem::path(NWFQ_SHARED_DIR) / "pcaps" / "fragments";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no shared captures at " << dir;
  std::string why;
  if (!ct::lab::LabPrerequisites(&why)) GTEST_SKIP() << why;
  for (const char* tool : {"iptables-restore", "ip6tables-restore"}) {
    if (!Ok(std::string("which ") + tool)) GTEST_SKIP() << tool << " not installed";
  }
  std::map<std::pair<std::string, int>, std::string> allowed;
  for (const Allowed& a : kAllowed)
    if (*a.capture) allowed[{a.capture, a.frame}] = a.row;
  PinToCpu pin;
  DefragLab kernel;
  const auto start = std::chrono::steady_clock::now();
  int total_frames = 0, total_mismatch = 0;
  for (const char* name : kCaptures) {
    // A fresh lab per capture: no conntrack entry and no reassembly queue carries over.
    if (!kernel.Up(&why)) {
      kernel.Down();
      GTEST_SKIP() << "kernel lab unavailable: " << why;
    }
    std::vector<Frame> frames = Load((dir / name).string(), kernel.ck_mac(), &why);
    ASSERT_FALSE(frames.empty()) << name << ": " << why;
    // The kernel.
    std::vector<std::string> k(frames.size()), skipped;
    for (size_t i = 0; i < frames.size(); ++i) {
      const Frame& fr = frames[i];
      if (!fr.skip.empty()) {
        skipped.push_back(std::to_string(i + 1) + " " + fr.skip);
        continue;
      }
      std::optional<std::vector<Delivered>> got = kernel.Play(fr.bytes);
      ASSERT_TRUE(got.has_value()) << name << " frame " << i + 1 << ": probe lost";
      for (const Delivered& d : *got) {
        // Released by this frame: the same addresses (else the attribution is wrong).
        EXPECT_TRUE(d.family == fr.family && d.src == fr.src && d.dst == fr.dst)
            << name << " frame " << i + 1 << ": the sink got another flow's datagram";
        k[i] += (k[i].empty() ? "" : "+") + d.state;
      }
    }
    // nwfq.
    EngineOptions eo;
    eo.conntrack_capacity = 4096;
    Engine engine(eo);
    InstantiatedBinding binding;
    binding.portdev = "vnet0";
    ASSERT_TRUE(engine.SetBinding(binding).ok());
    ct::MonotonicClock clock;
    std::vector<std::string> mine(frames.size()), final_outcome(frames.size());
    std::vector<Released> released;
    auto settle = [&] {
      engine.TakeReleased(&released);
      for (const Released& r : released) final_outcome[r.token] = Outcome(r.decision);
    };
    for (size_t i = 0; i < frames.size(); ++i) {
      if (!frames[i].skip.empty()) continue;
      PacketInput in;
      in.bytes = frames[i].bytes;
      in.token = i;
      const Decision d = engine.Decide("vnet0", View::kFromVm, in, clock.Now());
      if (!d.held) {
        final_outcome[i] = Outcome(d);
        if (d.verdict == Verdict::kAccept) mine[i] = CtStateText(d);
      }
      settle();
    }
    engine.FlushFragments();
    settle();

    int mismatch = 0, delivered = 0, accepted = 0, played = 0;
    for (size_t i = 0; i < frames.size(); ++i) {
      if (!frames[i].skip.empty()) continue;
      ++played;
      delivered += !k[i].empty();
      accepted += !mine[i].empty();
      const int frame = static_cast<int>(i + 1);
      auto it = allowed.find({name, frame});
      if (it != allowed.end()) {
        EXPECT_NE(k[i], mine[i]) << name << " frame " << frame << ": listed divergence "
                                 << it->second << " no longer diverges (" << k[i] << ")";
        allowed.erase(it);
        continue;
      }
      if (k[i] != mine[i]) {
        ++mismatch;
        ADD_FAILURE() << name << " frame " << frame << ": kernel delivered {" << k[i] << "}, nwfq {"
                      << mine[i] << "} (final " << final_outcome[i] << ")";
      }
    }
    total_frames += played;
    total_mismatch += mismatch;
    std::string notes;
    const long untagged =
        std::count_if(frames.begin(), frames.end(), [](const Frame& f) { return f.untagged; });
    if (untagged > 0) notes += ", " + std::to_string(untagged) + " untagged";
    if (!skipped.empty())
      notes += ", not played: " + skipped.front() + (skipped.size() > 1 ? " ..." : "");
    std::printf(
        "%-38s %3zu frames, %3d played, kernel delivered %3d datagrams, nwfq %3d, %d "
        "mismatches%s\n",
        name, frames.size(), played, delivered, accepted, mismatch, notes.c_str());
    if (getenv("NWFQ_DEFRAG_VERBOSE") != nullptr) {
      for (size_t i = 0; i < frames.size(); ++i)
        std::printf("  %3zu kernel {%s} nwfq {%s} final %s\n", i + 1, k[i].c_str(), mine[i].c_str(),
                    final_outcome[i].c_str());
    }
    kernel.Down();
  }
  for (const auto& [at, row] : allowed)
    ADD_FAILURE() << "listed divergence " << row << " (" << at.first << " frame " << at.second
                  << ") not met";
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("defrag fidelity: %d frames played, %d mismatches, %.1f s\n", total_frames,
              total_mismatch, secs);
}

}  // namespace
}  // namespace nwfq::engine
