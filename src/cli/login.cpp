// imgbake login: store credentials for a registry.
#include <unistd.h>

#include <iostream>

#include "imgbake/oci_client.h"
#include "store_verbs.h"

namespace imgbake::cli {

Action setup_login(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string registry, username, password;
    bool password_stdin = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("registry", o->registry, "HOST[:PORT] of the registry")->required();
  sub.add_option("-u,--username", o->username, "User name")->required();
  sub.add_option("-p,--password", o->password, "Password (prefer --password-stdin: a flag shows in ps)");
  sub.add_flag("--password-stdin", o->password_stdin, "Read the password from standard input");
  add_registry_flags(sub, o->reg);
  return [o] {
    std::string password = o->password;
    if (o->password_stdin) {
      std::getline(std::cin, password);
    }
    if (password.empty()) throw UsageError("login: give the password with --password-stdin (or -p)");
    registry::Credentials c;
    c.username = o->username;
    c.password = password;
    registry::ClientOptions opts = client_options(o->registry, o->reg);
    registry::Client client(o->registry, opts, c);
    client.ping();  // the credentials work before they are stored
    registry::store_credentials(o->registry, c);
    std::cout << "Login Succeeded: credentials for " << o->registry << " stored\n";
    return 0;
  };
}

}  // namespace imgbake::cli
