// Fuzz target: the client framing decoder (proto/framing.hpp): NDJSON, Content-Length, and the
// choice between them from the first non-blank byte.
//
// Input: the raw bytes one client sends on one connection. Each input is decoded with two
// limits (64 bytes, so short inputs reach the too-large paths, and the shipped 8 MiB default)
// and with up to three feeding schedules: all at once; in pieces whose sizes come from a PRNG
// seeded with the input (so a crash reproduces from the artifact alone); and byte by byte
// (inputs up to kByteByByteMax only: header parsing rescans the block on every feed).
//
// Invariants (each a FUZZ_CHECK; a failure aborts and libFuzzer saves the input):
//  - a message body is at most max_message_bytes; an NDJSON body holds no '\n' and is not
//    blank (only spaces and tabs);
//  - once next() has nothing to return, the decoder holds at most one partial message:
//    NDJSON max + 1 bytes (the line and a possible '\r'), Content-Length a header block plus
//    a body, so no sequence of bytes makes a connection's buffer grow without bound;
//  - nothing follows a fatal frame, and only bad_header frames are fatal;
//  - the frames do not depend on how the stream was split into reads;
//  - message bodies re-framed with append_frame() decode to the same bodies.
// Exceptions are not caught: the decoder is on the data plane and must not throw.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "proto/framing.hpp"

namespace {

using drover::proto::Frame;
using drover::proto::FrameDecoder;
using drover::proto::Framing;

constexpr std::size_t kSmallMax = 64;
constexpr std::size_t kDefaultMax = 8 * 1024 * 1024;  // server.max_message_bytes default
constexpr std::size_t kByteByByteMax = 2048;

struct Decoded {
  std::vector<Frame> frames;
  Framing framing = Framing::unknown;
};

bool same_frames(const std::vector<Frame>& a, const std::vector<Frame>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind || a[i].body != b[i].body || a[i].fatal != b[i].fatal) return false;
  }
  return true;
}

// Blank as the decoder defines it for lines between messages (spaces and tabs; a stray '\r'
// inside a line is content, and the client gets a parse error for it).
bool blank(std::string_view s) { return s.find_first_not_of(" \t") == std::string_view::npos; }

// Pulls every frame the decoder has, checking each and the decoder's state afterwards.
// Returns false once a fatal frame was returned (the caller must then stop feeding).
bool drain(FrameDecoder& d, std::vector<Frame>& out) {
  const std::size_t max = d.max_message_bytes();
  while (auto f = d.next()) {
    FUZZ_CHECK(f->fatal == (f->kind == Frame::Kind::bad_header ||
                           f->kind == Frame::Kind::invalid_header));
    if (f->kind == Frame::Kind::message) {
      FUZZ_CHECK(f->body.size() <= max);
      if (d.framing() == Framing::ndjson) {
        FUZZ_CHECK(f->body.find('\n') == std::string::npos);
        FUZZ_CHECK(!blank(f->body));
      }
    } else {
      FUZZ_CHECK(f->body.empty());
      FUZZ_CHECK(!f->detail.empty());
    }
    const bool fatal = f->fatal;
    out.push_back(std::move(*f));
    if (fatal) {
      FUZZ_CHECK(!d.next().has_value());
      return false;
    }
  }
  switch (d.framing()) {
    case Framing::unknown:
      FUZZ_CHECK(d.buffered() == 0);
      break;
    case Framing::ndjson:
      FUZZ_CHECK(d.buffered() <= max + 1);
      break;
    case Framing::content_length:
      FUZZ_CHECK(d.buffered() <= FrameDecoder::kMaxHeaderBytes + 4 + max);
      break;
  }
  return true;
}

// Feeds `stream` in pieces of the sizes `piece_size()` returns (0 is a legal, empty read).
template <typename PieceSize>
Decoded decode(std::string_view stream, std::size_t max, PieceSize piece_size) {
  FrameDecoder d(max);
  Decoded out;
  std::size_t at = 0;
  while (at < stream.size()) {
    const std::size_t n = std::min(piece_size(), stream.size() - at);
    d.feed(stream.substr(at, n));
    at += n;
    if (!drain(d, out.frames)) break;
  }
  out.framing = d.framing();
  return out;
}

// xorshift64*, seeded from the input so the schedule is a function of the artifact.
class Prng {
 public:
  explicit Prng(std::string_view seed_bytes) {
    state_ = 0x9E3779B97F4A7C15ULL ^ seed_bytes.size();
    for (unsigned char c : seed_bytes) state_ = (state_ ^ c) * 0x100000001B3ULL;
    if (state_ == 0) state_ = 1;
  }
  std::uint64_t next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }

 private:
  std::uint64_t state_;
};

void check_limit(std::string_view stream, std::size_t max) {
  const Decoded whole = decode(stream, max, [&] { return stream.size(); });

  Prng prng(stream);
  const Decoded pieces = decode(stream, max, [&] {
    // Mostly short reads, sometimes empty ones, sometimes long ones.
    const std::uint64_t r = prng.next();
    switch (r % 8) {
      case 0:
        return std::size_t{0};
      case 1:
        return static_cast<std::size_t>((r >> 8) % 4096);
      default:
        return static_cast<std::size_t>(1 + (r >> 8) % 16);
    }
  });
  FUZZ_CHECK(pieces.framing == whole.framing);
  FUZZ_CHECK(same_frames(pieces.frames, whole.frames));

  if (stream.size() <= kByteByByteMax) {
    const Decoded bytes = decode(stream, max, [] { return std::size_t{1}; });
    FUZZ_CHECK(bytes.framing == whole.framing);
    FUZZ_CHECK(same_frames(bytes.frames, whole.frames));
  }

  // Re-framing: what the decoder returned as messages, framed again, decodes to the same
  // messages. NDJSON streams are left out when the bytes themselves are ambiguous: a body
  // ending in '\r' (the decoder reads "x\r\n" as "x"), or a first body that starts with a
  // blank or a 'C' (possible after a too-large first line; detection would skip or switch).
  std::vector<std::string> bodies;
  for (const Frame& f : whole.frames) {
    if (f.kind == Frame::Kind::message) bodies.push_back(f.body);
  }
  if (bodies.empty()) return;
  if (whole.framing == Framing::ndjson) {
    const char first = bodies.front().front();
    if (first == ' ' || first == '\t' || first == '\r' || first == 'C' || first == 'c') return;
    for (const std::string& b : bodies) {
      if (b.back() == '\r') return;
    }
  }
  std::string again;
  for (const std::string& b : bodies) drover::proto::append_frame(again, whole.framing, b);
  const Decoded redecoded = decode(again, max, [&] { return again.size(); });
  FUZZ_CHECK(redecoded.framing == whole.framing);
  FUZZ_CHECK(redecoded.frames.size() == bodies.size());
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    FUZZ_CHECK(redecoded.frames[i].kind == Frame::Kind::message);
    FUZZ_CHECK(redecoded.frames[i].body == bodies[i]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view stream(reinterpret_cast<const char*>(data), size);
  check_limit(stream, kSmallMax);
  check_limit(stream, kDefaultMax);
  return 0;
}
