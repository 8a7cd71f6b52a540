// The amazon-ebs builder's steps that make the AMIs: the name check, force_deregister,
// CreateImage, CopyImage to ami_regions, launch permissions and tags, and the artifact.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "ebs_run.h"
#include "ebs_steps_internal.h"
#include "imgbake/error.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake::amazon {
namespace {

// The AMIs this account owns with this name in a region: id -> snapshot ids.
std::map<std::string, std::vector<std::string>> owned_images_named(EbsRun& r, State& st, const std::string& region,
                                                                   const std::string& name) {
  XmlNode doc =
      r.ec2(st, region)
          .call("DescribeImages", {{"Owner.1", "self"}, {"Filter.1.Name", "name"}, {"Filter.1.Value.1", name}});
  std::map<std::string, std::vector<std::string>> out;
  for (const XmlNode* img : doc.items("imagesSet")) {
    auto& snaps = out[img->at("imageId")];
    for (const XmlNode* bdm : img->items("blockDeviceMapping"))
      if (!bdm->at("ebs/snapshotId").empty()) snaps.push_back(bdm->at("ebs/snapshotId"));
  }
  return out;
}

std::vector<std::string> regions_of(const EbsRun& r) {
  std::vector<std::string> out = {r.cfg.region};
  for (const auto& reg : r.cfg.ami_regions)
    if (std::find(out.begin(), out.end(), reg) == out.end()) out.push_back(reg);
  return out;
}

// Waits for an AMI to become available; fails when it becomes "failed".
void wait_available(EbsRun& r, State& st, const std::string& region, const std::string& ami,
                    std::vector<std::string>* snapshots) {
  r.wait_until(st, "AMI " + ami + " in " + region + " to become available", [&] {
    XmlNode doc = r.ec2(st, region).call("DescribeImages", {{"ImageId.1", ami}});
    for (const XmlNode* img : doc.items("imagesSet")) {
      std::string s = img->at("imageState");
      if (s == "failed" || s == "invalid" || s == "error")
        throw BuildError("AMI " + ami + " in " + region + " is " + s +
                         (img->at("stateReason/message").empty() ? "" : ": " + img->at("stateReason/message")));
      if (s != "available") return false;
      if (snapshots) {
        snapshots->clear();
        for (const XmlNode* bdm : img->items("blockDeviceMapping"))
          if (!bdm->at("ebs/snapshotId").empty()) snapshots->push_back(bdm->at("ebs/snapshotId"));
      }
      return true;
    }
    return false;
  });
}

// Idempotent: an AMI or snapshot already gone (an earlier try that failed half-way) counts as removed.
void deregister(EbsRun& r, State& st, const std::string& region, const std::string& ami,
                const std::vector<std::string>& snapshots, bool delete_snapshots, bool cleanup = false) {
  Ec2Client& ec2 = cleanup ? r.ec2_cleanup(st, region) : r.ec2(st, region);
  auto unless_gone = [&](const char* action, const char* id_param, const std::string& id, const char* not_found) {
    try {
      ec2.call(action, {{id_param, id}});
    } catch (const Ec2Error& e) {
      if (e.code() != not_found) throw;
    }
  };
  unless_gone("DeregisterImage", "ImageId", ami, "InvalidAMIID.NotFound");
  if (delete_snapshots)
    for (const auto& s : snapshots) unless_gone("DeleteSnapshot", "SnapshotId", s, "InvalidSnapshot.NotFound");
}

// A cleanup's removal of an AMI this build made, with its snapshots (asked of EC2 when the AMI
// was interrupted before it was available and they are not known yet). Reports, never throws.
bool remove_image(EbsRun& r, State& st, const std::string& region, const std::string& ami,
                  std::vector<std::string> snapshots) noexcept {
  try {
    st.message("the build did not finish: deregistering AMI " + ami + " in " + region);
    if (snapshots.empty()) {
      XmlNode doc = r.ec2_cleanup(st, region).call("DescribeImages", {{"ImageId.1", ami}});
      for (const XmlNode* img : doc.items("imagesSet"))
        for (const XmlNode* bdm : img->items("blockDeviceMapping"))
          if (!bdm->at("ebs/snapshotId").empty()) snapshots.push_back(bdm->at("ebs/snapshotId"));
    }
    deregister(r, st, region, ami, snapshots, true, true);
    return true;
  } catch (const std::exception& e) {
    st.ui.error(st.build.name, "cannot deregister AMI " + ami + " in " + region + ": " + e.what() +
                                   " (deregister it by hand: aws ec2 deregister-image --region " + region +
                                   " --image-id " + ami + ")");
    return false;
  }
}

class AmiNameCheckStep : public Step {
 public:
  explicit AmiNameCheckStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "check AMI name"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-ami-name"}, {"ami_name", r_.cfg.ami_name}};
  }
  void run(State& st) override {
    if (r_.cfg.force_deregister || r_.cfg.skip_create_ami) return;
    for (const auto& region : regions_of(r_)) {
      auto existing = owned_images_named(r_, st, region, r_.cfg.ami_name);
      if (!existing.empty())
        throw BuildError("AMI name '" + r_.cfg.ami_name + "' is used by an existing AMI in " + region + ": " +
                         existing.begin()->first + " (set force_deregister to replace it)");
    }
  }

