// The table: slot storage, lookup, tentative entries, expiry and eviction, and the
// per-packet dispatch to the protocol trackers (UDP, ICMP, GRE and generic live here; TCP
// in tcp.cc, SCTP in sctp.cc).
//
// Layout: `slots_` entries of 32 bytes plus a parallel array of 8-bit tags, grouped in
// buckets of 8 slots; TCP window state, SCTP verification tags and IPv6 addresses in
// records of three on-demand pools (entry.h). A connection lives in one of two buckets
// chosen by its hash (both directions hash alike); a lookup compares the tags of those
// buckets, first bucket first, and touches only entries whose tag matches. No rehash, no
// pointers, no heap allocation after start.
#include "conntrack/table.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "conntrack/entry.h"
#include "conntrack/tcp_window.h"

namespace nwfq::ct {

const size_t Table::kEntryBytes = sizeof(Table::Entry);
const size_t Table::kSlotBytes = sizeof(Table::Entry) + sizeof(uint8_t);
const size_t Table::kTcpRecordBytes = 44;
const size_t Table::kV6RecordBytes = 28;
const size_t Table::kSctpRecordBytes = sizeof(SctpConn);

namespace {

constexpr uint32_t kBucketSlots = Table::kBucketSlots;
// sizeof(TcpConn), not rounded up to 48: at 48 bytes half of the records spanned two cache
// lines anyway (at 44, 11 in 16 do; PrefetchRecord asks for both lines), so the padding
// bought nothing but 4 bytes per connection.
constexpr size_t kTcpRecord = sizeof(TcpConn);
// An IPv6 connection's addresses: the original source (16 bytes), then the original
// destination's first 12 bytes; its last 4 are in Entry::dst. Not a round 32: at 28 bytes an
// IPv6 connection fits in 64 bytes (entry 32 + tag 1 + record 28 + spare slots 2.1), and
// Entry::dst lets a lookup reject a tag collision without reading the record.
constexpr size_t kV6Record = 28;
// An SCTP connection's two verification tags.
constexpr size_t kSctpRecord = sizeof(SctpConn);
static_assert(kTcpRecord == 44 && alignof(TcpConn) <= 4, "records are packed at 4-byte alignment");
static_assert(kSctpRecord == 8 && alignof(SctpConn) <= 4, "records are packed at 4-byte alignment");

size_t PageRound(size_t n) { return (n + 4095) & ~size_t{4095}; }

// Reserves `bytes` of anonymous memory (zero-filled, resident only once touched), starting
// on a 2 MB boundary: transparent huge pages only cover aligned 2 MB ranges, and mmap's
// own placement left the 1M-connection table's first and last partial ranges (a tenth of
// it) on 4 KB pages, i.e. TLB misses, each a two-level page walk in a VM.
void* MapOrDie(size_t bytes, int extra_flags) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t reserve = bytes + kHuge;
  void* m = mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  if (m == MAP_FAILED) {
    // Out of address space at start-up: nothing sensible to do without a table.
    std::perror("nwfq conntrack: mmap of the connection table");
    std::abort();
  }
  const auto start = reinterpret_cast<uintptr_t>(m);
  const uintptr_t aligned = (start + kHuge - 1) & ~(uintptr_t{kHuge} - 1);
  // Give back the unaligned head and the tail beyond `bytes` (both whole pages).
  if (aligned > start) munmap(m, aligned - start);
  const uintptr_t end = aligned + PageRound(bytes);
  if (start + reserve > end) munmap(reinterpret_cast<void*>(end), start + reserve - end);
  void* p = reinterpret_cast<void*>(aligned);
  madvise(p, bytes, MADV_HUGEPAGE);  // best effort: random access over many MB
  return p;
}

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoGre = 47;
constexpr uint8_t kProtoIcmpv6 = 58;
constexpr uint8_t kProtoSctp = 132;
constexpr uint8_t kProtoUdplite = 136;

// The tuple a packet is looked up with. For port protocols it is the packet's own tuple
// and may match an entry in either direction (`fixed_dir` = -1); for ICMP/ICMPv6 queries
// it is already turned into the request's (original) orientation and `fixed_dir` says
// which direction the packet is.
struct Key {
  std::array<uint8_t, 16> src{};
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t proto = 0;
  bool v6 = false;
  int fixed_dir = -1;
};

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline uint64_t Mix(uint64_t x) {  // murmur3 fmix64
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// One 64-bit word per endpoint: an IPv4 address (in the low 4 bytes, the rest zero after
// CopyAddr) and the port are packed losslessly; IPv6 addresses are folded.
inline uint64_t EndpointWord(const std::array<uint8_t, 16>& a, uint16_t port) {
  return (Load64(a.data()) ^ (Load64(a.data() + 8) * 0x9e3779b97f4a7c15ULL)) ^
         (static_cast<uint64_t>(port) << 40);
}

// Direction-independent: both orientations of a tuple hash alike (min/max of the two
// endpoint words), one fmix64 per packet.
inline uint64_t HashWords(uint64_t a, uint64_t b, uint8_t proto, bool v6) {
  const uint64_t lo = a < b ? a : b;
  const uint64_t hi = a < b ? b : a;
  return Mix(lo * 0xc2b2ae3d27d4eb4fULL + (hi ^ (static_cast<uint64_t>(proto) << 1 | v6)));
}
inline uint64_t HashKey(const Key& k) {
  return HashWords(EndpointWord(k.src, k.sport), EndpointWord(k.dst, k.dport), k.proto, k.v6);
}

inline uint32_t FastRange(uint32_t x, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(x) * n) >> 32);
}

// One byte per slot, 0 meaning free: 255 values, so a lookup reads a wrong entry for about
// 1 in 255 occupied slots of its two buckets (6% of lookups at full load). A 16-bit tag
// made the tag array 2 MB at 1M connections, a line of it a cache miss of its own; at
// 1 MB it mostly stays in L2 and a lookup's only miss is its entry.
inline uint8_t TagOf(uint64_t h) {
  const uint8_t t = static_cast<uint8_t>((h * 0x9e3779b97f4a7c15ULL) >> 56);
  return t != 0 ? t : 1;
}

bool IsPortProto(uint8_t proto) {
  return proto == kProtoTcp || proto == kProtoUdp || proto == kProtoUdplite || proto == kProtoSctp;
}

// Copies an address, zeroing the unused 12 bytes of an IPv4 one. Written as two 8-byte
// stores so that the hash's 8-byte loads are forwarded from them.
inline void CopyAddr(std::array<uint8_t, 16>& out, const std::array<uint8_t, 16>& in, bool v6) {
  uint64_t lo;
  uint64_t hi = 0;
  if (v6) {
    std::memcpy(&lo, in.data(), 8);
    std::memcpy(&hi, in.data() + 8, 8);
  } else {
    uint32_t v4;
    std::memcpy(&v4, in.data(), 4);
    lo = v4;
  }
  std::memcpy(out.data(), &lo, 8);
  std::memcpy(out.data() + 8, &hi, 8);
}

inline bool SameAddr(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b) {
  return Load64(a.data()) == Load64(b.data()) && Load64(a.data() + 8) == Load64(b.data() + 8);
}

// Bit i set if tags[i] == tag, for the 8 tags of one bucket.
inline uint32_t MatchTags(const uint8_t* tags, uint8_t tag) {
#if defined(__SSE2__)
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(tags));
  const __m128i eq = _mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(tag)));
  return static_cast<uint32_t>(_mm_movemask_epi8(eq)) & 0xffu;
#else
  uint32_t m = 0;
  for (uint32_t i = 0; i < 8; ++i) m |= static_cast<uint32_t>(tags[i] == tag) << i;
  return m;
#endif
}

