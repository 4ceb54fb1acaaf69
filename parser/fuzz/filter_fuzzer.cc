// libFuzzer target: arbitrary bytes as a <filter> or <filterbinding> document.
// Properties checked beyond "no crash / no sanitizer report":
//  * an accepted filter's canonical XML parses again and is a fixed point;
//  * an accepted filter can be structurally instantiated (its own references missing
//    is an error, never a crash).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "parser/binding.h"
#include "parser/filter_parser.h"
#include "parser/filter_set.h"
#include "parser/instantiate.h"
#include "parser/xml_writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view xml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<nwfq::Binding> binding = nwfq::ParseBindingString(xml, "fuzz");
  (void)binding;
  absl::StatusOr<nwfq::Filter> f = nwfq::ParseFilterString(xml, "fuzz");
  if (!f.ok()) return 0;
  const std::string canonical = nwfq::FormatFilterXml(*f);
  absl::StatusOr<nwfq::Filter> again = nwfq::ParseFilterString(canonical, "canonical");
  if (!again.ok() || nwfq::FormatFilterXml(*again) != canonical) __builtin_trap();
  nwfq::FilterSet set;
  const std::string name = f->name;
  if (set.Add(*std::move(f)).ok()) {
    absl::StatusOr<nwfq::InstantiatedBinding> inst = nwfq::InstantiateStructure(set, name);
    (void)inst;
  }
  return 0;
}
