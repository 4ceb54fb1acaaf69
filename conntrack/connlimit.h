// connlimit: counts live connections per source address, as iptables' connlimit match
// (xt_connlimit over nf_conncount) counts them with libvirt's options: key = the packet's
// source address (/32 or /128), per rule instance (one ConnLimiter per instance).
//
// What is counted: connections this rule instance has seen (remembered at Count() time)
// that are still live in the table, with the packet's source address, including `conn`
// itself. TCP connections in TIME_WAIT or CLOSE are not counted (and forgotten), nor are
// expired or deleted ones; optionally connections idle longer than `idle_limit_seconds`.
//
// Default semantics differ from the kernel on one point (semantics i.1): a connection the
// filter refused (its tentative entry never confirmed) is forgotten, so it does not make
// the existing flow's packets count 2. `kernel_compat_sticky` reproduces the kernel:
// a refused flow's tuple stays remembered, and a packet whose own connection is already
// remembered returns the remembered count without collecting dead ones (nf_conncount's
// early "already exists" return), so the existing unassured flow stalls until the stale
// one would be collected by a packet of a new connection.
//
// Memory: per-source lists live in a hash map; a packet of a new source or a new
// connection may allocate (not per packet of an existing counted connection).
// Not thread-safe (one per worker, like the table it reads).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "conntrack/table.h"
#include "conntrack/types.h"

namespace nwfq::ct {

struct ConnLimiterOptions {
  // 0 = off. Otherwise connections without a packet for longer than this are not counted.
  uint32_t idle_limit_seconds = 0;
  bool kernel_compat_sticky = false;
};

class ConnLimiter {
 public:
  explicit ConnLimiter(const ConnLimiterOptions& options = {}) : options_(options) {}

  // Number of live connections from `flow.src` seen by this rule, including `conn` (the
  // packet's connection from Table::Track; tentative or not). For a packet without a
  // connection entry (INVALID/UNTRACKED) the packet counts as one more, unremembered.
  uint32_t Count(const FlowFacts& flow, const TrackResult& conn, const Table& table, Nanos now);

  // Remembered connections over all sources (for tests and `show`).
  size_t Remembered() const;
  void Clear() { lists_.clear(); }

 private:
  struct Key {
    uint8_t family;
    std::array<uint8_t, 16> addr;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.family, k.addr);
    }
  };
  ConnLimiterOptions options_;
  // Remembered connections per source, as their original tuples (like nf_conncount):
  // table entries may move, tuples do not.
  absl::flat_hash_map<Key, std::vector<FlowFacts>> lists_;
};

}  // namespace nwfq::ct
