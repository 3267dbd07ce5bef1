#include "supervisor/pool/worker_link.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>

#include "common/log.hpp"

namespace drover::supervisor {
namespace wm = proto::worker::method;
using proto::json;

namespace {

// After the control socket closes, how long to wait for the exit status before killing.
constexpr Millis kExitGrace{2000};

const json& caps_of(const json& hello_params) {
  static const json none = json::object();
  const auto caps = hello_params.find("capabilities");
  return caps != hello_params.end() && caps->is_object() ? *caps : none;
}

Millis ms_since(Clock::time_point t, Clock::time_point now) {
  return std::chrono::duration_cast<Millis>(now - t);
}

}  // namespace

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

WorkerLink::WorkerLink(asio::io_context& io, WorkerLinkOptions options, LinkObserver& observer,
                       const Clock& clock)
    : io_(io),
      opt_(std::move(options)),
      observer_(observer),
      clock_(clock),
      acceptor_(io),
      socket_(io),
      writer_(socket_),
      start_timer_(io),
      liveness_timer_(io),
      exit_grace_timer_(io),
      drain_timer_(io),
      decoder_(opt_.max_message_bytes),
      breaker_(opt_.breaker),
      flush_timer_(io),
      log_(component_logger("pool")) {}

WorkerLink::~WorkerLink() {
  if (channel_) channel_->close();
  cleanup_socket_file();
}

void WorkerLink::cleanup_socket_file() {
  if (!opt_.socket_path.empty()) ::unlink(opt_.socket_path.c_str());
}

void WorkerLink::start() {
  auto self = shared_from_this();
  auto fail_soon = [self](std::string reason) {
    asio::post(self->io_, [self, reason] {
      self->fail(reason, true);
      self->observer_.on_reaped(*self, ExitStatus{});
    });
  };
  // The control socket exists before the process, so the worker can connect at once.
  boost::system::error_code ec;
  cleanup_socket_file();
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor_.bind(asio::local::stream_protocol::endpoint(opt_.socket_path), ec);
  // Only this worker's identity may connect: the file is its own, mode 0600 (the directory is
  // droverd's, searchable but not listable by the workers' group).
  if (!ec && opt_.run_as && ::lchown(opt_.socket_path.c_str(), opt_.run_as->uid, opt_.run_as->gid) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
  if (!ec) ::chmod(opt_.socket_path.c_str(), 0600);
  if (!ec) acceptor_.listen(1, ec);
  if (ec) {
    return fail_soon(fmt::format("cannot create control socket {}: {}", opt_.socket_path, ec.message()));
  }
  auto spawned = WorkerProcess::spawn(
      io_.get_executor(), opt_.command,
      {{proto::worker::kEnvWorkerId, std::to_string(opt_.worker_id)},
       {proto::worker::kEnvControlSocket, opt_.socket_path}},
      opt_.run_as);
  if (!spawned) return fail_soon(spawned.error());
  process_ = std::move(*spawned);
  log_->info("worker_id={} generation={} pid={} spawned{}", id(), opt_.generation, process_->pid(),
             opt_.slot < 0 ? " as a warm spare" : "");
  process_->async_wait([self](ExitStatus status) { self->on_process_exit(status); });
  // What the worker prints goes to droverd's log, prefixed, never lost.
  spawn(io_, [self]() -> asio::awaitable<void> {
    auto out = component_logger("worker");
    const int pid = self->pid();
    co_await self->process_->forward_output([&out, &self, pid](std::string_view line) {
      out->info("worker_id={} pid={} | {}", self->id(), pid, line);
    });
  });
  start_timer_.expires_after(opt_.start_timeout);
  start_timer_.async_wait([self](boost::system::error_code e) {
    if (!e && self->state_ == State::starting) {
      self->fail(fmt::format("not ready within start_timeout_ms={}", self->opt_.start_timeout.count()),
                 true);
    }
  });
  arm_liveness_check();
  spawn(io_, serve());
}

void WorkerLink::arm_liveness_check() {
  // Checked at a tenth of the heartbeat timeout (10..250 ms), so a stopped worker is found
  // within about 110% of heartbeat_timeout_ms.
  const Millis tick = std::clamp(opt_.heartbeat_timeout / 10, Millis(10), Millis(250));
  liveness_timer_.expires_after(tick);
  liveness_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->state_ == State::dead) return;
    self->check_liveness();
    if (self->state_ != State::dead) self->arm_liveness_check();
  });
}

