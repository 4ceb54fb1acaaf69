#include "parser/rule_format.h"

#include "parser/attr_table.h"
#include "parser/strutil.h"

namespace nwfq {

std::string FormatSlotValue(Protocol protocol, const AttrSlot& slot) {
  const AttrSpec* spec = FindAttrSpec(protocol, slot.attr);
  if (spec == nullptr) return "?";
  return FormatAttrValue(spec->type, slot.value);
}

std::string FormatRuleMatch(const ConcreteRule& rule) {
  if (rule.protocol == Protocol::kNone) return "(any frame)";
  std::string out(ProtocolName(rule.protocol));
  // Table order reads better than enum order (addresses before masks, ports last).
  for (const AttrSpec& spec : AttributesOf(rule.protocol)) {
    const AttrSlot* s = rule.Find(spec.attr);
    if (s == nullptr || spec.attr == Attr::kComment) continue;
    std::string value = FormatAttrValue(spec.type, s->value);
    str::Append(&out, " ", s->negated ? "!" : "", spec.name, "=", value);
  }
  if (!rule.statematch) out += " statematch=false";
  return out;
}

}  // namespace nwfq
