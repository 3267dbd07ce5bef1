#include "supervisor/frontend/request_handler.hpp"

#include <fmt/format.h>
#include <signal.h>

#include <array>
#include <cmath>
#include <map>

#include "common/log.hpp"
#include "proto/client_params.hpp"
#include "proto/methods.hpp"
#include "proto/worker_messages.hpp"
#include "supervisor/frontend/client_session.hpp"
#include "supervisor/pipeline/request_key.hpp"
#include "supervisor/version.hpp"

namespace drover::supervisor {
namespace wm = proto::worker::method;
using proto::json;

namespace {

// Collects the replies of one batch and writes them as one array when the last arrives.
struct BatchCollector {
  std::weak_ptr<ClientSession> session;
  std::vector<std::string> replies;
  std::size_t pending = 0;

  void deliver(std::size_t index, std::string&& reply) {
    replies[index] = std::move(reply);
    if (--pending == 0) {
      if (auto s = session.lock()) s->write_reply(proto::join_batch(replies));
    }
  }
};

std::optional<int> parse_signal(const json& v) {
  if (v.is_null()) return SIGKILL;
  if (v.is_number_integer()) {
    const int s = v.get<int>();
    return (s > 0 && s < NSIG) ? std::optional<int>(s) : std::nullopt;
  }
  if (!v.is_string()) return std::nullopt;
  static const std::map<std::string, int> names = {
      {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},   {"STOP", SIGSTOP},
      {"CONT", SIGCONT}, {"HUP", SIGHUP},   {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV}};
  std::string name = v.get<std::string>();
  if (name.starts_with("SIG")) name = name.substr(3);
  const auto it = names.find(name);
  return it == names.end() ? std::nullopt : std::optional<int>(it->second);
}

// config.updateAdaptiveTargets params: {target_batch_time_ms?, max_batch_size?}, at least one,
// in the ranges the config file allows.
struct AdaptiveTargets {
  std::optional<std::chrono::microseconds> target;
  std::optional<int> size;
};

boost::system::result<AdaptiveTargets, std::string> parse_adaptive_targets(const json& p) {
  using R = boost::system::result<AdaptiveTargets, std::string>;
  auto bad = [](std::string why) { return R(boost::system::in_place_error, std::move(why)); };
  if (!p.is_object()) return bad("params must be an object {target_batch_time_ms, max_batch_size}");
  AdaptiveTargets t;
  for (const auto& [key, v] : p.items()) {
    if (key == "target_batch_time_ms") {
      if (!v.is_number() || v.get<double>() < 0.01 || v.get<double>() > 60'000.0) {
        return bad("param 'target_batch_time_ms' must be a number in 0.01..60000");
      }
      t.target = std::chrono::microseconds(std::llround(v.get<double>() * 1000.0));
    } else if (key == "max_batch_size") {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 100) {
        return bad("param 'max_batch_size' must be an integer in 1..100");
      }
      t.size = v.get<int>();
    } else {
      return bad(
          fmt::format("unknown param '{}' (allowed: target_batch_time_ms, max_batch_size)", key));
    }
  }
  if (!t.target && !t.size) return bad("give target_batch_time_ms and/or max_batch_size");
  return t;
}

}  // namespace

RequestHandler::RequestHandler(asio::io_context& io, const Config& config, WorkerPool& pool,
                               Admission& admission, AdminControl& control)
    : io_(io),
      config_(config),
      pool_(pool),
      admission_(admission),
      control_(control),
      pipeline_(io, config, pool),
      log_(component_logger("frontend")) {}

