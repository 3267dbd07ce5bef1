#include "supervisor/admin/run_dir.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace drover::supervisor {
namespace {

// Adopts an existing directory: opened without following a final symlink (a run_dir under
// a shared directory such as /tmp could have been planted by another user), then checked and
// changed through the descriptor, so what is checked is what is changed.
void adopt(const std::string& path, uid_t owner, gid_t group) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(
        fmt::format("server.run_dir: '{}' cannot be opened as a directory "
                    "(a symlink is refused): {}",
                    path, std::strerror(errno)));
  }
  struct stat st {};
  std::string problem;
  if (::fstat(fd, &st) != 0) {
    problem = fmt::format("cannot be inspected: {}", std::strerror(errno));
  } else if (st.st_uid != ::geteuid() && st.st_uid != owner) {
    problem =
        fmt::format("is owned by uid {}, not by droverd's user; refusing to use it", st.st_uid);
  } else if (owner != static_cast<uid_t>(-1) && ::fchown(fd, owner, group) != 0) {
    problem = fmt::format("cannot be given to uid {}: {}", owner, std::strerror(errno));
  } else if (::fchmod(fd, 0700) != 0) {
    problem = fmt::format("cannot be made mode 0700: {}", std::strerror(errno));
  }
  ::close(fd);
  if (!problem.empty())
    throw std::runtime_error(fmt::format("server.run_dir: '{}' {}", path, problem));
}

}  // namespace

std::string temp_dir() {
  const char* tmp = std::getenv("TMPDIR");
  return tmp && *tmp ? tmp : "/tmp";
}

RunDirCleanup::~RunDirCleanup() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);  // best effort at exit: nothing left to report to
}

std::string make_run_dir(const std::string& configured, uid_t owner, gid_t group) {
  if (!configured.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(configured, ec);
    if (ec) {
      throw std::runtime_error(
          fmt::format("server.run_dir: cannot create '{}': {}", configured, ec.message()));
    }
    adopt(configured, owner, group);
    return configured;
  }
  std::string templ = fmt::format("{}/{}{}-XXXXXX", temp_dir(), kStateNamePrefix, ::getpid());
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::runtime_error(
        fmt::format("cannot create run directory {}: {}", templ, std::strerror(errno)));
  }
  adopt(templ, owner, group);
  return templ;
}

}  // namespace drover::supervisor
