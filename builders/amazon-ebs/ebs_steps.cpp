// The amazon-ebs builder's steps up to a running, reachable instance: credentials, the source
// AMI, the key pair, the security group, the instance, SSH; and stopping it afterwards.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <thread>

#include "credentials.h"
#include "ebs_run.h"
#include "ebs_steps_internal.h"
#include "imgbake/error.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace fs = std::filesystem;

namespace imgbake::amazon {

using std::chrono::milliseconds;

namespace {

// Retries and the like as the build's messages.
std::function<void(std::string_view)> message_sink(State& st) {
  Ui& ui = st.ui;
  std::string build = st.build.name;
  return [&ui, build](std::string_view line) { ui.message(build, std::string(line)); };
}

std::unique_ptr<Ec2Client> make_client(const EbsRun& r, State& st, const std::string& region,
                                       const CancelToken& cancel) {
  ClientOptions o;
  o.region = region;
  o.endpoint = r.cfg.custom_endpoint_ec2;
  o.tls_verify = !r.cfg.insecure_skip_tls_verify;
  o.max_retries = static_cast<int>(r.cfg.max_retries);
  o.log = message_sink(st);
  return std::make_unique<Ec2Client>(r.credentials, o, cancel);
}

}  // namespace

Ec2Client& EbsRun::ec2_cleanup(State& st, const std::string& region) {
  auto& c = cleanup_clients[region];
  if (!c) c = make_client(*this, st, region, cleanup_token);
  return *c;
}

Ec2Client& EbsRun::ec2(State& st, const std::string& region) {
  auto& c = clients[region];
  if (!c) c = make_client(*this, st, region, st.cancel);
  return *c;
}

void EbsRun::wait_until(const CancelToken& cancel, const std::string& what, const std::function<bool()>& check) const {
  milliseconds delay(250);
  milliseconds cap(cfg.poll_delay_seconds * 1000);
  for (int64_t attempt = 1;; ++attempt) {
    if (check()) return;
    if (attempt >= cfg.poll_max_attempts)
      throw BuildError("gave up waiting for " + what + " after " + std::to_string(attempt) +
                       " attempts (aws_polling: delay_seconds " + std::to_string(cfg.poll_delay_seconds) +
                       ", max_attempts " + std::to_string(cfg.poll_max_attempts) + ")");
    cancel.sleep_for(std::min(delay, cap));
    delay *= 2;
  }
}

void add_tags(Params& p, const std::string& prefix, const std::map<std::string, std::string>& tags, State& st) {
  int i = 1;
  for (const auto& [k, v] : tags) {
    p.emplace_back(prefix + ".Tag." + std::to_string(i) + ".Key", st.render(k));
    p.emplace_back(prefix + ".Tag." + std::to_string(i) + ".Value", st.render(v));
    ++i;
  }
}

void add_block_devices(Params& p, const std::string& prefix, const std::vector<BlockDevice>& devices) {
  int i = 1;
  for (const auto& b : devices) {
    std::string k = prefix + "." + std::to_string(i++) + ".";
    p.emplace_back(k + "DeviceName", b.device_name);
    if (b.no_device) {
      p.emplace_back(k + "NoDevice", "");
      continue;
    }
    if (!b.virtual_name.empty()) {
      p.emplace_back(k + "VirtualName", b.virtual_name);
      continue;
    }
    if (!b.snapshot_id.empty()) p.emplace_back(k + "Ebs.SnapshotId", b.snapshot_id);
    if (b.volume_size) p.emplace_back(k + "Ebs.VolumeSize", std::to_string(b.volume_size));
    if (!b.volume_type.empty()) p.emplace_back(k + "Ebs.VolumeType", b.volume_type);
    if (b.iops) p.emplace_back(k + "Ebs.Iops", std::to_string(b.iops));
    if (b.throughput) p.emplace_back(k + "Ebs.Throughput", std::to_string(b.throughput));
    p.emplace_back(k + "Ebs.DeleteOnTermination", b.delete_on_termination.value_or(true) ? "true" : "false");
    if (b.encrypted) p.emplace_back(k + "Ebs.Encrypted", *b.encrypted ? "true" : "false");
    if (!b.kms_key_id.empty()) p.emplace_back(k + "Ebs.KmsKeyId", b.kms_key_id);
  }
}

std::string instance_state(EbsRun& r, State& st, const std::string& region, const std::string& id, bool cleanup) {
  XmlNode doc =
      (cleanup ? r.ec2_cleanup(st, region) : r.ec2(st, region)).call("DescribeInstances", {{"InstanceId.1", id}});
  for (const XmlNode* res : doc.items("reservationSet"))
    for (const XmlNode* inst : res->items("instancesSet"))
      if (inst->at("instanceId") == id) return inst->at("instanceState/name");
  return "";
}

namespace {

void remember_secrets(State& st, const Credentials& c) {
  st.ui.add_secret(c.secret_key);
  if (!c.token.empty()) st.ui.add_secret(c.token);
}

class CredentialsStep : public Step {
 public:
  explicit CredentialsStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "AWS credentials"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-credentials"},
            {"region", r_.cfg.region},
            {"endpoint", r_.cfg.custom_endpoint_ec2},
            {"role_arn", r_.cfg.assume_role ? r_.cfg.assume_role->role_arn : ""}};
  }
  void run(State& st) override {
    CredentialSources s{r_.cfg.access_key,
                        r_.cfg.secret_key,
                        r_.cfg.token,
                        r_.cfg.profile,
                        r_.cfg.shared_credentials_file,
                        r_.cfg.skip_metadata_api_check};
    // Resolved now, and again by whichever client needs them after they expire (a role session
    // lasts an hour by default; CopyImage waits alone can take longer).
    EbsConfig& cfg = r_.cfg;
    auto resolve = [&st, &cfg, s, log = message_sink(st)](const CancelToken& cancel) {
      Credentials c = resolve_credentials(s, cancel);
      // Whatever was found is masked from here on, even where a script echoes it by accident.
      remember_secrets(st, c);
      if (cfg.assume_role) {
        StsOptions o;
        o.region = cfg.region;
        o.tls_verify = !cfg.insecure_skip_tls_verify;
        o.max_retries = static_cast<int>(cfg.max_retries);
        o.log = log;
        log("assuming role " + cfg.assume_role->role_arn + " with credentials from " + c.source);
        c = assume_role(c, *cfg.assume_role, o, cancel);
        remember_secrets(st, c);
      }
      return c;
    };
    r_.credentials = std::make_shared<CredentialProvider>(resolve, message_sink(st));
    Credentials first = r_.credentials->current(st.cancel);
    r_.work_dir = process_temp_dir() / ("amazon-ebs-" + st.build.run_uuid.substr(0, 8));
    fs::create_directories(r_.work_dir);
    fs::permissions(r_.work_dir, fs::perms::owner_all);
    Ec2Client& c = r_.ec2(st);
    st.message("EC2 in " + r_.cfg.region + " at " + c.endpoint() + ", credentials from " + first.source +
               " (access key " + first.access_key.substr(0, 4) + "…" +
               (first.expires ? ", valid until " + util::format_rfc3339(*first.expires) : std::string()) + ")");
  }
  void cleanup(State&) noexcept override {
    std::error_code ec;
    if (!r_.work_dir.empty()) fs::remove_all(r_.work_dir, ec);
  }

