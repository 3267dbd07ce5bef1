// Message framing for JSON-RPC byte streams: newline-delimited JSON (NDJSON) and the LSP
// `Content-Length: N\r\n\r\n` framing, detected per connection from the first non-blank byte
// ('{' or '[' -> NDJSON, 'C'/'c' -> Content-Length; anything else is read as NDJSON so the
// client gets a parse error for its line instead of a silent close).
//
// FrameDecoder is a pure state machine (no I/O): feed it bytes in any split, then pull frames.
// One decoder per connection; not thread-safe. Limits, and what happens past them:
//  - a message body longer than max_message_bytes yields Frame::too_large and the decoder skips
//    the rest of that message (to the next newline, or past the declared length), so the
//    connection stays usable;
//  - a Content-Length header block that cannot be parsed yields Frame::bad_header with
//    `fatal` set: the stream cannot be resynchronised and the connection should be closed
//    after the error is written;
//  - a header block that parses but is ambiguous (Content-Length given twice: which one frames
//    the body?) yields Frame::invalid_header, also fatal: answered -32600 (Invalid Request)
//    rather than guessed at, since a guess that differs from a proxy's in front of us would
//    smuggle a second message into the body of the first.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace drover::proto {

enum class Framing { unknown, ndjson, content_length };

struct Frame {
  enum class Kind { message, too_large, bad_header, invalid_header };
  Kind kind = Kind::message;
  std::string body;     // the JSON text, for Kind::message
  bool fatal = false;   // the connection cannot continue after this frame
  std::string detail;   // what was wrong, for errors
  // Kind::too_large in NDJSON framing: the message's first bytes (up to kHeadBytes), so the
  // receiver can say whose message it refused (drover-worker answers the request id in it).
  std::string head;
  static constexpr std::size_t kHeadBytes = 256;
};

class FrameDecoder {
 public:
  // Longest header block accepted in Content-Length framing.
  static constexpr std::size_t kMaxHeaderBytes = 8192;

  explicit FrameDecoder(std::size_t max_message_bytes);

  // Appends received bytes. REQUIRES: no fatal frame has been returned.
  void feed(std::string_view bytes);

  // The next complete frame, or nullopt when more bytes are needed.
  std::optional<Frame> next();

  Framing framing() const { return framing_; }
  std::size_t max_message_bytes() const { return max_; }
  // Bytes received but not yet returned as frames (for idle/partial-message accounting).
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::optional<Frame> next_ndjson();
  std::optional<Frame> next_content_length();
  void compact();

  std::size_t max_;
  Framing framing_ = Framing::unknown;
  std::string buf_;
  std::size_t pos_ = 0;      // start of unconsumed bytes in buf_
  std::size_t scanned_ = 0;  // NDJSON: bytes after pos_ already known to hold no newline
  std::size_t skip_ = 0;     // Content-Length: body bytes of an oversize message still to drop
  bool discarding_line_ = false;  // NDJSON: dropping the rest of an oversize line
  bool failed_ = false;
};

// Frames one JSON text for a connection using `framing` (unknown is treated as NDJSON).
// REQUIRES: for NDJSON, json holds no raw newline (serialised JSON never does).
std::string encode_frame(Framing framing, std::string_view json);
void append_frame(std::string& out, Framing framing, std::string_view json);

}  // namespace drover::proto