// ICMP request <-> reply type pairs (kernel invmap); 0 = no inverse.
int IcmpInverse(uint8_t type) {
  switch (type) {
    case 8:
      return 0;  // echo -> echo reply
    case 0:
      return 8;
    case 13:
      return 14;  // timestamp
    case 14:
      return 13;
    case 15:
      return 16;  // info request
    case 16:
      return 15;
    case 17:
      return 18;  // address mask
    case 18:
      return 17;
    default:
      return -1;
  }
}
bool IcmpIsRequest(uint8_t type) { return type == 8 || type == 13 || type == 15 || type == 17; }
bool IcmpIsError(uint8_t type) {
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}
int Icmpv6Inverse(uint8_t type) {
  switch (type) {
    case 128:
      return 129;  // echo request -> reply
    case 129:
      return 128;
    case 139:
      return 140;  // node information query -> reply
    case 140:
      return 139;
    default:
      return -1;
  }
}
bool Icmpv6IsRequest(uint8_t type) { return type == 128 || type == 139; }
// Kernel noct_valid_new: MLD and neighbour discovery get no conntrack (UNTRACKED).
bool Icmpv6IsUntracked(uint8_t type) {
  switch (type) {
    case 130:
    case 131:
    case 132:  // MLD query, report, done
    case 133:
    case 134:  // router solicitation, advertisement
    case 135:
    case 136:  // neighbour solicitation, advertisement
    case 143:  // MLDv2 report
      return true;
    default:
      return false;
  }
}

enum class KeyResult { kOk, kInvalid };

// Builds the lookup key of `f` (a packet, or the packet quoted in an ICMP error).
KeyResult MakeKey(const FlowFacts& f, Key& k) {
  k.v6 = f.family == 6;
  k.proto = f.l4proto;
  k.fixed_dir = -1;
  if (IsPortProto(f.l4proto)) {
    CopyAddr(k.src, f.src, k.v6);
    CopyAddr(k.dst, f.dst, k.v6);
    k.sport = f.sport;
    k.dport = f.dport;
    return KeyResult::kOk;
  }
  if ((f.l4proto == kProtoIcmp && !k.v6) || (f.l4proto == kProtoIcmpv6 && k.v6)) {
    const bool v4 = f.l4proto == kProtoIcmp;
    int inv = v4 ? IcmpInverse(f.icmp_type) : Icmpv6Inverse(f.icmp_type);
    if (inv < 0) return KeyResult::kInvalid;  // no inverse tuple: the kernel gives no ct
    bool request = v4 ? IcmpIsRequest(f.icmp_type) : Icmpv6IsRequest(f.icmp_type);
    uint8_t req_type = request ? f.icmp_type : static_cast<uint8_t>(inv);
    if (request) {
      CopyAddr(k.src, f.src, k.v6);
      CopyAddr(k.dst, f.dst, k.v6);
    } else {
      CopyAddr(k.src, f.dst, k.v6);
      CopyAddr(k.dst, f.src, k.v6);
    }
    k.sport = f.icmp_id;
    k.dport = static_cast<uint16_t>(req_type << 8 | f.icmp_code);
    k.fixed_dir = request ? 0 : 1;
    return KeyResult::kOk;
  }
  if (f.l4proto == kProtoIcmp || f.l4proto == kProtoIcmpv6) return KeyResult::kInvalid;
  // GRE (without the PPTP helper), ESP, AH and everything else: addresses only, as the
  // kernel's generic tracker (and GREv0) key them.
  CopyAddr(k.src, f.src, k.v6);
  CopyAddr(k.dst, f.dst, k.v6);
  k.sport = k.dport = 0;
  return KeyResult::kOk;
}

inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// An IPv6 entry's original source and destination, from its record `rec` and Entry::dst.
inline void V6Addrs(const Table::Entry& e, const uint8_t* rec, std::array<uint8_t, 16>& src,
                    std::array<uint8_t, 16>& dst) {
  std::memcpy(src.data(), rec, 16);
  std::memcpy(dst.data(), rec + 16, 12);
  std::memcpy(dst.data() + 12, &e.dst, 4);
}

// Does the entry hold this key, and in which direction does the packet travel? `v6` is the
// entry's IPv6 address record (original src then dst), null for IPv4 entries.
inline int MatchDir(const Table::Entry& e, const uint8_t* v6, const Key& k) {
  if (e.l4proto != k.proto || ((e.flags & kEfIpv6) != 0) != k.v6) return -1;
  bool fwd, rev;
  if (v6 == nullptr) {
    const uint32_t ks = Load32(k.src.data()), kd = Load32(k.dst.data());
    fwd = e.src == ks && e.dst == kd;
    rev = e.src == kd && e.dst == ks;
  } else {
    // The destination's last 4 bytes first (Entry::dst): most mismatches end there.
    fwd = e.dst == Load32(k.dst.data() + 12);
    rev = e.dst == Load32(k.src.data() + 12);
    if (!fwd && !rev) return -1;
    std::array<uint8_t, 16> es, ed;
    V6Addrs(e, v6, es, ed);
    fwd = fwd && SameAddr(es, k.src) && SameAddr(ed, k.dst);
    rev = rev && SameAddr(es, k.dst) && SameAddr(ed, k.src);
  }
  if (fwd && e.sport == k.sport && e.dport == k.dport) {
    // ICMP replies come with their key already in the original orientation.
    return k.fixed_dir == 1 ? 1 : 0;
  }
  if (rev && k.fixed_dir == -1 && e.sport == k.dport && e.dport == k.sport) return 1;
  return -1;
}

// The lookup key an entry was stored under (original orientation).
Key KeyOf(const Table::Entry& e, const uint8_t* v6) {
  Key k;
  if (v6 == nullptr) {
    std::memcpy(k.src.data(), &e.src, 4);
    std::memcpy(k.dst.data(), &e.dst, 4);
  } else {
    V6Addrs(e, v6, k.src, k.dst);
  }
  k.sport = e.sport;
  k.dport = e.dport;
  k.proto = e.l4proto;
  k.v6 = e.flags & kEfIpv6;
  k.fixed_dir = (e.l4proto == kProtoIcmp || e.l4proto == kProtoIcmpv6) ? 0 : -1;
  return k;
}

inline bool Expired(const Table::Entry& e, uint32_t now_ms) {
  return static_cast<int32_t>(e.deadline_ms - now_ms) <= 0;
}

// The fast key of the common case, an IPv4 TCP/UDP/UDPLite/SCTP packet: the entry's first
// 16 bytes read as two words (src | dst, then sport | dport | l4proto | flags | ...),
// compared with the packet's tuple in both orientations: two compares per orientation
// instead of building a 40-byte Key and comparing field by field. kPortWordMask keeps the
// ports, the protocol and two of the entry's flags: IPv6, which must be clear (an IPv6
// entry's `src` is a record index that could equal an address), and in-use, which must be
// set (a FlowProbe's slot hint may name a slot freed since, its old tuple still there).
struct V4Key {
  uint64_t fwd0, fwd1;  // the packet's tuple as an entry of this direction stores it
  uint64_t rev0, rev1;  // the same for the reply direction
  uint64_t a, b;        // the endpoint words of HashWords (EndpointWord of src and dst)
};
static_assert(offsetof(Table::Entry, src) == 0 && offsetof(Table::Entry, dst) == 4 &&
              offsetof(Table::Entry, sport) == 8 && offsetof(Table::Entry, dport) == 10 &&
              offsetof(Table::Entry, l4proto) == 12 && offsetof(Table::Entry, flags) == 13);
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "V4Key packs words little-endian");
constexpr uint64_t kPortWordMask = 0x0000'00ff'ffff'ffffULL | (uint64_t{kEfIpv6 | kEfUsed} << 40);

inline V4Key MakeV4Key(const FlowFacts& f) {
  const uint64_t src = Load32(f.src.data()), dst = Load32(f.dst.data());
  // The protocol byte and, after it, the flag bits kPortWordMask keeps as an IPv4 entry in
  // use has them (kEfUsed set, kEfIpv6 clear), built in one register.
  const uint64_t proto = (uint64_t{f.l4proto} | uint64_t{kEfUsed} << 8) << 32;
  V4Key k;
  k.fwd0 = src | dst << 32;
  k.rev0 = dst | src << 32;
  k.fwd1 = uint64_t{f.sport} | uint64_t{f.dport} << 16 | proto;
  k.rev1 = uint64_t{f.dport} | uint64_t{f.sport} << 16 | proto;
  // EndpointWord of a zero-extended IPv4 address: the address in the low word.
  k.a = src ^ static_cast<uint64_t>(f.sport) << 40;
  k.b = dst ^ static_cast<uint64_t>(f.dport) << 40;
  return k;
}

