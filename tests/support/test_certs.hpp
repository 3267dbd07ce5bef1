// TestCerts: a throw-away PKI for the TLS tests, made with the `openssl` CLI (a Debian package
// in DROVER_PACKAGES) in a private mkdtemp directory that the destructor removes. Two CAs:
// `ca` signs the server certificate (SAN IP:127.0.0.1, DNS:localhost) and a client
// certificate; `other` is a CA nobody trusts, with its own client and server certificates,
// for the refusal cases. EC P-256 keys: fast to make on a loaded machine.
#pragma once

#include <string>

namespace drover::test {

class TestCerts {
 public:
  // Throws std::runtime_error (with openssl's stderr) when a step fails.
  TestCerts();
  ~TestCerts();
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;

  const std::string& dir() const { return dir_; }
  std::string ca() const { return dir_ + "/ca.pem"; }
  std::string server_cert() const { return dir_ + "/server.pem"; }
  std::string server_key() const { return dir_ + "/server.key"; }
  std::string client_cert() const { return dir_ + "/client.pem"; }
  std::string client_key() const { return dir_ + "/client.key"; }
  std::string other_ca() const { return dir_ + "/other-ca.pem"; }
  std::string other_client_cert() const { return dir_ + "/other-client.pem"; }
  std::string other_client_key() const { return dir_ + "/other-client.key"; }
  std::string other_server_cert() const { return dir_ + "/other-server.pem"; }
  std::string other_server_key() const { return dir_ + "/other-server.key"; }

 private:
  void openssl(const std::string& args);
  void make_ca(const std::string& name);
  void make_leaf(const std::string& name, const std::string& ca, const std::string& ext, int serial);

  std::string dir_;
};

}  // namespace drover::test
