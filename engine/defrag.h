// Defragmenter: IP fragment reassembly per binding, the way the kernel's defragmentation
// (nf_defrag_ipv4 -> ip_defrag, nf_defrag_ipv6 -> nf_ct_frag6_gather) runs before conntrack
// and the filter, so that a datagram is tracked and filtered once, whole, and every
// fragment of it shares that one verdict (the kernel forwards the refragmented datagram:
// all or nothing).
//
// Kernel rules reproduced (net/ipv4/ip_fragment.c ip_frag_queue / ip_frag_reasm,
// net/ipv4/inet_fragment.c inet_frag_queue_insert, net/ipv6/netfilter/nf_conntrack_reasm.c):
//  * key: IPv4 (src, dst, id, protocol), IPv6 (src, dst, fragment id); one table per binding
//    (the conntrack zone of the tap);
//  * a fragment inside a run of contiguous fragments already queued (IPFRAG_DUP) is dropped
//    alone; any other overlap (IPFRAG_OVERLAP) kills the queue: every fragment dropped;
//  * a last fragment (MF=0) ending before data already seen, a second last fragment with
//    another end, data beyond a known end, an empty fragment: the queue is killed;
//  * non-last IPv4 fragments are trimmed to a multiple of 8 bytes (end &= ~7);
//  * complete = first and last fragment seen and no hole (meat == len); a datagram of
//    more than 65535 bytes (IPv4 header + payload, IPv6 payload length) is dropped;
//  * the timer starts when the queue is created and is never extended (ipfrag_time 30 s,
//    nf_conntrack_frag6_timeout 60 s); an expired queue drops all its fragments;
//  * memory bound: over the limit, a fragment is refused (inet_frag_find returns NULL above
//    high_thresh; modern kernels evict nothing, queues leave by their timer);
//  * ECN: not-ECT mixed with ECT/CE fragments is invalid (ip_frag_ecn_table), CE is kept.
//
// Memory: no per-fragment storage of bytes beyond the first kPrefix bytes of the
// reassembled payload (enough for every header the engine reads; NFQUEUE copies 512 bytes
// anyway) and the first fragment's network header. The transport checksum of the whole
// datagram is verified from a running ones'-complement sum of each fragment's payload
// (offsets are multiples of 8, so partial sums add up exactly); a fragment seen only as a
// truncated copy makes the checksum unknown (unverified, as PacketInput::checksum_unverified).
// Fixed pools sized by DefragOptions, allocated at the first fragment: no allocation per
// fragment in the steady state.
//
// Threading: none; the engine calls it from the thread that decides for the binding.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "conntrack/types.h"
#include "engine/packet_view.h"

namespace nwfq::engine {

// Why the defragmenter dropped a fragment (Decision::frag). One counter per value.
enum class FragDrop : uint8_t {
  kNone,
  kDuplicate,       // inside a run already queued (IPFRAG_DUP): this fragment only
  kOverlap,         // overlaps queued data (IPFRAG_OVERLAP): the whole datagram
  kBadLength,       // inconsistent end, empty fragment, data past the last: the datagram
  kOversize,        // reassembled datagram over 65535 bytes: the datagram
  kBadEcn,          // not-ECT mixed with ECT/CE fragments: the datagram
  kTimeout,         // incomplete when its timer ran out: the datagram
  kNoMemory,        // the binding's fragment limits are reached: this fragment
  kTruncatedFirst,  // IPv6 first fragment without the whole upper-layer header (RFC 8200)
  kUnsupported,     // first fragment's network header longer than kept (> kMaxHeader)
  kIncomplete,      // still incomplete when flushed (end of a capture, shutdown)
  kBindingRemoved,  // still incomplete when its binding was removed (Engine::RemoveBinding)
  kCount,
};
inline constexpr int kFragDropCount = static_cast<int>(FragDrop::kCount);
// "duplicate", "overlap", ... ("fragment: <name>" in explanations).
std::string_view FragDropName(FragDrop d);

struct DefragOptions {
  ct::Nanos timeout_v4 = 30 * ct::kNanosPerSecond;  // net.ipv4.ipfrag_time
  ct::Nanos timeout_v6 = 60 * ct::kNanosPerSecond;  // nf_conntrack_frag6_timeout
  // The kernel bounds fragment memory at 4 MB per namespace (ipfrag_high_thresh), about
  // 1400 MTU-sized fragments at ~2.9 KB truesize each. Per binding here, in counts.
  uint32_t max_queues = 256;
  uint32_t max_fragments = 1024;
};

class Defragmenter {
 public:
  static constexpr size_t kPrefix = 512;     // payload bytes kept for the synthetic packet
  static constexpr size_t kMaxHeader = 320;  // IPv4 header / IPv6 unfragmentable part

