// drover-worker --stdio: the worker protocol on stdin/stdout instead of the control socket, as
// the Node baseline (bench/baselines/node) and drover-bench --direct --worker-stdio use it. Each
// test spawns the real drover-worker with two pipes (plain pipes, the general case: Node hands
// its children socketpairs, which a socket-capable worker handles as well) and plays the
// supervisor: hello, init, generate (unary and streamed), batch_tokenize, detokenize, and the
// two ways a link ends (shutdown notification, end of stdin). Every line the worker writes to
// stdout must be a protocol message; its log goes to a file from stderr.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "harness.hpp"
#include "proto/framing.hpp"

namespace drover::test {
namespace {

// One drover-worker --stdio child: we hold the write end of its stdin and the read end of its
// stdout. The destructor SIGKILLs and reaps a child still running, so no test leaks one.
class StdioWorker {
 public:
  explicit StdioWorker(std::vector<std::string> extra_args = {})
      : log_path_(make_log_path()), decoder_(64 * 1024 * 1024) {
    std::vector<std::string> argv = {worker_bin(), "--stdio", "--worker-id", "7"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      if (log >= 0) ::dup2(log, 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    if (log >= 0) ::close(log);
    in_ = to_child[1];
    out_ = from_child[0];
  }

  ~StdioWorker() {
    close_stdin();
    if (out_ >= 0) ::close(out_);
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    ::unlink(log_path_.c_str());
  }

  void send(const json& message) {
    const std::string line = message.dump() + "\n";
    ASSERT_EQ(::write(in_, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  }

  void close_stdin() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }

  // The next message on the worker's stdout; nullopt on timeout or end of stream. A line that
  // is not JSON fails the test: stdout must carry nothing but the protocol.
  std::optional<json> read(Millis timeout = kReplyTimeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto frame = decoder_.next()) {
        EXPECT_EQ(frame->kind, proto::Frame::Kind::message);
        auto parsed = json::parse(frame->body, nullptr, false);
        EXPECT_FALSE(parsed.is_discarded()) << "not JSON on stdout: " << frame->body;
        return parsed;
      }
      const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return std::nullopt;
      char buf[65536];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      decoder_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    }
  }

  // Reads until the reply with `id`; notifications read meanwhile go to `others`.
  json read_reply(std::uint64_t id, std::vector<json>* others = nullptr) {
    for (;;) {
      auto m = read();
      if (!m) throw std::runtime_error("no reply to id " + std::to_string(id));
      if (m->contains("id") && (*m)["id"] == id) return *m;
      if (others) others->push_back(*m);
    }
  }

  // True once stdout reached end of stream (the worker closed its side) within the timeout.
  bool wait_eof(Millis timeout = kWaitTimeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0))) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n == 0) return true;
      if (n < 0 && errno != EINTR) return false;
    }
    return false;
  }

  // The raw wait status once the worker has exited, nullopt on timeout.
  std::optional<int> wait_exit(Millis timeout = kWaitTimeout) {
    if (status_) return status_;
    wait_until(
        [this] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
          return status_.has_value();
        },
        timeout);
    return status_;
  }

  std::string log() const { return read_file(log_path_); }

  // hello, then init with the sim backend; returns the hello params and checks the reply.
  json handshake() {
    auto hello = read();
    EXPECT_TRUE(hello) << log();
    if (!hello) return {};
    EXPECT_EQ(hello->value("method", ""), "hello") << hello->dump();
    send(request(1, "init", {{"worker_id", 7}, {"generation", 1}, {"backend", "sim"},
                             {"heartbeat_interval_ms", 60000}, {"transport", "socket"}}));
    const json reply = read_reply(1);
    EXPECT_TRUE(is_result(reply)) << reply.dump();
    EXPECT_EQ(reply["result"]["models"], json::array({"sim"})) << reply.dump();
    return (*hello)["params"];
  }

 private:
  static std::string make_log_path() {
    char path[] = "/tmp/drover-stdio-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd >= 0) ::close(fd);
    return path;
  }

  std::string log_path_;
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  proto::FrameDecoder decoder_;
  std::optional<int> status_;
};

