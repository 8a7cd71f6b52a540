#include "ebs_config.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "credentials.h"

namespace imgbake::amazon {
namespace {

std::vector<BlockDevice> read_block_devices(ConfigReader& cfg, const std::string& key) {
  std::vector<BlockDevice> out;
  const json::Value* v = cfg.raw(key);
  if (!v || v->kind == json::Value::Kind::Null) return out;
  // One HCL2 block arrives as an object, repeated blocks (and JSON) as a list.
  std::vector<const json::Value*> items;
  if (v->kind == json::Value::Kind::Object) {
    items.push_back(v);
  } else if (v->kind == json::Value::Kind::Array) {
    for (const auto& item : v->items) items.push_back(&item);
  } else {
    cfg.error(key, "must be a list of objects with device_name, volume_size, …");
    return out;
  }
  for (const json::Value* entry : items) {
    const json::Value& item = *entry;
    if (item.kind != json::Value::Kind::Object) {
      cfg.error(key, "each entry must be an object");
      continue;
    }
    Diagnostics& d = cfg.diagnostics();
    ConfigReader r(item, cfg.file(), cfg.label() + " " + key, d);
    BlockDevice b;
    b.device_name = r.string("device_name");
    b.virtual_name = r.string("virtual_name");
    b.snapshot_id = r.string("snapshot_id");
    b.volume_type = r.string("volume_type");
    b.kms_key_id = r.string("kms_key_id");
    b.volume_size = r.integer("volume_size", 0);
    b.iops = r.integer("iops", 0);
    b.throughput = r.integer("throughput", 0);
    b.delete_on_termination = r.optional_boolean("delete_on_termination");
    b.encrypted = r.optional_boolean("encrypted");
    b.no_device = r.boolean("no_device", false);
    if (b.device_name.empty()) r.require("device_name");
    r.finish();
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace

void read_config(ConfigReader& cfg, EbsConfig& c) {
  // Access
  c.access_key = cfg.string("access_key");
  c.secret_key = cfg.string("secret_key");
  c.token = cfg.string("token");
  c.profile = cfg.string("profile");
  c.shared_credentials_file = cfg.string("shared_credentials_file");
  c.skip_metadata_api_check = cfg.boolean("skip_metadata_api_check", false);
  c.region = cfg.string("region");
  if (c.region.empty()) c.region = default_region(c.profile);
  if (c.region.empty()) cfg.error("'region' is required (or AWS_REGION, AWS_DEFAULT_REGION, a profile's region)");
  c.custom_endpoint_ec2 = cfg.string("custom_endpoint_ec2");
  if (const char* e = std::getenv("AWS_ENDPOINT_URL_EC2"); c.custom_endpoint_ec2.empty() && e)
    c.custom_endpoint_ec2 = e;
  c.insecure_skip_tls_verify = cfg.boolean("insecure_skip_tls_verify", false);
  c.max_retries = cfg.integer("max_retries", c.max_retries);
  if (const char* e = std::getenv("AWS_POLL_DELAY_SECONDS"); e && *e) c.poll_delay_seconds = std::atoll(e);
  if (const char* e = std::getenv("AWS_MAX_ATTEMPTS"); e && *e) c.poll_max_attempts = std::atoll(e);
  if (const json::Value* p = cfg.raw("aws_polling"); p && p->kind == json::Value::Kind::Object) {
    ConfigReader r(*p, cfg.file(), cfg.label() + " aws_polling", cfg.diagnostics());
    c.poll_delay_seconds = r.integer("delay_seconds", c.poll_delay_seconds);
    c.poll_max_attempts = r.integer("max_attempts", c.poll_max_attempts);
    r.finish();
  } else if (p && p->kind != json::Value::Kind::Null) {
    cfg.error("aws_polling", "must be an object: {\"delay_seconds\": 15, \"max_attempts\": 40}");
  }
  if (c.poll_delay_seconds < 1) cfg.error("aws_polling", "delay_seconds must be at least 1");
  if (c.poll_max_attempts < 1) cfg.error("aws_polling", "max_attempts must be at least 1");
  if (const json::Value* a = cfg.raw("assume_role"); a && a->kind == json::Value::Kind::Object) {
    ConfigReader r(*a, cfg.file(), cfg.label() + " assume_role", cfg.diagnostics());
    AssumeRoleConfig role;
    role.role_arn = r.string("role_arn");
    role.session_name = r.string("session_name");
    role.external_id = r.string("external_id");
    role.policy = r.string("policy");
    role.duration_seconds = r.integer("duration_seconds", 0);
    role.policy_arns = r.strings("policy_arns");
    role.tags = r.string_map("tags");
    role.transitive_tag_keys = r.strings("transitive_tag_keys");
    if (role.role_arn.empty()) r.require("role_arn");
    if (role.duration_seconds != 0 && (role.duration_seconds < 900 || role.duration_seconds > 43200))
      r.error("duration_seconds", "must be between 900 and 43200 (STS's limits)");
    r.finish();
    c.assume_role = role;
  } else if (a && a->kind != json::Value::Kind::Null) {
    cfg.error("assume_role", "must be an object: {\"role_arn\": \"arn:aws:iam::ACCOUNT:role/NAME\", …}");
  }
  cfg.accept({"custom_endpoint_sts", "mfa_code", "vault_aws_engine", "spot_price", "spot_instance_types",
              "spot_price_auto_product", "fleet_tags", "aws_profile"});  // refused below, not "unknown"
  if (cfg.has("custom_endpoint_sts"))
    cfg.error("custom_endpoint_sts",
              "Packer has no 'custom_endpoint_sts': set the SDKs' AWS_ENDPOINT_URL_STS in the environment instead");
  for (const char* k : {"mfa_code", "vault_aws_engine", "spot_price", "spot_instance_types", "spot_price_auto_product",
                        "fleet_tags", "aws_profile"})
    if (cfg.has(k)) cfg.error(k, std::string("'") + k + "' is not supported by imgbake yet");
  cfg.accept({"skip_region_validation", "skip_credential_validation", "decode_authorization_messages",
              "skip_profile_validation", "ami_product_codes", "enable_t2_unlimited", "placement", "tenancy"});

  // Source and run
  c.source_ami = cfg.string("source_ami");
  if (const json::Value* f = cfg.raw("source_ami_filter"); f && f->kind == json::Value::Kind::Object) {
    ConfigReader r(*f, cfg.file(), cfg.label() + " source_ami_filter", cfg.diagnostics());
    SourceAmiFilter saf;
    saf.filters = r.string_map("filters");
    saf.owners = r.strings("owners");
    saf.most_recent = r.boolean("most_recent", false);
    if (saf.owners.empty()) r.error("owners", "'owners' is required: it guards against AMIs of strangers");
    r.finish();
    c.source_ami_filter = saf;
  }
  if (c.source_ami.empty() && !c.source_ami_filter) cfg.error("'source_ami' or 'source_ami_filter' is required");
  c.instance_type = cfg.string("instance_type");
  if (c.instance_type.empty()) cfg.require("instance_type");
  c.subnet_id = cfg.string("subnet_id");
  c.vpc_id = cfg.string("vpc_id");
  c.availability_zone = cfg.string("availability_zone");
  c.iam_instance_profile = cfg.string("iam_instance_profile");
  c.security_group_ids = cfg.strings("security_group_ids");
  if (auto one = cfg.optional_string("security_group_id"); one && !one->empty()) c.security_group_ids.push_back(*one);
  if (cfg.has("temporary_security_group_source_cidrs"))
    c.temporary_security_group_source_cidrs = cfg.strings("temporary_security_group_source_cidrs");
  c.associate_public_ip_address = cfg.optional_boolean("associate_public_ip_address");
  c.user_data = cfg.string("user_data");
  c.user_data_file = cfg.string("user_data_file");
  if (!c.user_data.empty() && !c.user_data_file.empty())
    cfg.error("user_data_file", "give either user_data or user_data_file, not both");
  std::error_code ec;
  if (!c.user_data_file.empty() && !std::filesystem::is_regular_file(c.user_data_file, ec))
    cfg.error("user_data_file", "'" + c.user_data_file + "' does not exist");
  c.run_tags = cfg.string_map("run_tags");
  c.run_volume_tags = cfg.string_map("run_volume_tags");
  c.shutdown_behavior = cfg.string("shutdown_behavior", c.shutdown_behavior);
  if (c.shutdown_behavior != "stop" && c.shutdown_behavior != "terminate")
    cfg.error("shutdown_behavior", "'" + c.shutdown_behavior + "' must be stop or terminate");
  c.disable_stop_instance = cfg.boolean("disable_stop_instance", false);
  c.ebs_optimized = cfg.boolean("ebs_optimized", false);
  if (const json::Value* m = cfg.raw("metadata_options"); m && m->kind == json::Value::Kind::Object) {
    ConfigReader r(*m, cfg.file(), cfg.label() + " metadata_options", cfg.diagnostics());
    c.metadata_http_endpoint = r.string("http_endpoint", "enabled");
    c.metadata_http_tokens = r.string("http_tokens", "optional");
    c.metadata_hop_limit = r.integer("http_put_response_hop_limit", 1);
    if (c.metadata_http_endpoint != "enabled" && c.metadata_http_endpoint != "disabled")
      r.error("http_endpoint", "must be enabled or disabled");
    if (c.metadata_http_tokens != "optional" && c.metadata_http_tokens != "required")
      r.error("http_tokens", "must be optional or required");
    r.finish();
  }
  c.launch_block_device_mappings = read_block_devices(cfg, "launch_block_device_mappings");

  // The AMI
  c.ami_name = cfg.string("ami_name");
  if (c.ami_name.empty()) {
    cfg.require("ami_name");
  } else if (c.ami_name.size() < 3 || c.ami_name.size() > 128) {
    cfg.error("ami_name", "must be between 3 and 128 characters long");
  } else {
    for (char ch : c.ami_name)
      if (!std::isalnum(static_cast<unsigned char>(ch)) &&
          std::string_view("()[] ./-'@_").find(ch) == std::string::npos) {
        cfg.error("ami_name", std::string("contains '") + ch +
                                  "': AMI names hold letters, digits and ()[] ./-'@_ (see clean_resource_name)");
        break;
      }
  }
  c.ami_description = cfg.string("ami_description");
  c.ami_virtualization_type = cfg.string("ami_virtualization_type");
  if (!c.ami_virtualization_type.empty() && c.ami_virtualization_type != "hvm" &&
      c.ami_virtualization_type != "paravirtual")
    cfg.error("ami_virtualization_type", "'" + c.ami_virtualization_type + "' must be hvm or paravirtual");
  c.ami_users = cfg.strings("ami_users");
  c.ami_groups = cfg.strings("ami_groups");
  c.ami_regions = cfg.strings("ami_regions");
  c.snapshot_users = cfg.strings("snapshot_users");
  c.snapshot_groups = cfg.strings("snapshot_groups");
  c.tags = cfg.string_map("tags");
  c.snapshot_tags = cfg.string_map("snapshot_tags");
  c.region_kms_key_ids = cfg.string_map("region_kms_key_ids");
  if (!c.region_kms_key_ids.empty())
    for (const auto& region : c.ami_regions)
      if (!c.region_kms_key_ids.count(region))
        cfg.error("region_kms_key_ids", "region " + region + " is in ami_regions but not in region_kms_key_ids");
  c.ena_support = cfg.optional_boolean("ena_support");
  c.sriov_support = cfg.boolean("sriov_support", false);
  c.force_deregister = cfg.boolean("force_deregister", false);
  c.force_delete_snapshot = cfg.boolean("force_delete_snapshot", false);
  if (c.force_delete_snapshot && !c.force_deregister)
    cfg.error("force_delete_snapshot", "force_delete_snapshot needs force_deregister: true");
  c.skip_create_ami = cfg.boolean("skip_create_ami", false);
  c.encrypt_boot = cfg.optional_boolean("encrypt_boot");
  c.kms_key_id = cfg.string("kms_key_id");
  if (!c.kms_key_id.empty() && !c.encrypt_boot.value_or(false))
    cfg.error("kms_key_id", "kms_key_id needs encrypt_boot: true");
  c.ami_block_device_mappings = read_block_devices(cfg, "ami_block_device_mappings");

  // Communicator
  c.communicator = cfg.string("communicator", "ssh");
  if (c.communicator != "ssh" && c.communicator != "none")
    cfg.error("communicator", "'" + c.communicator + "' must be ssh or none (winrm is not supported yet)");
  c.ssh_host = cfg.string("ssh_host");
  c.ssh_port = cfg.integer("ssh_port", 22);
  c.ssh_interface = cfg.string("ssh_interface");
  if (!c.ssh_interface.empty() && c.ssh_interface != "public_ip" && c.ssh_interface != "private_ip" &&
      c.ssh_interface != "public_dns" && c.ssh_interface != "private_dns")
    cfg.error("ssh_interface", "'" + c.ssh_interface + "' must be public_ip, private_ip, public_dns or private_dns");
  c.ssh.username = cfg.string("ssh_username");
  c.ssh.password = cfg.string("ssh_password");
  c.ssh.private_key_file = cfg.string("ssh_private_key_file");
  c.ssh.agent_auth = cfg.boolean("ssh_agent_auth", false);
  c.ssh.pty = cfg.boolean("ssh_pty", false);
  c.ssh.handshake_attempts = static_cast<int>(cfg.integer("ssh_handshake_attempts", 10));
  c.ssh.timeout = cfg.duration("ssh_timeout").value_or(std::chrono::minutes(5));
  if (auto d = cfg.duration("ssh_keep_alive_interval")) c.ssh.keep_alive_interval = *d;
  c.ssh_keypair_name = cfg.string("ssh_keypair_name");
  c.temporary_key_pair_name = cfg.string("temporary_key_pair_name");
  c.temporary_key_pair_type = cfg.string("temporary_key_pair_type", "rsa");
  if (c.temporary_key_pair_type != "rsa" && c.temporary_key_pair_type != "ed25519")
    cfg.error("temporary_key_pair_type", "'" + c.temporary_key_pair_type + "' must be rsa or ed25519");
  if (auto d = cfg.duration("pause_before_connecting")) c.pause_before_connecting = *d;
  cfg.accept({"ssh_clear_authorized_keys", "ssh_file_transfer_method", "ssh_read_write_timeout",
              "temporary_key_pair_bits", "ssh_disable_agent_forwarding"});
  if (c.communicator == "ssh" && c.ssh.username.empty()) cfg.require("ssh_username");
  if (!c.ssh.private_key_file.empty() && !std::filesystem::is_regular_file(c.ssh.private_key_file, ec))
    cfg.error("ssh_private_key_file", "'" + c.ssh.private_key_file + "' does not exist");
  if (!c.ssh_keypair_name.empty() && c.ssh.private_key_file.empty() && !c.ssh.agent_auth)
    cfg.error("ssh_keypair_name", "ssh_keypair_name needs ssh_private_key_file or ssh_agent_auth: true");
}

}  // namespace imgbake::amazon
