#include "worker/runtime/worker_runtime.hpp"

#include <charconv>

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <cerrno>
#include <cstring>

#include <fstream>
#include <map>

#include "common/log.hpp"

namespace drover::worker {
namespace wm = proto::worker::method;

namespace {

std::int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * ::sysconf(_SC_PAGESIZE);
}

BackendError bad_params(std::string detail) {
  return BackendError{RpcError::invalid_params, {}, json{{"detail", std::move(detail)}}};
}

}  // namespace

WorkerRuntime::WorkerRuntime(asio::io_context& io, RuntimeOptions options, BackendFactory factory)
    : io_(io),
      opt_(std::move(options)),
      factory_(std::move(factory)),
      input_(io),
      output_(io),
      writer_(output_),
      decoder_(opt_.max_message_bytes),
      heartbeat_timer_(io) {}

asio::awaitable<bool> WorkerRuntime::open_link() {
  auto log = component_logger("worker");
  boost::system::error_code ec;
  if (opt_.stdio) {
    // The protocol gets its own descriptors for stdin and stdout, and fd 1 becomes a copy of
    // stderr: a stray write to stdout by any library then lands in the log, not in the stream.
    const int in = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
    const int out = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (in < 0 || out < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
      log->error("cannot take over stdin/stdout: {}",
                 std::strerror(errno));
      co_return false;
    }
    input_.assign(in, ec);
    if (!ec) output_.assign(out, ec);
    if (ec) {
      // epoll refuses regular files: stdio must be pipes or sockets.
      log->error("--stdio needs pipes or sockets on stdin/stdout: {}",
                 ec.message());
      co_return false;
    }
    co_return true;
  }
  asio::local::stream_protocol::socket socket(io_);
  auto [cec] = co_await socket.async_connect(
      asio::local::stream_protocol::endpoint(opt_.control_socket), use_nothrow);
  if (cec) {
    log->error("cannot connect to {}: {}", opt_.control_socket,
               cec.message());
    co_return false;
  }
  const int fd = socket.release(ec);
  if (!ec) input_.assign(fd, ec);
  // read_link() calls recvmsg itself after waiting for readability: it must not block.
  if (!ec) input_.non_blocking(true, ec);
  if (!ec) output_.assign(::fcntl(fd, F_DUPFD_CLOEXEC, 0), ec);
  if (ec) {
    log->error("control socket set-up failed: {}", ec.message());
    co_return false;
  }
  co_return true;
}

void WorkerRuntime::close_link() {
  boost::system::error_code ignored;
  // A socket is shut down so the supervisor sees end-of-stream even while a dup is open;
  // on a pipe this fails with ENOTSOCK and closing is all there is.
  if (output_.is_open()) ::shutdown(output_.native_handle(), SHUT_RDWR);
  input_.close(ignored);
  output_.close(ignored);
}

asio::awaitable<int> WorkerRuntime::run() {
  auto log = component_logger("worker");
  if (!co_await open_link()) co_return 1;
  spawn(io_, [this]() -> asio::awaitable<void> {
    const auto ec = co_await writer_.run();
    if (ec && !done_) {
      done_ = true;
      exit_code_ = 1;
      close_link();
    }
  });
  // hello: who we are and what we can do; the supervisor answers with init. Models are
  // known only once init has chosen the backend, so they come in the init reply.
  send_notification(
      wm::kHello, json{{"worker_id", opt_.worker_id},
                       {"pid", ::getpid()},
                       {"protocol", proto::worker::kProtocolVersion},
                       {"capabilities",
                        {{"shm", true},
                         {"batch_tokenize", true},
                         {"batch", true},
                         {"stream", true},
                         {"models", json::array()}}}});
  std::vector<char> buf(64 * 1024);
  while (!done_) {
    auto n = co_await read_link(buf);
    if (!n) {
      // The supervisor closed the link (or died): nothing more to serve.
      if (!done_) log->info("link to the supervisor closed; exiting");
      done_ = true;
      break;
    }
    decoder_.feed(std::string_view(buf.data(), *n));
    while (!done_) {
      auto frame = decoder_.next();
      if (!frame) break;
      if (frame->kind == proto::Frame::Kind::too_large && refuse_too_large(*frame)) continue;
      if (frame->kind != proto::Frame::Kind::message) {
        log->error("bad frame from supervisor: {}", frame->detail);
        co_return 1;
      }
      if (channel_ && channel_->take_socket_line(frame->body)) continue;
      handle(frame->body);
    }
  }
  heartbeat_timer_.cancel();
  if (channel_) {
    channel_->flush();
    channel_->close();
  }
  // Let the last replies reach the supervisor before exiting.
  writer_.close();
  co_return exit_code_;
}

