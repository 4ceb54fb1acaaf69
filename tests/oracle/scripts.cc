#include "tests/oracle/scripts.h"

#include <arpa/inet.h>

#include <functional>

namespace nwfq::oracle {
namespace {

using testing::kPeerMac;
using testing::kVmMac;
using testing::Mac;
using testing::PacketBuilder;

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

constexpr char kVm4[] = "198.18.0.2";
constexpr char kPeer4[] = "198.18.0.3";
constexpr char kPeer4b[] = "198.18.0.4";
constexpr char kHost4[] = "198.18.0.1";
constexpr char kVm6[] = "2001:db8::2";
constexpr char kPeer6[] = "2001:db8::3";
constexpr char kPeer6b[] = "2001:db8::4";

bool IsV6(const std::string& a) { return a.find(':') != std::string::npos; }

std::vector<uint8_t> Addr6(const std::string& a) {
  std::vector<uint8_t> b(16);
  inet_pton(AF_INET6, a.c_str(), b.data());
  return b;
}

// Builds a case's steps; IPv4 frames get a fresh IP id each (unique on the wire).
class Script {
 public:
  explicit Script(CaseScript* out) : out_(out) {}

  // An IP frame of `side` from src to dst; the Ethernet addresses follow from the side
  // unless given.
  PacketBuilder Ip(Side side, const std::string& src, const std::string& dst,
                   const Mac* src_mac = nullptr, const Mac* dst_mac = nullptr) {
    PacketBuilder b;
    const Mac& smac = src_mac != nullptr ? *src_mac : side == Side::kPeer ? kPeerMac : kVmMac;
    const Mac& dmac = dst_mac != nullptr        ? *dst_mac
                      : side == Side::kPeer     ? kVmMac
                      : side == Side::kVmToHost ? kHostMac
                                                : kPeerMac;
    b.Eth(smac, dmac);
    if (IsV6(src)) {
      b.Ipv6(src, dst);
    } else {
      b.Ipv4(src, dst).IpId(next_id_++);
    }
    return b;
  }

  // Returns the step's index.
  size_t Add(Side side, const PacketBuilder& b, const std::string& label) {
    out_->steps.push_back(Step{side, b.Build(), b.BuildNetwork(), label, {}, 0, 0});
    return out_->steps.size() - 1;
  }

  size_t Tcp(Side side, const std::string& src, uint16_t sport, const std::string& dst,
             uint16_t dport, uint8_t flags, uint32_t seq, uint32_t ack, const std::string& label,
             size_t payload = 0) {
    PacketBuilder b = Ip(side, src, dst);
    b.Tcp(sport, dport, flags, seq, ack);
    if (payload > 0) b.Payload(payload, 0x5a);
    return Add(side, b, label);
  }

  // A full handshake client -> server, then one data segment from the client; client_side
  // is the side the client sits on. Labels get `name` as prefix.
  void Handshake(Side client_side, const std::string& client, uint16_t cport,
                 const std::string& server, uint16_t sport, const std::string& name,
                 bool data = true) {
    const Side server_side = client_side == Side::kPeer ? Side::kVm : Side::kPeer;
    Tcp(client_side, client, cport, server, sport, kSyn, 1000, 0, name + " SYN");
    Tcp(server_side, server, sport, client, cport, kSyn | kAck, 5000, 1001, name + " SYN-ACK");
    Tcp(client_side, client, cport, server, sport, kAck, 1001, 5001, name + " ACK");
    if (data) {
      Tcp(client_side, client, cport, server, sport, kPsh | kAck, 1001, 5001, name + " data", 4);
      Tcp(server_side, server, sport, client, cport, kAck, 5001, 1005, name + " data ACK");
    }
  }

  size_t Udp(Side side, const std::string& src, uint16_t sport, const std::string& dst,
             uint16_t dport, const std::string& label) {
    PacketBuilder b = Ip(side, src, dst);
    b.Udp(sport, dport).Payload(4, 0x33);
    return Add(side, b, label);
  }

  // An SCTP packet with verification tag `vtag` carrying `chunks` (testing::SctpChunk...).
  size_t Sctp(Side side, const std::string& src, uint16_t sport, const std::string& dst,
              uint16_t dport, uint32_t vtag, std::vector<uint8_t> chunks,
              const std::string& label) {
    PacketBuilder b = Ip(side, src, dst);
    b.Sctp(sport, dport, vtag).SctpChunks(std::move(chunks));
    return Add(side, b, label);
  }

  // ICMP / ICMPv6 echo: request=true gives type 8 / 128, else 0 / 129.
  size_t Echo(Side side, const std::string& src, const std::string& dst, bool request, uint16_t id,
              uint16_t seq, const std::string& label, const Mac* src_mac = nullptr) {
    PacketBuilder b = Ip(side, src, dst, src_mac);
    if (IsV6(src)) {
      b.Icmpv6(request ? 128 : 129, 0, id, seq);
    } else {
      b.Icmp(request ? 8 : 0, 0, id, seq);
    }
    b.Payload(8, 0x11);
    return Add(side, b, label);
  }

