#!/usr/bin/env bash
# End-to-end: the amazon-ebs builder against tests/fixtures/ec2_double.py, an EC2-compatible
# endpoint on 127.0.0.1 that checks every signature with botocore's signer, takes the actions and
# parameters of botocore's EC2 model and runs instances as tiny qemu guests (TCG); the same port is
# a fake STS and a fake IMDSv2 (tests/fixtures/aws_identity.py) and models EBS volumes, encrypted
# snapshots and KMS keys (tests/fixtures/ec2_storage.py). Debian's awscli is the independent
# client that checks what imgbake made. No test reaches AWS.
. "$(dirname "$0")/lib.sh"

SRC=$IMGBAKE_SOURCE_DIR
GUEST=${IMGBAKE_TEST_GUEST_DIR:-$E2E_ROOT/guest}
export E2E_TIMEOUT=${E2E_TIMEOUT:-180}

require_tools qemu-system-x86_64 qemu-img python3 aws debugfs ssh-keygen curl
# Debian's own python3 and awscli (python3-botocore, awscli), also where pyenv or pip put others first.
PY=python3 AWS_CLI=aws
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
[ -x /usr/bin/aws ] && AWS_CLI=/usr/bin/aws
"$PY" -c 'import botocore' 2>/dev/null || {
  echo "python3-botocore is not installed (Debian package python3-botocore: apt-get install python3-botocore, or run tools/setup.sh as root)" >&2
  exit 1
}
if ! "$SRC/tests/fixtures/make-tiny-guest.sh" "$GUEST" --disk >"$E2E_ROOT/fixture.log" 2>&1; then
  echo "the test guest could not be built:" >&2
  cat "$E2E_ROOT/fixture.log" >&2
  exit 1
fi

# One endpoint for the whole suite (it takes ~2 s to load botocore's EC2 model).
ACCESS_KEY=AKIDIMGBAKEE2E
SECRET_KEY='e2e/Secret+Key/never-printed-7f3a9c'
STATE=$E2E_ROOT/ec2
SSH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ROLE=arn:aws:iam::123456789012:role/imgbake-builder
EAST_KEY=arn:aws:kms:us-east-1:123456789012:key/0d7c3f1e-east
WEST_KEY=arn:aws:kms:us-west-2:123456789012:key/5a9e22b4-west
"$PY" "$SRC/tests/fixtures/ec2_double.py" --state "$STATE" --guest "$GUEST" --ssh-port "$SSH_PORT" \
  --port-file "$E2E_ROOT/ec2.port" --transition 0.3 --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" \
  --role "$ROLE" --role-external-id e2e-external-id --kms-key "$EAST_KEY" --kms-key "$WEST_KEY" \
  >"$E2E_ROOT/ec2.log" 2>&1 &
EC2_PID=$!
E2E_BG_PIDS+=("$EC2_PID")
# The endpoint stops the VMs it runs when it gets SIGTERM (lib.sh's cleanup sends SIGKILL, which
# would leave a failed test's instance running).
trap 'kill -TERM "$EC2_PID" 2>/dev/null; wait_for 5 pid_gone "$EC2_PID"; e2e_cleanup' EXIT
wait_for 30 file_nonempty "$E2E_ROOT/ec2.port" || { echo "the EC2 endpoint did not start:" >&2; cat "$E2E_ROOT/ec2.log" >&2; exit 1; }
ENDPOINT=http://127.0.0.1:$(cat "$E2E_ROOT/ec2.port")
# The credential chain ends at the instance metadata service: never 169.254.169.254 from a test
# (the tests that want IMDS point AWS_EC2_METADATA_SERVICE_ENDPOINT at the endpoint).
export AWS_EC2_METADATA_DISABLED=true

# control JSON: the endpoint's test hooks (throttling, AMI delay, the IMDS role).
control() { curl -fsS -X POST -d "$1" "$ENDPOINT/_control" >/dev/null; }

# calls_since N: the endpoint's calls after the first N, one "service action who session" a line.
calls_since() {
  curl -fsS "$ENDPOINT/_log" | python3 -c '
import json, sys
for c in json.load(sys.stdin)[int(sys.argv[1]):]:
    print(c["service"], c["action"], c["who"], "session" if c["session"] else "no-session")' "$1"
}
calls_count() { curl -fsS "$ENDPOINT/_log" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }

# aws REGION ARGS...: Debian's awscli against the endpoint, with the test credentials.
aws_ec2() {
  local region=$1
  shift
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_CONFIG_FILE=/dev/null \
    AWS_SHARED_CREDENTIALS_FILE=/dev/null "$AWS_CLI" --endpoint-url "$ENDPOINT" --region "$region" ec2 "$@"
}

# ec2_py REGION CODE: runs python CODE with `ec2`, a botocore EC2 client on the endpoint (several
# calls in one process: each awscli run costs 1-2 s of start-up under load).
ec2_py() {
  "$PY" - "$ENDPOINT" "$1" "$ACCESS_KEY" "$SECRET_KEY" "$2" <<'PY'
import sys
import botocore.session
endpoint, region, ak, sk, code = sys.argv[1:6]
ec2 = botocore.session.get_session().create_client(
    "ec2", region_name=region, endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk)
exec(code)
PY
}

