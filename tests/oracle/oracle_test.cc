// Differential test: nwfq against real libvirt + the real kernel, frame by frame.
//
// For each case in tests/oracle/filters/<case>/ the reference rule set real libvirt 9.0
// generated for it (tests/oracle/reference/<case>/libvirt-commands.txt, see README.md) is
// replayed into a host namespace shaped like ../shared/oracle's; the case's scripted frames
// (scripts.cc) are injected from the VM's and the peer's side through AF_PACKET; a frame
// counts as delivered when the far end sees it (for frames to the host: when the host
// answers it) within a bound. The same frames, in order and with their send times, go into
// a pcapng with per-frame direction flags, `nwfqctl replay` decides them with the case's
// filters and binding, and every frame's accept must equal the kernel's delivered.
// Understood differences are pinned per frame (scripts.cc) with their reason.
//
// Needs root, `ip netns`, the nf_tables iptables/ebtables tools and br_netfilter; skips
// clearly otherwise. Label: integration. Namespaces: nwfq-or-vm, nwfq-or-h, nwfq-or-peer,
// removed at the end of every case, also on failure.
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/oracle/kernel_side.h"
#include "tests/oracle/scripts.h"

namespace nwfq::oracle {
namespace {

namespace fs = std::filesystem;

constexpr char kNwfqctl[] = NWFQCTL_PATH;
constexpr auto kDeliveryWait = std::chrono::milliseconds(300);
constexpr auto kHostAnswerWait = std::chrono::milliseconds(500);

std::string CaseDir(const std::string& name) {
  return std::string(NWFQ_SOURCE_DIR) + "/tests/oracle/filters/" + name;
}
std::string RefDir(const std::string& name) {
  return std::string(NWFQ_SOURCE_DIR) + "/tests/oracle/reference/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- frames

struct Ip4 {
  bool ok = false;
  uint8_t proto = 0;
  uint16_t id = 0;
  const uint8_t* l4 = nullptr;
  size_t l4_len = 0;
  uint32_t src = 0;
};

Ip4 ParseIp4(const std::vector<uint8_t>& f) {
  Ip4 r;
  if (f.size() < 34 || f[12] != 0x08 || f[13] != 0x00) return r;
  const size_t ihl = (f[14] & 0x0f) * 4u;
  if (f.size() < 14 + ihl + 8) return r;
  r.ok = true;
  r.proto = f[23];
  r.id = static_cast<uint16_t>(f[18] << 8 | f[19]);
  std::memcpy(&r.src, &f[26], 4);
  r.l4 = f.data() + 14 + ihl;
  r.l4_len = f.size() - 14 - ihl;
  return r;
}

uint16_t Rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// ---- fragments: the kernel reassembles a bridged datagram and refragments it on output
// (its own boundaries; IPv6 with a fragment id of its own), so what arrives is matched by
// content: the frames at the far end are grouped per (addresses, fragment id) and a
// datagram counts as delivered when one group (or one unfragmented frame) carries exactly
// its fragmentable part.

struct IpView {
  bool ok = false;
  bool fragment = false;  // IPv4 MF/offset, or an IPv6 fragment header right after the base
  bool more = false;
  uint32_t offset = 0;
  uint8_t proto = 0;          // the upper-layer protocol
  std::vector<uint8_t> key;   // addresses + fragment id
  std::vector<uint8_t> body;  // the bytes after the IP header(s)
};

// `p` from the IP header on (an Ethernet frame's payload or Step::network).
IpView ParseIp(const uint8_t* p, size_t n) {
  IpView v;
  if (n >= 20 && p[0] >> 4 == 4) {
    const size_t ihl = (p[0] & 0x0f) * 4u;
    const size_t total = Rd16(p + 2);
    if (ihl < 20 || total < ihl || total > n) return v;
    const uint16_t frag = Rd16(p + 6);
    v.ok = true;
    v.more = (frag & 0x2000) != 0;
    v.offset = (frag & 0x1fffu) * 8u;
    v.fragment = v.more || v.offset != 0;
    v.proto = p[9];
    v.key.assign(p + 12, p + 20);
    v.key.push_back(p[4]);
    v.key.push_back(p[5]);
    v.key.push_back(p[9]);
    v.body.assign(p + ihl, p + total);
  } else if (n >= 40 && p[0] >> 4 == 6) {
    const size_t total = 40u + Rd16(p + 4);
    if (total > n) return v;
    v.ok = true;
    v.proto = p[6];
    v.key.assign(p + 8, p + 40);
    size_t at = 40;
    if (p[6] == 44 && total >= 48) {
      const uint16_t off = Rd16(p + 42);
      v.fragment = true;
      v.more = (off & 1) != 0;
      v.offset = off & 0xfff8u;
      v.proto = p[40];
      v.key.insert(v.key.end(), p + 44, p + 48);
      at = 48;
    }
    v.body.assign(p + at, p + total);
  }
  return v;
}

// Collects the frames seen at the far end while one datagram's fragments are sent.
class DatagramWatch {
 public:
  explicit DatagramWatch(const std::vector<uint8_t>& whole)
      : want_(ParseIp(whole.data(), whole.size())) {}
  // Feeds a received Ethernet frame; true once the datagram has arrived whole.
  bool Feed(const std::vector<uint8_t>& frame) {
    if (frame.size() < 14) return false;
    const IpView v = ParseIp(frame.data() + 14, frame.size() - 14);
    if (!v.ok || v.proto != want_.proto) return false;
    if (!v.fragment) {
      if (v.body != want_.body) return done_;
      part_ = true;
      return done_ = true;
    }
    // A piece of this datagram (its bytes at its offset), possibly all that arrives.
    if (v.offset + v.body.size() > want_.body.size() ||
        !std::equal(v.body.begin(), v.body.end(), want_.body.begin() + v.offset))
      return done_;
    part_ = true;
    Group& g = groups_[v.key];
    g.pieces[v.offset] = v.body;
    if (!v.more) g.end = v.offset + static_cast<uint32_t>(v.body.size());
    if (g.end == 0) return done_;
    std::vector<uint8_t> all;
    for (const auto& [off, bytes] : g.pieces) {
      if (off != all.size()) return done_;  // a hole or an overlap
      all.insert(all.end(), bytes.begin(), bytes.end());
    }
    return done_ = done_ || (all.size() == g.end && all == want_.body);
  }
  // What reached the far end: "whole", "part" (some of its bytes, never all of them in one
  // group) or "none".
  std::string Result() const { return done_ ? "whole" : part_ ? "part" : "none"; }

 private:
  struct Group {
    std::map<uint32_t, std::vector<uint8_t>> pieces;
    uint32_t end = 0;
  };
  IpView want_;
  std::map<std::vector<uint8_t>, Group> groups_;
  bool done_ = false, part_ = false;
};

// nwfq's side of a datagram from the fragments it accepted, each [offset, offset + len):
// "whole" = they cover the fragmentable part exactly once (the far end gets the datagram,
// not a part of it, nor some of it twice), "none" = none accepted, else "part".
std::string NwfqResult(const std::vector<std::pair<uint32_t, uint32_t>>& accepted, size_t len) {
  if (accepted.empty()) return "none";
  std::vector<std::pair<uint32_t, uint32_t>> r = accepted;
  std::sort(r.begin(), r.end());
  uint32_t at = 0;
  for (const auto& [off, n] : r) {
    if (off != at) return "part";
    at += n;
  }
  return at == len ? "whole" : "part";
}

// Whether `got` (seen at the VM) is the host's answer to the to-host probe `sent`: an echo
// reply with its id/seq, a TCP segment with its ports swapped, or an ICMP error quoting it.
bool IsHostAnswer(const std::vector<uint8_t>& sent, const std::vector<uint8_t>& got) {
  const Ip4 s = ParseIp4(sent), g = ParseIp4(got);
  if (!s.ok || !g.ok || got.size() < 12 || std::memcmp(got.data() + 6, kHostMac.data(), 6) != 0)
    return false;
  if (s.proto == 1 && g.proto == 1 && g.l4[0] == 0 && s.l4[0] == 8)
    return std::memcmp(g.l4 + 4, s.l4 + 4, 4) == 0;
  if (s.proto == 6 && g.proto == 6)
    return Rd16(g.l4) == Rd16(s.l4 + 2) && Rd16(g.l4 + 2) == Rd16(s.l4);
  if (g.proto == 1 && g.l4[0] == 3 && g.l4_len >= 8 + 20)
    return Rd16(g.l4 + 8 + 4) == s.id;  // the quoted header's IP id
  return false;
}

// ---- pcapng with per-packet direction (epb_flags: 1 inbound = sent by the VM,
// 2 outbound = sent to the VM), as dumpcap writes it on a tap.

void Put32(std::string& b, uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); }
void Put16(std::string& b, uint16_t v) { b.append(reinterpret_cast<const char*>(&v), 2); }

bool WritePcapng(const std::string& path, const std::vector<Step>& steps,
                 const std::vector<int64_t>& times_us) {
  std::string b;
  Put32(b, 0x0A0D0D0A);  // section header
  Put32(b, 28);
  Put32(b, 0x1A2B3C4D);
  Put16(b, 1);
  Put16(b, 0);
  Put32(b, 0xffffffff);
  Put32(b, 0xffffffff);
  Put32(b, 28);
  Put32(b, 1);  // interface description: Ethernet, microseconds (default)
  Put32(b, 20);
  Put16(b, 1);
  Put16(b, 0);
  Put32(b, 0);
  Put32(b, 20);
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::vector<uint8_t>& f = steps[i].frame;
    const uint32_t padded = static_cast<uint32_t>((f.size() + 3) & ~size_t{3});
    const uint32_t len = 28 + padded + 12 + 4;
    const uint64_t ts = static_cast<uint64_t>(times_us[i]);
    Put32(b, 6);
    Put32(b, len);
    Put32(b, 0);
    Put32(b, static_cast<uint32_t>(ts >> 32));
    Put32(b, static_cast<uint32_t>(ts));
    Put32(b, static_cast<uint32_t>(f.size()));
    Put32(b, static_cast<uint32_t>(f.size()));
    b.append(reinterpret_cast<const char*>(f.data()), f.size());
    b.append(padded - f.size(), '\0');
    Put16(b, 2);  // epb_flags
    Put16(b, 4);
    Put32(b, steps[i].side == Side::kPeer ? 2u : 1u);
    Put32(b, 0);  // opt_endofopt
    Put32(b, len);
  }
  std::ofstream out(path, std::ios::binary);
  out << b;
  return static_cast<bool>(out);
}

// ---- nwfq

struct NwfqRow {
  std::string direction, verdict, rule, ctstate;
};

// Runs `nwfqctl replay` over the pcapng; returns the rows or fails the test.
std::vector<NwfqRow> RunNwfq(const std::string& name, const std::string& pcap,
                             const std::string& csv, const std::vector<std::string>& extra,
                             std::string* log) {
  std::string cmd = std::string(kNwfqctl) + " replay --filters " + CaseDir(name) + " --binding " +
                    RefDir(name) + "/binding.xml --pcap " + pcap + " --verdicts " + csv +
                    " --host-addr 198.18.0.1 --host-addr 2001:db8::1";
  for (const std::string& a : extra) cmd += " " + a;
  const int rc = Sh(cmd, log);
  std::vector<NwfqRow> rows;
  if (rc != 0) {
    ADD_FAILURE() << "nwfqctl replay failed (" << rc << "): " << cmd << "\n" << *log;
    return rows;
  }
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    if (f.size() < 6) {
      ADD_FAILURE() << "bad CSV row: " << line;
      continue;
    }
    rows.push_back(NwfqRow{f[2], f[3], f[4], f[5]});
  }
  return rows;
}

