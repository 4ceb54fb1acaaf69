// The engine facade used by nwfqd (live, NFQUEUE) and nwfqctl (replay, explain): holds
// one compiled program per binding (tap device) and the connection-tracking state, and
// decides verdicts.
//
// Thread-safety: SetBinding/RemoveBinding may run on a control thread while Decide runs
// on workers; programs are immutable and swapped atomically. Decide is not reentrant for
// the same conntrack table (one worker per table).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "conntrack/types.h"
#include "parser/instantiated.h"

namespace nwfq::engine {

// Which of libvirt's per-VM chain sets a packet meets (section b.4).
enum class View : uint8_t {
  kFromVm,    // FI-<if> at layer 3, libvirt-I-<if> at layer 2: forwarded from the VM
  kToVm,      // FO-<if> / libvirt-O-<if>: delivered to the VM
  kVmToHost,  // HI-<if> / libvirt-I-<if>: from the VM to the host itself
};

enum class Verdict : uint8_t { kAccept, kDrop, kReject };

// Where a packet's bytes start: pcap captures hold Ethernet frames, NFQUEUE hands over the
// network-layer packet (with the source MAC and ethertype as metadata).
enum class Layer : uint8_t { kEthernet, kNetwork };

struct PacketInput {
  std::span<const uint8_t> bytes;
  Layer layer = Layer::kEthernet;
  uint16_t ethertype = 0;                        // kNetwork: 0x0800 / 0x86dd
  std::optional<std::array<uint8_t, 6>> src_mac;  // kNetwork: from NFQA_HWADDR when present
  bool checksum_unverified = false;  // the kernel says the checksum is not ready (offload)
};

// Why a packet got its verdict, beyond the deciding rule.
enum class Reason : uint8_t {
  kRule,          // a rule with a terminal action decided (see Decision::rule)
  kFellOff,       // no terminal rule: the chain's fall-through behaviour decided (b.3, b.4)
  kNoBinding,     // no binding for this interface: not ours to filter
  kMalformed,     // the packet could not be parsed; the malformed-packet policy decided
};

struct Decision {
  Verdict verdict = Verdict::kAccept;
  Reason reason = Reason::kFellOff;
  int32_t rule = -1;  // index into InstantiatedBinding::rules of the deciding rule, or -1
  ct::State ct_state = ct::State::kUntracked;
  ct::Dir ct_dir = ct::Dir::kOriginal;
  bool ct_looked_at = false;  // false for frames conntrack does not see (ARP, ...)
};

struct EngineOptions {
  uint32_t conntrack_capacity = 262'144;
  Verdict malformed_verdict = Verdict::kDrop;
};

class Engine {
 public:
  explicit Engine(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Compiles `binding` and installs it for binding.portdev, replacing any previous program
  // for that device atomically. Connection state survives.
  absl::Status SetBinding(const InstantiatedBinding& binding);
  void RemoveBinding(std::string_view portdev);

  // Decides one packet seen on `portdev` in `view` at time `now`. Updates conntrack (new
  // connections are confirmed only when the verdict is accept) and rule counters.
  Decision Decide(std::string_view portdev, View view, const PacketInput& packet, ct::Nanos now);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace nwfq::engine
