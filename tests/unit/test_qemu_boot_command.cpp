// boot_command: Packer's syntax parsed into key events, and those events typed over QMP —
// into a fake QMP server that records the exact commands, and into a real (paused) qemu.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "qemu/boot_command.h"
#include "qemu/qmp.h"
#include "tool_check.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BackgroundProcess;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::qemu::boot_command_warnings;
using imgbake::qemu::KeyEvent;
using imgbake::qemu::parse_boot_command;
using imgbake::qemu::QmpClient;
using imgbake::qemu::type_boot_command;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;
using Kind = KeyEvent::Kind;

// A compact, readable form of an event for assertions: "a", "+a" (shifted), "v ctrl" (down),
// "^ ctrl" (up), "wait 1500ms".
std::string Show(const KeyEvent& e) {
  switch (e.kind) {
    case Kind::Press: return (e.shift ? "+" : "") + e.qcode;
    case Kind::Down: return "v " + std::string(e.shift ? "+" : "") + e.qcode;
    case Kind::Up: return "^ " + std::string(e.shift ? "+" : "") + e.qcode;
    case Kind::Wait: return "wait " + std::to_string(e.wait.count()) + "ms";
  }
  return "?";
}

std::vector<std::string> Parse(std::string_view text) {
  std::vector<std::string> out;
  for (const KeyEvent& e : parse_boot_command(text)) out.push_back(Show(e));
  return out;
}