// 0 / 1: the entry holds `k` in the packet's / the reply's orientation; -1: not this one.
inline int MatchV4(const Table::Entry& e, const V4Key& k) {
  uint64_t w0, w1;
  std::memcpy(&w0, &e, 8);
  std::memcpy(&w1, reinterpret_cast<const char*>(&e) + 8, 8);
  w1 &= kPortWordMask;
  if (w0 == k.fwd0 && w1 == k.fwd1) return 0;
  if (w0 == k.rev0 && w1 == k.rev1) return 1;
  return -1;
}

// A UDP/UDPLite packet's refresh: the unreplied timeout until a reply was seen; replied and
// still active more than 2 s after the first packet (Entry::aux): a stream, with the
// stream timeout, and ASSURED.
inline void UdpRefresh(Table::Entry& e, uint32_t now_ms, const TimeoutPolicy& timeouts) {
  const bool stream = (e.flags & kEfSeenReply) && static_cast<int32_t>(now_ms - e.aux) > 0;
  e.deadline_ms =
      now_ms + TimeoutMs(timeouts, stream ? TimeoutClass::kUdpStream : TimeoutClass::kUdpUnreplied);
  if (stream) e.flags |= kEfAssured;
}

// Generic-style trackers: UDP/UDPLite, ICMP, GRE, generic. Return false for INVALID.
Verdict UdpPacket(Table::Entry& e, const TrackContext& ctx) {
  if (ctx.is_new) e.aux = ctx.now_ms + 2000;  // the 2-second stream rule
  UdpRefresh(e, ctx.now_ms, ctx.timeouts);
  return Verdict::kAccept;
}

}  // namespace

std::string_view TcpStateName(TcpState s) {
  static constexpr std::string_view kNames[] = {"NONE",     "SYN_SENT",   "SYN_RECV", "ESTABLISHED",
                                                "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT",
                                                "CLOSE",    "SYN_SENT2"};
  auto i = static_cast<size_t>(s);
  return i < std::size(kNames) ? kNames[i] : "?";
}

std::string_view SctpStateName(SctpState s) {
  static constexpr std::string_view kNames[] = {
      "NONE",          "CLOSED",        "COOKIE_WAIT",       "COOKIE_ECHOED", "ESTABLISHED",
      "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT"};
  auto i = static_cast<size_t>(s);
  return i < std::size(kNames) ? kNames[i] : "?";
}

// A TrackResult written as two stores (the entry, then the four one-byte fields as one
// word): Track's exits meet in one return block that reloads the result as two words,
// and byte-wise stores into it could not be forwarded to those loads (measured with perf:
// a quarter of Track's time on the engine's established path was that stall).
static_assert(offsetof(TrackResult, entry) == 0 && offsetof(EntryRef, slot) == 0 &&
              offsetof(EntryRef, generation) == 4 && offsetof(TrackResult, state) == 8 &&
              offsetof(TrackResult, dir) == 9 && offsetof(TrackResult, tentative) == 10 &&
              offsetof(TrackResult, assured) == 11 && sizeof(TrackResult) == 12);
inline TrackResult Result(EntryRef entry, State state, Dir dir, bool tentative, bool assured) {
  const uint32_t bytes = uint32_t{static_cast<uint8_t>(state)} |
                         uint32_t{static_cast<uint8_t>(dir)} << 8 | uint32_t{tentative} << 16 |
                         uint32_t{assured} << 24;
  uint64_t ref = uint64_t{entry.slot} | uint64_t{entry.generation} << 32;
  // Opaque to the optimiser, which would otherwise split the word back into two 4-byte
  // stores (the very pattern this avoids).
  asm("" : "+r"(ref));
  TrackResult r;
  std::memcpy(reinterpret_cast<char*>(&r), &ref, 8);
  std::memcpy(reinterpret_cast<char*>(&r) + 8, &bytes, 4);
  return r;
}

// Everything that needs the private members, kept out of the public header.
class TableInternals {
 public:
  static uint32_t NowMs(Table& t, Nanos now) {
    if (!t.epoch_set_) {
      t.epoch_set_ = true;
      t.epoch_ = now - 1'000'000;  // now_ms starts at 1
    }
    return static_cast<uint32_t>(static_cast<uint64_t>(now - t.epoch_) / 1'000'000);
  }
  static uint32_t NowMsConst(const Table& t, Nanos now) {
    if (!t.epoch_set_) return 1;
    return static_cast<uint32_t>(static_cast<uint64_t>(now - t.epoch_) / 1'000'000);
  }

  static uint32_t PoolAlloc(Table::Pool& p) {
    if (p.free_head != UINT32_MAX) {
      const uint32_t i = p.free_head;
      std::memcpy(&p.free_head, p.base + size_t{i} * p.record_bytes, 4);
      return i;
    }
    return p.high_water++;  // at most one record per slot: never beyond the reservation
  }
  static void PoolFree(Table::Pool& p, uint32_t i) {
    std::memcpy(p.base + size_t{i} * p.record_bytes, &p.free_head, 4);
    p.free_head = i;
  }
  static const uint8_t* V6(const Table& t, const Table::Entry& e) {
    if (!(e.flags & kEfIpv6)) return nullptr;
    return reinterpret_cast<const uint8_t*>(t.v6_pool_.base) + size_t{e.src} * kV6Record;
  }
  static TcpConn* Tcp(const Table& t, const Table::Entry& e) {
    if (e.l4proto != kProtoTcp) return nullptr;
    return reinterpret_cast<TcpConn*>(t.tcp_pool_.base + size_t{e.aux} * kTcpRecord);
  }
  static SctpConn* Sctp(const Table& t, const Table::Entry& e) {
    if (e.l4proto != kProtoSctp) return nullptr;
    return reinterpret_cast<SctpConn*>(t.sctp_pool_.base + size_t{e.aux} * kSctpRecord);
  }

  // Frees a slot and the pool records of its entry.
  static void FreeSlot(Table& t, uint32_t slot) {
    Table::Entry& e = t.entries_[slot];
    if (e.flags & kEfUsed) {
      if (e.flags & kEfIpv6) PoolFree(t.v6_pool_, e.src);
      if (e.l4proto == kProtoTcp) PoolFree(t.tcp_pool_, e.aux);
      if (e.l4proto == kProtoSctp) PoolFree(t.sctp_pool_, e.aux);
    }
    t.tags_[slot] = 0;
    e.flags = 0;
  }

  // Removes a confirmed entry.
  static void Remove(Table& t, uint32_t slot) {
    FreeSlot(t, slot);
    --t.size_;
  }

  static void DropPending(Table& t) {
    if (t.pending_slot_ != UINT32_MAX) {
      FreeSlot(t, t.pending_slot_);
      t.pending_slot_ = UINT32_MAX;
    }
  }

  static void Buckets(const Table& t, uint64_t h, uint32_t& b1, uint32_t& b2) {
    b1 = FastRange(static_cast<uint32_t>(h), t.buckets_);
    b2 = FastRange(static_cast<uint32_t>(h >> 32), t.buckets_);
    if (b2 == b1) b2 = b1 + 1 == t.buckets_ ? 0 : b1 + 1;
  }

  // Where a hash lives, its tag and two buckets: computed once per packet (a batch's
  // FlowProbe carries them through the prefetch stages into Track).
  static void Locate(const Table& t, uint64_t h, FlowProbe& w) {
    w.hash = h;
    w.tag = TagOf(h);
    Buckets(t, h, w.bucket[0], w.bucket[1]);
  }

