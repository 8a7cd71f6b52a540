// What the amazon-ebs builder's steps share while one build runs.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "credentials.h"
#include "ebs_config.h"
#include "ec2_client.h"
#include "imgbake/pipeline.h"
#include "imgbake/ssh.h"

namespace imgbake::amazon {

struct EbsRun {
  EbsConfig cfg;
  // Every client's credentials, refreshed before they expire (the cleanup clients' too).
  std::shared_ptr<CredentialProvider> credentials;
  std::map<std::string, std::unique_ptr<Ec2Client>> clients;  // by region
  // Cleanups run after a Ctrl-C has cancelled the build's token: they talk to EC2 with clients
  // of their own, on a token that is never cancelled (a second Ctrl-C exits at once anyway).
  CancelToken cleanup_token;
  std::map<std::string, std::unique_ptr<Ec2Client>> cleanup_clients;
  std::filesystem::path work_dir;

  std::string source_ami, source_ami_name, source_ami_owner;
  std::string key_name, key_file;  // the key pair the instance gets, the private key we log in with
  bool temporary_key = false;
  std::string group_id;  // the temporary security group
  std::string instance_id, ssh_address;
  std::unique_ptr<SshCommunicator> comm;
  std::map<std::string, std::string> amis;                    // region -> AMI id
  std::map<std::string, std::vector<std::string>> snapshots;  // region -> snapshot ids
  bool completed = false;                                     // the artifact was made: the AMIs stay

  // The client for a region, made on first use.
  Ec2Client& ec2(State& st, const std::string& region);
  Ec2Client& ec2(State& st) { return ec2(st, cfg.region); }
  // The client for cleanups (see cleanup_token).
  Ec2Client& ec2_cleanup(State& st, const std::string& region);
  Ec2Client& ec2_cleanup(State& st) { return ec2_cleanup(st, cfg.region); }
  // Polls `check` (true: done) with backoff from 250 ms up to aws_polling's delay, at most
  // max_attempts times; `what` names the wait in messages.
  void wait_until(State& st, const std::string& what, const std::function<bool()>& check) const {
    wait_until(st.cancel, what, check);
  }
  void wait_until(const CancelToken& cancel, const std::string& what, const std::function<bool()>& check) const;
};

StepList make_steps(EbsRun& r, StepList provision);

}  // namespace imgbake::amazon
