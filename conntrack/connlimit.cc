#include "conntrack/connlimit.h"

#include <algorithm>
#include <cstring>

namespace nwfq::ct {
namespace {

constexpr uint8_t kProtoTcp = 6;

// nf_conncount's already_closed(): TCP in TIME_WAIT or CLOSE no longer counts.
bool Closed(const ConnInfo& c) {
  return c.original.l4proto == kProtoTcp &&
         (c.proto_state == static_cast<uint8_t>(TcpState::kTimeWait) ||
          c.proto_state == static_cast<uint8_t>(TcpState::kClose));
}

bool SameTuple(const FlowFacts& a, const FlowFacts& b) {
  return a.family == b.family && a.l4proto == b.l4proto && a.src == b.src && a.dst == b.dst &&
         a.sport == b.sport && a.dport == b.dport && a.icmp_type == b.icmp_type &&
         a.icmp_code == b.icmp_code && a.icmp_id == b.icmp_id;
}

}  // namespace

uint32_t ConnLimiter::Count(const FlowFacts& flow, const TrackResult& conn, const Table& table,
                            Nanos now) {
  Key key{flow.family, {}};
  std::memcpy(key.addr.data(), flow.src.data(), flow.family == 6 ? 16 : 4);
  std::vector<FlowFacts>& list = lists_[key];
  const Nanos idle_limit = static_cast<Nanos>(options_.idle_limit_seconds) * kNanosPerSecond;
  std::optional<ConnInfo> self_info;
  if (conn.entry.valid()) self_info = table.Get(conn.entry, now);
  const bool has_entry = self_info.has_value();

  // Is this remembered connection still counted? Also answers for `conn` itself.
  auto counted = [&](const FlowFacts& tuple, bool* self) -> bool {
    *self = has_entry && SameTuple(tuple, self_info->original);
    std::optional<ConnInfo> info = table.Lookup(tuple, now);
    if (!info) return false;            // expired, deleted, or a tentative entry thrown away
    if (info->tentative) return false;  // only confirmed connections are in the kernel's table
    if (Closed(*info)) return false;
    return true;
  };

  if (options_.kernel_compat_sticky) {
    // nf_conncount: walk the list in insertion order, collecting dead ones; a packet
    // whose own connection is found returns at once with the current list length, dead
    // entries behind it left uncollected. Observed on 6.18 (semantics i.1): the early
    // return stops once the connection is ASSURED.
    for (size_t i = 0; i < list.size();) {
      bool self = false;
      bool alive = counted(list[i], &self);
      if (!alive) {  // find_or_evict(): gone from the table, collect it
        list.erase(list.begin() + static_cast<ptrdiff_t>(i));
        continue;
      }
      if (self && !conn.assured) return static_cast<uint32_t>(list.size());
      ++i;
    }
  }

  uint32_t count = 0;
  bool self_seen = false;
  for (size_t i = 0; i < list.size();) {
    bool self = false;
    bool alive = counted(list[i], &self);
    if (!alive) {
      // Dead (expired, closed, refused and never confirmed): forget it. The packet's own
      // connection, if it is among them, is counted once below.
      list.erase(list.begin() + static_cast<ptrdiff_t>(i));
      continue;
    }
    if (self) self_seen = true;
    if (alive && idle_limit > 0 && !self) {
      std::optional<ConnInfo> info = table.Lookup(list[i], now);
      if (info && now - info->last_seen > idle_limit) {
        ++i;  // idle: kept (it may wake up) but not counted
        continue;
      }
    }
    if (alive || self) ++count;
    ++i;
  }
  if (!self_seen) {
    ++count;  // the packet's own connection
    if (has_entry) list.push_back(self_info->original);
  }
  if (list.empty()) lists_.erase(key);
  return count;
}

size_t ConnLimiter::Remembered() const {
  size_t n = 0;
  for (const auto& [k, v] : lists_) n += v.size();
  return n;
}

}  // namespace nwfq::ct