 private:
  EbsRun& r_;
};

class DeregisterStep : public Step {
 public:
  explicit DeregisterStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "force deregister"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-deregister"}, {"ami_name", r_.cfg.ami_name}, {"snapshots", r_.cfg.force_delete_snapshot}};
  }
  void run(State& st) override {
    for (const auto& region : regions_of(r_))
      for (const auto& [ami, snaps] : owned_images_named(r_, st, region, r_.cfg.ami_name)) {
        st.message("force_deregister: deregistering " + ami + " in " + region +
                   (r_.cfg.force_delete_snapshot && !snaps.empty() ? " and deleting " + util::join(snaps, ", ") : ""));
        deregister(r_, st, region, ami, snaps, r_.cfg.force_delete_snapshot);
      }
  }

 private:
  EbsRun& r_;
};

class CreateImageStep : public Step {
 public:
  explicit CreateImageStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "create AMI"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-create-image"}, {"ami_name", r_.cfg.ami_name}, {"tags", r_.cfg.tags}};
  }
  void run(State& st) override {
    const EbsConfig& c = r_.cfg;
    Params p = {{"InstanceId", r_.instance_id}, {"Name", c.ami_name}};
    if (!c.ami_description.empty()) p.emplace_back("Description", c.ami_description);
    add_block_devices(p, "BlockDeviceMapping", c.ami_block_device_mappings);
    st.message("creating AMI " + c.ami_name + " from instance " + r_.instance_id);
    XmlNode doc = r_.ec2(st).call("CreateImage", p);
    std::string ami = doc.at("imageId");
    r_.amis[c.region] = ami;
    st.message("AMI " + ami + ": waiting for it to become available");
    wait_available(r_, st, c.region, ami, &r_.snapshots[c.region]);
    st.message("AMI " + ami + " is available (snapshots " + util::join(r_.snapshots[c.region], ", ") + ")");
  }
  void cleanup(State& st) noexcept override { remove_unfinished(r_, st, r_.cfg.region); }

  // A build that did not finish leaves no AMI behind (Packer does the same).
  static void remove_unfinished(EbsRun& r, State& st, const std::string& region) {
    if (r.completed) return;
    auto it = r.amis.find(region);
    if (it == r.amis.end()) return;
    if (remove_image(r, st, region, it->second, r.snapshots[region])) r.amis.erase(it);
  }

 private:
  EbsRun& r_;
};

