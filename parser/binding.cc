// <filterbinding> parser (libvirt's virNWFilterBindingDefParseXML layout).
#include "parser/binding.h"

#include <tinyxml2.h>

#include <cstring>

#include "parser/diagnostics.h"
#include "parser/filter_parser.h"
#include "parser/strutil.h"
#include "parser/var_ref.h"

namespace nwfq {
namespace {

std::optional<std::array<uint8_t, 6>> ParseMacAddress(std::string_view s) {
  std::vector<std::string_view> parts = str::Split(s, ':');
  if (parts.size() != 6) return std::nullopt;
  std::array<uint8_t, 6> mac{};
  for (int i = 0; i < 6; ++i) {
    std::string_view p = parts[i];
    if (p.empty() || p.size() > 2) return std::nullopt;
    uint32_t v = 0;
    for (char c : p) {
      int d = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + static_cast<uint32_t>(d);
    }
    mac[i] = static_cast<uint8_t>(v);
  }
  return mac;
}

}  // namespace

absl::StatusOr<Binding> ParseBindingString(std::string_view xml, std::string_view file_name) {
  Diagnostics diag(file_name);
  tinyxml2::XMLDocument doc;
  if (doc.Parse(xml.data(), xml.size()) != tinyxml2::XML_SUCCESS) {
    diag.Error(doc.ErrorLineNum(), "XML", str::Cat("not well-formed XML (", doc.ErrorName(), ")"));
    return diag.ToStatus();
  }
  const tinyxml2::XMLElement* root = doc.RootElement();
  if (root == nullptr || std::strcmp(root->Name(), "filterbinding") != 0) {
    diag.Error(root ? root->GetLineNum() : 1, root ? root->Name() : "XML",
               "unknown root element (allowed: <filterbinding>)");
    return diag.ToStatus();
  }
  Binding b;
  b.file = std::string(file_name);
  const int line = root->GetLineNum();

  const tinyxml2::XMLElement* owner = root->FirstChildElement("owner");
  if (owner == nullptr) {
    diag.Error(line, "filterbinding/owner", "missing (needs <owner><name/><uuid/></owner>)");
  } else {
    const tinyxml2::XMLElement* n = owner->FirstChildElement("name");
    const tinyxml2::XMLElement* u = owner->FirstChildElement("uuid");
    if (n == nullptr || n->GetText() == nullptr)
      diag.Error(owner->GetLineNum(), "owner/name", "missing (the VM's name)");
    else
      b.owner_name = n->GetText();
    if (u == nullptr || u->GetText() == nullptr)
      diag.Error(owner->GetLineNum(), "owner/uuid", "missing (the VM's UUID)");
    else
      b.owner_uuid = u->GetText();
  }
  const tinyxml2::XMLElement* portdev = root->FirstChildElement("portdev");
  if (portdev == nullptr || portdev->Attribute("name") == nullptr)
    diag.Error(portdev ? portdev->GetLineNum() : line, "portdev/name",
               "missing (the interface, e.g. <portdev name='vnet0'/>)");
  else
    b.portdev = portdev->Attribute("name");
  if (const tinyxml2::XMLElement* l = root->FirstChildElement("linkdev"))
    if (const char* n = l->Attribute("name")) b.linkdev = n;
  const tinyxml2::XMLElement* mac = root->FirstChildElement("mac");
  if (mac == nullptr || mac->Attribute("address") == nullptr) {
    diag.Error(mac ? mac->GetLineNum() : line, "mac/address",
               "missing (the interface MAC, e.g. <mac address='52:54:00:00:00:02'/>)");
  } else if (auto m = ParseMacAddress(mac->Attribute("address"))) {
    b.mac = *m;
  } else {
    diag.Error(mac->GetLineNum(), "mac/address",
               str::Cat("'", mac->Attribute("address"),
                        "' is not a MAC address (allowed: six ':'-separated hex bytes)"));
  }
  const tinyxml2::XMLElement* ref = root->FirstChildElement("filterref");
  if (ref == nullptr || ref->Attribute("filter") == nullptr) {
    diag.Error(ref ? ref->GetLineNum() : line, "filterref/filter",
               "missing (the filter to apply, e.g. <filterref filter='clean-traffic'/>)");
  } else {
    b.filter = ref->Attribute("filter");
    b.line = ref->GetLineNum();
    for (const tinyxml2::XMLElement* p = ref->FirstChildElement("parameter"); p;
         p = p->NextSiblingElement("parameter")) {
      const char* n = p->Attribute("name");
      const char* v = p->Attribute("value");
      if (n == nullptr || v == nullptr || !IsValidVarName(n) || !IsValidVarValue(v)) {
        diag.Error(p->GetLineNum(), "parameter",
                   "needs name (A-Z a-z 0-9 _) and a non-empty value (A-Z a-z 0-9 _ . :)");
        continue;
      }
      bool added = false;
      for (auto& [name, values] : b.params) {
        if (name == n) {
          values.push_back(v);
          added = true;
        }
      }
      if (!added) b.params.push_back({n, {v}});
    }
  }
  if (!diag.ok()) return diag.ToStatus();
  return b;
}

absl::StatusOr<Binding> ParseBindingFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return ParseBindingString(*text, path);
}

}  // namespace nwfq
