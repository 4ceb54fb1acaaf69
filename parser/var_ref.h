// Variable references in attribute values (section a.6).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "parser/filter.h"

namespace nwfq {

// Parses the text after `$`: NAME, NAME[N] or NAME[@K] (K <= 1000). Whitespace inside
// the brackets and after the reference is tolerated, as libvirt does.
std::optional<VarRef> ParseVarRef(std::string_view text);
// `$NAME`, `$NAME[N]` or `$NAME[@K]` (`$NAME[@0]` prints as `$NAME`).
std::string FormatVarRef(const VarRef& ref);
// Variable names: non-empty [A-Za-z0-9_].
bool IsValidVarName(std::string_view name);
// Variable values: non-empty [A-Za-z0-9_.:].
bool IsValidVarValue(std::string_view value);

inline constexpr uint32_t kMaxIteratorId = 1000;

}  // namespace nwfq