const char* SideName(Side s) {
  switch (s) {
    case Side::kVm:
      return "vm->peer";
    case Side::kPeer:
      return "peer->vm";
    case Side::kVmToHost:
      return "vm->host";
  }
  return "?";
}

class OracleTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "oracle test needs root (namespaces, iptables)";
    if (Sh("ip netns list") != 0) GTEST_SKIP() << "`ip netns` is unavailable here";
    if (!fs::exists(std::string(NWFQ_SOURCE_DIR) + "/tests/oracle/reference"))
      GTEST_SKIP() << "tests/oracle/reference is missing (run generate-reference.sh)";
    for (const char* t : {"iptables-nft", "ip6tables-nft", "ebtables-nft", "iptables-nft-save",
                          "ip6tables-nft-save", "ebtables-nft-save"}) {
      if (!fs::exists(std::string("/usr/sbin/") + t))
        GTEST_SKIP() << "/usr/sbin/" << t << " is missing (Debian packages iptables, ebtables)";
    }
    if (!fs::exists("/proc/sys/net/bridge/bridge-nf-call-iptables"))
      GTEST_SKIP() << "br_netfilter is not loaded (bridged frames would bypass iptables)";
  }
};

TEST_P(OracleTest, NwfqAgreesWithKernelFrameByFrame) {
  const std::string name = GetParam();
  ASSERT_TRUE(fs::exists(RefDir(name) + "/libvirt-commands.txt"))
      << "no reference for case " << name;
  CaseScript script = ScriptFor(name);
  ASSERT_FALSE(script.steps.empty()) << "no frame script for case " << name;
  {
    std::set<std::vector<uint8_t>> unique;
    std::set<std::string> labels;
    for (const Step& s : script.steps) {
      ASSERT_TRUE(unique.insert(s.frame).second) << "frame not unique: " << s.label;
      ASSERT_TRUE(labels.insert(s.label).second) << "label not unique: " << s.label;
    }
  }

  KernelSide k;  // its destructor removes the namespaces, also when an ASSERT fails
  if (getenv("NWFQ_ORACLE_KEEP") != nullptr) k.Keep();  // leave them for a look
  const std::string up = k.Up();
  ASSERT_EQ(up, "");
  ASSERT_EQ(k.ReplayCommands(RefDir(name) + "/libvirt-commands.txt"), "");
  // The replayed rule set is exactly what libvirt built.
  EXPECT_EQ(k.Save("iptables"), ReadFile(RefDir(name) + "/iptables.rules"));
  EXPECT_EQ(k.Save("ip6tables"), ReadFile(RefDir(name) + "/ip6tables.rules"));
  EXPECT_EQ(k.Save("ebtables"), ReadFile(RefDir(name) + "/ebtables.rules"));

  std::vector<bool> delivered;
  std::vector<int64_t> times;
  std::map<std::string, DatagramWatch> watches;  // by datagram name
  for (const auto& [dname, whole] : script.datagrams) watches.emplace(dname, whole);
  for (const Step& s : script.steps) {
    int64_t at = 0;
    bool seen;
    if (!s.datagram.empty()) {
      // Delivered = the whole datagram arrived at the far end within the window after
      // this fragment (the one that completes it in the kernel). A datagram still
      // incomplete when the test ends is dropped (the kernel would after 30 s / 60 s).
      DatagramWatch& w = watches.at(s.datagram);
      seen = k.Inject(
          s.side == Side::kVm, false, s.frame,
          [&](const std::vector<uint8_t>& got) { return w.Feed(got); }, kDeliveryWait, &at);
    } else if (s.side == Side::kVmToHost) {
      seen = k.Inject(
          true, true, s.frame,
          [&](const std::vector<uint8_t>& got) { return IsHostAnswer(s.frame, got); },
          kHostAnswerWait, &at);
    } else {
      seen = k.Inject(
          s.side == Side::kVm, false, s.frame,
          [&](const std::vector<uint8_t>& got) { return got == s.frame; }, kDeliveryWait, &at);
    }
    delivered.push_back(seen);
    times.push_back(at);
  }
  k.Down();

  char tmpl[] = "/tmp/nwfq-oracle.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string pcap = dir + "/" + name + ".pcapng";
  ASSERT_TRUE(WritePcapng(pcap, script.steps, times));

  std::string log;
  const std::vector<NwfqRow> rows =
      RunNwfq(name, pcap, dir + "/verdicts.csv", script.nwfq_args, &log);
  ASSERT_EQ(rows.size(), script.steps.size()) << log;

  size_t agree = 0, pinned = 0;
  std::ostringstream table;
  // Per datagram: the kernel delivered it (any of its fragments' windows saw it whole);
  // nwfq's accepted fragments cover it exactly once; none accepted if not delivered.
  struct DatagramResult {
    std::string kernel;
    std::vector<std::pair<uint32_t, uint32_t>> accepted;
  };
  std::map<std::string, DatagramResult> dgrams;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Step& s = script.steps[i];
    if (s.datagram.empty()) continue;
    DatagramResult& d = dgrams[s.datagram];
    d.kernel = watches.at(s.datagram).Result();
    if (rows[i].verdict == "accept") d.accepted.push_back({s.frag_offset, s.frag_len});
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const Step& s = script.steps[i];
    const bool accepts = rows[i].verdict == "accept";
    if (!s.datagram.empty()) {
      char line[512];
      std::snprintf(line, sizeof line, "  %2zu %-8s %-58s kernel=%-13s nwfq=%-6s %-18s %s\n", i,
                    SideName(s.side), s.label.c_str(),
                    ("dgram:" + dgrams[s.datagram].kernel).c_str(), rows[i].verdict.c_str(),
                    rows[i].ctstate.c_str(), rows[i].rule.c_str());
      table << line;
      continue;
    }
    const std::string kern = delivered[i] ? "delivered" : "not-delivered";
    char line[512];
    std::snprintf(line, sizeof line, "  %2zu %-8s %-58s kernel=%-13s nwfq=%-6s %-18s %s\n", i,
                  SideName(s.side), s.label.c_str(), kern.c_str(), rows[i].verdict.c_str(),
                  rows[i].ctstate.c_str(), rows[i].rule.c_str());
    table << line;
    auto div = script.divergences.find(s.label);
    if (div != script.divergences.end()) {
      ++pinned;
      EXPECT_EQ(delivered[i], div->second.kernel_delivers)
          << name << " frame " << i << " (" << s.label << "): the kernel changed its mind on a "
          << "pinned divergence (" << div->second.reason << ")";
      EXPECT_EQ(accepts, div->second.nwfq_accepts)
          << name << " frame " << i << " (" << s.label << "): nwfq changed on a pinned "
          << "divergence (" << div->second.reason << ")";
      continue;
    }
    if (accepts == delivered[i]) {
      ++agree;
    } else {
      ADD_FAILURE() << name << " frame " << i << " (" << SideName(s.side) << ", " << s.label
                    << "): kernel " << kern << ", nwfq " << rows[i].verdict << " ("
                    << rows[i].ctstate << ", rule " << rows[i].rule << ")";
    }
  }
  size_t dg_agree = 0, dg_pinned = 0;
  for (const auto& [dname, whole] : script.datagrams) {
    const DatagramResult& d = dgrams[dname];
    const std::string nwfq =
        NwfqResult(d.accepted, ParseIp(whole.data(), whole.size()).body.size());
    char line[512];
    std::snprintf(line, sizeof line, "     datagram %-52s kernel=%-5s nwfq=%-5s (%zu accepted)\n",
                  dname.c_str(), d.kernel.c_str(), nwfq.c_str(), d.accepted.size());
    table << line;
    auto div = script.datagram_divergences.find(dname);
    if (div != script.datagram_divergences.end()) {
      ++dg_pinned;
      EXPECT_EQ(d.kernel, div->second.kernel)
          << name << " datagram " << dname << ": the kernel changed its mind on a pinned "
          << "divergence (" << div->second.reason << ")";
      EXPECT_EQ(nwfq, div->second.nwfq)
          << name << " datagram " << dname << ": nwfq changed on a pinned divergence ("
          << div->second.reason << ")";
      continue;
    }
    if (nwfq == d.kernel) {
      ++dg_agree;
    } else {
      ADD_FAILURE() << name << " datagram " << dname << ": the kernel delivered " << d.kernel
                    << " of it, nwfq " << nwfq << " (" << d.accepted.size()
                    << " fragment(s) accepted)";
    }
  }
  std::printf(
      "[oracle] %s: %zu frames, %zu agree, %zu pinned divergences; %zu fragmented datagrams, %zu "
      "agree, %zu pinned\n%s",
      name.c_str(), rows.size(), agree, pinned, script.datagrams.size(), dg_agree, dg_pinned,
      table.str().c_str());

  if (!script.nwfq_args.empty()) {
    // nwfq's default mode (without the compatibility switches): the frames where it differs
    // from the kernel must be exactly the documented ones.
    std::string log2;
    const std::vector<NwfqRow> def = RunNwfq(name, pcap, dir + "/verdicts-default.csv", {}, &log2);
    ASSERT_EQ(def.size(), script.steps.size()) << log2;
    std::vector<std::string> differs;
    for (size_t i = 0; i < def.size(); ++i) {
      if (!script.steps[i].datagram.empty()) continue;  // compared per datagram above
      if ((def[i].verdict == "accept") != delivered[i]) differs.push_back(script.steps[i].label);
    }
    EXPECT_EQ(differs, script.default_mode_differs)
        << name << ": nwfq's default mode differs from the kernel on other frames than the "
        << "documented ones";
    std::printf("[oracle] %s: nwfq default mode differs from the kernel on %zu frame(s)\n",
                name.c_str(), differs.size());
  }
  if (!HasFailure())
    fs::remove_all(dir);
  else
    std::printf("[oracle] capture and verdicts kept in %s\n", dir.c_str());
}

INSTANTIATE_TEST_SUITE_P(Cases, OracleTest, ::testing::ValuesIn(ScriptedCases()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string n = p.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// Every case directory has a script and a reference (a new case cannot be forgotten).
TEST(OracleCases, EveryFilterCaseHasScriptAndReference) {
  const std::string root = std::string(NWFQ_SOURCE_DIR) + "/tests/oracle/filters";
  std::set<std::string> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) dirs.insert(e.path().filename());
  const std::vector<std::string> scripted = ScriptedCases();
  EXPECT_EQ(dirs, std::set<std::string>(scripted.begin(), scripted.end()));
  for (const std::string& d : dirs) {
    EXPECT_TRUE(fs::exists(RefDir(d) + "/binding.xml")) << d;
    EXPECT_TRUE(fs::exists(RefDir(d) + "/libvirt-commands.txt")) << d;
  }
}

}  // namespace
}  // namespace nwfq::oracle
