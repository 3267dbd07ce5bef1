// server.tcp_listen, server.tls, server.allow_plaintext_tcp and openai.tls
// (common/config.hpp): defaults, the environment, the plaintext rule on non-loopback
// addresses, and TLS files checked at load with errors that name the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "common/config.hpp"
#include "tests/unit/common/config_parse.hpp"
#include "tests/support/test_certs.hpp"

namespace drover {
namespace {

using test::error_of;
using test::parse;

// One PKI for the whole suite: making it runs openssl a dozen times.
const test::TestCerts& certs() {
  static const test::TestCerts c;
  return c;
}

std::string server_tls(const std::string& cert, const std::string& key, const std::string& ca = "") {
  std::string y = "  tls:\n    cert_file: " + cert + "\n    key_file: " + key + "\n";
  if (!ca.empty()) y += "    client_ca_file: " + ca + "\n";
  return y;
}

TEST(TcpConfig, OffByDefault) {
  const Config c = parse("");
  EXPECT_TRUE(c.server.tcp_listen.empty());
  EXPECT_FALSE(c.server.tls.enabled());
  EXPECT_FALSE(c.server.allow_plaintext_tcp);
  EXPECT_FALSE(c.openai.tls.enabled());
}

TEST(TcpConfig, LoopbackPlaintextIsAccepted) {
  EXPECT_EQ(parse("server:\n  tcp_listen: 127.0.0.1:0\n").server.tcp_listen, "127.0.0.1:0");
  EXPECT_EQ(parse("server:\n  tcp_listen: \"[::1]:7000\"\n").server.tcp_listen, "[::1]:7000");
  EXPECT_EQ(parse("server:\n  tcp_listen: localhost:7000\n").server.tcp_listen, "localhost:7000");
}

TEST(TcpConfig, EnvironmentSetsAndClearsTheListener) {
  EXPECT_EQ(parse("", {{"DROVER_SERVER_TCP_LISTEN", "127.0.0.1:7001"}}).server.tcp_listen,
            "127.0.0.1:7001");
  EXPECT_TRUE(parse("server:\n  tcp_listen: 127.0.0.1:7000\n", {{"DROVER_SERVER_TCP_LISTEN", ""}})
                  .server.tcp_listen.empty());
}

TEST(TcpConfig, NotHostPortIsRefusedNamingTheKey) {
  for (const char* bad : {"7000", "127.0.0.1:70000", ":7000", "::1:7000"}) {
    const std::string e = error_of(std::string("server:\n  tcp_listen: \"") + bad + "\"\n");
    EXPECT_NE(e.find("server.tcp_listen"), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find("host:port"), std::string::npos) << e;
  }
}

TEST(TcpConfig, NonLoopbackPlaintextIsRefusedUnlessAllowed) {
  const std::string e = error_of("server:\n  tcp_listen: 0.0.0.0:7000\n");
  EXPECT_NE(e.find("server.tcp_listen"), std::string::npos) << e;
  EXPECT_NE(e.find("server.tls"), std::string::npos) << e;
  EXPECT_NE(e.find("server.allow_plaintext_tcp"), std::string::npos) << e;
  const Config c = parse("server:\n  tcp_listen: 0.0.0.0:7000\n  allow_plaintext_tcp: true\n");
  EXPECT_EQ(c.server.tcp_listen, "0.0.0.0:7000");
  EXPECT_TRUE(c.server.allow_plaintext_tcp);
}

TEST(TcpConfig, NonLoopbackWithTlsIsAccepted) {
  const auto& k = certs();
  const Config c = parse("server:\n  tcp_listen: 0.0.0.0:7000\n" +
                         server_tls(k.server_cert(), k.server_key(), k.ca()));
  EXPECT_EQ(c.server.tls.cert_file, k.server_cert());
  EXPECT_EQ(c.server.tls.key_file, k.server_key());
  EXPECT_EQ(c.server.tls.client_ca_file, k.ca());
  // config.get shows the paths; changing them needs a restart like the listener.
  const auto j = to_json(c);
  EXPECT_EQ(j["server"]["tcp_listen"], "0.0.0.0:7000");
  EXPECT_EQ(j["server"]["tls"]["client_ca_file"], k.ca());
  const auto changed = changed_keys(parse(""), c);
  EXPECT_NE(std::find(changed.begin(), changed.end(), "server.tls"), changed.end());
  EXPECT_NE(std::find(changed.begin(), changed.end(), "server.tcp_listen"), changed.end());
}

TEST(TcpConfig, TlsFilesAreCheckedAtLoadNamingTheKey) {
  const auto& k = certs();
  const std::string missing = k.dir() + "/absent.pem";
  const std::string garbage = k.dir() + "/garbage.pem";
  std::ofstream(garbage) << "not a certificate\n";
  struct Case {
    std::string tls, key;
  } cases[] = {
      {server_tls(missing, k.server_key()), "server.tls.cert_file"},
      {server_tls(garbage, k.server_key()), "server.tls.cert_file"},
      {server_tls(k.server_cert(), missing), "server.tls.key_file"},
      {server_tls(k.server_cert(), garbage), "server.tls.key_file"},
      // A key that is not the certificate's.
      {server_tls(k.server_cert(), k.client_key()), "server.tls.key_file"},
      {server_tls(k.server_cert(), k.server_key(), missing), "server.tls.client_ca_file"},
      {server_tls(k.server_cert(), k.server_key(), garbage), "server.tls.client_ca_file"},
  };
  for (const auto& c : cases) {
    const std::string e = error_of("server:\n" + c.tls);
    EXPECT_NE(e.find("'" + c.key + "'"), std::string::npos) << c.tls << "\n-> " << e;
  }
}

TEST(TcpConfig, CertAndKeyGoTogether) {
  const auto& k = certs();
  std::string e = error_of("server:\n  tls:\n    cert_file: " + k.server_cert() + "\n");
  EXPECT_NE(e.find("server.tls.key_file"), std::string::npos) << e;
  e = error_of("server:\n  tls:\n    client_ca_file: " + k.ca() + "\n");
  EXPECT_NE(e.find("server.tls.client_ca_file"), std::string::npos) << e;
  e = error_of("server:\n  tls:\n    cert: x\n");
  EXPECT_NE(e.find("server.tls.cert"), std::string::npos) << e;
}

TEST(TcpConfig, OpenAiTlsIsReadAndChecked) {
  const auto& k = certs();
  const Config c = parse("openai:\n" + server_tls(k.server_cert(), k.server_key()));
  EXPECT_TRUE(c.openai.tls.enabled());
  EXPECT_EQ(to_json(c)["openai"]["tls"]["cert_file"], k.server_cert());
  const std::string e =
      error_of("openai:\n" + server_tls(k.server_cert(), k.dir() + "/absent.key"));
  EXPECT_NE(e.find("'openai.tls.key_file'"), std::string::npos) << e;
}

}  // namespace
}  // namespace drover