 private:
  EbsRun& r_;
};

class SourceAmiStep : public Step {
 public:
  explicit SourceAmiStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "source AMI"; }
  nlohmann::json key_material(const State&) const override {
    nlohmann::json j = {{"step", "amazon-source-ami"}, {"source_ami", r_.cfg.source_ami}};
    if (r_.cfg.source_ami_filter)
      j["filter"] = {{"filters", r_.cfg.source_ami_filter->filters},
                     {"owners", r_.cfg.source_ami_filter->owners},
                     {"most_recent", r_.cfg.source_ami_filter->most_recent}};
    return j;
  }
  void run(State& st) override {
    Params p;
    if (!r_.cfg.source_ami.empty()) p.emplace_back("ImageId.1", r_.cfg.source_ami);
    if (r_.cfg.source_ami_filter) {
      int i = 1;
      for (const auto& [k, v] : r_.cfg.source_ami_filter->filters) {
        p.emplace_back("Filter." + std::to_string(i) + ".Name", k);
        p.emplace_back("Filter." + std::to_string(i) + ".Value.1", v);
        ++i;
      }
      i = 1;
      for (const auto& o : r_.cfg.source_ami_filter->owners) p.emplace_back("Owner." + std::to_string(i++), o);
    }
    XmlNode doc = r_.ec2(st).call("DescribeImages", p);
    auto images = doc.items("imagesSet");
    if (images.empty())
      throw BuildError(r_.cfg.source_ami_filter ? "no AMI matches source_ami_filter in " + r_.cfg.region
                                                : "source AMI " + r_.cfg.source_ami + " not found in " + r_.cfg.region);
    if (images.size() > 1 && !(r_.cfg.source_ami_filter && r_.cfg.source_ami_filter->most_recent))
      throw BuildError(std::to_string(images.size()) +
                       " AMIs match source_ami_filter: narrow the filters or set \"most_recent\": true");
    const XmlNode* pick = *std::max_element(images.begin(), images.end(), [](const XmlNode* a, const XmlNode* b) {
      return a->at("creationDate") < b->at("creationDate");
    });
    r_.source_ami = pick->at("imageId");
    r_.source_ami_name = pick->at("name");
    r_.source_ami_owner = pick->at("imageOwnerId");
    // CreateImage keeps the instance's virtualization type: ami_virtualization_type cannot change it
    // (Packer's amazon-ebs ignores it; its ebssurrogate and instance builders register with it).
    if (!r_.cfg.ami_virtualization_type.empty() && r_.cfg.ami_virtualization_type != pick->at("virtualizationType"))
      st.ui.warn(st.build.name, "ami_virtualization_type is " + r_.cfg.ami_virtualization_type + " but source AMI " +
                                    r_.source_ami + " is " + pick->at("virtualizationType") + ": the AMI will be " +
                                    pick->at("virtualizationType") +
                                    " (amazon-ebs copies the instance; it cannot change the virtualization type)");
    if (pick->at("imageState") != "available")
      throw BuildError("source AMI " + r_.source_ami + " is " + pick->at("imageState") + ", not available");
    st.data["SourceAMI"] = r_.source_ami;
    st.data["SourceAMIName"] = r_.source_ami_name;
    st.message("source AMI: " + r_.source_ami + " (" + r_.source_ami_name + ")");
  }

 private:
  EbsRun& r_;
};