asio::awaitable<boost::system::result<std::size_t>> WorkerRuntime::read_link(
    std::vector<char>& buf) {
  if (opt_.stdio) {  // pipes carry no descriptors
    auto [ec, n] = co_await input_.async_read_some(asio::buffer(buf), use_nothrow);
    if (ec) co_return ec;
    co_return n;
  }
  for (;;) {
    auto got = proto::recv_fds(input_.native_handle(),
                               std::as_writable_bytes(std::span(buf.data(), buf.size())),
                               proto::kMaxPassedFds);
    if (got) {
      // Descriptors travel with the first byte of the init line (proto/README.md), so they are
      // here by the time the decoder returns that line.
      for (auto& fd : got->fds) received_fds_.push_back(std::move(fd));
      co_return got->bytes;
    }
    if (got.error() != boost::system::errc::resource_unavailable_try_again &&
        got.error() != boost::system::errc::operation_would_block) {
      co_return got.error();
    }
    auto [ec] = co_await input_.async_wait(asio::posix::stream_descriptor::wait_read, use_nothrow);
    if (ec) co_return ec;
  }
}

json WorkerRuntime::prepare_transport(const json& transport) {
  std::vector<proto::UniqueFd> fds = std::move(received_fds_);
  received_fds_.clear();
  const std::string kind = transport.is_object() ? transport.value("kind", std::string("socket"))
                                                 : std::string("socket");
  if (kind != "shm") return json{{"kind", "socket"}};
  auto declined = [this](std::string why) {
    component_logger("worker")->warn("shm offered but not usable ({}); using the socket", why);
    return json{{"kind", "socket"}, {"error", std::move(why)}};
  };
  if (opt_.stdio) return declined("stdio transport cannot receive descriptors");
  if (fds.size() != proto::shm::kPassedFds) {
    return declined(fmt::format("expected {} descriptors with init, got {}",
                                proto::shm::kPassedFds, fds.size()));
  }
  auto adopted = proto::shm::adopt_channel_resources(std::move(fds));
  if (!adopted) return declined("cannot map the segment: " + adopted.error().message());
  shm_resources_ = std::move(*adopted);
  return json{{"kind", "shm"}, {"ring_bytes", shm_resources_->segment.ring_bytes()}};
}

void WorkerRuntime::activate_transport() {
  if (!shm_resources_) return;
  proto::shm::ShmChannel::Hooks hooks{
      [this](std::string_view text) { handle(text); },
      [this](std::string line) { writer_.push(std::move(line)); },
      [this](const std::string& why) { on_channel_failed(why); }};
  channel_ = std::make_shared<proto::shm::ShmChannel>(io_, proto::shm::ShmChannel::Side::worker,
                                                      std::move(*shm_resources_), std::move(hooks));
  shm_resources_.reset();
  channel_->start();
}

void WorkerRuntime::on_channel_failed(const std::string& why) {
  // A broken ring is a broken invariant: this incarnation exits and droverd replaces it.
  component_logger("worker")->error("{}; exiting", why);
  done_ = true;
  exit_code_ = 1;
  close_link();
}

void WorkerRuntime::handle(std::string_view text) {
  // droverd's batch queue may send several requests as one JSON-RPC batch; each is served as
  // if it had come alone, and answered on its own (proto/README.md).
  auto parsed = codec_.decode(text);
  if (!parsed) {
    component_logger("worker")->error("garbage from supervisor: {}",
                                      parsed.error());
    done_ = true;
    exit_code_ = 1;
    return;
  }
  for (auto& m : *parsed) {
    if (done_) return;
    handle(m);
  }
}

