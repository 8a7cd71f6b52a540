# serverspec tests for templates/qemu-disk-tested.json, run by `imgbake test` over the booted
# image's SSH (rspec with the ssh backend); each example is one check in the report.
describe file('/etc/imgbake-demo/greeting') do
  it { should be_file }
  its(:content) { should match /hello from imgbake/ }
end
describe port(22) do
  it { should be_listening }
end