void RequestHandler::handle(ClientSession& session, proto::ParsedMessage message) {
  auto weak = session.weak_from_this();
  if (!message.batch) {
    auto& entry = message.entries.front();
    if (auto* err = std::get_if<proto::RpcErrorReply>(&entry)) {
      session.write_reply(proto::make_error(*err));
      return;
    }
    auto& req = std::get<proto::RpcRequest>(entry);
    Reply reply;
    if (!req.is_notification()) {
      reply = [weak](std::string&& r) {
        if (auto s = weak.lock()) s->write_reply(std::move(r));
      };
    }
    handle_request(session, req, std::move(reply));
    return;
  }
  if (message.entries.size() > config_.server.max_batch_length) {
    // Refused whole, before anything in it runs: a partial batch would be harder to retry.
    session.write_reply(proto::make_error(
        nullptr, RpcError::invalid_request, "Invalid Request: batch too long",
        json{{"limit", config_.server.max_batch_length}, {"length", message.entries.size()}}));
    return;
  }
  auto batch = std::make_shared<BatchCollector>();
  batch->session = weak;
  // Slots first, so no reply can complete the batch before every member has its slot.
  std::vector<std::optional<std::size_t>> slot_of(message.entries.size());
  for (std::size_t i = 0; i < message.entries.size(); ++i) {
    const auto* req = std::get_if<proto::RpcRequest>(&message.entries[i]);
    if (!req || !req->is_notification()) slot_of[i] = batch->replies.size(), batch->replies.emplace_back();
  }
  batch->pending = batch->replies.size() + 1;  // +1 released after the loop
  for (std::size_t i = 0; i < message.entries.size(); ++i) {
    auto& entry = message.entries[i];
    if (auto* err = std::get_if<proto::RpcErrorReply>(&entry)) {
      batch->deliver(*slot_of[i], proto::make_error(*err));
      continue;
    }
    auto& req = std::get<proto::RpcRequest>(entry);
    Reply reply;
    if (slot_of[i]) {
      reply = [batch, slot = *slot_of[i]](std::string&& r) { batch->deliver(slot, std::move(r)); };
    }
    handle_request(session, req, std::move(reply));
  }
  // A batch of notifications only gets no reply at all (spec section 6).
  if (--batch->pending == 0 && !batch->replies.empty()) {
    if (auto s = weak.lock()) s->write_reply(proto::join_batch(batch->replies));
  }
}

