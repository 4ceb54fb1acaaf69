// Loading nwfqd's policy: the filter directory (libvirt's format, e.g. /etc/libvirt/nwfilter)
// and the <filterbinding> files (a directory of them and/or single files), instantiated
// through the parser. Runs off the hot path (start-up and reload, on the control thread).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parser/instantiated.h"

namespace nwfq::nwfqd {

// The instantiated policy the workers run with, keyed by portdev. Immutable once shared;
// a reload builds a new one and swaps the pointer (with the workers paused).
struct Policy {
  std::map<std::string, InstantiatedBinding, std::less<>> bindings;
  std::map<std::string, std::string, std::less<>> fingerprints;  // portdev -> Fingerprint()
  std::vector<std::string> binding_files;                        // what was read
};

// Loads `filters_dir` and every binding file (`bindings_dir`/*.xml in name order, then
// `binding_files`), instantiates each binding. All errors of all files are reported
// together, one per line, with file:line where the parser gives it. Two bindings for the
// same portdev are an error; so is no binding at all.
absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicy(
    const std::string& filters_dir, const std::string& bindings_dir,
    const std::vector<std::string>& binding_files);

// A text that changes whenever anything the engine compiles from `b` changes (rules,
// order, chains, MAC; rule origins too, since counters and logs name them). Equal
// fingerprints let a reload keep a binding's program, with its counters and connlimit
// state.
std::string Fingerprint(const InstantiatedBinding& b);

}  // namespace nwfq::nwfqd
