// drover-relay: the ceiling column of scripts/bench. The least work a supervisor of
// drover-workers can do per request, so that droverd's (and Node's) CPU per request and
// throughput can be read against what the kernel, the workers and the load generator cost
// anyway (issue 14, docs/PERFORMANCE.md "The relay column").
//
// - Clients speak NDJSON JSON-RPC on a Unix socket (--socket). N workers are spawned as
//   `drover-worker --stdio ARGS...` on a socketpair each (what Node's child_process gives the
//   Node baseline, so both talk to identical workers); each says `hello`, gets `init`
//   (transport socket, no preload) and is ready once init is answered (proto/README.md).
// - A client line is sent whole to the next ready worker (round-robin) with its top-level
//   `"id":` value replaced by the relay's own integer. A worker reply gets the client's id
//   bytes spliced back in place of its top-level id; a `generate.chunk` gets them in place of
//   `params.id`. Nothing else is parsed: a byte scan finds those members (it tracks strings and
//   nesting so a prompt containing `"id":` cannot fool it) and memcpy does the rest. `health`
//   is answered here (scripts/bench waits on workers_ready); heartbeats and model.loaded are
//   dropped.
// - One thread, level-triggered epoll. Reads take up to 256 KiB into one scratch buffer and
//   lines are relayed from there (only a trailing partial line is copied aside); output is
//   appended to the peer's buffer and each buffer written once per epoll_wait turn, the rest
//   kept for EPOLLOUT.
//
// What it deliberately lacks, being a ceiling and not a supervisor: no cancel on client
// disconnect (replies for a gone client are dropped), no method mapping (tokenize is not
// batch_tokenize), no timeouts, retries, heartbeat checks or restarts (a worker that exits
// ends the relay with status 1), no write-side backpressure, no Content-Length framing.
//
// Usage: drover-relay --socket PATH [--workers N] [--worker-bin PATH] [--backend NAME]
//                     [-- WORKER_ARGS...]
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

// Where a member's value lies in a line; end == 0 when the member was not found.
struct Span {
  std::size_t begin = 0, end = 0;
  bool found() const { return end != 0; }
};

struct Members {
  Span id;         // the top-level "id"
  Span method;     // the top-level "method" (a string, quotes included)
  Span params_id;  // "id" inside the top-level "params" object
};

// Index just past the string that starts at line[i] (a quote), or n when it is unterminated.
std::size_t skip_string(std::string_view line, std::size_t i) {
  for (++i; i < line.size(); ++i) {
    if (line[i] == '\\')
      ++i;
    else if (line[i] == '"')
      return i + 1;
  }
  return line.size();
}

