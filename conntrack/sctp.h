// SCTP: the walk over a packet's chunks that the tracker decides on, for the packet parser.
// The tracker itself (kernel nf_conntrack_proto_sctp.c) is in sctp.cc, behind Table.
#pragma once

#include <cstddef>
#include <cstdint>

#include "conntrack/types.h"

namespace nwfq::ct {

// The chunk types the tracker looks at (RFC 9260 section 3.2).
enum SctpChunkType : uint8_t {
  kSctpData = 0,
  kSctpInit = 1,
  kSctpInitAck = 2,
  kSctpSack = 3,
  kSctpHeartbeat = 4,
  kSctpHeartbeatAck = 5,
  kSctpAbort = 6,
  kSctpShutdown = 7,
  kSctpShutdownAck = 8,
  kSctpError = 9,
  kSctpCookieEcho = 10,
  kSctpCookieAck = 11,
  kSctpShutdownComplete = 14,
};

// Walks the chunks that follow the 12-byte common header as the kernel does (each chunk
// header read where the previous chunk's padded length ends, until the end of the packet)
// and applies its do_basic_checks(). `chunks` holds the `n` bytes available after the
// common header; `wire_n` is how many the packet has (more than `n` for a truncated copy:
// the walk then stops early and says so).
SctpChunks WalkSctpChunks(const uint8_t* chunks, size_t n, size_t wire_n);

}  // namespace nwfq::ct