// encrypt_boot (Packer's StepCreateEncryptedAMICopy): the AMI copied in its region with its
// snapshots encrypted (kms_key_id, else the region's default EBS key), then the unencrypted AMI
// deregistered and its snapshots deleted.
class EncryptImageStep : public Step {
 public:
  explicit EncryptImageStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "encrypt AMI"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-encrypt-image"}, {"kms_key_id", key_id()}};
  }
  void run(State& st) override {
    const EbsConfig& c = r_.cfg;
    std::string plain = r_.amis.at(c.region);
    std::vector<std::string> plain_snapshots = r_.snapshots[c.region];
    Params p = {{"SourceRegion", c.region}, {"SourceImageId", plain}, {"Name", c.ami_name}, {"Encrypted", "true"}};
    if (!c.ami_description.empty()) p.emplace_back("Description", c.ami_description);
    if (!key_id().empty()) p.emplace_back("KmsKeyId", key_id());
    p.emplace_back("ClientToken", "imgbake-" + util::uuid_v4());  // retries get the same copy, not a second
    st.message("copying " + plain + " to an encrypted AMI (" +
               (key_id().empty() ? "the region's default EBS key" : "KMS key " + key_id()) + ")");
    encrypted_ = r_.ec2(st).call("CopyImage", p).at("imageId");
    std::vector<std::string> snapshots;
    wait_available(r_, st, c.region, encrypted_, &snapshots);
    st.message("encrypted AMI " + encrypted_ + " is available; deregistering the unencrypted " + plain +
               " and deleting its snapshots " + util::join(plain_snapshots, ", "));
    // The unencrypted AMI goes first: should that fail, it is still the build's AMI (its cleanup
    // removes it) and the encrypted copy still this step's, so neither is forgotten.
    deregister(r_, st, c.region, plain, plain_snapshots, true);
    r_.amis[c.region] = encrypted_;
    r_.snapshots[c.region] = snapshots;
    encrypted_.clear();
  }
  void cleanup(State& st) noexcept override {
    if (!r_.completed && !encrypted_.empty() && remove_image(r_, st, r_.cfg.region, encrypted_, {})) encrypted_.clear();
  }

 private:
  // region_kms_key_ids' key for the build region wins over kms_key_id, as in Packer.
  std::string key_id() const {
    auto it = r_.cfg.region_kms_key_ids.find(r_.cfg.region);
    return it != r_.cfg.region_kms_key_ids.end() ? it->second : r_.cfg.kms_key_id;
  }
  EbsRun& r_;
  std::string encrypted_;  // the encrypted copy until it replaced the unencrypted AMI
};

class CopyImagesStep : public Step {
 public:
  explicit CopyImagesStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "copy AMI to regions"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-copy-image"}, {"regions", r_.cfg.ami_regions}};
  }
  void run(State& st) override {
    const EbsConfig& c = r_.cfg;
    std::string source = r_.amis.at(c.region);
    std::vector<std::string> targets;
    for (const auto& region : regions_of(r_)) {
      if (region == c.region) continue;
      Params p = {{"SourceRegion", c.region}, {"SourceImageId", source}, {"Name", c.ami_name}};
      if (!c.ami_description.empty()) p.emplace_back("Description", c.ami_description);
      auto kms = c.region_kms_key_ids.find(region);
      if (c.encrypt_boot.value_or(false) || kms != c.region_kms_key_ids.end()) {
        p.emplace_back("Encrypted", "true");
        // An empty key in region_kms_key_ids is the region's default EBS key.
        if (kms != c.region_kms_key_ids.end() && !kms->second.empty()) p.emplace_back("KmsKeyId", kms->second);
      }
      p.emplace_back("ClientToken", "imgbake-" + util::uuid_v4());  // retries get the same copy, not a second
      st.message("copying " + source + " to " + region);
      XmlNode doc = r_.ec2(st, region).call("CopyImage", p);
      r_.amis[region] = doc.at("imageId");
      targets.push_back(region);
    }
    for (const auto& region : targets) {
      wait_available(r_, st, region, r_.amis[region], &r_.snapshots[region]);
      st.message("AMI " + r_.amis[region] + " is available in " + region);
    }
  }
  void cleanup(State& st) noexcept override {
    for (const auto& region : regions_of(r_))
      if (region != r_.cfg.region) CreateImageStep::remove_unfinished(r_, st, region);
  }

 private:
  EbsRun& r_;
};

