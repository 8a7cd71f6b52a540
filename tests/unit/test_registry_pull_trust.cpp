// pull_image and trust: an image whose provenance is signed by a key the pulling side does not
// trust is refused (nothing imported) unless the policy allows it, which the audit log records.
#include <gtest/gtest.h>

#include <fstream>

#include "imgbake/store.h"
#include "imgbake/transfer.h"
#include "registry_client_fixture.h"

namespace {

using namespace registry_client_fixture;
using store::CommitRequest;
using store::Store;

// web:1, committed with a provenance statement signed by `key`.
store::ImageRecord CommitSigned(Store& st, const fs::path& dir, const provenance::SigningKey& key) {
  CommitRequest r;
  r.name = "web";
  r.version = "1";
  r.builder_type = "file";
  r.embed_build_info = false;
  std::ofstream(dir / "web.conf") << "listen 80;\n";
  r.files.push_back({(dir / "web.conf").string(), 0, "", ""});
  r.make_provenance = [&](const std::string& v, const std::string& manifest_digest,
                          const std::vector<oci::Descriptor>& layers) {
    provenance::BuildFacts facts;
    facts.builder_type = "file";
    facts.build_name = "web";
    facts.subjects.push_back({"web:" + v, manifest_digest.substr(7)});
    for (const auto& l : layers)
      facts.subjects.push_back({l.annotations.at("org.opencontainers.image.title"), l.digest.substr(7)});
    return provenance::sign_envelope(key, provenance::kInTotoPayloadType, provenance::make_statement(facts).dump());
  };
  return st.commit(r);
}

TEST_F(RegistryClientTest, PullRefusesAnUntrustedSignatureUnlessAllowedAndAudited) {
  provenance::SigningKey signer = provenance::SigningKey::generate();
  provenance::SigningKey ours = provenance::SigningKey::generate();
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  CancelToken cancel;
  {
    Store from(work_ / "from");
    store::ImageRecord img = CommitSigned(from, work_, signer);
    push_image(from, img, client, Reference::parse(registry_->host() + "/trust/web:1"), {}, false, nullptr, nullptr,
               cancel);
  }
  std::vector<provenance::VerifyingKey> keys;
  keys.push_back(provenance::VerifyingKey::from_pem(ours.public_pem()));
  Store to(work_ / "to");
  Reference src = Reference::parse(registry_->host() + "/trust/web:1");
  RevocationPolicy refuse{&keys, false, false};
  try {
    pull_image(to, client, src, "", "", refuse, nullptr, cancel);
    FAIL() << "an image signed by an untrusted key was pulled";
  } catch (const BuildError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(src.str() + ": its provenance is not signed by a trusted key ("), std::string::npos) << what;
    EXPECT_NE(what.find("nothing was imported"), std::string::npos) << what;
    EXPECT_NE(what.find("--allow-untrusted"), std::string::npos) << what;
  }
  EXPECT_TRUE(to.images().empty());

  RevocationPolicy allow{&keys, false, true};
  TransferReport rep = pull_image(to, client, src, "", "", allow, nullptr, cancel);
  EXPECT_EQ(rep.local_ref, "web:1");
  auto audit = to.history("web");
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "pull");
  nlohmann::json detail = nlohmann::json::parse(audit[0].detail);
  EXPECT_EQ(detail.value("allowed_by", ""), "--allow-untrusted");
  EXPECT_NE(detail.value("untrusted_signature", ""), "");
}

}  // namespace
