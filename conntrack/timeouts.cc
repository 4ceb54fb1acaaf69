#include "conntrack/timeouts.h"

#include <cctype>
#include <charconv>
#include <string>

namespace nwfq::ct {
namespace {

// absl::string_view is not std::string_view in the packaged Abseil: plain helpers instead.
std::string_view Strip(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Str(std::string_view s) { return std::string(s); }

struct ClassInfo {
  std::string_view name;
  uint32_t kernel_default;  // seconds
};

// Indexed by TimeoutClass. Values: Linux 6.x nf_conntrack_proto_{tcp,udp,icmp,icmpv6,sctp,
// gre,generic}.c.
constexpr ClassInfo kClasses[kTimeoutClassCount] = {
    {"tcp/syn_sent", 120},
    {"tcp/syn_recv", 60},
    {"tcp/established", 432000},
    {"tcp/fin_wait", 120},
    {"tcp/close_wait", 60},
    {"tcp/last_ack", 30},
    {"tcp/time_wait", 120},
    {"tcp/close", 10},
    {"tcp/syn_sent2", 120},
    {"tcp/retrans", 300},
    {"tcp/unacknowledged", 300},
    {"udp/unreplied", 30},
    {"udp/stream", 120},
    {"icmp", 30},
    {"icmpv6", 30},
    {"sctp/closed", 10},
    {"sctp/cookie_wait", 3},
    {"sctp/cookie_echoed", 3},
    {"sctp/established", 210},
    {"sctp/shutdown_sent", 3},
    {"sctp/shutdown_recd", 3},
    {"sctp/shutdown_ack_sent", 3},
    {"sctp/heartbeat_sent", 30},
    {"gre/unreplied", 30},
    {"gre/stream", 180},
    {"generic", 600},
};

struct Alias {
  std::string_view alias;
  TimeoutClass cls;
};
constexpr Alias kAliases[] = {
    {"udp", TimeoutClass::kUdpUnreplied},     {"udp/replied", TimeoutClass::kUdpStream},
    {"udplite", TimeoutClass::kUdpUnreplied}, {"udplite/stream", TimeoutClass::kUdpStream},
    {"gre", TimeoutClass::kGreUnreplied},     {"gre/replied", TimeoutClass::kGreStream},
    {"tcp/unack", TimeoutClass::kTcpUnack},   {"tcp/max_retrans", TimeoutClass::kTcpRetrans},
    {"icmp6", TimeoutClass::kIcmpv6},         {"ipv6-icmp", TimeoutClass::kIcmpv6},
};

}  // namespace

TimeoutPolicy::TimeoutPolicy() : TimeoutPolicy(nullptr) {}

TimeoutPolicy::TimeoutPolicy(const TimeoutPolicy* parent) : parent_(parent) {
  for (auto& v : own_) v.store(kInherit, std::memory_order_relaxed);
  for (int i = 0; i < kTimeoutClassCount; ++i) kernel_default_[i] = kClasses[i].kernel_default;
}

uint32_t TimeoutPolicy::KernelDefault(TimeoutClass c) {
  return kClasses[static_cast<int>(c)].kernel_default;
}

std::string_view TimeoutPolicy::Name(TimeoutClass c) { return kClasses[static_cast<int>(c)].name; }

absl::StatusOr<TimeoutClass> TimeoutPolicy::ParseName(std::string_view name) {
  std::string lower = Str(Strip(name));
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  // Accept "tcp.established" and "tcp_established"-free forms only as documented: '/'
  // separates protocol and state; '-' inside a state name is read as '_'.
  for (char& ch : lower) {
    if (ch == '-' && lower.rfind("ipv6-icmp", 0) != 0) ch = '_';
  }
  for (int i = 0; i < kTimeoutClassCount; ++i) {
    if (kClasses[i].name == lower) return static_cast<TimeoutClass>(i);
  }
  for (const Alias& a : kAliases) {
    if (a.alias == lower) return a.cls;
  }
  std::string known;
  for (int i = 0; i < kTimeoutClassCount; ++i) known += " " + Str(kClasses[i].name);
  return absl::InvalidArgumentError("unknown timeout '" + Str(name) + "'; known:" + known +
                                    " (aliases: udp, gre)");
}

absl::Status TimeoutPolicy::Set(TimeoutClass c, uint32_t seconds) {
  if (static_cast<int>(c) >= kTimeoutClassCount) {
    return absl::InvalidArgumentError("bad timeout class");
  }
  if (seconds > kMaxTimeoutSeconds) {
    return absl::OutOfRangeError("timeout " + Str(Name(c)) + " = " + std::to_string(seconds) +
                                 " s exceeds the maximum of " + std::to_string(kMaxTimeoutSeconds) +
                                 " s");
  }
  own_[static_cast<int>(c)].store(seconds, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status TimeoutPolicy::Set(std::string_view name, uint32_t seconds) {
  absl::StatusOr<TimeoutClass> c = ParseName(name);
  if (!c.ok()) return c.status();
  return Set(*c, seconds);
}

void TimeoutPolicy::Clear(TimeoutClass c) {
  own_[static_cast<int>(c)].store(kInherit, std::memory_order_relaxed);
}

absl::Status TimeoutPolicy::ApplyConfig(std::string_view text) {
  int line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    const std::string where = "line " + std::to_string(line_no) + ": ";
    size_t hash = line.find('#');
    if (hash != std::string_view::npos) line = line.substr(0, hash);
    line = Strip(line);
    if (line.empty()) continue;
    std::string_view name;
    std::string_view value;
    size_t eq = line.find('=');
    if (eq != std::string_view::npos) {
      name = Strip(line.substr(0, eq));
      value = Strip(line.substr(eq + 1));
    } else {
      size_t sp = line.find_first_of(" \t");
      if (sp == std::string_view::npos) {
        return absl::InvalidArgumentError(where + "expected 'name seconds', got '" + Str(line) +
                                          "'");
      }
      name = line.substr(0, sp);
      value = Strip(line.substr(sp));
    }
    uint32_t seconds = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) {
      return absl::InvalidArgumentError(where + "'" + Str(value) + "' is not a number of seconds");
    }
    absl::Status st = Set(name, seconds);
    if (!st.ok()) {
      return absl::Status(st.code(), where + std::string(st.message()));
    }
  }
  return absl::OkStatus();
}

std::string TimeoutPolicy::Format() const {
  std::string out;
  for (int i = 0; i < kTimeoutClassCount; ++i) {
    auto c = static_cast<TimeoutClass>(i);
    out += Str(kClasses[i].name) + " " + std::to_string(Seconds(c)) +
           (IsOverridden(c) ? " *" : "") + "\n";
  }
  return out;
}

}  // namespace nwfq::ct