class ImageAttributesStep : public Step {
 public:
  explicit ImageAttributesStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "AMI tags and permissions"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-image-attributes"},     {"tags", r_.cfg.tags},
            {"snapshot_tags", r_.cfg.snapshot_tags}, {"ami_users", r_.cfg.ami_users},
            {"ami_groups", r_.cfg.ami_groups},       {"snapshot_users", r_.cfg.snapshot_users}};
  }
  void run(State& st) override {
    const EbsConfig& c = r_.cfg;
    for (const auto& [region, ami] : r_.amis) {
      Ec2Client& ec2 = r_.ec2(st, region);
      if (!c.tags.empty()) {
        Params p = {{"ResourceId.1", ami}};
        add_tags(p, "", c.tags, st);
        fix_tag_prefix(p);
        ec2.call("CreateTags", p);
      }
      if (!c.snapshot_tags.empty() && !r_.snapshots[region].empty()) {
        Params p;
        int i = 1;
        for (const auto& s : r_.snapshots[region]) p.emplace_back("ResourceId." + std::to_string(i++), s);
        add_tags(p, "", c.snapshot_tags, st);
        fix_tag_prefix(p);
        ec2.call("CreateTags", p);
      }
      if (!c.ami_users.empty() || !c.ami_groups.empty()) {
        Params p = {{"ImageId", ami}};
        int i = 1;
        for (const auto& u : c.ami_users) p.emplace_back("LaunchPermission.Add." + std::to_string(i++) + ".UserId", u);
        for (const auto& g : c.ami_groups) p.emplace_back("LaunchPermission.Add." + std::to_string(i++) + ".Group", g);
        st.message("granting launch permission on " + ami + " in " + region);
        ec2.call("ModifyImageAttribute", p);
      }
      if (!c.snapshot_users.empty() || !c.snapshot_groups.empty())
        for (const auto& s : r_.snapshots[region]) {
          Params p = {{"SnapshotId", s}, {"Attribute", "createVolumePermission"}, {"OperationType", "add"}};
          int i = 1;
          for (const auto& u : c.snapshot_users) p.emplace_back("UserId." + std::to_string(i++), u);
          i = 1;
          for (const auto& g : c.snapshot_groups) p.emplace_back("UserGroup." + std::to_string(i++), g);
          ec2.call("ModifySnapshotAttribute", p);
        }
    }
  }

 private:
  // add_tags writes ".Tag.N.Key" under a prefix; CreateTags wants "Tag.N.Key".
  static void fix_tag_prefix(Params& p) {
    for (auto& [k, v] : p)
      if (k.rfind(".Tag.", 0) == 0) k = k.substr(1);
  }
  EbsRun& r_;
};

