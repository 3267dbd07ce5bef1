// WorkerPool's model management: the catalog (config `models`), affinity routing with load on
// demand, admin models.load / models.unload, idle unload (memory_policy) and models.list.
// Same thread and ownership rules as worker_pool.cpp. Decisions in docs/MODELS.md.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "common/log.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {
namespace {

json unknown_model(const std::string& model, std::string detail) {
  return {{"code", code_of(RpcError::unknown_model)},
          {"message", "Unknown or unloadable model"},
          {"data", {{"model", model}, {"detail", std::move(detail)}}}};
}

std::string error_detail(const json& error) {
  if (const auto d = error.find("data"); d != error.end() && d->is_object() && d->contains("detail")) {
    return (*d)["detail"].is_string() ? (*d)["detail"].get<std::string>() : (*d)["detail"].dump();
  }
  return error.value("message", std::string("load failed"));
}

}  // namespace

void WorkerPool::set_models(const ModelPreloadConfig& preload,
                            const std::map<std::string, ModelSpec>& catalog, bool affinity,
                            std::chrono::seconds idle_unload) {
  catalog_ = catalog;
  affinity_ = affinity;
  idle_unload_ = idle_unload;
  json models = json::array();
  for (const auto& m : preload.models) {
    json entry = {{"model_id", m.model_id},
                  {"warmup_requests", m.warmup_requests},
                  {"max_tokens", m.max_tokens},
                  {"warmup_prompts", m.warmup_prompts}};
    if (const auto spec = catalog_.find(m.model_id); spec != catalog_.end()) {
      entry["spec"] = {{"backend", spec->second.backend},
                       {"path", spec->second.path},
                       {"options", spec->second.options}};
    }
    models.push_back(std::move(entry));
  }
  preload_ = {{"enabled", preload.enabled && !preload.models.empty()},
              {"parallel", preload.parallel},
              {"max_parallel", preload.max_parallel},
              {"fail_fast", preload.fail_fast},
              {"models", std::move(models)}};
  arm_idle_unload();
}

bool WorkerPool::loading_anywhere(const std::string& model) const {
  return std::any_of(slots_.begin(), slots_.end(),
                     [&](const auto& s) { return s->link && s->link->loading(model); });
}

bool WorkerPool::held_anywhere(const std::string& model) const {
  return std::any_of(slots_.begin(), slots_.end(), [&](const auto& s) {
    return s->link && s->link->state() == WorkerLink::State::ready && s->link->has_model(model);
  });
}

bool WorkerPool::route_by_model(std::shared_ptr<Call>& call, std::vector<RouteCandidate>& candidates) {
  const std::string& model = call->model();
  const auto spec = catalog_.find(model);
  if (!affinity_) {
    if (catalog_.empty() || spec != catalog_.end() || held_anywhere(model)) return true;
    call->finish_error(RpcError::unknown_model, {},
                       unknown_model(model, "not in the models catalog")["data"]);
    return false;
  }
  std::vector<RouteCandidate> with;
  for (const auto& c : candidates) {
    if (slot_by_id(c.slot)->link->has_model(model)) with.push_back(c);
  }
  if (!with.empty()) {
    candidates = std::move(with);
    return true;
  }
  // Nobody who can take it now holds the model: wait for a load in progress, or start one
  // (also when the holders are all saturated: the model then spreads to another worker), or
  // wait for a holder of a model the catalog cannot load elsewhere.
  if (loading_anywhere(model)) {
    awaiting_[model].push_back(std::move(call));
    return false;
  }
  if (spec != catalog_.end()) {
    const auto best = std::min_element(candidates.begin(), candidates.end(),
                                       [](const auto& a, const auto& b) { return a.inflight < b.inflight; });
    start_load(*slot_by_id(best->slot)->link, spec->second);
    awaiting_[model].push_back(std::move(call));
    return false;
  }
  if (held_anywhere(model)) {
    awaiting_[model].push_back(std::move(call));
    return false;
  }
  if (catalog_.empty()) return true;  // no catalog: the worker decides (and answers -32006)
  std::vector<std::string> known;
  for (const auto& [id, m] : catalog_) known.push_back(id);
  call->finish_error(RpcError::unknown_model, {},
                     unknown_model(model, fmt::format("not in the models catalog (known: {})",
                                                      fmt::join(known, ", ")))["data"]);
  return false;
}