class KeyPairStep : public Step {
 public:
  explicit KeyPairStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "key pair"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-key-pair"}, {"type", r_.cfg.temporary_key_pair_type}, {"name", r_.cfg.ssh_keypair_name}};
  }
  void run(State& st) override {
    if (!r_.cfg.ssh.private_key_file.empty() || r_.cfg.ssh.agent_auth || r_.cfg.communicator == "none") {
      r_.key_name = r_.cfg.ssh_keypair_name;
      r_.key_file = r_.cfg.ssh.private_key_file;
      st.message(r_.key_name.empty() ? "using ssh_private_key_file (no key pair for the instance)"
                                     : "using key pair " + r_.key_name);
      return;
    }
    r_.key_name = r_.cfg.temporary_key_pair_name.empty() ? "packer_" + util::uuid_v4() : r_.cfg.temporary_key_pair_name;
    st.message("creating the temporary key pair " + r_.key_name + " (" + r_.cfg.temporary_key_pair_type + ")");
    Params p = {{"KeyName", r_.key_name}, {"KeyType", r_.cfg.temporary_key_pair_type}};
    XmlNode doc;
    try {
      doc = r_.ec2(st).call("CreateKeyPair", p);
    } catch (const Ec2Error& e) {
      // CreateKeyPair has no ClientToken: a retry after an answer that was lost finds the pair the
      // first try made, whose private key nobody has. A generated name can only be ours: replace it.
      if (e.code() != "InvalidKeyPair.Duplicate" || !r_.cfg.temporary_key_pair_name.empty()) throw;
      st.message("key pair " + r_.key_name + " exists (an earlier try whose answer was lost): making it again");
      r_.ec2(st).call("DeleteKeyPair", {{"KeyName", r_.key_name}});
      doc = r_.ec2(st).call("CreateKeyPair", p);
    }
    r_.temporary_key = true;
    r_.key_file = (r_.work_dir / "temporary-key.pem").string();
    {
      std::ofstream out(r_.key_file, std::ios::binary | std::ios::trunc);
      fs::permissions(r_.key_file, fs::perms::owner_read | fs::perms::owner_write);
      std::string pem = doc.at("keyMaterial");
      out << pem;
      if (!pem.empty() && pem.back() != '\n') out << '\n';
    }
    st.data["SSHPrivateKeyFile"] = r_.key_file;
  }
  void cleanup(State& st) noexcept override {
    if (!r_.temporary_key) return;
    try {
      st.message("deleting the temporary key pair " + r_.key_name);
      r_.ec2_cleanup(st).call("DeleteKeyPair", {{"KeyName", r_.key_name}});
      r_.temporary_key = false;
    } catch (const std::exception& e) {
      st.ui.error(st.build.name, "cannot delete the temporary key pair " + r_.key_name + ": " + e.what() +
                                     " (delete it by hand: aws ec2 delete-key-pair --key-name " + r_.key_name + ")");
    }
    std::error_code ec;
    fs::remove(r_.key_file, ec);
  }

 private:
  EbsRun& r_;
};