  // Finds the live entry for `k` (located at `w`); expired ones met on the way are removed.
  static uint32_t Find(Table& t, const Key& k, const FlowProbe& w, uint32_t now_ms, int& dir) {
    const uint8_t tag = w.tag;
    for (const uint32_t bucket : w.bucket) {  // buckets_ >= 2: always two buckets
      const uint32_t base = bucket * kBucketSlots;
      for (uint32_t m = MatchTags(&t.tags_[base], tag); m != 0; m &= m - 1) {
        const uint32_t i = static_cast<uint32_t>(__builtin_ctz(m));
        Table::Entry& e = t.entries_[base + i];
        int d = MatchDir(e, V6(t, e), k);
        if (d < 0) continue;
        if (Expired(e, now_ms)) {
          Remove(t, base + i);
          ++t.stats_.expired;
          return UINT32_MAX;
        }
        dir = d;
        return base + i;
      }
    }
    return UINT32_MAX;
  }

  // Find() with `match(entry)` (the entry's direction for this packet, -1: not this
  // connection) instead of a Key: the short hit paths' lookup (MatchV4, MatchV6).
  template <typename Match>
  [[gnu::always_inline]] static uint32_t FindMatching(Table& t, const FlowProbe& w, uint32_t now_ms,
                                                      int& dir, Match match) {
    const uint8_t tag = w.tag;
    // The second bucket's tags are read whenever the first has no match (every new
    // connection, and the connections living there): ask for them now, so that the two
    // cache misses overlap instead of following each other.
    __builtin_prefetch(&t.tags_[w.bucket[1] * kBucketSlots]);
    for (const uint32_t bucket : w.bucket) {  // buckets_ >= 2: always two buckets
      const uint32_t base = bucket * kBucketSlots;
      for (uint32_t m = MatchTags(&t.tags_[base], tag); m != 0; m &= m - 1) {
        const uint32_t s = base + static_cast<uint32_t>(__builtin_ctz(m));
        const int d = match(t.entries_[s]);
        if (d < 0) continue;
        if (Expired(t.entries_[s], now_ms)) {
          Remove(t, s);
          ++t.stats_.expired;
          return UINT32_MAX;
        }
        dir = d;
        return s;
      }
    }
    return UINT32_MAX;
  }

  // Find() for an IPv4 port-protocol key (the common case; see V4Key).
  static uint32_t FindV4(Table& t, const V4Key& k, const FlowProbe& w, uint32_t now_ms, int& dir) {
    return FindMatching(t, w, now_ms, dir, [&k](const Table::Entry& e) { return MatchV4(e, k); });
  }

  // The short hit path's lookup: PrefetchEntry's slot first (almost always the
  // connection's, its entry in cache), else FindMatching. A slot freed or reused since does
  // not match (both matchers want kEfUsed and the tuple). UINT32_MAX: not found, or
  // expired at the hinted slot (left to Track, which meets it again and removes it).
  template <typename Match>
  [[gnu::always_inline]] static uint32_t FindHit(Table& t, const FlowProbe& w, uint32_t now_ms,
                                                 int& dir, Match match) {
    if (w.slot != UINT32_MAX && (dir = match(t.entries_[w.slot])) >= 0) {
      return Expired(t.entries_[w.slot], now_ms) ? UINT32_MAX : w.slot;
    }
    return FindMatching(t, w, now_ms, dir, match);
  }

  // MatchV4's counterpart for the IPv6 packet `f` of a port protocol: the entry's ports,
  // protocol and flags as one masked word (in use and IPv6 both required), the
  // destination's last 4 bytes kept in the entry, then the 28 bytes of the address record,
  // compared in place (Find's MatchDir copies the addresses out first).
  static int MatchV6(const Table& t, const Table::Entry& e, const FlowFacts& f) {
    const uint64_t proto = (uint64_t{f.l4proto} | uint64_t{kEfUsed | kEfIpv6} << 8) << 32;
    uint64_t w1;
    std::memcpy(&w1, reinterpret_cast<const char*>(&e) + 8, 8);
    w1 &= kPortWordMask;
    const bool fwd = w1 == (uint64_t{f.sport} | uint64_t{f.dport} << 16 | proto) &&
                     e.dst == Load32(f.dst.data() + 12);
    const bool rev = w1 == (uint64_t{f.dport} | uint64_t{f.sport} << 16 | proto) &&
                     e.dst == Load32(f.src.data() + 12);
    if (!fwd && !rev) return -1;
    const uint8_t* rec = V6(t, e);
    if (fwd && std::memcmp(rec, f.src.data(), 16) == 0 &&
        std::memcmp(rec + 16, f.dst.data(), 12) == 0) {
      return 0;
    }
    if (rev && std::memcmp(rec, f.dst.data(), 16) == 0 &&
        std::memcmp(rec + 16, f.src.data(), 12) == 0) {
      return 1;
    }
    return -1;
  }

  // Read-only lookup: no lazy removal. Returns the slot (also the pending one) or -1.
  static uint32_t FindConst(const Table& t, const Key& k, uint64_t h, int& dir) {
    const uint8_t tag = TagOf(h);
    uint32_t b[2];
    Buckets(t, h, b[0], b[1]);
    for (int bi = 0; bi < (t.buckets_ > 1 ? 2 : 1); ++bi) {
      const uint32_t base = b[bi] * kBucketSlots;
      for (uint32_t m = MatchTags(&t.tags_[base], tag); m != 0; m &= m - 1) {
        const uint32_t i = static_cast<uint32_t>(__builtin_ctz(m));
        int d = MatchDir(t.entries_[base + i], V6(t, t.entries_[base + i]), k);
        if (d < 0) continue;
        dir = d;
        return base + i;
      }
    }
    return UINT32_MAX;
  }

  // The pool records of the entry in `slot` (TCP window state, SCTP tags, IPv6 addresses).
  // Inlined by force: GCC 12 finds a function of loads and prefetches "pure", and removes
  // calls to a pure function that returns nothing. Called (or as a lambda), PrefetchRecordOf
  // compiled to a bare `ret` and TCP hits at 1M connections halved.
  [[gnu::always_inline]] static void PrefetchRecords(const Table& t, uint32_t slot) {
    const Table::Entry& e = t.entries_[slot];
    if (const SctpConn* sctp = Sctp(t, e)) __builtin_prefetch(sctp, 1);
    if (const TcpConn* tcp = Tcp(t, e)) {  // may span two lines too
      __builtin_prefetch(tcp, 1);
      __builtin_prefetch(reinterpret_cast<const char*>(tcp) + kTcpRecord - 1, 1);
    }
    if (const uint8_t* v6 = V6(t, e)) {  // 28 bytes: may span two lines
      __builtin_prefetch(v6);
      __builtin_prefetch(v6 + kV6Record - 1);
    }
  }

  static void PrefetchBucketEntries(const Table& t, uint32_t bucket) {
    const char* p = reinterpret_cast<const char*>(&t.entries_[bucket * kBucketSlots]);
    for (size_t off = 0; off < kBucketSlots * sizeof(Table::Entry); off += 64) {
      __builtin_prefetch(p + off);
    }
  }

  // The other bucket of the entry in slot `s`.
  static uint32_t AltBucket(const Table& t, uint32_t s) {
    uint32_t e1, e2;
    Buckets(t, HashKey(KeyOf(t.entries_[s], V6(t, t.entries_[s]))), e1, e2);
    return e1 == s / kBucketSlots ? e2 : e1;
  }
  static uint32_t FreeSlotIn(const Table& t, uint32_t bucket) {
    const uint32_t m = MatchTags(&t.tags_[bucket * kBucketSlots], 0);  // free: tag 0
    return m == 0 ? UINT32_MAX : bucket * kBucketSlots + static_cast<uint32_t>(__builtin_ctz(m));
  }
  static void Move(Table& t, uint32_t from, uint32_t to) {
    t.entries_[to] = t.entries_[from];
    t.tags_[to] = t.tags_[from];
    t.tags_[from] = 0;
    t.entries_[from].flags = 0;
  }

