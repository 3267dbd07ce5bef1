#include "supervisor/pool/worker_link.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.hpp"

namespace drover::supervisor {
namespace wm = proto::worker::method;
using proto::json;

std::string to_string(WorkerLink::State s) {
  switch (s) {
    case WorkerLink::State::starting: return "starting";
    case WorkerLink::State::ready: return "ready";
    case WorkerLink::State::draining: return "draining";
    case WorkerLink::State::stopping: return "stopping";
    case WorkerLink::State::dead: return "dead";
  }
  return "dead";
}

WorkerLink::WorkerLink(asio::io_context& io, WorkerLinkOptions options, LinkObserver& observer)
    : io_(io),
      opt_(std::move(options)),
      observer_(observer),
      acceptor_(io),
      socket_(io),
      writer_(socket_),
      start_timer_(io),
      decoder_(opt_.max_message_bytes),
      log_(component_logger("pool")) {}

WorkerLink::~WorkerLink() { cleanup_socket_file(); }

void WorkerLink::cleanup_socket_file() {
  if (!opt_.socket_path.empty()) ::unlink(opt_.socket_path.c_str());
}

void WorkerLink::start() {
  auto self = shared_from_this();
  // The control socket exists before the process, so the worker can connect at once.
  boost::system::error_code ec;
  cleanup_socket_file();
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor_.bind(asio::local::stream_protocol::endpoint(opt_.socket_path), ec);
  if (!ec) ::chmod(opt_.socket_path.c_str(), 0600);
  if (!ec) acceptor_.listen(1, ec);
  if (ec) {
    const std::string reason = fmt::format("cannot create control socket {}: {}",
                                           opt_.socket_path, ec.message());
    asio::post(io_, [self, reason] {
      self->fail(reason);
      self->observer_.on_reaped(*self, ExitStatus{});
    });
    return;
  }
  auto spawned = WorkerProcess::spawn(
      io_.get_executor(), opt_.command,
      {{proto::worker::kEnvWorkerId, std::to_string(opt_.slot)},
       {proto::worker::kEnvControlSocket, opt_.socket_path}});
  if (!spawned) {
    const std::string reason = spawned.error();
    asio::post(io_, [self, reason] {
      self->fail(reason);
      self->observer_.on_reaped(*self, ExitStatus{});
    });
    return;
  }
  process_ = std::move(*spawned);
  log_->info("worker_id={} generation={} pid={} spawned", opt_.slot, opt_.generation,
             process_->pid());
  process_->async_wait([self](ExitStatus status) {
    self->fail("process " + status.describe());
    self->observer_.on_reaped(*self, status);
  });
  start_timer_.expires_after(opt_.start_timeout);
  start_timer_.async_wait([self](boost::system::error_code e) {
    if (!e && self->state_ == State::starting) {
      self->fail(fmt::format("not ready within start_timeout_ms={}", self->opt_.start_timeout.count()));
    }
  });
  spawn(io_, serve());
}

asio::awaitable<void> WorkerLink::serve() {
  auto self = shared_from_this();
  auto [ec] = co_await acceptor_.async_accept(socket_, use_nothrow);
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  cleanup_socket_file();
  if (ec) {
    if (state_ != State::dead) fail("control socket accept failed: " + ec.message());
    co_return;
  }
  spawn(io_, write_loop());
  std::vector<char> buf(64 * 1024);
  while (state_ != State::dead) {
    auto [rec, n] = co_await socket_.async_read_some(asio::buffer(buf), use_nothrow);
    if (rec) {
      if (state_ != State::dead) {
        fail(rec == asio::error::eof ? "control socket closed by worker"
                                     : "control socket error: " + rec.message());
      }
      co_return;
    }
    decoder_.feed(std::string_view(buf.data(), n));
    while (state_ != State::dead) {
      auto frame = decoder_.next();
      if (!frame) break;
      if (frame->kind != proto::Frame::Kind::message) {
        fail("garbage from worker: " + frame->detail);
        co_return;
      }
      handle_message(frame->body);
    }
  }
}

asio::awaitable<void> WorkerLink::write_loop() {
  auto self = shared_from_this();
  const auto ec = co_await writer_.run();
  if (ec && state_ != State::dead) fail("control socket write failed: " + ec.message());
}

void WorkerLink::send(std::string json_text) {
  writer_.push(proto::encode_frame(proto::Framing::ndjson, json_text));
}

void WorkerLink::handle_message(std::string_view text) {
  auto parsed = proto::worker::parse_worker_message(text);
  if (!parsed) {
    fail("garbage from worker: " + parsed.error());
    return;
  }
  auto& m = *parsed;
  using Kind = proto::worker::WorkerMessage::Kind;
  if (!hello_seen_ && !(m.kind == Kind::notification && m.method == wm::kHello)) {
    fail("protocol error: first message is not hello");
    return;
  }
  switch (m.kind) {
    case Kind::reply:
      handle_reply(m);
      return;
    case Kind::request:
      fail(fmt::format("protocol error: unexpected request '{}' from worker", m.method));
      return;
    case Kind::notification:
      if (m.method == wm::kChunk) {
        handle_chunk(m.params);
      } else if (m.method == wm::kHeartbeat) {
        handle_heartbeat(m.params);
      } else if (m.method == wm::kHello) {
        handle_hello(m.params);
      } else if (m.method == wm::kModelLoaded) {
        log_->info("worker_id={} model loaded: {}", opt_.slot, m.params.dump());
      } else {
        fail(fmt::format("protocol error: unknown notification '{}'", m.method));
      }
      return;
  }
}

void WorkerLink::handle_hello(const json& params) {
  if (hello_seen_) {
    fail("protocol error: second hello");
    return;
  }
  hello_seen_ = true;
  if (!params.is_object() || params.value("protocol", -1) != proto::worker::kProtocolVersion) {
    fail(fmt::format("protocol error: hello must carry protocol {}", proto::worker::kProtocolVersion));
    return;
  }
  if (const auto caps = params.find("capabilities"); caps != params.end() && caps->is_object()) {
    if (const auto models = caps->find("models"); models != caps->end() && models->is_array()) {
      for (const auto& mdl : *models) {
        if (mdl.is_string()) report_.models.push_back(mdl.get<std::string>());
      }
    }
  }
  init_request_id_ = next_request_id_++;
  const json init = {{"worker_id", opt_.slot},
                     {"generation", opt_.generation},
                     {"backend", opt_.backend},
                     {"heartbeat_interval_ms", opt_.heartbeat_interval.count()},
                     {"transport", "socket"}};
  send(proto::make_request(init_request_id_, wm::kInit, init));
}

void WorkerLink::handle_reply(proto::worker::WorkerMessage& m) {
  if (state_ == State::starting) {
    if (m.id != init_request_id_ || init_request_id_ == 0) {
      fail("protocol error: reply before init completed");
      return;
    }
    if (!m.error.is_null()) {
      fail("init failed: " + m.error.value("message", std::string("unknown error")));
      return;
    }
    if (const auto models = m.result.find("models"); models != m.result.end() && models->is_array()) {
      report_.models.clear();
      for (const auto& mdl : *models) {
        if (mdl.is_string()) report_.models.push_back(mdl.get<std::string>());
      }
    }
    state_ = State::ready;
    ready_at_ = Clock::now();
    start_timer_.cancel();
    log_->info("worker_id={} pid={} ready in {} ms", opt_.slot, pid(),
               std::chrono::duration_cast<Millis>(*ready_at_ - started_at_).count());
    observer_.on_ready(*this);
    return;
  }
  const auto it = inflight_.find(m.id);
  if (it == inflight_.end()) {
    fail(fmt::format("protocol error: reply to unknown request id {}", m.id));
    return;
  }
  std::shared_ptr<Call> call = std::move(it->second);
  inflight_.erase(it);
  if (!m.error.is_null()) {
    const int code = m.error["code"].get<int>();
    call->finish_error(static_cast<RpcError>(code), m.error.value("message", std::string()),
                       m.error.contains("data") ? m.error["data"] : json());
  } else {
    call->finish_from_worker(m.result, opt_.slot);
  }
  if (state_ == State::stopping && inflight_.empty()) {
    send(proto::make_notification(wm::kShutdown, json::object()));
  }
  observer_.on_capacity(*this);
}

void WorkerLink::handle_chunk(const json& params) {
  const auto id = params.find("id");
  const auto text = params.find("text");
  if (id == params.end() || !id->is_number_unsigned() || text == params.end() ||
      !text->is_string()) {
    fail("garbage from worker: generate.chunk without unsigned id and string text");
    return;
  }
  const auto it = inflight_.find(id->get<std::uint64_t>());
  if (it == inflight_.end()) {
    fail(fmt::format("protocol error: chunk for unknown request id {}", id->get<std::uint64_t>()));
    return;
  }
  Call& call = *it->second;
  if (!call.deliver_chunk(text->get_ref<const std::string&>())) {
    log_->warn("request_id={} worker_id={} client is not reading its stream; failing it",
               call.request_id(), opt_.slot);
    call.finish_error(RpcError::slow_consumer);
    cancel(it->first);
  }
}

void WorkerLink::handle_heartbeat(const json& params) {
  if (!params.is_object()) return;
  report_.inflight = params.value("inflight", std::int64_t{0});
  report_.queue_depth = params.value("queue_depth", std::int64_t{0});
  report_.rss_bytes = params.value("rss_bytes", std::int64_t{0});
  report_.tokens_per_s = params.value("tokens_per_s", 0.0);
  if (const auto models = params.find("models"); models != params.end() && models->is_array()) {
    report_.models.clear();
    for (const auto& mdl : *models) {
      if (mdl.is_string()) report_.models.push_back(mdl.get<std::string>());
    }
  }
  report_.last_heartbeat = Clock::now();
}

void WorkerLink::dispatch(std::shared_ptr<Call> call) {
  const std::uint64_t id = next_request_id_++;
  call->mark_dispatched({opt_.slot, opt_.generation, id});
  send(proto::make_request(id, call->worker_method(), call->worker_params()));
  inflight_.emplace(id, std::move(call));
}

void WorkerLink::cancel(std::uint64_t worker_request_id) {
  if (state_ == State::dead || !inflight_.contains(worker_request_id)) return;
  send(proto::make_notification(wm::kCancel, json{{"id", worker_request_id}}));
}

void WorkerLink::signal(int sig) {
  if (process_) process_->signal(sig);
}

void WorkerLink::stop() {
  if (state_ == State::dead || state_ == State::stopping) return;
  state_ = State::stopping;
  if (inflight_.empty()) send(proto::make_notification(wm::kShutdown, json::object()));
}

void WorkerLink::fail(const std::string& reason) {
  if (state_ == State::dead) return;
  const State was = state_;
  state_ = State::dead;
  start_timer_.cancel();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  socket_.close(ignored);
  writer_.close();
  if (process_) process_->signal(SIGKILL);
  std::vector<std::pair<std::uint64_t, std::shared_ptr<Call>>> held(inflight_.begin(), inflight_.end());
  inflight_.clear();
  std::sort(held.begin(), held.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::shared_ptr<Call>> orphans;
  for (auto& [id, call] : held) {
    if (!call->done()) orphans.push_back(std::move(call));
  }
  if (was == State::stopping && orphans.empty()) {
    log_->info("worker_id={} pid={} stopped ({})", opt_.slot, pid(), reason);
  } else {
    log_->warn("worker_id={} pid={} lost while {}: {} ({} requests held)", opt_.slot, pid(),
               to_string(was), reason, orphans.size());
  }
  observer_.on_lost(*this, reason, std::move(orphans));
}

}  // namespace drover::supervisor
