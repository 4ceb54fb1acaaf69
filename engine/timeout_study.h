// Offline timeout study: one capture replayed once per value of one conntrack timeout, the
// clock being the capture's timestamps, to see what that timeout changes for a VM's
// filter: verdicts per value, the frames whose verdict differs from the run with the
// kernel's default, connections created and expired. The research question it answers is
// of the kind "how short may the ICMP timeout be before this VM's ping replies are
// dropped?" or "what does a 10-minute UDP stream timeout let in?".
//
// Each run uses a fresh Engine (no state carried between runs). The kernel default of the
// studied class is always run, as the reference, even when not among the values.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "conntrack/timeouts.h"
#include "engine/engine.h"
#include "engine/replay.h"
#include "parser/instantiated.h"

namespace nwfq::engine {

struct StudyOptions {
  ct::TimeoutClass timeout_class = ct::TimeoutClass::kIcmp;
  std::vector<uint32_t> seconds;  // the values tried, one run each
  EngineOptions engine;
  // Applied to each run's fresh engine before the studied timeout is set (other timeouts
  // fixed by the user, say). May be empty.
  std::function<absl::Status(Engine&)> configure;
  ReplayOptions replay;  // host addresses; explain is ignored
  // Called after each run: run index (0-based, in `seconds` order, repeated values run
  // once; the default's extra run last), and its frame count.
  std::function<void(size_t run, uint64_t frames)> progress;
};

struct StudyRow {
  uint32_t seconds = 0;
  bool kernel_default = false;  // this value is the kernel's default for the class
  uint64_t frames = 0, accepted = 0, dropped = 0, rejected = 0;
  uint64_t changed = 0;                  // frames whose verdict differs from the default's run
  std::vector<uint64_t> changed_frames;  // the first few of them (for `replay --explain`)
  uint64_t new_connections = 0;          // conntrack entries confirmed
  uint64_t expired = 0;                  // entries that timed out (lazily or swept)
};

// Rows in increasing `seconds` order, the kernel default's included.
absl::StatusOr<std::vector<StudyRow>> RunTimeoutStudy(const InstantiatedBinding& binding,
                                                      const std::string& pcap_path,
                                                      const StudyOptions& options);

// The study as an SVG line chart (no dependencies): accepted, dropped (+ rejected) and
// changed frames against the timeout, logarithmic x axis when the values span more than a
// factor of 20, the kernel default marked.
std::string StudySvg(const std::vector<StudyRow>& rows, std::string_view class_name,
                     std::string_view title);

}  // namespace nwfq::engine