class ArtifactStep : public Step {
 public:
  explicit ArtifactStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "artifact"; }
  nlohmann::json key_material(const State&) const override { return {{"step", "amazon-artifact"}}; }
  bool silent() const override { return true; }
  void run(State& st) override {
    if (r_.amis.empty()) {
      r_.completed = true;
      st.message("skip_create_ami: no AMI was made");
      return;
    }
    auto a = std::make_shared<Artifact>();
    a->builder_type = "amazon-ebs";
    std::vector<std::string> ids, snaps;
    nlohmann::json regions = nlohmann::json::object();
    for (const auto& [region, ami] : r_.amis) {
      ids.push_back(region + ":" + ami);
      regions[region] = {{"ami", ami}, {"snapshots", r_.snapshots[region]}};
      for (const auto& s : r_.snapshots[region]) snaps.push_back(region + ":" + s);
    }
    a->id = util::join(ids, ",");
    a->metadata["regions"] = regions;
    a->metadata["ami_name"] = r_.cfg.ami_name;
    a->metadata["source_ami"] = r_.source_ami;
    a->metadata["instance_type"] = r_.cfg.instance_type;
    // The provenance names what the image was made from and on: the source AMI (by its ARN, the
    // one name EC2 gives an AMI across accounts) and the instance type.
    a->metadata["provenance_dependencies"] = nlohmann::json::array(
        {{{"name", "source_ami"},
          {"uri", "arn:aws:ec2:" + r_.cfg.region + "::image/" + r_.source_ami},
          {"annotations", {{"name", r_.source_ami_name}, {"owner", r_.source_ami_owner}, {"region", r_.cfg.region}}}}});
    a->metadata["provenance_parameters"] = {
        {"instance_type", r_.cfg.instance_type}, {"region", r_.cfg.region}, {"ami_regions", r_.cfg.ami_regions}};
    // What the store's image records (its config's labels), so promote/history/verify name the AMIs.
    a->metadata["image_labels"] = {{"io.imgbake.amazon.amis", a->id},
                                   {"io.imgbake.amazon.snapshots", util::join(snaps, ",")},
                                   {"io.imgbake.amazon.ami_name", r_.cfg.ami_name},
                                   {"io.imgbake.amazon.source_ami", r_.cfg.region + ":" + r_.source_ami},
                                   {"io.imgbake.amazon.instance_type", r_.cfg.instance_type}};
    // The image's one file: the AMIs, as JSON (the store keeps files; an AMI lives in EC2).
    // Beside the work directory, which the cleanups remove before the store reads the file.
    auto dir = process_temp_dir() / ("amazon-ebs-artifact-" + st.build.run_uuid.substr(0, 8));
    std::filesystem::create_directories(dir);
    auto path = dir / "amis.json";
    {
      std::ofstream out(path);
      out << nlohmann::json({{"builder", "amazon-ebs"},
                             {"ami_name", r_.cfg.ami_name},
                             {"source_ami", r_.source_ami},
                             {"instance_type", r_.cfg.instance_type},
                             {"regions", regions}})
                 .dump(2)
          << "\n";
      out.close();
      if (!out) throw BuildError("cannot write " + path.string());
    }
    a->files = describe_files({path.string()});
    for (auto& f : a->files) f.media_type = "application/vnd.imgbake.amazon.amis.v1+json";
    st.artifact = a;
    // Only now do the AMIs stay: a failure above still lets the cleanups remove them.
    r_.completed = true;
    st.message("AMIs: " + a->id);
  }

 private:
  EbsRun& r_;
};

}  // namespace

std::unique_ptr<Step> make_ami_name_check_step(EbsRun& r) { return std::make_unique<AmiNameCheckStep>(r); }
std::unique_ptr<Step> make_deregister_step(EbsRun& r) { return std::make_unique<DeregisterStep>(r); }
std::unique_ptr<Step> make_create_image_step(EbsRun& r) { return std::make_unique<CreateImageStep>(r); }
std::unique_ptr<Step> make_encrypt_image_step(EbsRun& r) { return std::make_unique<EncryptImageStep>(r); }
std::unique_ptr<Step> make_copy_images_step(EbsRun& r) { return std::make_unique<CopyImagesStep>(r); }
std::unique_ptr<Step> make_image_attributes_step(EbsRun& r) { return std::make_unique<ImageAttributesStep>(r); }
std::unique_ptr<Step> make_artifact_step(EbsRun& r) { return std::make_unique<ArtifactStep>(r); }

StepList make_steps(EbsRun& r, StepList provision) {
  const EbsConfig& c = r.cfg;
  StepList s;
  s.push_back(make_credentials_step(r));
  s.push_back(make_source_ami_step(r));
  s.push_back(make_ami_name_check_step(r));
  s.push_back(make_key_pair_step(r));
  if (c.security_group_ids.empty()) s.push_back(make_security_group_step(r));
  s.push_back(make_run_instance_step(r));
  if (c.communicator == "ssh") s.push_back(make_connect_step(r));
  for (auto& p : provision) s.push_back(std::move(p));
  s.push_back(make_stop_instance_step(r));
  if (!c.skip_create_ami) {
    if (c.force_deregister) s.push_back(make_deregister_step(r));
    s.push_back(make_create_image_step(r));
    if (c.encrypt_boot.value_or(false)) s.push_back(make_encrypt_image_step(r));
    if (!c.ami_regions.empty()) s.push_back(make_copy_images_step(r));
    s.push_back(make_image_attributes_step(r));
  }
  s.push_back(make_artifact_step(r));
  return s;
}

}  // namespace imgbake::amazon
