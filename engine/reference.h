// A naive reference evaluator: walks the InstantiatedBinding's rule lists directly and
// reads each rule's attributes against the packet, with no compiled tests. It shares only
// the placement tables (placement.h) with the compiler, and exists to check the compiled
// Program (and any classifier built on it) on random rule sets and packets.
//
// Slow on purpose; never used on the data path.
#pragma once

#include <cstdint>

#include "engine/evaluator.h"
#include "engine/packet_view.h"
#include "parser/instantiated.h"

namespace nwfq::engine {

struct RefOutcome {
  bool terminal = false;  // layer 3: a terminal rule matched; layer 2: dropped
  Action action = Action::kAccept;
  int32_t rule = -1;  // deciding rule index, -1 when fallen off
};

// Layer 3 chain `chain` for the packet's family. `connlimit_count` is the count every
// connlimit instance sees.
RefOutcome ReferenceL3(const InstantiatedBinding& b, L3Chain chain, const PacketView& p,
                       const EvalContext& ctx, uint32_t connlimit_count);
// Layer 2 root chain `dir`: terminal = dropped; rule = the rule that accepted, dropped or
// returned (-1 when the frame fell off a chain).
RefOutcome ReferenceL2(const InstantiatedBinding& b, L2Dir dir, const PacketView& p);

}  // namespace nwfq::engine
