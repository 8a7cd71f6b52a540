// `imgbake test REF`: runs a test spec's checks against an image (docs/testing-images.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "imgbake/cancel.h"
#include "imgbake/disk_boot.h"
#include "imgbake/exec.h"
#include "imgbake/imagetest.h"
#include "imgbake/json.h"
#include "imgbake/publish.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/test_spec.h"
#include "imgbake/version.h"
#include "store_verbs.h"

namespace imgbake::cli {

namespace {

// The spec: a --spec file's top-level object, or the `tests` of a template's `imgbake` section.
TestSpec load_spec(const std::string& spec_file, const std::string& template_file) {
  const std::string& file = spec_file.empty() ? template_file : spec_file;
  const std::string text = util::read_file(file);
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const json::ParseError& e) {
    throw ConfigError(file, e.pos, e.what());
  }
  const json::Value* tests = &root;
  if (!template_file.empty()) {
    const json::Value* section = root.find("imgbake");
    tests = section ? section->find("tests") : nullptr;
    if (!tests)
      throw ConfigError(file, root.pos,
                        "the template has no checks ('tests' in its 'imgbake' section); give them "
                        "there or in a file with --spec");
  }
  Diagnostics diags;
  TestSpec spec = read_test_spec(*tests, file, diags);
  diags.throw_if_errors();
  return spec;
}

std::string seconds(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs", std::chrono::duration<double>(d).count());
  return buf;
}

nlohmann::json event(const char* name, const imagetest::SuiteResult& r) {
  return {{"event", name},
          {"image", r.image},
          {"digest", r.digest},
          {"suite", r.suite},
          {"time", util::format_rfc3339(std::chrono::system_clock::now(), true)}};
}

// A container image's Entrypoint and Cmd as one shell command line.
std::string service_command(const nlohmann::json& runtime, const std::string& ref) {
  std::vector<std::string> argv;
  for (const char* key : {"Entrypoint", "Cmd"})
    if (runtime.contains(key) && runtime[key].is_array())
      for (const auto& a : runtime[key])
        if (a.is_string()) argv.push_back(a.get<std::string>());
  if (argv.empty())
    throw UsageError("'service_start': " + ref + " has no Entrypoint or Cmd to start (its template's imgbake.config)");
  std::string line;
  for (const auto& a : argv) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += (line.empty() ? "" : " ") + q + "'";
  }
  return line;
}

// The service under test of a container image: each command of a check runs in a fresh sandbox,
// so the service is started in front of it, in the same sandbox, and waited for until something
// listens on TCP (in the sandbox's own network namespace that can only be the service) or
// `wait` passed. The sandbox ends with the command, and the service with it.
class ServiceCommunicator : public Communicator {
 public:
  ServiceCommunicator(Communicator& inner, const std::string& service, std::chrono::milliseconds wait)
      : inner_(inner),
        prefix_("(exec " + service +
                ") >/tmp/imgbake-service.log 2>&1 </dev/null & imgbake_i=0; while [ $imgbake_i -lt " +
                std::to_string(std::max<int64_t>(1, wait.count() / 100)) +
                " ] && ! grep -q ' 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do sleep 0.1; "
                "imgbake_i=$((imgbake_i+1)); done; ") {}
  RunResult run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err,
                const CancelToken& cancel) override {
    RemoteCommand c = cmd;
    c.command = prefix_ + cmd.command;
    return inner_.run(c, out, err, cancel);
  }
  void upload(const std::string& local, const std::string& remote, const CancelToken& cancel) override {
    inner_.upload(local, remote, cancel);
  }
  void download(const std::string& remote, const std::string& local, const CancelToken& cancel) override {
    inner_.download(remote, local, cancel);
  }
  bool may_be_unreachable() const override { return false; }

 private:
  Communicator& inner_;
  std::string prefix_;
};

}  // namespace

