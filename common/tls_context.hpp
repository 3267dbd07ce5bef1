// The TLS server context of a TCP listener (server.tls, openai.tls) built from its TlsConfig
// with Boost.Asio SSL (OpenSSL): TLS 1.2 or later only, the certificate chain and the key
// (checked to belong together), and with client_ca_file mutual TLS — the peer must present a
// certificate signed by that CA (verify_peer | verify_fail_if_no_peer_cert). The config loader
// builds one to check the files at load; the listeners build theirs at start.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

#include "common/config.hpp"

namespace drover {

// REQUIRES: tls.enabled(). Throws std::runtime_error naming `<path>.cert_file`, `.key_file` or
// `.client_ca_file` and the file when one is missing, unreadable or not what it should hold.
std::shared_ptr<boost::asio::ssl::context> make_tls_server_context(const TlsConfig& tls,
                                                                   const std::string& path);

// OpenSSL's first queued error as text, the root cause ("" when the queue is empty); empties
// the queue (for droverd's and the clients' TLS error messages).
std::string openssl_reason();

}  // namespace drover
