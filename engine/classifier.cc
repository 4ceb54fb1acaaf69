#include "engine/classifier.h"

#include <algorithm>
#include <limits>

#include "engine/program.h"

namespace nwfq::engine {
namespace {

// Leaves of at most this many candidates stop the split; each candidate costs one exact
// verification (a few tests), so this bounds the per-packet work after the tree walk.
constexpr size_t kLeafSize = 8;
constexpr size_t kMaxDepth = 48;
// Rules that are wide in every dimension a split could use are copied into both halves;
// the budget caps that replication (memory) on adversarial sets: past it, the remaining
// nodes become (longer) leaves, which only costs lookup time, never correctness.
constexpr size_t kCandidatesPerRule = 64;

inline uint64_t Be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}
inline uint64_t Be32(const uint8_t* p) {
  return uint64_t{p[0]} << 24 | uint64_t{p[1]} << 16 | uint64_t{p[2]} << 8 | p[3];
}

struct Box {
  ClassKey lo{};
  ClassKey hi{};
};

Box FullBox(int family) {
  Box b;
  if (family == 4) {
    b.hi = {0xffffffffu, 0, 0xffffffffu, 0, 0xff, 0xffff, 0xffff};
  } else {
    const uint64_t m = std::numeric_limits<uint64_t>::max();
    b.hi = {m, m, m, m, 0xff, 0xffff, 0xffff};
  }
  return b;
}

void Narrow(Box& b, int dim, uint64_t lo, uint64_t hi) {
  b.lo[dim] = std::max(b.lo[dim], lo);
  b.hi[dim] = std::min(b.hi[dim], hi);
}

// The addresses of prefix a/bits as intervals of the (hi, lo) dimensions.
void NarrowPrefix(Box& b, int dim_hi, const Test& t, int family) {
  const int bits = t.prefix;
  if (family == 4) {
    const uint64_t a = Be32(t.a.data());
    const uint64_t mask =
        bits == 0 ? 0 : (0xffffffffull << (32 - std::min(bits, 32))) & 0xffffffffull;
    Narrow(b, dim_hi, a & mask, (a & mask) | (~mask & 0xffffffffull));
    return;
  }
  const uint64_t hi = Be64(t.a.data()), lo = Be64(t.a.data() + 8);
  if (bits <= 64) {
    const uint64_t mask = bits == 0 ? 0 : ~uint64_t{0} << (64 - bits);
    Narrow(b, dim_hi, hi & mask, (hi & mask) | ~mask);
  } else {
    const int rest = std::min(bits, 128) - 64;
    const uint64_t mask = ~uint64_t{0} << (64 - rest);
    Narrow(b, dim_hi, hi, hi);
    Narrow(b, dim_hi + 1, lo & mask, (lo & mask) | ~mask);
  }
}

// -m iprange a..b: exact for IPv4; for IPv6 the high halves bound it, and the low halves
// too when both ends share their high half (otherwise the low half is a wildcard).
void NarrowRange(Box& b, int dim_hi, const Test& t, int family) {
  if (family == 4) {
    Narrow(b, dim_hi, Be32(t.a.data()), Be32(t.b.data()));
    return;
  }
  const uint64_t ah = Be64(t.a.data()), bh = Be64(t.b.data());
  Narrow(b, dim_hi, ah, bh);
  if (ah == bh) Narrow(b, dim_hi + 1, Be64(t.a.data() + 8), Be64(t.b.data() + 8));
}

// The box containing every packet `in` can match.
Box InstrBox(const Program& prog, const Instr& in, int family) {
  Box b = FullBox(family);
  for (uint32_t i = 0; i < in.n_tests; ++i) {
    const Test& t = prog.tests[in.first_test + i];
    if (t.negated) continue;  // the complement of an interval is not one: wildcard
    switch (t.field) {
      case Field::kL4Proto:
        Narrow(b, 4, t.lo, t.lo);
        break;
      case Field::kIpSrc:
        NarrowPrefix(b, 0, t, family);
        break;
      case Field::kIpDst:
        NarrowPrefix(b, 2, t, family);
        break;
      case Field::kIpSrcRange:
        NarrowRange(b, 0, t, family);
        break;
      case Field::kIpDstRange:
        NarrowRange(b, 2, t, family);
        break;
      case Field::kSport:
        Narrow(b, 5, t.lo, t.hi);
        break;
      case Field::kDport:
        Narrow(b, 6, t.lo, t.hi);
        break;
      default:
        break;  // verified exactly at the leaf
    }
  }
  // An empty box matches nothing; keeping it everywhere is simpler than proving that the
  // tests agree, and still exact.
  for (int d = 0; d < kClassDims; ++d) {
    if (b.lo[d] > b.hi[d]) return FullBox(family);
  }
  return b;
}

class TreeBuilder {
 public:
  TreeBuilder(std::vector<Box> boxes, std::vector<uint32_t> instrs,
              std::vector<Classifier::Node>& nodes, std::vector<uint32_t>& cands,
              Classifier::BuildStats& stats)
      : boxes_(std::move(boxes)),
        instrs_(std::move(instrs)),
        nodes_(nodes),
        cands_(cands),
        stats_(stats),
        base_(cands.size()),
        budget_(kCandidatesPerRule * boxes_.size() + 4096) {}

