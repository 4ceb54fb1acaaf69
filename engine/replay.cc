#include "engine/replay.h"

#include <pcap/pcap.h>

#include <cstring>
#include <deque>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/packet_view.h"

namespace nwfq::engine {
namespace {

uint32_t Rd32(const uint8_t* p, bool swap) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return swap ? __builtin_bswap32(v) : v;
}
uint16_t Rd16(const uint8_t* p, bool swap) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return swap ? __builtin_bswap16(v) : v;
}

bool IsHostAddr(const PacketView& v, const ReplayOptions& o) {
  for (size_t i = 0; i < o.host_addrs.size(); ++i) {
    if (o.host_families[i] != v.family) continue;
    const size_t n = v.family == 4 ? 4 : 16;
    if (std::memcmp(o.host_addrs[i].data(), v.dst_ip.data(), n) == 0) return true;
  }
  return false;
}

// Linux cooked captures (`tcpdump -i vnet0 -y LINUX_SLL2`, or any capture on "any"): the
// header keeps the sender's MAC, the protocol and the packet type, not the destination
// MAC. The frame is rebuilt as Ethernet so that layer-2 rules see what they can: source
// MAC from the header, destination MAC as the packet type implies it (broadcast; an IP
// multicast group's MAC; the VM's MAC for a frame sent to it; zero when unknowable, i.e.
// a unicast frame from the VM). The packet type also gives the direction on a tap: a frame
// the host sends (PACKET_OUTGOING) goes to the VM, any other came from it.
constexpr uint16_t kPacketOutgoing = 4;
constexpr uint16_t kPacketBroadcast = 1;
constexpr uint16_t kPacketMulticast = 2;

struct CookedFrame {
  std::vector<uint8_t> ethernet;
  bool outgoing = false;
};

bool CookedToEthernet(std::span<const uint8_t> rec, int dlt, const std::array<uint8_t, 6>& vm_mac,
                      CookedFrame& out) {
  auto be16 = [&](size_t o) { return static_cast<uint16_t>(rec[o] << 8 | rec[o + 1]); };
  const size_t hdr = dlt == DLT_LINUX_SLL2 ? 20 : 16;
  if (rec.size() < hdr) return false;
  uint16_t pkttype, hatype, halen, proto;
  size_t addr;
  if (dlt == DLT_LINUX_SLL2) {
    proto = be16(0);
    hatype = be16(8);
    pkttype = rec[10];
    halen = rec[11];
    addr = 12;
  } else {
    pkttype = be16(0);
    hatype = be16(2);
    halen = be16(4);
    proto = be16(14);
    addr = 6;
  }
  const std::span<const uint8_t> payload = rec.subspan(hdr);
  std::array<uint8_t, 6> src{}, dst{};
  if (hatype == 1 && halen == 6) std::memcpy(src.data(), rec.data() + addr, 6);  // ARPHRD_ETHER
  if (pkttype == kPacketOutgoing) {
    dst = vm_mac;
  } else if (pkttype == kPacketBroadcast) {
    dst.fill(0xff);
  } else if (pkttype == kPacketMulticast && proto == 0x0800 && payload.size() >= 20) {
    dst = {0x01, 0x00, 0x5e, static_cast<uint8_t>(payload[17] & 0x7f), payload[18], payload[19]};
  } else if (pkttype == kPacketMulticast && proto == 0x86dd && payload.size() >= 40) {
    dst = {0x33, 0x33, payload[36], payload[37], payload[38], payload[39]};
  }
  // Protocol 4 is an 802.2 LLC frame (STP and the like): an 802.3 length field instead.
  const uint16_t type_or_len = proto == 0x0004 ? static_cast<uint16_t>(payload.size()) : proto;
  out.ethernet.clear();
  out.ethernet.insert(out.ethernet.end(), dst.begin(), dst.end());
  out.ethernet.insert(out.ethernet.end(), src.begin(), src.end());
  out.ethernet.push_back(static_cast<uint8_t>(type_or_len >> 8));
  out.ethernet.push_back(static_cast<uint8_t>(type_or_len));
  out.ethernet.insert(out.ethernet.end(), payload.begin(), payload.end());
  out.outgoing = pkttype == kPacketOutgoing;
  return true;
}

}  // namespace

