// nwfqctl replay / study / explain: run the engine offline over a capture (once, or once per
// value of a conntrack timeout), or over one packet described on the command line, against
// a filter directory and a <filterbinding>.
#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/engine.h"
#include "engine/replay.h"
#include "engine/timeout_study.h"
#include "parser/binding.h"
#include "parser/filter_set.h"
#include "parser/instantiate.h"
#include "tools/nwfqctl/command_registry.h"

namespace nwfq::ctl {
namespace {

using engine::Decision;
using engine::Engine;
using engine::View;

int Fail(const std::string& what, const absl::Status& st) {
  std::fprintf(stderr, "nwfqctl %s: %s\n", what.c_str(), std::string(st.message()).c_str());
  return 2;
}

absl::StatusOr<InstantiatedBinding> Load(const std::string& filters, const std::string& binding,
                                         Binding* parsed) {
  absl::StatusOr<FilterSet> set = FilterSet::LoadDirectory(filters);
  if (!set.ok()) return set.status();
  absl::StatusOr<Binding> b = ParseBindingFile(binding);
  if (!b.ok()) return b.status();
  if (parsed != nullptr) *parsed = *b;
  return Instantiate(*set, *b);
}

bool ParseAddr(const std::string& s, std::array<uint8_t, 16>& out, uint8_t& family) {
  out = {};
  if (inet_pton(AF_INET, s.c_str(), out.data()) == 1) {
    family = 4;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) {
    family = 6;
    return true;
  }
  return false;
}

absl::Status ApplyTimeouts(Engine& e, const std::vector<std::string>& specs) {
  for (const std::string& spec : specs) {
    std::pair<std::string, std::string> kv = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    uint32_t seconds = 0;
    if (!absl::SimpleAtoi(kv.second, &seconds))
      return absl::InvalidArgumentError(absl::StrCat("--timeout ", spec, ": want PROTO=SECONDS"));
    absl::Status st = e.timeouts().Set(kv.first, seconds);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

struct CommonFlags {
  std::string filters, binding;
  std::vector<std::string> timeouts, host_addrs;
  bool json = false;
};

void AddCommon(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--filters", f.filters, "directory of filter XML files")->required();
  cmd->add_option("--binding", f.binding, "<filterbinding> XML file")->required();
  cmd->add_option("--timeout", f.timeouts, "conntrack timeout override, e.g. icmp=3 (repeatable)");
  cmd->add_option("--host-addr", f.host_addrs,
                  "an address of the host: from-VM packets to it use the HI chain (repeatable)");
  cmd->add_flag("--json", f.json, "machine-readable summary on stdout");
}

// ---- replay

struct ReplayFlags : CommonFlags {
  std::string pcap, verdicts;
  bool explain = false;
  bool connlimit_kernel_compat = false;  // semantics i.1 (ct::ConnLimiterOptions)
  uint32_t connlimit_idle_seconds = 0;   // ct::ConnLimiterOptions::idle_limit_seconds
  std::string malformed = "drop";        // EngineOptions::malformed_verdict
};

int RunReplay(const ReplayFlags& f) {
  absl::StatusOr<InstantiatedBinding> b = Load(f.filters, f.binding, nullptr);
  if (!b.ok()) return Fail("replay", b.status());
  engine::EngineOptions eo;
  eo.connlimit.kernel_compat_sticky = f.connlimit_kernel_compat;
  eo.connlimit.idle_limit_seconds = f.connlimit_idle_seconds;
  eo.malformed_verdict =
      f.malformed == "accept" ? engine::Verdict::kAccept : engine::Verdict::kDrop;
  Engine e(eo);
  if (absl::Status st = ApplyTimeouts(e, f.timeouts); !st.ok()) return Fail("replay", st);
  if (absl::Status st = e.SetBinding(*b); !st.ok()) return Fail("replay", st);
  engine::ReplayOptions o;
  for (const std::string& a : f.host_addrs) {
    std::array<uint8_t, 16> addr;
    uint8_t fam;
    if (!ParseAddr(a, addr, fam))
      return Fail("replay", absl::InvalidArgumentError("--host-addr " + a + ": not an address"));
    o.host_addrs.push_back(addr);
    o.host_families.push_back(fam);
  }
  o.explain = f.explain;
  o.explain_out = &std::cout;
  const auto start = std::chrono::steady_clock::now();
  o.progress = [start](uint64_t n) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\rreplay: %llu frames (%.1f s)", static_cast<unsigned long long>(n), s);
  };
  std::ofstream csv(f.verdicts);
  if (!csv) return Fail("replay", absl::NotFoundError(f.verdicts + ": cannot write"));
  absl::StatusOr<engine::ReplaySummary> sum = engine::Replay(e, *b, f.pcap, csv, o);
  std::fprintf(stderr, "\n");
  if (!sum.ok()) return Fail("replay", sum.status());
  csv.close();
  if (!csv) return Fail("replay", absl::DataLossError(f.verdicts + ": write failed"));
  if (f.json) {
    std::printf(
        "{\"frames\":%llu,\"accept\":%llu,\"drop\":%llu,\"reject\":%llu,\"from_vm\":%llu,"
        "\"to_vm\":%llu,\"to_host\":%llu,\"malformed\":%llu,\"direction_from_pcapng\":%llu,"
        "\"direction_from_cooked_header\":%llu}\n",
        static_cast<unsigned long long>(sum->frames),
        static_cast<unsigned long long>(sum->accepted),
        static_cast<unsigned long long>(sum->dropped),
        static_cast<unsigned long long>(sum->rejected),
        static_cast<unsigned long long>(sum->from_vm), static_cast<unsigned long long>(sum->to_vm),
        static_cast<unsigned long long>(sum->to_host),
        static_cast<unsigned long long>(sum->malformed),
        static_cast<unsigned long long>(sum->direction_from_pcapng),
        static_cast<unsigned long long>(sum->direction_from_capture));
  } else if (!f.explain) {
    std::printf("%llu frames: %llu accept, %llu drop, %llu reject (%llu malformed)\n",
                static_cast<unsigned long long>(sum->frames),
                static_cast<unsigned long long>(sum->accepted),
                static_cast<unsigned long long>(sum->dropped),
                static_cast<unsigned long long>(sum->rejected),
                static_cast<unsigned long long>(sum->malformed));
  }
  return 0;
}

// ---- study: one capture replayed per value of one timeout

struct StudyFlags : CommonFlags {
  std::string pcap, vary, svg;
};

int RunStudy(const StudyFlags& f) {
  absl::StatusOr<InstantiatedBinding> b = Load(f.filters, f.binding, nullptr);
  if (!b.ok()) return Fail("study", b.status());
  // --vary CLASS=S1,S2,...
  std::pair<std::string, std::string> kv = absl::StrSplit(f.vary, absl::MaxSplits('=', 1));
  absl::StatusOr<ct::TimeoutClass> cls = ct::TimeoutPolicy::ParseName(kv.first);
  if (!cls.ok()) return Fail("study", cls.status());
  engine::StudyOptions o;
  o.timeout_class = *cls;
  for (absl::string_view v : absl::StrSplit(kv.second, ',', absl::SkipEmpty())) {
    uint32_t s = 0;
    if (!absl::SimpleAtoi(v, &s)) {
      return Fail("study", absl::InvalidArgumentError(absl::StrCat(
                               "--vary ", f.vary, ": want CLASS=SECONDS,SECONDS,... ('", v,
                               "' is not a number of seconds)")));
    }
    o.seconds.push_back(s);
  }
  if (o.seconds.empty())
    return Fail("study", absl::InvalidArgumentError("--vary " + f.vary + ": no values"));
  o.configure = [&f](Engine& e) { return ApplyTimeouts(e, f.timeouts); };
  for (const std::string& a : f.host_addrs) {
    std::array<uint8_t, 16> addr;
    uint8_t fam;
    if (!ParseAddr(a, addr, fam))
      return Fail("study", absl::InvalidArgumentError("--host-addr " + a + ": not an address"));
    o.replay.host_addrs.push_back(addr);
    o.replay.host_families.push_back(fam);
  }
  const std::string name(ct::TimeoutPolicy::Name(*cls));
  const size_t runs = o.seconds.size() + 1;
  o.progress = [&](size_t run, uint64_t frames) {
    std::fprintf(stderr, "\rstudy: run %zu of at most %zu (%llu frames)", run + 1, runs,
                 static_cast<unsigned long long>(frames));
  };
  absl::StatusOr<std::vector<engine::StudyRow>> rows = engine::RunTimeoutStudy(*b, f.pcap, o);
  std::fprintf(stderr, "\n");
  if (!rows.ok()) return Fail("study", rows.status());
  if (!f.svg.empty()) {
    std::ofstream out(f.svg);
    out << engine::StudySvg(*rows, name,
                            absl::StrCat(name, " timeout vs verdicts: ", b->portdev, ", ", f.pcap));
    if (!out) return Fail("study", absl::DataLossError(f.svg + ": write failed"));
  }
  if (f.json) {
    std::string j = "[";
    for (const engine::StudyRow& r : *rows) {
      std::string ex;
      for (uint64_t i : r.changed_frames) absl::StrAppend(&ex, ex.empty() ? "" : ",", i);
      absl::StrAppend(
          &j, j.size() > 1 ? "," : "", "{\"class\":\"", name, "\",\"seconds\":", r.seconds,
          ",\"kernel_default\":", r.kernel_default ? "true" : "false", ",\"frames\":", r.frames,
          ",\"accept\":", r.accepted, ",\"drop\":", r.dropped, ",\"reject\":", r.rejected,
          ",\"changed\":", r.changed, ",\"changed_frames\":[", ex,
          "],\"new_connections\":", r.new_connections, ",\"expired\":", r.expired, "}");
    }
    std::printf("%s]\n", j.c_str());
    return 0;
  }
  std::printf("%-10s %8s %8s %8s %8s %9s %9s  %s\n", "seconds", "frames", "accept", "drop",
              "reject", "new-conns", "changed", "first changed frames");
  for (const engine::StudyRow& r : *rows) {
    std::string ex;
    for (uint64_t i : r.changed_frames) absl::StrAppend(&ex, ex.empty() ? "" : " ", i);
    std::printf(
        "%-10s %8llu %8llu %8llu %8llu %9llu %9llu  %s\n",
        absl::StrCat(r.seconds, r.kernel_default ? "*" : "").c_str(),
        static_cast<unsigned long long>(r.frames), static_cast<unsigned long long>(r.accepted),
        static_cast<unsigned long long>(r.dropped), static_cast<unsigned long long>(r.rejected),
        static_cast<unsigned long long>(r.new_connections),
        static_cast<unsigned long long>(r.changed), ex.c_str());
  }
  std::printf(
      "* the kernel's default for %s; \"changed\": frames whose verdict differs from "
      "that run (see them with replay --explain --timeout %s=S)\n",
      std::string(name).c_str(), std::string(name).c_str());
  return 0;
}

// ---- explain: "tcp from 198.18.0.3:40000 to 198.18.0.2:22 flags S"

struct Endpoint {
  std::array<uint8_t, 16> addr{};
  uint8_t family = 0;
  uint16_t port = 0;
};

absl::StatusOr<Endpoint> ParseEndpoint(const std::string& s) {
  Endpoint e;
  std::string host = s, port;
  if (!s.empty() && s[0] == '[') {  // [v6]:port
    const size_t close = s.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError("bad address " + s);
    host = s.substr(1, close - 1);
    if (close + 1 < s.size() && s[close + 1] == ':') port = s.substr(close + 2);
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    host = s.substr(0, s.find(':'));
    port = s.substr(s.find(':') + 1);
  }
  if (!ParseAddr(host, e.addr, e.family)) return absl::InvalidArgumentError("bad address " + s);
  if (!port.empty()) {
    uint32_t p;
    if (!absl::SimpleAtoi(port, &p) || p > 65535)
      return absl::InvalidArgumentError("bad port " + s);
    e.port = static_cast<uint16_t>(p);
  }
  return e;
}

void Put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(static_cast<uint8_t>(x >> 8));
  v.push_back(static_cast<uint8_t>(x));
}

// Builds the IP packet for a spec (transport checksums are left zero and not verified).
absl::StatusOr<std::vector<uint8_t>> BuildPacket(const std::string& spec, uint8_t* family_out,
                                                 Endpoint* src_out, Endpoint* dst_out) {
  std::vector<std::string> w = absl::StrSplit(spec, ' ', absl::SkipEmpty());
  if (w.empty()) return absl::InvalidArgumentError("empty packet description");
  static const std::pair<const char*, uint8_t> kProtos[] = {
      {"tcp", 6},     {"udp", 17}, {"udplite", 136}, {"sctp", 132}, {"icmp", 1},
      {"icmpv6", 58}, {"esp", 50}, {"ah", 51},       {"igmp", 2}};
  uint8_t proto = 0;
  for (const auto& [n, p] : kProtos)
    if (w[0] == n) proto = p;
  if (proto == 0) return absl::InvalidArgumentError("unknown protocol " + w[0]);
  Endpoint src, dst;
  uint8_t flags = 0, type = 8, code = 0;
  uint16_t id = 1;
  for (size_t i = 1; i + 1 < w.size(); i += 2) {
    const std::string& k = w[i];
    const std::string& v = w[i + 1];
    uint32_t n = 0;
    if (k == "from" || k == "to") {
      absl::StatusOr<Endpoint> e = ParseEndpoint(v);
      if (!e.ok()) return e.status();
      (k == "from" ? src : dst) = *e;
    } else if (k == "flags") {
      for (char c : v) {
        switch (c) {
          case 'F':
            flags |= 0x01;
            break;
          case 'S':
            flags |= 0x02;
            break;
          case 'R':
            flags |= 0x04;
            break;
          case 'P':
            flags |= 0x08;
            break;
          case 'A':
            flags |= 0x10;
            break;
          case 'U':
            flags |= 0x20;
            break;
          default:
            return absl::InvalidArgumentError("flags: use letters of FSRPAU");
        }
      }
    } else if ((k == "type" || k == "code" || k == "id") && absl::SimpleAtoi(v, &n)) {
      if (k == "type") type = static_cast<uint8_t>(n);
      if (k == "code") code = static_cast<uint8_t>(n);
      if (k == "id") id = static_cast<uint16_t>(n);
    } else {
      return absl::InvalidArgumentError("unexpected '" + k + " " + v + "'");
    }
  }
  if (src.family == 0 || dst.family == 0 || src.family != dst.family)
    return absl::InvalidArgumentError("need 'from ADDR[:PORT] to ADDR[:PORT]' of one family");
  if (proto == 1 && src.family == 6) proto = 58;
  if (proto == 58 && type == 8) type = 128;
  std::vector<uint8_t> l4;
  if (proto == 6) {
    Put16(l4, src.port);
    Put16(l4, dst.port);
    for (int i = 0; i < 8; ++i) l4.push_back(0);
    l4.push_back(0x50);
    l4.push_back(flags);
    Put16(l4, 64240);
    Put16(l4, 0);
    Put16(l4, 0);
  } else if (proto == 17 || proto == 136 || proto == 132) {
    Put16(l4, src.port);
    Put16(l4, dst.port);
    Put16(l4, proto == 17 ? 8 : 0);
    Put16(l4, 0);
    if (proto == 132) {
      for (int i = 0; i < 4; ++i) l4.push_back(0);
    }
  } else if (proto == 1 || proto == 58 || proto == 2) {
    l4 = {type, code, 0, 0};
    Put16(l4, id);
    Put16(l4, 1);
  } else {
    l4.assign(24, 0);
  }
  std::vector<uint8_t> ip;
  if (src.family == 4) {
    ip = {0x45, 0};
    Put16(ip, static_cast<uint16_t>(20 + l4.size()));
    Put16(ip, 1);
    Put16(ip, 0);
    ip.push_back(64);
    ip.push_back(proto);
    Put16(ip, 0);
    ip.insert(ip.end(), src.addr.begin(), src.addr.begin() + 4);
    ip.insert(ip.end(), dst.addr.begin(), dst.addr.begin() + 4);
    uint32_t sum = 0;
    for (size_t i = 0; i < 20; i += 2) sum += uint32_t{ip[i]} << 8 | ip[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = static_cast<uint8_t>(~sum >> 8);
    ip[11] = static_cast<uint8_t>(~sum);
  } else {
    ip = {0x60, 0, 0, 0};
    Put16(ip, static_cast<uint16_t>(l4.size()));
    ip.push_back(proto);
    ip.push_back(64);
    ip.insert(ip.end(), src.addr.begin(), src.addr.end());
    ip.insert(ip.end(), dst.addr.begin(), dst.addr.end());
  }
  ip.insert(ip.end(), l4.begin(), l4.end());
  *family_out = src.family;
  *src_out = src;
  *dst_out = dst;
  return ip;
}

struct ExplainFlags : CommonFlags {
  std::string packet;
  std::string direction = "auto";
};

int RunExplain(const ExplainFlags& f) {
  Binding parsed;
  absl::StatusOr<InstantiatedBinding> b = Load(f.filters, f.binding, &parsed);
  if (!b.ok()) return Fail("explain", b.status());
  engine::EngineOptions eo;
  eo.conntrack_capacity = 1024;
  Engine e(eo);
  if (absl::Status st = ApplyTimeouts(e, f.timeouts); !st.ok()) return Fail("explain", st);
  if (absl::Status st = e.SetBinding(*b); !st.ok()) return Fail("explain", st);
  uint8_t family = 0;
  Endpoint src, dst;
  absl::StatusOr<std::vector<uint8_t>> pkt = BuildPacket(f.packet, &family, &src, &dst);
  if (!pkt.ok()) return Fail("explain", pkt.status());
  View view = View::kToVm;
  if (f.direction == "from-vm") {
    view = View::kFromVm;
  } else if (f.direction == "to-host") {
    view = View::kVmToHost;
  } else if (f.direction == "auto") {
    // From the VM when the source is one of the binding's IP / IPV6 values.
    for (const char* name : {"IP", "IPV6"}) {
      if (const auto* vals = parsed.Param(name)) {
        for (const std::string& v : *vals) {
          std::array<uint8_t, 16> a;
          uint8_t fam;
          if (ParseAddr(v, a, fam) && fam == family && a == src.addr) view = View::kFromVm;
        }
      }
    }
    for (const std::string& h : f.host_addrs) {
      std::array<uint8_t, 16> a;
      uint8_t fam;
      if (view == View::kFromVm && ParseAddr(h, a, fam) && a == dst.addr) view = View::kVmToHost;
    }
  } else if (f.direction != "to-vm") {
    return Fail("explain", absl::InvalidArgumentError("--direction: from-vm|to-vm|to-host|auto"));
  }
  engine::PacketInput in;
  in.bytes = *pkt;
  in.layer = engine::Layer::kNetwork;
  in.ethertype = family == 4 ? 0x0800 : 0x86dd;
  in.checksum_unverified = true;
  std::string text;
  const Decision d = e.Explain(b->portdev, view, in, 0, &text);
  std::string rule = "-";
  if (d.rule >= 0) {
    const RuleOrigin& o = b->rules[static_cast<size_t>(d.rule)].origin;
    rule = absl::StrCat(o.filter, ":", o.line, o.file.empty() ? "" : " (" + o.file + ")");
  }
  if (f.json) {
    std::printf("{\"direction\":\"%s\",\"verdict\":\"%s\",\"rule\":\"%s\",\"ctstate\":\"%s\"}\n",
                std::string(engine::ViewText(view)).c_str(),
                std::string(engine::VerdictText(d.verdict)).c_str(), rule.c_str(),
                engine::CtStateText(d).c_str());
    return 0;
  }
  std::printf("%s: %s  (rule %s, ct %s)\n%s", std::string(engine::ViewText(view)).c_str(),
              std::string(engine::VerdictText(d.verdict)).c_str(), rule.c_str(),
              engine::CtStateText(d).c_str(), text.c_str());
  if (d.reason == engine::Reason::kFellOff)
    std::printf("no rule decided: the chain's fall-through accepted the packet\n");
  return 0;
}

const bool kRegistered =
    RegisterCommands(20, [](CLI::App& app, const GlobalOptions&, int* exit_code) {
      auto rf = std::make_shared<ReplayFlags>();
      CLI::App* replay = app.add_subcommand(
          "replay", "run a tap capture (pcap/pcapng) through the engine; one CSV row per frame");
      AddCommon(replay, *rf);
      replay
          ->add_option("--pcap", rf->pcap,
                       "capture taken on the VM's tap: pcap or pcapng; Ethernet, Linux "
                       "cooked (SLL/SLL2) or raw IP")
          ->required();
      replay->add_option("--verdicts", rf->verdicts, "output CSV")->required();
      replay->add_flag("--explain", rf->explain, "print every rule looked at per frame on stdout");
      replay->add_flag("--connlimit-kernel-compat", rf->connlimit_kernel_compat,
                       "connlimit as the kernel does it: a refused flow also stalls the "
                       "not-yet-assured flow holding the slot (semantics i.1)");
      replay
          ->add_option("--malformed", rf->malformed,
                       "verdict for frames that cannot be parsed: drop or accept (as nwfqd "
                       "--malformed)")
          ->check(CLI::IsMember({"drop", "accept"}))
          ->capture_default_str();
      replay->add_option("--connlimit-idle", rf->connlimit_idle_seconds,
                         "connlimit does not count connections idle for longer than SECONDS "
                         "(0 = count all, as the kernel)");
      replay->footer(
          "The capture's timestamps are the clock (conntrack timeouts run in capture time).\n"
          "Direction per frame: pcapng's direction flag (dumpcap on the tap: inbound = from\n"
          "the VM), else a cooked header's packet type, else the binding's MAC (source MAC =\n"
          "the VM's: from the VM). IP fragments are reassembled; each fragment's row carries\n"
          "its datagram's verdict.\n\n"
          "CSV columns: index,time,direction,verdict,rule,ctstate\n"
          "  direction  from-vm | to-vm | to-host (from-vm to a --host-addr)\n"
          "  verdict    accept | drop | reject\n"
          "  rule       filter:line of the deciding rule, or - (no rule decided)\n"
          "  ctstate    NEW/ORIGINAL, ESTABLISHED/REPLY, RELATED/REPLY, ... INVALID,\n"
          "             UNTRACKED, or - (conntrack does not look at the frame, e.g. ARP)\n\n"
          "Example:\n"
          "  tcpdump -i vnet0 -w tap.pcap   # on the host, while the VM runs\n"
          "  nwfqctl replay --filters /etc/libvirt/nwfilter --binding vnet0.xml \\\n"
          "      --pcap tap.pcap --verdicts out.csv --timeout icmp=3\n"
          "  awk -F, '$4 == \"drop\"' out.csv   # then: nwfqctl replay ... --explain");
      replay->callback([rf, exit_code] { *exit_code = RunReplay(*rf); });

      auto sf = std::make_shared<StudyFlags>();
      CLI::App* study = app.add_subcommand(
          "study",
          "offline timeout study: replay a capture once per value of one conntrack timeout "
          "and compare the verdicts");
      AddCommon(study, *sf);
      study->add_option("--pcap", sf->pcap, "capture taken on the VM's tap (as for replay)")
          ->required();
      study
          ->add_option("--vary", sf->vary,
                       "CLASS=S1,S2,...: the timeout studied and its values in seconds, e.g. "
                       "icmp=1,3,10,30 (the kernel default is always run too)")
          ->required();
      study->add_option("--svg", sf->svg, "also write the study as an SVG chart to this file");
      study->footer(
          "One fresh engine per value; the capture's timestamps are the clock, so a timeout\n"
          "shorter than a gap in the traffic shows as replies dropped (INVALID) or as new\n"
          "connections. Classes as for --timeout: tcp/established, udp, udp/stream, icmp,\n"
          "icmpv6, generic, ... (nwfqd --help lists them with the kernel defaults).\n\n"
          "Example:\n"
          "  nwfqctl study --filters /etc/libvirt/nwfilter --binding vnet0.xml \\\n"
          "      --pcap tap.pcap --vary icmp=1,2,5,10,30 --svg icmp.svg\n"
          "  nwfqctl replay ... --timeout icmp=2 --explain   # why a changed frame changed");
      study->callback([sf, exit_code] { *exit_code = RunStudy(*sf); });

      auto ef = std::make_shared<ExplainFlags>();
      CLI::App* explain =
          app.add_subcommand("explain",
                             "why is this packet accepted or dropped? e.g. "
                             "'tcp from 198.18.0.3:40000 to 198.18.0.2:22 flags S'");
      AddCommon(explain, *ef);
      explain->add_option("packet", ef->packet, "packet description")->required();
      explain
          ->add_option("--direction", ef->direction,
                       "from-vm|to-vm|to-host|auto (auto: from the VM if the source is $IP)")
          ->capture_default_str();
      explain->callback([ef, exit_code] { *exit_code = RunExplain(*ef); });
    });

}  // namespace
}  // namespace nwfq::ctl
