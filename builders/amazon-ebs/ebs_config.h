// The amazon-ebs builder's options: Packer's names and defaults (docs/builders/amazon-ebs.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "credentials.h"
#include "imgbake/config.h"
#include "imgbake/ssh.h"

namespace imgbake::amazon {

struct BlockDevice {
  std::string device_name, virtual_name, snapshot_id, volume_type, kms_key_id;
  int64_t volume_size = 0, iops = 0, throughput = 0;
  std::optional<bool> delete_on_termination, encrypted;
  bool no_device = false;
};

struct SourceAmiFilter {
  std::map<std::string, std::string> filters;
  std::vector<std::string> owners;
  bool most_recent = false;
};

struct EbsConfig {
  // Access
  std::string access_key, secret_key, token, profile, shared_credentials_file;
  bool skip_metadata_api_check = false;  // never credentials from the instance metadata service
  std::string region;
  std::string custom_endpoint_ec2;  // else AWS_ENDPOINT_URL_EC2, else https://ec2.REGION.amazonaws.com
  std::optional<AssumeRoleConfig> assume_role;
  bool insecure_skip_tls_verify = false;
  int64_t max_retries = 8;
  int64_t poll_delay_seconds = 15;  // aws_polling.delay_seconds (AWS_POLL_DELAY_SECONDS)
  int64_t poll_max_attempts = 40;   // aws_polling.max_attempts (AWS_MAX_ATTEMPTS)

  // Source and run
  std::string source_ami;
  std::optional<SourceAmiFilter> source_ami_filter;
  std::string instance_type;
  std::string subnet_id, vpc_id, availability_zone, iam_instance_profile;
  std::vector<std::string> security_group_ids;
  std::vector<std::string> temporary_security_group_source_cidrs{"0.0.0.0/0"};
  std::optional<bool> associate_public_ip_address;
  std::string user_data, user_data_file;
  std::map<std::string, std::string> run_tags, run_volume_tags;
  std::string shutdown_behavior = "stop";
  bool disable_stop_instance = false;
  bool ebs_optimized = false;
  std::string metadata_http_endpoint, metadata_http_tokens;
  int64_t metadata_hop_limit = 0;
  std::vector<BlockDevice> launch_block_device_mappings;

  // The AMI
  std::string ami_name, ami_description, ami_virtualization_type;
  std::vector<std::string> ami_users, ami_groups, ami_regions, snapshot_users, snapshot_groups;
  std::map<std::string, std::string> tags, snapshot_tags;
  std::map<std::string, std::string> region_kms_key_ids;
  std::optional<bool> ena_support;
  bool sriov_support = false;
  bool force_deregister = false, force_delete_snapshot = false;
  bool skip_create_ami = false;
  std::optional<bool> encrypt_boot;
  std::string kms_key_id;
  std::vector<BlockDevice> ami_block_device_mappings;

  // Communicator
  std::string communicator = "ssh";
  SshConfig ssh;
  int64_t ssh_port = 22;
  std::string ssh_host, ssh_interface, ssh_keypair_name;
  std::string temporary_key_pair_name, temporary_key_pair_type = "rsa";
  std::chrono::milliseconds pause_before_connecting{0};
};

void read_config(ConfigReader& cfg, EbsConfig& out);

}  // namespace imgbake::amazon