  // Chooses a slot for a new connection: a free one, else an expired one, else the
  // unassured one closest to expiry (early drop). UINT32_MAX: refused.
  static uint32_t Reserve(Table& t, const FlowProbe& w, uint32_t now_ms) {
    const uint32_t* b = w.bucket;
    const int nb = t.buckets_ > 1 ? 2 : 1;
    const bool full = t.size_ >= t.capacity_;
    if (!full) {
      // The first free slot of the first bucket, else of the second: most lookups then
      // end in the first bucket's tags. Free slots have tag 0: one SIMD compare per bucket.
      for (int bi = 0; bi < nb; ++bi) {
        const uint32_t base = b[bi] * kBucketSlots;
        const uint32_t m = MatchTags(&t.tags_[base], 0);
        if (m != 0) return base + static_cast<uint32_t>(__builtin_ctz(m));
      }
    }
    // Both buckets full (or the table is): reclaim an expired entry first.
    for (int bi = 0; bi < nb; ++bi) {
      for (uint32_t i = 0; i < kBucketSlots; ++i) {
        uint32_t s = b[bi] * kBucketSlots + i;
        if (t.tags_[s] != 0 && Expired(t.entries_[s], now_ms)) {
          Remove(t, s);
          ++t.stats_.expired;
          return s;
        }
      }
    }
    // Cuckoo steps: move an entry of a full bucket to its other bucket (depth 1), or make
    // room there by moving one of that bucket's entries on (depth 2). Entry references of
    // moved entries go stale (see EntryRef): connlimit keeps tuples, not references.
    // The candidates' entries are brought in together first: at 1M connections each is a
    // cache miss, and they are independent.
    if (!full) {
      for (int bi = 0; bi < nb; ++bi) PrefetchBucketEntries(t, b[bi]);
      for (int depth = 1; depth <= 2; ++depth) {
        for (int bi = 0; bi < nb; ++bi) {
          for (uint32_t i = 0; i < kBucketSlots; ++i) {
            const uint32_t s = b[bi] * kBucketSlots + i;
            const uint32_t alt = AltBucket(t, s);
            if (depth == 1) {
              const uint32_t d = FreeSlotIn(t, alt);
              if (d == UINT32_MAX) continue;
              Move(t, s, d);
              return s;
            }
            PrefetchBucketEntries(t, alt);
            for (uint32_t j = 0; j < kBucketSlots; ++j) {
              const uint32_t s2 = alt * kBucketSlots + j;
              const uint32_t alt2 = AltBucket(t, s2);
              if (alt2 == b[bi]) continue;
              const uint32_t d = FreeSlotIn(t, alt2);
              if (d == UINT32_MAX) continue;
              Move(t, s2, d);
              Move(t, s, s2);
              return s;
            }
          }
        }
      }
    }
    uint32_t victim = UINT32_MAX;
    int32_t victim_left = INT32_MAX;
    for (int bi = 0; bi < nb; ++bi) {
      for (uint32_t i = 0; i < kBucketSlots; ++i) {
        uint32_t s = b[bi] * kBucketSlots + i;
        if (t.tags_[s] == 0) continue;
        const Table::Entry& e = t.entries_[s];
        if (e.flags & kEfAssured) continue;
        int32_t left = static_cast<int32_t>(e.deadline_ms - now_ms);
        if (left < victim_left) {
          victim_left = left;
          victim = s;
        }
      }
    }
    if (victim != UINT32_MAX) {
      Remove(t, victim);
      ++t.stats_.early_drop;
    }
    return victim;
  }

  static void FillInfo(const Table& t, uint32_t slot, uint32_t now_ms, ConnInfo& info) {
    const Table::Entry& e = t.entries_[slot];
    info.ref = {slot, e.generation & 0xffffff};
    FlowFacts& f = info.original;
    f = FlowFacts{};
    f.family = (e.flags & kEfIpv6) ? 6 : 4;
    f.l4proto = e.l4proto;
    const Key k = KeyOf(e, V6(t, e));
    f.src = k.src;
    f.dst = k.dst;
    if (e.l4proto == kProtoIcmp || e.l4proto == kProtoIcmpv6) {
      f.icmp_id = e.sport;
      f.icmp_type = static_cast<uint8_t>(e.dport >> 8);
      f.icmp_code = static_cast<uint8_t>(e.dport & 0xff);
    } else {
      f.sport = e.sport;
      f.dport = e.dport;
    }
    info.proto_state = 0;
    info.state_name = "";
    if (e.l4proto == kProtoTcp) {
      info.proto_state = e.pstate;
      info.state_name = TcpStateName(static_cast<TcpState>(e.pstate));
    } else if (e.l4proto == kProtoSctp) {
      info.proto_state = e.pstate;
      info.state_name = SctpStateName(static_cast<SctpState>(e.pstate));
    }
    info.seen_reply = e.flags & kEfSeenReply;
    info.assured = e.flags & kEfAssured;
    info.tentative = slot == t.pending_slot_;
    info.expires_in = static_cast<Nanos>(static_cast<int32_t>(e.deadline_ms - now_ms)) * 1'000'000;
    info.last_seen = t.epoch_ + static_cast<Nanos>(e.last_seen_ms) * 1'000'000;
  }

  static TrackResult Track(Table& t, const PacketFacts& p, const TimeoutPolicy& timeouts, Nanos now,
                           const FlowProbe* probe);
  // Inlined into Table::Track(p, probe): called, it cost a frame and a result spilled
  // through memory on every packet.
  // kV6: the packet is IPv6. One instantiation per family, so that neither carries the
  // other's lookup code and registers.
  template <bool kV6>
  [[gnu::always_inline]] static bool TrackPortHit(Table& t, const PacketFacts& p,
                                                  const FlowProbe& w, const TimeoutPolicy& timeouts,
                                                  Nanos now, TrackResult& r);
  static TrackResult TrackError(Table& t, const PacketFacts& p, uint32_t now_ms);
  [[gnu::always_inline]] static bool PortHit(Table& t, uint32_t slot, int dir, const PacketFacts& p,
                                             const TimeoutPolicy& timeouts, uint32_t now_ms,
                                             TrackResult& r);
  // Inlined: the hit path of both lookups, where a call's argument shuffling costs more
  // than the body's duplication.
  [[gnu::always_inline]] static bool Update(Table& t, uint32_t slot, int dir, const PacketFacts& p,
                                            const TimeoutPolicy& timeouts, uint32_t now_ms,
                                            TrackResult& r);
  static TrackResult Insert(Table& t, const PacketFacts& p, const Key& k, const FlowProbe& w,
                            const TimeoutPolicy& timeouts, uint32_t now_ms);
};

namespace {

TrackResult Invalid(TableStats& s) {
  ++s.invalid;
  return Result({}, State::kInvalid, Dir::kOriginal, false, false);
}

Verdict RunTracker(Table::Entry& e, const TrackContext& ctx) {
  switch (e.l4proto) {
    case kProtoTcp:
      // Not the short path again: a live connection's packet comes here from PortHit only
      // once TcpEstablishedAck has declined it, and a new connection's can never take it.
      return TcpPacketFull(e, ctx);
    case kProtoUdp:
    case kProtoUdplite:
      return UdpPacket(e, ctx);
    case kProtoSctp:
      return SctpPacket(e, ctx);
    case kProtoIcmp:
    case kProtoIcmpv6: {
      // Only a request may create a connection (kernel valid_new); never ASSURED.
      if (ctx.is_new && ctx.dir != 0) return Verdict::kInvalid;
      const TimeoutClass c = e.l4proto == kProtoIcmp ? TimeoutClass::kIcmp : TimeoutClass::kIcmpv6;
      e.deadline_ms = ctx.now_ms + TimeoutMs(ctx.timeouts, c);
      return Verdict::kAccept;
    }
    case kProtoGre:
      if (e.flags & kEfSeenReply) {
        e.deadline_ms = ctx.now_ms + TimeoutMs(ctx.timeouts, TimeoutClass::kGreStream);
        e.flags |= kEfAssured;
      } else {
        e.deadline_ms = ctx.now_ms + TimeoutMs(ctx.timeouts, TimeoutClass::kGreUnreplied);
      }
      return Verdict::kAccept;
    default:
      e.deadline_ms = ctx.now_ms + TimeoutMs(ctx.timeouts, TimeoutClass::kGeneric);
      return Verdict::kAccept;
  }
}

}  // namespace

