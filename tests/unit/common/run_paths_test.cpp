// The private run directory: which directory each environment resolves to (droverd and
// droverctl share it, so both must agree), and what ensure_private_dir accepts and refuses.
// The refusals are what stops another local user from squatting the socket directory.
#include "common/run_paths.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "common/config.hpp"

namespace drover {
namespace {

namespace fs = std::filesystem;

TEST(RunPaths, XdgRuntimeDirWinsForEveryUser) {
  EXPECT_EQ(default_run_base({{"XDG_RUNTIME_DIR", "/run/user/1000"}}, 1000), "/run/user/1000/drover");
  EXPECT_EQ(default_run_base({{"XDG_RUNTIME_DIR", "/run/user/0"}, {"TMPDIR", "/x"}}, 0),
            "/run/user/0/drover");
}

TEST(RunPaths, RootWithoutXdgUsesRunDrover) {
  EXPECT_EQ(default_run_base({}, 0), "/run/drover");
  EXPECT_EQ(default_run_base({{"XDG_RUNTIME_DIR", ""}, {"TMPDIR", "/x"}}, 0), "/run/drover");
}

TEST(RunPaths, OtherUsersFallBackToAPerUserDirectoryInTmp) {
  EXPECT_EQ(default_run_base({}, 1000), "/tmp/drover-1000");
  EXPECT_EQ(default_run_base({{"TMPDIR", "/var/tmp"}}, 1000), "/var/tmp/drover-1000");
  EXPECT_EQ(default_run_base({{"TMPDIR", ""}}, 42), "/tmp/drover-42");
}

TEST(RunPaths, SocketNamesInTheBase) {
  EXPECT_EQ(default_client_socket("/run/drover"), "/run/drover/drover.sock");
  EXPECT_EQ(default_admin_socket("/run/drover"), "/run/drover/admin.sock");
}

TEST(RunPaths, ConfigDefaultsFollowTheEnvironmentAndExplicitPathsWin) {
  const Config c = parse_config("", {{"XDG_RUNTIME_DIR", "/run/user/7"}}, {});
  EXPECT_EQ(c.server.socket, "/run/user/7/drover/drover.sock");
  EXPECT_EQ(c.server.admin_socket, "/run/user/7/drover/admin.sock");
  const Config e = parse_config("server: {socket: /tmp/s.sock}\n",
                                {{"XDG_RUNTIME_DIR", "/run/user/7"},
                                 {"DROVER_SERVER_ADMIN_SOCKET", "/tmp/a.sock"}},
                                {});
  EXPECT_EQ(e.server.socket, "/tmp/s.sock");
  EXPECT_EQ(e.server.admin_socket, "/tmp/a.sock");
}

class PrivateDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "drover-runpaths-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static mode_t mode_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  // The message of the error ensure_private_dir throws, or "" when it accepts.
  static std::string refusal(const std::string& path) {
    try {
      ensure_private_dir(path, "default run directory", 0700, static_cast<uid_t>(-1),
                         static_cast<gid_t>(-1));
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }
  std::string dir_;
};

TEST_F(PrivateDir, CreatesAMissingDirectoryMode0700) {
  const std::string d = dir_ + "/drover";
  EXPECT_EQ(refusal(d), "");
  EXPECT_TRUE(fs::is_directory(d));
  EXPECT_EQ(mode_of(d), 0700u);
  // Again: adopted as it is.
  EXPECT_EQ(refusal(d), "");
}

TEST_F(PrivateDir, TightensAnExistingDirectoryOfOurs) {
  const std::string d = dir_ + "/drover";
  ASSERT_EQ(::mkdir(d.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(d.c_str(), 0777), 0);
  EXPECT_EQ(refusal(d), "");
  EXPECT_EQ(mode_of(d), 0700u);
}

TEST_F(PrivateDir, RefusesASymlinkAndLeavesItsTargetAlone) {
  const std::string target = dir_ + "/target";
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  const std::string link = dir_ + "/drover";
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  const std::string why = refusal(link);
  EXPECT_NE(why.find("default run directory: '" + link + "'"), std::string::npos) << why;
  EXPECT_NE(why.find("symlink is refused"), std::string::npos) << why;
  EXPECT_EQ(mode_of(target), 0755u) << "the symlink's target was changed";
}

TEST_F(PrivateDir, RefusesADirectoryOwnedByAnotherUser) {
  std::string d;
  if (::geteuid() == 0) {
    d = dir_ + "/drover";
    ASSERT_EQ(::mkdir(d.c_str(), 0777), 0);
    ASSERT_EQ(::chmod(d.c_str(), 0777), 0);  // past the umask: a change would show
    ASSERT_EQ(::chown(d.c_str(), 4242, 4242), 0);
  } else {
    d = "/";  // root's, as seen by an unprivileged user
  }
  const std::string why = refusal(d);
  EXPECT_NE(why.find("is owned by uid"), std::string::npos) << why;
  EXPECT_NE(why.find("refusing to use it"), std::string::npos) << why;
  if (::geteuid() == 0) {
    EXPECT_EQ(mode_of(d), 0777u) << "a foreign directory was changed";
  }
}

TEST_F(PrivateDir, RefusesAPlainFileAndAMissingParent) {
  const std::string f = dir_ + "/file";
  { FILE* fp = std::fopen(f.c_str(), "w"); ASSERT_NE(fp, nullptr); std::fclose(fp); }
  EXPECT_NE(refusal(f).find("cannot be opened as a directory"), std::string::npos);
  const std::string why = refusal(dir_ + "/missing/drover");
  EXPECT_NE(why.find("cannot create"), std::string::npos) << why;
}

TEST_F(PrivateDir, HandsTheDirectoryToTheGivenGroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another group needs root";
  const std::string d = dir_ + "/drover";
  ensure_private_dir(d, "default run directory", 0710, static_cast<uid_t>(-1), 4242);
  struct stat st {};
  ASSERT_EQ(::stat(d.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 4242u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0710u);
}

// droverctl's side: a client trusts a default socket only in a directory of its own or root's.
TEST_F(PrivateDir, AClientTrustsOnlyItsOwnOrRootsRunBase) {
  const uid_t me = ::geteuid();
  EXPECT_EQ(untrusted_run_base(dir_ + "/missing", me), "") << "missing: connecting just fails";
  EXPECT_EQ(untrusted_run_base(dir_, me), "");
  EXPECT_EQ(untrusted_run_base("/", 4242), "") << "root's directory is trusted";
  const std::string link = dir_ + "/link";
  ASSERT_EQ(::symlink(dir_.c_str(), link.c_str()), 0);
  EXPECT_NE(untrusted_run_base(link, me).find("is a symlink"), std::string::npos);
  if (me == 0) {
    const std::string foreign = dir_ + "/foreign";
    ASSERT_EQ(::mkdir(foreign.c_str(), 0700), 0);
    ASSERT_EQ(::chown(foreign.c_str(), 4242, 4242), 0);
    const std::string why = untrusted_run_base(foreign, 4343);
    EXPECT_NE(why.find("is owned by uid 4242"), std::string::npos) << why;
    EXPECT_EQ(untrusted_run_base(foreign, 4242), "");
  } else {
    EXPECT_NE(untrusted_run_base(dir_, me + 1).find("is owned by uid"), std::string::npos);
  }
}

}  // namespace
}  // namespace drover
