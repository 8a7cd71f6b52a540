# The module's data (data/common.yaml, through its hiera.yaml) gives $listen_port.
class motd (Integer $listen_port) {
  file { '/etc/motd':
    ensure  => file,
    mode    => '0644',
    content => "baked by puppet for ${facts['packer_build_name']}\n",
  }
}
