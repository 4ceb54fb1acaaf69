#include "engine/timeout_study.h"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <streambuf>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parser/xml_writer.h"

namespace nwfq::engine {
namespace {

// Takes replay's CSV as it is written and keeps only each row's verdict, one byte per frame
// ('a', 'd' or 'r'): a study of a long capture holds no CSV text.
class VerdictSink : public std::streambuf {
 public:
  const std::vector<char>& verdicts() const { return verdicts_; }

 protected:
  int_type overflow(int_type ch) override {
    if (ch != traits_type::eof()) Put(static_cast<char>(ch));
    return ch;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    for (std::streamsize i = 0; i < n; ++i) Put(s[i]);
    return n;
  }

 private:
  void Put(char c) {
    if (c == '\n') {
      ++line_;
      field_ = 0;
      at_field_start_ = true;
      return;
    }
    if (c == ',') {
      ++field_;
      at_field_start_ = true;
      return;
    }
    // index,time,direction,verdict,...: the verdict is field 3; line 0 is the header.
    if (at_field_start_ && field_ == 3 && line_ > 0) verdicts_.push_back(c);
    at_field_start_ = false;
  }
  std::vector<char> verdicts_;
  uint64_t line_ = 0;
  int field_ = 0;
  bool at_field_start_ = true;
};

constexpr size_t kChangedExamples = 5;

struct Run {
  StudyRow row;
  std::vector<char> verdicts;
};

absl::StatusOr<Run> RunOnce(const InstantiatedBinding& binding, const std::string& pcap,
                            const StudyOptions& o, uint32_t seconds) {
  Engine e(o.engine);
  if (o.configure) {
    if (absl::Status st = o.configure(e); !st.ok()) return st;
  }
  if (absl::Status st = e.timeouts().Set(o.timeout_class, seconds); !st.ok()) return st;
  if (absl::Status st = e.SetBinding(binding); !st.ok()) return st;
  VerdictSink sink;
  std::ostream csv(&sink);
  ReplayOptions ro = o.replay;
  ro.explain = false;
  ro.explain_out = nullptr;
  ro.progress = nullptr;
  absl::StatusOr<ReplaySummary> sum = Replay(e, binding, pcap, csv, ro);
  if (!sum.ok()) return sum.status();
  Run run;
  run.row.seconds = seconds;
  run.row.kernel_default = seconds == ct::TimeoutPolicy::KernelDefault(o.timeout_class);
  run.row.frames = sum->frames;
  run.row.accepted = sum->accepted;
  run.row.dropped = sum->dropped;
  run.row.rejected = sum->rejected;
  if (const ct::Table* t = e.conntrack_table(binding.portdev)) {
    run.row.new_connections = t->stats().confirmed;
    run.row.expired = t->stats().expired;
  }
  run.verdicts = sink.verdicts();
  return run;
}

}  // namespace

absl::StatusOr<std::vector<StudyRow>> RunTimeoutStudy(const InstantiatedBinding& binding,
                                                      const std::string& pcap_path,
                                                      const StudyOptions& options) {
  if (options.seconds.empty()) return absl::InvalidArgumentError("no timeout values to study");
  // Each value runs once (a repeated value would replay the capture again for the same
  // row), in the order given; the kernel default last unless given.
  std::vector<uint32_t> values;
  for (uint32_t v : options.seconds) {
    if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
  }
  const uint32_t def = ct::TimeoutPolicy::KernelDefault(options.timeout_class);
  if (std::find(values.begin(), values.end(), def) == values.end()) values.push_back(def);
  std::vector<Run> runs;
  for (size_t i = 0; i < values.size(); ++i) {
    absl::StatusOr<Run> r = RunOnce(binding, pcap_path, options, values[i]);
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat(std::string(ct::TimeoutPolicy::Name(options.timeout_class)),
                                       "=", values[i], ": ", r.status().message()));
    }
    if (options.progress) options.progress(i, r->row.frames);
    runs.push_back(*std::move(r));
  }
  const Run& ref =
      *std::find_if(runs.begin(), runs.end(), [&](const Run& r) { return r.row.seconds == def; });
  std::vector<StudyRow> rows;
  for (Run& r : runs) {
    const size_t n = std::min(r.verdicts.size(), ref.verdicts.size());
    for (size_t f = 0; f < n; ++f) {
      if (r.verdicts[f] == ref.verdicts[f]) continue;
      ++r.row.changed;
      if (r.row.changed_frames.size() < kChangedExamples) r.row.changed_frames.push_back(f);
    }
    rows.push_back(std::move(r.row));
  }
  std::sort(rows.begin(), rows.end(),
            [](const StudyRow& a, const StudyRow& b) { return a.seconds < b.seconds; });
  return rows;
}

