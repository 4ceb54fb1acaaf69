#include "engine/defrag.h"

#include <algorithm>
#include <cstring>

namespace nwfq::engine {
namespace {

inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline void Put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// Ones'-complement sum of big-endian 16-bit words; `p` starts a word of the summed data
// (every fragment's payload starts at an offset that is a multiple of 8).
uint64_t Sum16(const uint8_t* p, size_t n, uint64_t acc = 0) {
  size_t i = 0;
  for (; i + 1 < n; i += 2) acc += Be16(p + i);
  if (i < n) acc += uint64_t{p[i]} << 8;
  return acc;
}

uint16_t Fold(uint64_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(acc);
}

// ECN codepoint of an IPv4 TOS / IPv6 traffic class as the bit ip_frag_ecn_table indexes
// (IPFRAG_ECN_NOT_ECT 1, ECT_1 2, ECT_0 4, CE 8).
uint8_t EcnBit(uint8_t tos) { return static_cast<uint8_t>(1u << (tos & 3)); }

bool IsExt(uint8_t nh) { return nh == 0 || nh == 43 || nh == 60 || nh == 51; }
size_t ExtLen(uint8_t nh, const uint8_t* p) {
  return nh == 51 ? (p[1] + 2u) * 4u : (p[1] + 1u) * 8u;
}

}  // namespace

std::string_view FragDropName(FragDrop d) {
  switch (d) {
    case FragDrop::kNone:
      return "none";
    case FragDrop::kDuplicate:
      return "duplicate";
    case FragDrop::kOverlap:
      return "overlap";
    case FragDrop::kBadLength:
      return "bad-length";
    case FragDrop::kOversize:
      return "oversize";
    case FragDrop::kBadEcn:
      return "bad-ecn";
    case FragDrop::kTimeout:
      return "timeout";
    case FragDrop::kNoMemory:
      return "no-memory";
    case FragDrop::kTruncatedFirst:
      return "truncated-first";
    case FragDrop::kUnsupported:
      return "unsupported";
    case FragDrop::kIncomplete:
      return "incomplete datagram";
    case FragDrop::kBindingRemoved:
      return "binding-removed";
    case FragDrop::kCount:
      break;
  }
  return "?";
}

// One datagram being reassembled.
struct Defragmenter::Queue {
  bool used = false;
  uint8_t family = 0, proto = 0;
  uint32_t id = 0;
  std::array<uint8_t, 16> src{}, dst{};
  ct::Nanos expires = 0;  // creation + timeout, never extended (as the kernel's timer)
  bool first_in = false, last_in = false;
  uint32_t len = 0;   // q.len: the end of the datagram's payload as known so far
  uint32_t meat = 0;  // q.meat: payload bytes queued
  bool sum_known = true;
  uint64_t sum = 0;  // ones'-complement sum of the queued payload bytes
  uint8_t ecn = 0;
  int32_t head = -1;     // fragments sorted by offset (Frag::next)
  int32_t tail = -1;     // the fragment with the highest offset (fragments_tail)
  uint16_t hdr_len = 0;  // first fragment: IPv4 header / IPv6 unfragmentable part
  uint16_t nh_pos = 0;   // IPv6: the next-header byte that names the fragment header
  uint8_t frag_nh = 0;   // IPv6: the fragment header's next header
  uint64_t have = 0;     // prefix blocks of 8 bytes captured (bit k = bytes [8k, 8k+8))
  std::array<uint8_t, kMaxHeader> hdr{};
  std::array<uint8_t, kPrefix> prefix{};
};
static_assert(Defragmenter::kPrefix / 8 <= 64, "one bit per prefix block");

struct Defragmenter::Frag {
  uint32_t offset = 0, end = 0;
  uint64_t token = 0;
  int32_t next = -1;
  bool run_start = false;  // begins a run of contiguous fragments (inet_frag's frag runs)
};

Defragmenter::Defragmenter(const DefragOptions& options) : options_(options) {}
Defragmenter::~Defragmenter() = default;

void Defragmenter::Allocate() {
  queues_ = std::make_unique<Queue[]>(options_.max_queues);
  frags_ = std::make_unique<Frag[]>(options_.max_fragments);
  for (uint32_t i = 0; i < options_.max_fragments; ++i)
    frags_[i].next = i + 1 < options_.max_fragments ? static_cast<int32_t>(i + 1) : -1;
  free_frag_ = options_.max_fragments > 0 ? 0 : -1;
  released_.reserve(options_.max_fragments);
  out_.reserve(kMaxHeader + kPrefix);
}

// Linear: at most max_queues entries, and only fragments come here.
Defragmenter::Queue* Defragmenter::Find(const PacketView& v) {
  if (live_queues_ == 0) return nullptr;
  for (uint32_t i = 0; i < options_.max_queues; ++i) {
    Queue& q = queues_[i];
    if (q.used && q.id == v.frag_id && q.family == v.family &&
        (v.family != 4 || q.proto == v.l4proto) && q.src == v.src_ip && q.dst == v.dst_ip)
      return &q;
  }
  return nullptr;
}

Defragmenter::Queue* Defragmenter::Create(const PacketView& v, ct::Nanos now) {
  for (uint32_t i = 0; i < options_.max_queues; ++i) {
    Queue& q = queues_[i];
    if (q.used) continue;
    q.used = true;
    q.family = v.family;
    q.proto = v.l4proto;
    q.id = v.frag_id;
    q.src = v.src_ip;
    q.dst = v.dst_ip;
    q.expires = now + (v.family == 4 ? options_.timeout_v4 : options_.timeout_v6);
    q.first_in = q.last_in = false;
    q.len = q.meat = 0;
    q.sum_known = true;
    q.sum = 0;
    q.ecn = 0;
    q.head = q.tail = -1;
    q.hdr_len = 0;
    q.have = 0;
    ++live_queues_;
    return &q;
  }
  return nullptr;
}

void Defragmenter::Kill(Queue& q, int32_t skip) {
  for (int32_t i = q.head; i >= 0;) {
    Frag& f = frags_[i];
    if (i != skip) released_.push_back(f.token);
    const int32_t next = f.next;
    f.next = free_frag_;
    free_frag_ = i;
    --live_frags_;
    i = next;
  }
  q.head = q.tail = -1;
  q.used = false;
  --live_queues_;
}

void Defragmenter::Expire(ct::Nanos now, bool all, FragDrop why_all,
                          absl::FunctionRef<void(uint64_t, FragDrop)> out) {
  if (live_queues_ == 0) return;
  for (uint32_t i = 0; i < options_.max_queues; ++i) {
    Queue& q = queues_[i];
    if (!q.used || (!all && now < q.expires)) continue;
    released_.clear();
    Kill(q);
    for (uint64_t t : released_) out(t, all ? why_all : FragDrop::kTimeout);
  }
  released_.clear();
}

Defragmenter::Result Defragmenter::Add(const PacketView& v, std::span<const uint8_t> ip,
                                       bool sum_ok, uint64_t token, ct::Nanos now) {
  released_.clear();
  Result r;
  auto drop_alone = [&](FragDrop why) {
    r.kind = Kind::kDropped;
    r.drop = why;
    return r;
  };
  const size_t cap = std::min<size_t>(ip.size(), v.ip_len);
  // Where the fragmentable payload starts: after the IPv4 header, or after the IPv6
  // fragment header (the extension headers before it are the unfragmentable part).
  size_t pstart = 0, nh_pos = 0;
  uint8_t frag_nh = 0;
  if (v.family == 4) {
    pstart = (ip[0] & 0x0f) * 4u;
  } else {
    uint8_t nh = ip[6];
    size_t off = 40;
    nh_pos = 6;
    while (IsExt(nh)) {
      if (off + 8 > cap) return drop_alone(FragDrop::kUnsupported);
      const size_t len = ExtLen(nh, ip.data() + off);
      nh_pos = off;
      nh = ip[off];
      off += len;
    }
    if (nh != 44 || off + 8 > cap) return drop_alone(FragDrop::kUnsupported);
    frag_nh = ip[off];
    pstart = off + 8;
  }
  if (pstart > v.ip_len || pstart > cap) return drop_alone(FragDrop::kBadLength);
  const uint32_t offset = v.frag_offset;
  uint32_t end = offset + static_cast<uint32_t>(v.ip_len - pstart);
  const size_t cap_payload = cap - pstart;

  if (v.family == 6) {
    // nf_ct_frag6_gather: a first fragment must hold every header up to and including the
    // upper-layer header (RFC 8200 section 4.5); such a fragment is not reassembled.
    if (offset == 0) {
      uint8_t nh = frag_nh;
      size_t off = pstart;
      while (IsExt(nh) && off + 8 <= cap) {
        const size_t len = ExtLen(nh, ip.data() + off);
        nh = ip[off];
        off += len;
      }
      const size_t need = nh == kProtoTcp ? 20 : nh == kProtoUdp ? 8 : nh == kProtoIcmpv6 ? 8 : 1;
      if (IsExt(nh) || off + need > v.ip_len) return drop_alone(FragDrop::kTruncatedFirst);
    }
    if (end > 65535) return drop_alone(FragDrop::kOversize);  // IPV6_MAXPLEN
  }
  if (pstart > kMaxHeader && offset == 0) return drop_alone(FragDrop::kUnsupported);

  if (queues_ == nullptr) Allocate();
  Queue* q = Find(v);
  if (q == nullptr) {
    q = Create(v, now);
    if (q == nullptr) return drop_alone(FragDrop::kNoMemory);
  }
  auto kill = [&](FragDrop why) {
    Kill(*q);
    r.kind = Kind::kDropped;
    r.drop = why;
    r.released = released_;
    return r;
  };

  // ip_frag_queue / nf_ct_frag6_queue: the fragment's place and the datagram's end.
  if (!v.more_fragments) {
    if (end < q->len || (q->last_in && end != q->len)) return kill(FragDrop::kBadLength);
    q->last_in = true;
    q->len = end;
  } else {
    if (end & 7) {
      // IPv4 trims a non-last fragment to 8 bytes; IPv6 requires the multiple (RFC 8200).
      if (v.family == 6) return kill(FragDrop::kBadLength);
      end &= ~7u;
    }
    if (end > q->len) {
      if (q->last_in) return kill(FragDrop::kBadLength);
      q->len = end;
    }
  }
  if (end == offset) return kill(FragDrop::kBadLength);

  // inet_frag_queue_insert: a fragment past the tail run extends it (or starts a new run)
  // unless it overlaps; otherwise it must fall in a hole (a new run), or inside a run (a
  // duplicate, dropped alone); anything else overlaps.
  bool run_start = true;
  int32_t prev = -1;  // insert after this fragment (-1: at the head)
  if (q->tail >= 0 && frags_[q->tail].end < end) {
    const Frag& t = frags_[q->tail];
    if (offset < t.end) return kill(FragDrop::kOverlap);
    run_start = offset != t.end;
    prev = q->tail;
  } else if (q->tail >= 0) {
    // Walk the runs in order; remember the last fragment before the new one.
    int32_t i = q->head;
    while (i >= 0) {
      const uint32_t run_off = frags_[i].offset;
      int32_t last = i;
      while (frags_[last].next >= 0 && !frags_[frags_[last].next].run_start)
        last = frags_[last].next;
      const uint32_t run_end = frags_[last].end;
      if (end <= run_off) break;
      if (offset >= run_end) {
        prev = last;
        i = frags_[last].next;
        continue;
      }
      if (offset >= run_off && end <= run_end) {
        r.kind = Kind::kDropped;  // IPFRAG_DUP: the queue keeps its fragments
        r.drop = FragDrop::kDuplicate;
        return r;
      }
      return kill(FragDrop::kOverlap);
    }
  }
  if (free_frag_ < 0) {
    // Memory limit: the kernel refuses fragments above high_thresh. A queue created for
    // this fragment alone is freed again.
    if (q->head < 0) Kill(*q);
    released_.clear();
    return drop_alone(FragDrop::kNoMemory);
  }
  const int32_t fi = free_frag_;
  Frag& f = frags_[fi];
  free_frag_ = f.next;
  ++live_frags_;
  f.offset = offset;
  f.end = end;
  f.token = token;
  f.run_start = run_start;
  if (prev < 0) {
    f.next = q->head;
    q->head = fi;
  } else {
    f.next = frags_[prev].next;
    frags_[prev].next = fi;
  }
  if (q->tail < 0 || frags_[q->tail].end < end) q->tail = fi;
  q->meat += end - offset;
  q->ecn |= EcnBit(v.tos);

  // The first bytes of the payload, and the checksum input.
  const size_t copy_end = std::min<size_t>({end, offset + cap_payload, kPrefix});
  if (offset < copy_end) {
    std::memcpy(q->prefix.data() + offset, ip.data() + pstart, copy_end - offset);
    for (size_t k = offset / 8; 8 * k < copy_end; ++k) {
      if (copy_end >= std::min<size_t>(8 * k + 8, end)) q->have |= uint64_t{1} << k;
    }
  }
  if (sum_ok && cap_payload >= end - offset) {
    q->sum += Sum16(ip.data() + pstart, end - offset);
  } else {
    q->sum_known = false;
  }
  if (offset == 0) {
    q->first_in = true;
    q->hdr_len = static_cast<uint16_t>(v.family == 4 ? pstart : pstart - 8);
    std::memcpy(q->hdr.data(), ip.data(), q->hdr_len);
    q->nh_pos = static_cast<uint16_t>(nh_pos);
    q->frag_nh = frag_nh;
  }
  if (q->first_in && q->last_in && q->meat == q->len) {
    return Complete(*q, fi);  // this fragment is the caller's; the others are released
  }
  r.kind = Kind::kHeld;
  return r;
}

Defragmenter::Result Defragmenter::Complete(Queue& q, int32_t self) {
  Result r;
  // ip_frag_reasm: invalid ECN mix and oversize datagrams fail (the queue is killed).
  const bool bad_ecn = (q.ecn & 1) && (q.ecn & 0x0e);
  const bool oversize =
      q.family == 4 ? q.hdr_len + q.len > 65535u : q.hdr_len - 40u + q.len > 65535u;
  const uint16_t hdr_len = q.hdr_len;
  const uint32_t len = q.len;
  const bool sum_known = q.sum_known;
  const uint64_t sum = q.sum;
  Kill(q, self);  // released_: every other fragment's token
  r.kind = bad_ecn || oversize ? Kind::kDropped : Kind::kComplete;
  r.drop = bad_ecn ? FragDrop::kBadEcn : oversize ? FragDrop::kOversize : FragDrop::kNone;
  if (r.kind == Kind::kDropped) {
    r.released = released_;
    return r;
  }
  out_.assign(q.hdr.begin(), q.hdr.begin() + hdr_len);
  if (q.family == 4) {
    Put16(out_.data() + 2, hdr_len + len);
    Put16(out_.data() + 6, 0);    // MF and offset cleared (DF is of no interest to rules)
    if (q.ecn & 8) out_[1] |= 3;  // CE survives reassembly (ip_frag_ecn_table)
    Put16(out_.data() + 10, 0);
    Put16(out_.data() + 10, static_cast<uint16_t>(~Fold(Sum16(out_.data(), hdr_len))));
  } else {
    Put16(out_.data() + 4, hdr_len - 40u + len);
    out_[q.nh_pos] = q.frag_nh;  // the fragment header is gone
    if (q.ecn & 8) out_[1] |= 0x30;
  }
  size_t have = 0;
  for (size_t k = 0; k < kPrefix / 8 && (q.have >> k & 1); ++k)
    have = std::min<size_t>(8 * k + 8, len);
  out_.insert(out_.end(), q.prefix.begin(), q.prefix.begin() + have);
  r.datagram = out_;
  r.datagram_len = hdr_len + len;
  r.payload_offset = hdr_len;
  r.sum_known = sum_known;
  r.payload_sum = sum;
  r.released = released_;
  return r;
}

int DatagramChecksum(const PacketView& v, std::span<const uint8_t> datagram,
                     uint16_t payload_offset, uint64_t payload_sum) {
  const size_t l4 = size_t{v.l4_offset} - v.l3_offset;
  if (!v.has_l4 || l4 < payload_offset || l4 > datagram.size() || v.ip_len < l4) return -1;
  const uint32_t n = static_cast<uint32_t>(v.ip_len - l4);  // transport bytes
  // The payload's sum minus the extension headers that follow an IPv6 fragment header
  // (whole 8-byte units, so the subtraction is exact): the transport part's sum.
  uint64_t acc = payload_sum;
  if (l4 > payload_offset)
    acc =
        uint64_t{Fold(acc)} +
        static_cast<uint16_t>(~Fold(Sum16(datagram.data() + payload_offset, l4 - payload_offset)));
  const uint8_t* t = datagram.data() + l4;
  auto pseudo = [&](uint8_t proto, uint32_t len) {
    uint64_t s = 0;
    const size_t alen = v.family == 4 ? 4 : 16;
    s = Sum16(v.src_ip.data(), alen, s);
    s = Sum16(v.dst_ip.data(), alen, s);
    return s + proto + (len >> 16) + (len & 0xffff);
  };
  switch (v.l4proto) {
    case kProtoTcp:
      return Fold(acc + pseudo(kProtoTcp, n)) == 0xffff;
    case kProtoIcmp:
      return Fold(acc) == 0xffff;
    case kProtoIcmpv6:
      return Fold(acc + pseudo(kProtoIcmpv6, n)) == 0xffff;
    case kProtoUdp:
    case kProtoUdplite: {
      if (datagram.size() < l4 + 8) return -1;
      const uint16_t len = Be16(t + 4);
      if (v.l4proto == kProtoUdp) {
        // As conntrack's udp_error (nf_conntrack_proto_udp.c): a length beyond the payload
        // or below the header is an error; a zero checksum means none (IPv6 too: conntrack
        // does not refuse it); otherwise nf_checksum() sums the WHOLE payload (skb->len -
        // dataoff, also in the pseudo-header), not `len` bytes: bytes after the UDP length
        // make the datagram INVALID unless they happen to sum to zero.
        if (len < 8 || len > n) return 0;
        if (Be16(t + 6) == 0) return -1;
        return Fold(acc + pseudo(kProtoUdp, n)) == 0xffff;
      }
      // UDPLite: full coverage (0 or the whole) only.
      if (len != 0 && len != n) return -1;
      return Fold(acc + pseudo(v.l4proto, n)) == 0xffff;
    }
    default:
      return -1;  // SCTP (CRC32c) and protocols without a checksum conntrack verifies
  }
}

}  // namespace nwfq::engine
