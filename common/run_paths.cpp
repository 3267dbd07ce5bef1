#include "common/run_paths.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace drover {
namespace {

std::string env_value(const Environment& env, const std::string& name) {
  const auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

}  // namespace

std::string default_run_base(const Environment& env, uid_t euid) {
  if (const std::string xdg = env_value(env, "XDG_RUNTIME_DIR"); !xdg.empty()) {
    return xdg + "/drover";
  }
  if (euid == 0) return "/run/drover";
  std::string tmp = env_value(env, "TMPDIR");
  if (tmp.empty()) tmp = "/tmp";
  return fmt::format("{}/drover-{}", tmp, euid);
}

std::string default_client_socket(const std::string& base) {
  return fmt::format("{}/{}", base, kClientSocketName);
}

std::string default_admin_socket(const std::string& base) {
  return fmt::format("{}/{}", base, kAdminSocketName);
}

std::string untrusted_run_base(const std::string& base, uid_t euid) {
  struct stat st {};
  if (::lstat(base.c_str(), &st) != 0) return {};
  if (S_ISLNK(st.st_mode)) return fmt::format("'{}' is a symlink; refusing to use it", base);
  if (!S_ISDIR(st.st_mode)) return fmt::format("'{}' is not a directory; refusing to use it", base);
  if (st.st_uid != euid && st.st_uid != 0) {
    return fmt::format(
        "'{}' is owned by uid {}, not by this user (uid {}) or root; refusing to use it "
        "(someone else may be listening there; pass --socket/--admin-socket to choose)",
        base, st.st_uid, euid);
  }
  return {};
}

void ensure_private_dir(const std::string& path, std::string_view what, mode_t mode, uid_t owner,
                        gid_t group) {
  // mkdir, not create_directories: a missing parent ($XDG_RUNTIME_DIR gone, no /run) is an
  // error to report, not something to invent with default permissions.
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error(
        fmt::format("{}: cannot create '{}': {}", what, path, std::strerror(errno)));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(fmt::format(
        "{}: '{}' cannot be opened as a directory (a symlink is refused): {}", what, path,
        std::strerror(errno)));
  }
  struct stat st {};
  std::string problem;
  if (::fstat(fd, &st) != 0) {
    problem = fmt::format("cannot be inspected: {}", std::strerror(errno));
  } else if (st.st_uid != ::geteuid() && st.st_uid != owner) {
    problem = fmt::format(
        "is owned by uid {}, not by this user (uid {}); refusing to use it (someone else may "
        "have created it to intercept the sockets)",
        st.st_uid, ::geteuid());
  } else if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) &&
             ::fchown(fd, owner, group) != 0) {
    problem = fmt::format("cannot be given to uid {} gid {}: {}", static_cast<int>(owner),
                          static_cast<int>(group), std::strerror(errno));
  } else if (::fchmod(fd, mode) != 0) {
    problem = fmt::format("cannot be made mode {:04o}: {}", mode, std::strerror(errno));
  }
  ::close(fd);
  if (!problem.empty()) throw std::runtime_error(fmt::format("{}: '{}' {}", what, path, problem));
}

}  // namespace drover