void WorkerLink::check_liveness() {
  if (state_ == State::starting || socket_closed_) return;
  const auto now = clock_.now();
  const auto last_beat = report_.last_heartbeat.value_or(*ready_at_);
  if (now - last_beat > opt_.heartbeat_timeout) {
    return fail(fmt::format("no heartbeat for {} ms (heartbeat_timeout_ms={})",
                            ms_since(last_beat, now).count(), opt_.heartbeat_timeout.count()),
                !operator_caused_);
  }
  if (!inflight_.empty() && now - last_progress_ > opt_.stall_timeout) {
    return fail(fmt::format("no progress for {} ms while holding {} requests (stall_timeout_ms={})",
                            ms_since(last_progress_, now).count(), inflight_.size(),
                            opt_.stall_timeout.count()),
                !operator_caused_);
  }
}

void WorkerLink::on_process_exit(const ExitStatus& status) {
  exit_grace_timer_.cancel();
  // Whose fault: a signal an operator or another process sent to stop it is not the
  // worker's; a crash signal, a non-zero exit or an exit nobody asked for is.
  const bool asked_to_exit = state_ == State::stopping;
  const bool outside_kill = status.signal == SIGKILL || status.signal == SIGTERM ||
                            status.signal == SIGINT || status.signal == SIGHUP;
  const bool at_fault = !operator_caused_ && !outside_kill && !(asked_to_exit && status.code == 0);
  // Replies the worker published in the ring before it died come first, as on socket EOF: the
  // exit notice may arrive before the ring's doorbell or the socket's end is handled.
  if (channel_ && state_ != State::dead) channel_->drain_now();
  process_exited_ = true;
  fail("process " + status.describe(), at_fault);
  observer_.on_reaped(*this, status);
}

void WorkerLink::on_socket_closed(const std::string& why) {
  if (state_ == State::dead || socket_closed_) return;
  socket_closed_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  writer_.close();
  // Wait for the exit status to tell a crash from a kill; a worker that closed its socket but
  // keeps running is broken.
  exit_grace_timer_.expires_after(kExitGrace);
  exit_grace_timer_.async_wait([self = shared_from_this(), why](boost::system::error_code ec) {
    if (!ec) self->fail(why + ", and the process did not exit", true);
  });
}

asio::awaitable<void> WorkerLink::serve() {
  auto self = shared_from_this();
  auto [ec] = co_await acceptor_.async_accept(socket_, use_nothrow);
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  cleanup_socket_file();
  if (ec) {
    if (state_ != State::dead) fail("control socket accept failed: " + ec.message(), true);
    co_return;
  }
  spawn(io_, write_loop());
  std::vector<char> buf(64 * 1024);
  while (state_ != State::dead && !socket_closed_) {
    auto [rec, n] = co_await socket_.async_read_some(asio::buffer(buf), use_nothrow);
    if (rec) {
      // Replies the worker published in the ring before it closed the socket come first.
      if (channel_) channel_->drain_now();
      if (state_ == State::dead) co_return;
      on_socket_closed(rec == asio::error::eof ? "control socket closed by worker"
                                               : "control socket error: " + rec.message());
      co_return;
    }
    decoder_.feed(std::string_view(buf.data(), n));
    while (state_ != State::dead) {
      auto frame = decoder_.next();
      if (!frame) break;
      if (frame->kind != proto::Frame::Kind::message) {
        fail("garbage from worker: " + frame->detail, !operator_caused_);
        co_return;
      }
      ++socket_counters_.socket_messages_in;
      socket_counters_.socket_bytes_in += frame->body.size() + 1;
      if (channel_ && channel_->take_socket_line(frame->body)) continue;
      handle_message(frame->body);
    }
  }
}

asio::awaitable<void> WorkerLink::write_loop() {
  auto self = shared_from_this();
  const auto ec = co_await writer_.run();
  if (ec) on_socket_closed("control socket write failed: " + ec.message());
}

void WorkerLink::send(std::string json_text) {
  if (channel_ && !channel_->closed()) return channel_->send(json_text);
  send_socket(proto::encode_frame(proto::Framing::ndjson, json_text));
}

void WorkerLink::send_socket(std::string frame) {
  ++socket_counters_.socket_messages_out;
  socket_counters_.socket_bytes_out += frame.size();
  writer_.push(std::move(frame));
}

TransportCounters WorkerLink::transport_counters() const {
  TransportCounters t = socket_counters_;
  if (channel_) {
    const auto& c = channel_->counters();
    t.ring_messages_out = c.ring_messages_out;
    t.ring_bytes_out = c.ring_bytes_out;
    t.ring_messages_in = c.ring_messages_in;
    t.ring_bytes_in = c.ring_bytes_in;
  }
  return t;
}

json WorkerLink::offer_transport(const json& capabilities) {
  const bool offered = capabilities.is_object() && capabilities.value("shm", false) == true;
  if (!offered || !opt_.shm) return json{{"kind", "socket"}};
  auto made = proto::shm::create_channel_resources(opt_.ring_bytes);
  if (!made) {
    log_->warn("worker_id={} shm segment not created ({}); using the socket", id(),
               made.error().message());
    return json{{"kind", "socket"}};
  }
  offered_shm_ = std::move(*made);
  json fds = json::array();
  for (const char* name : proto::shm::kPassedFdNames) fds.push_back(name);
  return json{{"kind", "shm"}, {"ring_bytes", opt_.ring_bytes}, {"fds", std::move(fds)}};
}

