// Privileges: who droverd runs as once start-up is over (server.user / server.group), the
// group that owns the client socket (server.socket_group), and the drop itself.
//
// Start-up order (Supervisor's constructor): resolve_run_as() and resolve_group() first, so a
// bad name fails before anything is created; then the run directory and the sockets are
// created and handed to the target identity (owner_uid/owner_gid); then drop_privileges(),
// before any worker is spawned, so workers inherit the unprivileged identity. All of it is
// control plane: errors throw std::runtime_error naming the config key and the value.
// Call from the start-up thread only, while droverd has no other thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/pool/worker_process.hpp"

namespace drover::supervisor {

// The identity droverd runs as after start-up.
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  // True when droverd is root now and must switch to uid/gid after binding.
  bool drop = false;
  // The user's name when it has a passwd entry (for initgroups and logs), else empty.
  std::string user_name;

  // Owner to give files droverd must still write (or unlink) after the drop: uid/gid when
  // dropping, -1 ("leave unchanged", as chown(2) takes it) otherwise.
  uid_t owner_uid() const { return drop ? uid : static_cast<uid_t>(-1); }
  gid_t owner_gid() const { return drop ? gid : static_cast<gid_t>(-1); }
};

// Resolves server.user and server.group (names, or numbers). Started as root with `user` set:
// a drop to that user and `group` (default: the user's primary group). Not root: `user` and
// `group`, when set, must name the current uid/gid (an unprivileged process cannot switch),
// else an error. `group` without `user` is an error (a group change alone drops nothing).
// Throws std::runtime_error naming the key and the value.
RunAs resolve_run_as(const std::string& user, const std::string& group);

// A group given as a name (getgrnam_r) or, failing that, a number. Empty: nullopt. Throws
// std::runtime_error "<key>: '<value>' is not a known group name or a numeric gid" otherwise.
std::optional<gid_t> resolve_group(std::string_view key, const std::string& value);

// Resolves workers.user and workers.group: nullopt when both are empty. Refused with a
// std::runtime_error naming the key: a group without a user, droverd not root, droverd
// dropping root (server.user set: it could no longer switch identities per worker), an unknown
// name, root as the workers' user or group, or a uid allowed on the admin socket.
std::optional<WorkerCredentials> resolve_workers_as(const std::string& user,
                                                    const std::string& group, const RunAs& run_as,
                                                    const std::vector<std::uint32_t>& admin_uids);

// setgroups (initgroups when the user has a passwd entry), setresgid, setresuid, in that order;
// then checks that the process cannot become root again (setuid(0) and setgid(0) must fail)
// and re-arms a parent-death signal the kernel cleared on the credential change. Logs the
// result. Throws std::runtime_error on any failure: droverd must not run half-dropped.
// REQUIRES: run_as.drop, and no other thread in the process.
void drop_privileges(const RunAs& run_as);

}  // namespace drover::supervisor