class SecurityGroupStep : public Step {
 public:
  explicit SecurityGroupStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "security group"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-security-group"}, {"cidrs", r_.cfg.temporary_security_group_source_cidrs}};
  }
  void run(State& st) override {
    std::string name = "packer_" + util::uuid_v4();
    st.message("creating the temporary security group " + name + " (SSH port " + std::to_string(r_.cfg.ssh_port) +
               " from " + util::join(r_.cfg.temporary_security_group_source_cidrs, ", ") + ")");
    Params p = {{"GroupName", name}, {"GroupDescription", "Temporary group for Packer"}};
    if (!r_.cfg.vpc_id.empty()) p.emplace_back("VpcId", r_.cfg.vpc_id);
    try {
      r_.group_id = r_.ec2(st).call("CreateSecurityGroup", p).at("groupId");
    } catch (const Ec2Error& e) {
      // No ClientToken here either: a retry after a lost answer finds the group the first try made
      // under this build's own generated name. Adopt it, so that the cleanup deletes it.
      if (e.code() != "InvalidGroup.Duplicate") throw;
      Params q = {{"Filter.1.Name", "group-name"}, {"Filter.1.Value.1", name}};
      if (!r_.cfg.vpc_id.empty()) q.insert(q.end(), {{"Filter.2.Name", "vpc-id"}, {"Filter.2.Value.1", r_.cfg.vpc_id}});
      auto groups = r_.ec2(st).call("DescribeSecurityGroups", q);
      for (const XmlNode* g : groups.items("securityGroupInfo")) r_.group_id = g->at("groupId");
      if (r_.group_id.empty()) throw;
      st.message("security group " + name + " exists (an earlier try whose answer was lost): using " + r_.group_id);
    }
    Params in = {{"GroupId", r_.group_id},
                 {"IpPermissions.1.IpProtocol", "tcp"},
                 {"IpPermissions.1.FromPort", std::to_string(r_.cfg.ssh_port)},
                 {"IpPermissions.1.ToPort", std::to_string(r_.cfg.ssh_port)}};
    int i = 1;
    for (const auto& cidr : r_.cfg.temporary_security_group_source_cidrs)
      in.emplace_back("IpPermissions.1.IpRanges." + std::to_string(i++) + ".CidrIp", cidr);
    r_.ec2(st).call("AuthorizeSecurityGroupIngress", in);
  }
  void cleanup(State& st) noexcept override {
    if (r_.group_id.empty()) return;
    st.message("deleting the temporary security group " + r_.group_id);
    // The group is in use until the instance is gone (DependencyViolation): wait for that.
    milliseconds delay(250);
    for (int attempt = 1;; ++attempt) {
      try {
        r_.ec2_cleanup(st).call("DeleteSecurityGroup", {{"GroupId", r_.group_id}});
        r_.group_id.clear();
        return;
      } catch (const Ec2Error& e) {
        if (e.code() != "DependencyViolation" || attempt >= 30) {
          st.ui.error(st.build.name, "cannot delete the temporary security group " + r_.group_id + ": " + e.what());
          return;
        }
      } catch (const std::exception& e) {
        st.ui.error(st.build.name, "cannot delete the temporary security group " + r_.group_id + ": " + e.what());
        return;
      }
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, milliseconds(5000));
    }
  }

 private:
  EbsRun& r_;
};

