#include "tests/support/test_certs.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace drover::test {

TestCerts::TestCerts() {
  char tmpl[] = "/tmp/drover-certs-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  std::ofstream(dir_ + "/server.ext")
      << "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
         "extendedKeyUsage=serverAuth\n";
  std::ofstream(dir_ + "/client.ext") << "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";
  make_ca("ca");
  make_ca("other-ca");
  make_leaf("server", "ca", "server.ext", 2);
  make_leaf("client", "ca", "client.ext", 3);
  make_leaf("other-client", "other-ca", "client.ext", 4);
  make_leaf("other-server", "other-ca", "server.ext", 5);
}

TestCerts::~TestCerts() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void TestCerts::make_ca(const std::string& name) {
  openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=" +
          name + " -keyout " + name + ".key -out " + name + ".pem");
}

void TestCerts::make_leaf(const std::string& name, const std::string& ca, const std::string& ext,
                          int serial) {
  openssl("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + name +
          " -keyout " + name + ".key -out " + name + ".csr");
  openssl("x509 -req -days 2 -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
          ".key -set_serial " + std::to_string(serial) + " -extfile " + ext + " -out " + name +
          ".pem");
}

void TestCerts::openssl(const std::string& args) {
  std::vector<std::string> argv = {"openssl"};
  std::istringstream words(args);
  for (std::string w; words >> w;) argv.push_back(w);
  const std::string err_path = dir_ + "/openssl.err";
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (::chdir(dir_.c_str()) != 0) ::_exit(126);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(err, 2);
    std::vector<char*> args_c;
    for (auto& a : argv) args_c.push_back(a.data());
    args_c.push_back(nullptr);
    ::execvp("openssl", args_c.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream in(err_path);
    std::stringstream text;
    text << in.rdbuf();
    throw std::runtime_error("openssl " + args + " failed: " + text.str());
  }
}

}  // namespace drover::test
