#include "worker/runtime/worker_runtime.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

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
      socket_(io),
      writer_(socket_),
      decoder_(opt_.max_message_bytes),
      heartbeat_timer_(io) {}

asio::awaitable<int> WorkerRuntime::run() {
  auto log = component_logger("worker");
  auto [cec] = co_await socket_.async_connect(
      asio::local::stream_protocol::endpoint(opt_.control_socket), use_nothrow);
  if (cec) {
    log->error("worker {}: cannot connect to {}: {}", opt_.worker_id, opt_.control_socket,
               cec.message());
    co_return 1;
  }
  spawn(io_, [this]() -> asio::awaitable<void> {
    const auto ec = co_await writer_.run();
    if (ec && !done_) {
      done_ = true;
      exit_code_ = 1;
      boost::system::error_code ignored;
      socket_.close(ignored);
    }
  });
  // hello: who we are and what we can do; the supervisor answers with init. Models are
  // known only once init has chosen the backend, so they come in the init reply.
  send(proto::make_notification(
      wm::kHello, json{{"worker_id", opt_.worker_id},
                       {"pid", ::getpid()},
                       {"protocol", proto::worker::kProtocolVersion},
                       {"capabilities",
                        {{"shm", false}, {"batch_tokenize", true}, {"stream", true}, {"models", json::array()}}}}));
  std::vector<char> buf(64 * 1024);
  while (!done_) {
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf), use_nothrow);
    if (ec) {
      // The supervisor closed the link (or died): nothing more to serve.
      if (!done_) log->info("worker {}: control socket closed; exiting", opt_.worker_id);
      done_ = true;
      break;
    }
    decoder_.feed(std::string_view(buf.data(), n));
    while (!done_) {
      auto frame = decoder_.next();
      if (!frame) break;
      if (frame->kind != proto::Frame::Kind::message) {
        log->error("worker {}: bad frame from supervisor: {}", opt_.worker_id, frame->detail);
        co_return 1;
      }
      handle(frame->body);
    }
  }
  heartbeat_timer_.cancel();
  // Let the last replies reach the supervisor before exiting.
  writer_.close();
  co_return exit_code_;
}

void WorkerRuntime::handle(std::string_view text) {
  auto parsed = proto::worker::parse_worker_message(text);
  if (!parsed) {
    component_logger("worker")->error("worker {}: garbage from supervisor: {}", opt_.worker_id,
                                      parsed.error());
    done_ = true;
    exit_code_ = 1;
    return;
  }
  auto& m = *parsed;
  using Kind = proto::worker::WorkerMessage::Kind;
  if (m.kind == Kind::notification) {
    if (m.method == wm::kCancel) {
      if (m.params.is_object() && m.params.contains("id") && m.params["id"].is_number_unsigned()) {
        const auto it = running_.find(m.params["id"].get<std::uint64_t>());
        if (it != running_.end()) it->second->cancelled = true;
      }
    } else if (m.method == wm::kInject) {
      on_inject(m.params);
    } else if (m.method == wm::kShutdown) {
      stopping_ = true;
      maybe_exit();
    }
    return;
  }
  if (m.kind != Kind::request) return;  // the supervisor sends no replies today
  if (m.method == wm::kInit) return on_init(m.id, m.params);
  if (!ready_) {
    return reply_error(m.id, BackendError{RpcError::internal_error, "not initialised", nullptr});
  }
  if (m.method == wm::kGenerate || m.method == wm::kBatchTokenize || m.method == wm::kDetokenize) {
    if (enact_fault()) return;
  }
  if (m.method == wm::kGenerate) return on_generate(m.id, m.params);
  if (m.method == wm::kBatchTokenize) return on_batch_tokenize(m.id, m.params);
  if (m.method == wm::kDetokenize) return on_detokenize(m.id, m.params);
  reply_error(m.id, BackendError{RpcError::method_not_found, {}, json{{"method", m.method}}});
}

