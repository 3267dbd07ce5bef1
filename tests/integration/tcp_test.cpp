// JSON-RPC over TCP and TLS (server.tcp_listen, server.tls) and the OpenAI API over HTTPS
// (openai.tls), against a real droverd: the TCP listener serves what the Unix socket serves
// (same results, same errors, client methods only), TLS and mutual TLS admit exactly the
// peers they should, and a client that never handshakes is cut off. Certificates come from
// TestCerts (the openssl CLI, a private temp dir); listen ports are 0, read back from the log.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "harness.hpp"
#include "tests/support/test_certs.hpp"

namespace drover::test {
namespace {

// The port droverd logged right after `marker` (bounded wait); 0 when it does not appear.
int logged_port(DroverProcess& d, const std::string& marker) {
  int port = 0;
  wait_until([&] {
    const std::string log = d.log();
    const auto at = log.find(marker);
    if (at != std::string::npos) port = std::atoi(log.c_str() + at + marker.size());
    return port > 0;
  });
  return port;
}

// The address droverd logged for its TCP listener ("JSON-RPC on tcp://127.0.0.1:PORT"), as
// an RpcClient address; "" when it does not appear.
std::string logged_address(DroverProcess& d, const std::string& scheme) {
  const int port = logged_port(d, "JSON-RPC on " + scheme + "://127.0.0.1:");
  return port > 0 ? scheme + "://127.0.0.1:" + std::to_string(port) : std::string();
}

int port_of(const std::string& address) { return std::atoi(address.c_str() + address.rfind(':') + 1); }

json generate_params() {
  return {{"prompt", "the quick brown fox"}, {"max_tokens", 12}, {"seed", 7}, {"temperature", 0.8},
          {"cache", "bypass"}};
}

// The error code droverd answers to `bytes` sent raw on a fresh connection made by `connect`.
template <typename Connect>
int error_for(Connect connect, const std::string& bytes) {
  RpcClient c = connect();
  c.send_raw(bytes);
  return error_code(read_one(c));
}

class TcpTest : public DroverTest {
 protected:
  static DroverOptions tcp_options() {
    DroverOptions o;
    o.server_yaml = {"tcp_listen: 127.0.0.1:0", "max_message_bytes: 4096"};
    return o;
  }
};

TEST_F(TcpTest, GenerateOverTcpEqualsTheUnixSocketsResult) {
  ASSERT_TRUE(start(tcp_options()));
  const std::string address = logged_address(d(), "tcp");
  ASSERT_FALSE(address.empty()) << d().log();
  auto unix_client = d().client();
  const json over_unix = unix_client.call("generate", generate_params());
  ASSERT_TRUE(is_result(over_unix)) << over_unix.dump();
  RpcClient tcp(address);
  const json over_tcp = tcp.call("generate", generate_params());
  ASSERT_TRUE(is_result(over_tcp)) << over_tcp.dump();
  EXPECT_EQ(over_tcp["result"]["text"], over_unix["result"]["text"]);
  EXPECT_FALSE(over_tcp["result"]["text"].get<std::string>().empty());
  // Content-Length framing is detected over TCP as well, and a stream's chunks add up.
  RpcClient lsp(address, proto::Framing::content_length);
  json params = generate_params();
  params["stream"] = true;
  std::string chunks;
  const json streamed = lsp.call("generate", params, kReplyTimeout, [&](const json& n) {
    chunks += n["params"]["text"].get<std::string>();
  });
  ASSERT_TRUE(is_result(streamed)) << streamed.dump();
  EXPECT_EQ(streamed["result"]["text"], over_unix["result"]["text"]);
  EXPECT_EQ(chunks, over_unix["result"]["text"].get<std::string>());
}

TEST_F(TcpTest, BadInputGetsTheSameErrorsAsOnTheUnixSocket) {
  ASSERT_TRUE(start(tcp_options()));
  const std::string address = logged_address(d(), "tcp");
  ASSERT_FALSE(address.empty()) << d().log();
  const auto over_unix = [this] { return d().client(); };
  const auto over_tcp = [&address] { return RpcClient(address); };
  const std::string malformed = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n";
  const std::string oversized =
      R"({"jsonrpc":"2.0","id":2,"method":"generate","params":{"prompt":")" + std::string(6000, 'x') +
      "\"}}\n";
  const std::string admin = R"({"jsonrpc":"2.0","id":3,"method":"workers.list"})" "\n";
  EXPECT_EQ(error_for(over_unix, malformed), -32700);
  EXPECT_EQ(error_for(over_tcp, malformed), -32700);
  EXPECT_EQ(error_for(over_unix, oversized), -32007);
  EXPECT_EQ(error_for(over_tcp, oversized), -32007);
  // Admin methods stay on the admin socket.
  EXPECT_EQ(error_for(over_unix, admin), -32008);
  EXPECT_EQ(error_for(over_tcp, admin), -32008);
  // The connection survives a bad line: the next request on it is served.
  RpcClient c(address);
  c.send_raw(malformed);
  EXPECT_EQ(error_code(read_one(c)), -32700);
  EXPECT_TRUE(is_result(c.call("health")));
}

TEST_F(TcpTest, SigtermStopsAcceptingOnTcp) {
  DroverOptions o = tcp_options();
  o.worker_args = {"--ttft-ms", "1500"};
  ASSERT_TRUE(start(o));
  const std::string address = logged_address(d(), "tcp");
  ASSERT_FALSE(address.empty()) << d().log();
  RpcClient busy(address);
  const auto id = busy.send_request("generate", generate_params());
  // In flight at a worker before the signal (else a loaded machine may read it only after the
  // drain began, and it is answered -32009).
  ASSERT_TRUE(wait_until([&] {
    for (const auto& w : d().workers()) {
      if (w.value("inflight", 0) > 0) return true;
    }
    return false;
  }));
  d().terminate();
  // New connections are refused while the request in flight is still answered (the workers do
  // not hold the listening socket open: they never inherit it).
  EXPECT_TRUE(wait_until([&] {
    try {
      RpcClient probe(address);
      return false;
    } catch (const client::ClientError&) {
      return true;
    }
  })) << d().log();
  const json reply = read_reply(busy, id);
  EXPECT_TRUE(is_result(reply)) << reply.dump();
  const auto status = d().wait_exit();
  ASSERT_TRUE(status.has_value()) << d().log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << d().log();
}

class TlsTest : public DroverTest {
 protected:
  TestCerts certs_;