void WorkerLink::send_init(const json& init) {
  std::string request;
  proto::worker::encode_request(request, init_request_id_, wm::kInit, init);
  std::string frame = proto::encode_frame(proto::Framing::ndjson, request);
  if (!offered_shm_) return send_socket(std::move(frame));
  // The descriptors ride on the first byte of the init line (SCM_RIGHTS), so the line is
  // written here, outside the WriteQueue; nothing is queued before init, and a full socket
  // (EAGAIN) or any other failure withdraws the offer rather than failing the worker.
  const auto fds = offered_shm_->fds();
  auto sent = writer_.idle() ? proto::send_fds(socket_.native_handle(), frame, fds)
                             : boost::system::result<std::size_t>(
                                   boost::system::errc::make_error_code(
                                       boost::system::errc::operation_in_progress));
  if (!sent) {
    log_->warn("worker_id={} cannot pass the shm descriptors ({}); using the socket", id(),
               sent.error().message());
    offered_shm_.reset();
    json plain = init;
    plain["transport"] = json{{"kind", "socket"}};
    request.clear();
    proto::worker::encode_request(request, init_request_id_, wm::kInit, plain);
    return send_socket(proto::encode_frame(proto::Framing::ndjson, request));
  }
  ++socket_counters_.socket_messages_out;
  socket_counters_.socket_bytes_out += frame.size();
  if (*sent < frame.size()) writer_.push(frame.substr(*sent));
}

void WorkerLink::accept_transport(const json& result) {
  if (!offered_shm_) return;
  auto resources = std::move(*offered_shm_);
  offered_shm_.reset();
  const json t = result.value("transport", json());
  const std::string kind = t.is_object() ? t.value("kind", std::string()) : std::string();
  if (kind != "shm") {
    std::string why = t.is_object() ? t.value("error", std::string()) : std::string();
    log_->warn("worker_id={} pid={} declined shm ({}); using the socket", id(), pid(),
               why.empty() ? "no reason given" : why);
    return;  // `resources` closes the segment and eventfds
  }
  // The hooks hold a plain pointer: the link closes the channel in fail() and its destructor,
  // and a closed channel never calls them.
  proto::shm::ShmChannel::Hooks hooks{
      [this](std::string_view text) {
        auto self = shared_from_this();  // handle_message may end in fail() and on_lost
        // The same limit as the socket's decoder (a ring record can be up to ring_bytes / 2).
        if (text.size() > opt_.max_message_bytes) {
          return fail(fmt::format("garbage from worker: a {}-byte message in the replies ring, "
                                  "over max_message_bytes={}",
                                  text.size(), opt_.max_message_bytes),
                      !operator_caused_);
        }
        handle_message(text);
      },
      [this](std::string line) { send_socket(std::move(line)); },
      [this](const std::string& why) { fail("garbage from worker: " + why, !operator_caused_); }};
  channel_ = std::make_shared<proto::shm::ShmChannel>(io_, proto::shm::ShmChannel::Side::supervisor,
                                                      std::move(resources), std::move(hooks));
  channel_->start();
  if (channel_->closed()) return;
  log_->info("worker_id={} pid={} transport shm (ring_bytes={})", id(), pid(),
             channel_->ring_bytes());
}

void WorkerLink::handle_message(std::string_view text) {
  // A worker sends one message at a time; only droverd batches.
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '[') {
    return fail("garbage from worker: a batch (workers send one message at a time)", !operator_caused_);
  }
  auto parsed = codec_.decode(text);
  if (!parsed) return fail("garbage from worker: " + parsed.error(), !operator_caused_);
  // The control plane reads trees (hello, init and load replies); a field of the wrong type
  // there makes nlohmann throw: that is garbage too, never a crash. The data plane's typed
  // readers return errors instead.
  try {
    dispatch_message(parsed->front());
  } catch (const json::exception& e) {
    fail(fmt::format("garbage from worker: {}", e.what()), !operator_caused_);
  }
}