# template NAME [PROVISIONERS-JSON] [EXTRA-BUILDER-JSON]: t.json for the endpoint.
template() {
  local provisioners=${2:-[]} extra=${3:-}
  [ -n "$extra" ] || extra='{}'
  python3 - "$ENDPOINT" "$SSH_PORT" "$1" "$provisioners" "$extra" <<'PY' >t.json
import json, sys
endpoint, port, name, provisioners, extra = sys.argv[1:6]
b = {"type": "amazon-ebs", "region": "us-east-1", "custom_endpoint_ec2": endpoint,
     "source_ami_filter": {"filters": {"name": "tiny-guest-*"}, "owners": ["099720109477"], "most_recent": True},
     "instance_type": "t3.micro", "ssh_username": "root", "ssh_port": int(port), "ssh_timeout": "150s",
     "ami_name": name, "aws_polling": {"delay_seconds": 1, "max_attempts": 120}}
b.update(json.loads(extra))
print(json.dumps({"variables": {"aws_secret": ""}, "sensitive-variables": ["aws_secret"],
                  "builders": [b], "provisioners": json.loads(provisioners)}, indent=2))
PY
}

# Nothing temporary is left in any region: instances terminated (their VMs gone), no key pair,
# only the default security group. The endpoint's own account of its resources.
expect_nothing_left() {
  expect_eq "resources left at the endpoint (region: what)" "{}" "$(curl -fsS "$ENDPOINT/_resources" | python3 -c '
import json, sys
print(json.dumps({r + ": " + k: v for r, kinds in json.load(sys.stdin).items() for k, v in kinds.items() if v}))')"
  E2E_CHECKS=$((E2E_CHECKS + 1))
  ! pgrep -f "qemu-system-x86_64 .*$STATE" >/dev/null || fail "no instance VM is left" "none" "$(pgrep -af "qemu-system.*$STATE")"
}

# Neither the secret key nor any temporary secret or session token the endpoint handed out
# appears in the build's output, the store or the temporary files.
expect_no_secret() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  local where secret
  where=$(grep -rlF -- "$SECRET_KEY" "$STDOUT" "$STDERR" "$IMGBAKE_HOME" "$TMPDIR" 2>/dev/null || true)
  [ -z "$where" ] || fail "the secret key appears nowhere" "nowhere" "$where"
  while read -r secret; do
    [ -n "$secret" ] || continue
    where=$(grep -rlF -- "$secret" "$STDOUT" "$STDERR" "$IMGBAKE_HOME" "$TMPDIR" 2>/dev/null || true)
    [ -z "$where" ] || fail "no temporary secret or session token appears" "nowhere" "$where"
  done < <(curl -fsS "$ENDPOINT/_issued" | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    print(c["secret"]); print(c["token"])')
}

# interrupted_build PATTERN [ENV-ARGS...]: `imgbake build t.json` under `env ENV-ARGS`, in its own
# process group; Ctrl-C once PATTERN is in its output; BUILD_RC is its exit status. Fails (and
# returns 1) when PATTERN does not show within 90 s or imgbake has not exited 30 s after Ctrl-C.
interrupted_build() {
  local pattern=$1 pid
  shift
  set -m
  env "$@" "$IMGBAKE" build t.json >"$STDOUT" 2>"$STDERR" </dev/null &
  pid=$!
  set +m
  E2E_BG_PIDS+=("$pid")
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! wait_for 90 grep -q "$pattern" "$STDOUT"; then
    fail "the build reaches '$pattern'" "'$pattern' within 90 s" "not seen"
    e2e_show_file stdout "$STDOUT"
    e2e_show_file stderr "$STDERR"
    kill -KILL -- "-$pid"
    return 1
  fi
  kill -INT -- "-$pid"
  E2E_CHECKS=$((E2E_CHECKS + 1))
  wait_for 30 pid_gone "$pid" || fail "imgbake exits within 30 s of Ctrl-C" "exit" "still running"
  BUILD_RC=0
  wait "$pid" || BUILD_RC=$?
}