std::size_t skip_space(std::string_view line, std::size_t i) {
  while (i < line.size() &&
         (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
    ++i;
  return i;
}

// Finds id, method and params.id of a JSON object. With `first_id_only` it stops at the first
// id found at either place (worker lines: a reply's id, or a chunk's params.id, is all the relay
// needs). Only string boundaries and nesting are tracked; the text is assumed to be JSON.
Members scan(std::string_view line, bool first_id_only) {
  Members m;
  int depth = 0;
  bool expect_key = false;  // the next string at a tracked depth is a member name
  bool in_params = false;   // depth 2 is the object value of the top-level "params"
  for (std::size_t i = 0; i < line.size();) {
    const char c = line[i];
    if (c == '"') {
      const std::size_t end = skip_string(line, i);
      const bool tracked = depth == 1 || (depth == 2 && in_params);
      if (!tracked || !expect_key) {
        i = end;
        continue;
      }
      const std::string_view key = line.substr(i + 1, end - i - 2);
      expect_key = false;
      i = skip_space(line, end);
      if (i >= line.size() || line[i] != ':') return m;  // not JSON; give up
      i = skip_space(line, i + 1);
      if (depth == 1) in_params = key == "params" && i < line.size() && line[i] == '{';
      const bool want_id = key == "id";
      const bool want_method = depth == 1 && key == "method";
      if ((want_id || want_method) && i < line.size() && line[i] != '{' && line[i] != '[') {
        // A scalar: a string, or everything up to the next delimiter.
        std::size_t v = line[i] == '"' ? skip_string(line, i) : i;
        while (v < line.size() && !std::strchr(",}] \t\r\n", line[v])) ++v;
        Span& s = !want_id ? m.method : depth == 1 ? m.id : m.params_id;
        s = {i, v};
        if (want_id && first_id_only) return m;
        i = v;
      }
      continue;
    }
    if (c == '{' || c == '[') {
      ++depth;
      expect_key = c == '{';
    } else if (c == '}' || c == ']') {
      --depth;
      expect_key = false;  // a value just ended; a ',' comes before the next member name
    } else if (c == ',') {
      expect_key = depth == 1 || (depth == 2 && in_params);
    }
    ++i;
  }
  return m;
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "drover-relay: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct Conn {
  int fd = -1;
  std::uint64_t serial = 0;  // tells a reused fd's new connection from the old one
  std::string in;            // an incomplete line carried to the next read
  std::string out;           // bytes not yet written
  std::size_t out_off = 0;
  bool dirty = false;     // queued in Relay::dirty_ for this turn's write
  bool want_out = false;  // EPOLLOUT armed
  // Workers only:
  bool worker = false, ready = false;
  pid_t pid = -1;
  int slot = 0;
};

// One client request at a worker; the relay's id for it is its index + 1 (0 is init's).
struct Pending {
  int fd = -1;  // the client's; -1 when the entry is free
  std::uint64_t serial = 0;
  std::string client_id;  // the id bytes exactly as the client wrote them
};

class Relay {
 public:
  Relay(std::string socket_path, std::string backend)
      : socket_path_(std::move(socket_path)), backend_(std::move(backend)), scratch_(256 * 1024) {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) die("epoll_create1");
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGCHLD}) sigaddset(&set, s);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    sig_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sig_ < 0) die("signalfd");
    watch(sig_, EPOLLIN);
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof addr.sun_path) die("socket path too long");
    std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
    ::unlink(socket_path_.c_str());
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind");
    if (::listen(listener_, SOMAXCONN) != 0) die("listen");
    watch(listener_, EPOLLIN);
  }

  void spawn_worker(int slot, const std::vector<std::string>& argv) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) {
      const std::string_view kv(*e);
      if (!kv.starts_with("DROVER_WORKER_ID=") && !kv.starts_with("DROVER_CONTROL_SOCKET="))
        env_strings.emplace_back(kv);
    }
    env_strings.push_back("DROVER_WORKER_ID=" + std::to_string(slot));
    std::vector<char*> args, env;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : env_strings) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(sv[1], 0);
      ::dup2(sv[1], 1);
      ::execvpe(args[0], args.data(), env.data());
      ::_exit(127);
    }
    ::close(sv[1]);
    Conn& w = open_conn(sv[0]);
    w.worker = true;
    w.pid = pid;
    w.slot = slot;
    workers_.push_back(w.fd);
  }

  int run() {
    std::vector<epoll_event> events(256);
    for (;;) {
      const int n = ::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0 && errno != EINTR) die("epoll_wait");
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == sig_) {
          if (int status = on_signal(); status >= 0) return status;
        } else if (fd == listener_) {
          accept_all();
        } else if (Conn* c = conn(fd)) {
          if (events[i].events & EPOLLOUT) write_out(*c);
          if ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->fd == fd) read_in(*c);
        }
      }
      // One write per connection per turn, however many lines were queued for it.
      for (int fd : dirty_) {
        if (Conn* c = conn(fd)) {
          c->dirty = false;
          write_out(*c);
        }
      }
      dirty_.clear();
    }
  }

 private:
  Conn* conn(int fd) {
    return fd >= 0 && static_cast<std::size_t>(fd) < conns_.size() && conns_[fd].fd == fd
               ? &conns_[fd]
               : nullptr;
  }

  void watch(int fd, std::uint32_t events, int op = EPOLL_CTL_ADD) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(ep_, op, fd, &ev) != 0) die("epoll_ctl");
  }

  Conn& open_conn(int fd) {
    if (static_cast<std::size_t>(fd) >= conns_.size()) conns_.resize(fd + 1024);
    Conn& c = conns_[fd];
    c = Conn{};
    c.fd = fd;
    c.serial = ++serials_;
    watch(fd, EPOLLIN);
    return c;
  }

  void close_conn(Conn& c) {
    if (c.worker) {
      std::fprintf(stderr, "drover-relay: worker %d closed its link; exiting\n", c.slot);
      std::exit(1);
    }
    ::close(c.fd);  // also leaves the epoll set
    c = Conn{};
    if (listener_paused_) {
      listener_paused_ = false;
      watch(listener_, EPOLLIN, EPOLL_CTL_MOD);
    }
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        open_conn(fd);
        continue;
      }
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: stop accepting until a connection closes (else epoll spins).
        std::fprintf(stderr, "drover-relay: accept: %s; pausing accepts\n", std::strerror(errno));
        listener_paused_ = true;
        watch(listener_, 0, EPOLL_CTL_MOD);
      }
      return;  // EAGAIN, or an error of the connection being accepted
    }
  }

  void read_in(Conn& c) {
    const ssize_t n = ::read(c.fd, scratch_.data(), scratch_.size());
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return close_conn(c);
    std::string_view data(scratch_.data(), static_cast<std::size_t>(n));
    const bool carried = !c.in.empty();
    if (carried) {  // a line split across reads: relay from c.in, which holds its start
      c.in.append(data);
      data = c.in;
    }
    const std::uint64_t serial = c.serial;
    std::size_t start = 0;
    for (std::size_t nl; (nl = data.find('\n', start)) != std::string_view::npos; start = nl + 1) {
      std::string_view line = data.substr(start, nl - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) continue;
      c.worker ? on_worker_line(c, line) : on_client_line(c, line);
      if (c.serial != serial) return;  // closed meanwhile
    }
    if (carried) {
      c.in.erase(0, start);
    } else {
      c.in.assign(data.substr(start));
    }
    if (c.in.size() > (64u << 20)) {
      std::fprintf(stderr, "drover-relay: a line over 64 MiB; closing that connection\n");
      close_conn(c);
    }
  }

  // Appends to a connection's output; written at the end of this epoll turn.
  void queue(Conn& c, std::string_view a, std::string_view b = {}, std::string_view d = {}) {
    c.out.append(a).append(b).append(d).push_back('\n');
    if (!c.dirty) {
      c.dirty = true;
      dirty_.push_back(c.fd);
    }
  }

  void write_out(Conn& c) {
    while (c.out_off < c.out.size()) {
      const ssize_t n =
          ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n < 0) return close_conn(c);
      c.out_off += static_cast<std::size_t>(n);
    }
    const bool rest = c.out_off < c.out.size();
    if (!rest) {
      c.out.clear();
      c.out_off = 0;
    } else if (c.out_off > (1u << 20)) {  // don't let a slow reader's written prefix pile up
      c.out.erase(0, c.out_off);
      c.out_off = 0;
    }
    if (rest != c.want_out) {
      c.want_out = rest;
      watch(c.fd, rest ? EPOLLIN | EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD);
    }
  }

  void on_client_line(Conn& c, std::string_view line) {
    const Members m = scan(line, false);
    const std::string_view id =
        m.id.found() ? line.substr(m.id.begin, m.id.end - m.id.begin) : "null";
    if (m.method.found() &&
        line.substr(m.method.begin, m.method.end - m.method.begin) == "\"health\"") {
      if (!m.id.found()) return;
      int ready = 0;
      for (int w : workers_) ready += conns_[w].ready;
      char body[160];
      std::snprintf(body, sizeof body,
                    ",\"result\":{\"status\":\"%s\",\"workers_ready\":%d,\"workers_total\":%zu}}",
                    ready == 0                                  ? "unavailable"
                    : ready < static_cast<int>(workers_.size()) ? "degraded"
                                                                : "ok",
                    ready, workers_.size());
      return queue(c, "{\"jsonrpc\":\"2.0\",\"id\":", id, body);
    }
    Conn* w = pick_worker();
    if (!w) {
      if (m.id.found())
        queue(c, "{\"jsonrpc\":\"2.0\",\"id\":", id,
              ",\"error\":{\"code\":-32002,\"message\":\"No healthy worker\"}}");
      return;
    }
    if (!m.id.found()) return queue(*w, line);  // a notification: nothing comes back
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(pending_.size());
      pending_.emplace_back();
    }
    Pending& p = pending_[index];
    p.fd = c.fd;
    p.serial = c.serial;
    p.client_id.assign(id);
    char ours[24];
    const int len = std::snprintf(ours, sizeof ours, "%u", index + 1);
    queue(*w, line.substr(0, m.id.begin), std::string_view(ours, len), line.substr(m.id.end));
  }

  void on_worker_line(Conn& w, std::string_view line) {
    const Members m = scan(line, w.ready);
    if (!w.ready) return handshake(w, line, m);
    const Span& at = m.id.found() ? m.id : m.params_id;  // a reply, else a chunk
    if (!at.found()) return;                             // heartbeat, model.loaded
    const std::string_view digits = line.substr(at.begin, at.end - at.begin);
    std::uint64_t ours = 0;
    for (char d : digits) ours = ours * 10 + static_cast<std::uint64_t>(d - '0');
    if (ours == 0 || ours > pending_.size() || pending_[ours - 1].fd < 0) {
      std::fprintf(stderr, "drover-relay: worker %d: message for unknown id %.*s\n", w.slot,
                   static_cast<int>(digits.size()), digits.data());
      return;
    }
    Pending& p = pending_[ours - 1];
    Conn* c = conn(p.fd);
    if (c && c->serial == p.serial)
      queue(*c, line.substr(0, at.begin), p.client_id, line.substr(at.end));
    if (m.id.found()) {  // the final reply: the id is free again
      p.fd = -1;
      free_.push_back(static_cast<std::uint32_t>(ours - 1));
    }
  }

  // hello -> init -> the init reply (id 0) makes the worker ready.
  void handshake(Conn& w, std::string_view line, const Members& m) {
    const std::string_view method =
        m.method.found() ? line.substr(m.method.begin, m.method.end - m.method.begin) : "";
    if (method == "\"hello\"") {
      char init[320];
      std::snprintf(
          init, sizeof init,
          "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"init\",\"params\":{\"worker_id\":%d,"
          "\"generation\":1,\"backend\":\"%s\",\"heartbeat_interval_ms\":1000,"
          "\"transport\":{\"kind\":\"socket\"},\"preload\":{\"enabled\":false}}}",
          w.slot, backend_.c_str());
      return queue(w, init);
    }
    if (m.id.found() && line.substr(m.id.begin, m.id.end - m.id.begin) == "0") {
      if (line.find("\"result\"") == std::string_view::npos) {
        std::fprintf(stderr, "drover-relay: worker %d: init failed: %.*s\n", w.slot,
                     static_cast<int>(line.size()), line.data());
        std::exit(1);
      }
      w.ready = true;
      std::fprintf(stderr, "drover-relay: worker %d ready (pid %d)\n", w.slot,
                   static_cast<int>(w.pid));
    }
  }

  Conn* pick_worker() {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      Conn& w = conns_[workers_[next_++ % workers_.size()]];
      if (w.ready) return &w;
    }
    return nullptr;
  }

  // A status to exit with, or -1 to keep running.
  int on_signal() {
    signalfd_siginfo si;
    while (::read(sig_, &si, sizeof si) == sizeof si) {
      if (si.ssi_signo == SIGCHLD) {
        std::fprintf(stderr, "drover-relay: a worker exited; exiting\n");
        shutdown();
        return 1;
      }
      shutdown();
      return 0;
    }
    return -1;
  }

  // Closing a worker's link is its signal to exit; after 2 s it is killed.
  void shutdown() {
    ::unlink(socket_path_.c_str());
    for (int w : workers_) ::shutdown(w, SHUT_RDWR);
    const timespec grace{2, 0};
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (int w : workers_) {
      const pid_t pid = conns_[w].pid;
      int status;
      while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (::sigtimedwait(&chld, nullptr, &grace) < 0 && errno == EAGAIN) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, &status, 0);
        }
      }
    }
  }

  std::string socket_path_, backend_;
  int ep_ = -1, sig_ = -1, listener_ = -1;
  bool listener_paused_ = false;
  std::vector<char> scratch_;
  std::vector<Conn> conns_;  // indexed by fd
  std::vector<int> workers_, dirty_;
  std::vector<Pending> pending_;
  std::vector<std::uint32_t> free_;
  std::uint64_t serials_ = 0;
  std::size_t next_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string socket = "/tmp/drover-relay.sock", worker_bin = "drover-worker", backend = "sim";
  int workers = 2;
  std::vector<std::string> worker_args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--") {
      worker_args.assign(argv + i + 1, argv + argc);
      break;
    } else if (a == "--socket" && has_value) {
      socket = argv[++i];
    } else if (a == "--workers" && has_value) {
      workers = std::atoi(argv[++i]);
    } else if (a == "--worker-bin" && has_value) {
      worker_bin = argv[++i];
    } else if (a == "--backend" && has_value) {
      backend = argv[++i];
    } else {
      std::fprintf(
          stderr,
          "usage: drover-relay [--socket PATH] [--workers N] [--worker-bin PATH] [--backend NAME] "
          "[-- WORKER_ARGS...]\n");
      return a == "-h" || a == "--help" ? 0 : 2;
    }
  }
  if (workers < 1) {
    std::fprintf(stderr, "drover-relay: --workers must be at least 1\n");
    return 2;
  }
  Relay relay(socket, backend);
  std::vector<std::string> argv_worker = {worker_bin, "--stdio"};
  argv_worker.insert(argv_worker.end(), worker_args.begin(), worker_args.end());
  for (int slot = 0; slot < workers; ++slot) relay.spawn_worker(slot, argv_worker);
  std::fprintf(stderr, "drover-relay: listening on %s, %d workers\n", socket.c_str(), workers);
  return relay.run();
}