void WorkerPool::start_load(WorkerLink& link, const ModelSpec& spec) {
  log_->info("worker_id={} loading model {} on demand", link.id(), spec.id);
  const auto started = clock_.now();
  link.load_model(spec, [this, slot = link.id(), model = spec.id, started](const json& result,
                                                                            const json& error) {
    const double ms = std::chrono::duration<double, std::milli>(clock_.now() - started).count();
    if (error.is_null()) {
      ++stats_.model_loads;
      log_->info("worker_id={} model {} loaded in {:.1f} ms (worker: {:.1f} ms)", slot, model, ms,
                 result.value("load_ms", 0.0));
    } else {
      ++stats_.model_load_failures;
      log_->warn("worker_id={} model {} failed to load: {}", slot, model, error_detail(error));
      // Nobody else has it or is loading it: the waiting requests cannot be served.
      if (!held_anywhere(model) && !loading_anywhere(model)) {
        fail_awaiting(model, unknown_model(model, error_detail(error))["data"]);
      }
    }
    pump();
  });
}

void WorkerPool::fail_awaiting(const std::string& model, const json& data) {
  const auto it = awaiting_.find(model);
  if (it == awaiting_.end()) return;
  auto calls = std::move(it->second);
  awaiting_.erase(it);
  for (auto& call : calls) call->finish_error(RpcError::unknown_model, {}, data);
}

void WorkerPool::release_awaiting() {
  const auto now = clock_.now();
  for (auto it = awaiting_.begin(); it != awaiting_.end();) {
    const std::string& model = it->first;
    const bool servable = std::any_of(slots_.begin(), slots_.end(), [&](const auto& s) {
      return s->link && s->link->has_model(model) &&
             s->link->can_take(static_cast<std::size_t>(config_.max_inflight), now);
    });
    if (!servable && loading_anywhere(model)) {
      ++it;
      continue;
    }
    // Back to the front, in their original order.
    for (auto c = it->second.rbegin(); c != it->second.rend(); ++c) {
      if (!(*c)->done()) queue_.push_front(*c, (*c)->priority(), (*c)->accepted_at());
    }
    it = awaiting_.erase(it);
  }
}

void WorkerPool::load_model(const std::string& model, AdminDone done) {
  const auto spec = catalog_.find(model);
  if (spec == catalog_.end()) return done(json(), unknown_model(model, "not in the models catalog"));
  struct Progress {
    json loaded = json::array();
    json already = json::array();
    json failed = json::array();
    std::size_t pending = 1;  // released after the loop
    AdminDone done;
  };
  auto progress = std::make_shared<Progress>();
  progress->done = std::move(done);
  auto finish_one = [this, progress, model] {
    if (--progress->pending > 0) return;
    progress->done(json{{"model", model},
                        {"loaded", progress->loaded},
                        {"already_loaded", progress->already},
                        {"failed", progress->failed}},
                   json());
    pump();
  };
  for (const auto& s : slots_) {
    if (!s->link || s->link->state() != WorkerLink::State::ready) continue;
    if (s->link->has_model(model)) {
      progress->already.push_back(s->id);
      continue;
    }
    if (s->link->loading(model)) continue;
    ++progress->pending;
    s->link->load_model(spec->second, [this, progress, finish_one, id = s->id](const json& result,
                                                                             const json& error) {
      if (error.is_null()) {
        ++stats_.model_loads;
        progress->loaded.push_back({{"worker", id}, {"load_ms", result.value("load_ms", 0.0)}});
      } else {
        ++stats_.model_load_failures;
        progress->failed.push_back({{"worker", id}, {"error", error_detail(error)}});
      }
      finish_one();
    });
  }
  finish_one();
}

