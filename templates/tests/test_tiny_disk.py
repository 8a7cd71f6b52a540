# testinfra tests for templates/qemu-disk-tested.json, run by `imgbake test` over the booted
# image's SSH (py.test --hosts=ssh://...); each test is one check in the report.


def test_greeting_is_baked(host):
    greeting = host.file("/etc/imgbake-demo/greeting")
    assert greeting.exists
    assert greeting.contains("hello from imgbake")


def test_kernel_runs(host):
    assert host.run("uname -s").stdout.strip() == "Linux"
