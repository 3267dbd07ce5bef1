#include "supervisor/admin/privileges.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "common/log.hpp"

namespace drover::supervisor {
namespace {

std::runtime_error error(std::string_view key, const std::string& value, std::string_view what) {
  return std::runtime_error(fmt::format("{}: '{}' {}", key, value, what));
}

std::string errno_text() { return std::strerror(errno); }

// A uid or gid written as a decimal number; nullopt when `s` is not one. (uid_t)-1 is
// excluded: chown and setresuid read it as "unchanged".
std::optional<std::uint32_t> parse_id(const std::string& s) {
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  if (v == std::numeric_limits<std::uint32_t>::max()) return std::nullopt;
  return v;
}

// The *_r lookups want a caller buffer whose needed size is only a hint; grow on ERANGE.
template <typename Entry, typename Key, typename Fn>
bool lookup(Fn fn, Key key, Entry& entry, std::vector<char>& buf) {
  buf.resize(16 * 1024);
  for (;;) {
    Entry* result = nullptr;
    const int rc = fn(key, &entry, buf.data(), buf.size(), &result);
    if (rc == ERANGE && buf.size() < (1u << 24)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    return rc == 0 && result != nullptr;
  }
}

struct User {
  uid_t uid;
  std::optional<gid_t> primary_gid;
  std::string name;
};

User resolve_user(std::string_view key, const std::string& value) {
  passwd pw{};
  std::vector<char> buf;
  if (lookup(::getpwnam_r, value.c_str(), pw, buf)) return {pw.pw_uid, pw.pw_gid, pw.pw_name};
  if (const auto id = parse_id(value)) {
    if (lookup(::getpwuid_r, static_cast<uid_t>(*id), pw, buf)) {
      return {pw.pw_uid, pw.pw_gid, pw.pw_name};
    }
    return {static_cast<uid_t>(*id), std::nullopt, {}};  // a uid without a passwd entry
  }
  throw error(key, value, "is not a known user name or a numeric uid");
}

// Capabilities left in the permitted or effective set (e.g. SECBIT_NO_SETUID_FIXUP set by a
// parent) would keep root's powers under a non-zero uid.
bool has_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return true;  // cannot tell: assume the worst
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0) return true;
  }
  return false;
}

}  // namespace

std::optional<gid_t> resolve_group(std::string_view key, const std::string& value) {
  if (value.empty()) return std::nullopt;
  group gr{};
  std::vector<char> buf;
  if (lookup(::getgrnam_r, value.c_str(), gr, buf)) return gr.gr_gid;
  if (const auto id = parse_id(value)) return static_cast<gid_t>(*id);
  throw error(key, value, "is not a known group name or a numeric gid");
}

RunAs resolve_run_as(const std::string& user, const std::string& group) {
  RunAs r;
  r.uid = ::geteuid();
  r.gid = ::getegid();
  if (user.empty()) {
    if (!group.empty()) {
      throw error("server.group", group,
                  "is set without server.user; a group change alone drops no privilege (set "
                  "server.user, or remove server.group)");
    }
    return r;
  }
  const User u = resolve_user("server.user", user);
  if (u.uid == 0) {
    throw error("server.user", user,
                "is root (uid 0): that drops nothing; leave server.user empty to run as root");
  }
  const bool root = ::geteuid() == 0;
  // Unprivileged: only "stay who you are" can be honoured.
  if (!root && u.uid != ::geteuid()) {
    throw error("server.user", user,
                fmt::format("(uid {}) is not droverd's user (uid {}); only a droverd started as "
                            "root can switch users",
                            u.uid, ::geteuid()));
  }
  std::optional<gid_t> gid = resolve_group("server.group", group);
  if (!root) {
    if (gid && *gid != ::getegid()) {
      throw error("server.group", group,
                  fmt::format("(gid {}) is not droverd's group (gid {}); only a droverd started "
                              "as root can switch groups",
                              *gid, ::getegid()));
    }
    return r;
  }
  if (!gid) gid = u.primary_gid;
  if (!gid) {
    throw error("server.user", user,
                "is a uid without a passwd entry, so it has no primary group; set server.group");
  }
  r.uid = u.uid;
  r.gid = *gid;
  r.user_name = u.name;
  r.drop = true;
  return r;
}