std::string base64(std::string_view in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += t[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += t[v >> 18];
    out += t[(v >> 12) & 63];
    out += i + 1 < in.size() ? t[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

class RunInstanceStep : public Step {
 public:
  explicit RunInstanceStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "run instance"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-run-instance"},
            {"instance_type", r_.cfg.instance_type},
            {"subnet_id", r_.cfg.subnet_id},
            {"user_data_sha256", util::sha256_hex(r_.cfg.user_data)},
            {"run_tags", r_.cfg.run_tags}};
  }
  void run(State& st) override {
    const EbsConfig& c = r_.cfg;
    Params p = {{"ImageId", r_.source_ami}, {"InstanceType", c.instance_type}, {"MinCount", "1"}, {"MaxCount", "1"}};
    if (!r_.key_name.empty()) p.emplace_back("KeyName", r_.key_name);
    std::vector<std::string> groups = c.security_group_ids;
    if (!r_.group_id.empty()) groups.push_back(r_.group_id);
    std::string sg_prefix = c.associate_public_ip_address ? "NetworkInterface.1.SecurityGroupId." : "SecurityGroupId.";
    for (size_t i = 0; i < groups.size(); ++i) p.emplace_back(sg_prefix + std::to_string(i + 1), groups[i]);
    if (c.associate_public_ip_address) {
      p.emplace_back("NetworkInterface.1.DeviceIndex", "0");
      p.emplace_back("NetworkInterface.1.AssociatePublicIpAddress", *c.associate_public_ip_address ? "true" : "false");
      p.emplace_back("NetworkInterface.1.DeleteOnTermination", "true");
      if (!c.subnet_id.empty()) p.emplace_back("NetworkInterface.1.SubnetId", c.subnet_id);
    } else if (!c.subnet_id.empty()) {
      p.emplace_back("SubnetId", c.subnet_id);
    }
    std::string user_data = c.user_data;
    if (!c.user_data_file.empty()) {
      std::ifstream in(c.user_data_file, std::ios::binary);
      user_data.assign(std::istreambuf_iterator<char>(in), {});
    }
    if (!user_data.empty()) p.emplace_back("UserData", base64(user_data));
    if (!c.iam_instance_profile.empty()) p.emplace_back("IamInstanceProfile.Name", c.iam_instance_profile);
    if (!c.availability_zone.empty()) p.emplace_back("Placement.AvailabilityZone", c.availability_zone);
    if (c.ebs_optimized) p.emplace_back("EbsOptimized", "true");
    p.emplace_back("InstanceInitiatedShutdownBehavior", c.shutdown_behavior);
    if (!c.metadata_http_endpoint.empty()) {
      p.emplace_back("MetadataOptions.HttpEndpoint", c.metadata_http_endpoint);
      p.emplace_back("MetadataOptions.HttpTokens", c.metadata_http_tokens);
      p.emplace_back("MetadataOptions.HttpPutResponseHopLimit", std::to_string(c.metadata_hop_limit));
    }
    add_block_devices(p, "BlockDeviceMapping", c.launch_block_device_mappings);
    int spec = 1;
    std::map<std::string, std::string> run_tags = c.run_tags;
    if (run_tags.find("Name") == run_tags.end()) run_tags["Name"] = "Packer Builder";
    p.emplace_back("TagSpecification.1.ResourceType", "instance");
    add_tags(p, "TagSpecification.1", run_tags, st);
    if (!c.run_volume_tags.empty()) {
      spec = 2;
      p.emplace_back("TagSpecification.2.ResourceType", "volume");
      add_tags(p, "TagSpecification.2", c.run_volume_tags, st);
    }
    (void)spec;
    // The same token on every retry of this launch: a retry after a lost answer gets the instance
    // the first try launched, never a second one nobody would terminate.
    p.emplace_back("ClientToken", "imgbake-" + util::uuid_v4());
    st.message("launching a " + c.instance_type + " instance from " + r_.source_ami);
    XmlNode doc = r_.ec2(st).call("RunInstances", p);
    auto instances = doc.items("instancesSet");
    if (instances.empty()) throw BuildError("RunInstances answered without an instance");
    r_.instance_id = instances.front()->at("instanceId");
    st.data["InstanceId"] = r_.instance_id;
    st.message("instance " + r_.instance_id + ": waiting for it to run");
    const XmlNode* running = nullptr;
    XmlNode last;
    r_.wait_until(st, "instance " + r_.instance_id + " to be running", [&] {
      last = r_.ec2(st).call("DescribeInstances", {{"InstanceId.1", r_.instance_id}});
      for (const XmlNode* res : last.items("reservationSet"))
        for (const XmlNode* inst : res->items("instancesSet")) {
          std::string state = inst->at("instanceState/name");
          if (state == "running") {
            running = inst;
            return true;
          }
          if (state != "pending")
            throw BuildError("instance " + r_.instance_id + " is " + state + " instead of running" +
                             (inst->at("stateReason/message").empty() ? "" : ": " + inst->at("stateReason/message")));
        }
      return false;
    });
    std::string pub_ip = running->at("ipAddress"), priv_ip = running->at("privateIpAddress");
    std::string pub_dns = running->at("dnsName"), priv_dns = running->at("privateDnsName");
    const std::string& how = c.ssh_interface;
    r_.ssh_address = !c.ssh_host.empty()    ? c.ssh_host
                     : how == "public_ip"   ? pub_ip
                     : how == "private_ip"  ? priv_ip
                     : how == "public_dns"  ? pub_dns
                     : how == "private_dns" ? priv_dns
                     : !pub_ip.empty()      ? pub_ip
                                            : priv_ip;
    if (r_.ssh_address.empty())
      throw BuildError("instance " + r_.instance_id + " has no " + (how.empty() ? "IP address" : how) +
                       " to connect to (set ssh_interface or ssh_host)");
    st.data["Host"] = r_.ssh_address;
    st.message("instance " + r_.instance_id + " is running at " + r_.ssh_address);
  }
  void cleanup(State& st) noexcept override {
    if (r_.instance_id.empty()) return;
    try {
      st.message("terminating instance " + r_.instance_id);
      r_.ec2_cleanup(st).call("TerminateInstances", {{"InstanceId.1", r_.instance_id}});
      r_.wait_until(r_.cleanup_token, "instance " + r_.instance_id + " to terminate", [&] {
        std::string s = instance_state(r_, st, r_.cfg.region, r_.instance_id, true);
        return s == "terminated" || s.empty();
      });
      st.message("instance " + r_.instance_id + " terminated");
      r_.instance_id.clear();
    } catch (const std::exception& e) {
      st.ui.error(st.build.name, "cannot terminate instance " + r_.instance_id + ": " + e.what() +
                                     " (terminate it by hand: aws ec2 terminate-instances --instance-ids " +
                                     r_.instance_id + ")");
    }
  }

 private:
  EbsRun& r_;
};

class ConnectStep : public Step {
 public:
  explicit ConnectStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "wait for SSH"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-ssh"}, {"username", r_.cfg.ssh.username}, {"port", r_.cfg.ssh_port}};
  }
  void run(State& st) override {
    if (r_.cfg.pause_before_connecting.count() > 0) st.cancel.sleep_for(r_.cfg.pause_before_connecting);
    SshConfig sc = r_.cfg.ssh;
    sc.host = r_.ssh_address;
    sc.port = static_cast<int>(r_.cfg.ssh_port);
    sc.private_key_file = r_.key_file;
    st.message("waiting for SSH on " + sc.host + ":" + std::to_string(sc.port) + " (ssh_timeout " +
               util::format_duration(sc.timeout) + ")");
    auto t0 = std::chrono::steady_clock::now();
    r_.comm = SshCommunicator::connect(sc, st.cancel, {});
    r_.comm->log = message_sink(st);
    st.communicator = r_.comm.get();
    st.message("connected to SSH as " + sc.username + " after " +
               util::format_duration(std::chrono::steady_clock::now() - t0));
  }
  void cleanup(State& st) noexcept override {
    st.communicator = nullptr;
    r_.comm.reset();
  }

 private:
  EbsRun& r_;
};