test_bake_ami_with_provisioners_regions_and_throttling() {
  printf 'payload from the file provisioner\n' >payload.txt
  template "imgbake-e2e-main" '[
    {"type": "shell", "inline": ["echo \"baked by shell as $(id -u)\" > /root/baked.txt"]},
    {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"}]' \
    '{"ami_regions": ["us-west-2"], "tags": {"Team": "imgbake", "Source": "{{ .SourceAMI }}"},
      "snapshot_tags": {"Kind": "root"}, "run_tags": {"Purpose": "e2e"}, "ami_users": ["210987654321"]}'
  # EC2 throttles: the builder must retry (the endpoint answers RequestLimitExceeded, HTTP 503).
  curl -fsS -X POST -d '{"throttle": {"DescribeInstances": 2, "CreateImage": 1}}' "$ENDPOINT/_control" >/dev/null
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY expect_exit 0 imgbake build t.json || return
  expect_contains "$STDOUT" "RequestLimitExceeded (Request limit exceeded.): trying again"
  expect_contains "$STDOUT" "CreateImage: RequestLimitExceeded"
  local id east west
  id=$(grep -o 'us-east-1:ami-[0-9a-f]*,us-west-2:ami-[0-9a-f]*' "$STDOUT" | head -1)
  expect_match "$STDOUT" 'artifact amazon-ebs: us-east-1:ami-[0-9a-f]+,us-west-2:ami-[0-9a-f]+ '
  east=${id%%,*} east=${east#us-east-1:}
  west=${id##*,} west=${west#us-west-2:}
  # awscli sees the AMIs imgbake reported, available, named and tagged as the template says.
  expect_eq "awscli: AMI in us-east-1 (id, state, name, tags)" \
    "$east available imgbake-e2e-main Source=ami-0cf3370ee99aef972 Team=imgbake" \
    "$(aws_ec2 us-east-1 describe-images --owners self --query 'Images[].[ImageId,State,Name,join(`,`,sort_by(Tags,&Key)[].join(`=`,[Key,Value]))]' --output text | tr '\t,' '  ')"
  expect_eq "awscli: AMI in us-west-2" "$west available imgbake-e2e-main" \
    "$(aws_ec2 us-west-2 describe-images --owners self --query 'Images[].[ImageId,State,Name]' --output text | tr '\t' ' ')"
  expect_eq "botocore: snapshot tag, launch permission, the instance's run_tags and state" \
    "root 210987654321 e2e terminated" "$(ec2_py us-east-1 '
snaps = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
perms = ec2.describe_image_attribute(ImageId="'$east'", Attribute="launchPermission")["LaunchPermissions"]
inst = ec2.describe_instances()["Reservations"][0]["Instances"][0]
print(" ".join(t["Value"] for s in snaps for t in s.get("Tags", []) if t["Key"] == "Kind"),
      " ".join(p["UserId"] for p in perms),
      " ".join(t["Value"] for t in inst["Tags"] if t["Key"] == "Purpose"), inst["State"]["Name"])')"
  # The AMIs' disks (in both regions) hold what the provisioners put there.
  local region ami
  for region in east west; do
    ami=${!region}
    expect_eq "$region AMI: /root/payload.txt" "payload from the file provisioner" \
      "$(debugfs -R 'cat /root/payload.txt' "$STATE/disks/$ami.raw" 2>/dev/null)"
    expect_eq "$region AMI: /root/baked.txt" "baked by shell as 0" \
      "$(debugfs -R 'cat /root/baked.txt' "$STATE/disks/$ami.raw" 2>/dev/null)"
  done
  expect_nothing_left
  # The store holds it as an image whose config records the AMIs; its provenance verifies.
  expect_exit 0 imgbake show amazon-ebs:1
  cp "$STDOUT" show.txt
  expect_match show.txt "io.imgbake.amazon.snapshots=us-east-1:snap-[0-9a-f]+,us-west-2:snap-[0-9a-f]+$"
  expect_contains "$STDOUT" "io.imgbake.amazon.amis=$id"
  expect_contains "$STDOUT" "io.imgbake.amazon.source_ami=us-east-1:ami-0cf3370ee99aef972"
  expect_exit 0 imgbake verify amazon-ebs:1
  expect_exit 0 imgbake promote amazon-ebs:1 --channel stable
  expect_no_secret

  # The name is taken now: a second build stops before it launches anything...
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY expect_exit 1 imgbake build t.json
  expect_contains "$STDERR" "AMI name 'imgbake-e2e-main' is used by an existing AMI in us-east-1: $east (set force_deregister to replace it)"
  expect_not_contains "$STDOUT" "launching"
  # ...unless force_deregister replaces it (and force_delete_snapshot its snapshot).
  local old_snap
  old_snap=$(sed -n 's/.*io.imgbake.amazon.snapshots=us-east-1:\(snap-[0-9a-f]*\),.*/\1/p' "$TEST_DIR/show.txt")
  template "imgbake-e2e-main" '[]' '{"force_deregister": true, "force_delete_snapshot": true}'
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY expect_exit 0 imgbake build t.json || return
  expect_contains "$STDOUT" "force_deregister: deregistering $east in us-east-1 and deleting $old_snap"
  local new_id
  new_id=$(grep -o 'artifact amazon-ebs: us-east-1:ami-[0-9a-f]*' "$STDOUT" | head -1)
  expect_eq "awscli: the one AMI named imgbake-e2e-main in us-east-1 is the new one" "${new_id##*:}" \
    "$(aws_ec2 us-east-1 describe-images --owners self --filters Name=name,Values=imgbake-e2e-main --query 'Images[].ImageId' --output text)"
  expect_eq "awscli: the old snapshot is gone" "" \
    "$(aws_ec2 us-east-1 describe-snapshots --owner-ids self --query "Snapshots[?SnapshotId=='$old_snap'].SnapshotId" --output text)"
  expect_exit 0 imgbake history amazon-ebs
  expect_contains "$STDOUT" "amazon-ebs:2"
  expect_nothing_left
}

test_failing_provisioner_leaves_nothing_behind() {
  # The user's own key pair and security group this time: imgbake must use them and leave them.
  local group
  group=$(ec2_py us-east-1 '
open("users-key.pem", "w").write(ec2.create_key_pair(KeyName="users-key", KeyType="ed25519")["KeyMaterial"])
print(ec2.create_security_group(GroupName="users-group", Description="the users")["GroupId"])')
  chmod 600 users-key.pem
  # The secret comes from a sensitive variable this time (and the environment has none).
  template "imgbake-e2e-fail" '[{"type": "shell", "inline": ["echo about to fail", "exit 7"]}]' \
    '{"access_key": "'$ACCESS_KEY'", "secret_key": "{{user `aws_secret`}}", "ami_regions": ["us-west-2"],
      "user_data": "#cloud-config\nhostname: baker\n", "ssh_keypair_name": "users-key",
      "ssh_private_key_file": "users-key.pem", "security_group_ids": ["'$group'"]}'
  expect_exit 1 imgbake build -var "aws_secret=$SECRET_KEY" t.json || return
  expect_contains "$STDOUT" "about to fail"
  expect_contains "$STDERR" "exited with status 7"
  expect_contains "$STDOUT" "terminating instance"
  expect_contains "$STDOUT" "using key pair users-key"
  expect_not_contains "$STDOUT" "temporary"
  local instance
  instance=$(grep -o 'instance i-[0-9a-f]*' "$STDOUT" | head -1 | cut -d' ' -f2)
  expect_eq "botocore: the instance's key pair, group and user_data; AMIs named imgbake-e2e-fail" \
    "users-key $group #cloud-config|hostname: baker| []" "$(ec2_py us-east-1 '
import base64
i = ec2.describe_instances(InstanceIds=["'$instance'"])["Reservations"][0]["Instances"][0]
u = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")["UserData"]["Value"]
amis = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["imgbake-e2e-fail"]}])["Images"]
print(i["KeyName"], i["SecurityGroups"][0]["GroupId"], base64.b64decode(u).decode().replace("\n", "|"), amis)')"
  # The user's resources are still there; once they are removed, nothing is left.
  expect_eq "what is left at the endpoint" \
    '{"us-east-1": {"instances": [], "key_pairs": ["users-key"], "security_groups": ["'$group'"], "volumes": []}}' \
    "$(curl -fsS "$ENDPOINT/_resources" | python3 -c 'import json, sys; print(json.dumps({r: v for r, v in json.load(sys.stdin).items() if any(v.values())}, sort_keys=True))')"
  ec2_py us-east-1 'ec2.delete_key_pair(KeyName="users-key"); ec2.delete_security_group(GroupId="'$group'")'
  expect_nothing_left
  expect_no_secret
}