TrackResult TableInternals::TrackError(Table& t, const PacketFacts& p, uint32_t now_ms) {
  if (!p.icmp_error) return Invalid(t.stats_);  // the quote could not be read
  Key k;
  if (MakeKey(p.inner, k) != KeyResult::kOk) return Invalid(t.stats_);
  int quoted_dir = 0;
  FlowProbe w;
  Locate(t, HashKey(k), w);
  uint32_t slot = Find(t, k, w, now_ms, quoted_dir);
  if (slot == UINT32_MAX || slot == t.pending_slot_) return Invalid(t.stats_);
  // The error travels back to the quoted packet's sender: its destination must be the
  // quoted source (kernel: outer daddr == inner tuple's destination).
  const bool v6 = p.flow.family == 6;
  if (std::memcmp(p.flow.dst.data(), p.inner.src.data(), v6 ? 16 : 4) != 0) {
    return Invalid(t.stats_);
  }
  ++t.stats_.related;
  const Table::Entry& e = t.entries_[slot];
  return Result({slot, e.generation & 0xffffff}, State::kRelated,
                quoted_dir == 0 ? Dir::kReply : Dir::kOriginal, false, (e.flags & kEfAssured) != 0);
}

TrackResult TableInternals::Track(Table& t, const PacketFacts& p, const TimeoutPolicy& timeouts,
                                  Nanos now, const FlowProbe* probe) {
  DropPending(t);
  const uint32_t now_ms = NowMs(t, now);
  const FlowFacts& f = p.flow;
  const bool v6 = f.family == 6;
  const bool checksum_bad = p.bad_checksum && t.options_.check_checksums;

  // Non-first fragments carry no transport header: the kernel reassembles before
  // conntrack, so the engine must too; what reaches us unassembled is INVALID.
  if (p.fragment) return Invalid(t.stats_);

  switch (f.l4proto) {
    case kProtoTcp:
      if (checksum_bad || !TcpFlagsValid(p.tcp_flags)) return Invalid(t.stats_);
      break;
    case kProtoUdp:
    case kProtoUdplite:
    case kProtoSctp:
      if (checksum_bad) return Invalid(t.stats_);
      break;
    case kProtoIcmp:
      if (v6) return Invalid(t.stats_);  // ICMPv4 inside IPv6: the kernel refuses it
      if (checksum_bad || f.icmp_type > 18) return Invalid(t.stats_);
      if (IcmpIsError(f.icmp_type)) return TrackError(t, p, now_ms);
      break;
    case kProtoIcmpv6:
      if (!v6) return Invalid(t.stats_);
      if (checksum_bad) return Invalid(t.stats_);
      if (Icmpv6IsUntracked(f.icmp_type)) {
        ++t.stats_.ignored;
        return Result({}, State::kUntracked, Dir::kOriginal, false, false);
      }
      if (f.icmp_type < 128) return TrackError(t, p, now_ms);
      break;
    default:
      break;
  }

  // Look the connection up: IPv4 TCP/UDP/UDPLite/SCTP through the fast key (no Key is
  // built unless the packet starts a connection), everything else through Key.
  // A batch's probe already says where the flow lives (hash, tag, buckets).
  // The probe is read in place, not copied: a copy is written as overlapping 16- and
  // 4-byte stores, and reading a bucket back from it could not be store-forwarded (perf
  // put a fifth of Track's time at 1M connections on that one load).
  const bool located = probe != nullptr && probe->lookup;
  int dir = 0;
  TrackResult r;
  FlowProbe computed;
  if (!v6 && IsPortProto(f.l4proto)) {
    const V4Key vk = MakeV4Key(f);
    if (!located) Locate(t, HashWords(vk.a, vk.b, f.l4proto, false), computed);
    const FlowProbe& w = located ? *probe : computed;
    const uint32_t slot = FindV4(t, vk, w, now_ms, dir);
    if (slot != UINT32_MAX && PortHit(t, slot, dir, p, timeouts, now_ms, r)) return r;
    Key k;
    MakeKey(f, k);
    return Insert(t, p, k, w, timeouts, now_ms);
  }
  Key k;
  if (MakeKey(f, k) != KeyResult::kOk) return Invalid(t.stats_);
  if (!located) Locate(t, HashKey(k), computed);
  const FlowProbe& w = located ? *probe : computed;
  const uint32_t slot = Find(t, k, w, now_ms, dir);
  if (slot != UINT32_MAX) {
    const bool kept = IsPortProto(f.l4proto) ? PortHit(t, slot, dir, p, timeouts, now_ms, r)
                                             : Update(t, slot, dir, p, timeouts, now_ms, r);
    if (kept) return r;
  } else if (k.fixed_dir == 1) {
    // An ICMP reply without its request: the kernel creates no connection for it.
    return Invalid(t.stats_);
  }
  return Insert(t, p, k, w, timeouts, now_ms);
}

// The common case on its own short path: a packet of an existing TCP/UDP/UDPLite/SCTP
// connection whose flow a batch's probe located (Probe set `port_flow`: no fragment, no
// ICMP error). It decides exactly as Track does, minus the branches such a packet cannot
// take; false hands the packet to Track (a new connection, an expired entry, a checksum or
// flag error, the first packet of the clock), which starts over.
// Kept apart and small because Track's frame (its Key, the ICMP and insert paths) made every
// hit pay a large prologue and stack traffic; with it a batched UDP hit went from 440 to 347
// instructions, together with the other changes of 0f2eb66 (callgrind, BENCHMARKS.md).
// IPv6 flows take it too (kV6: MatchV6 compares the address record in place), which took a
// batched IPv6 UDP hit from 572 to 350 instructions.
template <bool kV6>
inline bool TableInternals::TrackPortHit(Table& t, const PacketFacts& p, const FlowProbe& w,
                                         const TimeoutPolicy& timeouts, Nanos now, TrackResult& r) {
  if (!t.epoch_set_) return false;
  DropPending(t);
  const FlowFacts& f = p.flow;
  if (p.bad_checksum && t.options_.check_checksums) return false;
  if (f.l4proto == kProtoTcp && !TcpFlagsValid(p.tcp_flags)) return false;
  const uint32_t now_ms = NowMs(t, now);
  int dir = 0;
  uint32_t slot;
  if constexpr (kV6) {
    slot = FindHit(t, w, now_ms, dir, [&t, &f](const Table::Entry& e) { return MatchV6(t, e, f); });
  } else {
    const V4Key k = MakeV4Key(f);
    slot = FindHit(t, w, now_ms, dir, [&k](const Table::Entry& e) { return MatchV4(e, k); });
  }
  if (slot == UINT32_MAX) return false;
  return PortHit(t, slot, dir, p, timeouts, now_ms, r);
}

