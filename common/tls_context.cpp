#include "common/tls_context.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <fstream>
#include <stdexcept>

namespace drover {

std::string openssl_reason() {
  std::string out;
  while (const unsigned long e = ::ERR_get_error()) {
    if (!out.empty()) continue;
    char buf[256];
    ::ERR_error_string_n(e, buf, sizeof(buf));
    out = buf;
  }
  return out;
}

namespace {

[[noreturn]] void fail(const std::string& key, const std::string& file, const std::string& what,
                       const boost::system::error_code& ec) {
  const std::string reason = openssl_reason();
  throw std::runtime_error(fmt::format("key '{}': '{}' {} ({})", key, file, what,
                                       reason.empty() ? ec.message() : reason));
}

void require_readable(const std::string& key, const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(fmt::format("key '{}': cannot read '{}'", key, file));
}

}  // namespace

std::shared_ptr<boost::asio::ssl::context> make_tls_server_context(const TlsConfig& tls,
                                                                   const std::string& path) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ::ERR_clear_error();
  ::SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::single_dh_use);
  boost::system::error_code ec;
  const std::string cert_key = path + ".cert_file", key_key = path + ".key_file";
  require_readable(cert_key, tls.cert_file);
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) fail(cert_key, tls.cert_file, "holds no PEM certificate chain", ec);
  require_readable(key_key, tls.key_file);
  ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec);
  if (ec) fail(key_key, tls.key_file, "holds no PEM private key", ec);
  if (::SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    fail(key_key, tls.key_file, fmt::format("is not the key of {}", tls.cert_file), ec);
  }
  if (!tls.client_ca_file.empty()) {
    const std::string ca_key = path + ".client_ca_file";
    require_readable(ca_key, tls.client_ca_file);
    ctx->load_verify_file(tls.client_ca_file, ec);
    if (ec) fail(ca_key, tls.client_ca_file, "holds no PEM CA certificate", ec);
    // Tell clients which CA we accept (what `openssl s_client` shows as acceptable CA names).
    if (STACK_OF(X509_NAME)* names = ::SSL_load_client_CA_file(tls.client_ca_file.c_str())) {
      ::SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    // Session resumption with client verification needs an id context (else OpenSSL refuses
    // resumed sessions).
    static constexpr unsigned char kSessionContext[] = "drover";
    ::SSL_CTX_set_session_id_context(ctx->native_handle(), kSessionContext, sizeof(kSessionContext) - 1);
  }
  ::ERR_clear_error();
  return ctx;
}

}  // namespace drover
