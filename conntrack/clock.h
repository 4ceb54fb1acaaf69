// The real clock: CLOCK_MONOTONIC in nanoseconds (never jumps with wall-clock changes).
#pragma once

#include "conntrack/types.h"

namespace nwfq::ct {

class MonotonicClock : public Clock {
 public:
  Nanos Now() const override;
};

}  // namespace nwfq::ct