void WorkerRuntime::handle(proto::worker::Message& m) {
  using Kind = proto::worker::Message::Kind;
  namespace w = proto::worker;
  if (m.kind == Kind::notification) {
    if (m.method == wm::kCancel) {
      if (const auto id = w::read_cancel(m.params)) {
        const auto it = running_.find(*id);
        if (it != running_.end()) it->second->cancel();
      }
    } else if (m.method == wm::kInject) {
      const auto fault = w::read_inject(m.params);
      on_inject(fault ? *fault : std::string());
    } else if (m.method == wm::kShutdown) {
      stopping_ = true;
      maybe_exit();
    }
    return;
  }
  if (m.kind != Kind::request) return;  // the supervisor sends no replies today
  // The control plane reads its params as trees.
  auto tree = [&m]() {
    auto t = w::read_tree(m.params);
    return t ? std::move(*t) : json();
  };
  if (m.method == wm::kInit) return on_init(m.id, tree());
  if (!ready_) {
    return reply_error(m.id, BackendError{RpcError::internal_error, "not initialised", nullptr});
  }
  if (m.method == wm::kGenerate || m.method == wm::kBatchTokenize || m.method == wm::kDetokenize) {
    if (enact_fault()) return;
  }
  if (m.method == wm::kGenerate) {
    auto r = w::read_generate(m.params);
    if (!r) return reply_error(m.id, bad_params(r.error()));
    return on_generate(m.id, std::move(*r));
  }
  if (m.method == wm::kBatchTokenize) {
    auto r = w::read_batch_tokenize(m.params);
    if (!r) return reply_error(m.id, bad_params(r.error()));
    return on_batch_tokenize(m.id, *r);
  }
  if (m.method == wm::kDetokenize) {
    auto r = w::read_detokenize(m.params);
    if (!r) return reply_error(m.id, bad_params(r.error()));
    return on_detokenize(m.id, *r);
  }
  if (m.method == wm::kLoadModel) return on_load_model(m.id, tree());
  if (m.method == wm::kUnloadModel) return on_unload_model(m.id, tree());
  reply_error(m.id, BackendError{RpcError::method_not_found, {}, json{{"method", m.method}}});
}

void WorkerRuntime::on_inject(const std::string& fault) {
  auto log = component_logger("worker");
  static const std::map<std::string, Fault> faults = {{"crash", Fault::crash},
                                                      {"hang", Fault::hang},
                                                      {"garbage", Fault::garbage},
                                                      {"stall", Fault::stall},
                                                      {"slow", Fault::slow}};
  if (fault == "ring_garbage") {
    // A corrupt record header in the replies ring: droverd must replace this worker.
    if (!channel_ || channel_->closed()) {
      log->warn("fault 'ring_garbage' needs the shm transport; ignored");
    } else {
      log->warn("injected ring_garbage");
      channel_->write_garbage_record();
    }
    return;
  }
  if (fault == "exit_after_reply") {
    // The next reply is published in the ring without waking droverd, then the worker exits
    // while a helper holds the control socket open: droverd learns of the exit before any
    // doorbell or end of stream, the order in which a reply published just before a crash used
    // to be lost (it must drain the ring on the exit too).
    if (!channel_ || channel_->closed()) {
      log->warn("fault 'exit_after_reply' needs the shm transport; ignored");
    } else {
      log->warn("injected exit_after_reply");
      exit_after_reply_ = true;
    }
    return;
  }
  const auto it = faults.find(fault);
  if (it == faults.end()) {
    log->warn("unknown fault '{}' ignored", fault);
    return;
  }
  if (it->second == Fault::stall || it->second == Fault::slow) {
    if (!backend_ || !backend_->inject(it->second)) {
      log->warn("backend cannot enact fault '{}'", fault);
    } else {
      log->warn("injected {}", fault);
    }
    return;
  }
  enact(it->second);
}

bool WorkerRuntime::enact_fault() { return backend_ && enact(backend_->next_fault()); }