  DroverOptions tls_options(bool mutual) {
    DroverOptions o;
    o.server_yaml = {"tcp_listen: 127.0.0.1:0", "partial_message_timeout_ms: 500", "tls:",
                     "  cert_file: " + certs_.server_cert(), "  key_file: " + certs_.server_key()};
    if (mutual) o.server_yaml.push_back("  client_ca_file: " + certs_.ca());
    return o;
  }

  client::TlsOptions trusting(const std::string& ca, const std::string& cert = "",
                              const std::string& key = "") {
    return client::TlsOptions{ca, cert, key};
  }

  // Whether a client with `tls` gets a health answer at `address` (false: refused, with the
  // reason in `why`).
  static bool served(const std::string& address, const client::TlsOptions& tls, std::string& why) {
    try {
      RpcClient c(address, proto::Framing::ndjson, 1 << 20, tls);
      return is_result(c.call("health", nullptr, 10s));
    } catch (const client::ClientError& e) {
      why = e.what();
      return false;
    }
  }
};

TEST_F(TlsTest, GenerateOverTlsAndHostVerification) {
  ASSERT_TRUE(start(tls_options(false)));
  const std::string address = logged_address(d(), "tls");
  ASSERT_FALSE(address.empty()) << d().log();
  const json over_unix = d().client().call("generate", generate_params());
  RpcClient c(address, proto::Framing::ndjson, 1 << 20, trusting(certs_.ca()));
  const json over_tls = c.call("generate", generate_params());
  ASSERT_TRUE(is_result(over_tls)) << over_tls.dump();
  EXPECT_EQ(over_tls["result"]["text"], over_unix["result"]["text"]);
  // The certificate names DNS:localhost too.
  std::string why;
  EXPECT_TRUE(served("tls://localhost:" + std::to_string(port_of(address)),
                     trusting(certs_.ca()), why))
      << why;
  // A server certificate from a CA the client does not trust is refused by the client.
  EXPECT_FALSE(served(address, trusting(certs_.other_ca()), why));
  EXPECT_NE(why.find("certificate verify failed"), std::string::npos) << why;
  // A plaintext client on the TLS port gets nothing served.
  RpcClient plain("tcp://127.0.0.1:" + std::to_string(port_of(address)));
  plain.send_raw(R"({"jsonrpc":"2.0","id":1,"method":"health"})" "\n");
  EXPECT_THROW(
      {
        auto m = plain.read(10s);
        if (m) ADD_FAILURE() << "plaintext answered: " << m->dump();
        throw client::ClientError("no answer");
      },
      client::ClientError);
  // droverctl: tls:// with --tls-ca.
  const auto r = run_program({droverctl_bin(), "--socket", address, "--tls-ca", certs_.ca(), "call",
                              "health"},
                             d().dir());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\"status\""), std::string::npos) << r.out;
}

