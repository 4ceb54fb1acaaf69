// PacketView: one packet parsed once into a flat, trivially copyable struct (no heap, no
// pointers into the buffer), as the compiled Program and conntrack need it.
//
// Byte order: addresses (MAC, IPv4, IPv6, ARP addresses) are kept as on the wire (network
// order, IPv4 in bytes [0, 4) of a 16-byte array); every integer field (ports, ethertypes,
// ids, sequence numbers, VLAN ids) is in host order.
//
// Parsing never reads outside `bytes`; a packet that cannot be parsed gets a Malformed
// reason (the engine turns it into the configured malformed-packet verdict and counts it).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>

#include "conntrack/types.h"

namespace nwfq::engine {

// Why a packet could not be parsed. One counter per value (see Engine::Counters).
enum class Malformed : uint8_t {
  kNone,
  kTruncatedEthernet,
  kTruncatedVlan,
  kTruncatedArp,
  kTruncatedIpv4,
  kBadIpv4Header,    // version != 4, IHL < 5, total length < IHL*4
  kBadIpv4Checksum,  // header checksum (the bridge's br_validate_ipv4 drops these)
  kBadIpv4Options,
  kTruncatedIpv6,
  kBadIpv6Header,  // version != 6
  kBadIpv6ExtHeader,
  kTruncatedL4,  // first fragment / unfragmented packet too short for its transport header
  kBadL4Header,  // e.g. TCP data offset < 5
  kBadFragment,  // overlapping / oversized fragments
  kCount,
};
inline constexpr int kMalformedCount = static_cast<int>(Malformed::kCount);
std::string_view MalformedName(Malformed m);

inline constexpr uint16_t kEtherIpv4 = 0x0800;
inline constexpr uint16_t kEtherArp = 0x0806;
inline constexpr uint16_t kEtherRarp = 0x8035;
inline constexpr uint16_t kEtherVlan = 0x8100;
inline constexpr uint16_t kEtherQinQ = 0x88a8;
inline constexpr uint16_t kEtherIpv6 = 0x86dd;

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIgmp = 2;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoEsp = 50;
inline constexpr uint8_t kProtoAh = 51;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoSctp = 132;
inline constexpr uint8_t kProtoUdplite = 136;

struct PacketView {
  Malformed malformed = Malformed::kNone;

  // ---- Layer 2. has_l2 is false for NFQUEUE input without a MAC header.
  bool has_l2 = false;
  bool has_src_mac = false;  // false only for network-layer input without NFQA_HWADDR
  std::array<uint8_t, 6> dst_mac{};
  std::array<uint8_t, 6> src_mac{};
  uint16_t outer_ethertype = 0;  // first ethertype after the MACs (0x8100 for tagged frames)
  uint16_t ethertype = 0;        // after all VLAN tags: what the payload is
  uint8_t vlan_tags = 0;         // number of 802.1Q/802.1ad tags
  uint16_t vlan_id = 0;          // of the outermost tag
  uint16_t vlan_encap = 0;       // ethertype following the outermost tag
  bool llc = false;              // 802.3 length field instead of an ethertype
  uint16_t l2_len = 0;           // bytes before the network header

  // ---- STP (LLC 42 42 03, destination 01:80:c2:00:00:00).
  bool is_stp = false;
  bool stp_config = false;  // a configuration BPDU (the fields below are meaningful)
  uint8_t stp_type = 0;
  uint8_t stp_flags = 0;
  uint16_t stp_root_priority = 0;
  std::array<uint8_t, 6> stp_root_addr{};
  uint32_t stp_root_cost = 0;
  uint16_t stp_sender_priority = 0;
  std::array<uint8_t, 6> stp_sender_addr{};
  uint16_t stp_port = 0;
  uint16_t stp_age = 0, stp_max_age = 0, stp_hello = 0, stp_fwd_delay = 0;

  // ---- ARP / RARP (Ethernet/IPv4 form; other forms keep only the fixed header).
  bool is_arp = false;  // ethertype 0x0806 or 0x8035
  uint16_t arp_hwtype = 0, arp_ptype = 0, arp_opcode = 0;
  bool arp_ipv4_eth = false;  // hlen 6, plen 4: the address fields below are valid
  std::array<uint8_t, 6> arp_sha{}, arp_tha{};
  std::array<uint8_t, 4> arp_spa{}, arp_tpa{};

