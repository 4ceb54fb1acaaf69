// Canonical XML of a filter document, byte-compatible with libvirt's formatter (section
// (g) of ../shared/docs/nwfilter-semantics.md; `nwfqctl xml2xml`).
#pragma once

#include <string>

#include "parser/filter.h"

namespace nwfq {

std::string FormatFilterXml(const Filter& filter);

}  // namespace nwfq
