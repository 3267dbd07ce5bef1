#include "supervisor/frontend/request_handler.hpp"

#include "common/log.hpp"
#include "proto/client_params.hpp"
#include "proto/json_write.hpp"
#include "proto/methods.hpp"
#include "supervisor/frontend/client_session.hpp"
#include "supervisor/pipeline/request_key.hpp"

namespace drover::supervisor {
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

std::string_view id_of(const proto::RpcRequest& req) {
  return req.id ? std::string_view(*req.id) : proto::kNullId;
}

// `{"<name>":"<value>"}`: the data of the errors this handler answers per request (a bad
// param, an unknown method), written as bytes like every other reply on the request path.
std::string string_member(std::string_view name, std::string_view value) {
  std::string out = "{";
  proto::append_string(out, name);
  out += ':';
  proto::append_string(out, value);
  out += '}';
  return out;
}

}  // namespace

void RequestHandler::LocalCall::result(const json& value) const {
  if (reply) reply(proto::make_result(id, value));
}

void RequestHandler::LocalCall::error(RpcError code, std::string_view message,
                                      const json& data) const {
  if (reply) reply(proto::make_error(id, code, message, data));
}

void RequestHandler::LocalCall::invalid_params(const std::string& why) const {
  error(RpcError::invalid_params, {}, json{{"detail", why}});
}

RequestHandler::RequestHandler(asio::io_context& io, const Config& config, WorkerPool& pool,
                               Admission& admission)
    : io_(io),
      config_(config),
      pool_(pool),
      admission_(admission),
      pipeline_(io, config, pool),
      deadlines_(io, [this](Deadline& d) { on_deadline(d); }),
      log_(component_logger("frontend")) {
  methods_ = {{"generate", Builtin::generate, {}},
              {"tokenize", Builtin::tokenize, {}},
              {"detokenize", Builtin::detokenize, {}},
              {"cancel", Builtin::cancel, {}}};
}

void RequestHandler::add_method(std::string name, LocalMethod method) {
  methods_.push_back(Method{std::move(name), Builtin::local, std::move(method)});
}

