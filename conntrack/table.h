// The connection-tracking table: one fixed-capacity, never-rehashed table of fixed-size
// entries, classifying each packet as the kernel's nf_conntrack would (NEW / ESTABLISHED /
// RELATED / INVALID / UNTRACKED, ORIGINAL / REPLY, ASSURED) and keeping per-protocol state
// (TCP state machine with window tracking, UDP/GRE stream rule, ICMP/ICMPv6 echo ids and
// errors, SCTP, generic).
//
// Contract:
//  * Track() runs for every IP packet before the filter (as the kernel's conntrack runs
//    before iptables): an existing connection is updated at once, also if the filter then
//    drops the packet. A packet that would create a connection gets a *tentative* entry:
//    it becomes part of the table only through Confirm() (the engine confirms when the
//    verdict is accept). At most one tentative entry exists at a time: the next Track()
//    (or Discard()) throws an unconfirmed one away, so a dropped first packet leaves no
//    state. Call Confirm() for a result before tracking the next packet.
//  * Time comes only from `now` (monotonic nanoseconds, never decreasing between calls).
//    Deadlines are stored as 32-bit milliseconds relative to the first `now` seen.
//  * Zero heap allocations after construction. Memory: capacity * kSlotBytes (+1/16 spare
//    slots) reserved and touched at once for the entries and their tags, plus records
//    taken on demand from two reserved pools: 44 bytes per TCP connection (window
//    tracking), 28 bytes per IPv6 connection (addresses). See ResidentBytes().
//  * Not thread-safe: one Table per worker thread (the engine's per-queue design).
//  * Expired entries are removed lazily when met by a lookup or insert, and by Sweep().
//  * EntryRefs are valid until the next Track() (an insert may move an entry to its other
//    bucket, cuckoo style); keep tuples (ConnInfo::original) for longer-lived references.
//  * Full table (or a full probe window): evict an expired or unassured entry of the same
//    window (the kernel's early_drop picks unassured ones too), else refuse the new
//    connection (TrackResult.state = kInvalid with no entry; counted as insert_failed;
//    the kernel drops such packets).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "conntrack/timeouts.h"
#include "conntrack/types.h"

