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
#include <vector>

#include "absl/status/status.h"
#include "conntrack/connlimit.h"
#include "conntrack/table.h"
#include "conntrack/timeouts.h"
#include "conntrack/types.h"
#include "engine/defrag.h"
#include "engine/packet_view.h"
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
  uint16_t ethertype = 0;                         // kNetwork: 0x0800 / 0x86dd
  std::optional<std::array<uint8_t, 6>> src_mac;  // kNetwork: from NFQA_HWADDR when present
  bool checksum_unverified = false;  // the kernel says the checksum is not ready (offload)
  // kNetwork: length of the packet on the wire when `bytes` is a truncated copy (NFQUEUE
  // copy range, NFQA_CAP_LEN); 0 = `bytes` is whole.
  // A truncated copy is parsed from its headers (ParseOptions::wire_len), not malformed;
  // rule counters count wire bytes.
  uint32_t wire_len = 0;
  // The caller's name for this packet (NFQUEUE packet id, replay frame index): an IP
  // fragment may be held (Decision::held) and its verdict given later under this token
  // (Engine::TakeReleased).
  uint64_t token = 0;
};

// Why a packet got its verdict, beyond the deciding rule.
enum class Reason : uint8_t {
  kRule,       // a rule with a terminal action decided (see Decision::rule)
  kFellOff,    // no terminal rule: the chain's fall-through behaviour decided (b.3, b.4)
  kNoBinding,  // no binding for this interface: not ours to filter
  kMalformed,  // the packet could not be parsed; the malformed-packet policy decided
  kFragment,   // an IP fragment the defragmenter dropped (Decision::frag says why), or
               // one held until its datagram is complete (Decision::held)
};

struct Decision {
  Verdict verdict = Verdict::kAccept;
  Reason reason = Reason::kFellOff;
  int32_t rule = -1;  // index into InstantiatedBinding::rules of the deciding rule, or -1
  ct::State ct_state = ct::State::kUntracked;
  ct::Dir ct_dir = ct::Dir::kOriginal;
  bool ct_looked_at = false;  // false for frames conntrack does not see (ARP, ...)
  // Added by the engine developer:
  int32_t l2_rule = -1;  // the layer-2 rule that accepted/dropped/returned the frame, or -1
  Malformed malformed = Malformed::kNone;  // why parsing failed (Reason::kMalformed)
  // Added by the defrag developer. IP fragments are reassembled (engine/defrag.h) before
  // conntrack and the layer-3 chains, as the kernel does; the datagram is decided once and
  // every fragment gets that decision:
  //  * held: the datagram is incomplete; this packet's verdict is not known yet (verdict
  //    is kDrop as a placeholder): the caller must not act on it but wait for its token in
  //    Engine::TakeReleased() (or flush it with Engine::FlushFragments());
  //  * reassembled: this decision is the whole datagram's (the packet completed it; the
  //    other fragments' tokens are released with the same decision);
  //  * frag != kNone: the defragmenter dropped the packet (Reason::kFragment).
  bool held = false;
  bool reassembled = false;
  FragDrop frag = FragDrop::kNone;
};

// A held fragment's final decision, under the token it was given with.
struct Released {
  uint64_t token = 0;
  Decision decision;
};

struct EngineOptions {
  // Connections are tracked per binding (a VM never sees another VM's entries, like a
  // conntrack zone per tap): each binding gets its own table of this capacity.
  uint32_t conntrack_capacity = 262'144;
  Verdict malformed_verdict = Verdict::kDrop;
  // Verify transport checksums (as the kernel's conntrack does; bad ones are INVALID).
  // PacketInput::checksum_unverified skips it per packet.
  bool verify_checksums = true;
  // IP fragment reassembly (per binding; timeouts and memory bounds). Replaces the former
  // orphan_fragment_verdict: fragments are no longer decided alone.
  DefragOptions defrag;
  ct::TableOptions table;            // capacity is taken from conntrack_capacity
  ct::ConnLimiterOptions connlimit;  // kernel_compat_sticky reproduces finding i.1
};

// Process-wide counters (monotonic).
struct EngineCounters {
  uint64_t packets = 0;
  uint64_t no_binding = 0;
  // Added by the defrag developer: fragments held until their datagram was complete,
  // datagrams reassembled and decided, fragments dropped by the defragmenter by reason
  // (FragDrop; a killed datagram counts each of its fragments).
  uint64_t fragments_held = 0;
  uint64_t datagrams_reassembled = 0;
  std::array<uint64_t, kFragDropCount> frag_dropped{};
  // Added by the engine-performance developer: layer-3 decisions replayed from the
  // per-connection decision cache (no rule evaluated; counters still updated).
  uint64_t decision_cache_hits = 0;
  std::array<uint64_t, kMalformedCount> malformed{};  // by Malformed reason
};