void WorkerRuntime::on_inject(const json& params) {
  const std::string fault = params.is_object() ? params.value("fault", std::string()) : std::string();
  auto log = component_logger("worker");
  static const std::map<std::string, Fault> faults = {{"crash", Fault::crash},
                                                      {"hang", Fault::hang},
                                                      {"garbage", Fault::garbage},
                                                      {"stall", Fault::stall},
                                                      {"slow", Fault::slow}};
  const auto it = faults.find(fault);
  if (it == faults.end()) {
    log->warn("worker {}: unknown fault '{}' ignored", opt_.worker_id, fault);
    return;
  }
  if (it->second == Fault::stall || it->second == Fault::slow) {
    if (!backend_ || !backend_->inject(it->second)) {
      log->warn("worker {}: backend cannot enact fault '{}'", opt_.worker_id, fault);
    } else {
      log->warn("worker {}: injected {}", opt_.worker_id, fault);
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
      component_logger("worker")->warn("worker {}: injected crash", opt_.worker_id);
      ::_exit(86);
    case Fault::hang:
      component_logger("worker")->warn("worker {}: injected hang", opt_.worker_id);
      for (;;) ::pause();  // no heartbeats, no replies: only a signal ends this process
    case Fault::garbage:
      component_logger("worker")->warn("worker {}: injected garbage", opt_.worker_id);
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
  const std::string name = params.value("backend", std::string("sim"));
  auto made = factory_(name);
  if (!made) return reply_error(id, BackendError{RpcError::internal_error, made.error(), nullptr});
  backend_ = std::move(*made);
  heartbeat_interval_ = Millis(params.value("heartbeat_interval_ms", 1000));
  const json preload = params.value("preload", json::object());
  spawn(io_, [this, id, preload]() -> asio::awaitable<void> {
    auto loaded = co_await backend_->load();
    if (!loaded) {
      reply_error(id, loaded.error());
      co_return;
    }
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
    reply(id, result);
    co_await heartbeat_loop();
  });
}

asio::awaitable<BackendResult<json>> WorkerRuntime::warm_up(const json& preload, double load_ms) {
  // Each preload entry names a model this worker serves; its warmup requests run through the
  // same generate path as real traffic (first-touch of weights, caches, allocator pools), so
  // the first client request does not pay for them. Entries run in turn: a worker serves one
  // model today, so `parallel` has nothing to overlap yet.
  const bool fail_fast = preload.value("fail_fast", false);
  const auto served = backend_->models();
  json report = json::array();
  for (const auto& entry : preload.value("models", json::array())) {
    const std::string model = entry.value("model_id", std::string());
    json line = {{"model", model}, {"load_ms", load_ms}, {"warmup_ms", 0.0}, {"ok", true}};
    if (std::find(served.begin(), served.end(), model) == served.end()) {
      line["ok"] = false;
      line["error"] = fmt::format("model '{}' is not served by this worker (serves: {})", model,
                                  fmt::join(served, ", "));
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
        auto out = co_await backend_->generate(req, ignore, cancel);
        if (!out) {
          line["ok"] = false;
          line["error"] = out.error().message;
        }
      }
      line["warmup_requests"] = n;
      line["warmup_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      send(proto::make_notification(wm::kModelLoaded, line));
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

void WorkerRuntime::on_generate(std::uint64_t id, const json& p) {
  GenerateRequest req;
  if (!p.is_object() || !p.contains("prompt") || !p["prompt"].is_string()) {
    return reply_error(id, bad_params("generate needs a string prompt"));
  }
  try {
    req.prompt = p["prompt"].get<std::string>();
    req.model = p.value("model", std::string());
    req.max_tokens = p.value("max_tokens", 64);
    req.temperature = p.value("temperature", 0.8);
    req.top_p = p.value("top_p", 0.95);
    req.seed = p.value("seed", std::uint64_t{0});
    req.stream = p.value("stream", false);
    if (p.contains("stop")) req.stop = p["stop"].get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    return reply_error(id, bad_params(e.what()));
  }
  auto cancel = std::make_shared<CancelFlag>();
  running_.emplace(id, cancel);
  spawn(io_, serve_generate(id, std::move(req), std::move(cancel)));
}

asio::awaitable<void> WorkerRuntime::serve_generate(std::uint64_t id, GenerateRequest req,
                                                    std::shared_ptr<CancelFlag> cancel) {
  std::uint64_t index = 0;
  auto outcome = co_await backend_->generate(
      req,
      [this, id, &index, stream = req.stream](const std::string& text) {
        ++tokens_since_heartbeat_;
        ++progress_;
        if (stream) {
          send(proto::make_notification(wm::kChunk, json{{"id", id}, {"index", index++}, {"text", text}}));
        }
      },
      cancel);
  running_.erase(id);
  ++progress_;
  if (!outcome) {
    reply_error(id, outcome.error());
  } else {
    reply(id, json{{"text", outcome->text},
                   {"finish_reason", outcome->finish_reason},
                   {"usage",
                    {{"prompt_tokens", outcome->prompt_tokens},
                     {"completion_tokens", outcome->completion_tokens}}}});
  }
  maybe_exit();
}

void WorkerRuntime::on_batch_tokenize(std::uint64_t id, const json& p) {
  if (!p.is_object() || !p.contains("texts") || !p["texts"].is_array()) {
    return reply_error(id, bad_params("batch_tokenize needs texts: [string]"));
  }
  std::vector<std::string> texts;
  for (const auto& t : p["texts"]) {
    if (!t.is_string()) return reply_error(id, bad_params("texts must hold strings"));
    texts.push_back(t.get<std::string>());
  }
  auto out = backend_->batch_tokenize(p.value("model", std::string()), texts);
  if (!out) return reply_error(id, out.error());
  // One text is the client-facing tokenize; the reply carries both shapes' data.
  json result = {{"tokens", *out}};
  reply(id, result);
}

void WorkerRuntime::on_detokenize(std::uint64_t id, const json& p) {
  if (!p.is_object() || !p.contains("tokens") || !p["tokens"].is_array()) {
    return reply_error(id, bad_params("detokenize needs tokens: [int]"));
  }
  std::vector<std::int64_t> tokens;
  for (const auto& t : p["tokens"]) {
    if (!t.is_number_integer()) return reply_error(id, bad_params("tokens must be integers"));
    tokens.push_back(t.get<std::int64_t>());
  }
  auto out = backend_->detokenize(p.value("model", std::string()), tokens);
  if (!out) return reply_error(id, out.error());
  reply(id, json{{"text", *out}});
}

asio::awaitable<void> WorkerRuntime::heartbeat_loop() {
  auto last = std::chrono::steady_clock::now();
  while (!done_) {
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - last).count();
    const double tps = secs > 0 ? static_cast<double>(tokens_since_heartbeat_) / secs : 0.0;
    tokens_since_heartbeat_ = 0;
    last = now;
    send(proto::make_notification(wm::kHeartbeat, json{{"inflight", running_.size()},
                                                       {"queue_depth", 0},
                                                       {"rss_bytes", resident_bytes()},
                                                       {"models", backend_->models()},
                                                       {"tokens_per_s", tps},
                                                       {"progress", progress_}}));
    heartbeat_timer_.expires_after(heartbeat_interval_);
    auto [ec] = co_await heartbeat_timer_.async_wait(use_nothrow);
    if (ec) co_return;
  }
}

void WorkerRuntime::reply(std::uint64_t id, const json& result) {
  send(proto::make_result(id, result));
}

void WorkerRuntime::reply_error(std::uint64_t id, const BackendError& e) {
  send(proto::make_error(id, e.code, e.message, e.data));
}

void WorkerRuntime::send(const std::string& json_text) {
  writer_.push(proto::encode_frame(proto::Framing::ndjson, json_text));
}

void WorkerRuntime::maybe_exit() {
  if (!stopping_ || !running_.empty() || done_) return;
  // Everything answered: close our side once the writer has flushed, which ends run().
  writer_.on_drained([this] {
    done_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(asio::local::stream_protocol::socket::shutdown_both, ignored);
    socket_.close(ignored);
  });
  if (writer_.idle()) {
    done_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
}

}  // namespace drover::worker