void WorkerPool::unload_model(const std::string& model, AdminDone done) {
  std::vector<std::shared_ptr<WorkerLink>> holders;
  for (const auto& s : slots_) {
    if (s->link && s->link->state() == WorkerLink::State::ready && s->link->has_model(model)) {
      holders.push_back(s->link);
    }
  }
  if (!catalog_.contains(model)) {
    if (holders.empty()) {
      return done(json(), unknown_model(model, "not loaded on any worker and not in the models catalog"));
    }
    // A worker's own model (from workers.command) could not be loaded back: refuse.
    return done(json(), json{{"code", code_of(RpcError::invalid_params)},
                             {"message", "Invalid params"},
                             {"data", {{"model", model},
                                       {"detail", "a worker's own model (from workers.command) cannot be "
                                                  "unloaded; only models of the models catalog can"}}}});
  }
  auto unloaded = std::make_shared<json>(json::array());
  auto pending = std::make_shared<std::size_t>(holders.size() + 1);
  auto finish_one = [unloaded, pending, model, done = std::move(done)] {
    if (--*pending == 0) done(json{{"model", model}, {"unloaded", *unloaded}}, json());
  };
  for (const auto& link : holders) {
    link->unload_model(model, [this, unloaded, finish_one, id = link->id()](const json&, const json& error) {
      if (error.is_null()) {
        ++stats_.model_unloads;
        unloaded->push_back(id);
      }
      finish_one();
    });
  }
  finish_one();
}

void WorkerPool::arm_idle_unload() {
  if (idle_unload_.count() == 0 || shutting_down_) {
    if (idle_timer_) idle_timer_->cancel();
    return;
  }
  if (!idle_timer_) idle_timer_ = std::make_unique<asio::steady_timer>(io_);
  // A quarter of the idle time (0.25..30 s): a model goes within 125% of idle_unload_s.
  const auto tick = std::clamp<Millis>(std::chrono::duration_cast<Millis>(idle_unload_) / 4,
                                       Millis(250), Millis(30'000));
  idle_timer_->expires_after(tick);
  idle_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    unload_idle();
    arm_idle_unload();
  });
}

void WorkerPool::unload_idle() {
  const auto now = clock_.now();
  for (const auto& s : slots_) {
    if (!s->link || s->link->state() != WorkerLink::State::ready) continue;
    std::vector<std::string> idle;
    for (const auto& [model, use] : s->link->on_demand_models()) {
      if (use.inflight == 0 && now - use.last_used >= idle_unload_ && !awaiting_.contains(model)) {
        idle.push_back(model);
      }
    }
    for (const auto& model : idle) {
      log_->info("worker_id={} unloading model {}: idle for {} s or more (memory_policy.idle_unload_s)",
                 s->id, model, idle_unload_.count());
      s->link->unload_model(model, [this](const json&, const json& error) {
        if (error.is_null()) {
          ++stats_.model_unloads;
          ++stats_.idle_unloads;
        }
      });
    }
  }
}

json WorkerPool::models_list() const {
  std::set<std::string> ids;
  for (const auto& [id, spec] : catalog_) ids.insert(id);
  for (const auto& s : slots_) {
    if (!s->link || s->link->state() == WorkerLink::State::dead) continue;
    for (const auto& m : s->link->report().models) ids.insert(m);
  }
  json models = json::array();
  for (const auto& id : ids) {
    json workers = json::array();
    json loading = json::array();
    for (const auto& s : slots_) {
      if (!s->link) continue;
      if (s->link->state() == WorkerLink::State::ready && s->link->has_model(id)) workers.push_back(s->id);
      if (s->link->loading(id)) loading.push_back(s->id);
    }
    const auto spec = catalog_.find(id);
    models.push_back({{"id", id},
                      {"state", !workers.empty() ? "loaded" : !loading.empty() ? "loading" : "unloaded"},
                      {"workers", std::move(workers)},
                      {"loading", std::move(loading)},
                      {"backend", spec != catalog_.end() ? json(spec->second.backend) : json()},
                      {"waiting_requests", awaiting_.contains(id) ? awaiting_.at(id).size() : 0}});
  }
  return {{"models", std::move(models)}};
}

}  // namespace drover::supervisor
