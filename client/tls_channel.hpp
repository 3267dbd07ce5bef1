// TlsChannel: the client side of TLS on a connected TCP socket (OpenSSL), for RpcClient's
// tls:// addresses. Blocking calls with deadlines: the socket is non-blocking underneath and
// every wait is a poll() bounded by the caller's deadline, so a silent server cannot hang a
// reader. Verification: see rpc_client.hpp (chain to the CA, host name or IP address in the
// certificate). One thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace drover::client {

struct TlsOptions;

class TlsChannel {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  // Handshakes on `fd` (not owned) as a client of `host`; throws ClientError with OpenSSL's
  // reason (a certificate that does not verify says why) when it fails or passes `deadline`.
  TlsChannel(int fd, const std::string& host, const TlsOptions& options, Deadline deadline);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  void write_all(std::string_view bytes);
  // Up to `size` bytes: > 0 read, 0 the server closed (close_notify, or TCP EOF), -1 nothing
  // before `deadline`. Throws ClientError on a TLS error (e.g. the server's alert refusing
  // our certificate).
  long read(char* buf, std::size_t size, Deadline deadline);
  // Sends close_notify: no more writes, reads go on.
  void shutdown_write();

 private:
  struct State;
  std::unique_ptr<State> s_;
  int fd_;
};

}  // namespace drover::client