std::string ParseError(std::string_view text) {
  try {
    parse_boot_command(text);
  } catch (const BuildError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(QemuBootCommandParse, LiteralCharactersMapToUsKeyboardKeys) {
  EXPECT_THAT(Parse("ab 1-z"), ElementsAre("a", "b", "spc", "1", "minus", "z"));
  EXPECT_THAT(Parse("=[]\\;',./`"), ElementsAre("equal", "bracket_left", "bracket_right", "backslash", "semicolon",
                                                "apostrophe", "comma", "dot", "slash", "grave_accent"));
  EXPECT_THAT(Parse("line\n\t"), ElementsAre("l", "i", "n", "e", "ret", "tab"));
  EXPECT_THAT(Parse(""), IsEmpty());
}

TEST(QemuBootCommandParse, ShiftedCharactersPressShift) {
  EXPECT_THAT(Parse("Ab"), ElementsAre("+a", "b"));
  EXPECT_THAT(Parse("~!@#$%^&*()_+"), ElementsAre("+grave_accent", "+1", "+2", "+3", "+4", "+5", "+6", "+7", "+8", "+9",
                                                  "+0", "+minus", "+equal"));
  EXPECT_THAT(Parse("{}|:\"<>?"), ElementsAre("+bracket_left", "+bracket_right", "+backslash", "+semicolon",
                                              "+apostrophe", "+comma", "+dot", "+slash"));
}

TEST(QemuBootCommandParse, EverySpecialKeyCaseInsensitively) {
  const std::vector<std::pair<std::string, std::string>> keys = {
      {"bs", "backspace"},
      {"del", "delete"},
      {"enter", "ret"},
      {"return", "ret"},
      {"esc", "esc"},
      {"tab", "tab"},
      {"spacebar", "spc"},
      {"insert", "insert"},
      {"home", "home"},
      {"end", "end"},
      {"pageUp", "pgup"},
      {"pageDown", "pgdn"},
      {"up", "up"},
      {"down", "down"},
      {"left", "left"},
      {"right", "right"},
      {"leftAlt", "alt"},
      {"rightAlt", "alt_r"},
      {"leftCtrl", "ctrl"},
      {"rightCtrl", "ctrl_r"},
      {"leftShift", "shift"},
      {"rightShift", "shift_r"},
      {"leftSuper", "meta_l"},
      {"rightSuper", "meta_r"},
      {"menu", "menu"},
  };
  for (const auto& [name, qcode] : keys) {
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_THAT(Parse("<" + name + ">"), ElementsAre(qcode)) << name;
    EXPECT_THAT(Parse("<" + upper + ">"), ElementsAre(qcode)) << upper;
  }
  for (int n = 1; n <= 12; ++n) {
    std::string f = "f" + std::to_string(n);
    EXPECT_THAT(Parse("<" + f + ">"), ElementsAre(f));
    EXPECT_THAT(Parse("<F" + std::to_string(n) + ">"), ElementsAre(f));
  }
  EXPECT_THAT(Parse("<Enter><ENTER><eNtEr>"), ElementsAre("ret", "ret", "ret"));
}

TEST(QemuBootCommandParse, OnAndOffHoldAndReleaseKeys) {
  EXPECT_THAT(Parse("<leftCtrlOn>c<leftCtrlOff>"), ElementsAre("v ctrl", "c", "^ ctrl"));
  EXPECT_THAT(Parse("<leftAltON><f2><LEFTALTOFF>"), ElementsAre("v alt", "f2", "^ alt"));
  EXPECT_THAT(Parse("<rightShiftOn><rightShiftoff>"), ElementsAre("v shift_r", "^ shift_r"));
  EXPECT_THAT(Parse("<leftOn><leftOff><f1On><f10Off>"), ElementsAre("v left", "^ left", "v f1", "^ f10"));
  // a character held and released; an upper-case one holds shift too
  EXPECT_THAT(Parse("<aOn><aOff><AOn><AOff>"), ElementsAre("v a", "^ a", "v +a", "^ +a"));
}

TEST(QemuBootCommandParse, Waits) {
  EXPECT_THAT(Parse("<wait>"), ElementsAre("wait 1000ms"));
  EXPECT_THAT(Parse("<wait5><wait10>"), ElementsAre("wait 5000ms", "wait 10000ms"));
  EXPECT_THAT(Parse("<wait1m30s>"), ElementsAre("wait 90000ms"));
  EXPECT_THAT(Parse("<wait250ms>"), ElementsAre("wait 250ms"));
  EXPECT_THAT(Parse("<wait1.5s><wait2h>"), ElementsAre("wait 1500ms", "wait 7200000ms"));
  EXPECT_THAT(Parse("a<wait>b"), ElementsAre("a", "wait 1000ms", "b"));
  // sub-millisecond waits are rounded up, not lost
  EXPECT_THAT(Parse("<wait500us>"), ElementsAre("wait 1ms"));
}

TEST(QemuBootCommandParse, BadWaitsAreErrors) {
  EXPECT_THAT(ParseError("ab<wait0>"), HasSubstr("<wait0> at character 3: the wait must be positive"));
  EXPECT_THAT(ParseError("<wait-5s>"), HasSubstr("must be positive"));
  EXPECT_THAT(ParseError("<wait1m-5s>"), HasSubstr("not a valid duration"));
}

// As in Packer, whatever is not a known form is typed as it is, '<' included.
TEST(QemuBootCommandParse, UnknownFormsAreTypedLiterally) {
  EXPECT_THAT(Parse("<notakey>"), ElementsAre("+comma", "n", "o", "t", "a", "k", "e", "y", "+dot"));
  // "wait" is case-sensitive in Packer's grammar
  EXPECT_THAT(Parse("<Wait>"), ElementsAre("+comma", "+w", "a", "i", "t", "+dot"));
  EXPECT_THAT(Parse("<wait5x>").size(), 8u);
  EXPECT_THAT(Parse("<enter"), ElementsAre("+comma", "e", "n", "t", "e", "r"));
  EXPECT_THAT(Parse("<enteroff2>").front(), "+comma");
  EXPECT_THAT(Parse("a<>b"), ElementsAre("a", "+comma", "+dot", "b"));
  EXPECT_THAT(Parse("<<enter>"), ElementsAre("+comma", "ret"));
}

TEST(QemuBootCommandParse, UntypeableCharactersAreErrors) {
  EXPECT_THAT(ParseError("ab\xC3\xA9"), HasSubstr("character '\xC3\xA9' (U+00E9) at character 3 cannot be typed"));
  EXPECT_THAT(ParseError("ab<enter>x\x01"), HasSubstr("U+0001 at character 11"));
  EXPECT_THAT(ParseError("\xE2\x82\xAC"), HasSubstr("(U+20AC) at character 1"));
  EXPECT_THAT(ParseError("<\xC3\xA9On>"), HasSubstr("U+00E9"));
  EXPECT_THAT(ParseError("a\xFF"), HasSubstr("invalid UTF-8 at character 2"));
  EXPECT_THAT(ParseError("<reboot>"), HasSubstr("Hyper-V"));
}

TEST(QemuBootCommandParse, WarningsForLikelyMisspelledKeys) {
  EXPECT_THAT(boot_command_warnings("root<entr>"),
              ElementsAre("boot_command: <entr> at character 5 is not a special key and will be typed as text "
                          "(did you mean <enter>?)"));
  EXPECT_THAT(boot_command_warnings("<leftCtrlOnn>"), ElementsAre(HasSubstr("did you mean <leftCtrl>?")));
  EXPECT_THAT(boot_command_warnings("<leftCtrlOm>c"), ElementsAre(HasSubstr("did you mean <leftCtrl>?")));
  EXPECT_THAT(boot_command_warnings("<Wait5>"), ElementsAre(HasSubstr("is not a wait")));
  EXPECT_THAT(boot_command_warnings("<html><enter><wait5> a<b"), IsEmpty());
}

// A QMP server on a unix socket that answers every command with success (or an error for one
// chosen command) and records what it received, with the time of arrival.
class FakeQmpServer {
 public:
  struct Received {
    nlohmann::json command;
    std::chrono::steady_clock::time_point at;
  };

  explicit FakeQmpServer(std::string socket_path, std::string failing_command = "")
      : path_(std::move(socket_path)), failing_command_(std::move(failing_command)) {
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listen_fd_, 1) != 0)
      throw std::runtime_error("fake QMP server: cannot listen on " + path_ + ": " + std::strerror(errno));
    thread_ = std::thread([this] { serve(); });
  }

  ~FakeQmpServer() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }

  // Every command but the capabilities negotiation.
  std::vector<Received> commands() {
    std::lock_guard lock(mutex_);
    std::vector<Received> out;
    for (const Received& r : received_)
      if (r.command.value("execute", "") != "qmp_capabilities") out.push_back(r);
    return out;
  }

 private:
  bool wait_readable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  void serve() {
    if (!wait_readable(listen_fd_)) return;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    send(fd, R"({"QMP": {"version": {}, "capabilities": []}})"
             "\n");
    std::string buf;
    char tmp[4096];
    while (wait_readable(fd)) {
      ssize_t n = read(fd, tmp, sizeof tmp);
      if (n <= 0) break;
      buf.append(tmp, static_cast<size_t>(n));
      for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
        nlohmann::json command = nlohmann::json::parse(buf.substr(0, nl));
        buf.erase(0, nl + 1);
        {
          std::lock_guard lock(mutex_);
          received_.push_back({command, std::chrono::steady_clock::now()});
        }
        if (command.value("execute", "") == failing_command_)
          send(fd, R"({"error": {"class": "GenericError", "desc": "Parameter 'keys' is broken"}})"
                   "\n");
        else
          send(fd, "{\"return\": {}}\n");
      }
    }
    close(fd);
  }

  static void send(int fd, const std::string& text) { (void)!write(fd, text.data(), text.size()); }

  std::string path_;
  std::string failing_command_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Received> received_;
};