  // An ICMP error (type/code) quoting the IP packet of step `quoted`.
  size_t IcmpError(Side side, const std::string& src, const std::string& dst, uint8_t type,
                   uint8_t code, size_t quoted, const std::string& label) {
    PacketBuilder b = Ip(side, src, dst);
    b.IcmpError(type, code, out_->steps[quoted].network);
    return Add(side, b, label);
  }

  // An ICMP error quoting an arbitrary packet (not a step).
  size_t IcmpErrorQuoting(Side side, const std::string& src, const std::string& dst, uint8_t type,
                          uint8_t code, const std::vector<uint8_t>& quoted,
                          const std::string& label) {
    PacketBuilder b = Ip(side, src, dst);
    b.IcmpError(type, code, quoted);
    return Add(side, b, label);
  }

  // Neighbour solicitation (135) for `target` from `src`, to the solicited-node group.
  size_t Solicit(Side side, const std::string& src, const std::string& target,
                 const std::string& label) {
    const std::vector<uint8_t> t = Addr6(target);
    char group[64];
    std::snprintf(group, sizeof group, "ff02::1:ff%02x:%02x%02x", t[13], t[14], t[15]);
    const Mac dmac = {0x33, 0x33, 0xff, t[13], t[14], t[15]};
    const Mac& smac = side == Side::kPeer ? kPeerMac : kVmMac;
    PacketBuilder b = Ip(side, src, group, &smac, &dmac);
    std::vector<uint8_t> body = t;
    body.insert(body.end(), {1, 1});
    body.insert(body.end(), smac.begin(), smac.end());
    b.Ttl(255).Icmpv6(135, 0, 0, 0).Payload(body);
    return Add(side, b, label);
  }

  // Neighbour advertisement (136, solicited+override) for `src` to `dst`.
  size_t Advertise(Side side, const std::string& src, const std::string& dst,
                   const std::string& label) {
    const Mac& smac = side == Side::kPeer ? kPeerMac : kVmMac;
    PacketBuilder b = Ip(side, src, dst);
    std::vector<uint8_t> body = Addr6(src);
    body.insert(body.end(), {2, 1});
    body.insert(body.end(), smac.begin(), smac.end());
    b.Ttl(255).Icmpv6(136, 0, 0x6000, 0).Payload(body);  // flags S|O in the first bytes
    return Add(side, b, label);
  }

  struct Piece {
    uint16_t offset, len;
    bool more;
    uint8_t ttl = 0;  // nonzero: this copy's TTL (a duplicate differs from its original)
  };
  // The datagram `whole` (an Ip() builder with its transport; IPv6: give it an IpId) sent as
  // the fragments `pieces` of its fragmentable part, in that order, under `name`.
  void Fragments(Side side, const PacketBuilder& whole, const std::string& name,
                 const std::vector<Piece>& pieces) {
    out_->datagrams[name] = whole.BuildNetwork();
    for (const Piece& p : pieces) {
      PacketBuilder b(whole);
      b.Fragment(p.offset, p.len, p.more);
      if (p.ttl != 0) b.Ttl(p.ttl);
      const size_t i =
          Add(side, b,
              name + " [" + std::to_string(p.offset) + "," + std::to_string(p.offset + p.len) +
                  ")" + (p.more ? " MF" : "") + (p.ttl != 0 ? " (again)" : ""));
      out_->steps[i].datagram = name;
      out_->steps[i].frag_offset = p.offset;
      out_->steps[i].frag_len = p.len;
    }
  }
  // A UDP datagram with a 100-byte payload (108 bytes to fragment) filled with a byte of
  // its own (the far end recognises the reassembled content).
  PacketBuilder UdpDatagram(Side side, const std::string& src, uint16_t sport,
                            const std::string& dst, uint16_t dport) {
    PacketBuilder b = Ip(side, src, dst);
    if (IsV6(src)) b.IpId(0x6000 + next_id_++);
    b.Udp(sport, dport).Payload(100, fill_++);
    return b;
  }
  // A TCP SYN with a 12-byte payload (32 bytes to fragment).
  PacketBuilder TcpDatagram(Side side, const std::string& src, uint16_t sport,
                            const std::string& dst, uint16_t dport) {
    PacketBuilder b = Ip(side, src, dst);
    b.Tcp(sport, dport, kSyn, 1000, 0).Payload(12, fill_++);
    return b;
  }