test_ctrl_c_leaves_nothing_behind() {
  template "imgbake-e2e-interrupted" '[]' '{"temporary_key_pair_type": "ed25519"}'
  interrupted_build "waiting for SSH" AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" || return
  expect_eq "exit status after Ctrl-C" 130 "$BUILD_RC"
  expect_contains "$STDOUT" "deleting the temporary key pair"
  expect_contains "$STDOUT" "(ed25519)"
  expect_nothing_left
  expect_no_secret
}

test_wrong_credentials_show_ec2s_error() {
  template "imgbake-e2e-denied"
  AWS_ACCESS_KEY_ID=AKIDNOTKNOWN AWS_SECRET_ACCESS_KEY=$SECRET_KEY expect_exit 1 imgbake build t.json
  expect_contains "$STDERR" "DescribeImages: AuthFailure: AWS was not able to validate the provided access credentials"
  # A right key id with a wrong secret: EC2's SignatureDoesNotMatch.
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=not-the-secret expect_exit 1 imgbake build t.json
  expect_contains "$STDERR" "SignatureDoesNotMatch: The request signature we calculated does not match"
  # No credentials at all: every place looked at is named, the instance metadata service last
  # (this "instance" has no IAM role).
  control '{"imds_role": null}'
  expect_exit 1 env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_EC2_METADATA_DISABLED \
    AWS_EC2_METADATA_SERVICE_ENDPOINT="$ENDPOINT" HOME="$TEST_DIR" AWS_PROFILE=nope "$IMGBAKE" build t.json
  expect_contains "$STDERR" "no AWS credentials found; looked in the options access_key/secret_key, the environment"
  expect_contains "$STDERR" "profile 'nope' in $TEST_DIR/.aws/credentials"
  expect_contains "$STDERR" "instance metadata (IMDSv2) at $ENDPOINT: the instance has no IAM role (instance profile)"
  # A role the credentials may not assume: STS's own error.
  template "imgbake-e2e-denied" '[]' '{"assume_role": {"role_arn": "arn:aws:iam::123456789012:role/not-granted"}}'
  AWS_ENDPOINT_URL_STS=$ENDPOINT AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY \
    expect_exit 1 imgbake build t.json
  expect_contains "$STDERR" "AssumeRole: AccessDenied: User: arn:aws:iam::123456789012:user/imgbake-e2e is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/not-granted"
  expect_no_secret
}

test_shared_credentials_file_and_profile() {
  mkdir -p .aws
  printf '[default]\naws_access_key_id = AKIDWRONGDEFAULT\naws_secret_access_key = x\n[ci]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$ACCESS_KEY" "$SECRET_KEY" >.aws/credentials
  template "imgbake-e2e-profile"
  expect_exit 1 env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$TEST_DIR" "$IMGBAKE" build t.json
  expect_contains "$STDERR" "AuthFailure"
  python3 - <<'PY'
import json
t = json.load(open("t.json"))
t["builders"][0]["profile"] = "ci"
t["builders"][0]["source_ami"] = "ami-nonexistent"
del t["builders"][0]["source_ami_filter"]
json.dump(t, open("t.json", "w"))
PY
  expect_exit 1 env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$TEST_DIR" "$IMGBAKE" build t.json
  expect_contains "$STDOUT" "credentials from profile 'ci' in $TEST_DIR/.aws/credentials"
  expect_contains "$STDERR" "InvalidAMIID.NotFound: The image id '[ami-nonexistent]' does not exist"
  expect_no_secret
}