void WorkerLink::dispatch_message(proto::worker::Message& m) {
  using Kind = proto::worker::Message::Kind;
  if (!hello_seen_ && !(m.kind == Kind::notification && m.method == wm::kHello)) {
    return fail("protocol error: first message is not hello", true);
  }
  switch (m.kind) {
    case Kind::reply:
      return handle_reply(m);
    case Kind::request:
      return fail(fmt::format("protocol error: unexpected request '{}' from worker", m.method), true);
    case Kind::notification:
      if (m.method == wm::kChunk) return handle_chunk(m.params);
      if (!within_notification_rate()) {
        return fail(fmt::format("garbage from worker: more than max_notifications_per_s={} "
                                "notifications in one second",
                                opt_.max_notifications_per_s),
                    !operator_caused_);
      }
      if (m.method == wm::kHeartbeat) return handle_heartbeat(m.params);
      if (m.method == wm::kHello) {
        auto params = proto::worker::read_tree(m.params);
        if (!params) return fail("garbage from worker: hello " + params.error(), true);
        return handle_hello(*params);
      }
      if (m.method == wm::kModelLoaded) {
        log_->info("worker_id={} model loaded: {}", id(), m.params);
        return;
      }
      return fail(fmt::format("protocol error: unknown notification '{}'", m.method), true);
  }
}

bool WorkerLink::within_notification_rate() {
  if (opt_.max_notifications_per_s <= 0) return true;
  const auto now = clock_.now();
  if (now - notification_window_ >= std::chrono::seconds(1)) {
    notification_window_ = now;
    notifications_in_window_ = 0;
  }
  return ++notifications_in_window_ <= opt_.max_notifications_per_s;
}

void WorkerLink::read_models(const json& list) {
  if (!list.is_array()) return;
  report_.models.clear();
  for (const auto& mdl : list) {
    if (mdl.is_string()) report_.models.push_back(mdl.get<std::string>());
  }
}

void WorkerLink::handle_hello(const json& params) {
  if (hello_seen_) return fail("protocol error: second hello", true);
  hello_seen_ = true;
  if (!params.is_object() || params.value("protocol", -1) != proto::worker::kProtocolVersion) {
    return fail(fmt::format("protocol error: hello must carry protocol {}",
                            proto::worker::kProtocolVersion),
                true);
  }
  if (const auto caps = params.find("capabilities"); caps != params.end() && caps->is_object()) {
    if (const auto models = caps->find("models"); models != caps->end()) read_models(*models);
    const auto batch = caps->find("batch");
    batch_capable_ = batch != caps->end() && batch->is_boolean() && batch->get<bool>();
  }
  init_request_id_ = next_request_id_++;
  const json init = {{"worker_id", opt_.worker_id},
                     {"generation", opt_.generation},
                     {"backend", opt_.backend},
                     {"heartbeat_interval_ms", opt_.heartbeat_interval.count()},
                     {"transport", offer_transport(caps_of(params))},
                     {"preload", opt_.preload}};
  send_init(init);
}

namespace {

// A worker's error reply as a tree, for the control plane's callbacks.
json error_tree(const proto::worker::Message::Error& e) {
  json out = {{"code", e.code}, {"message", e.message}};
  if (!e.data.empty()) out["data"] = proto::parse_json(e.data);
  return out;
}

}  // namespace