  uint32_t Build(const Box& region, const std::vector<uint32_t>& rules, size_t depth) {
    const uint32_t id = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
    stats_.max_depth = std::max(stats_.max_depth, depth);
    int dim = -1;
    uint64_t cut = 0;
    if (rules.size() > kLeafSize && depth < kMaxDepth && cands_.size() - base_ < budget_) {
      ChooseCut(region, rules, dim, cut);
    }
    if (dim < 0) {
      Classifier::Node& leaf = nodes_[id];
      leaf.dim = Classifier::kLeaf;
      leaf.a = static_cast<uint32_t>(cands_.size());
      leaf.b = static_cast<uint32_t>(rules.size());
      for (uint32_t r : rules) cands_.push_back(instrs_[r]);
      ++stats_.leaves;
      stats_.max_leaf = std::max(stats_.max_leaf, rules.size());
      return id;
    }
    Box left_region = region, right_region = region;
    left_region.hi[dim] = cut;
    right_region.lo[dim] = cut + 1;
    std::vector<uint32_t> left, right;
    for (uint32_t r : rules) {  // keeps chain order
      if (boxes_[r].lo[dim] <= cut) left.push_back(r);
      if (boxes_[r].hi[dim] > cut) right.push_back(r);
    }
    const uint32_t l = Build(left_region, left, depth + 1);
    const uint32_t rr = Build(right_region, right, depth + 1);
    Classifier::Node& n = nodes_[id];
    n.dim = static_cast<uint8_t>(dim);
    n.threshold = cut;
    n.a = l;
    n.b = rr;
    return id;
  }

 private:
  // The cut (key[dim] <= cut | > cut) minimising copies plus imbalance; dim = -1 when no
  // cut makes both halves smaller than the node.
  void ChooseCut(const Box& region, const std::vector<uint32_t>& rules, int& best_dim,
                 uint64_t& best_cut) {
    const size_t n = rules.size();
    size_t best_cost = std::numeric_limits<size_t>::max();
    std::vector<uint64_t>& los = scratch_lo_;
    std::vector<uint64_t>& his = scratch_hi_;
    std::vector<uint64_t>& points = scratch_points_;
    for (int d = 0; d < kClassDims; ++d) {
      if (region.lo[d] == region.hi[d]) continue;
      los.clear();
      his.clear();
      points.clear();
      for (uint32_t r : rules) {
        const uint64_t l = std::max(boxes_[r].lo[d], region.lo[d]);
        const uint64_t h = std::min(boxes_[r].hi[d], region.hi[d]);
        los.push_back(l);
        his.push_back(h);
        if (l > region.lo[d]) points.push_back(l - 1);
        if (h < region.hi[d]) points.push_back(h);
      }
      if (points.empty()) continue;
      std::sort(los.begin(), los.end());
      std::sort(his.begin(), his.end());
      std::sort(points.begin(), points.end());
      points.erase(std::unique(points.begin(), points.end()), points.end());
      for (uint64_t t : points) {
        const size_t left =
            static_cast<size_t>(std::upper_bound(los.begin(), los.end(), t) - los.begin());
        const size_t right =
            n - static_cast<size_t>(std::upper_bound(his.begin(), his.end(), t) - his.begin());
        const size_t worst = std::max(left, right);
        if (worst >= n) continue;
        const size_t cost = left + right + worst;
        if (cost < best_cost) {
          best_cost = cost;
          best_dim = d;
          best_cut = t;
        }
      }
    }
  }

  std::vector<Box> boxes_;
  std::vector<uint32_t> instrs_;
  std::vector<Classifier::Node>& nodes_;
  std::vector<uint32_t>& cands_;
  Classifier::BuildStats& stats_;
  size_t base_;  // candidates of earlier trees
  size_t budget_;
  std::vector<uint64_t> scratch_lo_, scratch_hi_, scratch_points_;
};

}  // namespace

ClassKey MakeClassKey(const PacketView& p) {
  ClassKey k;
  if (p.family == 6) {
    k[0] = Be64(p.src_ip.data());
    k[1] = Be64(p.src_ip.data() + 8);
    k[2] = Be64(p.dst_ip.data());
    k[3] = Be64(p.dst_ip.data() + 8);
  } else {
    k[0] = Be32(p.src_ip.data());
    k[1] = 0;
    k[2] = Be32(p.dst_ip.data());
    k[3] = 0;
  }
  k[4] = p.l4proto;
  k[5] = p.sport;
  k[6] = p.dport;
  return k;
}

Classifier Classifier::Build(const Program& prog, const ChainRange& range, int family,
                             size_t min_rules) {
  Classifier c;
  if (range.count < min_rules || range.count == 0) return c;
  // Group by wide source / wide destination (see kMaxTrees).
  const Box full = FullBox(family);
  std::array<std::vector<Box>, kMaxTrees> boxes;
  std::array<std::vector<uint32_t>, kMaxTrees> instrs;
  for (uint32_t i = range.first; i < range.first + range.count; ++i) {
    const Box b = InstrBox(prog, prog.instrs[i], family);
    const bool wide_src = b.hi[0] - b.lo[0] >= full.hi[0] >> 16;
    const bool wide_dst = b.hi[2] - b.lo[2] >= full.hi[2] >> 16;
    const size_t g = (wide_src ? 1 : 0) | (wide_dst ? 2 : 0);
    boxes[g].push_back(b);
    instrs[g].push_back(i);
  }
  for (size_t g = 0; g < kMaxTrees; ++g) {
    if (boxes[g].empty()) continue;
    std::vector<uint32_t> all(boxes[g].size());
    for (uint32_t k = 0; k < all.size(); ++k) all[k] = k;
    TreeBuilder b(std::move(boxes[g]), std::move(instrs[g]), c.nodes_, c.cands_, c.stats_);
    c.roots_.push_back(b.Build(full, all, 0));
  }
  c.stats_.trees = c.roots_.size();
  c.stats_.candidates = c.cands_.size();
  c.nodes_.shrink_to_fit();
  c.cands_.shrink_to_fit();
  return c;
}

}  // namespace nwfq::engine
