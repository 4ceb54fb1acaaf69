// All filters known by name (a libvirt nwfilter directory such as /etc/libvirt/nwfilter).
//
// Thread-safety: a const FilterSet may be read from any number of threads; loading is
// not synchronised. Filters are owned by the set; pointers returned by Find() stay valid
// until the set is modified or destroyed.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "parser/filter.h"

namespace nwfq {

class FilterSet {
 public:
  FilterSet() = default;

  // Loads every *.xml file of `dir` (not recursive), in name order. Every file is
  // parsed; all errors of all files are reported together. Two files defining the same
  // filter name is an error naming both files.
  static absl::StatusOr<FilterSet> LoadDirectory(const std::string& dir);

  // Parses one filter document and adds it. On error nothing is added.
  absl::Status AddFile(const std::string& path);
  absl::Status AddString(std::string_view xml, std::string_view file_name);
  // Adds an already parsed filter (duplicate name is an error).
  absl::Status Add(Filter filter);
  // Adds or replaces the filter of the same name (e.g. a file being checked against
  // the directory it belongs to).
  void AddOrReplace(Filter filter);

  // The filter called `name`, or nullptr.
  const Filter* Find(std::string_view name) const;
  bool Contains(std::string_view name) const { return Find(name) != nullptr; }
  size_t size() const { return filters_.size(); }
  // Names in sorted order.
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, Filter, std::less<>> filters_;
};

}  // namespace nwfq
