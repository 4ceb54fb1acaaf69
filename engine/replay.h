// Offline replay of an Ethernet capture (pcap or pcapng, via libpcap) through the Engine,
// with the capture's timestamps as the clock: one CSV row per frame
// (`index,time,direction,verdict,rule,ctstate`), optionally with an explanation per frame.
//
// Link types: Ethernet; Linux cooked SLL/SLL2 (rebuilt as Ethernet: source MAC from the
// header, destination MAC from the packet type, zero when it cannot be known); raw IP.
//
// Direction per frame: pcapng's per-packet direction flag when recorded (epb_flags bits
// 0-1; dumpcap on the tap: inbound = sent by the VM, outbound = sent to the VM), else a
// cooked header's packet type (outgoing on the tap = sent to the VM), else the binding MAC
// (source MAC == binding MAC: from the VM). A from-VM frame whose destination IP is one of
// `host_addrs` goes to the host (HI).
//
// IP fragments are reassembled as the kernel does (engine/defrag.h): rows stay one per
// frame in index order; every fragment of a datagram carries the datagram's verdict, rule
// and ctstate (written once the datagram is decided), and fragments of datagrams still
// incomplete at the end of the capture are dropped ("fragment: incomplete datagram" in
// the explanation; "timeout" when its 30 s / 60 s ran out in capture time).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace nwfq::engine {

struct ReplayOptions {
  std::vector<std::array<uint8_t, 16>> host_addrs;  // network order; IPv4 in bytes [0, 4)
  std::vector<uint8_t> host_families;               // 4 or 6, parallel to host_addrs
  bool explain = false;
  std::ostream* explain_out = nullptr;  // where explanations go (required with explain)
  // Called every `progress_every` frames (and at the end) with the frame count.
  std::function<void(uint64_t)> progress;
  uint64_t progress_every = 100'000;
};

struct ReplaySummary {
  uint64_t frames = 0;
  uint64_t accepted = 0, dropped = 0, rejected = 0;
  uint64_t from_vm = 0, to_vm = 0, to_host = 0;
  uint64_t direction_from_pcapng = 0;   // frames whose direction came from epb_flags
  uint64_t direction_from_capture = 0;  // ... from a Linux cooked header's packet type
  uint64_t malformed = 0;
};

// "NEW/ORIGINAL", "ESTABLISHED/REPLY", "INVALID", "UNTRACKED" or "-".
std::string CtStateText(const Decision& d);
std::string_view VerdictText(Verdict v);
std::string_view ViewText(View v);

// Replays `pcap_path` for `binding` (already installed in `engine` under binding.portdev).
absl::StatusOr<ReplaySummary> Replay(Engine& engine, const InstantiatedBinding& binding,
                                     const std::string& pcap_path, std::ostream& csv,
                                     const ReplayOptions& options);

// Per-packet directions recorded in a pcapng file (0 = none, 1 = inbound, 2 = outbound), in
// packet order; empty for classic pcap files.
absl::StatusOr<std::vector<uint8_t>> ReadPcapngDirections(const std::string& path);

}  // namespace nwfq::engine
