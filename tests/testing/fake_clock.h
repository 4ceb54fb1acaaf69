// A manually advanced clock for scenario tests: time moves only when the test says so.
#pragma once

#include "conntrack/types.h"

namespace nwfq::testing {

class FakeClock : public ct::Clock {
 public:
  explicit FakeClock(ct::Nanos start = 0) : now_(start) {}
  ct::Nanos Now() const override { return now_; }
  void Advance(ct::Nanos delta) { now_ += delta; }
  void AdvanceSeconds(double seconds) {
    now_ += static_cast<ct::Nanos>(seconds * static_cast<double>(ct::kNanosPerSecond));
  }
  void Set(ct::Nanos now) { now_ = now; }

 private:
  ct::Nanos now_;
};

}  // namespace nwfq::testing
