#include "boot_command.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "imgbake/error.h"
#include "imgbake/util.h"

namespace imgbake::qemu {

namespace {

struct SpecialKey {
  std::string_view name;  // as Packer spells it; matched case-insensitively
  std::string_view qcode;
};

// In the order of Packer's grammar (a PEG: the first name that matches wins, which is why
// "f10" precedes "f1" and "left" comes after "leftAlt").
constexpr std::array<SpecialKey, 37> kSpecialKeys = {{
    {"bs", "backspace"},
    {"del", "delete"},
    {"enter", "ret"},
    {"esc", "esc"},
    {"f10", "f10"},
    {"f11", "f11"},
    {"f12", "f12"},
    {"f1", "f1"},
    {"f2", "f2"},
    {"f3", "f3"},
    {"f4", "f4"},
    {"f5", "f5"},
    {"f6", "f6"},
    {"f7", "f7"},
    {"f8", "f8"},
    {"f9", "f9"},
    {"return", "ret"},
    {"tab", "tab"},
    {"up", "up"},
    {"down", "down"},
    {"spacebar", "spc"},
    {"insert", "insert"},
    {"home", "home"},
    {"end", "end"},
    {"pageUp", "pgup"},
    {"pageDown", "pgdn"},
    {"leftAlt", "alt"},
    {"leftCtrl", "ctrl"},
    {"leftShift", "shift"},
    {"rightAlt", "alt_r"},
    {"rightCtrl", "ctrl_r"},
    {"rightShift", "shift_r"},
    {"leftSuper", "meta_l"},
    {"rightSuper", "meta_r"},
    {"left", "left"},
    {"right", "right"},
    {"menu", "menu"},
}};

struct CharKey {
  std::string qcode;
  bool shift = false;
};

// The US layout, as Packer's drivers assume it.
std::optional<CharKey> key_for_char(char32_t c) {
  if (c >= 'a' && c <= 'z') return CharKey{std::string(1, static_cast<char>(c)), false};
  if (c >= 'A' && c <= 'Z') return CharKey{std::string(1, static_cast<char>(c - 'A' + 'a')), true};
  if (c >= '0' && c <= '9') return CharKey{std::string(1, static_cast<char>(c)), false};
  switch (c) {
    case ' ': return CharKey{"spc"};
    case '\n': return CharKey{"ret"};
    case '\t': return CharKey{"tab"};
    case '-': return CharKey{"minus"};
    case '=': return CharKey{"equal"};
    case '[': return CharKey{"bracket_left"};
    case ']': return CharKey{"bracket_right"};
    case '\\': return CharKey{"backslash"};
    case ';': return CharKey{"semicolon"};
    case '\'': return CharKey{"apostrophe"};
    case '`': return CharKey{"grave_accent"};
    case ',': return CharKey{"comma"};
    case '.': return CharKey{"dot"};
    case '/': return CharKey{"slash"};
    case '~': return CharKey{"grave_accent", true};
    case '!': return CharKey{"1", true};
    case '@': return CharKey{"2", true};
    case '#': return CharKey{"3", true};
    case '$': return CharKey{"4", true};
    case '%': return CharKey{"5", true};
    case '^': return CharKey{"6", true};
    case '&': return CharKey{"7", true};
    case '*': return CharKey{"8", true};
    case '(': return CharKey{"9", true};
    case ')': return CharKey{"0", true};
    case '_': return CharKey{"minus", true};
    case '+': return CharKey{"equal", true};
    case '{': return CharKey{"bracket_left", true};
    case '}': return CharKey{"bracket_right", true};
    case '|': return CharKey{"backslash", true};
    case ':': return CharKey{"semicolon", true};
    case '"': return CharKey{"apostrophe", true};
    case '<': return CharKey{"comma", true};
    case '>': return CharKey{"dot", true};
    case '?': return CharKey{"slash", true};
    default: return std::nullopt;
  }
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool starts_with_nocase(std::string_view text, size_t at, std::string_view word) {
  if (text.size() - at < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (ascii_lower(text[at + i]) != ascii_lower(word[i])) return false;
  return true;
}

// One UTF-8 code point at `at`: the code point and its length; throws on malformed input.
std::pair<char32_t, size_t> decode_utf8(std::string_view text, size_t at, size_t char_number) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(at);
  size_t len = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || at + len > text.size())
    throw BuildError("boot_command: invalid UTF-8 at character " + std::to_string(char_number));
  char32_t cp = len == 1 ? lead : lead & (0x7F >> len);
  for (size_t i = 1; i < len; ++i) {
    if ((byte(at + i) & 0xC0) != 0x80)
      throw BuildError("boot_command: invalid UTF-8 at character " + std::to_string(char_number));
    cp = (cp << 6) | (byte(at + i) & 0x3F);
  }
  return {cp, len};
}

std::string describe_char(char32_t c, std::string_view utf8) {
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
  if (c < 0x20 || c == 0x7F) return code;
  return "'" + std::string(utf8) + "' (" + code + ")";
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::vector<KeyEvent> parse() {
    while (pos_ < text_.size()) {
      size_t before = pos_;
      if (text_[pos_] == '<' && (parse_wait() || parse_char_toggle() || parse_reboot() || parse_special())) {
        char_number_ += count_chars(before, pos_);
        continue;
      }
      if (text_[pos_] == '<') literal_angles_.push_back(pos_);
      parse_literal(KeyEvent::Kind::Press);
      char_number_ += 1;
    }
    return std::move(events_);
  }

  // Byte offsets of the '<' characters that were typed as text.
  const std::vector<size_t>& literal_angles() const { return literal_angles_; }

 private:
  size_t count_chars(size_t from, size_t to) const {
    size_t n = 0;
    for (size_t i = from; i < to; ++i)
      if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) ++n;
    return n;
  }