void RequestHandler::handle_request(ClientSession& session, proto::RpcRequest& req, Reply reply) {
  const json id = req.id.value_or(nullptr);
  auto answer = [&reply, &id](const json& result) {
    if (reply) reply(proto::make_result(id, result));
  };
  auto error = [&reply, &id](RpcError code, std::string_view message = {}, const json& data = nullptr) {
    if (reply) reply(proto::make_error(id, code, message, data));
  };
  auto invalid_params = [&error](const std::string& why) {
    error(RpcError::invalid_params, {}, json{{"detail", why}});
  };
  const std::string& m = req.method;

  if (proto::is_admin_method(m) && !session.admin()) {
    return error(RpcError::not_permitted, {}, json{{"detail", "use the admin socket"}});
  }
  if (m == "generate") {
    auto p = proto::parse_generate_params(req.params);
    if (!p) return invalid_params(p.error());
    const std::uint64_t seed = p->seed ? *p->seed : ids_.next_seed();
    // The key is taken before the seed is resolved: only a client's seed makes a request
    // deterministic (and is part of its key).
    PipelineRequest pr{deterministic_key(*p), p->cache, req.id ? req.id->dump() : std::string()};
    return start_call(session, req, std::move(reply), CallKind::generate,
                      p->to_worker_params(seed), p->stream, p->timeout_ms, p->model, std::move(pr),
                      p->priority);
  }
  if (m == "tokenize") {
    auto p = proto::parse_tokenize_params(req.params);
    if (!p) return invalid_params(p.error());
    json params = {{"texts", json::array({p->text})}};
    if (!p->model.empty()) params["model"] = p->model;
    return start_call(session, req, std::move(reply), CallKind::tokenize, std::move(params),
                      false, std::nullopt, p->model, {}, p->priority);
  }
  if (m == "detokenize") {
    auto p = proto::parse_detokenize_params(req.params);
    if (!p) return invalid_params(p.error());
    json params = {{"tokens", p->tokens}};
    if (!p->model.empty()) params["model"] = p->model;
    return start_call(session, req, std::move(reply), CallKind::detokenize, std::move(params),
                      false, std::nullopt, p->model);
  }
  if (m == "cancel") {
    auto p = proto::parse_cancel_params(req.params);
    if (!p) return invalid_params(p.error());
    bool cancelled = false;
    for (auto& call : session.find_calls(p->id)) {
      cancel(call);
      cancelled = true;
    }
    return answer(json{{"cancelled", cancelled}});
  }
  if (m == "health" || m == "models.list" || m == "workers.list" || m == "telemetry.workerStatus" ||
      m == "telemetry.metrics" || m == "telemetry.batchStats") {
    if (auto p = proto::parse_no_params(req.params); !p) return invalid_params(p.error());
    if (m == "health") return answer(health());
    if (m == "telemetry.batchStats") return answer(pool_.batch_stats());
    if (m == "models.list") return answer(pool_.models_list());
    if (m == "telemetry.metrics") return answer(telemetry());
    return answer(workers_list());
  }
  if (m.starts_with("workers.") && m != "workers.list") {
    return answer_admin(req, reply);
  }
  if (m == "models.load" || m == "models.unload") {
    const json& p = req.params;
    if (!p.is_object() || !p.contains("model") || !p["model"].is_string() || p["model"].get_ref<const std::string&>().empty()) {
      return invalid_params("param 'model' must be a model id (string)");
    }
    auto done = [reply = std::move(reply), id](const json& result, const json& err) {
      if (!reply) return;
      if (err.is_null()) return reply(proto::make_result(id, result));
      reply(proto::make_error(id, static_cast<RpcError>(err.value("code", -32603)),
                              err.value("message", std::string()), err.value("data", json())));
    };
    const std::string model = p["model"].get<std::string>();
    return m == "models.load" ? pool_.load_model(model, std::move(done))
                              : pool_.unload_model(model, std::move(done));
  }
  if (m == "config.updateAdaptiveTargets") {
    auto p = parse_adaptive_targets(req.params);
    if (!p) return invalid_params(p.error());
    pool_.batcher().update_targets(p->target, p->size);
    log_->info("batch queue targets updated by operator: {}", req.params.dump());
    return answer(pool_.batch_stats());
  }
  if (m == "config.get" || m == "config.reload") {
    if (auto p = proto::parse_no_params(req.params); !p) return invalid_params(p.error());
    if (m == "config.get") return answer(control_.effective_config());
    std::string why;
    const json result = control_.reload(why);
    if (!why.empty()) return error(RpcError::invalid_params, "Config rejected", json{{"detail", why}});
    if (reply) reply(proto::make_result(id, result));
    return;
  }
  error(RpcError::method_not_found, {}, json{{"method", m}});
}

void RequestHandler::answer_admin(proto::RpcRequest& req, Reply& reply) {
  const json id = req.id.value_or(nullptr);
  const std::string& m = req.method;
  auto fail = [&](const std::string& why) {
    if (reply) reply(proto::make_error(id, RpcError::invalid_params, {}, json{{"detail", why}}));
  };
  auto done = [&](const std::string& err, json result) {
    if (!err.empty()) return fail(err);
    if (reply) reply(proto::make_result(id, result));
  };
  const json& p = req.params;
  auto int_param = [&p](const char* name) -> std::optional<int> {
    if (!p.is_object() || !p.contains(name) || !p[name].is_number_integer()) return std::nullopt;
    return p[name].get<int>();
  };
  if (m == "workers.scale") {
    const auto count = int_param("count");
    if (!count) return fail("param 'count' must be an integer in 1..256");
    return done(pool_.scale(*count), json{{"count", *count}});
  }
  const auto wid = int_param("id");
  if (!wid) return fail("param 'id' must be a worker id (integer)");
  if (m == "workers.kill") {
    const auto sig = parse_signal(p.value("signal", json()));
    if (!sig) return fail("param 'signal' must be a signal name (KILL, TERM, STOP, CONT, ...) or number");
    return done(pool_.kill(*wid, *sig), json{{"killed", true}, {"id", *wid}, {"signal", *sig}});
  }
  if (m == "workers.restart" || m == "workers.drain") {
    return done(pool_.restart(*wid), json{{"draining", true}, {"id", *wid}});
  }
  if (m == "workers.inject") {
    if (!p.contains("fault") || !p["fault"].is_string()) {
      return fail("param 'fault' must be one of crash, hang, stall, garbage, slow, ring_garbage");
    }
    const std::string fault = p["fault"].get<std::string>();
    return done(pool_.inject(*wid, fault), json{{"injected", fault}, {"id", *wid}});
  }
  if (reply) reply(proto::make_error(id, RpcError::method_not_found, {}, json{{"method", m}}));
}