class QemuBootCommandTyping : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-bootcmd-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string socket_path() const { return (dir_ / "qmp.sock").string(); }

  fs::path dir_;
  CancelToken cancel_;
};

nlohmann::json Key(const std::string& qcode) { return {{"type", "qcode"}, {"data", qcode}}; }
nlohmann::json InputKey(const std::string& qcode, bool down) {
  return {{"type", "key"}, {"data", {{"down", down}, {"key", Key(qcode)}}}};
}

nlohmann::json Events(std::initializer_list<nlohmann::json> events) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : events) out.push_back(e);
  return out;
}

// Every key goes down and up through input-send-event: send-key queues its releases in a
// bounded queue inside qemu that drops events when a busy guest drains it late (a lost shift
// release leaves shift stuck).
TEST_F(QemuBootCommandTyping, TypesEveryKeyAsInputEventsDownThenUp) {
  FakeQmpServer server(socket_path());
  auto qmp = QmpClient::connect(socket_path(), 5s, cancel_);
  type_boot_command(*qmp, parse_boot_command("a<leftShiftOn>b<leftShiftOff>C<enter>"), 0ms, cancel_);

  auto got = server.commands();
  ASSERT_EQ(got.size(), 10u);
  for (const auto& c : got) EXPECT_EQ(c.command["execute"], "input-send-event");
  auto events = [&](size_t i) { return got[i].command["arguments"]["events"]; };
  EXPECT_EQ(events(0), Events({InputKey("a", true)}));
  EXPECT_EQ(events(1), Events({InputKey("a", false)}));
  EXPECT_EQ(events(2), Events({InputKey("shift", true)}));
  EXPECT_EQ(events(3), Events({InputKey("b", true)}));
  EXPECT_EQ(events(4), Events({InputKey("b", false)}));
  EXPECT_EQ(events(5), Events({InputKey("shift", false)}));
  // A character that needs shift: shift down first, up last, around the key.
  EXPECT_EQ(events(6), Events({InputKey("shift", true), InputKey("c", true)}));
  EXPECT_EQ(events(7), Events({InputKey("c", false), InputKey("shift", false)}));
  EXPECT_EQ(events(8), Events({InputKey("ret", true)}));
  EXPECT_EQ(events(9), Events({InputKey("ret", false)}));
  // Each key is held a few ms, so the guest sees a distinct press.
  EXPECT_GE(got[1].at - got[0].at, 4ms);
}

