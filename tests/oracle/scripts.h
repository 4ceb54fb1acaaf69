// Scripted frame sequences for the oracle differential test, one per case directory in
// tests/oracle/filters/. Frames are built with PacketBuilder (correct checksums); every
// frame of a case is unique (IPv4: a fresh IP id each; IPv6: distinct ports/ids/seqs), so
// the far end recognises it byte for byte. IP fragments are recognised by their datagram's
// content instead (the kernel reassembles and refragments them).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tests/testing/packet_builder.h"

namespace nwfq::oracle {

enum class Side {
  kVm,        // sent by the VM, seen at the peer if delivered
  kPeer,      // sent by the peer to the VM, seen at the VM if delivered
  kVmToHost,  // sent by the VM to the host (HI chain); delivered = the host answered
};

struct Step {
  Side side;
  std::vector<uint8_t> frame;
  std::vector<uint8_t> network;  // the IP packet alone (for ICMP errors quoting it)
  std::string label;
  // An IP fragment: the name of its datagram (CaseScript::datagrams) and the bytes of the
  // datagram's fragmentable part it carries, [frag_offset, frag_offset + frag_len).
  // Fragments are compared per datagram (README: "Fragments").
  std::string datagram;
  uint16_t frag_offset = 0, frag_len = 0;
};

// A frame on which nwfq and the kernel disagree for an understood reason: both results are
// pinned (the test fails if either side changes), and the reason is printed.
struct KnownDivergence {
  bool kernel_delivers;
  bool nwfq_accepts;
  std::string reason;
};

struct CaseScript {
  std::vector<Step> steps;
  // The datagrams whose fragments are steps, by name: the whole IP packet, unfragmented.
  std::map<std::string, std::vector<uint8_t>> datagrams;
  // Datagrams (by name) where nwfq is expected to differ from the kernel: what reaches the
  // far end on each side, "whole", "part" or "none" (README: "Fragments").
  struct DatagramDivergence {
    std::string kernel, nwfq, reason;
  };
  std::map<std::string, DatagramDivergence> datagram_divergences;
  // Extra `nwfqctl replay` arguments (e.g. a kernel-compatibility switch).
  std::vector<std::string> nwfq_args;
  // Frames (by label) where nwfq is expected to differ from the kernel.
  std::map<std::string, KnownDivergence> divergences;
  // With nwfq_args set, nwfq also runs without them; these are the frames (by label) where
  // that default run is expected to differ from the kernel (e.g. semantics i.1).
  std::vector<std::string> default_mode_differs;
};

inline constexpr testing::Mac kHostMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

// The script of case `name` (empty steps if the case is unknown).
CaseScript ScriptFor(const std::string& name);

// The case names with a script.
std::vector<std::string> ScriptedCases();

}  // namespace nwfq::oracle