test_options_are_checked() {
  cat >t.json <<'JSON'
{"builders": [{"type": "amazon-ebs", "region": "us-east-1", "instance_type": "t3.micro",
    "ssh_username": "root", "ami_name": "bad*name", "force_delete_snapshot": true, "temporary_key_pair_type": "dsa",
    "assume_role": {"role_arn": "arn:aws:iam::1:role/x", "duration_seconds": 60}, "ami_regoins": ["eu-west-1"],
    "custom_endpoint_sts": "http://127.0.0.1:1", "ami_regions": ["us-west-2"], "region_kms_key_ids": {"eu-west-1": ""},
    "ami_virtualization_type": "pv"}]}
JSON
  expect_exit 1 imgbake validate t.json
  expect_contains "$STDERR" "'source_ami' or 'source_ami_filter' is required"
  expect_contains "$STDERR" "contains '*': AMI names hold letters, digits and ()[] ./-'@_"
  expect_contains "$STDERR" "force_delete_snapshot needs force_deregister: true"
  expect_contains "$STDERR" "'dsa' must be rsa or ed25519"
  expect_contains "$STDERR" "assume_role: must be between 900 and 43200 (STS's limits)"
  expect_not_contains "$STDERR" "unknown option 'custom_endpoint_sts'"
  expect_contains "$STDERR" "Packer has no 'custom_endpoint_sts': set the SDKs' AWS_ENDPOINT_URL_STS"
  expect_contains "$STDERR" "region us-west-2 is in ami_regions but not in region_kms_key_ids"
  expect_contains "$STDERR" "'pv' must be hvm or paravirtual"
  expect_contains "$STDERR" "did you mean 'ami_regions'"
  # The same builder as an HCL2 source: nested blocks (one or repeated) are its objects and lists.
  cat >t.pkr.hcl <<'HCL'
source "amazon-ebs" "base" {
  region        = "us-east-1"
  instance_type = "t3.micro"
  ssh_username  = "root"
  ami_name      = "hcl-test"
  source_ami_filter {
    filters = {
      name = "tiny-guest-*"
    }
    owners      = ["099720109477"]
    most_recent = true
  }
  aws_polling {
    delay_seconds = 1
    max_attempts  = 5
  }
  tags = { Team = "x" }
  launch_block_device_mappings {
    device_name = "/dev/xvdb"
    volume_size = 2
  }
  launch_block_device_mappings {
    volume_type = "gp3"
    device_name = "/dev/xvda"
    volume_size = 8
  }
}
build { sources = ["source.amazon-ebs.base"] }
HCL
  expect_exit 0 imgbake validate t.pkr.hcl
}

test_assume_role_and_options_on_the_wire() {
  # Long-term keys in the environment; the build runs on the role's temporary credentials.
  # The shell-local provisioner echoes the secret key by accident: the Ui masks it.
  template "imgbake-e2e-options" '[
    {"type": "shell-local", "inline": ["echo \"leaked: $AWS_SECRET_ACCESS_KEY\""]},
    {"type": "shell", "inline": ["echo options > /root/options.txt", "sync",
                                 "(sleep 3; poweroff -f) </dev/null >/dev/null 2>&1 &"]}]' \
    '{"assume_role": {"role_arn": "'$ROLE'", "external_id": "e2e-external-id", "session_name": "imgbake-e2e",
                      "duration_seconds": 1800, "tags": {"Team": "imgbake"},
                      "policy_arns": ["arn:aws:iam::aws:policy/AmazonEC2FullAccess"]},
      "associate_public_ip_address": true, "subnet_id": "subnet-default",
      "metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 2},
      "launch_block_device_mappings": [
        {"device_name": "/dev/xvda", "volume_size": 2, "volume_type": "gp3", "iops": 3000, "throughput": 200},
        {"device_name": "/dev/xvdb", "volume_size": 3, "volume_type": "gp2"}],
      "run_volume_tags": {"Kind": "build-volume"},
      "ami_block_device_mappings": [{"device_name": "/dev/xvdb", "no_device": true},
                                    {"device_name": "/dev/xvdc", "virtual_name": "ephemeral0"}],
      "ena_support": true, "sriov_support": true, "disable_stop_instance": true,
      "encrypt_boot": true, "kms_key_id": "'$EAST_KEY'", "ami_regions": ["us-west-2"],
      "region_kms_key_ids": {"us-west-2": "'$WEST_KEY'"}, "ami_virtualization_type": "paravirtual",
      "snapshot_users": ["210987654321"], "snapshot_groups": ["all"]}'
  local before
  before=$(calls_count)
  AWS_ENDPOINT_URL_STS=$ENDPOINT AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY \
    expect_exit 0 imgbake build t.json || return
  expect_contains "$STDOUT" "assuming role $ROLE with credentials from the environment (AWS_ACCESS_KEY_ID)"
  expect_contains "$STDOUT" "credentials from role $ROLE assumed with the environment"
  expect_contains "$STDOUT" "leaked: <sensitive>"
  expect_contains "$STDERR" "ami_virtualization_type is paravirtual but source AMI ami-0cf3370ee99aef972 is hvm"
  expect_contains "$STDOUT" "disable_stop_instance: waiting for the instance to stop itself"
  expect_contains "$STDOUT" "to an encrypted AMI (KMS key $EAST_KEY)"
  # One AssumeRole, signed with the long-term key; every EC2 call on the role's session, no StopInstances.
  calls_since "$before" >calls.txt
  expect_eq "the endpoint's calls: who signed them (service who session)" \
    "ec2 sts:imgbake-builder session