void RequestHandler::start_call(ClientSession& session, proto::RpcRequest& req, Reply reply,
                                CallKind kind, json worker_params, bool stream,
                                std::optional<std::int64_t> timeout_ms, std::string model,
                                PipelineRequest pipeline_request, proto::Priority priority) {
  const json id = req.id.value_or(nullptr);
  if (draining_) {
    if (observer_) observer_(kind, CallOutcome{code_of(RpcError::shutting_down)});
    if (reply) reply(proto::make_error(id, RpcError::shutting_down));
    return;
  }
  if (session.outstanding() >= config_.server.max_inflight_per_connection) {
    // One connection cannot take the whole admission queue from the others.
    if (observer_) observer_(kind, CallOutcome{code_of(RpcError::overloaded)});
    if (reply) {
      reply(proto::make_error(id, RpcError::overloaded, {},
                              json{{"retry_after_ms", 10},
                                   {"reason", "max_inflight_per_connection"},
                                   {"limit", config_.server.max_inflight_per_connection}}));
    }
    return;
  }
  if (!admission_.try_acquire()) {
    if (observer_) observer_(kind, CallOutcome{code_of(RpcError::overloaded)});
    if (reply) {
      reply(proto::make_error(id, RpcError::overloaded, {},
                              json{{"retry_after_ms", admission_.retry_after_ms()}}));
    }
    return;
  }
  auto weak_session = session.weak_from_this();
  CallSink sink;
  sink.chunk = [weak_session](const StreamChunk& c) {
    auto s = weak_session.lock();
    return s ? s->write_chunk(c) : true;
  };
  sink.reply = std::move(reply);
  const std::string method(kind == CallKind::generate   ? wm::kGenerate
                           : kind == CallKind::tokenize ? wm::kBatchTokenize
                                                        : wm::kDetokenize);
  auto call = std::make_shared<Call>(kind, ids_.next_request_id(), id, req.is_notification(),
                                     method, std::move(worker_params), std::move(sink));
  call->set_streaming(stream);
  call->set_priority(priority);
  call->set_model(std::move(model));
  session.track(call);
  call->on_finish([this, weak_session, raw = call.get()] {
    admission_.release();
    if (observer_) observer_(raw->kind(), raw->outcome());
    if (auto s = weak_session.lock()) s->forget(raw);
  });
  Millis timeout = timeout_ms ? Millis(*timeout_ms) : config_.server.request_timeout;
  if (stream && config_.server.max_stream_duration.count() > 0) {
    timeout = std::min(timeout, config_.server.max_stream_duration);
  }
  auto timer = std::make_unique<asio::steady_timer>(io_, timeout);
  timer->async_wait([this, weak = std::weak_ptr<Call>(call), timeout](boost::system::error_code ec) {
    auto c = weak.lock();
    if (ec || !c || c->done()) return;
    log_->warn("request_id={} timed out after {} ms", c->request_id(), timeout.count());
    c->finish_error(RpcError::timed_out, {}, json{{"timeout_ms", timeout.count()}});
    pool_.on_timeout(c);
  });
  call->set_deadline(std::move(timer));
  // Rollouts go by the client's id (a notification's by its internal request id).
  if (pipeline_request.rollout_id.empty()) {
    pipeline_request.rollout_id = req.id ? req.id->dump() : call->request_id();
  }
  call->set_batchable(
      pipeline_.admits(Stage::batch_queue, config_.batch_queue.enabled, pipeline_request.rollout_id));
  pipeline_.submit(std::move(call), std::move(pipeline_request));
}

void RequestHandler::cancel(const std::shared_ptr<Call>& call) { pipeline_.cancel(call); }

