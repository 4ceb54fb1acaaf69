// Compiles an InstantiatedBinding (parser/instantiated.h) into an immutable Program
// (program.h): one instruction list per libvirt chain, with every placement rule of
// nwfilter-semantics.md c.2 and d.1-d.4 applied (see placement.h) and every attribute
// turned into a match test in the packet's own point of view (src/dst already swapped).
//
// Runs off the hot path (on SetBinding); the result is shared read-only between threads.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/program.h"
#include "parser/instantiated.h"

namespace nwfq::engine {

absl::StatusOr<std::shared_ptr<const Program>> Compile(const InstantiatedBinding& binding);

}  // namespace nwfq::engine
