// Canonical XML of a filter document, byte-compatible with libvirt's formatter (section
// (g) of ../shared/docs/nwfilter-semantics.md; `nwfqctl xml2xml`).
#pragma once

#include <string>
#include <string_view>

#include "parser/filter.h"

namespace nwfq {

std::string FormatFilterXml(const Filter& filter);

// libvirt's virBufferEscapeString: < > & " ' as entities (attribute values, text).
std::string XmlEscape(std::string_view s);

}  // namespace nwfq
