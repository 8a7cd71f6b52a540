// Packer's functions beyond cty's standard library (hcl2template/functions.go): files and
// paths, base64, hashes, UUIDs, timestamp(). Relative paths of file(), fileset() and
// templatefile() start at the template's directory, as Packer 1.6.6's do.
#include <ctime>
#include <filesystem>
#include <functional>
#include <regex>

#include "hcl_load.h"
#include "imgbake/interpolate.h"
#include "imgbake/util.h"

namespace imgbake::hcl_template {

namespace fs = std::filesystem;
using hcl::Function;
using hcl::FunctionError;
using hcl::Type;
using hcl::Value;

namespace {

Function string_fn(std::vector<std::string> params, std::function<Value(const std::vector<Value>&)> impl) {
  Function fn;
  for (auto& p : params) fn.params.push_back({std::move(p), Type::string()});
  fn.result_type = Type::string();
  fn.impl = std::move(impl);
  return fn;
}

std::string resolve(const std::string& base, const std::string& p) {
  return fs::path(p).is_absolute() ? p : (fs::path(base) / p).string();
}

std::string read(const std::string& base, const std::string& p) {
  try {
    return util::read_file(resolve(base, p));
  } catch (const std::exception& e) {
    throw FunctionError(std::string("no file exists at ") + p + ": " + e.what(), 0);
  }
}

std::string base64_encode(std::string_view in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += abc[(n >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t n = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) n |= uint8_t(in[i + 1]) << 8;
    out += abc[(n >> 18) & 63];
    out += abc[(n >> 12) & 63];
    out += i + 1 < in.size() ? abc[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  if (in.size() % 4) return std::nullopt;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else if (c == '=') {
      ++pad;
      continue;
    } else
      return std::nullopt;
    if (pad) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return pad > 2 ? std::nullopt : std::optional<std::string>(out);
}

namespace {

Function hash_fn(std::string algo) {
  return string_fn({"str"}, [algo](const std::vector<Value>& a) {
    util::Hasher h(algo);
    h.update(a[0].as_string().data(), a[0].as_string().size());
    return Value::string(h.hex());
  });
}

// A glob (`*`, `?`, `[...]`, `{a,b}`, `**` for any directories) as a regular expression over
// slash-separated relative paths, as Packer's fileset (doublestar) reads it.
std::regex glob_regex(const std::string& g) {
  std::string re;
  int braces = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    char c = g[i];
    if (c == '*' && i + 1 < g.size() && g[i + 1] == '*') {
      bool slash = i + 2 < g.size() && g[i + 2] == '/';
      re += slash ? "(.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (c == '*') {
      re += "[^/]*";
    } else if (c == '?') {
      re += "[^/]";
    } else if (c == '{') {
      re += '(';
      ++braces;
    } else if (c == '}' && braces) {
      re += ')';
      --braces;
    } else if (c == ',' && braces) {
      re += '|';
    } else if (c == '[') {
      size_t close = g.find(']', i + 1);
      if (close == std::string::npos) throw FunctionError("invalid pattern: unclosed [", 1);
      re += g.substr(i, close - i + 1);
      i = close;
    } else {
      if (std::strchr("\\^$.|+()", c)) re += '\\';
      re += c;
    }
  }
  try {
    return std::regex(re);
  } catch (const std::regex_error&) {
    throw FunctionError("invalid pattern \"" + g + "\"", 1);
  }
}

}  // namespace

std::map<std::string, Function> packer_functions(const std::string& base_dir) {
  std::map<std::string, Function> f = hcl::standard_functions();
  f["file"] = string_fn(
      {"path"}, [base_dir](const std::vector<Value>& a) { return Value::string(read(base_dir, a[0].as_string())); });
  f["fileexists"] = string_fn({"path"}, [base_dir](const std::vector<Value>& a) {
    std::error_code ec;
    return Value::boolean(fs::is_regular_file(resolve(base_dir, a[0].as_string()), ec));
  });
  f["fileexists"].result_type = Type::boolean();
  Function fileset = string_fn({"path", "pattern"}, [base_dir](const std::vector<Value>& a) {
    std::string root = resolve(base_dir, a[0].as_string());
    std::regex re = glob_regex(a[1].as_string());
    std::vector<Value> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (!it->is_regular_file()) continue;
      std::string rel = fs::relative(it->path(), root).generic_string();
      if (std::regex_match(rel, re)) out.push_back(Value::string(rel));
    }
    return Value::set(std::move(out), Type::string());
  });
  fileset.result_type = Type::set(Type::string());
  f["fileset"] = fileset;
  f["abspath"] = string_fn({"path"}, [](const std::vector<Value>& a) {
    std::error_code ec;
    return Value::string(fs::absolute(a[0].as_string(), ec).lexically_normal().string());
  });
  f["basename"] = string_fn({"path"}, [](const std::vector<Value>& a) {
    std::string p = a[0].as_string();
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return Value::string(p.empty() ? "." : p == "/" ? "/" : fs::path(p).filename().string());
  });
  f["dirname"] = string_fn({"path"}, [](const std::vector<Value>& a) {
    std::string p = fs::path(a[0].as_string()).parent_path().string();
    return Value::string(p.empty() ? "." : p);
  });
  f["pathexpand"] = string_fn({"path"}, [](const std::vector<Value>& a) {
    std::string p = a[0].as_string();
    const char* home = std::getenv("HOME");
    if (home && (p == "~" || p.rfind("~/", 0) == 0)) p = home + p.substr(1);
    return Value::string(p);
  });
  f["base64encode"] =
      string_fn({"str"}, [](const std::vector<Value>& a) { return Value::string(base64_encode(a[0].as_string())); });
  f["base64decode"] = string_fn({"str"}, [](const std::vector<Value>& a) {
    auto s = base64_decode(a[0].as_string());
    if (!s) throw FunctionError("failed to decode base64 data \"" + a[0].as_string() + "\"", 0);
    return Value::string(*s);
  });
  f["md5"] = hash_fn("md5");
  f["sha1"] = hash_fn("sha1");
  f["sha256"] = hash_fn("sha256");
  f["sha512"] = hash_fn("sha512");
  f["uuidv4"] = string_fn({}, [](const std::vector<Value>&) { return Value::string(util::uuid_v4()); });
  // One time for the whole run, as {{timestamp}} in JSON templates.
  f["timestamp"] = string_fn({}, [](const std::vector<Value>&) {
    std::time_t t = std::chrono::system_clock::to_time_t(interp::run_start_time());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return Value::string(buf);
  });
  // templatefile(path, vars): the file is an HCL template over `vars` and these functions.
  auto funcs = std::make_shared<std::map<std::string, Function>>();
  Function templatefile;
  templatefile.params = {{"path", Type::string()}, {"vars", Type()}};
  templatefile.result_type = Type::string();
  templatefile.impl = [base_dir, funcs](const std::vector<Value>& a) {
    std::string text = read(base_dir, a[0].as_string());
    if (a[1].type().kind() != Type::Kind::Object && a[1].type().kind() != Type::Kind::Map)
      throw FunctionError("invalid vars value: must be a map", 1);
    hcl::Diagnostics ds;
    hcl::ExprPtr e = hcl::parse_template(text, a[0].as_string(), ds);
    hcl::EvalContext ctx;
    ctx.functions = *funcs;
    for (const auto& [k, v] : a[1].attributes()) ctx.variables[k] = v;
    Value v = ds.has_errors() ? Value::unknown() : hcl::evaluate(*e, ctx, ds, a[0].as_string());
    if (ds.has_errors()) {
      const auto& d = ds.items().front();
      throw FunctionError(a[0].as_string() + ":" + std::to_string(d.subject.start.line) + ":" +
                          std::to_string(d.subject.start.column) + ": " + d.summary +
                          (d.detail.empty() ? "" : "; " + d.detail));
    }
    auto s = hcl::convert(v, Type::string());
    if (!s) throw FunctionError("the template did not produce a string");
    return *s;
  };
  add_network_and_id_functions(f);
  *funcs = f;  // templatefile does not call itself
  f["templatefile"] = templatefile;
  return f;
}

}  // namespace imgbake::hcl_template