ImageTestOutcome test_image(store::Store& st, const store::ImageRecord& img, const TestSpec& spec,
                            const ImageTestOptions& opts) {
  const nlohmann::json manifest = st.manifest(img);
  const bool container = is_container_image(manifest);
  const auto [disk, disk_format] = disk_layer(manifest);
  if (!container && disk.empty())
    throw UsageError(img.ref() + " holds files, not a root filesystem or a disk image: there is nothing to test");
  const std::string builder = manifest.contains("annotations")
                                  ? manifest["annotations"].value("io.imgbake.builder", std::string("qemu"))
                                  : std::string("qemu");
  std::unique_ptr<DiskBooter> booter;
  if (!container) {
    booter = DiskBooterRegistry::instance().create(builder);
    if (!booter)
      throw UsageError(img.ref() + " is a disk image of the " + builder + " builder, which cannot boot one for tests");
  }
  if (spec.service_start && !container)
    throw UsageError("'service_start' starts a container image's Entrypoint/Cmd: " + img.ref() +
                     " is a disk image, whose services its init system starts");
  const bool json_out = opts.json_out;
  ImageTestOutcome out;
  imagetest::SuiteResult& r = out.result;
  r.suite = spec.suite;
  r.image = img.ref();
  r.digest = img.manifest_digest;
  r.started = util::format_rfc3339(std::chrono::system_clock::now());
  const auto t0 = std::chrono::steady_clock::now();
  CooperativeInterrupts interrupts;  // the sandbox or VM and the scratch directory are cleaned up on Ctrl-C
  auto on_result = [&](const imagetest::CheckResult& c) {
    if (json_out) {
      nlohmann::json j = event("check", r);
      j["name"] = c.name;
      j["kind"] = c.kind;
      j["status"] = c.passed ? "pass" : "fail";
      j["message"] = c.message;
      j["duration_s"] = std::chrono::duration<double>(c.duration).count();
      std::cout << j.dump() << "\n" << std::flush;
    } else {
      std::cout << "    " << (c.passed ? "PASS" : "FAIL") << "  " << c.name << " (" << seconds(c.duration) << ")"
                << (c.passed ? "" : ": " + c.message) << "\n"
                << std::flush;
    }
  };
  const nlohmann::json config = nlohmann::json::parse(st.blobs().read(manifest["config"]["digest"]));
  const nlohmann::json runtime = config.contains("config") ? config["config"] : nlohmann::json::object();
  {
    // A directory only root can enter, thrown away afterwards: testing never changes the image.
    util::TempPathGuard scratch(st.blobs().temp_dir() / ("test-" + util::uuid_v4()));
    std::filesystem::create_directories(scratch.path());
    std::filesystem::permissions(scratch.path(), std::filesystem::perms::owner_all);
    if (container) {
      if (!json_out)
        std::cout << "==> test " << img.ref() << ": suite " << spec.suite << ", " << spec.checks.size()
                  << " check(s), in a sandbox around the image's root filesystem"
                  << (spec.service_start ? ", its Entrypoint/Cmd started as the service under test" : "") << "\n"
                  << std::flush;
      unpack_rootfs(st, manifest, scratch.path() / "rootfs");
      ExecOptions eo;
      eo.root = scratch.path() / "rootfs";
      eo.private_dir = scratch.path();
      // The image's own environment (its PATH above all), as a container of it would start with.
      if (runtime.contains("Env") && runtime["Env"].is_array())
        for (const auto& e : runtime["Env"]) {
          const std::string kv = e.is_string() ? e.get<std::string>() : "";
          if (auto eq = kv.find('='); eq != std::string::npos && eq > 0) eo.env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
      if (runtime.contains("WorkingDir") && runtime["WorkingDir"].is_string() &&
          !runtime["WorkingDir"].get<std::string>().empty())
        eo.workdir = runtime["WorkingDir"];
      ExecCommunicator sandbox(eo);
      if (spec.service_start) {
        ServiceCommunicator machine(sandbox, service_command(runtime, img.ref()),
                                    spec.service_wait.value_or(std::chrono::seconds(10)));
        r.checks = imagetest::run_checks(spec, machine, global_cancel(), on_result);
      } else {
        r.checks = imagetest::run_checks(spec, sandbox, global_cancel(), on_result);
      }
    } else {
      if (!json_out)
        std::cout << "==> test " << img.ref() << ": suite " << spec.suite << ", " << spec.checks.size()
                  << " check(s), on a copy-on-write overlay of its disk booted under " << builder << "\n"
                  << std::flush;
      Ui ui(json_out ? OutputMode::Json : OutputMode::Human, stdout, stderr, false, std::make_shared<Masker>());
      DiskBootRequest req;
      st.blobs().check_regular(disk);
      req.disk = st.blobs().path(disk);
      req.disk_format = disk_format;
      if (runtime.contains("Labels") && runtime["Labels"].is_object())
        for (const auto& [k, v] : runtime["Labels"].items())
          if (v.is_string()) req.labels[k] = v.get<std::string>();
      req.boot = spec.boot;
      req.scratch = scratch.path();
      req.name = img.ref();
      std::unique_ptr<BootedMachine> vm = booter->boot(req, ui, global_cancel());
      imagetest::HostAccess host{vm->ssh(), scratch.path(),
                                 [&vm](int guest_port) { return vm->forward_tcp(guest_port); }};
      r.checks = imagetest::run_checks(spec, vm->communicator(), global_cancel(), on_result, host);
    }
  }
  r.duration = std::chrono::steady_clock::now() - t0;
  if (!opts.junit.empty()) util::write_file_atomic(opts.junit, imagetest::junit_xml(r));
  // The evidence: a signed in-toto test-result statement, kept as a referrer of the image.
  if (opts.record) {
    imagetest::RunFacts facts{opts.spec_name, opts.spec_sha256,
                              std::string("imgbake ") + kVersion + (container ? " (sandbox)" : " (" + builder + ")")};
    std::string key_path = opts.signing_key;
    if (const char* e = std::getenv("IMGBAKE_SIGNING_KEY"); key_path.empty() && e && *e) key_path = e;
    bool created = false;
    provenance::SigningKey key = load_signing_key(key_path, created);
    if (created) std::cerr << "imgbake: made a new signing key " << default_signing_key_path().string() << "\n";
    const nlohmann::json statement = imagetest::test_result_statement(r, facts);
    store::TestRunRequest req;
    req.suite = r.suite;
    req.passed = r.passed();
    for (const auto& c : r.checks)
      if (!c.passed) req.failed.push_back(c.name);
    req.envelope = provenance::sign_envelope(key, provenance::kInTotoPayloadType, statement.dump());
    AuditSigningKey audit_key(key_path);
    out.recorded = st.record_test(img, req).envelope_digest;
  }
  if (json_out) {
    nlohmann::json j = event("test_result", r);
    j["passed"] = r.checks.size() - r.failed();
    j["failed"] = r.failed();
    j["ok"] = r.passed();
    j["duration_s"] = std::chrono::duration<double>(r.duration).count();
    if (!out.recorded.empty()) j["evidence"] = out.recorded;
    std::cout << j.dump() << "\n";
  } else {
    std::cout << "test " << img.ref() << " (" << spec.suite << "): "
              << (r.passed() ? "all " + std::to_string(r.checks.size()) + " checks passed"
                             : std::to_string(r.failed()) + " of " + std::to_string(r.checks.size()) + " checks failed")
              << " in " << seconds(r.duration) << (opts.junit.empty() ? "" : "; JUnit report: " + opts.junit)
              << (out.recorded.empty() ? "" : "; signed result recorded (" + out.recorded + ")") << "\n";
  }
  return out;
}

Action setup_test(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string ref, spec, template_file, junit, signing_key;
    bool no_record = false;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image: name, name:version, name:channel or name@sha256:…")->required();
  sub.add_option("--spec", o->spec, "A JSON file of checks: {\"suite\": NAME, \"checks\": [...]}");
  sub.add_option("--template", o->template_file, "A template whose imgbake.tests holds the checks");
  sub.add_option("--junit", o->junit, "Also write the results as a JUnit XML report to this file");
  sub.add_option("--signing-key", o->signing_key,
                 "Sign the test result with this Ed25519 key (default: $IMGBAKE_SIGNING_KEY, else the user's key)");
  sub.add_flag("--no-record", o->no_record,
               "Do not record the result in the store (no signed evidence: a gated channel will not take it)");
  return [o, &global] {
    if (o->spec.empty() == o->template_file.empty())
      throw UsageError("give the checks with --spec FILE or with --template FILE (its imgbake.tests), one of them");
    const TestSpec spec = load_spec(o->spec, o->template_file);
    auto st = open_store();
    const store::ImageRecord img = st->resolve(o->ref);
    ImageTestOptions opts;
    opts.json_out = global.output == "json";
    opts.junit = o->junit;
    opts.signing_key = o->signing_key;
    opts.record = !o->no_record;
    opts.spec_name = o->spec.empty() ? o->template_file : o->spec;
    opts.spec_sha256 = util::sha256_hex(util::read_file(opts.spec_name));
    return test_image(*st, img, spec, opts).result.passed() ? 0 : 1;
  };
}

}  // namespace imgbake::cli