  explicit Defragmenter(const DefragOptions& options);
  ~Defragmenter();
  Defragmenter(const Defragmenter&) = delete;
  Defragmenter& operator=(const Defragmenter&) = delete;

  enum class Kind : uint8_t { kHeld, kDropped, kComplete };
  struct Result {
    Kind kind = Kind::kHeld;
    FragDrop drop = FragDrop::kNone;  // kDropped: why
    // Tokens of fragments held before this one that share its fate: dropped with it
    // (kDropped, the datagram killed) or decided with the datagram (kComplete). Valid
    // until the next call.
    std::span<const uint64_t> released;
    // kComplete: the reassembled datagram's network header followed by the first bytes
    // of its payload (a truncated copy), its length on the wire, and the transport
    // checksum's input: the ones'-complement sum of the whole payload, when known.
    std::span<const uint8_t> datagram;
    uint32_t datagram_len = 0;
    uint16_t payload_offset = 0;  // where the reassembled payload starts in `datagram`
    bool sum_known = false;
    uint64_t payload_sum = 0;
  };

  // Adds the fragment parsed as `v` (v.fragment, and not an IPv6 atomic fragment) whose
  // network-layer bytes are `ip` (from the IP header on; possibly a truncated copy of the
  // v.ip_len bytes). `sum_ok`: its checksum input may be trusted (not offloaded, checks
  // enabled). `token` identifies the packet to the caller.
  Result Add(const PacketView& v, std::span<const uint8_t> ip, bool sum_ok, uint64_t token,
             ct::Nanos now);

  // Drops the queues whose timer ran out by `now` (every queue when `all`), reporting each
  // held fragment's token with `why_all` (all) or kTimeout. Cheap when nothing is queued.
  void Expire(ct::Nanos now, bool all, FragDrop why_all,
              absl::FunctionRef<void(uint64_t token, FragDrop why)> out);

  size_t queues() const { return live_queues_; }
  size_t fragments() const { return live_frags_; }

 private:
  struct Queue;
  struct Frag;
  void Allocate();
  Queue* Find(const PacketView& v);
  Queue* Create(const PacketView& v, ct::Nanos now);
  // Frees the queue; every fragment's token but `skip`'s goes into released_.
  void Kill(Queue& q, int32_t skip = -1);
  Result Complete(Queue& q, int32_t self);

  DefragOptions options_;
  std::unique_ptr<Queue[]> queues_;
  std::unique_ptr<Frag[]> frags_;
  int32_t free_frag_ = -1;
  size_t live_queues_ = 0, live_frags_ = 0;
  std::vector<uint64_t> released_;
  std::vector<uint8_t> out_;
};

// The transport checksum of a reassembled datagram: `v` parsed from Result::datagram,
// `payload_offset` and `payload_sum` from the Result. Returns 1 = verifies, 0 = bad (UDP: also a
// length field outside [8, payload], as conntrack's udp_error), -1 = cannot tell (SCTP's CRC32c,
// UDPLite with a partial coverage, a zero UDP checksum = none). UDP is summed over the whole
// payload as nf_checksum() does, bytes after the UDP length included.
int DatagramChecksum(const PacketView& v, std::span<const uint8_t> datagram,
                     uint16_t payload_offset, uint64_t payload_sum);

}  // namespace nwfq::engine
