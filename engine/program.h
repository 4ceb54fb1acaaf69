// The compiled form of one binding: flat, immutable instruction lists per libvirt chain
// (layer 3: FI/FO/HI for IPv4 and IPv6; layer 2: the libvirt-I/-O root chains and their
// sub-chains), built by Compile() (compiler.h) and read by the evaluator (evaluator.h).
//
// Layout: `instrs` holds every instruction of every chain; a chain is a [first, first+count)
// range of it. Each instruction's match tests are a [first_test, first_test+n_tests) range
// of `tests` (a constant pool). Jumps are chain indices. No pointers: a Program can be
// copied, and is shared read-only (std::shared_ptr<const Program>) between threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/classifier.h"
#include "parser/instantiated.h"
#include "parser/rule_types.h"

namespace nwfq::engine {

// The three per-VM iptables chains (section b.4).
enum class L3Chain : uint8_t { kFI, kFO, kHI };
inline constexpr int kL3ChainCount = 3;
// The two ebtables root chains (section b.3): I = frames from the VM, O = frames to it.
enum class L2Dir : uint8_t { kI, kO };

enum class CtDirMatch : uint8_t { kAny, kOriginal, kReply };

// One match condition. Every test is "field OP value" with an optional negation; a test
// whose field does not exist in the packet (a port on a non-first fragment, an ARP field
// on an IPv4 frame) fails the whole instruction whatever the negation, as the kernel's
// match modules return false before applying `!`.
enum class Field : uint8_t {
  // ---- ebtables (layer 2)
  kEtherType,    // -p: outer ethertype == lo
  kSrcMac,       // -s: (src & b) == (a & b); b = mask
  kDstMac,       // -d
  kVlanId,       // --vlan-id == lo (frame must be 802.1Q)
  kVlanEncap,    // --vlan-encap == lo
  kStpBpdu,      // the frame is an STP BPDU (LLC 42 42 03); never negated
  kStpType,      // --stp-type
  kStpFlags,     // --stp-flags
  kStpRootPrio,  // range [lo, hi] (config BPDUs only; others pass, as ebt_stp)
  kStpRootAddr,  // mac/mask
  kStpRootCost,
  kStpSenderPrio,
  kStpSenderAddr,
  kStpPort,
  kStpAge,
  kStpMaxAge,
  kStpHelloTime,
  kStpForwardDelay,
  kArpHwType,
  kArpProtoType,
  kArpOpcode,
  kArpSrcMac,
  kArpDstMac,
  kArpSrcIp,  // a/prefix
  kArpDstIp,
  kArpGratuitous,
  kL2IpSrc,  // --ip-source / --ip6-source: a/prefix of `family`
  kL2IpDst,
  kL2IpProto,  // --ip-protocol == lo
  kL2Sport,    // range; needs tcp/udp/udplite/sctp/dccp and no fragment offset
  kL2Dport,
  kL2Tos,    // --ip-tos / --ip6-tclass: whole TOS byte == lo (libvirt passes dscp as tos)
  kL2Icmp6,  // --ip6-icmp-type: type in [lo, hi], code in [lo2, hi2]
  // ---- iptables / ip6tables (layer 3)
  kL4Proto,     // -p: l4proto == lo
  kIpSrc,       // --source a/prefix
  kIpDst,       // --destination
  kIpSrcRange,  // -m iprange --src-range a..b
  kIpDstRange,
  kSport,  // --sport [lo, hi]
  kDport,
  kDscp,       // -m dscp: tos >> 2 == lo
  kIcmpType,   // --icmp-type / --icmpv6-type: type == lo, code in [lo2, hi2]
  kTcpFlags,   // --tcp-flags: (flags & lo) == hi
  kTcpOption,  // --tcp-option lo
  kMacSource,  // -m mac --mac-source
  kCtState,    // --ctstate: state bit (StateBit of rule_types.h) in lo
  kCtDir,      // --ctdir: lo = CtDirMatch
  kConnlimit,  // --connlimit-above lo; hi = limiter index
  kIpset,      // -m set: unsupported (no set contents): an empty set
};

struct Test {
  Field field = Field::kEtherType;
  bool negated = false;
  uint8_t prefix = 0;  // address tests
  uint8_t family = 0;  // address tests: 4 or 6
  uint32_t lo = 0, hi = 0;
  uint32_t lo2 = 0, hi2 = 0;
  std::array<uint8_t, 16> a{};
  std::array<uint8_t, 16> b{};
};

struct Instr {
  uint32_t rule = 0;  // index into InstantiatedBinding::rules
  Action action = Action::kAccept;
  bool swapped = false;  // src/dst read in reverse (for --explain)
  int32_t jump = -1;     // layer 2: sub-chain index to enter (then `rule` is meaningless)
  // Reads a field that can change between packets of one connection in one direction and
  // that the decision cache does not key on (TCP flags, TCP options, connlimit counts): a
  // flow that can reach this instruction is never served from the cache.
  bool per_packet = false;
  uint32_t first_test = 0;
  uint32_t n_tests = 0;
};

struct ChainRange {
  uint32_t first = 0;
  uint32_t count = 0;
};

struct Program {
  std::vector<Instr> instrs;
  std::vector<Test> tests;
  // [chain][family: 0 = IPv4, 1 = IPv6]
  std::array<std::array<ChainRange, 2>, kL3ChainCount> l3{};
  // [L2Dir][chain index of InstantiatedBinding::l2_chains]; root = 0.
  std::array<std::vector<ChainRange>, 2> l2;
  // [chain][family]: the decision tree over the chain's instructions (classifier.h); not
  // built for short chains (the evaluator then scans the chain).
  std::array<std::array<Classifier, 2>, kL3ChainCount> classifiers;
  uint32_t connlimiters = 0;  // number of connlimit rule instances (limiter ids 0..n-1)
  // Copied from the binding for --explain and the CSV: rule origins.
  std::vector<RuleOrigin> origins;
  std::array<uint8_t, 6> mac{};
};

}  // namespace nwfq::engine