void WorkerLink::handle_reply(proto::worker::Message& m) {
  const auto now = clock_.now();
  if (state_ == State::starting) {
    if (m.id != init_request_id_ || init_request_id_ == 0) {
      return fail("protocol error: reply before init completed", true);
    }
    if (m.error) {
      return fail("init failed: " + (m.error->message.empty() ? std::string("unknown error")
                                                                : m.error->message),
                  true);
    }
    auto tree = proto::worker::read_tree(m.result);
    if (!tree || !tree->is_object()) return fail("garbage from worker: init result is not an object", true);
    const json& result = *tree;
    if (const auto models = result.find("models"); models != result.end()) read_models(*models);
    if (const auto mb = result.find("max_batch"); mb != result.end()) {
      if (!mb->is_number_integer() || mb->get<std::int64_t>() < 1) {
        return fail("garbage from worker: init result max_batch must be a positive integer", true);
      }
      max_batch_ = mb->get<std::size_t>();
    }
    if (const auto f = result.find("faults"); f != result.end() && f->is_array()) {
      faults_.emplace();
      for (const auto& name : *f) {
        if (name.is_string()) faults_->push_back(name.get<std::string>());
      }
    }
    accept_transport(result);
    if (state_ == State::dead) return;
    state_ = State::ready;
    ready_at_ = now;
    last_progress_ = now;
    start_timer_.cancel();
    for (const auto& p : result.value("preload", json::array())) {
      // The preload report: per model, load and warmup time or the failure.
      if (p.value("ok", false)) {
        log_->info("worker_id={} preload: model {} loaded in {:.1f} ms, warmed in {:.1f} ms ({} requests)",
                   id(), p.value("model", std::string()), p.value("load_ms", 0.0),
                   p.value("warmup_ms", 0.0), p.value("warmup_requests", 0));
      } else {
        log_->error("worker_id={} preload: model {} FAILED: {}", id(),
                    p.value("model", std::string()), p.value("error", std::string()));
      }
    }
    log_->info("worker_id={} pid={} ready in {} ms", id(), pid(),
               ms_since(started_at_, now).count());
    observer_.on_ready(*this);
    return;
  }
  if (const auto c = controls_.find(m.id); c != controls_.end()) {
    ControlDone done = std::move(c->second);
    controls_.erase(c);
    if (m.error) return done(json(), error_tree(*m.error));
    auto result = proto::worker::read_tree(m.result);
    if (!result) return fail("garbage from worker: control reply " + result.error(), !operator_caused_);
    if (result->is_object()) {
      if (const auto models = result->find("models"); models != result->end()) read_models(*models);
    }
    return done(*result, json());
  }
  const auto it = inflight_.find(m.id);
  if (it == inflight_.end() || !it->second.sent) {
    return fail(fmt::format("protocol error: reply to unknown request id {}", m.id), true);
  }
  const std::size_t texts = 1 + it->second.merged.size();
  const CallKind kind = it->second.call->kind();
  // The result is read before anything changes: garbage fails the link with the call still
  // held, so it is handed back to the pool like any other loss.
  std::optional<proto::worker::GenerateResult> generated;
  std::vector<std::vector<std::int64_t>> token_lists;
  std::string text;
  if (!m.error) {
    std::string problem;
    if (kind == CallKind::generate) {
      auto r = proto::worker::read_generate_result(m.result);
      if (r) generated = std::move(*r); else problem = r.error();
    } else if (kind == CallKind::tokenize) {
      auto r = proto::worker::read_tokens_result(m.result);
      if (r) token_lists = std::move(*r); else problem = r.error();
      // A batch_tokenize (merged or not) must answer one token list per text, in order.
      if (problem.empty() && token_lists.size() != texts) {
        problem = fmt::format("batch_tokenize of {} texts answered with {} token lists", texts,
                              token_lists.size());
      }
    } else {
      auto r = proto::worker::read_text_result(m.result);
      if (r) text = std::move(*r); else problem = r.error();
    }
    if (!problem.empty()) return fail("garbage from worker: " + problem, !operator_caused_);
  }
  Held held = std::move(it->second);
  inflight_.erase(it);
  held_calls_ -= texts;
  last_progress_ = now;
  completed_ += texts;
  if (held.flush != 0) note_flush_reply(held.flush, now);
  held.merged.insert(held.merged.begin(), std::move(held.call));
  for (const auto& call : held.merged) count_model_use(*call, -1);
  if (m.error) {
    const int code = m.error->code;
    // Only errors the worker is to blame for count against its breaker.
    const bool worker_failure = code == code_of(RpcError::internal_error) ||
                                code == code_of(RpcError::worker_failed);
    if (!held.timed_out) breaker_.record(!worker_failure, now);
    for (const auto& call : held.merged) {
      call->finish_error_text(static_cast<RpcError>(code), m.error->message, m.error->data);
    }
  } else {
    // The answer to a call that timed out (to its cancel) is no news of the worker's health:
    // counted as a success, a worker too slow for every deadline would never trip.
    if (!held.timed_out) breaker_.record(true, now);
    if (generated) {
      held.merged.front()->finish_generate(*generated, id());
    } else if (kind == CallKind::tokenize) {
      for (std::size_t i = 0; i < texts; ++i) held.merged[i]->finish_tokens(token_lists[i]);
    } else {
      held.merged.front()->finish_text(text);
    }
  }
  if (!outbox_.empty() && flushes_.size() < Batcher::kBatchesInFlight && opt_.batcher &&
      opt_.batcher->flush_when_batch_done()) {
    flush(Batcher::FlushCause::batch_done);
  }
  maybe_stop();
  observer_.on_capacity(*this);
}

void WorkerLink::handle_chunk(std::string_view params) {
  auto chunk = proto::worker::read_chunk(params);
  if (!chunk) return fail("garbage from worker: " + chunk.error(), !operator_caused_);
  const auto it = inflight_.find(chunk->id);
  if (it == inflight_.end() || !it->second.sent) {
    return fail(fmt::format("protocol error: chunk for unknown request id {}", chunk->id), true);
  }
  Call& call = *it->second.call;
  // Chunks come only for a generate sent with stream: true; a worker that sends them for
  // anything else could keep droverd busy (and its progress fresh) for nothing.
  const auto* request = std::get_if<proto::worker::GenerateRequest>(&call.request());
  if (!request || !request->stream) {
    return fail(fmt::format("protocol error: chunk for request id {}, which is not a stream",
                            chunk->id),
                true);
  }
  last_progress_ = clock_.now();
  switch (call.deliver_chunk(chunk->text, chunk->index)) {
    case Call::ChunkResult::delivered:
    case Call::ChunkResult::skipped:
      return;
    case Call::ChunkResult::slow_consumer:
      log_->warn("request_id={} worker_id={} client is not reading its stream; failing it",
                 call.request_id(), id());
      call.finish_error(RpcError::slow_consumer);
      return cancel(it->first);
    case Call::ChunkResult::diverged:
      log_->error("request_id={} worker_id={} replayed stream differs from what the client has",
                  call.request_id(), id());
      call.finish_error(RpcError::worker_failed, "Worker failed: stream failover diverged",
                        json{{"attempts", call.attempts()}, {"worker", id()},
                             {"reason", "stream failover diverged"}});
      return cancel(it->first);
  }
}

