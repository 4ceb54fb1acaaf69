// A packet classifier over one compiled layer-3 chain (one view, one family): a
// HyperSplit-style binary decision tree over the 5-tuple whose leaves hold short lists of
// candidate instructions in chain order. The evaluator walks the tree with the packet's
// key, then runs the leaf's candidates exactly as the linear scan would (every test,
// first terminal action wins, `continue` rules only counted), so the result, the counters
// and the connlimit calls are those of the linear scan.
//
// Why it is exact: every instruction is projected to a box (one closed interval per
// dimension) that contains every packet the instruction can match. Tests the box cannot
// express (negations, TCP flags, ct state, ...) leave their dimension a wildcard. A leaf
// lists every instruction whose box meets the leaf's region, in chain order; an
// instruction left out cannot match any packet of the region, so the linear scan would
// skip it too.
//
// Dimensions: source and destination address as two 64-bit halves each (IPv4 uses the
// high half only, as a 32-bit number), the IP protocol, source and destination port.
//
// Built off the hot path (by the compiler); immutable afterwards; no pointers, so the
// owning Program stays copyable. Lookup allocates nothing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/packet_view.h"

namespace nwfq::engine {

struct Program;
struct ChainRange;

inline constexpr int kClassDims = 7;
using ClassKey = std::array<uint64_t, kClassDims>;

// The key of a packet of family `family` (4 or 6).
ClassKey MakeClassKey(const PacketView& p);

class Classifier {
 public:
  struct Node {
    uint64_t threshold = 0;  // inner: key[dim] <= threshold goes left
    uint32_t a = 0;          // inner: left child; leaf: first candidate
    uint32_t b = 0;          // inner: right child; leaf: candidate count
    uint8_t dim = kLeaf;
  };
  static constexpr uint8_t kLeaf = 0xff;
  // Rules are grouped by which address dimensions they leave wide (prefix <= 16 bits):
  // one tree per group, so wide rules are not copied into every leaf of the narrow ones
  // (the replication that blows HyperSplit up on firewall-like sets).
  static constexpr size_t kMaxTrees = 4;

  struct BuildStats {
    size_t leaves = 0;
    size_t max_depth = 0;
    size_t max_leaf = 0;    // largest candidate list
    size_t candidates = 0;  // total candidate entries over all leaves
    size_t trees = 0;
  };

  // Builds the tree over `range` of `prog` (instructions of family `family`). Chains
  // shorter than `min_rules` get no tree (the linear scan is as fast).
  static Classifier Build(const Program& prog, const ChainRange& range, int family,
                          size_t min_rules = 16);

  bool built() const { return !roots_.empty(); }

  // Calls fn(instr) for every candidate instruction (index into Program::instrs) for `key`,
  // in increasing order, until fn returns true. Returns whether fn stopped the walk.
  template <typename Fn>
  bool ForEachCandidate(const ClassKey& key, Fn&& fn) const {
    const size_t n = roots_.size();
    if (n == 1) {
      for (uint32_t i : Leaf(roots_[0], key)) {
        if (fn(i)) return true;
      }
      return false;
    }
    // Several trees (rule groups, see Build): merge their leaves in chain order.
    std::array<std::span<const uint32_t>, kMaxTrees> s;
    for (size_t t = 0; t < n; ++t) s[t] = Leaf(roots_[t], key);
    for (;;) {
      size_t best = kMaxTrees;
      for (size_t t = 0; t < n; ++t) {
        if (!s[t].empty() && (best == kMaxTrees || s[t].front() < s[best].front())) best = t;
      }
      if (best == kMaxTrees) return false;
      const uint32_t i = s[best].front();
      s[best] = s[best].subspan(1);
      if (fn(i)) return true;
    }
  }

  size_t MemoryBytes() const {
    return nodes_.capacity() * sizeof(Node) + cands_.capacity() * sizeof(uint32_t);
  }
  const BuildStats& stats() const { return stats_; }

 private:
  std::span<const uint32_t> Leaf(uint32_t n, const ClassKey& key) const {
    while (nodes_[n].dim != kLeaf) {
      const Node& nd = nodes_[n];
      n = key[nd.dim] <= nd.threshold ? nd.a : nd.b;
    }
    return {cands_.data() + nodes_[n].a, nodes_[n].b};
  }

  std::vector<uint32_t> roots_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> cands_;
  BuildStats stats_;
};

}  // namespace nwfq::engine
