#include "parser/filter_set.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "parser/filter_parser.h"
#include "parser/strutil.h"

namespace nwfq {

absl::StatusOr<FilterSet> FilterSet::LoadDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> paths;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".xml" && it->is_regular_file(ec)) paths.push_back(it->path());
  }
  if (ec) return absl::NotFoundError(str::Cat(dir, ": cannot read directory: ", ec.message()));
  std::sort(paths.begin(), paths.end());
  FilterSet set;
  std::vector<std::string> errors;
  for (const std::string& p : paths) {
    absl::Status s = set.AddFile(p);
    if (!s.ok()) errors.push_back(std::string(s.message()));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(str::Join(errors, "\n"));
  return set;
}

absl::Status FilterSet::AddFile(const std::string& path) {
  absl::StatusOr<Filter> f = ParseFilterFile(path);
  if (!f.ok()) return f.status();
  return Add(*std::move(f));
}

absl::Status FilterSet::AddString(std::string_view xml, std::string_view file_name) {
  absl::StatusOr<Filter> f = ParseFilterString(xml, file_name);
  if (!f.ok()) return f.status();
  return Add(*std::move(f));
}

absl::Status FilterSet::Add(Filter filter) {
  auto it = filters_.find(filter.name);
  if (it != filters_.end()) {
    return absl::AlreadyExistsError(
        str::Cat(filter.file.empty() ? "<memory>" : filter.file, ":", filter.line,
                 ": filter/name: '", filter.name, "' is already defined by ",
                 it->second.file.empty() ? "<memory>" : it->second.file, ":", it->second.line,
                 " (filter names must be unique)"));
  }
  std::string name = filter.name;
  filters_.emplace(std::move(name), std::move(filter));
  return absl::OkStatus();
}

void FilterSet::AddOrReplace(Filter filter) {
  std::string name = filter.name;
  filters_.insert_or_assign(std::move(name), std::move(filter));
}

const Filter* FilterSet::Find(std::string_view name) const {
  auto it = filters_.find(name);
  return it == filters_.end() ? nullptr : &it->second;
}

std::vector<std::string> FilterSet::Names() const {
  std::vector<std::string> names;
  names.reserve(filters_.size());
  for (const auto& [n, f] : filters_) names.push_back(n);
  return names;
}

}  // namespace nwfq
