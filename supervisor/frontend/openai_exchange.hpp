// OpenAiExchange: one POST /v1/completions or /v1/chat/completions on its way through the
// request pipeline (no I/O; the OpenAiSession writes what it produces). Each prompt becomes one
// generate Call, submitted through RequestHandler::submit_generate exactly as a JSON-RPC
// `generate` is (admission, deadline, prompt cache, dedup, coalescing, batching, priorities,
// failover); its chunks and its final reply come back through the Call's sink and are turned
// into OpenAI's objects here.
//
// Exactly one response per exchange:
//   - unary: once every choice has its reply, 200 with all the choices and the summed usage;
//     the first error instead answers with its status (the other calls are cancelled).
//   - stream: the SSE head is sent with the first output (so an error that comes before any,
//     such as 404 for an unknown model or 429, still gets its own status); then per choice
//     (chat: a role event first) its text events and a finish event; then the usage event
//     when asked for, and [DONE]. An error after the head is an error event, and ends the
//     stream without [DONE].
// Backpressure: the session refuses a chunk when its client leaves more than
// server.write_buffer_bytes unread; the call then fails with -32010 at the worker link and is
// cancelled there, as a JSON-RPC stream is.
//
// Shared-owned by its session; the Calls' sinks hold it weakly. Supervisor thread only.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/openai_response.hpp"
#include "supervisor/pool/call.hpp"

namespace drover::supervisor {

class RequestHandler;

class OpenAiExchange : public std::enable_shared_from_this<OpenAiExchange> {
 public:
  // What the exchange writes; implemented by the session.
  struct Output {
    // A whole response (not streamed, or an error before the stream began). `retry_after_s`:
    // the Retry-After header.
    std::function<void(int status, std::string&& body, std::optional<std::int64_t> retry_after_s)>
        respond;
    // The SSE head (200, text/event-stream), once, before the first event.
    std::function<void()> begin_stream;
    // One or more complete events; false when the client has more than the limit unread.
    std::function<bool(std::string&& events)> stream_events;
    // The last events (usage and [DONE], or an error), written whatever the client has
    // unread (they are small and end the stream), then the end of the stream.
    std::function<void(std::string&& last_events)> end_stream;
  };

  OpenAiExchange(RequestHandler& handler, proto::openai::ResponseHead head, bool stream,
                 bool include_usage, Output output);

  // Submits one call per prompt; `params` carries everything but the prompt.
  void start(const proto::GenerateParams& params, const std::vector<std::string>& prompts);
  // The client is gone: every unfinished call is cancelled at its worker, nothing more is written.
  void cancel();
  bool finished() const { return finished_; }

 private:
  struct Slot {
    std::shared_ptr<Call> call;
    bool done = false;
    bool role_sent = false;  // chat streams: the role event of this choice went out
    proto::openai::Choice choice;
    proto::openai::Usage usage;
  };

  bool on_chunk(std::size_t index, const std::string& text);
  void on_reply(std::size_t index, std::string&& reply);
  void fail(const proto::openai::HttpError& e);
  // Role event of a chat choice before its first other event.
  void open_choice(std::size_t index, std::string& out);
  void ensure_stream_began();
  void finish();

  RequestHandler& handler_;
  proto::openai::ResponseHead head_;
  bool stream_;
  bool include_usage_;
  Output out_;
  std::vector<Slot> slots_;
  std::size_t pending_ = 0;
  bool stream_began_ = false;
  bool finished_ = false;
};

}  // namespace drover::supervisor
