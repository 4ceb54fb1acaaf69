// The output of instantiating a <filterbinding>: every concrete rule of the binding's
// filter tree (filterrefs expanded, variables and iterators substituted, values
// type-checked) plus libvirt's evaluation order for each layer. This is the contract
// between the parser (producer) and the engine's compiler (consumer): the engine never
// sees XML.
//
// Reference: ../shared/docs/nwfilter-semantics.md sections (a.6), (b.3), (b.4), (c.1).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "parser/rule_types.h"

namespace nwfq {

// Where a concrete rule came from, for counters, `show` and "why was this dropped?".
struct RuleOrigin {
  std::string filter;  // name of the <filter> holding the <rule>
  std::string file;    // path of the XML file ("" when parsed from memory)
  int line = 0;        // line of the <rule> element
};

struct ConcreteRule {
  Action action = Action::kAccept;
  Direction direction = Direction::kInOut;
  int priority = 500;       // effective rule priority in [-1000, 1000]
  bool statematch = true;   // false for statematch='0'/'false'
  Protocol protocol = Protocol::kNone;
  std::vector<AttrSlot> attrs;  // at most one slot per Attr, in Attr order

  RuleOrigin origin;
  std::string chain = "root";  // the owning filter's chain attribute
  ChainKind chain_kind = ChainKind::kRoot;
  int chain_priority = 0;      // the owning filter's effective priority
  bool from_root_filter = true;  // owning filter's chain is "root" (ordering quirk, c.1)

  // The slot for `a`, or nullptr.
  const AttrSlot* Find(Attr a) const {
    for (const AttrSlot& s : attrs)
      if (s.attr == a) return &s;
    return nullptr;
  }
};

// One entry of a layer-2 chain: either a rule or a jump to another chain.
struct L2Entry {
  enum class Kind : uint8_t { kRule, kJump };
  Kind kind = Kind::kRule;
  uint32_t index = 0;  // kRule: index into InstantiatedBinding::rules; kJump: into l2_chains
};

// A layer-2 chain (libvirt-I/-O root chain or one named sub-chain such as "arp-mac").
// Entries are in evaluation order; direction filtering (in/out) is left to the compiler,
// since one chain list serves both the from-VM (I) and to-VM (O) chains.
struct L2Chain {
  std::string name;  // "root" for index 0
  ChainKind kind = ChainKind::kRoot;
  int priority = 0;
  std::vector<L2Entry> entries;
};

struct Warning {
  RuleOrigin origin;
  std::string message;
};

struct InstantiatedBinding {
  // From the <filterbinding>.
  std::string owner_name;
  std::string owner_uuid;
  std::string portdev;           // tap device, e.g. "vnet0"
  std::array<uint8_t, 6> mac{};  // the interface MAC ($MAC)
  std::string top_filter;

  // All concrete rules in depth-first document order after iterator expansion.
  std::vector<ConcreteRule> rules;
  // Indices into `rules` of the layer-3 rules (tcp ... icmpv6) in libvirt's evaluation
  // order: root-filter rules first, then the rest, each group stably sorted by priority.
  std::vector<uint32_t> l3_order;
  // Layer-2 chains; l2_chains[0] is the root chain, with jumps to sub-chains interleaved
  // by chain priority (on a tie the jump comes first).
  std::vector<L2Chain> l2_chains;
  // Things libvirt would do silently that a user probably did not mean.
  std::vector<Warning> warnings;
};

}  // namespace nwfq