// A hit of a TCP/UDP/UDPLite/SCTP connection (both lookups' port-protocol path): the TCP
// short path and UDP's refresh inline, anything else through Update. False when the
// connection was removed so that the packet starts a new one (TCP reopen).
inline bool TableInternals::PortHit(Table& t, uint32_t slot, int dir, const PacketFacts& p,
                                    const TimeoutPolicy& timeouts, uint32_t now_ms,
                                    TrackResult& r) {
  const FlowFacts& f = p.flow;
  Table::Entry& e = t.entries_[slot];
  if (f.l4proto == kProtoTcp) {
    // Most TCP packets: an in-window ACK segment of an established connection, decided
    // without the tracker context and the full state machine (TcpEstablishedAck).
    if (!TcpEstablishedAck(e, *Tcp(t, e), p, dir, now_ms, timeouts, t.options_)) {
      return Update(t, slot, dir, p, timeouts, now_ms, r);
    }
    ++t.stats_.found;
    e.last_seen_ms = now_ms;
    r = Result({slot, e.generation & 0xffffff}, State::kEstablished,
               dir == 0 ? Dir::kOriginal : Dir::kReply, false, true);
    return true;
  }
  if (f.l4proto != kProtoUdp) return Update(t, slot, dir, p, timeouts, now_ms, r);
  // UDP: Update's accept branch with the tracker inlined (a UDP packet is always accepted),
  // without the tracker context and the protocol switch.
  ++t.stats_.found;
  const State state = (dir == 1 || (e.flags & kEfSeenReply)) ? State::kEstablished : State::kNew;
  UdpRefresh(e, now_ms, timeouts);
  e.last_seen_ms = now_ms;
  if (dir == 1) e.flags |= kEfSeenReply;
  r = Result({slot, e.generation & 0xffffff}, state, dir == 0 ? Dir::kOriginal : Dir::kReply, false,
             (e.flags & kEfAssured) != 0);
  return true;
}

// A packet of the connection in `slot`, travelling in `dir`: runs its tracker. False when
// the connection was removed so that the packet starts a new one (TCP reopen).
inline bool TableInternals::Update(Table& t, uint32_t slot, int dir, const PacketFacts& p,
                                   const TimeoutPolicy& timeouts, uint32_t now_ms, TrackResult& r) {
  ++t.stats_.found;
  Table::Entry& e = t.entries_[slot];
  // The result is assigned whole at each exit, from values in registers: fields written
  // one by one into `r` and read back as one word by the caller stalled store forwarding.
  const Dir rdir = dir == 0 ? Dir::kOriginal : Dir::kReply;
  const State state = (dir == 1 || (e.flags & kEfSeenReply)) ? State::kEstablished : State::kNew;
  TrackContext ctx{p, Tcp(t, e), Sctp(t, e), timeouts, t.options_, now_ms, dir, false};
  const Verdict v = RunTracker(e, ctx);
  switch (v) {
    case Verdict::kAccept:
      e.last_seen_ms = now_ms;
      [[fallthrough]];
    case Verdict::kIgnore:
      if (dir == 1) e.flags |= kEfSeenReply;
      if (v == Verdict::kIgnore && e.l4proto == kProtoTcp) ++t.stats_.tcp_ignored;
      r = Result({slot, e.generation & 0xffffff}, state, rdir, false, (e.flags & kEfAssured) != 0);
      return true;
    case Verdict::kInvalid:
      r = Invalid(t.stats_);
      return true;
    case Verdict::kKill:
      Remove(t, slot);
      r = Result({}, state, rdir, false, false);
      return true;  // accepted as ESTABLISHED, but the connection is gone
    case Verdict::kRepeat:
      Remove(t, slot);
      return false;  // track the SYN again as a new connection
  }
  return true;
}

// A new connection (key `k`, located at `w`): a tentative entry, real only once confirmed.
TrackResult TableInternals::Insert(Table& t, const PacketFacts& p, const Key& k, const FlowProbe& w,
                                   const TimeoutPolicy& timeouts, uint32_t now_ms) {
  const uint32_t slot = Reserve(t, w, now_ms);
  if (slot == UINT32_MAX) {
    ++t.stats_.insert_failed;
    return Invalid(t.stats_);
  }
  Table::Entry& e = t.entries_[slot];
  e.sport = k.sport;
  e.dport = k.dport;
  e.l4proto = k.proto;
  e.flags = static_cast<uint8_t>(kEfUsed | (k.v6 ? kEfIpv6 : 0));
  if (k.v6) {
    e.src = PoolAlloc(t.v6_pool_);
    e.dst = Load32(k.dst.data() + 12);
    char* rec = t.v6_pool_.base + size_t{e.src} * kV6Record;
    std::memcpy(rec, k.src.data(), 16);
    std::memcpy(rec + 16, k.dst.data(), 12);
  } else {
    e.src = Load32(k.src.data());
    e.dst = Load32(k.dst.data());
  }
  e.aux = k.proto == kProtoTcp    ? PoolAlloc(t.tcp_pool_)
          : k.proto == kProtoSctp ? PoolAlloc(t.sctp_pool_)
                                  : 0;
  e.pstate = 0;
  e.tcp_last = 0;
  e.generation = t.next_generation_++ & 0xffffff;
  if (t.next_generation_ > 0xffffff) t.next_generation_ = 1;
  e.deadline_ms = now_ms;
  e.last_seen_ms = now_ms;
  TrackContext ctx{p, Tcp(t, e), Sctp(t, e), timeouts, t.options_, now_ms, 0, true};
  if (k.proto == kProtoTcp && !TcpNew(e, ctx)) {
    FreeSlot(t, slot);
    return Invalid(t.stats_);
  }
  const Verdict v = RunTracker(e, ctx);
  if (v != Verdict::kAccept) {  // a new connection's first packet cannot be ignored
    FreeSlot(t, slot);
    return Invalid(t.stats_);
  }
  t.tags_[slot] = w.tag;
  t.pending_slot_ = slot;
  ++t.stats_.new_conns;
  return Result({slot, e.generation & 0xffffff}, State::kNew, Dir::kOriginal, true,
                (e.flags & kEfAssured) != 0);
}

Table::Table(const TableOptions& options) : options_(options) {
  capacity_ = std::max<uint32_t>(options.capacity, 1);
  // 1/16 spare slots: with two-choice buckets and two-step cuckoo moves, 1M connections
  // fill a 1M table without any early drop.
  uint64_t want = static_cast<uint64_t>(capacity_) + capacity_ / 16 + kBucketSlots - 1;
  buckets_ = static_cast<uint32_t>(std::max<uint64_t>(want / kBucketSlots, 2));
  slots_ = buckets_ * kBucketSlots;
  const size_t entry_bytes = sizeof(Entry) * slots_;
  const size_t tag_bytes = sizeof(uint8_t) * slots_;
  mapping_bytes_ = entry_bytes + tag_bytes;
  mapping_ = MapOrDie(mapping_bytes_, 0);
  // Anonymous memory is zero-filled: every slot starts free.
  entries_ = static_cast<Entry*>(mapping_);
  tags_ = reinterpret_cast<uint8_t*>(static_cast<char*>(mapping_) + entry_bytes);
  // The pools: one record per slot at most (slots_ > capacity_: also the tentative entry).
  // MAP_NORESERVE: address space only; a TCP-free table never touches its TCP pool.
  for (Pool* p : {&tcp_pool_, &v6_pool_, &sctp_pool_}) {
    p->record_bytes = static_cast<uint32_t>(p == &tcp_pool_  ? kTcpRecord
                                            : p == &v6_pool_ ? kV6Record
                                                             : kSctpRecord);
    p->map_bytes = PageRound(size_t{p->record_bytes} * slots_);
    p->base = static_cast<char*>(MapOrDie(p->map_bytes, MAP_NORESERVE));
  }
}

Table::~Table() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_bytes_);
  for (Pool* p : {&tcp_pool_, &v6_pool_, &sctp_pool_}) {
    if (p->base != nullptr) munmap(p->base, p->map_bytes);
  }
}

size_t Table::ResidentBytes() const {
  return mapping_bytes_ + PageRound(size_t{tcp_pool_.high_water} * tcp_pool_.record_bytes) +
         PageRound(size_t{v6_pool_.high_water} * v6_pool_.record_bytes) +
         PageRound(size_t{sctp_pool_.high_water} * sctp_pool_.record_bytes);
}

size_t Table::ReservedBytes() const {
  return mapping_bytes_ + tcp_pool_.map_bytes + v6_pool_.map_bytes + sctp_pool_.map_bytes;
}

TrackResult Table::Track(const PacketFacts& p, const TimeoutPolicy& timeouts, Nanos now) {
  return TableInternals::Track(*this, p, timeouts, now, nullptr);
}