TEST_F(TlsTest, MutualTlsAdmitsOnlyClientsWithACertificateFromTheClientCa) {
  ASSERT_TRUE(start(tls_options(true)));
  const std::string address = logged_address(d(), "tls");
  ASSERT_FALSE(address.empty()) << d().log();
  EXPECT_NE(d().log().find("client certificates required"), std::string::npos);
  std::string why;
  EXPECT_TRUE(served(address, trusting(certs_.ca(), certs_.client_cert(), certs_.client_key()), why))
      << why;
  why.clear();
  EXPECT_FALSE(served(address, trusting(certs_.ca()), why)) << "no client certificate";
  EXPECT_NE(why.find("certificate required"), std::string::npos) << why;
  why.clear();
  EXPECT_FALSE(served(address,
                      trusting(certs_.ca(), certs_.other_client_cert(), certs_.other_client_key()),
                      why))
      << "client certificate from another CA";
  EXPECT_NE(why.find("unknown ca"), std::string::npos) << why;
  // droverctl with the right files, from the environment.
  const auto r = run_program({"/usr/bin/env", "DROVER_TLS_CA=" + certs_.ca(),
                              "DROVER_TLS_CERT=" + certs_.client_cert(),
                              "DROVER_TLS_KEY=" + certs_.client_key(), droverctl_bin(), "--socket",
                              address, "call", "health"},
                             d().dir());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto refused =
      run_program({droverctl_bin(), "--socket", address, "--tls-ca", certs_.ca(), "call", "health"},
                  d().dir());
  EXPECT_EQ(refused.exit_code, 3) << refused.out << refused.err;
}

TEST_F(TlsTest, AClientThatNeverHandshakesIsClosedAfterTheBound) {
  ASSERT_TRUE(start(tls_options(false)));
  const std::string address = logged_address(d(), "tls");
  ASSERT_FALSE(address.empty()) << d().log();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port_of(address)));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  // Silent: droverd closes it once partial_message_timeout_ms (500) has passed.
  bool closed = false;
  wait_until([&] {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return false;
    char byte;
    closed = ::recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
    return true;
  });
  ::close(fd);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(wait_until([&] { return d().log().find("TLS handshake failed: not completed within 500 ms") != std::string::npos; }))
      << d().log();
}

TEST_F(TlsTest, OpenAiApiOverHttps) {
  DroverOptions o;
  o.extra_yaml = "openai:\n  enabled: true\n  listen: 127.0.0.1:0\n  tls:\n    cert_file: " +
                 certs_.server_cert() + "\n    key_file: " + certs_.server_key() + "\n";
  ASSERT_TRUE(start(o));
  const int port = logged_port(d(), "OpenAI-compatible API on https://127.0.0.1:");
  ASSERT_GT(port, 0) << d().log();
  const std::string curl = find_in_path("curl");
  ASSERT_FALSE(curl.empty()) << "curl is in DROVER_PACKAGES";
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/v1/completions";
  const auto ok = run_program({curl, "-sS", "--cacert", certs_.ca(), "-H",
                               "Content-Type: application/json", "-d",
                               R"({"model":"sim","prompt":"hello","max_tokens":4})", url},
                              d().dir());
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"text_completion\""), std::string::npos) << ok.out;
  // curl refuses a server certificate from a CA it was not given.
  const auto refused = run_program({curl, "-sS", "--cacert", certs_.other_ca(), url}, d().dir());
  EXPECT_NE(refused.exit_code, 0) << refused.out;
}

}  // namespace
}  // namespace drover::test
