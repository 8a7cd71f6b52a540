# The HCL2 twin of rootfs-debian.json: the same Debian image (debootstrap, GNU hello from apt,
# a file), written as Packer HCL2. Built with the same variables, both give the same image digest
# (tests/e2e/test_hcl.sh checks it). Signatures are checked (debootstrap against the host's
# debian-archive-keyring, apt against the image's); the tests point `mirror` at a local,
# unsigned mirror on 127.0.0.1 with -var check_gpg=false -var 'apt_options=[trusted=yes]'.

variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}

variable "suite" {
  type    = string
  default = "bookworm"
}

variable "motd" {
  type    = string
  default = "baked by imgbake"
}

variable "check_gpg" {
  type    = bool
  default = true
}

variable "apt_options" {
  type        = string
  default     = ""
  description = "Options of the apt source line, e.g. [trusted=yes] for an unsigned mirror"
}

source "rootfs" "debian" {
  source = "debootstrap"
  debootstrap {
    suite     = var.suite
    variant   = "minbase"
    mirror    = var.mirror
    check_gpg = var.check_gpg
  }
  network           = true
  layer_compression = "gzip"
}

build {
  sources = ["source.rootfs.debian"]

  provisioner "shell" {
    inline = [
      "echo 'deb ${var.apt_options} ${var.mirror} ${var.suite} main' > /etc/apt/sources.list",
      "apt-get update -q",
      "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends hello",
      "apt-get clean",
      "rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/cache/ldconfig/aux-cache",
    ]
  }

  provisioner "file" {
    content     = "${var.motd}\n"
    destination = "/etc/motd"
  }
}

imgbake {
  image  = "debian-hello"
  labels = { "org.opencontainers.image.description" = "Debian minbase with GNU hello" }
  config = { Cmd = ["/usr/bin/hello"] }
}
