// scan_reply: pulls the few members drover-bench needs out of one message from droverd, with
// nlohmann-json's SAX parser instead of building a DOM, so the load generator spends as little
// of the machine's CPU as it can (it shares the cores with droverd and the workers). Member
// order does not matter. Pure, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace drover::bench {

struct ReplyInfo {
  enum class Kind {
    result,        // a response with `result`
    error,         // a response with `error`
    notification,  // a message with `method` and no `id`
    other,         // valid JSON of another shape (a batch, a request from the server)
    invalid,       // not JSON
  };
  Kind kind = Kind::other;
  std::optional<std::int64_t> id;  // the response's numeric id (drover-bench sends only those)
  int error_code = 0;              // error.code, for Kind::error
  std::string method;              // for notifications
  // params.id of a notification: for generate.chunk, the request it belongs to.
  std::optional<std::int64_t> params_id;
  // result.usage.completion_tokens of a generate result; 0 when absent.
  std::int64_t completion_tokens = 0;
};

ReplyInfo scan_reply(std::string_view text);

}  // namespace drover::bench
