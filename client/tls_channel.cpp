#include "client/tls_channel.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "client/rpc_client.hpp"
#include "common/tls_context.hpp"

namespace drover::client {
namespace {

// Until `fd` is ready for `events`; false when `deadline` passes first.
bool wait_ready(int fd, short events, TlsChannel::Deadline deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

bool is_ip_address(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

struct TlsChannel::State {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  ~State() {
    if (ssl) ::SSL_free(ssl);
    if (ctx) ::SSL_CTX_free(ctx);
  }
  // Waits for what the last call on `ssl` returned `r` needs: true to retry, false on timeout.
  // Throws on an error. Sets `eof` when the peer closed.
  bool retry(int fd, int r, Deadline deadline, bool& eof, const char* what) {
    switch (::SSL_get_error(ssl, r)) {
      case SSL_ERROR_WANT_READ:
        return wait_ready(fd, POLLIN, deadline);
      case SSL_ERROR_WANT_WRITE:
        return wait_ready(fd, POLLOUT, deadline);
      case SSL_ERROR_ZERO_RETURN:
        eof = true;
        return false;
      case SSL_ERROR_SYSCALL:
        if (errno == 0 || errno == ECONNRESET || errno == EPIPE) {
          eof = true;
          return false;
        }
        throw ClientError(fmt::format("TLS {}: {}", what, std::strerror(errno)));
      default: {
        std::string reason = openssl_reason();
        const long verify = ::SSL_get_verify_result(ssl);
        if (verify != X509_V_OK) {
          reason += fmt::format(" (certificate: {})", ::X509_verify_cert_error_string(verify));
        }
        throw ClientError(fmt::format("TLS {} failed: {}", what, reason));
      }
    }
  }
};

TlsChannel::TlsChannel(int fd, const std::string& host, const TlsOptions& o, Deadline deadline)
    : s_(std::make_unique<State>()), fd_(fd) {
  ::ERR_clear_error();
  s_->ctx = ::SSL_CTX_new(::TLS_client_method());
  if (!s_->ctx) throw ClientError("TLS: cannot create a context: " + openssl_reason());
  ::SSL_CTX_set_min_proto_version(s_->ctx, TLS1_2_VERSION);
  // droverd closes TLS connections without close_notify; JSON-RPC framing is self-delimiting,
  // so a cut-off message is still noticed by the decoder.
  ::SSL_CTX_set_options(s_->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  ::SSL_CTX_set_verify(s_->ctx, SSL_VERIFY_PEER, nullptr);
  const int loaded = o.ca_file.empty()
                         ? ::SSL_CTX_set_default_verify_paths(s_->ctx)
                         : ::SSL_CTX_load_verify_locations(s_->ctx, o.ca_file.c_str(), nullptr);
  if (loaded != 1) {
    throw ClientError(fmt::format("TLS: cannot load CA file '{}': {}", o.ca_file, openssl_reason()));
  }
  if (!o.cert_file.empty() || !o.key_file.empty()) {
    if (o.cert_file.empty() || o.key_file.empty()) {
      throw ClientError("TLS: a client certificate needs both a certificate and a key file");
    }
    if (::SSL_CTX_use_certificate_chain_file(s_->ctx, o.cert_file.c_str()) != 1) {
      throw ClientError(fmt::format("TLS: cannot load certificate '{}': {}", o.cert_file, openssl_reason()));
    }
    if (::SSL_CTX_use_PrivateKey_file(s_->ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        ::SSL_CTX_check_private_key(s_->ctx) != 1) {
      throw ClientError(fmt::format("TLS: cannot load key '{}' for '{}': {}", o.key_file, o.cert_file,
                                    openssl_reason()));
    }
  }
  s_->ssl = ::SSL_new(s_->ctx);
  if (!s_->ssl || ::SSL_set_fd(s_->ssl, fd) != 1) {
    throw ClientError("TLS: cannot create a connection: " + openssl_reason());
  }
  // The name to verify: an IP address against the certificate's IP SANs, a host name against
  // its DNS names (and as SNI).
  const bool named = is_ip_address(host)
                         ? ::X509_VERIFY_PARAM_set1_ip_asc(::SSL_get0_param(s_->ssl), host.c_str()) == 1
                         : ::SSL_set1_host(s_->ssl, host.c_str()) == 1 &&
                               ::SSL_set_tlsext_host_name(s_->ssl, host.c_str()) == 1;
  if (!named) throw ClientError(fmt::format("TLS: cannot verify against host '{}'", host));
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  for (;;) {
    ::ERR_clear_error();
    const int r = ::SSL_connect(s_->ssl);
    if (r == 1) break;
    bool eof = false;
    if (!s_->retry(fd, r, deadline, eof, "handshake")) {
      throw ClientError(eof ? "TLS handshake failed: the server closed the connection"
                            : "TLS handshake timed out");
    }
  }
}

TlsChannel::~TlsChannel() = default;

void TlsChannel::write_all(std::string_view bytes) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!bytes.empty()) {
    ::ERR_clear_error();
    const int n = ::SSL_write(s_->ssl, bytes.data(), static_cast<int>(std::min<std::size_t>(bytes.size(), 1 << 30)));
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    bool eof = false;
    if (!s_->retry(fd_, n, deadline, eof, "write")) {
      throw ClientError(eof ? "TLS write: connection closed by server" : "TLS write timed out");
    }
  }
}

long TlsChannel::read(char* buf, std::size_t size, Deadline deadline) {
  for (;;) {
    ::ERR_clear_error();
    const int n = ::SSL_read(s_->ssl, buf, static_cast<int>(std::min<std::size_t>(size, 1 << 30)));
    if (n > 0) return n;
    bool eof = false;
    if (!s_->retry(fd_, n, deadline, eof, "read")) return eof ? 0 : -1;
  }
}

void TlsChannel::shutdown_write() {
  ::ERR_clear_error();
  if (::SSL_shutdown(s_->ssl) < 0 && ::SSL_get_error(s_->ssl, -1) == SSL_ERROR_WANT_WRITE) {
    wait_ready(fd_, POLLOUT, std::chrono::steady_clock::now() + std::chrono::seconds(5));
    ::SSL_shutdown(s_->ssl);
  }
}

}  // namespace drover::client
