#include "supervisor/admin/admin_methods.hpp"

#include <fmt/format.h>
#include <signal.h>

#include <cmath>
#include <map>

#include "common/log.hpp"
#include "proto/client_params.hpp"
#include "supervisor/version.hpp"

namespace drover::supervisor {
using proto::json;

namespace {

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

AdminMethods::AdminMethods(WorkerPool& pool, Admission& admission, AdminControl& control,
                           RequestPipeline& pipeline, const StreamFlow::Counters& stream_totals)
    : pool_(pool),
      admission_(admission),
      control_(control),
      pipeline_(pipeline),
      stream_totals_(stream_totals),
      log_(component_logger("admin")) {}

void AdminMethods::register_with(RequestHandler& handler) {
  // Methods without params: absent, {} and [] are accepted.
  auto no_params = [](auto answer) {
    return [answer](LocalCall& call) {
      if (auto p = proto::parse_no_params(call.request.params); !p) return call.invalid_params(p.error());
      answer(call);
    };
  };
  handler.add_method("health", no_params([this](LocalCall& c) { c.result(health()); }));
  handler.add_method("models.list", no_params([this](LocalCall& c) { c.result(pool_.models_list()); }));
  handler.add_method("workers.list", no_params([this](LocalCall& c) { c.result(workers_list()); }));
  handler.add_method("telemetry.workerStatus",
                     no_params([this](LocalCall& c) { c.result(workers_list()); }));
  handler.add_method("telemetry.metrics", no_params([this](LocalCall& c) { c.result(telemetry()); }));
  handler.add_method("telemetry.batchStats",
                     no_params([this](LocalCall& c) { c.result(pool_.batch_stats()); }));
  for (const char* m : {"workers.kill", "workers.restart", "workers.drain", "workers.scale",
                        "workers.inject"}) {
    handler.add_method(m, [this](LocalCall& c) { workers_admin(c); });
  }
  for (const char* m : {"models.load", "models.unload"}) {
    handler.add_method(m, [this](LocalCall& c) { models_admin(c); });
  }
  handler.add_method("config.updateAdaptiveTargets", [this](LocalCall& c) {
    const json params = c.params();
    auto p = parse_adaptive_targets(params);
    if (!p) return c.invalid_params(p.error());
    pool_.batcher().update_targets(p->target, p->size);
    log_->info("batch queue targets updated by operator: {}", proto::dump(params));
    c.result(pool_.batch_stats());
  });
  handler.add_method("config.get",
                     no_params([this](LocalCall& c) { c.result(control_.effective_config()); }));
  handler.add_method("config.reload", no_params([this](LocalCall& c) {
    std::string why;
    const json result = control_.reload(why);
    if (!why.empty()) return c.error(RpcError::invalid_params, "Config rejected", json{{"detail", why}});
    // The catalog's paths or workers.command may have changed what results mean.
    pipeline_.invalidate_results("config.reload");
    c.result(result);
  }));
}

void AdminMethods::models_admin(LocalCall& c) {
  const json p = c.params();
  if (!p.is_object() || !p.contains("model") || !p["model"].is_string() ||
      p["model"].get_ref<const std::string&>().empty()) {
    return c.invalid_params("param 'model' must be a model id (string)");
  }
  const std::string model = p["model"].get<std::string>();
  // c.request is gone when `done` runs (a load may take seconds): keep what it names.
  auto done = [this, c, what = c.request.method + " " + model](const json& result,
                                                               const json& err) {
    if (err.is_null()) {
      // What a request for this model computes may differ now (issue 15 item 8).
      pipeline_.invalidate_results(what);
      return c.result(result);
    }
    const json code = err.value("code", json(-32603));
    c.error(static_cast<RpcError>(code.is_number_integer() ? code.get<int>() : -32603),
            err.value("message", std::string()), err.value("data", json()));
  };
  if (c.request.method == "models.load") return pool_.load_model(model, std::move(done));
  pool_.unload_model(model, std::move(done));
}

void AdminMethods::workers_admin(LocalCall& c) {
  const std::string& m = c.request.method;
  const json p = c.params();
  auto done = [&c](const std::string& err, const json& result) {
    if (!err.empty()) return c.invalid_params(err);
    c.result(result);
  };
  auto int_param = [&p](const char* name) -> std::optional<int> {
    if (!p.is_object() || !p.contains(name) || !p[name].is_number_integer()) return std::nullopt;
    const auto v = p[name].get<std::int64_t>();
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) return std::nullopt;
    return static_cast<int>(v);
  };
  if (m == "workers.scale") {
    const auto count = int_param("count");
    if (!count) return c.invalid_params("param 'count' must be an integer in 1..256");
    return done(pool_.scale(*count), json{{"count", *count}});
  }
  const auto wid = int_param("id");
  if (!wid) return c.invalid_params("param 'id' must be a worker id (integer)");
  if (m == "workers.kill") {
    const auto sig = parse_signal(p.value("signal", json()));
    if (!sig) {
      return c.invalid_params("param 'signal' must be a signal name (KILL, TERM, STOP, CONT, ...) or number");
    }
    return done(pool_.kill(*wid, *sig), json{{"killed", true}, {"id", *wid}, {"signal", *sig}});
  }
  if (m == "workers.restart" || m == "workers.drain") {
    return done(pool_.restart(*wid), json{{"draining", true}, {"id", *wid}});
  }
  // workers.inject
  if (!p.contains("fault") || !p["fault"].is_string()) {
    return c.invalid_params("param 'fault' must be one of crash, hang, stall, garbage, slow, ring_garbage");
  }
  const std::string fault = p["fault"].get<std::string>();
  done(pool_.inject(*wid, fault), json{{"injected", fault}, {"id", *wid}});
}

json AdminMethods::health() const {
  const auto c = pool_.counts();
  const bool degraded = c.ready < c.total || c.parked > 0 || c.open_breakers > 0;
  const char* status = c.ready == 0 ? "unavailable" : degraded ? "degraded" : "ok";
  return {{"status", status},
          {"workers_ready", c.ready},
          {"workers_total", c.total},
          {"workers_parked", c.parked},
          {"spares_ready", c.spares_ready},
          {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()},
          {"version", kVersion}};
}

json AdminMethods::telemetry() const {
  const auto& s = pool_.stats();
  const auto c = pool_.counts();
  const auto sc = pool_.stream_counts();
  json limits = json::object(), active_by_worker = json::object();
  for (const auto& [slot, limit] : sc.limits) limits[std::to_string(slot)] = limit;
  for (const auto& [slot, n] : sc.active_by_worker) active_by_worker[std::to_string(slot)] = n;
  const StreamFlow::Counters flow = stream_totals_;
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
          {"connections", {{"reader_pauses_total", flow.reader_pauses},
                           {"backlog_closes_total", flow.backlog_closes}}},
          {"pipeline", pipeline_.telemetry()},
          {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()}};
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

json AdminMethods::workers_list() const {
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