bool WorkerRuntime::enact(Fault fault) {
  switch (fault) {
    case Fault::none:
      return false;
    case Fault::crash:
      component_logger("worker")->warn("injected crash");
      ::_exit(86);
    case Fault::hang:
      component_logger("worker")->warn("injected hang");
      for (;;) ::pause();  // no heartbeats, no replies: only a signal ends this process
    case Fault::garbage:
      component_logger("worker")->warn("injected garbage");
      writer_.push(std::string("\x01\xff{not json at all}\n", 21));
      return true;
    case Fault::stall:
    case Fault::slow:
      return backend_ && !backend_->inject(fault);
  }
  return false;
}

void WorkerRuntime::on_init(std::uint64_t id, const json& params) {
  if (backend_) {
    return reply_error(id, BackendError{RpcError::invalid_request, "already initialised", nullptr});
  }
  ModelSpec own;
  own.backend = params.value("backend", std::string("sim"));
  auto made = factory_(own);
  if (!made) return reply_error(id, BackendError{RpcError::internal_error, made.error(), nullptr});
  backend_ = std::move(*made);
  heartbeat_interval_ = Millis(params.value("heartbeat_interval_ms", 1000));
  const json preload = params.value("preload", json::object());
  // Now, while the descriptors that came with this line are at hand; used after the reply.
  json transport = prepare_transport(params.value("transport", json()));
  spawn(io_, [this, id, preload, transport]() -> asio::awaitable<void> {
    auto loaded = co_await backend_->load();
    if (!loaded) {
      reply_error(id, loaded.error());
      co_return;
    }
    models_.add(backend_);
    json result = *loaded;
    if (preload.value("enabled", false)) {
      auto report = co_await warm_up(preload, result.value("load_ms", 0.0));
      if (!report) {
        reply_error(id, report.error());
        co_return;
      }
      result["preload"] = std::move(*report);
    }
    ready_ = true;
    result["models"] = models_.ids();
    result["transport"] = transport;
    // The faults inject can enact here: the runtime's own for any backend, the ring faults
    // when the rings were accepted (droverd checks that too), stall and slow when the
    // backend cooperates. droverd refuses the others instead of answering {"injected"}.
    json faults = {"crash", "hang", "garbage"};
    if (transport.value("kind", std::string()) == "shm") {
      faults.push_back("ring_garbage");
      faults.push_back("exit_after_reply");
    }
    if (backend_->can_inject(Fault::stall)) faults.push_back("stall");
    if (backend_->can_inject(Fault::slow)) faults.push_back("slow");
    result["faults"] = std::move(faults);
    reply(id, result);  // on the socket: droverd starts using the rings once it has read this
    activate_transport();
    co_await heartbeat_loop();
  });
}

