#include "conntrack/clock.h"

#include <time.h>

namespace nwfq::ct {

Nanos MonotonicClock::Now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<Nanos>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

}  // namespace nwfq::ct