  std::string at_character() const { return " at character " + std::to_string(char_number_); }

  bool consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool consume_nocase(std::string_view word) {
    if (!starts_with_nocase(text_, pos_, word)) return false;
    pos_ += word.size();
    return true;
  }

  // Optional "on"/"off" (any case); nullopt when neither follows.
  std::optional<KeyEvent::Kind> parse_toggle() {
    if (consume_nocase("on")) return KeyEvent::Kind::Down;
    if (consume_nocase("off")) return KeyEvent::Kind::Up;
    return std::nullopt;
  }

  bool digit_at(size_t i) const { return i < text_.size() && text_[i] >= '0' && text_[i] <= '9'; }

  // Integer = '0' / [1-9][0-9]*  (Packer's grammar: no leading zeros)
  std::optional<std::string_view> parse_integer() {
    if (!digit_at(pos_)) return std::nullopt;
    size_t start = pos_;
    if (text_[pos_] == '0') {
      ++pos_;
    } else {
      while (digit_at(pos_)) ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }

  // Duration = (Number TimeUnit)+, Number = '-'? Integer ('.' [0-9]+)?; nanoseconds.
  std::optional<long double> parse_duration_ns(bool& negative_inside) {
    static constexpr std::array<std::pair<std::string_view, long double>, 7> kUnits = {{
        {"ns", 1.0L},
        {"us", 1e3L},
        {"\xC2\xB5s", 1e3L},
        {"ms", 1e6L},
        {"s", 1e9L},
        {"m", 60e9L},
        {"h", 3600e9L},
    }};
    size_t start = pos_;
    long double total = 0;
    int groups = 0;
    while (true) {
      size_t group_start = pos_;
      bool negative = consume("-");
      auto integer = parse_integer();
      if (!integer) {
        pos_ = group_start;
        break;
      }
      std::string number(*integer);
      if (text_.substr(pos_, 1) == "." && digit_at(pos_ + 1)) {
        size_t frac_start = pos_++;
        while (digit_at(pos_)) ++pos_;
        number += text_.substr(frac_start, pos_ - frac_start);
      }
      std::optional<long double> unit;
      for (const auto& [name, ns] : kUnits) {
        if (consume(name)) {
          unit = ns;
          break;
        }
      }
      if (!unit) {
        pos_ = group_start;
        break;
      }
      long double value = std::stold(number) * *unit;
      if (negative && groups > 0) negative_inside = true;  // Go's ParseDuration rejects "1m-5s"
      total += negative ? -value : value;
      ++groups;
    }
    if (groups == 0) {
      pos_ = start;
      return std::nullopt;
    }
    return total;
  }

  // "<wait>", "<wait5>" (seconds), "<wait1m30s>"; "wait" is case-sensitive in Packer.
  bool parse_wait() {
    size_t start = pos_;
    pos_ += 1;
    if (!consume("wait")) {
      pos_ = start;
      return false;
    }
    long double ns = 1e9L;
    bool negative_inside = false;
    if (auto d = parse_duration_ns(negative_inside)) {
      ns = *d;
    } else if (auto seconds = parse_integer()) {
      ns = std::stold(std::string(*seconds)) * 1e9L;
    }
    if (!consume(">")) {
      pos_ = start;
      return false;
    }
    std::string_view form = text_.substr(start, pos_ - start);
    if (negative_inside)
      throw BuildError("boot_command: " + std::string(form) + at_character() +
                       " is not a valid duration (a minus sign may only start it)");
    if (ns <= 0)
      throw BuildError("boot_command: " + std::string(form) + at_character() +
                       ": the wait must be positive, e.g. <wait500ms> or <wait2s>");
    if (ns > 9.2e18L) throw BuildError("boot_command: " + std::string(form) + at_character() + " is too long a wait");
    auto ms = static_cast<long long>(std::ceil(ns / 1e6L));
    events_.push_back(KeyEvent{KeyEvent::Kind::Wait, "", false, std::chrono::milliseconds(ms)});
    return true;
  }

  // "<aOn>", "<AOff>": one character held down or released.
  bool parse_char_toggle() {
    size_t start = pos_;
    pos_ += 1;
    if (pos_ >= text_.size()) {
      pos_ = start;
      return false;
    }
    auto [cp, len] = decode_utf8(text_, pos_, char_number_ + 1);
    size_t char_at = pos_;
    pos_ += len;
    auto kind = parse_toggle();
    if (!kind || !consume(">")) {
      pos_ = start;
      return false;
    }
    events_.push_back(char_event(*kind, cp, text_.substr(char_at, len), char_number_ + 1));
    return true;
  }

  bool parse_reboot() {
    size_t start = pos_;
    pos_ += 1;
    if (consume_nocase("reboot") && consume(">"))
      throw BuildError("boot_command: <reboot>" + at_character() +
                       " is a Hyper-V-only key in Packer; the qemu builder cannot type it. Remove it and "
                       "reboot from the guest (e.g. with a shell provisioner's 'reboot').");
    pos_ = start;
    return false;
  }

  bool parse_special() {
    size_t start = pos_;
    pos_ += 1;
    for (const SpecialKey& key : kSpecialKeys) {
      if (!consume_nocase(key.name)) continue;
      KeyEvent::Kind kind = parse_toggle().value_or(KeyEvent::Kind::Press);
      if (consume(">")) {
        events_.push_back(KeyEvent{kind, std::string(key.qcode)});
        return true;
      }
      break;  // a PEG choice does not come back for another alternative once one matched
    }
    pos_ = start;
    return false;
  }

  void parse_literal(KeyEvent::Kind kind) {
    auto [cp, len] = decode_utf8(text_, pos_, char_number_);
    events_.push_back(char_event(kind, cp, text_.substr(pos_, len), char_number_));
    pos_ += len;
  }

  static KeyEvent char_event(KeyEvent::Kind kind, char32_t cp, std::string_view utf8, size_t char_number) {
    auto key = key_for_char(cp);
    if (!key)
      throw BuildError("boot_command: character " + describe_char(cp, utf8) + " at character " +
                       std::to_string(char_number) +
                       " cannot be typed: only characters of a US keyboard (ASCII, newline, tab) can be typed "
                       "as keys; use special keys such as <enter> or <tab> for the rest");
    return KeyEvent{kind, key->qcode, key->shift};
  }

  std::string_view text_;
  size_t pos_ = 0;
  size_t char_number_ = 1;  // 1-based, in characters (code points), for messages
  std::vector<KeyEvent> events_;
  std::vector<size_t> literal_angles_;
};

nlohmann::json key_value(const std::string& qcode) { return {{"type", "qcode"}, {"data", qcode}}; }

nlohmann::json key_input_event(const std::string& qcode, bool down) {
  return {{"type", "key"}, {"data", {{"down", down}, {"key", key_value(qcode)}}}};
}

}  // namespace

std::vector<KeyEvent> parse_boot_command(std::string_view text) { return Parser(text).parse(); }

std::vector<std::string> boot_command_warnings(std::string_view text) {
  Parser parser(text);
  parser.parse();
  std::vector<std::string> lower_names;
  for (const SpecialKey& key : kSpecialKeys) {
    std::string lower(key.name);
    std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
    lower_names.push_back(lower);
  }
  std::vector<std::string> warnings;
  for (size_t at : parser.literal_angles()) {
    size_t end = text.find('>', at);
    if (end == std::string_view::npos) continue;
    std::string_view word = text.substr(at + 1, end - at - 1);
    if (word.empty() || word.size() > 20 ||
        !std::all_of(word.begin(), word.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); }))
      continue;
    std::string lower(word);
    std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
    for (std::string_view suffix : {"off", "on"}) {
      if (lower.size() > suffix.size() + 1 && lower.ends_with(suffix)) {
        lower.resize(lower.size() - suffix.size());
        break;
      }
    }
    size_t char_number = 1;
    for (size_t i = 0; i < at; ++i)
      if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++char_number;
    std::string where = "boot_command: <" + std::string(word) + "> at character " + std::to_string(char_number);
    if (lower.starts_with("wait")) {
      warnings.push_back(where +
                         " is not a wait and will be typed as text (a wait is lower-case 'wait' with an optional "
                         "number of seconds or Go duration: <wait>, <wait5>, <wait1m30s>, <wait250ms>)");
      continue;
    }
    auto match = util::closest_match(lower, lower_names);
    if (!match) continue;
    auto index = std::find(lower_names.begin(), lower_names.end(), *match) - lower_names.begin();
    warnings.push_back(where + " is not a special key and will be typed as text (did you mean <" +
                       std::string(kSpecialKeys[static_cast<size_t>(index)].name) + ">?)");
  }
  return warnings;
}