  CaseScript* out_;
  uint16_t next_id_ = 0x100;
  uint8_t fill_ = 0x80;
};

const Side V = Side::kVm;
const Side P = Side::kPeer;
const Side H = Side::kVmToHost;

// d.1 + c.2: out / in / inout accept (default state matches), two remote sources, ICMP
// echo and errors, the HI chain (VM -> host).
void Stateful(CaseScript& c) {
  Script s(&c);
  s.Handshake(P, kPeer4, 40001, kVm4, 22, "in tcp/22 from .3");
  s.Tcp(P, kPeer4b, 40002, kVm4, 22, kSyn, 2000, 0, "in tcp/22 from .4 SYN");
  s.Tcp(V, kVm4, 22, kPeer4b, 40002, kSyn | kAck, 6000, 2001, "in tcp/22 from .4 SYN-ACK");
  s.Tcp(V, kVm4, 40003, kPeer4, 22, kSyn, 3000, 0, "VM-initiated tcp/22 (rule is in)");
  s.Tcp(P, kPeer4, 40004, kVm4, 22, kAck, 7000, 8000, "bare ACK to tcp/22 (loose pickup)");
  s.Tcp(V, kVm4, 22, kPeer4, 40004, kAck, 8000, 7000, "VM answers the picked-up ACK");
  s.Tcp(P, kPeer4, 40005, kVm4, 23, kSyn, 1000, 0, "in tcp/23 (no rule)");
  s.Udp(V, kVm4, 33000, kPeer4, 53, "out udp/53");
  s.Udp(P, kPeer4, 53, kVm4, 33000, "udp/53 reply");
  s.Udp(P, kPeer4b, 53, kVm4, 33001, "unsolicited udp from port 53");
  s.Echo(V, kVm4, kPeer4, true, 7, 1, "out ping");
  s.Echo(P, kPeer4, kVm4, false, 7, 1, "out ping reply");
  s.Echo(P, kPeer4, kVm4, true, 8, 1, "in ping (no rule)");
  s.Echo(P, kPeer4, kVm4, false, 9, 1, "echo reply without request");
  const size_t q = s.Udp(V, kVm4, 33002, kPeer4, 53, "out udp/53 (2)");
  s.IcmpError(P, kPeer4, kVm4, 3, 3, q, "port unreachable for it (RELATED)");
  s.Tcp(P, kPeer4, 40006, kVm4, 8050, kSyn, 1000, 0, "inout tcp/8000-8100 in SYN");
  s.Tcp(V, kVm4, 8050, kPeer4, 40006, kSyn | kAck, 5000, 1001, "inout tcp/8000-8100 SYN-ACK");
  s.Tcp(V, kVm4, 40007, kPeer4, 8050, kSyn, 1000, 0, "VM to tcp/8050 (FI matches sport)");
  s.Tcp(V, kVm4, 8060, kPeer4, 9999, kSyn, 1000, 0, "VM from tcp/8060 (stateless sport)");
  s.Echo(H, kVm4, kHost4, true, 10, 1, "VM pings the host (HI)");
  s.Tcp(H, kVm4, 40008, kHost4, 22, kSyn, 1000, 0, "VM to host tcp/22 (HI drop)");
  s.Tcp(H, kVm4, 8070, kHost4, 9, kSyn, 1000, 0, "VM from tcp/8070 to host (HI sport)");
  s.Udp(H, kVm4, 33003, kHost4, 53, "VM to host udp/53 (HI)");
  // IP fragments: the kernel reassembles them (nf_defrag_ipv4, enabled in this namespace by
  // the ctstate matches) before conntrack and FORWARD, then refragments; nwfq holds them and
  // decides the datagram once.
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33010, kPeer4, 53), "frag udp/53 in order",
              {{0, 56, true}, {56, 52, false}});
  s.Fragments(P, s.UdpDatagram(P, kPeer4, 53, kVm4, 33010), "frag udp/53 reply (ESTABLISHED)",
              {{0, 56, true}, {56, 52, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33011, kPeer4, 53), "frag udp/53 last first",
              {{56, 52, false}, {0, 56, true}});
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33012, kPeer4, 54), "frag udp/54 (drop)",
              {{0, 56, true}, {56, 52, false}});
  s.Fragments(P, s.UdpDatagram(P, kPeer4b, 33013, kVm4, 53), "frag unsolicited udp to VM",
              {{56, 52, false}, {0, 56, true}});
  s.Fragments(V, s.TcpDatagram(V, kVm4, 8050, kPeer4, 9999), "frag tcp from 8050, 8-byte first",
              {{0, 8, true}, {8, 24, false}});
  s.Fragments(V, s.TcpDatagram(V, kVm4, 9050, kPeer4, 9999),
              "frag tcp from 9050 (drop), 8-byte first", {{0, 8, true}, {8, 24, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33014, kPeer4, 53), "frag udp/53 overlap",
              {{0, 56, true}, {48, 60, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33015, kPeer4, 53), "frag udp/53 duplicate",
              {{0, 56, true}, {0, 56, true, 63}, {56, 52, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33016, kPeer4, 53), "frag udp/53 middle missing",
              {{0, 32, true}, {64, 44, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33017, kPeer4, 53), "frag udp/53 three, shuffled",
              {{32, 32, true}, {64, 44, false}, {0, 32, true}});
}

// d.2 statematch='false', c.3 drop / reject / return (stateless, hit replies).
void Stateless(CaseScript& c) {
  Script s(&c);
  s.Tcp(P, kPeer4, 40000, kVm4, 12345, kSyn, 1000, 0, "in tcp/12345 SYN");
  s.Tcp(V, kVm4, 12345, kPeer4, 40000, kSyn | kAck, 5000, 1001, "tcp/12345 SYN-ACK");
  s.Tcp(V, kVm4, 12345, kPeer4, 80, kSyn, 2000, 0, "VM from port 12345 to tcp/80");
  s.Tcp(P, kPeer4, 40001, kVm4, 12500, kSyn, 1000, 0, "in tcp/12500 (drop range)");
  s.Tcp(V, kVm4, 12500, kPeer4, 80, kSyn, 1000, 0, "VM from port 12500 (drop, swapped)");
  s.Tcp(V, kVm4, 40002, kPeer4, 12500, kSyn, 1000, 0, "VM to tcp/12500");
  s.Udp(V, kVm4, 33000, kPeer4, 5000, "out udp/5000 (return)");
  s.Udp(P, kPeer4, 5000, kVm4, 33000, "udp from 5000 (return, swapped)");
  s.Udp(P, kPeer4, 5001, kVm4, 33000, "udp from 5001 (drop udp)");
  s.Udp(V, kVm4, 33000, kPeer4, 5001, "out udp/5001 (drop udp)");
  s.Tcp(V, kVm4, 40003, kPeer4, 25, kSyn, 1000, 0, "out tcp/25 (drop)");
  s.Tcp(P, kPeer4, 25, kVm4, 40003, kSyn | kAck, 5000, 1001, "from tcp/25 (drop hits reply)");
  s.Tcp(P, kPeer4, 26, kVm4, 40004, kSyn, 1000, 0, "from tcp/26");
  s.Tcp(P, kPeer4, 40005, kVm4, 23, kSyn, 1000, 0, "in tcp/23 (reject)");
  s.Tcp(V, kVm4, 23, kPeer4, 40005, kSyn | kAck, 5000, 1001, "VM from tcp/23 (reject)");
  s.Tcp(V, kVm4, 40006, kPeer4, 23, kSyn, 1000, 0, "VM to tcp/23");
  s.Echo(V, kVm4, kPeer4, true, 1, 1, "out ping (accept all)");
  s.Echo(P, kPeer4, kVm4, true, 2, 1, "in ping (accept all)");
  // IP fragments. Nothing in this rule set uses conntrack, so the kernel does not enable
  // defragmentation in the namespace (nf_ct_netns_do_get -> nf_defrag_ipv4_enable runs only
  // for a conntrack user) and filters each fragment alone: a non-first fragment carries no
  // ports, so no port match holds for it (iptables-nft: `tcp sport`/`udp dport` payload
  // loads fail on fragoff != 0) while `-p udp` still does (meta l4proto). nwfq always
  // reassembles, as the kernel does on any host where conntrack runs (DIVERGENCES.md, F3).
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33010, kPeer4, 5000), "frag udp/5000 (return)",
              {{0, 56, true}, {56, 52, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm4, 33011, kPeer4, 5001), "frag udp/5001 (drop udp)",
              {{0, 56, true}, {56, 52, false}});
  // Ports in the first 8 bytes: the first fragment matches --sport 12345 (RETURN), the
  // second falls through to the final RETURN: both pass, unreassembled.
  s.Fragments(V, s.TcpDatagram(V, kVm4, 12345, kPeer4, 80), "frag tcp from 12345, 8-byte first",
              {{0, 8, true}, {8, 24, false}});
  // The first fragment hits --sport 12000:12999 DROP, the second passes alone.
  s.Fragments(V, s.TcpDatagram(V, kVm4, 12500, kPeer4, 80),
              "frag tcp from 12500 (drop), 8-byte first", {{0, 8, true}, {8, 24, false}});
  const std::string why =
      "no conntrack user in this namespace, so no defragmentation: the kernel filters each "
      "fragment alone (a non-first fragment matches no port rule and meets `-p udp -j DROP` "
      "or the final RETURN); nwfq reassembles first, as on a host where conntrack runs (F3)";
  c.datagram_divergences["frag udp/5000 (return)"] = {"part", "whole", why};
  c.datagram_divergences["frag tcp from 12500 (drop), 8-byte first"] = {"part", "none", why};
}

// d.3 explicit state= (NEW, ESTABLISHED, ESTABLISHED,RELATED, NONE, a stateful drop).
void ExplicitState(CaseScript& c) {
  Script s(&c);
  s.Tcp(P, kPeer4, 40000, kVm4, 22, kSyn, 1000, 0, "in tcp/22 NEW");
  s.Tcp(V, kVm4, 22, kPeer4, 40000, kSyn | kAck, 5000, 1001, "SYN-ACK (ESTABLISHED)");
  s.Tcp(P, kPeer4, 40000, kVm4, 22, kAck, 1001, 5001, "ACK (ESTABLISHED)");
  s.Tcp(P, kPeer4, 40001, kVm4, 80, kSyn, 1000, 0, "in tcp/80 (no rule)");
  s.Tcp(V, kVm4, 40002, kPeer4, 80, kSyn, 1000, 0, "out tcp/80 NEW (no rule)");
  s.Udp(V, kVm4, 33000, kPeer4, 53, "out udp/53 NEW");
  s.Udp(P, kPeer4, 53, kVm4, 33000, "udp/53 reply");
  const size_t q = s.Udp(V, kVm4, 33001, kPeer4, 53, "out udp/53 NEW (2)");
  s.IcmpError(P, kPeer4, kVm4, 3, 3, q, "port unreachable to VM (RELATED, in EST only)");
  const size_t q2 = s.Udp(P, kPeer4, 33002, kVm4, 7000, "in udp/7000 (inout state)");
  s.IcmpError(V, kVm4, kPeer4, 3, 3, q2, "port unreachable from VM (RELATED out)");
  s.Echo(P, kPeer4, kVm4, true, 1, 1, "in ping NEW");
  s.Echo(V, kVm4, kPeer4, false, 1, 1, "VM's echo reply (ESTABLISHED)");
  s.Tcp(P, kPeer4, 40003, kVm4, 2222, kSyn, 1000, 0, "in tcp/2222 state NONE");
  s.Tcp(V, kVm4, 2222, kPeer4, 40003, kSyn | kAck, 5000, 1001, "tcp/2222 SYN-ACK");
  s.Tcp(P, kPeer4, 40004, kVm4, 2222, kFin | kAck, 1000, 1000, "tcp/2222 bare FIN (no state)");
  s.Tcp(V, kVm4, 40005, kPeer4, 9, kSyn, 1000, 0, "out tcp/9 NEW (stateful drop)");
  s.Udp(V, kVm4, 7000, kPeer4, 33003, "VM from udp/7000 NEW (inout, swapped)");
  s.Tcp(P, kPeer4, 40006, kVm4, 21, kFin, 1000, 0, "bare FIN to tcp/21 (INVALID)");
}

// d.4 / e.3: libvirt's connlimit example. Run with nwfq's kernel-compatible connlimit.
void Connlimit(CaseScript& c) {
  Script s(&c);
  s.Tcp(P, kPeer4, 40000, kVm4, 22, kSyn, 1000, 0, "ssh 1 from .3 SYN");
  s.Tcp(V, kVm4, 22, kPeer4, 40000, kSyn | kAck, 5000, 1001, "ssh 1 SYN-ACK");
  s.Tcp(P, kPeer4, 40000, kVm4, 22, kAck, 1001, 5001, "ssh 1 ACK (assured)");
  s.Tcp(P, kPeer4, 40001, kVm4, 22, kSyn, 1000, 0, "ssh 2 from .3 SYN (over the limit)");
  s.Tcp(P, kPeer4, 40000, kVm4, 22, kPsh | kAck, 1001, 5001, "ssh 1 data (assured flow)", 4);
  s.Tcp(P, kPeer4b, 40002, kVm4, 22, kSyn, 1000, 0, "ssh 3 from .4 SYN (other source)");
  s.Tcp(V, kVm4, 22, kPeer4b, 40002, kSyn | kAck, 5000, 1001, "ssh 3 SYN-ACK");
  s.Tcp(P, kPeer4b, 40003, kVm4, 22, kSyn, 1000, 0, "ssh 4 from .4 SYN (over the limit)");
  s.Tcp(P, kPeer4b, 40002, kVm4, 22, kAck, 1001, 5001, "ssh 3 ACK (not yet assured)");
  s.Tcp(P, kPeer4b, 40002, kVm4, 22, kPsh | kAck, 1001, 5001, "ssh 3 data", 4);
  s.Echo(V, kVm4, kPeer4, true, 1, 1, "ping 1 request");
  s.Echo(P, kPeer4, kVm4, false, 1, 1, "ping 1 reply");
  s.Echo(V, kVm4, kPeer4b, true, 2, 1, "ping 2 request (over the limit)");
  s.Echo(V, kVm4, kPeer4, true, 1, 2, "ping 1 request 2 (after ping 2 was refused)");
  s.Echo(P, kPeer4, kVm4, false, 1, 2, "ping 1 reply 2");
  s.Udp(V, kVm4, 33000, kPeer4, 53, "out udp/53");
  s.Udp(P, kPeer4, 53, kVm4, 33000, "udp/53 reply");
  s.Tcp(V, kVm4, 40004, kPeer4, 22, kSyn, 1000, 0, "VM-initiated tcp/22");
  c.nwfq_args = {"--connlimit-kernel-compat"};
  // Semantics i.1: nwfq's default keeps the slot of the flow holding it; the kernel also
  // drops that flow's packets once a second flow was refused (ICMP is never ASSURED).
  c.default_mode_differs = {"ping 1 request 2 (after ping 2 was refused)"};
}

// c.2 ICMP with a type (own direction only; inout gives no instance), e.5, ICMP errors.
void IcmpTypes(CaseScript& c) {
  Script s(&c);
  s.Echo(V, kVm4, kPeer4, true, 1, 1, "out echo request (type 8)");
  s.Echo(P, kPeer4, kVm4, false, 1, 1, "echo reply (type 0, ESTABLISHED)");
  s.Echo(P, kPeer4, kVm4, true, 2, 1, "in echo request");
  s.Echo(V, kVm4, kPeer4, false, 2, 1, "VM's echo reply (type 0 out)");
  s.Echo(P, kPeer4, kVm4, false, 3, 1, "echo reply without request (INVALID)");
  {
    PacketBuilder b = s.Ip(P, kPeer4, kVm4);
    b.Icmp(13, 0, 4, 1).Payload(12, 0);
    s.Add(P, b, "in timestamp request (inout typed: no instance)");
    PacketBuilder b2 = s.Ip(V, kVm4, kPeer4);
    b2.Icmp(13, 0, 5, 1).Payload(12, 0);
    s.Add(V, b2, "out timestamp request");
  }
  const size_t q = s.Udp(V, kVm4, 33000, kPeer4, 53, "out udp (no udp rule)");
  s.IcmpError(P, kPeer4, kVm4, 3, 3, q, "port unreachable (RELATED, typed rule)");
  PacketBuilder ghost;
  ghost.Eth(kVmMac, kPeerMac).Ipv4(kVm4, kPeer4).IpId(0x7777).Udp(33999, 54).Payload(4, 1);
  s.IcmpErrorQuoting(P, kPeer4, kVm4, 3, 3, ghost.BuildNetwork(),
                     "port unreachable for an unknown flow");
  s.Echo(V, kVm4, kPeer4b, true, 4, 1, "out echo request to .4");
}

// tcp flags, port ranges, match='no' (a.5, i.3), srcmacaddr-only out icmp (i.6).
void FlagsNomatch(CaseScript& c) {
  Script s(&c);
  s.Tcp(P, kPeer4, 40000, kVm4, 85, kSyn | kFin, 1000, 0, "SYN+FIN to tcp/85 (flags drop)");
  s.Tcp(P, kPeer4, 40001, kVm4, 85, kSyn, 1000, 0, "in tcp/85 SYN (range 80-90)");
  s.Tcp(V, kVm4, 85, kPeer4, 40001, kSyn | kAck, 5000, 1001, "tcp/85 SYN-ACK");
  s.Tcp(P, kPeer4, 40001, kVm4, 85, kAck, 1001, 5001, "tcp/85 ACK");
  s.Tcp(P, kPeer4, 40002, kVm4, 91, kSyn, 1000, 0, "in tcp/91 (outside range)");
  s.Tcp(P, kPeer4, 40003, kVm4, 79, kSyn, 1000, 0, "in tcp/79 (outside range)");
  s.Tcp(V, kVm4, 40004, kPeer4, 25, kSyn, 1000, 0, "out tcp/25 (match=no on dport: not negated)");
  s.Tcp(P, kPeer4, 25, kVm4, 40004, kSyn | kAck, 5000, 1001, "tcp/25 SYN-ACK");
  s.Tcp(V, kVm4, 40005, kPeer4, 26, kSyn, 1000, 0, "out tcp/26");
  s.Udp(V, kVm4, 33000, kPeer4, 53, "out udp to .3 (not .4)");
  s.Udp(P, kPeer4, 53, kVm4, 33000, "udp reply from .3");
  s.Udp(V, kVm4, 33001, kPeer4b, 53, "out udp to .4 (negated dst)");
  s.Echo(V, kVm4, kPeer4, true, 1, 1, "out ping (srcmacaddr only)");
  s.Echo(P, kPeer4, kVm4, false, 1, 1, "its reply (no swapped instance, i.6)");
  const Mac other = {0x52, 0x54, 0x00, 0x00, 0x00, 0x09};
  s.Echo(V, kVm4, kPeer4, true, 2, 1, "out ping from another MAC", &other);
}

// i.7: a chain='ipv4' sub-filter's L3 rules sort after every root rule.
void ChainIpv4(CaseScript& c) {
  Script s(&c);
  s.Tcp(P, kPeer4, 40000, kVm4, 8080, kSyn, 1000, 0, "in tcp/8080 (sub-filter, p100)");
  s.Handshake(P, kPeer4, 40001, kVm4, 22, "in tcp/22", false);
  s.Echo(V, kVm4, kPeer4, true, 1, 1, "out ping (sub-filter, p2000 -> 500)");
}

// clean-traffic-style layer 2 (b.3, e.6): mac / ipv4-ip / arp sub-chains, continue, ip rules.
void L2Clean(CaseScript& c) {
  Script s(&c);
  const Mac other = {0x52, 0x54, 0x00, 0x00, 0x00, 0x09};
  s.Echo(V, kVm4, kPeer4, true, 1, 1, "out ping");
  s.Echo(V, kVm4, kPeer4, true, 1, 2, "out ping from another MAC (mac chain)", &other);
  s.Echo(V, "198.18.0.9", kPeer4, true, 1, 3, "out ping from another IP (ipv4-ip chain)");
  s.Udp(V, kVm4, 33000, kPeer4, 9, "out udp/9 (ip rule drop)");
  s.Udp(V, kVm4, 33000, kPeer4, 10, "out udp/10");
  {
    PacketBuilder b;
    b.Eth(kVmMac, testing::kBroadcastMac).Arp(1, kVmMac, kVm4, Mac{}, kPeer4);
    s.Add(V, b, "ARP request from the VM");
    PacketBuilder b2;
    b2.Eth(kVmMac, testing::kBroadcastMac).Arp(1, kVmMac, "198.18.0.9", Mac{}, kPeer4);
    s.Add(V, b2, "ARP request with a spoofed sender IP");
    PacketBuilder b3;
    b3.Eth(kPeerMac, kVmMac).Arp(2, kPeerMac, kPeer4, kVmMac, kVm4);
    s.Add(P, b3, "ARP reply to the VM");
  }
  s.Echo(P, kPeer4, kVm4, false, 1, 1, "echo reply from .3");
  s.Echo(P, kPeer4b, kVm4, true, 5, 1, "ping from .4 (ip srcipaddr drop)");
  s.Echo(P, kPeer6, kVm6, true, 6, 1, "IPv6 ping to the VM (L2 drop all)");
  s.Echo(V, kVm6, kPeer6, true, 7, 1, "IPv6 ping from the VM (L2 drop all)");
  {
    PacketBuilder b;
    b.Eth(kVmMac, kPeerMac).EtherType(0x88b5).Raw(std::vector<uint8_t>(46, 0x42));
    s.Add(V, b, "local-experimental ethertype from the VM");
  }
}

// IPv6: ND (untracked), icmpv6 stateful/typed/no-state, tcp-ipv6, udp-ipv6, all-ipv6 drop.
void Ipv6(CaseScript& c) {
  Script s(&c);
  s.Solicit(V, kVm6, kPeer6, "VM's neighbour solicitation (UNTRACKED)");
  s.Advertise(P, kPeer6, kVm6, "peer's neighbour advertisement (type 136, no state)");
  s.Solicit(P, kPeer6, kVm6, "peer's neighbour solicitation (type 135, state NONE)");
  s.Advertise(V, kVm6, kPeer6, "VM's neighbour advertisement");
  s.Echo(V, kVm6, kPeer6, true, 1, 1, "out ping6");
  s.Echo(P, kPeer6, kVm6, false, 1, 1, "ping6 reply");
  s.Echo(P, kPeer6, kVm6, true, 2, 1, "in ping6");
  s.Handshake(P, kPeer6, 40000, kVm6, 22, "in tcp6/22", false);
  s.Tcp(V, kVm6, 40001, kPeer6, 22, kSyn, 1000, 0, "VM-initiated tcp6/22");
  s.Udp(V, kVm6, 33000, kPeer6, 53, "out udp6/53");
  s.Udp(P, kPeer6, 53, kVm6, 33000, "udp6/53 reply");
  s.Udp(P, kPeer6b, 53, kVm6, 33001, "unsolicited udp6 from port 53");
  s.Tcp(P, kPeer4, 40002, kVm4, 80, kSyn, 1000, 0, "IPv4 tcp/80 (no IPv4 rules)");
  s.Echo(V, kVm6, kPeer6b, true, 3, 1, "out ping6 to ::4");
  s.Tcp(P, kPeer6, 40003, kVm6, 22, kRst, 1000, 0, "bare RST to tcp6/22");
  // IPv6 fragments (nf_defrag_ipv6 -> nf_ct_frag6_gather before conntrack, enabled by the
  // ctstate matches; br_netfilter refragments on output with a fragment id of its own).
  s.Fragments(V, s.UdpDatagram(V, kVm6, 33010, kPeer6, 53), "frag6 udp/53 in order",
              {{0, 56, true}, {56, 52, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm6, 33011, kPeer6, 53), "frag6 udp/53 last first",
              {{56, 52, false}, {0, 56, true}});
  s.Fragments(V, s.UdpDatagram(V, kVm6, 33012, kPeer6, 54), "frag6 udp/54 (drop)",
              {{0, 56, true}, {56, 52, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm6, 33013, kPeer6, 53), "frag6 udp/53 overlap",
              {{0, 56, true}, {48, 60, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm6, 33014, kPeer6, 53), "frag6 udp/53 duplicate",
              {{0, 56, true}, {0, 56, true, 63}, {56, 52, false}});
  s.Fragments(V, s.UdpDatagram(V, kVm6, 33015, kPeer6, 53), "frag6 udp/53 middle missing",
              {{0, 32, true}, {64, 44, false}});
}

// d.3 state=NONE on typed ICMP rules (no state match; own direction only).
void StateNoneIcmp(CaseScript& c) {
  Script s(&c);
  s.Solicit(V, kVm6, kPeer6, "VM's neighbour solicitation (out 135 state NONE)");
  s.Advertise(P, kPeer6, kVm6, "peer's advertisement (inout 136: no instance)");
  s.Advertise(V, kVm6, kPeer6, "VM's advertisement (inout 136: no instance)");
  s.Solicit(P, kPeer6, kVm6, "peer's solicitation (out rule: no FO instance)");
  s.Echo(P, kPeer4, kVm4, true, 1, 1, "in ping (in icmp 8 state NONE)");
  s.Echo(V, kVm4, kPeer4, false, 1, 1, "VM's echo reply (no IPv4 FI rules)");
  s.Echo(P, kPeer4, kVm4, false, 2, 1, "echo reply to the VM (FO has no drop)");
}

// SCTP associations through libvirt's default state matches: the tags each side must
// carry (RFC 9260 8.5), bundling rules and out-of-the-blue chunks make packets INVALID,
// which neither the NEW,ESTABLISHED rule nor the ESTABLISHED reply rule accepts.
void Sctp(CaseScript& c) {
  using testing::SctpChunk;
  using testing::SctpInitChunk;
  Script s(&c);
  constexpr uint8_t kInit = 1, kInitAck = 2, kHeartbeat = 4, kAbort = 6, kShutdown = 7,
                    kShutdownAck = 8, kCookieEcho = 10, kCookieAck = 11, kShutdownComplete = 14,
                    kData = 0;
  const uint32_t vm_tag = 0x11111111, peer_tag = 0x22222222;
  const std::vector<uint8_t> cookie = SctpChunk(kCookieEcho, 0, {1, 2, 3, 4, 5, 6, 7, 8});
  auto data = [](uint8_t fill) { return SctpChunk(kData, 3, std::vector<uint8_t>(16, fill)); };
  auto both = [](std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  // The VM opens an association to the peer's port 38412 (the `out` rule).
  s.Sctp(V, kVm4, 5000, kPeer4, 38412, 0, SctpInitChunk(kInit, vm_tag), "out INIT");
  s.Sctp(P, kPeer4, 38412, kVm4, 5000, peer_tag, SctpInitChunk(kInitAck, peer_tag),
         "INIT_ACK with its own tag (INVALID)");
  s.Sctp(P, kPeer4, 38412, kVm4, 5000, vm_tag, SctpInitChunk(kInitAck, peer_tag), "INIT_ACK");
  s.Sctp(V, kVm4, 5000, kPeer4, 38412, vm_tag, cookie, "COOKIE_ECHO with the VM's tag (INVALID)");
  s.Sctp(V, kVm4, 5000, kPeer4, 38412, peer_tag, cookie, "COOKIE_ECHO");
  s.Sctp(P, kPeer4, 38412, kVm4, 5000, vm_tag, SctpChunk(kCookieAck), "COOKIE_ACK");
  s.Sctp(V, kVm4, 5000, kPeer4, 38412, peer_tag, data(1), "out DATA");
  s.Sctp(P, kPeer4, 38412, kVm4, 5000, vm_tag, data(2), "DATA reply");
  s.Sctp(P, kPeer4, 38412, kVm4, 5000, peer_tag, data(3), "DATA reply, wrong tag (INVALID)");
  s.Sctp(V, kVm4, 5000, kPeer4, 38412, peer_tag, both(data(4), cookie),
         "DATA + COOKIE_ECHO bundled (INVALID)");
  s.Sctp(P, kPeer4, 38412, kVm4, 5000, vm_tag, SctpChunk(kHeartbeat, 0, {0, 1, 0, 8, 1, 2, 3, 4}),
         "HEARTBEAT from the peer");
  s.Sctp(V, kVm4, 5000, kPeer4, 38412, peer_tag, SctpChunk(kShutdown, 0, {0, 0, 0, 1}), "SHUTDOWN");
  s.Sctp(P, kPeer4, 38412, kVm4, 5000, vm_tag, SctpChunk(kShutdownAck), "SHUTDOWN_ACK");
  s.Sctp(V, kVm4, 5000, kPeer4, 38412, peer_tag, SctpChunk(kShutdownComplete), "SHUTDOWN_COMPLETE");
  // The peer opens one to the VM's port 9899 (the `in` rule).
  s.Sctp(P, kPeer4, 6000, kVm4, 9899, 0, SctpInitChunk(kInit, 0x33333333), "in INIT");
  s.Sctp(V, kVm4, 9899, kPeer4, 6000, 0x33333333, SctpInitChunk(kInitAck, 0x44444444),
         "in INIT_ACK");
  s.Sctp(P, kPeer4, 6000, kVm4, 9899, 0x33333333, SctpChunk(kAbort),
         "ABORT with the sender's own tag (INVALID)");
  s.Sctp(P, kPeer4, 6000, kVm4, 9899, 0x44444444, SctpChunk(kAbort), "ABORT");
  s.Sctp(P, kPeer4, 6001, kVm4, 9899, 0, SctpChunk(kAbort), "out-of-the-blue ABORT (INVALID)");
  s.Sctp(P, kPeer4, 6002, kVm4, 9899, 0, data(5), "DATA without an association (INVALID)");
  s.Sctp(P, kPeer4, 6003, kVm4, 9899, 7, SctpInitChunk(kInit, 0x55555555),
         "INIT with a non-zero tag (INVALID)");
  s.Sctp(P, kPeer4, 6004, kVm4, 38412, 0, SctpInitChunk(kInit, 0x66666666),
         "in INIT to 38412 (no rule)");
}

const std::map<std::string, std::function<void(CaseScript&)>>& Registry() {
  static const auto* r = new std::map<std::string, std::function<void(CaseScript&)>>{
      {"stateful", Stateful},
      {"stateless", Stateless},
      {"explicit-state", ExplicitState},
      {"connlimit", Connlimit},
      {"icmp-types", IcmpTypes},
      {"flags-nomatch", FlagsNomatch},
      {"chain-ipv4", ChainIpv4},
      {"l2-clean", L2Clean},
      {"ipv6", Ipv6},
      {"state-none-icmp", StateNoneIcmp},
      {"sctp", Sctp},
  };
  return *r;
}

}  // namespace

CaseScript ScriptFor(const std::string& name) {
  CaseScript c;
  auto it = Registry().find(name);
  if (it != Registry().end()) it->second(c);
  return c;
}

std::vector<std::string> ScriptedCases() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : Registry()) names.push_back(name);
  return names;
}

}  // namespace nwfq::oracle
