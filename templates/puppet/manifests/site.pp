# Applied by templates/rootfs-puppet.json.
include motd

user { 'deploy':
  ensure     => present,
  uid        => 1500,
  shell      => '/bin/sh',
  home       => '/srv/deploy',
  managehome => false,
}

file { '/etc/server-role':
  ensure  => file,
  mode    => '0644',
  content => "role=${facts['role']}\nlisten=${motd::listen_port}\n",
}