// Per-rule-instance counters of one binding, as `iptables -L -v` shows them.
struct RuleCounter {
  uint32_t rule = 0;  // index into InstantiatedBinding::rules
  std::string chain;  // "FI", "FO", "HI" (+ "6" for IPv6) or "I:<chain>" / "O:<chain>"
  uint64_t packets = 0;
  uint64_t bytes = 0;
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
  // Fragments the binding still held are dropped (Decision::frag = kBindingRemoved): they
  // come out of the next TakeReleased() call (on the deciding thread, which alone may touch
  // the binding's reassembly queues), so a caller holding their packets settles them there.
  void RemoveBinding(std::string_view portdev);

  // Decides one packet seen on `portdev` in `view` at time `now`. Updates conntrack (new
  // connections are confirmed only when the verdict is accept) and rule counters.
  Decision Decide(std::string_view portdev, View view, const PacketInput& packet, ct::Nanos now);

  // Decides `packets` in order, as Decide() would one by one at time `now` (the same
  // decisions, conntrack updates and counters), into out[i] (out.size() >= packets.size();
  // extra entries untouched). Faster per packet: the lookups of packets a few places
  // ahead are prefetched while earlier ones are decided, and the per-thread binding
  // entry is reused across the batch. Added by the engine hot-path developer for the
  // NFQUEUE worker, which receives packets in batches.
  struct BatchPacket {
    std::string_view portdev;
    View view = View::kFromVm;
    PacketInput packet;
  };
  void DecideBatch(std::span<const BatchPacket> packets, ct::Nanos now, std::span<Decision> out);

  // Incremental expiry for idle moments (nwfqd's worker loop when no packet is waiting):
  // examines up to `budget` conntrack slots in all, spread over the bindings round robin
  // and continuing where the previous call stopped, and removes expired connections (so
  // they leave `conntrack list` and the table size). Returns how many were removed.
  // Same threading rule as Decide(): never concurrently with Decide()/DecideBatch() (call
  // it from the deciding thread or under the lock that serialises them). About 1 ns per
  // slot; 262,144 slots per binding by default.
  // Also drops the IP fragments held longer than their reassembly timeout (into
  // TakeReleased(), Decision::frag = kTimeout).
  size_t Maintain(ct::Nanos now, size_t budget = 4096);

  // Added by the defrag developer. Held fragments whose fate became known since the last
  // call (their datagram was completed by another packet, killed by an overlap, timed
  // out, or flushed): moved into `*out` (cleared first), in the order they were settled.
  // Call it after Decide/DecideBatch/Maintain/FlushFragments, on the deciding thread.
  // Capacities are swapped, not freed: no allocation in the steady state.
  void TakeReleased(std::vector<Released>* out);
  // Drops every held fragment of every binding (Decision::frag = `why`) into
  // TakeReleased(): the end of a capture, a shutdown. Same threading rule as Decide().
  void FlushFragments(FragDrop why = FragDrop::kIncomplete);
  // Held fragments, all bindings (0 when nothing waits).
  size_t held_fragments() const;

  // Decide() that also writes, per rule looked at, whether it matched and why not
  // (the first condition that failed), one line each, into `*explanation`.
  Decision Explain(std::string_view portdev, View view, const PacketInput& packet, ct::Nanos now,
                   std::string* explanation);

  // The root timeout policy (kernel defaults until Set); bindings inherit from it.
  ct::TimeoutPolicy& timeouts();
  // The binding's own policy (a child of timeouts()), or nullptr for an unknown portdev.
  ct::TimeoutPolicy* binding_timeouts(std::string_view portdev);

  EngineCounters counters() const;
  std::vector<RuleCounter> rule_counters(std::string_view portdev) const;

  // Added by the nwfqd control-plane developer (conntrack list / stats / flush):
  // the binding's connection table, or nullptr for an unknown portdev. The pointer stays
  // valid until RemoveBinding(portdev) (SetBinding keeps the table). The table is not
  // thread-safe: use it only where no Decide()/Explain() for this binding can run at the
  // same time (nwfqd calls it with its packet workers paused).
  ct::Table* conntrack_table(std::string_view portdev);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace nwfq::engine
