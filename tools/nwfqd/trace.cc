#include "tools/nwfqd/trace.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace nwfq::nwfqd {
namespace {

absl::StatusOr<TraceFilter::Addr> ParseAddr(const std::string& s) {
  TraceFilter::Addr a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = 4;
  } else if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = 6;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("'", s, "' is not an IPv4/IPv6 address"));
  }
  return a;
}

bool SameAddr(const TraceFilter::Addr& a, uint8_t family, const std::array<uint8_t, 16>& b) {
  if (a.family != family) return false;
  const size_t n = family == 4 ? 4 : 16;
  return std::equal(a.bytes.begin(), a.bytes.begin() + n, b.begin());
}

}  // namespace

absl::StatusOr<TraceFilter> TraceFilter::Parse(const std::vector<std::string>& words) {
  TraceFilter f;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string key = absl::AsciiStrToLower(words[i]);
    if (key == "and") continue;
    if (i + 1 >= words.size()) {
      return absl::InvalidArgumentError(absl::StrCat("trace filter: '", key, "' needs a value"));
    }
    const std::string value = absl::AsciiStrToLower(words[++i]);
    if (key == "proto") {
      static const std::pair<const char*, uint8_t> kNames[] = {
          {"tcp", engine::kProtoTcp},   {"udp", engine::kProtoUdp},
          {"icmp", engine::kProtoIcmp}, {"icmpv6", engine::kProtoIcmpv6},
          {"sctp", engine::kProtoSctp}, {"esp", engine::kProtoEsp},
          {"ah", engine::kProtoAh},     {"udplite", engine::kProtoUdplite}};
      for (auto [name, num] : kNames)
        if (value == name) f.proto = num;
      int n = 0;
      if (!f.proto && absl::SimpleAtoi(value, &n) && n >= 0 && n < 256)
        f.proto = static_cast<uint8_t>(n);
      if (!f.proto)
        return absl::InvalidArgumentError(
            absl::StrCat("trace filter: unknown proto '", value, "'"));
    } else if (key == "port") {
      int n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < 0 || n > 65535)
        return absl::InvalidArgumentError(absl::StrCat("trace filter: bad port '", value, "'"));
      f.port = static_cast<uint16_t>(n);
    } else if (key == "host" || key == "src" || key == "dst") {
      absl::StatusOr<Addr> a = ParseAddr(value);
      if (!a.ok()) return a.status();
      (key == "host" ? f.host : key == "src" ? f.src : f.dst) = *a;
    } else if (key == "binding") {
      f.binding = words[i];
    } else if (key == "view") {
      if (value == "from-vm") {
        f.view = engine::View::kFromVm;
      } else if (value == "to-vm") {
        f.view = engine::View::kToVm;
      } else if (value == "to-host") {
        f.view = engine::View::kVmToHost;
      } else {
        return absl::InvalidArgumentError("trace filter: view is from-vm, to-vm or to-host");
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("trace filter: unknown word '", key,
                       "' (proto P, port N, host A, src A, dst A, binding DEV, view V)"));
    }
  }
  return f;
}

bool TraceFilter::Matches(const engine::PacketView& v, absl::string_view portdev,
                          engine::View packet_view) const {
  if (binding && *binding != portdev) return false;
  if (view && *view != packet_view) return false;
  if (proto && (v.family == 0 || v.l4proto != *proto)) return false;
  if (port && !(v.has_l4 && (v.sport == *port || v.dport == *port))) return false;
  if (host && !SameAddr(*host, v.family, v.src_ip) && !SameAddr(*host, v.family, v.dst_ip))
    return false;
  if (src && !SameAddr(*src, v.family, v.src_ip)) return false;
  if (dst && !SameAddr(*dst, v.family, v.dst_ip)) return false;
  return true;
}

absl::Status Tracer::Begin(TraceFilter filter, int per_second) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_.load()) return absl::UnavailableError("busy: another trace session is running");
  filter_ = std::move(filter);
  per_second_ = per_second > 0 ? per_second : 1;
  tokens_ = per_second_;
  last_ = absl::Now();
  rate_dropped_ = 0;
  lines_.clear();
  active_.store(true);
  return absl::OkStatus();
}

void Tracer::End() {
  std::lock_guard<std::mutex> lock(mu_);
  active_.store(false);
  lines_.clear();
}

bool Tracer::Want(const engine::PacketView& v, absl::string_view portdev, engine::View view) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!active_.load(std::memory_order_relaxed) || !filter_.Matches(v, portdev, view)) return false;
  const absl::Time now = absl::Now();
  tokens_ =
      std::min<double>(per_second_, tokens_ + absl::ToDoubleSeconds(now - last_) * per_second_);
  last_ = now;
  if (tokens_ < 1 || lines_.size() >= 1000) {
    ++rate_dropped_;
    return false;
  }
  tokens_ -= 1;
  return true;
}

void Tracer::Emit(std::string line) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!active_.load(std::memory_order_relaxed)) return;
    lines_.push_back(std::move(line));
  }
  cv_.notify_all();
}

std::vector<std::string> Tracer::Take(absl::Duration timeout, uint64_t* dropped) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return !lines_.empty(); });
  std::vector<std::string> out(std::make_move_iterator(lines_.begin()),
                               std::make_move_iterator(lines_.end()));
  lines_.clear();
  if (dropped != nullptr) *dropped = std::exchange(rate_dropped_, 0);
  return out;
}

}  // namespace nwfq::nwfqd
