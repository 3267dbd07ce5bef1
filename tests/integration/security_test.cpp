// Security properties of a real droverd (docs/SECURITY.md): the client socket's group, the
// privilege drop to server.user (droverd and its workers), start-up errors for identities that
// cannot be honoured, removal of what a crashed droverd left behind, and workers.command run as
// an argv (no shell). Tests that switch users need root and skip otherwise.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>

#include "harness.hpp"

namespace drover::test {
namespace {

namespace fs = std::filesystem;

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

struct Ids {
  uid_t uid;
  gid_t gid;
};

// The "nobody" account droverd is dropped to (uid and primary group from the passwd database).
Ids nobody() {
  const passwd* pw = ::getpwnam("nobody");
  return pw ? Ids{pw->pw_uid, pw->pw_gid} : Ids{65534, 65534};
}

// Runs `body` in a forked child and returns its exit code (-1 when it did not exit normally).
// The child must only exit through _exit (the body's return value).
int in_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Becomes uid:gid with exactly `groups` as supplementary groups; false when it cannot.
bool become(uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  return ::setgroups(groups.size(), groups.data()) == 0 && ::setgid(gid) == 0 && ::setuid(uid) == 0;
}

// /proc/<pid>/status as key -> value (value with surrounding blanks removed).
std::map<std::string, std::string> proc_status(pid_t pid) {
  std::map<std::string, std::string> out;
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t") + 1);
    out[line.substr(0, colon)] = v;
  }
  return out;
}

std::vector<long> numbers(const std::string& s) {
  std::vector<long> out;
  std::istringstream in(s);
  for (long v; in >> v;) out.push_back(v);
  return out;
}

// Expects pid to run as uid/gid (real, effective, saved and filesystem ids), with no root group
// and no capability left.
void expect_runs_as(pid_t pid, Ids ids, const std::string& who) {
  const auto st = proc_status(pid);
  ASSERT_FALSE(st.empty()) << who << " (pid " << pid << ") has no /proc status";
  EXPECT_EQ(numbers(st.at("Uid")), std::vector<long>(4, ids.uid))
      << who << " Uid: " << st.at("Uid");
  EXPECT_EQ(numbers(st.at("Gid")), std::vector<long>(4, ids.gid))
      << who << " Gid: " << st.at("Gid");
  for (const long g : numbers(st.at("Groups"))) EXPECT_NE(g, 0) << who << " kept root's group";
  EXPECT_EQ(st.at("CapEff"), "0000000000000000") << who;
  EXPECT_EQ(st.at("CapPrm"), "0000000000000000") << who;
}

// A pid that surely belongs to no process now: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

std::string random_hex() {
  std::random_device rd;
  std::ostringstream s;
  s << std::hex << rd() << rd();
  return s.str();
}

class SecurityTest : public DroverTest {
 protected:
  // Creates the droverd (config written, nothing started) so a test can prepare its dir first.
  DroverProcess& prepare(DroverOptions options) {
    drover_ = std::make_unique<DroverProcess>(std::move(options));
    return *drover_;
  }
};

#define REQUIRE_ROOT()                              \
  do {                                              \
    if (::geteuid() != 0) {                         \
      GTEST_SKIP() << "needs root to switch users"; \
    }                                               \
  } while (false)

// Whether user nobody can execute droverd and drover-worker where they were built: a checkout
// in a private directory (mktemp -d, a home directory) cannot be run by another user at all.
bool nobody_can_run_the_binaries() {
  const Ids who = nobody();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const bool ok = ::setgroups(0, nullptr) == 0 && ::setgid(who.gid) == 0 && ::setuid(who.uid) == 0 &&
                    ::access(droverd_bin(), X_OK) == 0 && ::access(worker_bin(), X_OK) == 0;
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

#define REQUIRE_NOBODY_CAN_RUN_BINARIES()                                                   \
  do {                                                                                      \
    if (!nobody_can_run_the_binaries()) {                                                   \
      GTEST_SKIP() << "user nobody cannot execute " << droverd_bin()                        \
                   << " (the build lives in a directory only its owner may enter)";       \
    }                                                                                       \
  } while (false)

// ---------------------------------------------------------------------------------------------
// server.socket_group

TEST_F(SecurityTest, ClientSocketBelongsToSocketGroupAndAdmitsOnlyItsMembers) {
  REQUIRE_ROOT();
  const group* gr = ::getgrnam("nogroup");
  if (gr == nullptr) GTEST_SKIP() << "no group named nogroup";
  const gid_t socket_gid = gr->gr_gid;
  ASSERT_TRUE(start({.workers = 1, .server_yaml = {"socket_group: nogroup"}}));
  const auto client = stat_of(d().socket_path());
  EXPECT_EQ(client.st_gid, socket_gid);
  EXPECT_EQ(client.st_uid, 0u) << "no server.user: the socket stays root's";
  EXPECT_EQ(client.st_mode & 07777, 0660u);
  const auto admin = stat_of(d().admin_path());
  EXPECT_EQ(admin.st_gid, 0u) << "socket_group is for the client socket only";
  EXPECT_EQ(admin.st_mode & 07777, 0600u);

  // Mode 0660 and the group, not the uid, decide: uid 4242 is neither owner nor root.
  ASSERT_EQ(::chmod(d().dir().c_str(), 0711), 0);
  const std::string path = d().socket_path();
  auto connect_as = [&](std::vector<gid_t> groups, gid_t gid) {
    return in_child([&] {
      if (!become(4242, gid, groups)) return 3;
      try {
        RpcClient c(path);
        return is_result(c.call("health", nullptr, 10s)) ? 0 : 1;
      } catch (const client::ClientError&) {
        return 2;  // connect refused (EACCES)
      }
    });
  };
  EXPECT_EQ(connect_as({socket_gid}, 4242), 0) << "a member of socket_group could not connect";
  EXPECT_EQ(connect_as({}, socket_gid), 0)
      << "a peer whose primary group is socket_group could not connect";
  EXPECT_EQ(connect_as({}, 4242), 2) << "a peer outside socket_group could connect";
}

TEST_F(SecurityTest, SocketGroupMayBeANumericGid) {
  REQUIRE_ROOT();
  ASSERT_TRUE(start({.workers = 1, .server_yaml = {"socket_group: \"4243\""}}));
  EXPECT_EQ(stat_of(d().socket_path()).st_gid, 4243u);
  EXPECT_TRUE(is_result(d().client().call("health")));
}

// Identities droverd cannot honour fail before anything is created, naming the key and value.
TEST_F(SecurityTest, UnresolvableIdentitiesAreStartupErrorsNamingKeyAndValue) {
  struct Case {
    std::string yaml, key, value;
  };
  const std::vector<Case> cases = {
      {"socket_group: no-such-group-drover", "server.socket_group", "no-such-group-drover"},
      {"user: no-such-user-drover", "server.user", "no-such-user-drover"},
      {"group: nogroup", "server.group", "nogroup"},  // a group without a user
      {"user: root", "server.user", "root"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    DroverProcess p({.workers = 1, .server_yaml = {c.yaml}});
    const RunResult r = run_program({droverd_bin(), "--config", p.config_path()}, p.dir());
    ASSERT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    const std::string output = r.out + r.err;
    EXPECT_NE(output.find(c.key + ": '" + c.value + "'"), std::string::npos) << output;
    EXPECT_FALSE(path_exists(p.socket_path())) << "a socket was created before the error";
    EXPECT_FALSE(path_exists(p.admin_path()));
    EXPECT_FALSE(path_exists(p.dir() + "/run")) << "the run dir was created before the error";
  }
}

// ---------------------------------------------------------------------------------------------
// Privilege drop

TEST_F(SecurityTest, DropsToServerUserAndWorkersRunUnprivileged) {
  REQUIRE_ROOT();
  REQUIRE_NOBODY_CAN_RUN_BINARIES();
  const Ids who = nobody();
  auto& p = prepare({.workers = 2, .server_yaml = {"user: nobody"}});
  // The layout systemd's RuntimeDirectory= gives: the sockets' directory belongs to the
  // service user, so droverd can still create worker sockets there and remove its own sockets
  // at exit after the drop.
  ASSERT_EQ(::chown(p.dir().c_str(), who.uid, who.gid), 0);
  ASSERT_TRUE(p.start());

  expect_runs_as(p.pid(), who, "droverd");
  const json workers = p.workers();
  ASSERT_EQ(workers.size(), 2u);
  for (const auto& w : workers)
    expect_runs_as(w["pid"].get<pid_t>(), who, "worker " + w["id"].dump());
  EXPECT_NE(p.log().find("dropped privileges to user nobody"), std::string::npos) << p.log();

  // The files droverd must still remove or write belong to its new user.
  for (const auto& path : {p.socket_path(), p.admin_path(), p.dir() + "/run"}) {
    const auto st = stat_of(path);
    EXPECT_EQ(st.st_uid, who.uid) << path;
    EXPECT_EQ(st.st_gid, who.gid) << path;
  }
  EXPECT_EQ(stat_of(p.admin_path()).st_mode & 07777, 0600u);

  // Served as before, on both sockets.
  auto c = p.client();
  const json reply = c.call("generate", {{"prompt", "hello"}, {"max_tokens", 4}, {"seed", 1}});
  EXPECT_TRUE(is_result(reply)) << reply.dump();
  EXPECT_TRUE(is_result(p.admin().call("workers.list")));

  // Having changed credentials, droverd is not dumpable: a process of the same uid (a
  // compromised worker) cannot read its memory or environment. fs.suid_dumpable=1 is a debug
  // setting that turns this off.
  if (read_file("/proc/sys/fs/suid_dumpable").rfind("1", 0) != 0) {
    const std::string environ_path = "/proc/" + std::to_string(p.pid()) + "/environ";
    EXPECT_EQ(in_child([&] {
                if (!become(who.uid, who.gid, {who.gid})) return 3;
                const int fd = ::open(environ_path.c_str(), O_RDONLY);
                return fd < 0 ? 0 : 1;
              }),
              0)
        << "a process of droverd's uid could read " << environ_path;
  }
  // TearDown: SIGTERM, exit 0, both socket files removed, workers gone.
}

// Sockets in a directory droverd's user cannot write outlive droverd (it cannot unlink them
// after the drop): it logs that and exits 0; the next droverd replaces them as stale.
TEST_F(SecurityTest, SocketsInADirectoryTheUserCannotWriteAreReplacedAtTheNextStart) {
  REQUIRE_ROOT();
  REQUIRE_NOBODY_CAN_RUN_BINARIES();
  const Ids who = nobody();
  auto& p = prepare({.workers = 1, .server_yaml = {"user: nobody"}});
  ASSERT_EQ(::chmod(p.dir().c_str(), 0711), 0);  // root's, searchable, not writable by nobody
  ASSERT_TRUE(p.start());
  expect_runs_as(p.pid(), who, "droverd");
  (void)p.workers();  // remembers the worker pids for the check below
  p.terminate();
  const auto status = p.wait_exit();
  ASSERT_TRUE(status && WIFEXITED(*status)) << "droverd did not exit after SIGTERM";
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_TRUE(DroverProcess::wait_pids_gone(p.seen_worker_pids()));
  EXPECT_TRUE(path_exists(p.socket_path()));
  EXPECT_NE(p.log().find("cannot remove socket file " + p.socket_path()), std::string::npos)
      << p.log();

  ASSERT_TRUE(p.start()) << "the stale sockets were not replaced";
  EXPECT_TRUE(is_result(p.client().call("health")));
  // Let this run end the normal way (TearDown checks the sockets are removed).
  ASSERT_EQ(::chown(p.dir().c_str(), who.uid, who.gid), 0);
}

// An unprivileged droverd cannot become another user: refused at start, not half-honoured.
TEST_F(SecurityTest, UnprivilegedDroverdAskedForAnotherUserRefusesToStart) {
  REQUIRE_ROOT();
  REQUIRE_NOBODY_CAN_RUN_BINARIES();  // to run droverd as nobody
  if (::getpwnam("daemon") == nullptr) GTEST_SKIP() << "no user named daemon";
  const Ids who = nobody();
  auto& p = prepare({.workers = 1, .server_yaml = {"user: daemon"}});
  ASSERT_EQ(::chmod(p.dir().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(p.config_path().c_str(), 0644), 0);
  const std::string out_path = p.dir() + "/unprivileged.out";
  const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(out, 0);
  const std::string config = p.config_path();
  const int code = in_child([&] {
    if (::dup2(out, 1) < 0 || ::dup2(out, 2) < 0 || !become(who.uid, who.gid, {who.gid})) return 3;
    ::execl(droverd_bin(), droverd_bin(), "--config", config.c_str(), static_cast<char*>(nullptr));
    return 127;
  });
  ::close(out);
  EXPECT_EQ(code, 1);
  const std::string output = read_file(out_path);
  EXPECT_NE(output.find("server.user: 'daemon'"), std::string::npos) << output;
  EXPECT_NE(output.find("only a droverd started as root can switch users"), std::string::npos)
      << output;
  EXPECT_FALSE(path_exists(p.socket_path()));
}

// ---------------------------------------------------------------------------------------------
// workers.user / workers.group: droverd stays root, each worker runs as another uid

// What a worker's uid gets from the admin socket, from a forked child that becomes that uid:
// 0 connected and closed without a reply (the peer-credential check refused it), 1 answered,
// 2 neither, 4 could not connect (refused by the file mode), 3 could not switch users.
int admin_as(const std::string& admin_path, Ids who) {
  return in_child([&] {
    if (!become(who.uid, who.gid, {who.gid})) return 3;
    std::optional<RpcClient> c;
    try {
      c.emplace(admin_path);
    } catch (const client::ClientError&) {
      return 4;
    }
    try {
      c->send(json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "workers.list"}});
      return c->read(10s) ? 1 : 2;
    } catch (const client::ClientError&) {
      return 0;
    }
  });
}

TEST_F(SecurityTest, WorkersRunAsWorkersUserAndTheAdminSocketRefusesThem) {
  REQUIRE_ROOT();
  REQUIRE_NOBODY_CAN_RUN_BINARIES();
  const Ids who = nobody();
  auto& p = prepare({.workers = 2, .workers_yaml = {"user: nobody"}});
  // The test's directory is root's 0700; the workers must be able to pass through it to the
  // run directory, which droverd itself opens to the workers' group only.
  ASSERT_EQ(::chmod(p.dir().c_str(), 0711), 0);
  ASSERT_TRUE(p.start());

  EXPECT_EQ(numbers(proc_status(p.pid()).at("Uid")), std::vector<long>(4, 0))
      << "droverd stays root to start workers as workers.user";
  const json workers = p.workers();
  ASSERT_EQ(workers.size(), 2u);
  std::vector<pid_t> pids;
  for (const auto& w : workers) {
    pids.push_back(w["pid"].get<pid_t>());
    expect_runs_as(pids.back(), who, "worker " + w["id"].dump());
  }
  const auto run = stat_of(p.dir() + "/run");
  EXPECT_EQ(run.st_uid, 0u);
  EXPECT_EQ(run.st_gid, who.gid) << "the workers' group reaches its sockets";
  EXPECT_EQ(run.st_mode & 07777, 0710u) << "searchable, not listable, by the workers' group";
  EXPECT_NE(p.log().find("workers run as uid " + std::to_string(who.uid)), std::string::npos)
      << p.log();

  // Served through workers of the other uid (control socket and shared-memory rings).
  auto c = p.client();
  for (int i = 0; i < 4; ++i) {
    const json reply = c.call("generate", {{"prompt", "hello " + std::to_string(i)},
                                           {"max_tokens", 4}, {"seed", i}});
    EXPECT_TRUE(is_result(reply)) << reply.dump();
  }

  // A compromised worker's uid: refused by the admin socket's file mode, and, with the mode
  // loosened, by the peer-credential check (the worker's uid is not droverd's any more).
  EXPECT_EQ(admin_as(p.admin_path(), who), 4) << "the worker's uid could connect to the admin socket";
  ASSERT_EQ(::chmod(p.admin_path().c_str(), 0666), 0);
  EXPECT_EQ(admin_as(p.admin_path(), who), 0)
      << "the worker's uid got past the admin socket's peer-credential check";
  EXPECT_NE(p.log().find("admin connection refused: peer uid " + std::to_string(who.uid)),
            std::string::npos)
      << p.log();
  EXPECT_TRUE(is_result(p.admin().call("workers.list")));

  // A replacement runs as workers.user too.
  ASSERT_TRUE(is_result(p.admin().call("workers.kill", {{"id", workers[0]["id"]}, {"signal", "KILL"}})));
  json after;
  ASSERT_TRUE(wait_until([&] {
    after = p.workers();
    if (after.size() != 2u) return false;
    for (const auto& w : after) {
      if (w.value("state", "") != "ready" || w["pid"].get<pid_t>() == pids[0]) return false;
    }
    return true;
  })) << after.dump();
  for (const auto& w : after) expect_runs_as(w["pid"].get<pid_t>(), who, "replacement " + w["id"].dump());
}

// workers.user and workers.group that cannot be honoured: a start-up error naming the key.
TEST_F(SecurityTest, WorkersIdentityThatCannotBeHonouredIsAStartupError) {
  struct Case {
    std::vector<std::string> server, workers;
    std::string key, value, what;
  };
  std::vector<Case> cases = {
      {{}, {"group: nogroup"}, "workers.group", "nogroup", "without workers.user"},
  };
  if (::geteuid() == 0) {
    cases.push_back({{}, {"user: no-such-user-drover"}, "workers.user", "no-such-user-drover",
                     "not a known user name"});
    cases.push_back({{}, {"user: root"}, "workers.user", "root", "is root"});
    cases.push_back({{}, {"user: nobody", "group: no-such-group-drover"}, "workers.group",
                     "no-such-group-drover", "not a known group name"});
    cases.push_back({{"user: nobody"}, {"user: nobody"}, "workers.user", "nobody",
                     "server.user drops root"});
    cases.push_back({{"admin_uids: [" + std::to_string(nobody().uid) + "]"}, {"user: nobody"},
                     "workers.user", "nobody", "server.admin_uids"});
  } else {
    cases.push_back({{}, {"user: nobody"}, "workers.user", "nobody",
                     "needs droverd started as root"});
  }
  for (const auto& c : cases) {
    SCOPED_TRACE(c.key + " " + c.value);
    DroverProcess p({.workers = 1, .server_yaml = c.server, .workers_yaml = c.workers});
    const RunResult r = run_program({droverd_bin(), "--config", p.config_path()}, p.dir());
    ASSERT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    const std::string output = r.out + r.err;
    EXPECT_NE(output.find(c.key + ": '" + c.value + "'"), std::string::npos) << output;
    EXPECT_NE(output.find(c.what), std::string::npos) << output;
    EXPECT_FALSE(path_exists(p.socket_path())) << "a socket was created before the error";
    EXPECT_FALSE(path_exists(p.dir() + "/run")) << "the run dir was created before the error";
  }
}

// An unprivileged droverd asked for workers.user refuses to start (it could not switch users).
TEST_F(SecurityTest, UnprivilegedDroverdAskedForWorkersUserRefusesToStart) {
  REQUIRE_ROOT();
  REQUIRE_NOBODY_CAN_RUN_BINARIES();
  if (::getpwnam("daemon") == nullptr) GTEST_SKIP() << "no user named daemon";
  const Ids who = nobody();
  auto& p = prepare({.workers = 1, .workers_yaml = {"user: daemon"}});
  ASSERT_EQ(::chmod(p.dir().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(p.config_path().c_str(), 0644), 0);
  const std::string out_path = p.dir() + "/unprivileged.out";
  const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(out, 0);
  const std::string config = p.config_path();
  const std::string xdg = "XDG_RUNTIME_DIR=" + p.dir();
  const int code = in_child([&] {
    if (::dup2(out, 1) < 0 || ::dup2(out, 2) < 0 || !become(who.uid, who.gid, {who.gid})) return 3;
    ::execl("/usr/bin/env", "/usr/bin/env", xdg.c_str(), droverd_bin(), "--config", config.c_str(),
            static_cast<char*>(nullptr));
    return 127;
  });
  ::close(out);
  EXPECT_EQ(code, 1);
  const std::string output = read_file(out_path);
  EXPECT_NE(output.find("workers.user: 'daemon'"), std::string::npos) << output;
  EXPECT_NE(output.find("needs droverd started as root"), std::string::npos) << output;
  EXPECT_FALSE(path_exists(p.socket_path()));
}

// ---------------------------------------------------------------------------------------------
// Stale state of a crashed droverd

TEST_F(SecurityTest, StaleRunDirsAndSegmentsOfDeadDroverdsAreRemovedAtStart) {
  auto& p = prepare({.workers = 1});
  // droverd's $XDG_RUNTIME_DIR is p.dir(), so its run base (the swept directory) is ours alone.
  const std::string tmp = p.dir() + "/drover";
  ASSERT_TRUE(fs::create_directory(tmp));
  ASSERT_EQ(::chmod(tmp.c_str(), 0700), 0);
  const pid_t dead = dead_pid();
  const pid_t live = ::getpid();
  const uid_t me = ::geteuid();
  const std::string d = std::to_string(dead), l = std::to_string(live);

  // A crashed droverd's run dir, with a control socket file and (as if planted) a subdirectory.
  const std::string stale_dir = tmp + "/drover-" + d + "-Ab12Cd";
  fs::create_directories(stale_dir + "/sub");
  std::ofstream(stale_dir + "/w0.1.sock") << "x";
  std::ofstream(stale_dir + "/sub/f") << "x";
  // A live droverd's run dir: left alone.
  const std::string live_dir = tmp + "/drover-" + l + "-Ef34Gh";
  fs::create_directory(live_dir);
  // A symlink with the stale shape: never followed, its target untouched.
  fs::create_directory(tmp + "/target");
  std::ofstream(tmp + "/target/keep") << "x";
  fs::create_directory_symlink(tmp + "/target", tmp + "/drover-" + d + "-Sy1ink");
  // Another user's stale dir: not ours to remove (only testable as root).
  const std::string foreign_dir = tmp + "/drover-" + d + "-Fo5eig";
  if (me == 0) {
    fs::create_directory(foreign_dir);
    ASSERT_EQ(::chown(foreign_dir.c_str(), 4242, 4242), 0);
  }
  // Not droverd's naming: left alone.
  const std::string other_dir = tmp + "/drover-it-" + d;
  fs::create_directory(other_dir);

  const std::string hex = random_hex();
  const std::string stale_shm = "/dev/shm/drover-" + d + "-" + hex;
  const std::string live_shm = "/dev/shm/drover-" + l + "-" + hex;
  const std::string foreign_shm = "/dev/shm/drover-" + d + "-" + hex + "f";
  // A dead pid's segment with no run directory of that pid in this droverd's temp dir: nothing
  // ties it to a droverd this one can vouch for (it may be another test's, or another temp dir's
  // droverd's), so it is left alone. This is also what keeps parallel droverds (ctest -j) from
  // sweeping each other's fixtures: each only removes segments of the run dirs it removes.
  const pid_t unrelated = dead_pid();
  ASSERT_NE(unrelated, dead);
  const std::string unrelated_shm = "/dev/shm/drover-" + std::to_string(unrelated) + "-" + hex;
  for (const auto& path : {stale_shm, live_shm, foreign_shm, unrelated_shm}) {
    const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
    ::close(fd);
  }
  if (me == 0) {
    ASSERT_EQ(::chown(foreign_shm.c_str(), 4242, 4242), 0);
  }
  struct Cleanup {
    std::vector<std::string> paths;
    ~Cleanup() {
      for (const auto& path : paths) ::unlink(path.c_str());
    }
  } cleanup{{stale_shm, live_shm, foreign_shm, unrelated_shm}};

  ASSERT_TRUE(p.start());
  EXPECT_FALSE(path_exists(stale_dir)) << "the dead droverd's run dir is still there";
  EXPECT_FALSE(path_exists(stale_shm)) << "the dead droverd's segment is still there";
  EXPECT_TRUE(path_exists(live_dir)) << "a live droverd's run dir was removed";
  EXPECT_TRUE(path_exists(live_shm)) << "a live droverd's segment was removed";
  EXPECT_TRUE(path_exists(unrelated_shm))
      << "a segment whose pid has no stale run dir here was removed";
  EXPECT_TRUE(path_exists(tmp + "/target/keep")) << "the sweep followed a symlink";
  EXPECT_TRUE(path_exists(other_dir));
  if (me == 0) {
    EXPECT_TRUE(path_exists(foreign_dir)) << "another user's dir was removed";
    EXPECT_TRUE(path_exists(foreign_shm)) << "another user's segment was removed";
  }
  const std::string log = p.log();
  EXPECT_NE(log.find("removed stale run directory " + stale_dir), std::string::npos) << log;
  EXPECT_NE(log.find("removed stale shared-memory segment " + stale_shm), std::string::npos) << log;
  EXPECT_TRUE(is_result(p.client().call("health")));
}

// ---------------------------------------------------------------------------------------------
// workers.command is an argv, never a shell command line

TEST_F(SecurityTest, WorkerCommandArgumentsReachTheWorkerLiterallyWithoutAShell) {
  const std::string mark = "/tmp/drover-pwned-" + random_hex();
  const std::vector<std::string> marks = {mark + "-a", mark + "-b", mark + "-c", mark + "-d"};
  // One argument holding every shell construct that would run a command if a shell saw it.
  const std::string model = "m; touch " + marks[0] + " $(touch " + marks[1] + ") `touch " +
                            marks[2] + "` | touch " + marks[3] + " && echo $HOME > /dev/null";
  ASSERT_TRUE(start({.workers = 1, .worker_args = {"--model", model}}));
  const json models = d().client().call("models.list");
  ASSERT_TRUE(is_result(models)) << models.dump();
  std::vector<std::string> ids;
  for (const auto& m : models["result"]["models"]) ids.push_back(m.value("id", ""));
  EXPECT_EQ(ids, std::vector<std::string>{model}) << "the argument was split or rewritten";
  const json reply =
      d().client().call("generate", {{"model", model}, {"prompt", "hi"}, {"max_tokens", 2}});
  EXPECT_TRUE(is_result(reply)) << reply.dump();
  for (const auto& path : marks) {
    EXPECT_FALSE(path_exists(path)) << path << " was created: a shell ran the worker command";
    ::unlink(path.c_str());
  }
}

}  // namespace
}  // namespace drover::test
