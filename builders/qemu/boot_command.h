// Packer's boot_command: parsed into key events and typed into the guest over QMP.
// The syntax (special keys, On/Off toggles, waits) follows Packer 1.6.6's grammar; see
// docs/builders/qemu-boot.md for the user's view.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "qmp.h"

namespace imgbake::qemu {

struct KeyEvent {
  enum class Kind { Press, Down, Up, Wait };
  Kind kind;
  std::string qcode;                  // QMP QKeyCode, e.g. "ret", "a", "shift", "ctrl", "f1"
  bool shift = false;                 // a character that needs shift ('A', '!', ':'), for Press, Down and Up
  std::chrono::milliseconds wait{0};  // Kind::Wait
};

// Packer's default pause between key events (boot_key_interval unset, PACKER_KEY_INTERVAL unset).
inline constexpr std::chrono::milliseconds kDefaultBootKeyInterval{100};

// Parses Packer's boot_command syntax (one string: the caller joins the list with ""):
// literal characters (US keyboard layout), special keys such as <enter> or <f1> (names are
// case-insensitive, as in Packer), their <keyOn>/<keyOff> forms, <cOn>/<cOff> for a character,
// <wait>, <wait5>, <wait10> and <waitXX> with a Go duration (<wait1m30s>, <wait250ms>).
// As in Packer, a '<' that starts no known form is typed as a '<' ("<notakey>" types those
// 9 characters). Throws BuildError for characters that can't be typed (non-ASCII, control
// characters other than newline and tab), for waits that are not positive or not valid Go
// durations, and for <reboot> (Hyper-V only in Packer).
std::vector<KeyEvent> parse_boot_command(std::string_view text);

// Warnings for "<word>" sequences that are typed as text but look like a misspelled special
// key ("<entr>" → did you mean <enter>?). Packer types them silently; a build should say so.
std::vector<std::string> boot_command_warnings(std::string_view text);

// Types the events with QMP input-send-event: a Press is a key down (with "shift" first when
// the character needs it), a short hold, and the key up; Down and Up are single key events (so
// a key stays held across later presses); Wait sleeps. Pauses `key_interval` after every key event (Packer's
// boot_key_interval). Throws BuildError with QMP's message when qemu refuses a key, and
// Cancelled when `cancel` fires (also in the middle of a wait).
void type_boot_command(QmpClient& qmp, const std::vector<KeyEvent>& events, std::chrono::milliseconds key_interval,
                       const CancelToken& cancel);

}  // namespace imgbake::qemu