std::optional<WorkerCredentials> resolve_workers_as(const std::string& user,
                                                    const std::string& group, const RunAs& run_as,
                                                    const std::vector<std::uint32_t>& admin_uids) {
  if (user.empty()) {
    if (!group.empty()) {
      throw error("workers.group", group,
                  "is set without workers.user; set workers.user too, or remove workers.group");
    }
    return std::nullopt;
  }
  if (::geteuid() != 0) {
    throw error("workers.user", user,
                fmt::format("needs droverd started as root to start workers as another user "
                            "(droverd runs as uid {}); remove workers.user and workers.group",
                            ::geteuid()));
  }
  if (run_as.drop) {
    throw error("workers.user", user,
                "needs droverd to stay root to start each worker as another user, but "
                "server.user drops root after start-up; leave server.user empty (droverd keeps "
                "root, the workers run unprivileged) or remove workers.user");
  }
  const User u = resolve_user("workers.user", user);
  if (u.uid == 0) throw error("workers.user", user, "is root (uid 0): workers would keep root");
  if (std::find(admin_uids.begin(), admin_uids.end(), u.uid) != admin_uids.end()) {
    throw error("workers.user", user,
                fmt::format("(uid {}) is in server.admin_uids: a worker could call admin methods",
                            u.uid));
  }
  std::optional<gid_t> gid = resolve_group("workers.group", group);
  if (!gid) gid = u.primary_gid;
  if (!gid) {
    throw error("workers.user", user,
                "is a uid without a passwd entry, so it has no primary group; set workers.group");
  }
  if (*gid == 0) throw error("workers.group", group.empty() ? user : group, "is root's group (gid 0)");
  WorkerCredentials c{u.uid, *gid, {*gid}};
  // The user's supplementary groups, resolved here: the child may only make async-signal-safe
  // calls, and NSS lookups are not.
  if (!u.name.empty()) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<std::size_t>(n));
    while (::getgrouplist(u.name.c_str(), *gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<std::size_t>(n));
    }
    groups.resize(static_cast<std::size_t>(n));
    c.groups.clear();
    for (const gid_t g : groups) {
      if (g != 0) c.groups.push_back(g);  // never root's group, even if listed
    }
    if (std::find(c.groups.begin(), c.groups.end(), *gid) == c.groups.end()) c.groups.push_back(*gid);
  }
  return c;
}

void drop_privileges(const RunAs& run_as) {
  int pdeath_signal = 0;
  ::prctl(PR_GET_PDEATHSIG, &pdeath_signal);
  const pid_t parent = ::getppid();

  // Groups first: after setresuid droverd could no longer change them.
  if (!run_as.user_name.empty()) {
    if (::initgroups(run_as.user_name.c_str(), run_as.gid) != 0) {
      throw std::runtime_error(fmt::format("server.user: initgroups('{}', {}) failed: {}",
                                           run_as.user_name, run_as.gid, errno_text()));
    }
  } else if (::setgroups(1, &run_as.gid) != 0) {
    throw std::runtime_error(
        fmt::format("server.group: setgroups({}) failed: {}", run_as.gid, errno_text()));
  }
  // Real, effective and saved ids all change, so nothing is kept to switch back to.
  if (::setresgid(run_as.gid, run_as.gid, run_as.gid) != 0) {
    throw std::runtime_error(
        fmt::format("server.group: setresgid({}) failed: {}", run_as.gid, errno_text()));
  }
  if (::setresuid(run_as.uid, run_as.uid, run_as.uid) != 0) {
    throw std::runtime_error(
        fmt::format("server.user: setresuid({}) failed: {}", run_as.uid, errno_text()));
  }

  uid_t ru = 0, eu = 0, su = 0;
  gid_t rg = 0, eg = 0, sg = 0;
  ::getresuid(&ru, &eu, &su);
  ::getresgid(&rg, &eg, &sg);
  if (ru != run_as.uid || eu != run_as.uid || su != run_as.uid || rg != run_as.gid ||
      eg != run_as.gid || sg != run_as.gid) {
    throw std::runtime_error(
        fmt::format("privilege drop incomplete: uids {}/{}/{} gids {}/{}/{}, wanted {} and {}", ru,
                    eu, su, rg, eg, sg, run_as.uid, run_as.gid));
  }
  // setgid(0) proves nothing when the target group is root's own (server.group: root).
  if (::setuid(0) == 0 || (run_as.gid != 0 && ::setgid(0) == 0) || has_capabilities()) {
    throw std::runtime_error(
        "privilege drop failed: droverd could regain root after switching to server.user");
  }

  // The kernel clears the parent-death signal on a credential change; whoever started droverd
  // with one (a supervisor process, the test harness) still expects it.
  if (pdeath_signal != 0) {
    ::prctl(PR_SET_PDEATHSIG, pdeath_signal);
    if (::getppid() != parent) ::kill(::getpid(), pdeath_signal);  // the parent died meanwhile
  }

  std::vector<gid_t> groups(static_cast<std::size_t>(std::max(0, ::getgroups(0, nullptr))));
  groups.resize(static_cast<std::size_t>(
      std::max(0, ::getgroups(static_cast<int>(groups.size()), groups.data()))));
  component_logger("supervisor")
      ->info("dropped privileges to user {} (uid {}), gid {}, groups [{}]; root cannot be regained",
             run_as.user_name.empty() ? "-" : run_as.user_name, run_as.uid, run_as.gid,
             fmt::join(groups, ","));
}

}  // namespace drover::supervisor
