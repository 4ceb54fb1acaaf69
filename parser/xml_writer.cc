// Canonical XML (libvirt's virNWFilterDefFormat layout, section g).
#include "parser/xml_writer.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_format.h"
#include "parser/attr_table.h"
#include "parser/strutil.h"
#include "parser/var_ref.h"

namespace nwfq {

// libvirt's virBufferEscapeString for attribute values in single quotes.
std::string XmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {

std::string FormatUuid(const std::array<uint8_t, 16>& u) {
  return absl::StrFormat("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
                         u[12], u[13], u[14], u[15]);
}

// One protocol element holding the attributes whose negation equals `negated`, in the
// element's table order; empty string when there are none.
std::string ElementLine(const RuleDef& rule, bool negated) {
  std::string attrs;
  for (const AttrSpec& spec : AttributesOf(rule.protocol)) {
    const AttrDef* d = rule.Find(spec.attr);
    if (d == nullptr || d->negated != negated) continue;
    std::string value = d->var ? FormatVarRef(*d->var) : FormatAttrValue(spec.type, d->value);
    str::Append(&attrs, " ", spec.name, "='", XmlEscape(value), "'");
  }
  if (attrs.empty()) return "";
  return str::Cat("    <", ProtocolName(rule.protocol), negated ? " match='no'" : "", attrs,
                  "/>\n");
}

void AppendRule(const RuleDef& rule, std::string& out) {
  str::Append(&out, "  <rule action='", ActionName(rule.action), "' direction='",
              DirectionName(rule.direction), "' priority='", rule.priority, "'");
  if (!rule.statematch) out += " statematch='false'";
  if (rule.protocol == Protocol::kNone) {
    out += "/>\n";
    return;
  }
  out += ">\n";
  // Current upstream prints the plain attributes first, then the negated ones.
  std::string plain = ElementLine(rule, false);
  std::string negated = ElementLine(rule, true);
  if (plain.empty() && negated.empty()) {
    str::Append(&out, "    <", ProtocolName(rule.protocol), "/>\n");
  } else {
    str::Append(&out, plain, negated);
  }
  out += "  </rule>\n";
}

void AppendFilterRef(const FilterRef& ref, std::string& out) {
  str::Append(&out, "  <filterref filter='", XmlEscape(ref.filter), "'");
  if (ref.params.empty()) {
    out += "/>\n";
    return;
  }
  out += ">\n";
  // Grouped per name, names sorted, values in input order.
  std::map<std::string, std::vector<std::string>> grouped;
  for (const auto& [name, value] : ref.params) grouped[name].push_back(value);
  for (const auto& [name, values] : grouped) {
    for (const std::string& v : values)
      str::Append(&out, "    <parameter name='", XmlEscape(name), "' value='", XmlEscape(v),
                  "'/>\n");
  }
  out += "  </filterref>\n";
}

}  // namespace

std::string FormatFilterXml(const Filter& filter) {
  std::string out;
  str::Append(&out, "<filter name='", XmlEscape(filter.name), "' chain='", XmlEscape(filter.chain),
              "'");
  if (filter.priority != 0) str::Append(&out, " priority='", filter.priority, "'");
  out += ">\n";
  str::Append(&out, "  <uuid>", FormatUuid(filter.uuid), "</uuid>\n");
  for (const FilterEntry& e : filter.entries) {
    if (e.rule) AppendRule(*e.rule, out);
    if (e.ref) AppendFilterRef(*e.ref, out);
  }
  out += "</filter>\n";
  return out;
}

}  // namespace nwfq
