// Instantiation of a binding (libvirt's nwfilter_gentech_driver.c + the ordering of
// nwfilter_ebiptables_driver.c, restated in instantiate.h).
#include "parser/instantiate.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_format.h"
#include "parser/attr_table.h"
#include "parser/strutil.h"
#include "parser/var_ref.h"

namespace nwfq {
namespace {

using VarList = std::vector<std::string>;
// Variables visible in one filter: name -> list of values. Small, so a vector.
using Vars = std::vector<std::pair<std::string, VarList>>;

const VarList* Lookup(const Vars& vars, std::string_view name) {
  for (const auto& [n, v] : vars)
    if (n == name) return &v;
  return nullptr;
}

void Set(Vars& vars, const std::string& name, const VarList& values) {
  for (auto& [n, v] : vars) {
    if (n == name) {
      v = values;
      return;
    }
  }
  vars.emplace_back(name, values);
}

std::string Where(const Filter& f, int line) {
  return str::Cat(f.file.empty() ? "<memory>" : f.file, ":", line);
}

// One iterator of libvirt's virNWFilterVarCombIter: the variables it advances in
// lockstep and its current position.
struct IterEntry {
  int64_t id = 0;  // iterator id; negative for a pinned $X[N] element access
  uint32_t min = 0, max = 0, cur = 0;
  std::vector<const VarList*> lists;

  // False if the current position repeats the values of an earlier position.
  bool Unique() const {
    if (lists.empty()) return true;
    const std::string& first = (*lists[0])[cur];
    for (uint32_t j = 0; j < cur; ++j) {
      if ((*lists[0])[j] != first) continue;
      bool same = true;
      for (size_t k = 1; k < lists.size() && same; ++k) same = (*lists[k])[cur] == (*lists[k])[j];
      if (same) return false;
    }
    return true;
  }
};

// Advances the combination; false when all combinations were produced. The first
// iterator varies fastest; repeated combinations of one iterator are skipped.
bool Next(std::vector<IterEntry>& entries) {
  for (IterEntry& e : entries) {
    while (++e.cur <= e.max) {
      if (e.Unique()) return true;
    }
    e.cur = e.min;
  }
  return false;
}

class Instantiator {
 public:
  Instantiator(const FilterSet& filters, InstantiatedBinding& out, bool structural)
      : filters_(filters), out_(out), structural_(structural) {}

  void Walk(const Filter& f, const Vars& vars) {
    stack_.push_back(&f);
    if (seen_filters_.insert(&f).second) {
      for (const Note& n : f.notes) {
        if (!n.strict) out_.warnings.push_back(Warning{{f.name, f.file, n.line}, n.message});
      }
    }
    for (const FilterEntry& e : f.entries) {
      if (e.rule) ExpandRule(f, *e.rule, vars);
      if (e.ref) Descend(f, *e.ref, vars);
    }
    stack_.pop_back();
  }

