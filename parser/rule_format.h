// Human-readable one-line form of a concrete rule's match, for `nwfqctl show`, explain
// output and log messages: `tcp srcipaddr=10.0.0.1 !dstportstart=22 state=NEW`.
#pragma once

#include <string>

#include "parser/instantiated.h"

namespace nwfq {

// "<protocol> attr=value ..." with negated attributes prefixed by '!'; values in
// libvirt's canonical form. A rule without protocol element prints as "(any frame)".
std::string FormatRuleMatch(const ConcreteRule& rule);

// The canonical text of one slot's value (e.g. "udp" for protocol 17, "22" for a mask).
std::string FormatSlotValue(Protocol protocol, const AttrSlot& slot);

}  // namespace nwfq