class StopInstanceStep : public Step {
 public:
  explicit StopInstanceStep(EbsRun& r) : r_(r) {}
  std::string name() const override { return "stop instance"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "amazon-stop"}, {"disable_stop_instance", r_.cfg.disable_stop_instance}};
  }
  void run(State& st) override {
    st.communicator = nullptr;
    r_.comm.reset();
    if (r_.cfg.disable_stop_instance) {
      st.message("disable_stop_instance: waiting for the instance to stop itself");
    } else {
      st.message("stopping instance " + r_.instance_id);
      r_.ec2(st).call("StopInstances", {{"InstanceId.1", r_.instance_id}});
    }
    r_.wait_until(st, "instance " + r_.instance_id + " to stop", [&] {
      std::string s = instance_state(r_, st, r_.cfg.region, r_.instance_id);
      if (s == "terminated" || s == "shutting-down")
        throw BuildError("instance " + r_.instance_id + " is " + s +
                         " (shutdown_behavior terminate?): no AMI can be made");
      return s == "stopped";
    });
    if (r_.cfg.ena_support.value_or(false))
      r_.ec2(st).call("ModifyInstanceAttribute", {{"InstanceId", r_.instance_id}, {"EnaSupport.Value", "true"}});
    if (r_.cfg.sriov_support)
      r_.ec2(st).call("ModifyInstanceAttribute", {{"InstanceId", r_.instance_id}, {"SriovNetSupport.Value", "simple"}});
    st.message("instance " + r_.instance_id + " stopped");
  }

 private:
  EbsRun& r_;
};

}  // namespace

std::unique_ptr<Step> make_credentials_step(EbsRun& r) { return std::make_unique<CredentialsStep>(r); }
std::unique_ptr<Step> make_source_ami_step(EbsRun& r) { return std::make_unique<SourceAmiStep>(r); }
std::unique_ptr<Step> make_key_pair_step(EbsRun& r) { return std::make_unique<KeyPairStep>(r); }
std::unique_ptr<Step> make_security_group_step(EbsRun& r) { return std::make_unique<SecurityGroupStep>(r); }
std::unique_ptr<Step> make_run_instance_step(EbsRun& r) { return std::make_unique<RunInstanceStep>(r); }
std::unique_ptr<Step> make_connect_step(EbsRun& r) { return std::make_unique<ConnectStep>(r); }
std::unique_ptr<Step> make_stop_instance_step(EbsRun& r) { return std::make_unique<StopInstanceStep>(r); }

}  // namespace imgbake::amazon
