// PacketBuilder: test frames with correct lengths and checksums.
//
//   auto frame = PacketBuilder().Eth(kPeerMac, kVmMac).Ipv4("198.18.0.3", "198.18.0.2")
//                    .Tcp(40000, 22, kTcpSyn).Build();
//
// Layers are chosen by the calls: Eth (+ optional Vlan) then one of Ipv4/Ipv6/Arp, then
// one transport (Tcp, Udp, Udplite, Sctp, Icmp, Icmpv6, Esp, Ah, Igmp) or Raw. Build() gives
// the Ethernet frame, BuildNetwork() the IP packet alone (NFQUEUE form). Checksums are
// correct unless CorruptChecksum() is called.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace nwfq::testing {

using Mac = std::array<uint8_t, 6>;

inline constexpr Mac kVmMac = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
inline constexpr Mac kPeerMac = {0x52, 0x54, 0x00, 0x00, 0x00, 0x03};
inline constexpr Mac kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

class PacketBuilder {
 public:
  PacketBuilder& Eth(const Mac& src, const Mac& dst);
  PacketBuilder& Vlan(uint16_t id, uint16_t tpid = 0x8100);
  PacketBuilder& EtherType(uint16_t type);  // raw ethertype with Raw() payload
  PacketBuilder& Ipv4(const std::string& src, const std::string& dst);
  PacketBuilder& Ipv6(const std::string& src, const std::string& dst);
  PacketBuilder& Tos(uint8_t tos);
  PacketBuilder& Ttl(uint8_t ttl);
  PacketBuilder& IpId(uint16_t id);
  PacketBuilder& Ipv4Options(std::vector<uint8_t> options);  // padded to 4 bytes
  // IPv6 extension headers before the transport (hop-by-hop 0, dest opts 60, routing 43).
  PacketBuilder& Ipv6Ext(uint8_t type);
  // Cuts the built IP datagram: this frame carries bytes [offset, offset+len) of the
  // transport part, with MF set if more_fragments (IPv4 header fields / IPv6 fragment header).
  PacketBuilder& Fragment(uint16_t offset, uint16_t len, bool more_fragments);

  PacketBuilder& Tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq = 1000,
                     uint32_t ack = 0, uint16_t window = 64240);
  PacketBuilder& TcpOptions(std::vector<uint8_t> options);  // padded to 4 bytes
  PacketBuilder& Udp(uint16_t sport, uint16_t dport);
  PacketBuilder& Udplite(uint16_t sport, uint16_t dport);
  // One chunk of type `chunk` (INIT and INIT_ACK with their 16-byte header, else empty).
  PacketBuilder& Sctp(uint16_t sport, uint16_t dport, uint32_t vtag = 0, uint8_t chunk = 1);
  // The chunks after Sctp()'s common header, instead of its one empty chunk (SctpChunk()).
  PacketBuilder& SctpChunks(std::vector<uint8_t> chunks);
  PacketBuilder& Icmp(uint8_t type, uint8_t code, uint16_t id = 0, uint16_t seq = 0);
  PacketBuilder& Icmpv6(uint8_t type, uint8_t code, uint16_t id = 0, uint16_t seq = 0);
  // ICMP/ICMPv6 error quoting `quoted` (an IP packet, e.g. from BuildNetwork()).
  PacketBuilder& IcmpError(uint8_t type, uint8_t code, const std::vector<uint8_t>& quoted);
  PacketBuilder& Esp(uint32_t spi);
  PacketBuilder& Ah(uint32_t spi);
  PacketBuilder& Igmp(uint8_t type);
  PacketBuilder& Payload(std::vector<uint8_t> bytes);
  PacketBuilder& Payload(size_t n, uint8_t fill = 0xab);

  PacketBuilder& Arp(uint16_t opcode, const Mac& sha, const std::string& spa, const Mac& tha,
                     const std::string& tpa, uint16_t ethertype = 0x0806);
  PacketBuilder& Raw(std::vector<uint8_t> bytes);  // payload after the Ethernet header

  PacketBuilder& CorruptChecksum();   // transport checksum off by one
  PacketBuilder& Truncate(size_t n);  // keep only the first n bytes of the result

  std::vector<uint8_t> Build() const;
  std::vector<uint8_t> BuildNetwork() const;

 private:
  enum class L3 { kNone, kIpv4, kIpv6, kArp, kRaw };
  std::vector<uint8_t> BuildL3() const;
  std::vector<uint8_t> BuildTransport(const std::vector<uint8_t>& pseudo_src,
                                      const std::vector<uint8_t>& pseudo_dst) const;

  Mac src_mac_ = kPeerMac, dst_mac_ = kVmMac;
  std::vector<std::pair<uint16_t, uint16_t>> vlans_;  // (tpid, id)
  uint16_t ethertype_ = 0;
  L3 l3_ = L3::kNone;
  std::vector<uint8_t> src_ip_, dst_ip_;
  uint8_t tos_ = 0, ttl_ = 64;
  uint16_t ip_id_ = 1;
  std::vector<uint8_t> ipv4_options_;
  std::vector<uint8_t> ipv6_ext_;
  bool fragment_ = false;
  uint16_t frag_offset_ = 0, frag_len_ = 0;
  bool frag_mf_ = false;

  uint8_t proto_ = 255;
  uint16_t sport_ = 0, dport_ = 0;
  uint8_t tcp_flags_ = 0;
  uint32_t seq_ = 0, ack_ = 0;
  uint16_t window_ = 0;
  std::vector<uint8_t> tcp_options_;
  uint8_t icmp_type_ = 0, icmp_code_ = 0;
  uint16_t icmp_id_ = 0, icmp_seq_ = 0;
  uint32_t spi_ = 0, vtag_ = 0;
  uint8_t chunk_ = 1;
  std::vector<uint8_t> sctp_chunks_;  // empty: one empty chunk of type chunk_
  std::vector<uint8_t> payload_;
  std::vector<uint8_t> raw_;
  bool corrupt_ = false;
  size_t truncate_ = SIZE_MAX;
};

// "52:54:00:00:00:02" -> bytes (aborts on bad input: test helper).
Mac ParseMac(const std::string& s);

// SCTP chunks for PacketBuilder::SctpChunks: type, flags, length 4 + body, padded to 4
// bytes; an INIT / INIT_ACK with initiate tag `tag` (and plausible other fields).
std::vector<uint8_t> SctpChunk(uint8_t type, uint8_t flags = 0, std::vector<uint8_t> body = {});
std::vector<uint8_t> SctpInitChunk(uint8_t type, uint32_t tag);
// An SCTP packet's checksum (CRC32c, RFC 9260 appendix B) over `bytes`, whose checksum
// field must be zero; stored little-endian at offset 8.
uint32_t Crc32c(const std::vector<uint8_t>& bytes);

}  // namespace nwfq::testing
