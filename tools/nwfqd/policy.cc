#include "tools/nwfqd/policy.h"

#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parser/binding.h"
#include "parser/filter_set.h"
#include "parser/instantiate.h"

namespace nwfq::nwfqd {

absl::StatusOr<std::vector<InstantiatedBinding>> LoadPolicy(
    const std::string& filters_dir, const std::vector<std::string>& binding_files) {
  if (binding_files.empty()) return absl::InvalidArgumentError("no --binding given");
  absl::StatusOr<FilterSet> filters = FilterSet::LoadDirectory(filters_dir);
  if (!filters.ok()) {
    return absl::Status(filters.status().code(),
                        absl::StrCat("filters ", filters_dir, ": ", filters.status().message()));
  }
  std::vector<std::string> errors;
  std::vector<InstantiatedBinding> out;
  std::set<std::string> portdevs;
  for (const std::string& path : binding_files) {
    absl::StatusOr<Binding> binding = ParseBindingFile(path);
    if (!binding.ok()) {
      errors.push_back(absl::StrCat(path, ": ", binding.status().message()));
      continue;
    }
    if (!portdevs.insert(binding->portdev).second) {
      errors.push_back(absl::StrCat(path, ": a second binding for portdev ", binding->portdev));
      continue;
    }
    absl::StatusOr<InstantiatedBinding> inst = Instantiate(*filters, *binding);
    if (!inst.ok()) {
      errors.push_back(absl::StrCat(path, ": ", inst.status().message()));
      continue;
    }
    out.push_back(*std::move(inst));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return out;
}

}  // namespace nwfq::nwfqd
