// A small reader for the XML that the EC2 Query API answers with: elements, text and the five
// predefined entities plus numeric references. Attributes are skipped; CDATA, comments,
// processing instructions and the declaration are understood; DTDs are refused.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace imgbake::amazon {

struct XmlNode {
  std::string name;  // without namespace prefix
  std::string text;  // the concatenated character data directly inside the element
  std::vector<XmlNode> children;

  // The first child with this name, or nullptr.
  const XmlNode* child(std::string_view n) const;
  // The text at a path of child names ("instanceState/name"); "" when a part is missing.
  std::string at(std::string_view path) const;
  // The <item> children of the child `list` (EC2's lists); empty when there is none.
  std::vector<const XmlNode*> items(std::string_view list) const;
};

// Throws std::runtime_error with the byte offset when the document is not well formed.
XmlNode parse_xml(std::string_view doc);

}  // namespace imgbake::amazon