  // ---- IP.
  uint8_t family = 0;  // 4, 6 or 0 (not IP)
  std::array<uint8_t, 16> src_ip{};
  std::array<uint8_t, 16> dst_ip{};
  uint8_t tos = 0;      // IPv4 TOS / IPv6 traffic class (dscp = tos >> 2)
  uint8_t l4proto = 0;  // after IPv6 extension headers
  uint16_t l3_offset = 0, l4_offset = 0;
  uint32_t ip_len = 0;  // bytes of the IP packet per its header (excludes Ethernet padding)
  // Fragments: `fragment` is true for any piece of a fragmented datagram; the transport
  // header is readable only when frag_offset == 0.
  bool fragment = false;
  bool more_fragments = false;
  uint16_t frag_offset = 0;  // in bytes
  uint32_t frag_id = 0;      // IPv4 id or IPv6 fragment id
  bool reassembled = false;  // built by the defragmenter
  // The bytes given end before ip_len (a header-sized NFQUEUE copy of a whole packet,
  // ParseOptions::wire_len): headers were parsed from the copy, lengths (payload_len) come
  // from the IP header, transport checksums were not verified.
  bool truncated = false;

  // ---- Transport (valid when has_l4).
  bool has_l4 = false;
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;
  uint32_t tcp_seq = 0, tcp_ack = 0;
  uint16_t tcp_window = 0;
  uint8_t tcp_wscale = 0xff;
  bool tcp_sack_perm = false;
  bool tcp_no_options = false;  // data offset 5: the header carries no options at all
  // SACK option (kind 5) seen: tcp_sack_edge is the highest right edge of the first
  // well-formed SACK option's blocks that lies after tcp_ack (else tcp_ack), as the
  // kernel's tcp_sack() computes it.
  bool tcp_sack_present = false;
  uint32_t tcp_sack_edge = 0;
  std::array<uint8_t, 32> tcp_options{};  // bitmap of option kinds present (for --tcp-option)
  uint8_t icmp_type = 0, icmp_code = 0;
  uint16_t icmp_id = 0;
  uint32_t spi = 0;
  uint32_t sctp_vtag = 0;
  ct::SctpChunks sctp;  // the chunks as the kernel's SCTP tracker walks them
  uint32_t payload_len = 0;
  bool bad_checksum = false;
  bool checksum_checked = false;

  // ICMP/ICMPv6 errors: the quoted packet's flow.
  bool icmp_error = false;
  ct::FlowFacts inner{};

  bool IsIpv4() const { return family == 4; }
  bool IsIpv6() const { return family == 6; }
  uint8_t dscp() const { return tos >> 2; }
  bool TcpOption(uint8_t kind) const { return (tcp_options[kind >> 3] >> (kind & 7)) & 1; }
};
static_assert(std::is_trivially_copyable_v<PacketView>);

struct ParseOptions {
  bool verify_checksums = true;  // transport checksums (IPv4 header checksum always)
  // Length of the packet on the wire, from the IP header on, when the bytes given are a
  // truncated copy of it (NFQUEUE copy range: NFQA_CAP_LEN). 0 = the bytes are the whole
  // packet, and an IP length beyond them is malformed (kTruncatedIpv4/6). With
  // wire_len >= the IP length, a short copy parses (PacketView::truncated) as long as the
  // headers are in it.
  uint32_t wire_len = 0;
};

// Parses an Ethernet frame.
PacketView ParseEthernet(std::span<const uint8_t> frame, const ParseOptions& options);
// Parses a network-layer packet (NFQUEUE); `ethertype` says IPv4 or IPv6.
PacketView ParseNetwork(std::span<const uint8_t> packet, uint16_t ethertype,
                        const ParseOptions& options);

// The facts conntrack needs (valid for IP packets that are not malformed).
ct::PacketFacts ToPacketFacts(const PacketView& v);

// Is this IPv6 ICMP message one that conntrack leaves untracked? (neighbour discovery,
// router solicitation/advertisement, MLD: nf_conntrack_proto_icmpv6 has no tuple for them)
bool IsIcmpv6Untracked(uint8_t type);

}  // namespace nwfq::engine
