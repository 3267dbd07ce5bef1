#include "supervisor/admin/run_dir.hpp"

#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "common/run_paths.hpp"

namespace drover::supervisor {

RunDirCleanup::~RunDirCleanup() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);  // best effort at exit: nothing left to report to
}

std::string make_run_dir(const std::string& configured, const std::string& base,
                         const RunDirAccess& access) {
  if (!configured.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(configured, ec);
    if (ec) {
      throw std::runtime_error(
          fmt::format("server.run_dir: cannot create '{}': {}", configured, ec.message()));
    }
    ensure_private_dir(configured, "server.run_dir", access.mode, access.owner, access.group);
    return configured;
  }
  std::string templ = fmt::format("{}/{}{}-XXXXXX", base, kStateNamePrefix, ::getpid());
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::runtime_error(
        fmt::format("server.run_dir: cannot create {}: {}", templ, std::strerror(errno)));
  }
  ensure_private_dir(templ, "server.run_dir", access.mode, access.owner, access.group);
  return templ;
}

}  // namespace drover::supervisor
