// The document model of one libvirt <filter> as written (before instantiation): rules
// with typed attribute values or unresolved variable references, and filterrefs.
//
// Produced by ParseFilterString/ParseFilterFile (filter_parser.h) after full validation,
// so every value here is already type- and range-checked; consumed by FilterSet,
// Instantiate() and the canonical XML writer (xml_writer.h).
//
// Reference: ../shared/docs/nwfilter-semantics.md section (a).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "parser/rule_types.h"

namespace nwfq {

// A `$NAME`, `$NAME[N]` or `$NAME[@K]` reference (section a.6). `$NAME` is `$NAME[@0]`.
struct VarRef {
  enum class Kind : uint8_t { kIterator, kElement };
  std::string name;
  Kind kind = Kind::kIterator;
  uint32_t index = 0;  // kIterator: iterator id (0..1000); kElement: list position

  friend bool operator==(const VarRef&, const VarRef&) = default;
};

// One attribute of a rule as written. Exactly one of `value` (concrete) and `var` is
// meaningful: when `var` is set, `value` is empty and the value is checked at
// instantiation.
struct AttrDef {
  Attr attr;
  bool negated = false;          // effective negation after inheritance (section a.5)
  bool negated_written = false;  // the element carrying it had match='no'
  std::optional<VarRef> var;
  AttrValue value;
  int line = 0;  // line of the attribute in the source
};

struct RuleDef {
  Action action = Action::kAccept;
  Direction direction = Direction::kInOut;
  int priority = 500;
  bool statematch = true;
  Protocol protocol = Protocol::kNone;
  std::vector<AttrDef> attrs;  // at most one per Attr, in Attr enum order
  int line = 0;

  const AttrDef* Find(Attr a) const {
    for (const AttrDef& d : attrs)
      if (d.attr == a) return &d;
    return nullptr;
  }
};

struct FilterRef {
  std::string filter;
  // <parameter name value> in input order; a repeated name makes a list.
  std::vector<std::pair<std::string, std::string>> params;
  int line = 0;
};

// A rule or a filterref, in document order.
struct FilterEntry {
  std::optional<RuleDef> rule;
  std::optional<FilterRef> ref;
};

// Something libvirt accepts silently that the user may not have meant. `strict` notes
// (unknown attributes) are only shown by `nwfqctl check --strict`.
struct Note {
  int line = 0;
  std::string message;
  bool strict = false;
};

struct Filter {
  std::string name;
  std::string chain = "root";  // as written (suffix), e.g. "arp-mac"
  ChainKind chain_kind = ChainKind::kRoot;
  int priority = 0;                // effective chain priority (section b.2)
  std::array<uint8_t, 16> uuid{};  // random when absent from the document
  bool uuid_given = false;
  std::vector<FilterEntry> entries;  // document order

  std::string file;  // "" when parsed from memory
  int line = 0;      // line of <filter>
  std::vector<Note> notes;
};

// Default chain priority of a chain kind (section b.2).
int DefaultChainPriority(ChainKind kind);

}  // namespace nwfq
