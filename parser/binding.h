// libvirt's <filterbinding> document (`virsh nwfilter-binding-dumpxml`): which filter
// applies to which VM interface, with the filterref parameters.
//
//   <filterbinding>
//     <owner><name>vm</name><uuid>6f726163-...</uuid></owner>
//     <portdev name='vnet0'/>
//     <linkdev name='eth0'/>            (optional)
//     <mac address='52:54:00:00:00:02'/>
//     <filterref filter='clean-traffic'>
//       <parameter name='IP' value='198.18.0.2'/>
//     </filterref>
//   </filterbinding>
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace nwfq {

struct Binding {
  std::string owner_name;
  std::string owner_uuid;  // as written (canonical lower-case form)
  std::string portdev;     // tap device, e.g. "vnet0"
  std::string linkdev;     // optional
  std::array<uint8_t, 6> mac{};
  std::string filter;  // the top filter's name
  // Filterref parameters: name -> list of values in input order (a repeated
  // <parameter> name builds a list). Names in first-appearance order.
  std::vector<std::pair<std::string, std::vector<std::string>>> params;

  std::string file;  // "" when parsed from memory
  int line = 0;      // line of <filterref>

  // Values of parameter `name`, or nullptr.
  const std::vector<std::string>* Param(std::string_view name) const {
    for (const auto& [n, v] : params)
      if (n == name) return &v;
    return nullptr;
  }
};

absl::StatusOr<Binding> ParseBindingFile(const std::string& path);
absl::StatusOr<Binding> ParseBindingString(std::string_view xml, std::string_view file_name);

}  // namespace nwfq