std::string CtStateText(const Decision& d) {
  if (!d.ct_looked_at) return "-";
  const char* dir = d.ct_dir == ct::Dir::kOriginal ? "ORIGINAL" : "REPLY";
  switch (d.ct_state) {
    case ct::State::kNew:
      return absl::StrCat("NEW/", dir);
    case ct::State::kEstablished:
      return absl::StrCat("ESTABLISHED/", dir);
    case ct::State::kRelated:
      return absl::StrCat("RELATED/", dir);
    case ct::State::kInvalid:
      return "INVALID";
    case ct::State::kUntracked:
      return "UNTRACKED";
  }
  return "-";
}

std::string_view VerdictText(Verdict v) {
  switch (v) {
    case Verdict::kAccept:
      return "accept";
    case Verdict::kDrop:
      return "drop";
    case Verdict::kReject:
      return "reject";
  }
  return "?";
}

std::string_view ViewText(View v) {
  switch (v) {
    case View::kFromVm:
      return "from-vm";
    case View::kToVm:
      return "to-vm";
    case View::kVmToHost:
      return "to-host";
  }
  return "?";
}

absl::StatusOr<std::vector<uint8_t>> ReadPcapngDirections(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> dirs;
  if (data.size() < 12 || Rd32(data.data(), false) != 0x0A0D0D0A) return dirs;  // classic pcap
  bool swap = false;
  size_t off = 0;
  while (off + 12 <= data.size()) {
    const uint8_t* b = data.data() + off;
    uint32_t type = Rd32(b, swap);
    if (type == 0x0A0D0D0A) {  // section header: byte order from the magic
      const uint32_t magic = Rd32(b + 8, false);
      swap = magic == 0x4D3C2B1A;
      type = 0x0A0D0D0A;
    }
    const uint32_t len = Rd32(b + 4, swap);
    if (len < 12 || off + len > data.size()) break;
    if (type == 6 && len >= 32) {  // enhanced packet block
      const uint32_t caplen = Rd32(b + 20, swap);
      size_t opt = 28 + ((caplen + 3u) & ~3u);
      uint8_t dir = 0;
      while (opt + 4 <= len - 4) {
        const uint16_t code = Rd16(b + opt, swap), olen = Rd16(b + opt + 2, swap);
        if (code == 0) break;
        if (code == 2 && olen == 4 && opt + 8 <= len) dir = Rd32(b + opt + 4, swap) & 3u;
        opt += 4 + ((olen + 3u) & ~3u);
      }
      dirs.push_back(dir);
    } else if (type == 3 || type == 2) {  // simple packet / obsolete packet block
      dirs.push_back(0);
    }
    off += len;
  }
  return dirs;
}

