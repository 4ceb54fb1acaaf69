// libFuzzer target for the connection tracker: the input is a program of packets (a few
// hosts and ports, so that packets meet each other's connections; TCP flags, sequence
// numbers near the connection's, windows, options; ICMP errors quoting earlier packets;
// fragments, bad checksums), tracked one by one or the batched way (with any slot as
// Track's hint), verdicts (confirm or discard), clock steps and table operations (sweep,
// erase, flush) on a small table, so that eviction, cuckoo moves and pool recycling run all
// the time. Checks the table's invariants after every step; ASan and UBSan (fuzz preset)
// check the rest.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "conntrack/sctp.h"
#include "conntrack/table.h"
#include "conntrack/timeouts.h"
#include "conntrack/types.h"

namespace {

using nwfq::ct::ConnInfo;
using nwfq::ct::FlowFacts;
using nwfq::ct::FlowProbe;
using nwfq::ct::Nanos;
using nwfq::ct::PacketFacts;
using nwfq::ct::State;
using nwfq::ct::Table;
using nwfq::ct::TableOptions;
using nwfq::ct::TimeoutPolicy;
using nwfq::ct::TrackResult;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool empty() const { return p_ == end_; }
  uint8_t U8() { return p_ == end_ ? 0 : *p_++; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | U8() << 8); }
  uint32_t U32() { return static_cast<uint32_t>(U16() | static_cast<uint32_t>(U16()) << 16); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

void Fail(const char* what) {
  __builtin_trap();  // libFuzzer reports the input
  (void)what;
}

// One of 4 addresses per family (198.18.0.1-4, 2001:db8::1-4).
std::array<uint8_t, 16> Addr(bool v6, uint8_t n) {
  std::array<uint8_t, 16> a{};
  if (v6) {
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = static_cast<uint8_t>(1 + (n & 3));
  } else {
    a[0] = 198;
    a[1] = 18;
    a[3] = static_cast<uint8_t>(1 + (n & 3));
  }
  return a;
}

constexpr uint8_t kProtos[] = {6, 6, 6, 17, 17, 1, 58, 132, 47, 50, 136, 253};

FlowFacts MakeFlow(Reader& in) {
  FlowFacts f;
  const uint8_t b = in.U8();
  const bool v6 = b & 1;
  f.family = v6 ? 6 : 4;
  f.l4proto = kProtos[(b >> 1) % sizeof(kProtos)];
  const uint8_t ends = in.U8();
  f.src = Addr(v6, ends);
  f.dst = Addr(v6, ends >> 2);
  f.sport = static_cast<uint16_t>(1000 + ((ends >> 4) & 3));
  f.dport = static_cast<uint16_t>(80 + ((ends >> 6) & 3));
  if (f.l4proto == 1 || f.l4proto == 58) {
    static constexpr uint8_t kIcmp[] = {8, 0, 3, 11, 13, 14, 5, 42};
    static constexpr uint8_t kIcmp6[] = {128, 129, 1, 3, 135, 136, 137, 139};
    const uint8_t t = in.U8();
    f.icmp_type = f.l4proto == 1 ? kIcmp[t & 7] : kIcmp6[t & 7];
    f.icmp_code = (t >> 3) & 1;
    f.icmp_id = (t >> 4) & 3;
    f.sport = f.dport = 0;
  }
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  const uint8_t opts = in.U8();
  Table table(TableOptions{.capacity = 8u + (opts & 0x1f),
                           .tcp_loose = (opts & 0x20) == 0,
                           .tcp_be_liberal = (opts & 0x40) != 0,
                           .tcp_ignore_invalid_rst = (opts & 0x80) != 0});
  TimeoutPolicy timeouts;
  if (in.U8() & 1) (void)timeouts.Set("icmp", 1 + in.U8() % 60);
  Nanos now = nwfq::ct::kNanosPerSecond;
  uint32_t seq_base[2] = {in.U32(), in.U32()};
  PacketFacts last;  // the previous packet, for ICMP errors to quote
  while (!in.empty()) {
    const uint8_t op = in.U8();
    switch (op >> 5) {
      case 0:  // clock step: up to ~4.5 days in coarse steps, ms in fine ones
        now += (op & 0x10) ? static_cast<Nanos>(in.U16()) * 6 * nwfq::ct::kNanosPerSecond
                           : static_cast<Nanos>(in.U16()) * 1'000'000;
        continue;
      case 1:
        table.Sweep(1 + in.U8(), now);
        continue;
      case 2:
        if ((op & 0x1f) == 0) {
          table.Flush();
          if (table.size() != 0 || table.ResidentBytes() != table.MemoryBytes()) Fail("flush");
        } else {
          table.Erase({static_cast<uint32_t>(in.U16() % (table.slot_count() + 1)), in.U32()});
        }
        continue;
      default:
        break;
    }
    PacketFacts p;
    p.flow = MakeFlow(in);
    const uint8_t f = in.U8();
    p.tcp_flags = static_cast<uint8_t>(f & 0x3f);
    const bool dir = f & 0x40;
    p.tcp_seq = seq_base[dir] + (in.U16() & 0x3ff);
    p.tcp_ack = seq_base[!dir] + (in.U16() & 0x3ff);
    p.tcp_window = in.U16();
    const uint8_t o = in.U8();
    p.tcp_wscale = (o & 0x10) ? static_cast<uint8_t>(o & 0xf) : 0xff;
    p.tcp_sack_perm = o & 0x20;
    p.tcp_sack_present = o & 0x40;
    p.tcp_sack_edge = p.tcp_ack + (in.U8() & 0x7f);
    p.payload_len = in.U8() & 0x7f;
    if (o & 0x80) seq_base[dir] += p.payload_len;
    {  // SCTP: up to 24 bytes of chunks, walked as the parser does; a small tag
      uint8_t chunks[24];
      const size_t n = in.U8() % (sizeof chunks + 1);
      for (size_t i = 0; i < n; ++i) chunks[i] = in.U8();
      p.sctp = nwfq::ct::WalkSctpChunks(chunks, n, n);
      p.sctp_vtag = in.U8() & 3;
    }
    p.fragment = (f & 0x80) && (o & 0x8) && (o & 0x4);
    p.bad_checksum = (o & 0x7) == 7;
    if ((p.flow.l4proto == 1 && p.flow.icmp_type != 0 && p.flow.icmp_type != 8) ||
        (p.flow.l4proto == 58 && p.flow.icmp_type < 128)) {
      p.icmp_error = (op & 1) == 0;
      p.inner = last.flow;
      if (op & 2) p.flow.dst = p.inner.src;  // a well-addressed error
    }
    TrackResult r;
    if (op & 0x4) {
      // The batched way: Probe, the prefetch stages, Track(p, probe). The slot hint is the
      // one PrefetchEntry found or, as a stale hint would be, any slot at all.
      FlowProbe w = table.Probe(p);
      table.PrefetchIndex(w);
      table.PrefetchEntry(w);
      if (op & 0x8) w.slot = in.U16() % table.slot_count();
      table.PrefetchRecord(w);
      r = table.Track(p, w, timeouts, now);
    } else {
      r = table.Track(p, timeouts, now);
    }
    const bool accept = op & 0x10;
    if (r.tentative && !r.entry.valid()) Fail("tentative without entry");
    if ((r.state == State::kInvalid || r.state == State::kUntracked) && r.entry.valid()) {
      Fail("entry for an invalid packet");
    }
    if (r.tentative && !table.Lookup(p.flow, now).has_value()) Fail("tentative not found");
    if (accept) {
      table.Confirm(r, now);
      if (r.tentative && !table.IsLive(r.entry, now)) Fail("confirmed entry not live");
    } else {
      table.Discard(r);
    }
    if (table.size() > table.capacity()) Fail("over capacity");
    if (table.ResidentBytes() > table.ReservedBytes()) Fail("pool beyond its reservation");
    uint32_t listed = 0;
    table.ForEach(now, [&](const ConnInfo& c) {
      ++listed;
      if (!table.Get(c.ref, now).has_value()) Fail("listed connection not gettable");
      const std::optional<ConnInfo> again = table.Lookup(c.original, now);
      if (!again || again->ref.slot != c.ref.slot) Fail("listed connection not found by tuple");
    });
    if (listed > table.size()) Fail("more listed than stored");
    last = p;
  }
  return 0;
}
