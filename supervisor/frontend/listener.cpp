#include "supervisor/frontend/listener.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"

namespace drover::supervisor {
namespace local = asio::local;

local::stream_protocol::acceptor bind_unix_socket(asio::io_context& io, const std::string& path,
                                                  std::uint32_t mode, uid_t owner, gid_t group) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    throw std::runtime_error(fmt::format("socket path '{}' is longer than {} bytes", path,
                                         sizeof(sockaddr_un::sun_path) - 1));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw std::runtime_error(fmt::format("'{}' exists and is not a socket; not touching it", path));
    }
    // A socket file: live if something accepts on it, stale otherwise.
    local::stream_protocol::socket probe(io);
    boost::system::error_code ec;
    probe.connect(local::stream_protocol::endpoint(path), ec);
    if (!ec) {
      throw std::runtime_error(
          fmt::format("another server is already listening on '{}'; refusing to start", path));
    }
    ::unlink(path.c_str());
    component_logger("frontend")->info("removed stale socket file {}", path);
  }
  local::stream_protocol::acceptor acceptor(io);
  acceptor.open(local::stream_protocol());
  // Create the file with no access, then open it up to the configured mode, so there is no
  // window in which the socket is reachable with the umask's permissions.
  const mode_t old_umask = ::umask(0777);
  boost::system::error_code ec;
  acceptor.bind(local::stream_protocol::endpoint(path), ec);
  ::umask(old_umask);
  if (ec) throw std::runtime_error(fmt::format("cannot bind '{}': {}", path, ec.message()));
  // Still mode 0000 here: the owner changes before anyone can connect.
  if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) &&
      ::chown(path.c_str(), owner, group) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw std::runtime_error(fmt::format(
        "cannot chown '{}' to uid {} gid {}: {} (only root, or a member of the group, may)", path,
        static_cast<int>(owner), static_cast<int>(group), std::strerror(err)));
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) {
    throw std::runtime_error(fmt::format("cannot chmod '{}' to {:o}", path, mode));
  }
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor;
}

Listener::Listener(asio::io_context& io, Options options, RequestHandler& handler)
    : io_(io),
      opt_(std::move(options)),
      acceptor_(bind_unix_socket(io, opt_.path, opt_.mode, opt_.owner, opt_.group)),
      sessions_(handler, opt_.admin, opt_.max_connections, opt_.session) {}

Listener::~Listener() {
  stop_accepting();
  close_all();
}

void Listener::start() {
  accepting_ = true;
  spawn(io_, accept_loop());
}

asio::awaitable<void> Listener::accept_loop() {
  auto log = component_logger("frontend");
  while (accepting_) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
    if (ec == asio::error::operation_aborted || !accepting_) co_return;
    if (ec) {
      // EMFILE and friends: log, back off briefly, keep the listener alive.
      log->error("accept on {} failed: {}", opt_.path, ec.message());
      asio::steady_timer pause(io_, Millis(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    if (opt_.admin && !peer_allowed(socket)) continue;
    if (sessions_.full(socket.native_handle(), /*explain=*/true, opt_.path)) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    sessions_.open(ConnectionStream(std::move(socket)));
  }
}

bool Listener::peer_allowed(local::stream_protocol::socket& socket) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    component_logger("frontend")->warn("admin connection refused: cannot read peer credentials");
    return false;
  }
  const auto& uids = opt_.allowed_uids;
  if (cred.uid == 0 || cred.uid == ::getuid() ||
      std::find(uids.begin(), uids.end(), cred.uid) != uids.end()) {
    return true;
  }
  component_logger("frontend")->warn(
      "admin connection refused: peer uid {} (pid {}) is not in server.admin_uids", cred.uid, cred.pid);
  boost::system::error_code ignored;
  socket.close(ignored);
  return false;
}

void Listener::stop_accepting() {
  if (!acceptor_.is_open()) return;
  accepting_ = false;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  if (::unlink(opt_.path.c_str()) != 0 && errno != ENOENT) {
    component_logger("frontend")->warn(
        "cannot remove socket file {}: {}; the next droverd start replaces it as stale (give "
        "droverd's user write access to its directory to have it removed at exit)",
        opt_.path, std::strerror(errno));
  }
}

}  // namespace drover::supervisor
