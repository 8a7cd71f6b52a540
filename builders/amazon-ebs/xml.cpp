#include "xml.h"

#include <cstdint>
#include <stdexcept>

#include "imgbake/text_encoding.h"

namespace imgbake::amazon {
namespace {

class XmlParser {
 public:
  explicit XmlParser(std::string_view s) : s_(s) {}

  XmlNode document() {
    skip_misc();
    XmlNode root = element(0);
    skip_misc();
    if (pos_ != s_.size()) fail("content after the root element");
    return root;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("malformed XML at byte " + std::to_string(pos_) + ": " + what);
  }
  bool starts(std::string_view p) const { return s_.substr(pos_, p.size()) == p; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
  }
  void skip_past(std::string_view end) {
    size_t e = s_.find(end, pos_);
    if (e == std::string_view::npos) fail("unterminated construct");
    pos_ = e + end.size();
  }
  void skip_misc() {
    for (;;) {
      skip_ws();
      if (starts("<?"))
        skip_past("?>");
      else if (starts("<!--"))
        skip_past("-->");
      else if (starts("<!DOCTYPE"))
        fail("DTDs are not accepted");
      else
        return;
    }
  }
  std::string name() {
    size_t b = pos_;
    while (pos_ < s_.size() && s_[pos_] != '>' && s_[pos_] != '/' && s_[pos_] != ' ' && s_[pos_] != '\n' &&
           s_[pos_] != '\r' && s_[pos_] != '\t')
      ++pos_;
    if (b == pos_) fail("element name expected");
    std::string n(s_.substr(b, pos_ - b));
    size_t colon = n.find(':');
    return colon == std::string::npos ? n : n.substr(colon + 1);
  }
  void entity(std::string& out) {
    size_t semi = s_.find(';', pos_);
    if (semi == std::string_view::npos || semi - pos_ > 12) fail("bad entity");
    std::string_view e = s_.substr(pos_ + 1, semi - pos_ - 1);
    if (e == "lt")
      out += '<';
    else if (e == "gt")
      out += '>';
    else if (e == "amp")
      out += '&';
    else if (e == "quot")
      out += '"';
    else if (e == "apos")
      out += '\'';
    else if (e.size() > 1 && e[0] == '#') {
      bool hex = e[1] == 'x';
      std::string digits(e.substr(hex ? 2 : 1));
      if (digits.empty()) fail("bad character reference");
      unsigned long cp = 0;
      try {
        cp = std::stoul(digits, nullptr, hex ? 16 : 10);
      } catch (const std::exception&) {
        fail("bad character reference");
      }
      if (cp > 0x10FFFF) fail("bad character reference");
      util::append_utf8(out, static_cast<uint32_t>(cp));
    } else {
      fail("unknown entity &" + std::string(e) + ";");
    }
    pos_ = semi + 1;
  }
  XmlNode element(int depth) {
    if (depth > 64) fail("elements nested too deeply");
    if (!starts("<")) fail("'<' expected");
    ++pos_;
    XmlNode node;
    node.name = name();
    // Attributes are skipped (quoted values may hold '>').
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated start tag");
      char c = s_[pos_];
      if (c == '"' || c == '\'') {
        size_t e = s_.find(c, pos_ + 1);
        if (e == std::string_view::npos) fail("unterminated attribute");
        pos_ = e + 1;
      } else if (c == '/') {
        if (!starts("/>")) fail("'/>' expected");
        pos_ += 2;
        return node;
      } else if (c == '>') {
        ++pos_;
        break;
      } else {
        ++pos_;
      }
    }
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated element <" + node.name + ">");
      if (starts("</")) {
        pos_ += 2;
        std::string end = name();
        if (end != node.name) fail("</" + end + "> closes <" + node.name + ">");
        skip_ws();
        if (!starts(">")) fail("'>' expected");
        ++pos_;
        return node;
      }
      if (starts("<!--")) {
        skip_past("-->");
      } else if (starts("<![CDATA[")) {
        size_t b = pos_ + 9;
        skip_past("]]>");
        node.text.append(s_.substr(b, pos_ - 3 - b));
      } else if (starts("<?")) {
        skip_past("?>");
      } else if (s_[pos_] == '<') {
        node.children.push_back(element(depth + 1));
      } else if (s_[pos_] == '&') {
        entity(node.text);
      } else {
        node.text += s_[pos_++];
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

const XmlNode* XmlNode::child(std::string_view n) const {
  for (const auto& c : children)
    if (c.name == n) return &c;
  return nullptr;
}

std::string XmlNode::at(std::string_view path) const {
  const XmlNode* n = this;
  while (!path.empty() && n) {
    size_t slash = path.find('/');
    n = n->child(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view{} : path.substr(slash + 1);
  }
  return n ? n->text : "";
}

std::vector<const XmlNode*> XmlNode::items(std::string_view list) const {
  std::vector<const XmlNode*> out;
  if (const XmlNode* l = child(list))
    for (const auto& c : l->children)
      if (c.name == "item") out.push_back(&c);
  return out;
}

XmlNode parse_xml(std::string_view doc) { return XmlParser(doc).document(); }

}  // namespace imgbake::amazon