asio::awaitable<BackendResult<json>> WorkerRuntime::warm_up(const json& preload, double load_ms) {
  // Each preload entry names a model: the worker's own, or a catalog model (the entry then
  // carries its `spec`), which is loaded first — at most max_parallel at once when `parallel`.
  // Warmup requests then run through the same generate path as real traffic (first-touch of
  // weights, caches, allocator pools), so the first client request does not pay for them.
  const bool fail_fast = preload.value("fail_fast", false);
  const json entries = preload.value("models", json::array());
  std::vector<std::optional<BackendResult<json>>> loads(entries.size());
  {
    const int width = preload.value("parallel", false) ? std::max(1, preload.value("max_parallel", 2)) : 1;
    std::size_t next = 0;
    int running = 0;
    asio::steady_timer wake(io_, asio::steady_timer::time_point::max());
    // One thread: a finished load can only run while this loop is suspended in the wait, so
    // re-checking `running` after every wake-up loses none.
    while (true) {
      for (; next < entries.size() && running < width; ++next) {
        const json& entry = entries[next];
        if (!entry.contains("spec") || models_.contains(entry.value("model_id", std::string()))) continue;
        ModelSpec spec;
        spec.id = entry.value("model_id", std::string());
        spec.backend = entry["spec"].value("backend", std::string());
        spec.path = entry["spec"].value("path", std::string());
        spec.options = entry["spec"].value("options", json::object());
        ++running;
        spawn(io_, [this, &loads, &running, &wake, i = next, spec]() -> asio::awaitable<void> {
          loads[i] = co_await load_model(spec);
          --running;
          wake.cancel();
        });
      }
      if (running == 0 && next >= entries.size()) break;
      co_await wake.async_wait(use_nothrow);
      wake.expires_at(asio::steady_timer::time_point::max());
    }
  }
  json report = json::array();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const json& entry = entries[i];
    const std::string model = entry.value("model_id", std::string());
    json line = {{"model", model}, {"load_ms", load_ms}, {"warmup_ms", 0.0}, {"ok", true}};
    if (loads[i] && *loads[i]) line["load_ms"] = (*loads[i])->value("load_ms", 0.0);
    if (loads[i] && !*loads[i]) {
      line["ok"] = false;
      line["error"] = loads[i]->error().message;
    } else if (!models_.contains(model)) {
      line["ok"] = false;
      line["error"] = fmt::format("model '{}' is not served by this worker (serves: {})", model,
                                  fmt::join(models_.ids(), ", "));
    } else {
      const auto start = std::chrono::steady_clock::now();
      const auto prompts = entry.value("warmup_prompts", std::vector<std::string>{"Hello"});
      const int n = entry.value("warmup_requests", 1);
      for (int i = 0; i < n && line["ok"] == true; ++i) {
        GenerateRequest req;
        req.model = model;
        req.prompt = prompts.empty() ? std::string("Hello") : prompts[static_cast<std::size_t>(i) % prompts.size()];
        req.max_tokens = entry.value("max_tokens", 8);
        req.seed = static_cast<std::uint64_t>(i);
        auto cancel = std::make_shared<CancelFlag>();
        // A named sink: g++ 12 mishandles temporaries inside co_await (see tinyllm_backend).
        ChunkSink ignore = [](const std::string&) {};
        const auto backend = models_.find(model);
        auto out = co_await (*backend)->generate(req, ignore, cancel);
        if (!out) {
          line["ok"] = false;
          line["error"] = out.error().message;
        }
      }
      line["warmup_requests"] = n;
      line["warmup_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      send_notification(wm::kModelLoaded, line);
    }
    if (fail_fast && line["ok"] == false) {
      co_return BackendResult<json>(boost::system::in_place_error,
                                    BackendError{RpcError::unknown_model,
                                                 "preload failed: " + line.value("error", std::string()),
                                                 json{{"model", model}}});
    }
    report.push_back(std::move(line));
  }
  co_return BackendResult<json>(boost::system::in_place_value, std::move(report));
}

void WorkerRuntime::on_generate(std::uint64_t id, GenerateRequest req) {
  auto backend = models_.find(req.model);
  if (!backend) return reply_error(id, backend.error());
  auto cancel = std::make_shared<CancelFlag>();
  running_.emplace(id, cancel);
  spawn(io_, serve_generate(id, std::move(req), std::move(*backend), std::move(cancel)));
}

asio::awaitable<void> WorkerRuntime::serve_generate(std::uint64_t id, GenerateRequest req,
                                                    std::shared_ptr<Backend> backend,
                                                    std::shared_ptr<CancelFlag> cancel) {
  std::uint64_t index = 0;
  auto outcome = co_await backend->generate(
      req,
      [this, id, &index, stream = req.stream](const std::string& text) {
        ++tokens_since_heartbeat_;
        ++progress_;
        if (stream) {
          std::string chunk;
          proto::worker::encode_chunk(chunk, id, index++, text);
          send(chunk);
        }
      },
      cancel);
  running_.erase(id);
  ++progress_;
  if (!outcome) {
    reply_error(id, outcome.error());
  } else {
    std::string out;
    proto::worker::encode_generate_result(
        out, id,
        {std::move(outcome->text), std::move(outcome->finish_reason),
         {outcome->prompt_tokens, outcome->completion_tokens}});
    send_reply(out);
  }
  maybe_exit();
}

void WorkerRuntime::on_batch_tokenize(std::uint64_t id,
                                      const proto::worker::BatchTokenizeRequest& r) {
  const auto backend = models_.find(r.model);
  if (!backend) return reply_error(id, backend.error());
  auto out = (*backend)->batch_tokenize(r.model, r.texts);
  if (!out) return reply_error(id, out.error());
  std::string reply;
  proto::worker::encode_tokens_result(reply, id, *out);
  send_reply(reply);
}

