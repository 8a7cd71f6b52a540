// The amazon-ebs builder's steps (ebs_steps.cpp: up to the stopped instance; ebs_image_steps.cpp:
// the AMIs) and the helpers they share.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ebs_run.h"

namespace imgbake::amazon {

void add_tags(Params& p, const std::string& prefix, const std::map<std::string, std::string>& tags, State& st);
void add_block_devices(Params& p, const std::string& prefix, const std::vector<BlockDevice>& devices);
// "" when EC2 no longer knows the instance.
std::string instance_state(EbsRun& r, State& st, const std::string& region, const std::string& id,
                           bool cleanup = false);

std::unique_ptr<Step> make_credentials_step(EbsRun& r);
std::unique_ptr<Step> make_source_ami_step(EbsRun& r);
std::unique_ptr<Step> make_ami_name_check_step(EbsRun& r);
std::unique_ptr<Step> make_key_pair_step(EbsRun& r);
std::unique_ptr<Step> make_security_group_step(EbsRun& r);
std::unique_ptr<Step> make_run_instance_step(EbsRun& r);
std::unique_ptr<Step> make_connect_step(EbsRun& r);
std::unique_ptr<Step> make_stop_instance_step(EbsRun& r);
std::unique_ptr<Step> make_deregister_step(EbsRun& r);
std::unique_ptr<Step> make_create_image_step(EbsRun& r);
std::unique_ptr<Step> make_encrypt_image_step(EbsRun& r);
std::unique_ptr<Step> make_copy_images_step(EbsRun& r);
std::unique_ptr<Step> make_image_attributes_step(EbsRun& r);
std::unique_ptr<Step> make_artifact_step(EbsRun& r);

}  // namespace imgbake::amazon