TEST(WorkerStdioTest, HandshakeGenerateAndShutdown) {
  StdioWorker w;
  const json hello = w.handshake();
  EXPECT_EQ(hello.value("worker_id", -1), 7);
  EXPECT_EQ(hello.value("protocol", -1), 1);
  EXPECT_GT(hello.value("pid", 0), 0);

  // Unary generate.
  w.send(request(2, "generate", {{"prompt", "hello stdio"}, {"max_tokens", 5}, {"seed", 1}}));
  const json unary = w.read_reply(2);
  ASSERT_TRUE(is_result(unary)) << unary.dump();
  EXPECT_EQ(unary["result"]["usage"]["completion_tokens"], 5);
  EXPECT_EQ(unary["result"]["finish_reason"], "length");

  // Streamed generate: chunks carry the request id and indices 0..n-1; the final text is their
  // concatenation (and equals the unary text for the same prompt and seed).
  w.send(request(3, "generate",
                 {{"prompt", "hello stdio"}, {"max_tokens", 5}, {"seed", 1}, {"stream", true}}));
  std::vector<json> others;
  const json streamed = w.read_reply(3, &others);
  ASSERT_TRUE(is_result(streamed)) << streamed.dump();
  std::string joined;
  int index = 0;
  for (const json& m : others) {
    if (m.value("method", "") != "generate.chunk") continue;
    EXPECT_EQ(m["params"]["id"], 3);
    EXPECT_EQ(m["params"]["index"], index++);
    joined += m["params"].value("text", "");
  }
  EXPECT_EQ(index, 5);
  EXPECT_EQ(joined, streamed["result"]["text"]);
  EXPECT_EQ(streamed["result"]["text"], unary["result"]["text"]);

  // Tokenize round trip (the sim's tokens are the UTF-8 bytes).
  w.send(request(4, "batch_tokenize", {{"texts", {"ab"}}}));
  const json tokens = w.read_reply(4);
  ASSERT_TRUE(is_result(tokens)) << tokens.dump();
  EXPECT_EQ(tokens["result"]["tokens"], json::parse("[[97, 98]]"));
  w.send(request(5, "detokenize", {{"tokens", {97, 98}}}));
  const json text = w.read_reply(5);
  ASSERT_TRUE(is_result(text)) << text.dump();
  EXPECT_EQ(text["result"]["text"], "ab");

  // shutdown: the worker closes its side and exits 0.
  w.send(notification("shutdown"));
  EXPECT_TRUE(w.wait_eof());
  const auto status = w.wait_exit();
  ASSERT_TRUE(status) << w.log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status << "\n" << w.log();
}

TEST(WorkerStdioTest, PipelinedRequestsAreAllAnswered) {
  StdioWorker w;
  w.handshake();
  // 200 requests written back to back before reading anything: every id answered once.
  constexpr std::uint64_t kCount = 200;
  for (std::uint64_t id = 10; id < 10 + kCount; ++id) {
    w.send(request(id, "generate", {{"prompt", "p" + std::to_string(id)}, {"max_tokens", 4}}));
  }
  std::vector<int> seen(kCount, 0);
  for (std::uint64_t n = 0; n < kCount;) {
    auto m = w.read();
    ASSERT_TRUE(m) << "after " << n << " replies\n" << w.log();
    if (!m->contains("id")) continue;  // heartbeats
    ASSERT_TRUE(is_result(*m)) << m->dump();
    const auto id = (*m)["id"].get<std::uint64_t>();
    ASSERT_GE(id, 10u);
    ASSERT_LT(id, 10 + kCount);
    ++seen[id - 10];
    ++n;
  }
  for (std::uint64_t i = 0; i < kCount; ++i) EXPECT_EQ(seen[i], 1) << "id " << i + 10;
}

TEST(WorkerStdioTest, EndOfStdinEndsTheWorker) {
  StdioWorker w;
  w.handshake();
  w.close_stdin();
  const auto status = w.wait_exit();
  ASSERT_TRUE(status) << w.log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status << "\n" << w.log();
  // The log went to stderr: the file holds it, and stdout held only protocol lines (checked
  // by every read above).
  EXPECT_NE(w.log().find("link to the supervisor closed"), std::string::npos) << w.log();
}

TEST(WorkerStdioTest, LogsGoToStderrNotStdout) {
  StdioWorker w;
  w.handshake();
  // An unknown fault makes the worker log a warning while the link is live; the next reply
  // must still parse (read() fails the test on any non-JSON line) and the warning must be in
  // the stderr file.
  w.send(notification("inject", {{"fault", "no-such-fault"}}));
  w.send(request(2, "generate", {{"prompt", "x"}, {"max_tokens", 2}}));
  EXPECT_TRUE(is_result(w.read_reply(2)));
  w.send(notification("shutdown"));
  EXPECT_TRUE(w.wait_eof());
  EXPECT_TRUE(w.wait_exit());
  EXPECT_NE(w.log().find("unknown fault 'no-such-fault' ignored"), std::string::npos) << w.log();
}

}  // namespace
}  // namespace drover::test