namespace nwfq::ct {

struct TableOptions {
  // Maximum number of connections (kernel default nf_conntrack_max on big hosts: 262144).
  uint32_t capacity = 262144;
  // net.netfilter.nf_conntrack_tcp_loose: pick up connections mid-stream (a bare ACK is NEW).
  bool tcp_loose = true;
  // net.netfilter.nf_conntrack_tcp_be_liberal: only out-of-window RSTs are INVALID.
  bool tcp_be_liberal = false;
  // net.netfilter.nf_conntrack_checksum: PacketFacts::bad_checksum makes a packet INVALID.
  bool check_checksums = true;
  // net.netfilter.nf_conntrack_tcp_max_retrans.
  uint8_t tcp_max_retrans = 3;
  // net.netfilter.nf_conntrack_tcp_ignore_invalid_rst.
  bool tcp_ignore_invalid_rst = false;
};

struct TableStats {
  uint64_t found = 0;          // packets that matched an existing connection
  uint64_t new_conns = 0;      // tentative entries created (NEW packets)
  uint64_t confirmed = 0;      // tentative entries confirmed into the table
  uint64_t invalid = 0;        // packets classified INVALID
  uint64_t ignored = 0;        // packets classified UNTRACKED (ND, MLD, ...)
  uint64_t related = 0;        // ICMP errors matched to a connection
  uint64_t early_drop = 0;     // entries evicted to make room
  uint64_t insert_failed = 0;  // new connections refused: window full of assured entries
  uint64_t expired = 0;        // entries removed because their deadline passed
  uint64_t tcp_ignored = 0;    // TCP packets the state machine "ignored" (kernel sIG)
};

// Kernel TCP conntrack states (values as in enum tcp_conntrack).
enum class TcpState : uint8_t {
  kNone,
  kSynSent,
  kSynRecv,
  kEstablished,
  kFinWait,
  kCloseWait,
  kLastAck,
  kTimeWait,
  kClose,
  kSynSent2,
};
std::string_view TcpStateName(TcpState s);  // "SYN_SENT", ... as `conntrack -L` prints

// Kernel SCTP conntrack states (enum sctp_conntrack).
enum class SctpState : uint8_t {
  kNone,
  kClosed,
  kCookieWait,
  kCookieEchoed,
  kEstablished,
  kShutdownSent,
  kShutdownRecd,
  kShutdownAckSent,
  kHeartbeatSent,
};
std::string_view SctpStateName(SctpState s);

// A read-only snapshot of one connection, for `nwfqctl conntrack list` and tests.
struct ConnInfo {
  EntryRef ref;
  FlowFacts original;           // the originator's tuple: src/dst/ports (icmp: type/code/id)
  uint8_t proto_state = 0;      // TcpState or SctpState value; 0 for other protocols
  std::string_view state_name;  // "ESTABLISHED", "TIME_WAIT", ... ("" if stateless)
  bool seen_reply = false;
  bool assured = false;
  bool tentative = false;
  Nanos expires_in = 0;  // time left until the deadline (<= 0: expired, not yet swept)
  Nanos last_seen = 0;   // time of the last packet (absolute, same scale as `now`)
};

// A packet's table hash, computed once by Table::Probe() and handed to the batched calls
// (the prefetch stages and Track) so that a batching worker hashes each packet once. Only
// meaningful for the table that computed it (and the packet it was computed from).
struct FlowProbe {
  uint64_t hash = 0;
  uint32_t bucket[2] = {0, 0};  // the two buckets the flow may live in
  uint8_t tag = 0;              // its 8-bit tag in them
  bool lookup = false;          // false: nothing to prefetch (no key, fragment, ICMP error)
  bool record = false;          // TCP, SCTP or IPv6: the entry has a pool record (PrefetchRecord)
  bool port_flow = false;       // TCP/UDP/UDPLite/SCTP: Track's short hit path applies
  // Set by PrefetchEntry: the first slot whose tag matched (UINT32_MAX: none, or not asked).
  // A hint only: PrefetchRecord reads that entry, and Track compares the key there before
  // it reads the tags again; a slot that changed since (an insert or removal by an earlier
  // packet of the batch) just fails that compare.
  uint32_t slot = UINT32_MAX;
};

class Table {
 public:
  // Slots per bucket: a connection lives in one of the 8 slots of one of its two buckets.
  static constexpr uint32_t kBucketSlots = 8;
  // Bytes of one slot (32-byte entry + 1-byte index tag); the slot array is
  // slot_count() * kSlotBytes. TCP, SCTP and IPv6 connections add a pool record each
  // (kTcpRecordBytes, kSctpRecordBytes, kV6RecordBytes).
  static const size_t kEntryBytes;
  static const size_t kSlotBytes;
  static const size_t kTcpRecordBytes;
  static const size_t kV6RecordBytes;
  static const size_t kSctpRecordBytes;

  explicit Table(const TableOptions& options);
  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  // Classifies `p` and updates its connection (see the contract above). `timeouts` is read
  // at this call to set the connection's new deadline.
  TrackResult Track(const PacketFacts& p, const TimeoutPolicy& timeouts, Nanos now);
  // Optional, for batches: overlap the memory latency of several packets (a lookup at 1M
  // connections waits for 2 dependent misses, 3 for TCP/IPv6: tag line, entry, record).
  // bench/conntrack_bench.cc (TrackBatch) is the reference loop. A worker computes
  // probe = Probe(p) for its batch, then per packet i calls
  //   PrefetchIndex(probe[i + 16])  brings both buckets' tag lines in,
  //   PrefetchEntry(probe[i + 8])   reads them, brings the matching entries in (no
  //                                 match: the free slot a new connection would take),
  //   PrefetchRecord(probe[i + 2])  reads that entry, brings its TCP/IPv6 record in,
  //   Track(p[i], probe[i], ...)    as Track(p, ...), without hashing again.
  // None of the prefetch calls changes any state; all are optional, in any combination.
  // The PacketFacts overloads hash again (kept for callers without a probe).
  FlowProbe Probe(const PacketFacts& p) const;
  // Both buckets' tag lines: in a well-filled table a quarter or more of the connections
  // live in their second bucket, and asking for its tags only once the first bucket had no
  // match left their entry uncached at Track time. Inline: cheaper than a call.
  void PrefetchIndex(const FlowProbe& probe) const {
    if (!probe.lookup) return;
    __builtin_prefetch(&tags_[probe.bucket[0] * kBucketSlots]);
    __builtin_prefetch(&tags_[probe.bucket[1] * kBucketSlots]);
  }
  // Returns the slot of the first entry whose tag matches (the connection's slot unless a
  // tag collides), UINT32_MAX if none, and notes it in `probe.slot`: callers with per-slot
  // data of their own (the engine's decision cache) prefetch it too.
  uint32_t PrefetchEntry(FlowProbe& probe) const;
  void PrefetchRecord(const FlowProbe& probe) const {
    if (probe.record) PrefetchRecordOf(probe);
  }
  TrackResult Track(const PacketFacts& p, const FlowProbe& probe, const TimeoutPolicy& timeouts,
                    Nanos now);
  void PrefetchIndex(const PacketFacts& p) const;
  void PrefetchEntry(const PacketFacts& p) const;
  // Makes a tentative connection real. No-op for anything else (existing connections,
  // results already confirmed or discarded).
  void Confirm(const TrackResult& r, Nanos now);
  // Throws away a tentative connection (optional: the next Track does it too).
  void Discard(const TrackResult& r);