json RequestHandler::health() const {
  const auto c = pool_.counts();
  const bool degraded = c.ready < c.total || c.parked > 0 || c.open_breakers > 0;
  const char* status = c.ready == 0 ? "unavailable" : degraded ? "degraded" : "ok";
  return {{"status", status},
          {"workers_ready", c.ready},
          {"workers_total", c.total},
          {"workers_parked", c.parked},
          {"spares_ready", c.spares_ready},
          {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()},
          {"version", kVersion}};
}

json RequestHandler::telemetry() const {
  const auto& s = pool_.stats();
  const auto c = pool_.counts();
  const auto sc = pool_.stream_counts();
  json limits = json::object(), active_by_worker = json::object();
  for (const auto& [slot, limit] : sc.limits) limits[std::to_string(slot)] = limit;
  for (const auto& [slot, n] : sc.active_by_worker) active_by_worker[std::to_string(slot)] = n;
  const StreamFlow::Counters flow = stream_totals_ ? *stream_totals_ : StreamFlow::Counters{};
  return {{"admission", {{"outstanding", admission_.outstanding()},
                         {"limit", admission_.limit()},
                         {"rejected_total", admission_.rejected()}}},
          {"queue_depth", pool_.queued()},
          {"workers", {{"ready", c.ready}, {"total", c.total}, {"parked", c.parked},
                       {"open_breakers", c.open_breakers}, {"spares_ready", c.spares_ready}}},
          {"pool", {{"restarts_total", s.restarts},
                    {"crashes_total", s.crashes},
                    {"promotions_total", s.promotions},
                    {"retries_total", s.retries},
                    {"failovers_total", s.failovers},
                    {"retry_budget_exhausted_total", s.retry_budget_exhausted},
                    {"poisoned_total", s.poisoned},
                    {"recycled_total", s.recycled}}},
          {"models", {{"loads_total", s.model_loads},
                      {"load_failures_total", s.model_load_failures},
                      {"unloads_total", s.model_unloads},
                      {"idle_unloads_total", s.idle_unloads},
                      {"requests_waiting_for_load", pool_.awaiting_load()}}},
          {"streams", {{"active", sc.active},
                       {"waiting", sc.waiting},
                       {"limit_total", sc.limit_total},
                       {"limits", std::move(limits)},
                       {"active_by_worker", std::move(active_by_worker)},
                       {"adaptive", sc.adaptive},
                       {"waited_total", sc.waited_total},
                       {"peak_active", sc.peak_active},
                       {"coalescing_episodes_total", flow.coalescing_episodes},
                       {"coalesced_frames_total", flow.merged_frames},
                       {"coalesced_chunks_total", flow.merged_chunks},
                       {"slow_consumer_cancels_total", flow.refused}}},
          {"pipeline", pipeline_.telemetry()},
          {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()}};
}

namespace {

// Messages and bytes of the worker's current incarnation, per path (the Prometheus families
// drover_worker_transport_*_total sum them per slot over incarnations).
json transport_stats(const TransportCounters& t) {
  return {{"ring_messages_to_worker", t.ring_messages_out},
          {"ring_messages_from_worker", t.ring_messages_in},
          {"socket_messages_to_worker", t.socket_messages_out},
          {"socket_messages_from_worker", t.socket_messages_in},
          {"ring_bytes_to_worker", t.ring_bytes_out},
          {"ring_bytes_from_worker", t.ring_bytes_in},
          {"socket_bytes_to_worker", t.socket_bytes_out},
          {"socket_bytes_from_worker", t.socket_bytes_in}};
}

}  // namespace

json RequestHandler::workers_list() const {
  json workers = json::array();
  for (const auto& w : pool_.snapshot()) {
    workers.push_back({{"id", w.id},
                       {"pid", w.pid},
                       {"state", w.state},
                       {"inflight", w.inflight},
                       {"breaker", w.breaker},
                       {"restarts", w.restarts},
                       {"uptime_s", w.uptime_s},
                       {"heartbeat_age_ms", w.heartbeat_age_ms ? json(*w.heartbeat_age_ms) : json()},
                       {"rss_bytes", w.rss_bytes},
                       {"models", w.models},
                       {"transport", w.transport},
                       {"transport_stats", transport_stats(w.transport_counters)}});
  }
  return {{"workers", std::move(workers)}};
}

}  // namespace drover::supervisor
