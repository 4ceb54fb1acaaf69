// Loading nwfqd's policy: the filter directory (libvirt's format, e.g. /etc/libvirt/nwfilter)
// and one <filterbinding> file per tap device, instantiated through the parser. Runs off
// the hot path (start-up; later reload).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parser/instantiated.h"

namespace nwfq::nwfqd {

// Loads `filters_dir` and every binding file, instantiates each binding. All errors of all
// files are reported together (file:line where the parser gives it). Two bindings for the
// same portdev are an error.
absl::StatusOr<std::vector<InstantiatedBinding>> LoadPolicy(
    const std::string& filters_dir, const std::vector<std::string>& binding_files);

}  // namespace nwfq::nwfqd
