// Where libvirt's ebiptables driver puts each rule, and with which conntrack matches
// (nwfilter-semantics.md c.2, d.1-d.4, b.3). Shared by the compiler and the reference
// evaluator: this is the one place that encodes libvirt's placement tables.
#pragma once

#include <cstdint>

#include "engine/program.h"
#include "parser/instantiated.h"

namespace nwfq::engine {

struct L3Placement {
  bool present = false;      // the rule has an instance in this chain
  bool swapped = false;      // src/dst exchanged
  bool with_srcmac = false;  // emit -m mac --mac-source (non-swapped instances only)
  uint32_t states = 0;       // StateBit mask for --ctstate; 0 = no state match
  bool states_negated = false;
  CtDirMatch ctdir = CtDirMatch::kAny;
  bool connlimit = false;  // the rule's connlimit-above applies in this instance
};

// The instance of layer-3 rule `r` in `chain`.
L3Placement PlaceL3(const ConcreteRule& r, L3Chain chain);

struct L2Placement {
  bool present = false;
  bool swapped = false;
};
// The instance of layer-2 rule `r` in root chain direction `dir`.
L2Placement PlaceL2(const ConcreteRule& r, L2Dir dir);

// IPv4 (4), IPv6 (6) or 0 for a layer-3 protocol element; its IP protocol number (-1 = any).
int L3Family(Protocol p);
int L3ProtoNumber(Protocol p);

// The terminal verdict of an action at layer 3 / layer 2: accept (incl. return = pass),
// drop (also reject at layer 2) or reject; continue is no verdict.
bool IsTerminal(Action a);

}  // namespace nwfq::engine
