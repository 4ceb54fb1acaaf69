#include "parser/var_ref.h"

#include "absl/strings/ascii.h"
#include "parser/strutil.h"

namespace nwfq {
namespace {

void SkipSpaces(std::string_view& s) {
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
}

bool IsNameChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

}  // namespace

bool IsValidVarName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name)
    if (!IsNameChar(c)) return false;
  return true;
}

bool IsValidVarValue(std::string_view value) {
  if (value.empty()) return false;
  for (char c : value)
    if (!IsNameChar(c) && c != '.' && c != ':') return false;
  return true;
}

std::optional<VarRef> ParseVarRef(std::string_view s) {
  VarRef ref;
  size_t n = 0;
  while (n < s.size() && IsNameChar(s[n])) ++n;
  if (n == 0) return std::nullopt;
  ref.name = std::string(s.substr(0, n));
  s.remove_prefix(n);
  SkipSpaces(s);
  if (s.empty()) return ref;  // $NAME == $NAME[@0]
  if (s.front() != '[') return std::nullopt;
  s.remove_prefix(1);
  SkipSpaces(s);
  if (!s.empty() && s.front() == '@') {
    ref.kind = VarRef::Kind::kIterator;
    s.remove_prefix(1);
    SkipSpaces(s);
  } else {
    ref.kind = VarRef::Kind::kElement;
  }
  size_t digits = 0;
  uint64_t value = 0;
  while (digits < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[digits]))) {
    value = value * 10 + static_cast<uint64_t>(s[digits] - '0');
    if (value > 0xffffffffu) return std::nullopt;
    ++digits;
  }
  if (digits == 0) return std::nullopt;
  s.remove_prefix(digits);
  SkipSpaces(s);
  if (s.empty() || s.front() != ']') return std::nullopt;
  s.remove_prefix(1);
  SkipSpaces(s);
  if (!s.empty()) return std::nullopt;
  if (ref.kind == VarRef::Kind::kIterator && value > kMaxIteratorId) return std::nullopt;
  ref.index = static_cast<uint32_t>(value);
  return ref;
}

std::string FormatVarRef(const VarRef& ref) {
  if (ref.kind == VarRef::Kind::kElement) return str::Cat("$", ref.name, "[", ref.index, "]");
  if (ref.index == 0) return str::Cat("$", ref.name);
  return str::Cat("$", ref.name, "[@", ref.index, "]");
}

}  // namespace nwfq