sts long-term no-session" "$(cut -d' ' -f1,3,4 calls.txt | LC_ALL=C sort -u)"
  expect_not_contains calls.txt "StopInstances"
  expect_eq "AssumeRole's parameters (botocore's STS model)" \
    "$ROLE imgbake-e2e e2e-external-id 1800 Team=imgbake arn:aws:iam::aws:policy/AmazonEC2FullAccess $ACCESS_KEY" \
    "$(curl -fsS "$ENDPOINT/_assume_role_calls" | python3 -c '
import json, sys
c = json.load(sys.stdin)[-1]
print(c["RoleArn"], c["RoleSessionName"], c["ExternalId"], c["DurationSeconds"],
      ",".join(t["Key"] + "=" + t["Value"] for t in c["Tags"]), c["PolicyArns"][0]["arn"], c["_caller"])')"
  expect_eq "RunInstances on the wire (botocore's EC2 model): network interface, volume tags" \
    "0 True subnet-default sg- Kind=build-volume" "$(curl -fsS "$ENDPOINT/_request/RunInstances" | python3 -c '
import json, sys
p = json.load(sys.stdin)
ni = p["NetworkInterfaces"][0]
vol = [s for s in p["TagSpecifications"] if s["ResourceType"] == "volume"][0]
print(ni["DeviceIndex"], ni["AssociatePublicIpAddress"], ni["SubnetId"], ni["Groups"][0][:3],
      ",".join(t["Key"] + "=" + t["Value"] for t in vol["Tags"]))')"
  local id east west
  id=$(grep -o 'artifact amazon-ebs: us-east-1:ami-[0-9a-f]*,us-west-2:ami-[0-9a-f]*' "$STDOUT" | head -1)
  id=${id#artifact amazon-ebs: }
  east=${id%%,*} east=${east#us-east-1:}
  west=${id##*,} west=${west#us-west-2:}
  # Debian's awscli: the instance as launched, the AMIs and their encrypted snapshots.
  expect_eq "awscli: the instance's metadata options, public address" "required 2 enabled 127.0.0.1 127.0.0.1" \
    "$(aws_ec2 us-east-1 describe-instances --filters Name=image-id,Values=ami-0cf3370ee99aef972 \
      --query 'Reservations[-1].Instances[0].[MetadataOptions.HttpTokens,MetadataOptions.HttpPutResponseHopLimit,MetadataOptions.HttpEndpoint,PublicIpAddress,NetworkInterfaces[0].Association.PublicIp]' \
      --output text | tr '\t' ' ')"
  expect_eq "awscli: the one AMI named imgbake-e2e-options in us-east-1 (the unencrypted one is gone)" "$east" \
    "$(aws_ec2 us-east-1 describe-images --owners self --filters Name=name,Values=imgbake-e2e-options --query 'Images[].ImageId' --output text)"
  expect_eq "awscli: the AMI in us-east-1 (ENA, SR-IOV, virtualization; device: type size iops throughput encrypted key | ephemeral)" \
    "True simple hvm
/dev/xvda gp3 2 3000 200 True $EAST_KEY
/dev/xvdc ephemeral0" \
    "$(aws_ec2 us-east-1 describe-images --image-ids "$east" --output json | python3 -c '
import json, sys
i = json.load(sys.stdin)["Images"][0]
print(i["EnaSupport"], i.get("SriovNetSupport"), i["VirtualizationType"])
for m in i["BlockDeviceMappings"]:
    e = m.get("Ebs")
    print(m["DeviceName"], *( [e["VolumeType"], e["VolumeSize"], e.get("Iops"), e.get("Throughput"), e["Encrypted"], e.get("KmsKeyId")] if e else [m["VirtualName"]]))')"
  expect_eq "awscli: each region's AMI's snapshot: encrypted with that region's key, shared (snapshot_users/groups)" \
    "us-east-1 True $EAST_KEY 210987654321 all
us-west-2 True $WEST_KEY 210987654321 all" "$(for region in us-east-1 us-west-2; do
      ami=$east; [ $region = us-west-2 ] && ami=$west
      snap=$(aws_ec2 $region describe-images --image-ids "$ami" --query 'Images[0].BlockDeviceMappings[0].Ebs.SnapshotId' --output text)
      echo "$region $(aws_ec2 $region describe-snapshots --snapshot-ids "$snap" --query 'Snapshots[0].[Encrypted,KmsKeyId]' --output text | tr '\t' ' ') $(
        aws_ec2 $region describe-snapshot-attribute --snapshot-id "$snap" --attribute createVolumePermission \
          --query 'CreateVolumePermissions[].[UserId,Group]' --output text | tr '\t\n' '  ' | tr -s ' ' | sed 's/None //g; s/ None//g; s/ $//')"
    done)"
  expect_eq "west AMI: /root/options.txt" "options" \
    "$(debugfs -R 'cat /root/options.txt' "$STATE/disks/$west.raw" 2>/dev/null)"
  # The provenance names the source AMI and the instance type.
  local ref prov
  ref=$(grep -o 'committed amazon-ebs:[0-9]*' "$STDOUT" | cut -d' ' -f2)
  prov=$("$IMGBAKE" show "$ref" --output json | python3 -c 'import json, sys; print(json.load(sys.stdin)["provenance"])')
  expect_eq "provenance of $ref: the source AMI (resolvedDependencies), the instance type (internalParameters)" \
    "source_ami arn:aws:ec2:us-east-1::image/ami-0cf3370ee99aef972 tiny-guest-2026-06-01 099720109477 t3.micro us-east-1 us-west-2" \
    "$(python3 - "$IMGBAKE_HOME/blobs/sha256/${prov#sha256:}" <<'PY'
import base64, json, sys
st = json.loads(base64.b64decode(json.load(open(sys.argv[1]))["payload"]))
bd = st["predicate"]["buildDefinition"]
d = [d for d in bd["resolvedDependencies"] if d.get("name") == "source_ami"][0]
b = bd["internalParameters"]["builder"]
print(d["name"], d["uri"], d["annotations"]["name"], d["annotations"]["owner"], b["instance_type"], b["region"],
      " ".join(b["ami_regions"]))
PY
)"
  expect_exit 0 imgbake verify "$ref"
  expect_nothing_left
  expect_no_secret
}

test_credential_process_then_ctrl_c_while_the_ami_is_pending() {
  # Credentials from a profile's credential_process, and no key in the environment.
  mkdir -p .aws
  printf '#!/bin/sh\nprintf %s\n' "'{\"Version\": 1, \"AccessKeyId\": \"$ACCESS_KEY\", \"SecretAccessKey\": \"$SECRET_KEY\"}'" \
    >.aws/creds.sh
  printf '[profile ci]\ncredential_process = sh %s/.aws/creds.sh\n' "$TEST_DIR" >.aws/config
  template "imgbake-e2e-pending" '[]' '{"profile": "ci"}'
  control '{"image_delay": 600}'
  local reached=0
  interrupted_build "waiting for it to become available" -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
    HOME="$TEST_DIR" || reached=1
  control '{"image_delay": 0.3}'
  [ "$reached" = 0 ] || return
  expect_eq "exit status after Ctrl-C" 130 "$BUILD_RC"
  expect_contains "$STDOUT" "credentials from credential_process of profile 'ci' in $TEST_DIR/.aws/config"
  local ami
  ami=$(sed -n 's/.*AMI \(ami-[0-9a-f]*\): waiting.*/\1/p' "$STDOUT" | head -1)
  expect_contains "$STDOUT" "the build did not finish: deregistering AMI $ami in us-east-1"
  # Neither the pending AMI nor its snapshot is left (awscli asks).
  expect_eq "awscli: AMIs named imgbake-e2e-pending, snapshots made for $ami" " " \
    "$(aws_ec2 us-east-1 describe-images --owners self --filters Name=name,Values=imgbake-e2e-pending --query 'Images[].ImageId' --output text) $(
      aws_ec2 us-east-1 describe-snapshots --owner-ids self --query "Snapshots[?contains(Description, '$ami')].SnapshotId" --output text)"
  expect_nothing_left
  expect_no_secret
}

test_imds_credentials_and_skip_create_ami() {
  # On "EC2" with an instance profile: the metadata service's credentials, no AMI made.
  control '{"imds_role": "imgbake-instance-role"}'
  template "imgbake-e2e-skip" '[{"type": "shell", "inline": ["echo provisioned"]}]' '{"skip_create_ami": true}'
  local before
  before=$(calls_count)
  expect_exit 0 env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_EC2_METADATA_DISABLED \
    AWS_EC2_METADATA_SERVICE_ENDPOINT="$ENDPOINT" HOME="$TEST_DIR" "$IMGBAKE" build t.json || return
  control '{"imds_role": null}'
  expect_contains "$STDOUT" "credentials from role 'imgbake-instance-role' from the instance metadata (IMDSv2) at $ENDPOINT"
  expect_contains "$STDOUT" "provisioned"
  expect_contains "$STDOUT" "skip_create_ami: no AMI was made"
  calls_since "$before" >calls.txt
  expect_eq "the endpoint's calls: who signed them" "ec2 imds:imgbake-instance-role session" \
    "$(cut -d' ' -f1,3,4 calls.txt | LC_ALL=C sort -u)"
  expect_not_contains calls.txt "CreateImage"
  expect_contains calls.txt "StopInstances"
  expect_eq "awscli: AMIs named imgbake-e2e-skip" "" \
    "$(aws_ec2 us-east-1 describe-images --owners self --filters Name=name,Values=imgbake-e2e-skip --query 'Images[].ImageId' --output text)"
  expect_nothing_left
  expect_no_secret
}

test_lost_answers_and_short_lived_role_credentials() {
  # The role's credentials last 20 s, the build longer: they are resolved again before they expire
  # (the cleanups' too). EC2 acts and then loses its answer (503) for RunInstances, both CopyImage
  # calls, CreateSecurityGroup and CreateKeyPair: the retries must not make a second of anything.
  control '{"credential_lifetime": 20,
            "fail_after": {"RunInstances": 1, "CopyImage": 2, "CreateSecurityGroup": 1, "CreateKeyPair": 1}}'
  template "imgbake-e2e-lost" '[{"type": "shell", "inline": ["sleep 12"]}]' \
    '{"assume_role": {"role_arn": "'$ROLE'", "external_id": "e2e-external-id"}, "run_tags": {"Test": "lost"},
      "encrypt_boot": true, "ami_regions": ["us-west-2"]}'
  local before rc=0
  before=$(curl -fsS "$ENDPOINT/_assume_role_calls" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
  AWS_ENDPOINT_URL_STS=$ENDPOINT AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY \
    expect_exit 0 imgbake build t.json || rc=1
  control '{"credential_lifetime": null, "fail_after": {"RunInstances": 0, "CopyImage": 0, "CreateSecurityGroup": 0, "CreateKeyPair": 0}}'
  [ "$rc" = 0 ] || return
  expect_contains "$STDOUT" "RunInstances: Unavailable"
  expect_contains "$STDOUT" "CopyImage: Unavailable"
  expect_contains "$STDOUT" "(an earlier try whose answer was lost): using sg-"
  expect_contains "$STDOUT" "(an earlier try whose answer was lost): making it again"
  expect_contains "$STDOUT" "expire at "
  expect_contains "$STDOUT" "resolving them again"
  expect_not_contains "$STDOUT" "RequestExpired"
  E2E_CHECKS=$((E2E_CHECKS + 1))
  local assumed
  assumed=$(curl -fsS "$ENDPOINT/_assume_role_calls" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
  [ $((assumed - before)) -ge 2 ] || fail "the role is assumed again before its credentials expire" ">= 2 AssumeRole" "$((assumed - before))"
  expect_eq "botocore: instances launched with run_tags Test=lost; AMIs named imgbake-e2e-lost per region" \
    "1 1 1" "$(ec2_py us-east-1 '
import botocore.session
west = botocore.session.get_session().create_client("ec2", region_name="us-west-2", endpoint_url=sys.argv[1],
    aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4])
f = [{"Name": "name", "Values": ["imgbake-e2e-lost"]}]
print(sum(len(r["Instances"]) for r in ec2.describe_instances(Filters=[{"Name": "tag:Test", "Values": ["lost"]}])["Reservations"]),
      len(ec2.describe_images(Owners=["self"], Filters=f)["Images"]), len(west.describe_images(Owners=["self"], Filters=f)["Images"]))')"
  expect_nothing_left
  expect_no_secret
}