void WorkerRuntime::on_detokenize(std::uint64_t id, const proto::worker::DetokenizeRequest& r) {
  const auto backend = models_.find(r.model);
  if (!backend) return reply_error(id, backend.error());
  auto out = (*backend)->detokenize(r.model, r.tokens);
  if (!out) return reply_error(id, out.error());
  std::string reply;
  proto::worker::encode_text_result(reply, id, *out);
  send_reply(reply);
}

void WorkerRuntime::on_load_model(std::uint64_t id, const json& p) {
  if (!p.is_object() || !p.contains("model") || !p["model"].is_string() || !p.contains("backend") ||
      !p["backend"].is_string()) {
    return reply_error(id, bad_params("load_model needs string model and backend"));
  }
  ModelSpec spec;
  spec.id = p["model"].get<std::string>();
  spec.backend = p["backend"].get<std::string>();
  spec.path = p.value("path", std::string());
  spec.options = p.value("options", json::object());
  if (models_.contains(spec.id)) {
    return reply(id, json{{"model", spec.id}, {"load_ms", 0.0}, {"already_loaded", true},
                          {"models", models_.ids()}});
  }
  spawn(io_, [this, id, spec]() -> asio::awaitable<void> {
    auto loaded = co_await load_model(spec);
    if (!loaded) {
      reply_error(id, loaded.error());
    } else {
      reply(id, *loaded);
    }
  });
}

asio::awaitable<BackendResult<json>> WorkerRuntime::load_model(ModelSpec spec) {
  using Result = BackendResult<json>;
  auto unloadable = [&spec](std::string why) {
    return Result(boost::system::in_place_error,
                  BackendError{RpcError::unknown_model, "Model cannot be loaded",
                               json{{"model", spec.id}, {"detail", std::move(why)}}});
  };
  if (loading_.contains(spec.id)) co_return unloadable("already loading");
  auto made = factory_(spec);
  if (!made) co_return unloadable(made.error());
  std::shared_ptr<Backend> backend = std::move(*made);
  loading_.insert(spec.id);
  const auto start = std::chrono::steady_clock::now();
  auto loaded = co_await backend->load();
  loading_.erase(spec.id);
  if (!loaded) co_return unloadable(loaded.error().message);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  models_.add(backend);
  json report = *loaded;
  report["model"] = spec.id;
  report["load_ms"] = ms;
  report["models"] = models_.ids();
  send_notification(wm::kModelLoaded,
                    json{{"model", spec.id}, {"load_ms", ms}, {"warmup_ms", 0.0}, {"ok", true}});
  component_logger("worker")->info("model {} loaded in {:.1f} ms", spec.id, ms);
  co_return Result(boost::system::in_place_value, std::move(report));
}

void WorkerRuntime::on_unload_model(std::uint64_t id, const json& p) {
  if (!p.is_object() || !p.contains("model") || !p["model"].is_string()) {
    return reply_error(id, bad_params("unload_model needs a string model"));
  }
  const std::string model = p["model"].get<std::string>();
  if (!models_.remove(model)) {
    return reply_error(id, BackendError{RpcError::unknown_model, "Unknown model",
                                        json{{"model", model}, {"loaded", models_.ids()}}});
  }
  // Requests still running on it keep its backend (and mapping) until they end.
  component_logger("worker")->info("model {} unloaded", model);
  reply(id, json{{"model", model}, {"models", models_.ids()}});
}

