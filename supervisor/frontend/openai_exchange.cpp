#include "supervisor/frontend/openai_exchange.hpp"

#include "supervisor/frontend/request_handler.hpp"

namespace drover::supervisor {
namespace oa = proto::openai;

OpenAiExchange::OpenAiExchange(RequestHandler& handler, oa::ResponseHead head, bool stream,
                               bool include_usage, Output output)
    : handler_(handler),
      head_(std::move(head)),
      stream_(stream),
      include_usage_(include_usage),
      out_(std::move(output)) {}

void OpenAiExchange::start(const proto::GenerateParams& params,
                           const std::vector<std::string>& prompts) {
  slots_.resize(prompts.size());
  pending_ = prompts.size();
  std::weak_ptr<OpenAiExchange> weak = weak_from_this();
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    // A refusal or a cache hit answers inside submit_generate; an error ends the exchange.
    if (finished_) return;
    proto::GenerateParams p = params;
    p.prompt = prompts[i];
    CallSink sink;
    sink.chunk = [weak, i](const StreamChunk& c) {
      auto self = weak.lock();
      return self ? self->on_chunk(i, c.text) : true;
    };
    sink.reply = [weak, i](std::string&& reply) {
      if (auto self = weak.lock()) self->on_reply(i, std::move(reply));
    };
    handler_.submit_generate(p, proto::kNullId, std::move(sink),
                             [this, i](Call& call) { slots_[i].call = call.shared_from_this(); });
  }
}

void OpenAiExchange::ensure_stream_began() {
  if (stream_began_) return;
  stream_began_ = true;
  out_.begin_stream();
}

void OpenAiExchange::open_choice(std::size_t index, std::string& out) {
  auto& slot = slots_[index];
  if (head_.endpoint != oa::Endpoint::chat || slot.role_sent) return;
  slot.role_sent = true;
  oa::append_role_event(out, head_, index, include_usage_);
}

bool OpenAiExchange::on_chunk(std::size_t index, const std::string& text) {
  if (finished_) return true;  // being cancelled
  ensure_stream_began();
  std::string events;
  open_choice(index, events);
  oa::append_text_event(events, head_, index, text, include_usage_);
  return out_.stream_events(std::move(events));
}

void OpenAiExchange::on_reply(std::size_t index, std::string&& reply) {
  auto& slot = slots_[index];
  if (finished_ || slot.done) return;
  slot.done = true;
  --pending_;
  const oa::GenerateReply r = oa::parse_generate_reply(reply);
  if (!r.ok) return fail(oa::error_of(r));
  slot.choice = oa::Choice{r.text, r.finish_reason};
  slot.usage = r.usage;
  if (stream_) {
    ensure_stream_began();
    std::string events;
    open_choice(index, events);
    oa::append_finish_event(events, head_, index, r.finish_reason, include_usage_);
    out_.stream_events(std::move(events));
  }
  if (pending_ == 0) finish();
}

void OpenAiExchange::fail(const oa::HttpError& e) {
  cancel();
  if (stream_began_) {
    std::string event;
    oa::append_error_event(event, e.error);
    out_.end_stream(std::move(event));
    return;
  }
  out_.respond(e.error.status, oa::encode_error(e.error), e.retry_after_s);
}

void OpenAiExchange::finish() {
  finished_ = true;
  oa::Usage usage;
  for (const auto& s : slots_) usage += s.usage;
  if (!stream_) {
    std::vector<oa::Choice> choices;
    choices.reserve(slots_.size());
    for (auto& s : slots_) choices.push_back(std::move(s.choice));
    out_.respond(200, oa::encode_response(head_, choices, usage), std::nullopt);
    return;
  }
  std::string events;
  if (include_usage_) oa::append_usage_event(events, head_, usage);
  events += oa::kDoneEvent;
  out_.end_stream(std::move(events));
}

void OpenAiExchange::cancel() {
  if (finished_) return;
  finished_ = true;
  for (auto& s : slots_) {
    if (!s.call || s.done || s.call->done()) continue;
    s.call->detach_sink();
    handler_.cancel(s.call);
  }
}

}  // namespace drover::supervisor