absl::StatusOr<ReplaySummary> Replay(Engine& engine, const InstantiatedBinding& binding,
                                     const std::string& pcap_path, std::ostream& csv,
                                     const ReplayOptions& options) {
  absl::StatusOr<std::vector<uint8_t>> dirs = ReadPcapngDirections(pcap_path);
  if (!dirs.ok()) return dirs.status();
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* pcap = pcap_open_offline(pcap_path.c_str(), err);
  if (pcap == nullptr) return absl::InvalidArgumentError(absl::StrCat(pcap_path, ": ", err));
  struct Closer {
    pcap_t* p;
    ~Closer() { pcap_close(p); }
  } closer{pcap};
  const int dlt = pcap_datalink(pcap);
  const bool raw_ip = dlt == DLT_RAW || dlt == DLT_IPV4 || dlt == DLT_IPV6;
  const bool cooked = dlt == DLT_LINUX_SLL || dlt == DLT_LINUX_SLL2;
  if (dlt != DLT_EN10MB && !raw_ip && !cooked) {
    return absl::InvalidArgumentError(absl::StrCat(
        pcap_path, ": link type ", pcap_datalink_val_to_name(pcap_datalink(pcap)),
        " is not one replay reads (Ethernet, Linux cooked SLL/SLL2 or raw IP, taken on the "
        "VM's tap)"));
  }
  CookedFrame cooked_frame;
  csv << "index,time,direction,verdict,rule,ctstate\n";
  ReplaySummary sum;
  ct::Nanos last = 0;
  pcap_pkthdr* hdr = nullptr;
  const u_char* bytes = nullptr;
  std::string explanation;
  // Rows wait here, in frame order, while a held fragment's verdict is not known (its
  // datagram incomplete); a row is written once it and every row before it are decided.
  struct Pending {
    bool ready = false;
    Decision d;
    View view = View::kFromVm;
    int64_t micros = 0;  // capture time; formatted when written (rows may wait long)
    std::string explanation;
  };
  std::deque<Pending> pending;
  uint64_t next_row = 0;  // frame index of pending.front()
  ct::Nanos next_expiry = 0;
  std::vector<Released> released;
  auto write = [&](uint64_t index, const Pending& p) {
    const Decision& d = p.d;
    const int64_t us = p.micros < 0 ? -p.micros : p.micros;
    const std::string time =
        absl::StrFormat("%s%d.%06d", p.micros < 0 ? "-" : "", us / 1'000'000, us % 1'000'000);
    switch (d.verdict) {
      case Verdict::kAccept:
        ++sum.accepted;
        break;
      case Verdict::kDrop:
        ++sum.dropped;
        break;
      case Verdict::kReject:
        ++sum.rejected;
        break;
    }
    if (d.reason == Reason::kMalformed) ++sum.malformed;
    std::string rule = "-";
    if (d.rule >= 0 && static_cast<size_t>(d.rule) < binding.rules.size()) {
      const RuleOrigin& o = binding.rules[static_cast<size_t>(d.rule)].origin;
      rule = absl::StrCat(o.filter, ":", o.line);
    }
    csv << index << ',' << time << ',' << ViewText(p.view) << ',' << VerdictText(d.verdict) << ','
        << rule << ',' << CtStateText(d) << '\n';
    if (options.explain && options.explain_out != nullptr) {
      *options.explain_out << "frame " << index << " " << time << " " << ViewText(p.view) << " -> "
                           << VerdictText(d.verdict) << " (rule " << rule << ", ct "
                           << CtStateText(d) << ")";
      if (d.reason == Reason::kMalformed)
        *options.explain_out << " malformed: " << MalformedName(d.malformed);
      if (d.frag != FragDrop::kNone) *options.explain_out << " fragment: " << FragDropName(d.frag);
      if (d.reassembled) *options.explain_out << " (reassembled datagram)";
      *options.explain_out << "\n" << p.explanation;
    }
  };
  // Marks the released fragments decided (by frame `by`) and writes the rows now ready.
  auto settle = [&](uint64_t by) {
    engine.TakeReleased(&released);
    for (const Released& r : released) {
      if (r.token < next_row || r.token - next_row >= pending.size()) continue;
      Pending& p = pending[r.token - next_row];
      p.ready = true;
      p.d = r.decision;
      if (options.explain && r.decision.reassembled)
        p.explanation = absl::StrCat("  fragment of the datagram decided with frame ", by, "\n");
    }
    while (!pending.empty() && pending.front().ready) {
      write(next_row++, pending.front());
      pending.pop_front();
    }
  };
  int rc;
  while ((rc = pcap_next_ex(pcap, &hdr, &bytes)) == 1) {
    const uint64_t index = sum.frames++;
    // Microseconds since the epoch, normalised: some captures carry a tv_usec outside
    // [0, 1e6) (a writer's bug); the time they mean is still sec + usec / 1e6.
    const int64_t micros =
        static_cast<int64_t>(hdr->ts.tv_sec) * 1'000'000 + static_cast<int64_t>(hdr->ts.tv_usec);
    ct::Nanos now = micros * 1000;
    if (now < last) now = last;  // conntrack needs a clock that never goes back
    last = now;
    std::span<const uint8_t> frame(bytes, hdr->caplen);
    bool cooked_ok = false;
    if (cooked) {
      cooked_ok = CookedToEthernet(frame, dlt, binding.mac, cooked_frame);
      if (cooked_ok) frame = cooked_frame.ethernet;  // else: too short, parsed as malformed
    }
    // Direction: pcapng flag, else the cooked header's packet type, else the binding MAC.
    View view = View::kToVm;
    const uint8_t flag = index < dirs->size() ? (*dirs)[index] : 0;
    if (flag == 1 || flag == 2) {
      view = flag == 1 ? View::kFromVm : View::kToVm;
      ++sum.direction_from_pcapng;
    } else if (cooked_ok) {
      view = cooked_frame.outgoing ? View::kToVm : View::kFromVm;
      ++sum.direction_from_capture;
    } else if (!raw_ip && frame.size() >= 12 &&
               std::memcmp(frame.data() + 6, binding.mac.data(), 6) == 0) {
      view = View::kFromVm;
    }
    PacketInput in;
    in.bytes = frame;
    in.token = index;  // a held fragment's row is written when its datagram is decided
    if (raw_ip) {      // raw IP captures: network-layer input, direction only from pcapng flags
      in.layer = Layer::kNetwork;
      in.ethertype = !frame.empty() && (frame[0] >> 4) == 6 ? kEtherIpv6 : kEtherIpv4;
    }
    if (view == View::kFromVm && !options.host_addrs.empty()) {
      const PacketView v =
          raw_ip ? ParseNetwork(frame, in.ethertype, ParseOptions{.verify_checksums = false})
                 : ParseEthernet(frame, ParseOptions{.verify_checksums = false});
      if (v.family != 0 && IsHostAddr(v, options)) view = View::kVmToHost;
    }
    const Decision d = options.explain
                           ? engine.Explain(binding.portdev, view, in, now, &explanation)
                           : engine.Decide(binding.portdev, view, in, now);
    switch (view) {
      case View::kFromVm:
        ++sum.from_vm;
        break;
      case View::kToVm:
        ++sum.to_vm;
        break;
      case View::kVmToHost:
        ++sum.to_host;
        break;
    }
    Pending row;
    row.ready = !d.held;
    row.d = d;
    row.view = view;
    row.micros = micros;
    if (options.explain) row.explanation = d.held ? "" : explanation;
    pending.push_back(std::move(row));
    settle(index);
    // A datagram left incomplete holds back the rows after it until its timer runs out
    // in capture time: look at the timers once per captured second while one waits.
    if (!pending.empty() && !pending.front().ready && now >= next_expiry) {
      engine.Maintain(now, 0);
      next_expiry = now + ct::kNanosPerSecond;
      settle(index);
    }
    if (options.progress && options.progress_every && sum.frames % options.progress_every == 0)
      options.progress(sum.frames);
  }
  if (rc == PCAP_ERROR) {
    return absl::DataLossError(
        absl::StrCat(pcap_path, ": frame ", sum.frames, ": ", pcap_geterr(pcap)));
  }
  // The end of the capture: timers that ran out by its last frame, then what is still
  // incomplete is dropped (the kernel would drop it at its timeout).
  engine.Maintain(last, 0);
  settle(sum.frames);
  engine.FlushFragments(FragDrop::kIncomplete);
  settle(sum.frames);
  if (options.progress) options.progress(sum.frames);
  return sum;
}

}  // namespace nwfq::engine