const RequestHandler::Method* RequestHandler::find(std::string_view name) const {
  for (const auto& m : methods_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

void RequestHandler::handle(ClientSession& session, proto::ParsedMessage message) {
  auto weak = session.weak_from_this();
  if (message.refused_batch_length > 0) {
    // Refused whole, by its length, before anything in it was read: a partial batch would be
    // harder to retry, and a huge one must not cost droverd a request per member.
    session.write_reply(proto::make_error(
        proto::kNullId, RpcError::invalid_request, "Invalid Request: batch too long",
        json{{"limit", config_.server.max_batch_length}, {"length", message.refused_batch_length}}));
    return;
  }
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
  const std::string_view id = id_of(req);
  auto invalid_params = [&reply, id](std::string_view why) {
    if (reply) {
      reply(proto::make_error(id, RpcError::invalid_params, {},
                              std::string_view(string_member("detail", why))));
    }
  };
  const Method* method = find(req.method);
  if (!method) {
    if (reply) {
      reply(proto::make_error(id, RpcError::method_not_found, {},
                              std::string_view(string_member("method", req.method))));
    }
    return;
  }
  if (proto::is_admin_method(req.method) && !session.admin()) {
    if (reply) {
      reply(proto::make_error(id, RpcError::not_permitted, {}, json{{"detail", "use the admin socket"}}));
    }
    return;
  }
  switch (method->builtin) {
    case Builtin::generate: {
      auto p = proto::parse_generate_params(req.params);
      if (!p) return invalid_params(p.error());
      const std::uint64_t seed = p->seed ? *p->seed : ids_.next_seed();
      // The key is taken before the seed is resolved: only a client's seed makes a request
      // deterministic (and is part of its key).
      PipelineRequest pr{deterministic_key(*p), p->cache, req.id ? *req.id : std::string()};
      return start_call(session, req, std::move(reply), p->to_worker_request(seed), p->stream,
                        p->timeout_ms, p->model, std::move(pr), p->priority);
    }
    case Builtin::tokenize: {
      auto p = proto::parse_tokenize_params(req.params);
      if (!p) return invalid_params(p.error());
      proto::worker::BatchTokenizeRequest request{p->model, {std::move(p->text)}};
      return start_call(session, req, std::move(reply), std::move(request), false, std::nullopt,
                        p->model, {}, p->priority);
    }
    case Builtin::detokenize: {
      auto p = proto::parse_detokenize_params(req.params);
      if (!p) return invalid_params(p.error());
      proto::worker::DetokenizeRequest request{p->model, std::move(p->tokens)};
      return start_call(session, req, std::move(reply), std::move(request), false, std::nullopt,
                        p->model);
    }
    case Builtin::cancel: {
      auto p = proto::parse_cancel_params(req.params);
      if (!p) return invalid_params(p.error());
      bool cancelled = false;
      for (auto& call : session.find_calls(p->id)) {
        cancel(call);
        cancelled = true;
      }
      if (reply) {
        reply(proto::make_result(
            id, std::string_view(cancelled ? R"({"cancelled":true})" : R"({"cancelled":false})")));
      }
      return;
    }
    case Builtin::local: {
      LocalCall call{req, proto::RpcId(id), session.admin(), std::move(reply)};
      return method->local(call);
    }
  }
}

void RequestHandler::start_call(ClientSession& session, const proto::RpcRequest& req, Reply reply,
                                WorkerRequest request, bool stream,
                                std::optional<std::int64_t> timeout_ms, std::string model,
                                PipelineRequest pipeline_request, proto::Priority priority) {
  const std::string_view id = id_of(req);
  const auto kind = static_cast<CallKind>(request.index());
  if (!draining_ && session.outstanding() >= config_.server.max_inflight_per_connection) {
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
  auto weak_session = session.weak_from_this();
  CallSink sink;
  sink.chunk = [weak_session](const StreamChunk& c) {
    auto s = weak_session.lock();
    return s ? s->write_chunk(c) : true;
  };
  sink.reply = std::move(reply);
  // Rollouts go by the client's id (a notification's by its internal request id).
  if (pipeline_request.rollout_id.empty() && req.id) pipeline_request.rollout_id = *req.id;
  Admit a{id, req.is_notification(), stream, timeout_ms, std::move(model),
          std::move(pipeline_request), priority};
  admit(std::move(a), std::move(request), std::move(sink), [&session, weak_session](Call& call) {
    session.track(call.shared_from_this());
    call.on_finish([weak_session, raw = &call] {
      if (auto s = weak_session.lock()) s->forget(raw);
    });
  });
}

std::shared_ptr<Call> RequestHandler::submit_generate(const proto::GenerateParams& p,
                                                      std::string_view client_id, CallSink sink,
                                                      const std::function<void(Call&)>& attach) {
  const std::uint64_t seed = p.seed ? *p.seed : ids_.next_seed();
  // As for a JSON-RPC generate: only a client's seed makes a request deterministic.
  Admit a{client_id, false, p.stream, p.timeout_ms, p.model,
          PipelineRequest{deterministic_key(p), p.cache, {}}, p.priority, Frontend::openai};
  return admit(std::move(a), p.to_worker_request(seed), std::move(sink), attach);
}

std::shared_ptr<Call> RequestHandler::admit(Admit a, WorkerRequest request, CallSink sink,
                                            const std::function<void(Call&)>& attach) {
  const auto kind = static_cast<CallKind>(request.index());
  auto refused = [&a](RpcError code) {
    CallOutcome o{code_of(code)};
    o.frontend = a.frontend;
    return o;
  };
  if (draining_) {
    if (observer_) observer_(kind, refused(RpcError::shutting_down));
    // "started": false tells a client the request never ran, so it may send it again on a new
    // connection (another droverd), whatever the method (docs/API.md, -32009).
    if (sink.reply) {
      sink.reply(proto::make_error(a.client_id, RpcError::shutting_down, {},
                                   std::string_view(R"({"started":false})")));
    }
    return nullptr;
  }
  if (admission_.shed(a.priority)) {
    if (observer_) observer_(kind, refused(RpcError::overloaded));
    if (sink.reply) {
      const std::string data = R"({"retry_after_ms":)" + std::to_string(admission_.shed_retry_after_ms()) +
                               R"(,"reason":"slo_shed_low_priority"})";
      sink.reply(proto::make_error(a.client_id, RpcError::overloaded, {}, std::string_view(data)));
    }
    return nullptr;
  }
  if (!admission_.try_acquire()) {
    if (observer_) observer_(kind, refused(RpcError::overloaded));
    if (sink.reply) {
      sink.reply(proto::make_error(a.client_id, RpcError::overloaded, {},
                                   json{{"retry_after_ms", admission_.retry_after_ms()}}));
    }
    return nullptr;
  }
  auto call = std::make_shared<Call>(ids_.next_request_id(), proto::RpcId(a.client_id),
                                     a.notification, std::move(request), std::move(sink));
  call->set_streaming(a.stream);
  call->set_frontend(a.frontend);
  call->set_priority(a.priority);
  call->set_model(std::move(a.model));
  call->on_finish([this, raw = call.get()] {
    admission_.release();
    pipeline_.record_outcome(*raw);
    if (observer_) observer_(raw->kind(), raw->outcome());
  });
  if (attach) attach(*call);
  Millis timeout = a.timeout_ms ? Millis(*a.timeout_ms) : config_.server.request_timeout;
  if (a.stream && config_.server.max_stream_duration.count() > 0) {
    timeout = std::min(timeout, config_.server.max_stream_duration);
  }
  call->set_timeout(timeout);
  deadlines_.add(call->deadline(), timeout);
  // A notification (and a call from another frontend) rolls out by its internal request id.
  if (a.pipeline.rollout_id.empty()) a.pipeline.rollout_id = call->request_id();
  call->set_cohorts(FeatureFlags::cohorts(config_, a.pipeline.rollout_id));
  call->set_batchable(
      pipeline_.admits(Stage::batch_queue, config_.batch_queue.enabled, a.pipeline.rollout_id));
  pipeline_.submit(call, std::move(a.pipeline));
  return call;
}

void RequestHandler::on_deadline(Deadline& deadline) {
  // Held by the session (and the pool) until it finishes, so it is alive while armed.
  auto c = deadline.call->shared_from_this();
  if (c->done()) return;
  log_->warn("request_id={} timed out after {} ms", c->request_id(), c->timeout().count());
  c->finish_error(RpcError::timed_out, {}, json{{"timeout_ms", c->timeout().count()}});
  pool_.on_timeout(c);
}

void RequestHandler::cancel(const std::shared_ptr<Call>& call) { pipeline_.cancel(call); }

}  // namespace drover::supervisor