void WorkerLink::handle_heartbeat(std::string_view params) {
  // A heartbeat without an object of figures says nothing (as before the codec); a heartbeat
  // whose figures have the wrong types is garbage.
  if (params.empty() || params.front() != '{') return;
  auto beat = proto::worker::read_heartbeat(params);
  if (!beat) return fail("garbage from worker: " + beat.error(), !operator_caused_);
  const auto now = clock_.now();
  report_.inflight = beat->inflight;
  report_.queue_depth = beat->queue_depth;
  report_.rss_bytes = beat->rss_bytes;
  report_.tokens_per_s = beat->tokens_per_s;
  // A worker that steps its generations together says how long its steps take: the batch
  // queue sizes flushes and caps its window by it (batch_controller.hpp).
  if (beat->steps > 0 && opt_.batcher) {
    opt_.batcher->on_worker_steps(
        std::chrono::microseconds(std::llround(std::max(beat->step_us, 0.0))),
        static_cast<std::uint64_t>(beat->steps), now);
  }
  if (beat->models) report_.models = std::move(*beat->models);
  report_.last_heartbeat = now;
  // `progress` counts the worker's tokens and replies: work moving inside a long unary
  // generate keeps the stall detector quiet even though nothing reaches us yet.
  if (beat->progress >= 0 && beat->progress != last_progress_counter_) {
    last_progress_counter_ = beat->progress;
    last_progress_ = now;
  }
}

bool WorkerLink::can_take(std::size_t max_inflight, Clock::time_point now) {
  return state_ == State::ready && held_calls_ < max_inflight && breaker_.can_accept(now);
}

void WorkerLink::dispatch(std::shared_ptr<Call> call) {
  const std::uint64_t id = next_request_id_++;
  if (inflight_.empty()) last_progress_ = clock_.now();
  breaker_.on_dispatch();
  call->mark_dispatched({opt_.slot, opt_.generation, id});
  count_model_use(*call, +1);
  ++held_calls_;
  Batcher* batcher = opt_.batcher.get();
  if (!batcher || !batcher->enabled() || !batch_capable_ || !call->batchable()) {
    // Unbatched: exactly the path without a batch queue, one write per call.
    std::string request;
    call->encode_request(request, id);
    send(std::move(request));
    inflight_.emplace(id, Held{std::move(call), {}, true, 0});
    return;
  }
  inflight_.emplace(id, Held{std::move(call), {}, false, 0});
  outbox_.push_back(id);
  if (max_batch_ > 0 && outbox_.size() >= max_batch_) return flush(Batcher::FlushCause::full);
  switch (batcher->decide(outbox_.size(), flushes_.size())) {
    case Batcher::Decision::flush_alone:
      return flush(Batcher::FlushCause::alone);
    case Batcher::Decision::flush_fast_path:
      return flush(Batcher::FlushCause::fast_path);
    case Batcher::Decision::flush_full:
      return flush(Batcher::FlushCause::full);
    case Batcher::Decision::wait:
      return arm_flush();
  }
}

void WorkerLink::arm_flush() {
  if (flush_armed_) return;
  flush_armed_ = true;
  flush_timer_.expires_after(opt_.batcher->window(clock_.now()));
  flush_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (!self || ec || !self->flush_armed_) return;
    self->flush_armed_ = false;
    self->flush(Batcher::FlushCause::window);
  });
}