test_encrypt_boot_that_cannot_remove_the_unencrypted_ami_leaves_none() {
  # Deregistering the unencrypted AMI fails (throttled past max_retries): the build fails, and its
  # cleanups remove both AMIs and every snapshot; no unencrypted copy stays behind.
  template "imgbake-e2e-plain" '[]' '{"encrypt_boot": true, "max_retries": 1}'
  control '{"throttle": {"DeregisterImage": 2}}'
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY expect_exit 1 imgbake build t.json
  control '{"throttle": {"DeregisterImage": 0}}'
  expect_contains "$STDERR" "DeregisterImage: RequestLimitExceeded"
  local plain snaps
  plain=$(sed -n 's/.*AMI \(ami-[0-9a-f]*\): waiting.*/\1/p' "$STDOUT" | head -1)
  snaps=$(sed -n 's/.*is available (snapshots \(.*\))$/\1/p' "$STDOUT" | head -1)
  expect_contains "$STDOUT" "the build did not finish: deregistering AMI $plain in us-east-1"
  expect_eq "awscli: AMIs named imgbake-e2e-plain; the unencrypted AMI's snapshots ($snaps)" " " \
    "$(aws_ec2 us-east-1 describe-images --owners self --filters Name=name,Values=imgbake-e2e-plain --query 'Images[].ImageId' --output text) $(
      aws_ec2 us-east-1 describe-snapshots --owner-ids self --query "Snapshots[?SnapshotId=='${snaps%%,*}'].SnapshotId" --output text)"
  expect_nothing_left
}

