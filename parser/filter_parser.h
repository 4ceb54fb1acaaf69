// Parser and validator of one libvirt <filter> document (section a of
// ../shared/docs/nwfilter-semantics.md), with libvirt's quirks:
//  * any invalid attribute value rejects the whole document (not just the rule);
//  * an unparsable or out-of-range rule priority silently becomes 500;
//  * unknown attributes and unknown child elements are ignored (recorded as strict
//    notes for `nwfqctl check --strict`);
//  * several protocol elements with the same name in one rule are merged.
//
// Errors: one absl::InvalidArgumentError listing ALL problems of the document, one per
// line, as `file:line: element/attribute: what is wrong (allowed: ...)`.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "parser/filter.h"

namespace nwfq {

absl::StatusOr<Filter> ParseFilterString(std::string_view xml, std::string_view file_name);
absl::StatusOr<Filter> ParseFilterFile(const std::string& path);

// Reads a whole file (shared by the loaders). NotFound / PermissionDenied on failure.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace nwfq