  // Examines up to `budget` slots for expired entries, continuing where the previous call
  // stopped; returns how many were removed. Call it from the worker loop when idle.
  size_t Sweep(size_t budget, Nanos now);
  // Removes every connection (`conntrack -F`).
  void Flush();
  // Removes one connection (like `conntrack -D`); false if `ref` is stale.
  bool Erase(EntryRef ref);

  // Live (confirmed, not expired at `now`) connection behind `ref`, if still there.
  std::optional<ConnInfo> Get(EntryRef ref, Nanos now) const;
  // The connection `f` (a packet's or a connection's tuple, either direction) belongs to,
  // including the tentative one; nullopt if none or expired.
  std::optional<ConnInfo> Lookup(const FlowFacts& f, Nanos now) const;
  // True if `ref` still names a confirmed connection that has not expired at `now`.
  bool IsLive(EntryRef ref, Nanos now) const;
  // Calls `fn` for every confirmed, unexpired connection (in slot order).
  void ForEach(Nanos now, const std::function<void(const ConnInfo&)>& fn) const;

  uint32_t size() const { return size_; }  // confirmed entries, expired ones not yet removed
  uint32_t capacity() const { return capacity_; }
  // The slot array (entries + tags): slot_count() * kSlotBytes. Engine code derives the
  // slot count from it; prefer slot_count().
  size_t MemoryBytes() const { return static_cast<size_t>(slots_) * kSlotBytes; }
  // Every EntryRef::slot is below this.
  uint32_t slot_count() const { return slots_; }
  // Memory actually in use: the slot array plus the pools' pages up to their high-water
  // marks (pool pages are touched only as records are handed out; Flush returns them).
  size_t ResidentBytes() const;
  // Address space reserved (slot array + both pools at full size).
  size_t ReservedBytes() const;
  const TableStats& stats() const { return stats_; }
  const TableOptions& options() const { return options_; }

  struct Entry;  // defined in entry.h (fixed size, static_assert'ed there)

  // Fixed-size records handed out on demand: a reserved mapping of `count` records, taken
  // from the bottom (pages become resident as `high_water` rises) and recycled LIFO
  // through an intrusive free list. Never more records than slots, so never full.
  struct Pool {
    char* base = nullptr;
    size_t map_bytes = 0;
    uint32_t record_bytes = 0;
    uint32_t high_water = 0;
    uint32_t free_head = UINT32_MAX;
  };

 private:
  friend class TableInternals;
  void PrefetchRecordOf(const FlowProbe& probe) const;
  TableOptions options_;
  uint32_t capacity_ = 0;
  uint32_t slots_ = 0;  // capacity_ rounded up to whole buckets
  uint32_t buckets_ = 0;
  // Both arrays live in one anonymous mapping (huge pages advised: random access over
  // ~100 MB otherwise spends its time in TLB misses).
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  Entry* entries_ = nullptr;
  uint8_t* tags_ = nullptr;  // 0 = free slot; else an 8-bit hash tag (1..255)
  Pool tcp_pool_;            // TcpConn records (Entry::aux)
  Pool v6_pool_;             // IPv6 address records: original src, dst (Entry::src, ::dst)
  Pool sctp_pool_;           // SctpConn records: the verification tags (Entry::aux)
  uint32_t size_ = 0;
  uint32_t sweep_cursor_ = 0;
  uint32_t next_generation_ = 1;
  // The tentative entry of the last Track (UINT32_MAX: none).
  uint32_t pending_slot_ = UINT32_MAX;
  bool epoch_set_ = false;
  Nanos epoch_ = 0;
  TableStats stats_;
};

}  // namespace nwfq::ct
