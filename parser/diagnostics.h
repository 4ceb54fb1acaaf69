// Collects every error of one document so they can be reported together, each as
// `file:line: element/attribute: message`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "parser/strutil.h"

namespace nwfq {

class Diagnostics {
 public:
  explicit Diagnostics(std::string_view file) : file_(file.empty() ? "<memory>" : file) {}

  // `where` is "element" or "element/attribute".
  void Error(int line, std::string_view where, std::string_view message) {
    errors_.push_back(str::Cat(file_, ":", line, ": ", where, ": ", message));
  }
  bool ok() const { return errors_.empty(); }
  const std::string& file() const { return file_; }

  // OkStatus, or one InvalidArgumentError with one error per line.
  absl::Status ToStatus() const {
    if (errors_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(str::Join(errors_, "\n"));
  }

 private:
  std::string file_;
  std::vector<std::string> errors_;
};

}  // namespace nwfq