  void Error(std::string message) {
    if (error_set_.insert(message).second) errors_.push_back(std::move(message));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  void Descend(const Filter& f, const FilterRef& ref, const Vars& vars) {
    const Filter* child = filters_.Find(ref.filter);
    if (child == nullptr) {
      Error(str::Cat(Where(f, ref.line), ": filterref/filter: filter '", ref.filter,
                     "' (referenced by '", f.name, "') is not defined"));
      return;
    }
    for (size_t i = 0; i < stack_.size(); ++i) {
      if (stack_[i] != child) continue;
      std::vector<std::string> names;
      for (size_t j = i; j < stack_.size(); ++j) names.push_back(stack_[j]->name);
      names.push_back(child->name);
      Error(str::Cat(Where(f, ref.line), ": filterref/filter: reference cycle ",
                     str::Join(names, " -> ")));
      return;
    }
    // The filterref's own parameters, then every caller variable (the caller wins).
    Vars scope;
    for (const auto& [name, value] : ref.params) {
      bool added = false;
      for (auto& [n, v] : scope) {
        if (n == name) {
          v.push_back(value);
          added = true;
        }
      }
      if (!added) scope.push_back({name, {value}});
    }
    for (const auto& [name, values] : vars) Set(scope, name, values);
    Walk(*child, scope);
  }

  void ExpandRule(const Filter& f, const RuleDef& rule, const Vars& vars) {
    // Variable accesses in the element's table order (libvirt's iterator creation order).
    struct Access {
      const AttrDef* def;
      const AttrSpec* spec;
      size_t entry;
      const VarList* list;
    };
    std::vector<Access> accesses;
    std::vector<IterEntry> entries(1);  // entry 0: the default iterator @0
    bool ok = true;
    for (const AttrSpec& spec : AttributesOf(rule.protocol)) {
      const AttrDef* d = rule.Find(spec.attr);
      if (d == nullptr || !d->var) continue;
      const VarRef& ref = *d->var;
      const VarList* list = Lookup(vars, ref.name);
      const std::string loc =
          str::Cat(Where(f, d->line), ": ", ProtocolName(rule.protocol), "/", spec.name);
      if (list == nullptr && structural_) continue;  // left out of the rule
      if (list == nullptr) {
        std::string hint = ref.name == "IP" || ref.name == "IPV6"
                               ? " (nwfq does not learn guest addresses: pass it as a "
                                 "<parameter> of the binding)"
                               : " (set it as a <parameter> of the binding or of a "
                                 "referencing <filterref>)";
        Error(str::Cat(loc, ": variable $", ref.name, " used in filter '", f.name,
                       "' is not defined", hint));
        ok = false;
        continue;
      }
      const uint32_t size = static_cast<uint32_t>(list->size());
      size_t index;
      if (ref.kind == VarRef::Kind::kElement) {
        if (ref.index >= size) {
          Error(str::Cat(loc, ": ", FormatVarRef(ref), " is out of range ($", ref.name, " has ",
                         size, " value", size == 1 ? "" : "s", ")"));
          ok = false;
          continue;
        }
        index = entries.size();
        IterEntry e;
        e.id = -static_cast<int64_t>(index);
        e.min = e.max = e.cur = ref.index;
        entries.push_back(e);
      } else {
        index = entries.size();
        for (size_t i = 0; i < entries.size(); ++i)
          if (entries[i].id == ref.index) index = i;
        if (index == entries.size()) {
          IterEntry e;
          e.id = ref.index;
          entries.push_back(e);
        }
        IterEntry& e = entries[index];
        if (e.lists.empty()) {
          e.max = size - 1;
        } else if (e.max != size - 1) {
          Error(str::Cat(loc, ": lists iterated together with @", ref.index,
                         " must have the same length ($", ref.name, " has ", size, ", another has ",
                         e.max + 1, ")"));
          ok = false;
          continue;
        }
      }
      entries[index].lists.push_back(list);
      accesses.push_back(Access{d, &spec, index, list});
    }
    if (!ok) return;

    do {
      ConcreteRule cr;
      cr.action = rule.action;
      cr.direction = rule.direction;
      cr.priority = rule.priority;
      cr.statematch = rule.statematch;
      cr.protocol = rule.protocol;
      cr.origin = RuleOrigin{f.name, f.file, rule.line};
      cr.chain = f.chain;
      cr.chain_kind = f.chain_kind;
      cr.chain_priority = f.priority;
      cr.from_root_filter = f.chain_kind == ChainKind::kRoot;
      cr.attrs.reserve(rule.attrs.size() + 1);
      bool rule_ok = true;
      for (const AttrDef& d : rule.attrs) {
        AttrSlot slot{d.attr, d.negated, d.value};
        if (d.var) {
          const Access* a = nullptr;
          for (const Access& acc : accesses)
            if (acc.def == &d) a = &acc;
          if (a == nullptr) continue;  // structural mode: unset variable
          const std::string& text = (*a->list)[entries[a->entry].cur];
          absl::StatusOr<AttrValue> v = ParseAttrValue(a->spec->type, text);
          if (!v.ok()) {
            Error(str::Cat(Where(f, d.line), ": ", ProtocolName(rule.protocol), "/", a->spec->name,
                           ": value '", text, "' of ", FormatVarRef(*d.var), " is ",
                           v.status().message()));
            rule_ok = false;
            continue;
          }
          slot.value = *std::move(v);
        }
        cr.attrs.push_back(std::move(slot));
      }
      if (!rule_ok) continue;
      // <all> keeps an ipset without flags (libvirt applies no fix-up there); give the
      // engine the default single 'src' flag.
      if (cr.Find(Attr::kIpset) != nullptr && cr.Find(Attr::kIpsetFlags) == nullptr) {
        AttrSlot flags{Attr::kIpsetFlags, cr.Find(Attr::kIpset)->negated, {}};
        flags.value.kind = ValueKind::kIpsetFlags;
        flags.value.number = 1u << 8;
        cr.attrs.push_back(std::move(flags));
        std::sort(cr.attrs.begin(), cr.attrs.end(),
                  [](const AttrSlot& x, const AttrSlot& y) { return x.attr < y.attr; });
      }
      out_.rules.push_back(std::move(cr));
    } while (Next(entries));
  }

  const FilterSet& filters_;
  InstantiatedBinding& out_;
  const bool structural_;
  std::vector<const Filter*> stack_;
  std::set<const Filter*> seen_filters_;
  std::vector<std::string> errors_;
  std::set<std::string> error_set_;
};

void ComputeOrder(InstantiatedBinding& b) {
  const uint32_t n = static_cast<uint32_t>(b.rules.size());
  // Layer 3: root-filter rules first (libvirt's sort puts root-chain rules ahead), then
  // the rest; each group stably by priority.
  for (uint32_t i = 0; i < n; ++i)
    if (!IsLayer2(b.rules[i].protocol)) b.l3_order.push_back(i);
  std::stable_sort(b.l3_order.begin(), b.l3_order.end(), [&](uint32_t x, uint32_t y) {
    const ConcreteRule& a = b.rules[x];
    const ConcreteRule& c = b.rules[y];
    if (a.from_root_filter != c.from_root_filter) return a.from_root_filter;
    return a.priority < c.priority;
  });
  // Warn where the quirk puts a rule after a root rule with a higher priority number.
  const ConcreteRule* max_root = nullptr;
  for (uint32_t i : b.l3_order) {
    const ConcreteRule& r = b.rules[i];
    if (r.from_root_filter) {
      max_root = &r;  // sorted, so the last one has the highest priority
    } else if (max_root != nullptr && max_root->priority > r.priority) {
      b.warnings.push_back(
          Warning{r.origin,
                  absl::StrFormat("rule with priority %d in filter '%s' (chain '%s') is evaluated "
                                  "after root-filter rule %s:%d with priority %d: libvirt places "
                                  "layer-3 rules of non-root filters after all root-filter rules",
                                  r.priority, r.origin.filter, r.chain, max_root->origin.file,
                                  max_root->origin.line, max_root->priority)});
    }
  }

  // Layer 2: the root chain, then one sub-chain per chain name that has L2 rules.
  b.l2_chains.push_back(L2Chain{"root", ChainKind::kRoot, 0, {}});
  std::vector<std::vector<uint32_t>> members(1);
  for (uint32_t i = 0; i < n; ++i) {
    const ConcreteRule& r = b.rules[i];
    if (!IsLayer2(r.protocol)) continue;
    if (r.from_root_filter) {
      members[0].push_back(i);
      continue;
    }
    size_t c = 1;
    while (c < b.l2_chains.size() && b.l2_chains[c].name != r.chain) ++c;
    if (c == b.l2_chains.size()) {
      b.l2_chains.push_back(L2Chain{r.chain, r.chain_kind, r.chain_priority, {}});
      members.emplace_back();
    } else if (b.l2_chains[c].priority != r.chain_priority) {
      b.warnings.push_back(Warning{
          r.origin,
          absl::StrFormat("filter '%s' uses chain '%s' with priority %d, but the "
                          "chain already has priority %d from another filter",
                          r.origin.filter, r.chain, r.chain_priority, b.l2_chains[c].priority)});
    }
    members[c].push_back(i);
  }
  auto by_priority = [&](uint32_t x, uint32_t y) {
    return b.rules[x].priority < b.rules[y].priority;
  };
  for (size_t c = 0; c < members.size(); ++c) {
    std::stable_sort(members[c].begin(), members[c].end(), by_priority);
    if (c == 0) continue;
    for (uint32_t i : members[c]) {
      L2Entry e;
      e.kind = L2Entry::Kind::kRule;
      e.index = i;
      b.l2_chains[c].entries.push_back(e);
      // Rules below their chain's priority are raised to it (c.1); order is unchanged.
      b.rules[i].priority = std::max(b.rules[i].priority, b.l2_chains[c].priority);
    }
  }
  std::vector<uint32_t> jumps;
  for (uint32_t c = 1; c < b.l2_chains.size(); ++c) jumps.push_back(c);
  std::stable_sort(jumps.begin(), jumps.end(), [&](uint32_t x, uint32_t y) {
    return b.l2_chains[x].priority < b.l2_chains[y].priority;
  });
  size_t j = 0;
  auto& root = b.l2_chains[0].entries;
  for (uint32_t i : members[0]) {
    while (j < jumps.size() && b.l2_chains[jumps[j]].priority <= b.rules[i].priority)
      root.push_back(L2Entry{L2Entry::Kind::kJump, jumps[j++]});
    root.push_back(L2Entry{L2Entry::Kind::kRule, i});
  }
  while (j < jumps.size()) root.push_back(L2Entry{L2Entry::Kind::kJump, jumps[j++]});
}

}  // namespace

absl::StatusOr<InstantiatedBinding> Instantiate(const FilterSet& filters, const Binding& binding) {
  InstantiatedBinding out;
  out.owner_name = binding.owner_name;
  out.owner_uuid = binding.owner_uuid;
  out.portdev = binding.portdev;
  out.mac = binding.mac;
  out.top_filter = binding.filter;

  const Filter* top = filters.Find(binding.filter);
  if (top == nullptr) {
    return absl::NotFoundError(str::Cat(binding.file.empty() ? "<memory>" : binding.file, ":",
                                        binding.line, ": filterref/filter: filter '",
                                        binding.filter, "' is not defined"));
  }
  // $MAC is the interface MAC unless the binding sets it explicitly.
  Vars vars;
  vars.emplace_back("MAC", VarList{absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", binding.mac[0],
                                                   binding.mac[1], binding.mac[2], binding.mac[3],
                                                   binding.mac[4], binding.mac[5])});
  for (const auto& [name, values] : binding.params) Set(vars, name, values);

  Instantiator inst(filters, out, /*structural=*/false);
  inst.Walk(*top, vars);
  if (!inst.errors().empty()) return absl::InvalidArgumentError(str::Join(inst.errors(), "\n"));
  ComputeOrder(out);
  return out;
}

absl::StatusOr<InstantiatedBinding> InstantiateStructure(const FilterSet& filters,
                                                         std::string_view top_name) {
  InstantiatedBinding out;
  out.top_filter = std::string(top_name);
  const Filter* top = filters.Find(top_name);
  if (top == nullptr)
    return absl::NotFoundError(str::Cat("filter '", top_name, "' is not defined"));
  Instantiator inst(filters, out, /*structural=*/true);
  inst.Walk(*top, Vars{});
  if (!inst.errors().empty()) return absl::InvalidArgumentError(str::Join(inst.errors(), "\n"));
  ComputeOrder(out);
  return out;
}

}  // namespace nwfq
