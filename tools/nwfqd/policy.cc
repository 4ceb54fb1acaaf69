#include "tools/nwfqd/policy.h"

#include <dirent.h>

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "parser/binding.h"
#include "parser/filter_set.h"
#include "parser/instantiate.h"
#include "parser/rule_format.h"

namespace nwfq::nwfqd {
namespace {

absl::StatusOr<std::vector<std::string>> XmlFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return absl::NotFoundError(absl::StrCat(dir, ": cannot open directory"));
  std::vector<std::string> out;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name[0] == '.' || !absl::EndsWith(name, ".xml")) continue;
    out.push_back(absl::StrCat(dir, "/", name));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicy(
    const std::string& filters_dir, const std::string& bindings_dir,
    const std::vector<std::string>& binding_files) {
  std::vector<std::string> files;
  if (!bindings_dir.empty()) {
    absl::StatusOr<std::vector<std::string>> in_dir = XmlFiles(bindings_dir);
    if (!in_dir.ok()) return in_dir.status();
    files = *std::move(in_dir);
  }
  files.insert(files.end(), binding_files.begin(), binding_files.end());
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no binding: ", bindings_dir.empty() ? "no --bindings DIR or --binding FILE"
                                                          : bindings_dir + " holds no *.xml"));
  }
  absl::StatusOr<FilterSet> filters = FilterSet::LoadDirectory(filters_dir);
  if (!filters.ok()) {
    return absl::Status(filters.status().code(),
                        absl::StrCat("filters ", filters_dir, ": ", filters.status().message()));
  }
  std::vector<std::string> errors;
  auto policy = std::make_shared<Policy>();
  policy->binding_files = files;
  for (const std::string& path : files) {
    absl::StatusOr<Binding> binding = ParseBindingFile(path);
    if (!binding.ok()) {
      const std::string msg(binding.status().message());
      errors.push_back(absl::StartsWith(msg, path) ? msg : absl::StrCat(path, ": ", msg));
      continue;
    }
    if (policy->bindings.count(binding->portdev) != 0) {
      errors.push_back(absl::StrCat(path, ": a second binding for portdev ", binding->portdev));
      continue;
    }
    absl::StatusOr<InstantiatedBinding> inst = Instantiate(*filters, *binding);
    if (!inst.ok()) {
      errors.push_back(absl::StrCat(path, ": ", inst.status().message()));
      continue;
    }
    policy->fingerprints[inst->portdev] = Fingerprint(*inst);
    std::string portdev = inst->portdev;
    policy->bindings.emplace(std::move(portdev), *std::move(inst));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return std::shared_ptr<const Policy>(std::move(policy));
}

std::string Fingerprint(const InstantiatedBinding& b) {
  std::string out =
      absl::StrFormat("%s|%s|%02x:%02x:%02x:%02x:%02x:%02x\n", b.portdev, b.top_filter, b.mac[0],
                      b.mac[1], b.mac[2], b.mac[3], b.mac[4], b.mac[5]);
  for (const ConcreteRule& r : b.rules) {
    absl::StrAppend(&out, static_cast<int>(r.action), " ", static_cast<int>(r.direction), " ",
                    r.priority, " ", r.statematch, " ", FormatRuleMatch(r), " @", r.origin.file,
                    ":", r.origin.line, " ", r.origin.filter, " ", r.chain, " ",
                    static_cast<int>(r.chain_kind), " ", r.chain_priority, " ", r.from_root_filter,
                    "\n");
  }
  absl::StrAppend(&out, "l3 ", absl::StrJoin(b.l3_order, ","), "\n");
  for (const L2Chain& c : b.l2_chains) {
    absl::StrAppend(&out, "l2 ", c.name, " ", static_cast<int>(c.kind), " ", c.priority, ":");
    for (const L2Entry& e : c.entries)
      absl::StrAppend(&out, " ", e.kind == L2Entry::Kind::kRule ? "r" : "j", e.index);
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace nwfq::nwfqd