void WorkerLink::flush(Batcher::FlushCause cause) {
  if (flush_armed_) {
    flush_armed_ = false;
    flush_timer_.cancel();
  }
  if (outbox_.empty() || state_ == State::dead) return;
  const auto ids = std::exchange(outbox_, {});
  const std::uint64_t flush_id = next_flush_++;
  // A flush is bounded in bytes as well as in calls: a quarter of max_message_bytes, so a
  // batch of large prompts never makes one message the worker must refuse (or, worse, exit
  // on), while a call whose request alone is larger still goes, alone. The bound applies to
  // merged batch_tokenize replies too, estimated at kTokenReplyBytesPerTextByte per byte of
  // text (one token per byte at worst, each written as up to 11 digits and a comma), so their
  // answer stays within droverd's own limit on what a worker may send.
  const std::size_t budget = std::max<std::size_t>(opt_.max_message_bytes / 4, 1);
  constexpr std::size_t kTokenReplyBytesPerTextByte = 12;
  auto text_bytes = [](const Call& c) {
    std::size_t n = 0;
    for (const auto& t : std::get<proto::worker::BatchTokenizeRequest>(c.request()).texts) {
      n += t.size() + 1;
    }
    return n;
  };
  // Tokenize calls for one model merge into the first one's batch_tokenize, while the merged
  // reply stays under the budget; the next one then leads a new merge.
  struct Lead {
    const std::string* model;
    std::uint64_t id;
    std::size_t reply_bytes;
  };
  std::vector<Lead> tokenize_leads;
  for (const std::uint64_t id : ids) {
    Held& h = inflight_.at(id);
    h.sent = true;
    h.flush = flush_id;
    if (h.call->kind() != CallKind::tokenize || ids.size() == 1) continue;
    const std::size_t reply_bytes = text_bytes(*h.call) * kTokenReplyBytesPerTextByte;
    const auto lead = std::find_if(tokenize_leads.begin(), tokenize_leads.end(),
                                   [&h](const Lead& l) { return *l.model == h.call->model(); });
    if (lead == tokenize_leads.end()) {
      tokenize_leads.push_back({&h.call->model(), id, reply_bytes});
      continue;
    }
    if (lead->reply_bytes + reply_bytes > budget) {
      *lead = {&h.call->model(), id, reply_bytes};
      continue;
    }
    lead->reply_bytes += reply_bytes;
    auto merged = std::move(h.call);
    inflight_.erase(id);
    inflight_.at(lead->id).merged.push_back(std::move(merged));
  }
  // Each message is written straight into one buffer: "[request,request,...]", or one request.
  std::string batch, one;
  std::size_t messages = 0;    // worker requests in this flush
  std::size_t in_batch = 0;    // ...in the message being built
  std::size_t merged_texts = 0;
  auto send_batch = [this, &batch, &in_batch] {
    if (in_batch == 0) return;
    if (in_batch == 1) {
      batch.erase(0, 1);  // a lone request is sent as itself, not as a batch of one
    } else {
      batch += ']';
    }
    send(std::move(batch));
    batch.clear();
    in_batch = 0;
  };
  for (const std::uint64_t id : ids) {
    const auto it = inflight_.find(id);
    if (it == inflight_.end()) continue;  // merged into another request
    const Held& h = it->second;
    one.clear();
    if (h.merged.empty()) {
      h.call->encode_request(one, id);
    } else {
      // Tokenize calls merged into the lead's batch_tokenize: its texts, then theirs.
      std::vector<std::string_view> texts;
      auto add_texts = [&texts](const Call& c) {
        for (const auto& t : std::get<proto::worker::BatchTokenizeRequest>(c.request()).texts) {
          texts.push_back(t);
        }
      };
      add_texts(*h.call);
      for (const auto& c : h.merged) add_texts(*c);
      merged_texts += 1 + h.merged.size();
      proto::worker::encode_batch_tokenize(one, id, h.call->model(), texts);
    }
    if (in_batch > 0 && batch.size() + one.size() + 2 > budget) send_batch();
    batch += in_batch++ == 0 ? '[' : ',';
    batch += one;
    ++messages;
  }
  flushes_.emplace(flush_id, FlushRecord{clock_.now(), messages});
  send_batch();
  opt_.batcher->on_flush(ids.size(), merged_texts, cause);
}

void WorkerLink::note_flush_reply(std::uint64_t flush, Clock::time_point now) {
  const auto it = flushes_.find(flush);
  if (it == flushes_.end() || --it->second.outstanding > 0) return;
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(now - it->second.sent_at);
  flushes_.erase(it);
  if (opt_.batcher) opt_.batcher->on_batch_done(took, now);
}

void WorkerLink::count_model_use(const Call& call, int delta) {
  if (call.model().empty()) return;
  const auto it = on_demand_.find(call.model());
  if (it == on_demand_.end()) return;
  it->second.last_used = clock_.now();
  if (delta > 0) {
    ++it->second.inflight;
  } else if (it->second.inflight > 0) {  // a request sent before the model counted as on demand
    --it->second.inflight;
  }
}

bool WorkerLink::has_model(const std::string& model) const {
  return std::find(report_.models.begin(), report_.models.end(), model) != report_.models.end();
}

void WorkerLink::send_control(std::string_view method, json params, ControlDone done) {
  if (state_ == State::dead) {
    return done(json(), json{{"code", code_of(RpcError::worker_failed)}, {"message", "worker lost"}});
  }
  const std::uint64_t id = next_request_id_++;
  controls_.emplace(id, std::move(done));
  std::string request;
  proto::worker::encode_request(request, id, method, params);
  send(std::move(request));
}

void WorkerLink::load_model(const ModelSpec& spec, ControlDone done) {
  loading_.insert(spec.id);
  auto self = shared_from_this();
  send_control(wm::kLoadModel,
               json{{"model", spec.id}, {"backend", spec.backend}, {"path", spec.path}, {"options", spec.options}},
               [self, id = spec.id, done = std::move(done)](const json& result, const json& error) {
                 self->loading_.erase(id);
                 if (error.is_null() && !result.value("already_loaded", false)) {
                   self->on_demand_[id] = ModelUse{self->clock_.now(), 0};
                 }
                 done(result, error);
               });
}