TEST_F(QemuBootCommandTyping, PausesKeyIntervalBetweenKeysAndHonoursWaits) {
  FakeQmpServer server(socket_path());
  auto qmp = QmpClient::connect(socket_path(), 5s, cancel_);
  type_boot_command(*qmp, parse_boot_command("ab<wait1s>c"), 50ms, cancel_);

  auto got = server.commands();
  ASSERT_EQ(got.size(), 6u);  // down and up for each key
  // (a few ms of slack: CancelToken::sleep_for rounds its poll timeout down to whole ms)
  EXPECT_GE(got[2].at - got[0].at, 45ms);  // a pressed, then b pressed one interval later
  EXPECT_LT(got[2].at - got[0].at, 500ms);
  EXPECT_GE(got[4].at - got[2].at, 1040ms);  // b's interval, then the wait
  EXPECT_LT(got[4].at - got[2].at, 1800ms);
}

TEST_F(QemuBootCommandTyping, CancellationDuringLongWaitReturnsPromptly) {
  FakeQmpServer server(socket_path());
  auto qmp = QmpClient::connect(socket_path(), 5s, cancel_);
  std::thread canceller([this] {
    std::this_thread::sleep_for(200ms);  // let typing reach the wait
    cancel_.cancel(SIGINT);
  });
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(type_boot_command(*qmp, parse_boot_command("a<wait10>b"), 0ms, cancel_), Cancelled);
  auto took = std::chrono::steady_clock::now() - start;
  canceller.join();
  EXPECT_LT(took, 1500ms);
  ASSERT_EQ(server.commands().size(), 2u);  // "a" typed (down, up), "b" not
}

TEST_F(QemuBootCommandTyping, QmpErrorsBecomeBuildErrors) {
  FakeQmpServer server(socket_path(), "input-send-event");
  auto qmp = QmpClient::connect(socket_path(), 5s, cancel_);
  try {
    type_boot_command(*qmp, parse_boot_command("x"), 0ms, cancel_);
    FAIL() << "expected a BuildError";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("Parameter 'keys' is broken"));
  }
}

// A real qemu validates every QKeyCode: typing every key family must draw no error. It starts
// paused (-S) with no disk: no guest is needed to accept keys.
class QemuBootCommandRealQemu : public QemuBootCommandTyping {
 protected:
  void SetUp() override {
    QemuBootCommandTyping::SetUp();
    REQUIRE_TOOL("qemu-system-x86_64");
    qemu_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{"qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-S", "-display", "none",
                                 "-nodefaults", "-qmp", "unix:" + socket_path() + ",server=on,wait=off"},
        (dir_ / "qemu.log").string());
  }
  void TearDown() override {
    qemu_.reset();  // stops and reaps qemu
    QemuBootCommandTyping::TearDown();
  }
  std::string qemu_log() const {
    std::ifstream in(dir_ / "qemu.log");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  std::unique_ptr<BackgroundProcess> qemu_;
};

TEST_F(QemuBootCommandRealQemu, TypesEveryKeyFamilyWithoutErrors) {
  std::string command;
  for (char c = 0x20; c < 0x7F; ++c) command += c;  // every printable ASCII character
  command += "\n\t";
  for (const char* key :
       {"bs",      "del",      "enter",    "return",    "esc",       "tab",        "spacebar",  "insert",
        "home",    "end",      "pageUp",   "pageDown",  "up",        "down",       "left",      "right",
        "leftAlt", "rightAlt", "leftCtrl", "rightCtrl", "leftShift", "rightShift", "leftSuper", "rightSuper",
        "menu",    "f1",       "f2",       "f3",        "f4",        "f5",         "f6",        "f7",
        "f8",      "f9",       "f10",      "f11",       "f12"}) {
    command += "<" + std::string(key) + ">";
    command += "<" + std::string(key) + "On><" + std::string(key) + "Off>";
  }
  command += "<leftCtrlOn>c<leftCtrlOff><QOn><QOff><wait50ms>";
  auto events = parse_boot_command(command);
  ASSERT_GT(events.size(), 200u);

  std::unique_ptr<QmpClient> qmp;
  try {
    qmp = QmpClient::connect(socket_path(), 20s, cancel_);
  } catch (const BuildError& e) {
    FAIL() << e.what() << "\nqemu log:\n" << qemu_log();
  }
  // qemu refuses input-send-event ("VM not running") while paused, as it never is when a
  // boot_command is typed; the firmware finds nothing to boot and waits, which is enough.
  qmp->execute("cont");
  EXPECT_NO_THROW(type_boot_command(*qmp, events, 1ms, cancel_));
  // still answering: nothing we sent upset it
  EXPECT_EQ(qmp->execute("query-status")["status"], "running");
  // and it does check key names, so the absence of errors above means something
  EXPECT_THROW(qmp->execute("send-key", {{"keys", {{{"type", "qcode"}, {"data", "notakey"}}}}}), BuildError);
}

}  // namespace
