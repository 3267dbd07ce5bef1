#include "supervisor/admin/stale_state.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "common/log.hpp"
#include "supervisor/admin/run_dir.hpp"

namespace drover::supervisor {
namespace {

enum class Suffix { alnum, hex };

// The pid in "drover-<pid>-<suffix>", or nullopt when `name` does not have exactly that shape.
std::optional<pid_t> pid_of(std::string_view name, Suffix suffix) {
  if (!name.starts_with(kStateNamePrefix)) return std::nullopt;
  name.remove_prefix(kStateNamePrefix.size());
  const auto dash = name.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == name.size()) return std::nullopt;
  pid_t pid = 0;
  const auto digits = name.substr(0, dash);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (ec != std::errc() || end != digits.data() + digits.size() || pid <= 0) return std::nullopt;
  for (const char c : name.substr(dash + 1)) {
    const auto u = static_cast<unsigned char>(c);
    const bool ok = suffix == Suffix::hex ? std::isxdigit(u) != 0 : std::isalnum(u) != 0;
    if (!ok) return std::nullopt;
  }
  return pid;
}

bool stale_pid(pid_t pid) {
  if (pid == ::getpid()) return true;
  return ::kill(pid, 0) == -1 && errno == ESRCH;
}

// Removes the directory `name` under `parent_fd` and everything in it, never following a
// symlink: each level is opened O_NOFOLLOW and its entries are unlinked through that
// descriptor. A run directory is flat (control sockets); kMaxDepth bounds a planted tree.
constexpr int kMaxDepth = 8;

// The names in the directory `fd` (without "." and ".."). Read in full before anything is
// removed: whether readdir returns entries unlinked during the listing is unspecified.
std::vector<std::string> list(int fd) {
  std::vector<std::string> names;
  const int dup_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return names;
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    ::close(dup_fd);
    return names;
  }
  while (dirent* e = ::readdir(dir)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(dir);  // closes dup_fd
  return names;
}

bool remove_tree(int parent_fd, const char* name, int depth, std::string& why) {
  const int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    why = fmt::format("open: {}", std::strerror(errno));
    return false;
  }
  bool ok = true;
  for (const auto& entry : list(fd)) {
    struct stat st {};
    if (::fstatat(fd, entry.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (S_ISDIR(st.st_mode)) {
      if (depth >= kMaxDepth) {
        why = fmt::format("nested deeper than {} levels", kMaxDepth);
        ok = false;
      } else {
        ok = remove_tree(fd, entry.c_str(), depth + 1, why) && ok;
      }
    } else if (::unlinkat(fd, entry.c_str(), 0) != 0 && errno != ENOENT) {
      why = fmt::format("unlink {}: {}", entry, std::strerror(errno));
      ok = false;
    }
  }
  ::close(fd);
  if (ok && ::unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    why = fmt::format("rmdir: {}", std::strerror(errno));
    ok = false;
  }
  return ok;
}

// Calls fn(dir_fd, entry name, lstat) for each entry of `path` whose name has the droverd shape
// with a stale pid and whose owner is `owner`.
template <typename Fn>
void for_each_stale(const std::string& path, Suffix suffix, uid_t owner, Fn fn) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // no such dir (e.g. no /dev/shm): nothing can be stale there
  for (const auto& name : list(fd)) {
    const auto pid = pid_of(name, suffix);
    if (!pid || !stale_pid(*pid)) continue;
    struct stat st {};
    if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != owner) continue;
    fn(fd, name.c_str(), st);
  }
  ::close(fd);
}

}  // namespace

StaleStateReport remove_stale_state(const std::string& run_base, const std::string& shm_dir,
                                    uid_t owner, const std::string& keep) {
  auto log = component_logger("supervisor");
  StaleStateReport report;
  auto record = [&](const std::string& path, bool ok, const std::string& why, const char* what) {
    if (ok) {
      log->info("removed stale {} {} left by a droverd that is gone", what, path);
      report.removed.push_back(path);
    } else {
      log->warn("cannot remove stale {} {}: {}", what, path, why);
      report.failed.push_back(fmt::format("{}: {}", path, why));
    }
  };

  // Pids whose stale run directory was found here: their segments are provably a dead droverd's
  // of this run base. A segment of any other dead pid may be another droverd's (one with another
  // run base, or a test's fixture), so it is not this droverd's to remove.
  std::set<pid_t> dead_droverds;
  for_each_stale(run_base, Suffix::alnum, owner,
                 [&](int fd, const char* name, const struct stat& st) {
                   const std::string path = fmt::format("{}/{}", run_base, name);
                   if (!S_ISDIR(st.st_mode) || path == keep) return;
                   dead_droverds.insert(*pid_of(name, Suffix::alnum));
                   std::string why;
                   record(path, remove_tree(fd, name, 1, why), why, "run directory");
                 });
  if (dead_droverds.empty()) return report;
  for_each_stale(shm_dir, Suffix::hex, owner, [&](int fd, const char* name, const struct stat& st) {
    if (!S_ISREG(st.st_mode) || !dead_droverds.contains(*pid_of(name, Suffix::hex))) return;
    const std::string path = fmt::format("{}/{}", shm_dir, name);
    // unlinkat on /dev/shm is what shm_unlink does.
    const bool ok = ::unlinkat(fd, name, 0) == 0 || errno == ENOENT;
    record(path, ok, ok ? std::string() : std::strerror(errno), "shared-memory segment");
  });
  return report;
}

}  // namespace drover::supervisor