void WorkerLink::unload_model(const std::string& model, ControlDone done) {
  auto self = shared_from_this();
  send_control(wm::kUnloadModel, json{{"model", model}},
               [self, model, done = std::move(done)](const json& result, const json& error) {
                 if (error.is_null()) self->on_demand_.erase(model);
                 done(result, error);
               });
}

void WorkerLink::finish_controls(const std::string& reason) {
  const json error = {{"code", code_of(RpcError::worker_failed)}, {"message", "worker lost: " + reason}};
  for (auto& [id, done] : std::exchange(controls_, {})) done(json(), error);
  loading_.clear();
}

void WorkerLink::cancel(std::uint64_t worker_request_id) {
  if (state_ == State::dead) return;
  const auto it = inflight_.find(worker_request_id);
  if (it == inflight_.end()) return;
  if (!it->second.sent) {
    // Still in the outbox: the worker never sees it.
    std::erase(outbox_, worker_request_id);
    const auto call = std::move(it->second.call);
    inflight_.erase(it);
    --held_calls_;
    count_model_use(*call, -1);
    call->finish_cancelled();
    maybe_stop();
    observer_.on_capacity(*this);
    return;
  }
  std::string cancel;
  proto::worker::encode_cancel(cancel, worker_request_id);
  send(std::move(cancel));
}

void WorkerLink::record_timeout(std::uint64_t worker_request_id) {
  if (const auto it = inflight_.find(worker_request_id); it != inflight_.end()) {
    it->second.timed_out = true;
  }
  breaker_.record(false, clock_.now());
}

void WorkerLink::signal(int sig, bool by_operator) {
  if (by_operator) operator_caused_ = true;
  if (process_) process_->signal(sig);
}

void WorkerLink::inject(const std::string& fault) {
  operator_caused_ = true;
  std::string inject;
  proto::worker::encode_inject(inject, fault);
  send(std::move(inject));
}

void WorkerLink::drain(Millis timeout) {
  if (state_ == State::dead || state_ == State::draining || state_ == State::stopping) return;
  if (state_ == State::starting) return fail("stopped before it became ready", false);
  state_ = State::draining;
  drain_timer_.expires_after(timeout);
  drain_timer_.async_wait([self = shared_from_this(), timeout](boost::system::error_code ec) {
    if (!ec && self->state_ != State::dead) {
      self->fail(fmt::format("drain_timeout_ms={} passed with {} requests held", timeout.count(),
                             self->inflight_.size()),
                 false);
    }
  });
  maybe_stop();
}

void WorkerLink::maybe_stop() {
  if (state_ != State::draining || !inflight_.empty()) return;
  state_ = State::stopping;
  std::string shutdown;
  proto::worker::encode_shutdown(shutdown);
  send(std::move(shutdown));
}

void WorkerLink::fail(const std::string& reason, bool worker_at_fault) {
  if (state_ == State::dead) return;
  const State was = state_;
  state_ = State::dead;
  start_timer_.cancel();
  liveness_timer_.cancel();
  exit_grace_timer_.cancel();
  drain_timer_.cancel();
  flush_timer_.cancel();
  flush_armed_ = false;
  outbox_.clear();
  flushes_.clear();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  socket_.close(ignored);
  writer_.close();
  if (channel_) channel_->close();  // a dead worker's segment is never reused
  offered_shm_.reset();
  if (process_) process_->signal(SIGKILL);
  std::vector<std::pair<std::uint64_t, Held>> held(std::make_move_iterator(inflight_.begin()),
                                                   std::make_move_iterator(inflight_.end()));
  inflight_.clear();
  held_calls_ = 0;
  std::sort(held.begin(), held.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::shared_ptr<Call>> orphans;
  for (auto& [id, h] : held) {
    if (!h.call->done()) orphans.push_back(std::move(h.call));
    for (auto& call : h.merged) {
      if (!call->done()) orphans.push_back(std::move(call));
    }
  }
  LinkLoss loss{reason, worker_at_fault, ready_at_.has_value(), ready_at_, process_exited_};
  if (was == State::stopping && orphans.empty() && !worker_at_fault) {
    log_->info("worker_id={} pid={} stopped ({})", id(), pid(), reason);
  } else {
    log_->warn("worker_id={} pid={} lost while {}: {} ({} requests held{})", id(), pid(),
               to_string(was), reason, orphans.size(), worker_at_fault ? "" : ", not its fault");
  }
  observer_.on_lost(*this, loss, std::move(orphans));
  finish_controls(reason);
}

}  // namespace drover::supervisor
