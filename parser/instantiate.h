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

}  // namespace nwfq