void type_boot_command(QmpClient& qmp, const std::vector<KeyEvent>& events, std::chrono::milliseconds key_interval,
                       const CancelToken& cancel) {
  // Every key goes down and up through input-send-event, which qemu delivers at once. QMP
  // send-key instead queues the releases behind a hold-time delay in a bounded queue (50
  // events in qemu 7.2) that a busy TCG main loop drains late: typing faster than it drains
  // drops events, and a dropped shift release leaves shift stuck for the rest of the line
  // (measured here: the 12th shifted line of a boot command at 20ms intervals was lost).
  // A key is held for half the interval (at least 5ms) so the guest sees a distinct press.
  const auto hold = std::max(std::chrono::milliseconds(5), key_interval / 2);
  auto send = [&](const std::string& qcode, bool shift, bool down) {
    nlohmann::json input = nlohmann::json::array();
    // shift goes down first and comes up last, around the key it modifies
    if (shift && down) input.push_back(key_input_event("shift", true));
    input.push_back(key_input_event(qcode, down));
    if (shift && !down) input.push_back(key_input_event("shift", false));
    qmp.execute("input-send-event", {{"events", input}});
  };

  for (const KeyEvent& event : events) {
    cancel.throw_if_cancelled();
    switch (event.kind) {
      case KeyEvent::Kind::Wait: cancel.sleep_for(event.wait); continue;
      case KeyEvent::Kind::Press:
        send(event.qcode, event.shift, true);
        cancel.sleep_for(hold);
        send(event.qcode, event.shift, false);
        break;
      case KeyEvent::Kind::Down:
      case KeyEvent::Kind::Up: send(event.qcode, event.shift, event.kind == KeyEvent::Kind::Down); break;
    }
    if (key_interval > hold) cancel.sleep_for(key_interval - hold);
  }
}

}  // namespace imgbake::qemu