timed() {
  if [ -n "${E2E_ONLY:-}" ] && ! [[ $1 =~ $E2E_ONLY ]]; then return 0; fi
  local t0=$SECONDS
  run_test "$@"
  echo "  ($1: $((SECONDS - t0)) s)"
}
timed bake_ami_with_provisioners_regions_and_throttling test_bake_ami_with_provisioners_regions_and_throttling
timed failing_provisioner_leaves_nothing_behind test_failing_provisioner_leaves_nothing_behind
timed ctrl_c_leaves_nothing_behind test_ctrl_c_leaves_nothing_behind
timed assume_role_and_options_on_the_wire test_assume_role_and_options_on_the_wire
timed credential_process_then_ctrl_c_while_the_ami_is_pending test_credential_process_then_ctrl_c_while_the_ami_is_pending
timed imds_credentials_and_skip_create_ami test_imds_credentials_and_skip_create_ami
timed wrong_credentials_show_ec2s_error test_wrong_credentials_show_ec2s_error
timed shared_credentials_file_and_profile test_shared_credentials_file_and_profile
timed options_are_checked test_options_are_checked
timed lost_answers_and_short_lived_role_credentials test_lost_answers_and_short_lived_role_credentials
timed encrypt_boot_that_cannot_remove_the_unencrypted_ami_leaves_none test_encrypt_boot_that_cannot_remove_the_unencrypted_ami_leaves_none
summary
