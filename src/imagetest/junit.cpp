// The JUnit XML report of a test run (imagetest.h).
#include <cstdio>

#include "imgbake/imagetest.h"

namespace imgbake::imagetest {

namespace {

// Text for an XML attribute or element: the five entities, and control characters (which XML
// 1.0 cannot carry) as '?'.
std::string xml(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += (c < 0x20 && c != '\n' && c != '\t' && c != '\r') ? '?' : static_cast<char>(c);
    }
  }
  return out;
}

std::string seconds(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

std::string junit_xml(const SuiteResult& r) {
  const std::string classname = "imgbake." + r.suite;
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<testsuites name=\"imgbake test " + xml(r.image) + "\" tests=\"" + std::to_string(r.checks.size()) +
         "\" failures=\"" + std::to_string(r.failed()) + "\" errors=\"0\" time=\"" + seconds(r.duration) + "\">\n";
  out += "  <testsuite name=\"" + xml(r.suite) + "\" tests=\"" + std::to_string(r.checks.size()) + "\" failures=\"" +
         std::to_string(r.failed()) + "\" errors=\"0\" skipped=\"0\" time=\"" + seconds(r.duration) +
         "\" timestamp=\"" + xml(r.started) + "\">\n";
  out += "    <properties>\n      <property name=\"image\" value=\"" + xml(r.image) +
         "\"/>\n      <property name=\"digest\" value=\"" + xml(r.digest) + "\"/>\n    </properties>\n";
  for (const auto& c : r.checks) {
    out += "    <testcase name=\"" + xml(c.name) + "\" classname=\"" + xml(classname + "." + c.kind) + "\" time=\"" +
           seconds(c.duration) + "\"";
    if (c.passed) {
      out += "/>\n";
    } else {
      out += ">\n      <failure message=\"" + xml(c.message) + "\" type=\"" + xml(c.kind) + "\">" + xml(c.message) +
             "</failure>\n    </testcase>\n";
    }
  }
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

}  // namespace imgbake::imagetest