TrackResult Table::Track(const PacketFacts& p, const FlowProbe& probe,
                         const TimeoutPolicy& timeouts, Nanos now) {
  TrackResult r;
  if (probe.port_flow &&
      (p.flow.family == 6
           ? TableInternals::TrackPortHit<true>(*this, p, probe, timeouts, now, r)
           : TableInternals::TrackPortHit<false>(*this, p, probe, timeouts, now, r))) {
    return r;
  }
  return TableInternals::Track(*this, p, timeouts, now, &probe);
}

void Table::Confirm(const TrackResult& r, Nanos now) {
  (void)now;
  if (!r.tentative || r.entry.slot != pending_slot_ || pending_slot_ == UINT32_MAX) return;
  if ((entries_[pending_slot_].generation & 0xffffff) != r.entry.generation) return;
  pending_slot_ = UINT32_MAX;
  ++size_;
  ++stats_.confirmed;
}

void Table::Discard(const TrackResult& r) {
  if (r.tentative && r.entry.slot == pending_slot_) TableInternals::DropPending(*this);
}

size_t Table::Sweep(size_t budget, Nanos now) {
  const uint32_t now_ms = TableInternals::NowMs(*this, now);
  size_t removed = 0;
  for (size_t n = 0; n < budget && n < slots_; ++n) {
    uint32_t s = sweep_cursor_;
    sweep_cursor_ = sweep_cursor_ + 1 == slots_ ? 0 : sweep_cursor_ + 1;
    if (tags_[s] == 0 || s == pending_slot_) continue;
    if (Expired(entries_[s], now_ms)) {
      TableInternals::Remove(*this, s);
      ++stats_.expired;
      ++removed;
    }
  }
  return removed;
}

void Table::Flush() {
  std::memset(tags_, 0, sizeof(uint8_t) * slots_);
  for (uint32_t s = 0; s < slots_; ++s) entries_[s].flags = 0;
  // Give the pools' pages back: they are zero-filled again when next touched.
  for (Pool* p : {&tcp_pool_, &v6_pool_, &sctp_pool_}) {
    madvise(p->base, p->map_bytes, MADV_DONTNEED);
    p->high_water = 0;
    p->free_head = UINT32_MAX;
  }
  size_ = 0;
  pending_slot_ = UINT32_MAX;
}

bool Table::Erase(EntryRef ref) {
  if (!ref.valid() || ref.slot >= slots_ || tags_[ref.slot] == 0) return false;
  if ((entries_[ref.slot].generation & 0xffffff) != ref.generation) return false;
  if (ref.slot == pending_slot_) {
    TableInternals::DropPending(*this);
  } else {
    TableInternals::Remove(*this, ref.slot);
  }
  return true;
}

bool Table::IsLive(EntryRef ref, Nanos now) const {
  if (!ref.valid() || ref.slot >= slots_ || tags_[ref.slot] == 0 || ref.slot == pending_slot_) {
    return false;
  }
  const Entry& e = entries_[ref.slot];
  return (e.generation & 0xffffff) == ref.generation &&
         !Expired(e, TableInternals::NowMsConst(*this, now));
}

std::optional<ConnInfo> Table::Get(EntryRef ref, Nanos now) const {
  if (!ref.valid() || ref.slot >= slots_ || tags_[ref.slot] == 0) return std::nullopt;
  const Entry& e = entries_[ref.slot];
  if ((e.generation & 0xffffff) != ref.generation) return std::nullopt;
  const uint32_t now_ms = TableInternals::NowMsConst(*this, now);
  if (ref.slot != pending_slot_ && Expired(e, now_ms)) return std::nullopt;
  ConnInfo info;
  TableInternals::FillInfo(*this, ref.slot, now_ms, info);
  return info;
}

FlowProbe Table::Probe(const PacketFacts& p) const {
  FlowProbe r;
  if (p.fragment || p.icmp_error) return r;
  const FlowFacts& f = p.flow;
  if (IsPortProto(f.l4proto)) {  // as Track hashes it (V4Key; HashKey of MakeKey's Key)
    if (f.family != 6) {
      const V4Key vk = MakeV4Key(f);
      TableInternals::Locate(*this, HashWords(vk.a, vk.b, f.l4proto, false), r);
      r.record = f.l4proto == kProtoTcp || f.l4proto == kProtoSctp;
    } else {
      TableInternals::Locate(
          *this,
          HashWords(EndpointWord(f.src, f.sport), EndpointWord(f.dst, f.dport), f.l4proto, true),
          r);
      r.record = true;  // the address record
    }
    r.lookup = true;
    r.port_flow = true;
    return r;
  }
  Key k;
  if (MakeKey(f, k) != KeyResult::kOk) return r;
  TableInternals::Locate(*this, HashKey(k), r);
  r.lookup = true;
  r.record = k.v6 || k.proto == kProtoTcp || k.proto == kProtoSctp;
  return r;
}

uint32_t Table::PrefetchEntry(FlowProbe& probe) const {
  probe.slot = UINT32_MAX;
  if (!probe.lookup) return UINT32_MAX;
  // The second bucket only when the first has no candidate: most connections live in
  // their first bucket (Reserve fills it first), and a tag also matching there by chance
  // (1 in 32 lookups at full load) only costs the second bucket's entry its prefetch.
  const uint8_t tag = probe.tag;
  for (const uint32_t bucket : probe.bucket) {
    const uint32_t base = bucket * kBucketSlots;
    uint32_t m = MatchTags(&tags_[base], tag);
    if (m == 0) continue;
    const uint32_t first = base + static_cast<uint32_t>(__builtin_ctz(m));
    for (; m != 0; m &= m - 1) {
      __builtin_prefetch(&entries_[base + static_cast<uint32_t>(__builtin_ctz(m))], 1);
    }
    probe.slot = first;
    return first;
  }
  // A new connection, most likely: the slot Reserve() takes first.
  const uint32_t free_slot = TableInternals::FreeSlotIn(*this, probe.bucket[0]);
  if (free_slot != UINT32_MAX) __builtin_prefetch(&entries_[free_slot], 1);
  return UINT32_MAX;
}

void Table::PrefetchRecordOf(const FlowProbe& probe) const {
  // The entry PrefetchEntry found; without it, every entry whose tag matches.
  if (probe.slot != UINT32_MAX) return TableInternals::PrefetchRecords(*this, probe.slot);
  const uint8_t tag = probe.tag;
  for (const uint32_t bucket : probe.bucket) {
    const uint32_t base = bucket * kBucketSlots;
    for (uint32_t m = MatchTags(&tags_[base], tag); m != 0; m &= m - 1) {
      TableInternals::PrefetchRecords(*this, base + static_cast<uint32_t>(__builtin_ctz(m)));
    }
  }
}

void Table::PrefetchIndex(const PacketFacts& p) const { PrefetchIndex(Probe(p)); }
void Table::PrefetchEntry(const PacketFacts& p) const {
  FlowProbe probe = Probe(p);
  PrefetchEntry(probe);
}

std::optional<ConnInfo> Table::Lookup(const FlowFacts& f, Nanos now) const {
  Key k;
  if (MakeKey(f, k) != KeyResult::kOk) return std::nullopt;
  int dir = 0;
  uint32_t slot = TableInternals::FindConst(*this, k, HashKey(k), dir);
  if (slot == UINT32_MAX) return std::nullopt;
  const uint32_t now_ms = TableInternals::NowMsConst(*this, now);
  if (slot != pending_slot_ && Expired(entries_[slot], now_ms)) return std::nullopt;
  ConnInfo info;
  TableInternals::FillInfo(*this, slot, now_ms, info);
  return info;
}

void Table::ForEach(Nanos now, const std::function<void(const ConnInfo&)>& fn) const {
  const uint32_t now_ms = TableInternals::NowMsConst(*this, now);
  ConnInfo info;
  for (uint32_t s = 0; s < slots_; ++s) {
    if (tags_[s] == 0 || s == pending_slot_ || Expired(entries_[s], now_ms)) continue;
    TableInternals::FillInfo(*this, s, now_ms, info);
    fn(info);
  }
}

}  // namespace nwfq::ct
