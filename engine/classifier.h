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

  struct BuildStats {
    size_t leaves = 0;
    size_t max_depth = 0;
    size_t max_leaf = 0;    // largest candidate list
    size_t candidates = 0;  // total candidate entries over all leaves
  };

  // Builds the tree over `range` of `prog` (instructions of family `family`). Chains
  // shorter than `min_rules` get no tree (the linear scan is as fast).
  static Classifier Build(const Program& prog, const ChainRange& range, int family,
                          size_t min_rules = 16);

  bool built() const { return !nodes_.empty(); }
  // The candidate instruction indices (into Program::instrs, increasing) for `key`.
  std::span<const uint32_t> Candidates(const ClassKey& key) const {
    uint32_t n = 0;
    while (nodes_[n].dim != kLeaf) {
      const Node& nd = nodes_[n];
      n = key[nd.dim] <= nd.threshold ? nd.a : nd.b;
    }
    return {cands_.data() + nodes_[n].a, nodes_[n].b};
  }

  size_t MemoryBytes() const {
    return nodes_.capacity() * sizeof(Node) + cands_.capacity() * sizeof(uint32_t);
  }
  const BuildStats& stats() const { return stats_; }

 private:
  std::vector<Node> nodes_;
  std::vector<uint32_t> cands_;
  BuildStats stats_;
};

}  // namespace nwfq::engine
