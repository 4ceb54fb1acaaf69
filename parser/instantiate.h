// Instantiation of a <filterbinding> against a FilterSet (sections a.3, a.6, b.3, c.1):
// filterrefs expanded depth first, variables scoped (the caller's value wins), lists
// and iterators expanded (lockstep per iterator id, cartesian across ids, repeated
// combinations skipped), substituted values type-checked, and libvirt's evaluation
// order computed (InstantiatedBinding::l3_order and ::l2_chains).
//
// Thread-safety: pure function of its inputs; safe to call concurrently on a const
// FilterSet.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "parser/binding.h"
#include "parser/filter_set.h"
#include "parser/instantiated.h"

namespace nwfq {

// Errors: unknown filter (naming the referencing filter and line), filterref cycle
// (naming the cycle), unset variable, list-length mismatch for one iterator, element
// index out of range, a substituted value of the wrong type. All errors are reported
// together.
absl::StatusOr<InstantiatedBinding> Instantiate(const FilterSet& filters, const Binding& binding);

// For `nwfqctl check`: instantiates filter `top` without a binding. Variables that no
// <filterref> defines are left out of the rules instead of being an error (so lists
// produce one rule); everything else (unknown filters, cycles, values of defined
// variables, ordering and its warnings) is checked as in Instantiate().
absl::StatusOr<InstantiatedBinding> InstantiateStructure(const FilterSet& filters,
                                                         std::string_view top);

}  // namespace nwfq
