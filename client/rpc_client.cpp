#include "client/rpc_client.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "client/tls_channel.hpp"
#include "common/config.hpp"

namespace drover::client {

namespace {

int connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    throw ClientError(fmt::format("socket path too long: {}", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ClientError(fmt::format("socket(): {}", std::strerror(errno)));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    throw ClientError(fmt::format("cannot connect to {}: {}", path, std::strerror(err)));
  }
  return fd;
}

// The first address of `host` that accepts a connection (Nagle off: requests are small).
int connect_tcp(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    throw ClientError(fmt::format("cannot resolve '{}': {}", host, ::gai_strerror(rc)));
  }
  std::string error = "no address";
  int fd = -1;
  for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) throw ClientError(fmt::format("cannot connect to {}:{}: {}", host, port, error));
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

TlsOptions TlsOptions::from_environment() {
  TlsOptions o;
  if (const char* v = std::getenv("DROVER_TLS_CA")) o.ca_file = v;
  if (const char* v = std::getenv("DROVER_TLS_CERT")) o.cert_file = v;
  if (const char* v = std::getenv("DROVER_TLS_KEY")) o.key_file = v;
  return o;
}

RpcClient::RpcClient(const std::string& address, proto::Framing framing,
                     std::size_t max_message_bytes, const TlsOptions& tls)
    : framing_(framing), decoder_(max_message_bytes) {
  const bool plain = address.starts_with("tcp://");
  if (!plain && !address.starts_with("tls://")) {
    fd_ = connect_unix(address);
    return;
  }
  const auto hp = parse_host_port(address.substr(6));
  if (!hp) throw ClientError(fmt::format("'{}' is not tcp://HOST:PORT or tls://HOST:PORT", address));
  fd_ = connect_tcp(hp->host, hp->port);
  if (plain) return;
  try {
    tls_ = std::make_unique<TlsChannel>(fd_, hp->host, tls,
                                        std::chrono::steady_clock::now() + std::chrono::seconds(30));
  } catch (...) {
    close();
    throw;
  }
}

RpcClient::RpcClient(int fd, proto::Framing framing, std::size_t max_message_bytes)
    : fd_(fd), framing_(framing), decoder_(max_message_bytes) {}

RpcClient RpcClient::adopt(int fd, proto::Framing framing, std::size_t max_message_bytes) {
  return RpcClient(fd, framing, max_message_bytes);
}

RpcClient::~RpcClient() { close(); }

RpcClient::RpcClient(RpcClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      tls_(std::move(other.tls_)),
      framing_(other.framing_),
      decoder_(std::move(other.decoder_)),
      next_id_(other.next_id_),
      eof_(other.eof_) {}

void RpcClient::close() {
  tls_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RpcClient::shutdown_write() {
  if (tls_) {
    tls_->shutdown_write();
  } else if (fd_ >= 0) {
    ::shutdown(fd_, SHUT_WR);
  }
}

void RpcClient::send_raw(std::string_view bytes) {
  if (tls_) {
    tls_->write_all(bytes);
    return;
  }
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ClientError(fmt::format("send(): {}", std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void RpcClient::send(const json& message) {
  send_raw(proto::encode_frame(framing_, message.dump()));
}

std::int64_t RpcClient::send_request(std::string_view method, const json& params) {
  const std::int64_t id = next_id_++;
  json req = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
  if (!params.is_null()) req["params"] = params;
  send(req);
  return id;
}

bool RpcClient::fill(std::chrono::steady_clock::time_point deadline) {
  char buf[65536];
  if (tls_) {
    const long n = tls_->read(buf, sizeof(buf), deadline);
    if (n < 0) return false;
    if (n == 0) {
      eof_ = true;
      throw ClientError("connection closed by server");
    }
    decoder_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    return true;
  }
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      throw ClientError("connection closed by server");
    }
    decoder_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    return true;
  }
}

std::optional<std::string> RpcClient::read_text(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto frame = decoder_.next()) {
      if (frame->kind != proto::Frame::Kind::message) {
        throw ClientError("bad frame from server: " + frame->detail);
      }
      return std::move(frame->body);
    }
    if (!fill(deadline)) return std::nullopt;
  }
}

std::optional<json> RpcClient::read(std::chrono::milliseconds timeout) {
  auto text = read_text(timeout);
  if (!text) return std::nullopt;
  json v = json::parse(*text, nullptr, false);
  if (v.is_discarded()) throw ClientError("server sent invalid JSON: " + *text);
  return v;
}

json RpcClient::call(std::string_view method, const json& params, std::chrono::milliseconds timeout,
                     const std::function<void(const json&)>& on_notification) {
  const std::int64_t id = send_request(method, params);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto msg = read(std::max(left, std::chrono::milliseconds(0)));
    if (!msg) throw ClientError(fmt::format("no reply to '{}' within {} ms", method, timeout.count()));
    if (msg->is_object() && msg->contains("method") && !msg->contains("id")) {
      if (on_notification) on_notification(*msg);
      continue;
    }
    if (msg->is_object() && msg->value("id", json()) == json(id)) return *msg;
    // A reply to something else (another request on this connection): not ours, skip it.
  }
}

}  // namespace drover::client