std::string StudySvg(const std::vector<StudyRow>& rows, std::string_view class_name,
                     std::string_view title) {
  constexpr double kW = 720, kH = 400, kLeft = 70, kRight = 150, kTop = 40, kBottom = 60;
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  std::string svg = absl::StrFormat(
      "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
      "font-family='sans-serif' font-size='12'>\n"
      "<rect width='100%%' height='100%%' fill='white'/>\n"
      "<text x='%d' y='22' font-size='15'>%s</text>\n",
      static_cast<int>(kW), static_cast<int>(kH), static_cast<int>(kLeft), XmlEscape(title));
  if (rows.empty()) return svg + "</svg>\n";
  const double lo = std::max(1u, rows.front().seconds), hi = std::max(1u, rows.back().seconds);
  const bool log_x = hi / lo > 20;
  auto x_of = [&](uint32_t s) {
    const double v = std::max(1.0, static_cast<double>(s));
    if (hi <= lo) return kLeft + pw / 2;
    const double f =
        log_x ? (std::log(v) - std::log(lo)) / (std::log(hi) - std::log(lo)) : (v - lo) / (hi - lo);
    return kLeft + f * pw;
  };
  uint64_t ymax = 1;
  for (const StudyRow& r : rows)
    ymax = std::max({ymax, r.accepted, r.dropped + r.rejected, r.changed});
  auto y_of = [&](uint64_t v) {
    return kTop + ph - ph * static_cast<double>(v) / static_cast<double>(ymax);
  };
  // Axes, y ticks at 0, 1/2 and the maximum, an x tick per value.
  absl::StrAppendFormat(&svg,
                        "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='black'/>\n"
                        "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='black'/>\n",
                        kLeft, kTop + ph, kLeft + pw, kTop + ph, kLeft, kTop, kLeft, kTop + ph);
  for (uint64_t v : {uint64_t{0}, ymax / 2, ymax}) {
    absl::StrAppendFormat(&svg, "<text x='%.1f' y='%.1f' text-anchor='end'>%d</text>\n", kLeft - 6,
                          y_of(v) + 4, v);
  }
  for (const StudyRow& r : rows) {
    absl::StrAppendFormat(&svg,
                          "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='black'/>"
                          "<text x='%.1f' y='%.1f' text-anchor='middle'%s>%d</text>\n",
                          x_of(r.seconds), kTop + ph, x_of(r.seconds), kTop + ph + 5,
                          x_of(r.seconds), kTop + ph + 18,
                          r.kernel_default ? " font-weight='bold'" : "", r.seconds);
    if (r.kernel_default) {
      absl::StrAppendFormat(&svg,
                            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#999' "
                            "stroke-dasharray='4 3'/>\n",
                            x_of(r.seconds), kTop, x_of(r.seconds), kTop + ph);
    }
  }
  absl::StrAppendFormat(&svg,
                        "<text x='%.1f' y='%.1f' text-anchor='middle'>%s timeout (s)%s; bold: "
                        "the kernel default</text>\n"
                        "<text x='16' y='%.1f' transform='rotate(-90 16 %.1f)' "
                        "text-anchor='middle'>frames</text>\n",
                        kLeft + pw / 2, kH - 18, XmlEscape(class_name), log_x ? ", log scale" : "",
                        kTop + ph / 2, kTop + ph / 2);
  struct Series {
    const char* name;
    const char* color;
    uint64_t (*value)(const StudyRow&);
  };
  const Series series[] = {
      {"accepted", "#2a7", [](const StudyRow& r) { return r.accepted; }},
      {"dropped + rejected", "#c33", [](const StudyRow& r) { return r.dropped + r.rejected; }},
      {"changed vs default", "#36c", [](const StudyRow& r) { return r.changed; }},
  };
  double legend_y = kTop + 10;
  for (const Series& s : series) {
    std::string points;
    for (const StudyRow& r : rows)
      absl::StrAppendFormat(&points, "%.1f,%.1f ", x_of(r.seconds), y_of(s.value(r)));
    absl::StrAppendFormat(&svg,
                          "<polyline fill='none' stroke='%s' stroke-width='2' points='%s'/>\n",
                          s.color, points);
    for (const StudyRow& r : rows) {
      absl::StrAppendFormat(&svg, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n",
                            x_of(r.seconds), y_of(s.value(r)), s.color);
    }
    absl::StrAppendFormat(&svg,
                          "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' "
                          "stroke-width='2'/><text x='%.1f' y='%.1f'>%s</text>\n",
                          kLeft + pw + 12, legend_y, kLeft + pw + 32, legend_y, s.color,
                          kLeft + pw + 38, legend_y + 4, s.name);
    legend_y += 20;
  }
  return svg + "</svg>\n";
}

}  // namespace nwfq::engine