asio::awaitable<void> WorkerRuntime::heartbeat_loop() {
  auto last = std::chrono::steady_clock::now();
  while (!done_) {
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - last).count();
    const double tps = secs > 0 ? static_cast<double>(tokens_since_heartbeat_) / secs : 0.0;
    tokens_since_heartbeat_ = 0;
    last = now;
    StepStats steps;
    for (const auto& backend : models_.backends()) {
      const StepStats s = backend->take_step_stats();
      steps.steps += s.steps;
      steps.busy += s.busy;
    }
    proto::worker::Heartbeat h{static_cast<std::int64_t>(running_.size()), 0, resident_bytes(),
                               tps, models_.ids(), static_cast<std::int64_t>(progress_)};
    if (steps.steps > 0) {
      h.steps = static_cast<std::int64_t>(steps.steps);
      h.step_us = static_cast<double>(steps.busy.count()) / static_cast<double>(steps.steps);
    }
    std::string beat;
    proto::worker::encode_heartbeat(beat, h);
    send(beat);
    heartbeat_timer_.expires_after(heartbeat_interval_);
    auto [ec] = co_await heartbeat_timer_.async_wait(use_nothrow);
    if (ec) co_return;
  }
}

void WorkerRuntime::reply(std::uint64_t id, const json& result) {
  std::string out;
  proto::worker::encode_result(out, id, result);
  send_reply(out);
}

void WorkerRuntime::send_reply(const std::string& reply) {
  send(reply);
  if (exit_after_reply_) exit_unannounced();
}

void WorkerRuntime::exit_unannounced() {
  channel_->publish_without_wakeup();
  // The helper leaves the worker's process group (droverd kills the group when the worker
  // exits) and keeps its copy of the socket until droverd closes its end, at most 30 s.
  const int link = input_.native_handle();
  if (::fork() == 0) {
    ::setsid();
    pollfd p{link, POLLRDHUP, 0};
    for (int i = 0; i < 30 && ::poll(&p, 1, 1000) == 0; ++i) {
    }
    ::_exit(0);
  }
  component_logger("worker")->warn("exiting after the reply (drill)");
  ::_exit(86);
}

bool WorkerRuntime::refuse_too_large(const proto::Frame& frame) {
  // A deferred shm message (0x1E) stands for a ring marker: the refusal takes its place in the
  // ring's order, so the ring does not wait for a line that will never come.
  const bool deferred =
      !frame.head.empty() && frame.head.front() == proto::shm::kDeferredPrefix;
  if (deferred && !channel_) return false;
  // droverd writes the id right after "jsonrpc"; a batch is never this large (its flushes are
  // bounded), so the first id is the whole message's.
  const auto at = frame.head.find(R"("id":)");
  std::uint64_t id = 0;
  const char* first = at == std::string::npos ? nullptr : frame.head.data() + at + 5;
  const char* last = frame.head.data() + frame.head.size();
  if (!first || std::from_chars(first, last, id).ec != std::errc()) return false;
  auto refuse = [this, id, detail = frame.detail] {
    component_logger("worker")->warn("request id {} refused: {}", id, detail);
    reply_error(id, {RpcError::message_too_large, "Message too large",
                     json{{"limit_bytes", opt_.max_message_bytes}}});
  };
  if (deferred) {
    channel_->take_skipped_socket_line(std::move(refuse));
  } else {
    refuse();
  }
  return true;
}

void WorkerRuntime::reply_error(std::uint64_t id, const BackendError& e) {
  std::string out;
  proto::worker::encode_error(out, id, e.code, e.message,
                              e.data.is_null() ? std::string() : proto::dump(e.data));
  send_reply(out);
}

void WorkerRuntime::send_notification(std::string_view method, const json& params) {
  std::string out;
  proto::worker::encode_notification(out, method, params);
  send(out);
}

void WorkerRuntime::send(const std::string& json_text) {
  if (channel_ && !channel_->closed()) return channel_->send(json_text);
  writer_.push(proto::encode_frame(proto::Framing::ndjson, json_text));
}

void WorkerRuntime::maybe_exit() {
  if (!stopping_ || !running_.empty() || done_) return;
  if (channel_ && !channel_->closed()) {
    // Replies still waiting for ring space go first; the staged ones are published now, and
    // droverd drains the ring before it acts on our end-of-stream.
    channel_->flush();
    if (!channel_->idle()) {
      channel_->on_idle([this] { maybe_exit(); });
      return;
    }
  }
  // Everything answered: close our side once the writer has flushed, which ends run().
  writer_.on_drained([this] {
    done_ = true;
    close_link();
  });
  if (writer_.idle()) {
    done_ = true;
    close_link();
  }
}

}  // namespace drover::worker
