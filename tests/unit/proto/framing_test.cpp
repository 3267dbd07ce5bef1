// FrameDecoder and encode_frame: both framings, every way the bytes can be split, the size limits
// and how the decoder resynchronises after them, and the fatal header errors.
#include "proto/framing.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace drover::proto {
namespace {

using Kind = Frame::Kind;

// Messages with multi-byte UTF-8 (2-, 3- and 4-byte sequences), so splits land inside code points
// and Content-Length must count bytes, not characters.
const std::vector<std::string>& sample_messages() {
  static const std::vector<std::string> messages = {
      R"({"jsonrpc":"2.0","method":"generate","params":{"prompt":"héllo wörld"},"id":1})",
      R"({"jsonrpc":"2.0","method":"tokenize","params":{"text":"日本語のテキスト"},"id":"a"})",
      R"([{"jsonrpc":"2.0","method":"health","id":2},{"jsonrpc":"2.0","method":"note"}])",
      R"({"jsonrpc":"2.0","method":"generate","params":{"prompt":"rocket 🚀 — done"},"id":null})",
      R"({})",
  };
  return messages;
}

std::string ndjson_stream(const std::vector<std::string>& messages) {
  std::string out;
  for (const auto& m : messages) out += m + "\n";
  return out;
}

std::string content_length_stream(const std::vector<std::string>& messages) {
  // Written by hand rather than with encode_frame, so the decoder is checked against the framing
  // itself and not against our own encoder.
  std::string out;
  for (const auto& m : messages) {
    out += "Content-Length: " + std::to_string(m.size()) + "\r\n\r\n" + m;
  }
  return out;
}

// Pulls every frame the decoder can produce from what it holds now.
std::vector<Frame> drain(FrameDecoder& d) {
  std::vector<Frame> out;
  while (auto f = d.next()) out.push_back(std::move(*f));
  return out;
}

void append(std::vector<Frame>& to, std::vector<Frame> from) {
  for (auto& f : from) to.push_back(std::move(f));
}

bool saw_fatal(const std::vector<Frame>& frames) { return !frames.empty() && frames.back().fatal; }

// Like a connection, these stop feeding once a fatal frame has been returned (feed()'s REQUIRES).
std::vector<Frame> decode_split(std::string_view bytes, std::size_t split, std::size_t max) {
  FrameDecoder d(max);
  d.feed(bytes.substr(0, split));
  auto frames = drain(d);
  if (saw_fatal(frames)) return frames;
  d.feed(bytes.substr(split));
  append(frames, drain(d));
  return frames;
}

std::vector<Frame> decode_bytewise(std::string_view bytes, std::size_t max) {
  FrameDecoder d(max);
  std::vector<Frame> frames;
  for (char c : bytes) {
    if (saw_fatal(frames)) break;
    d.feed(std::string_view(&c, 1));
    append(frames, drain(d));
  }
  return frames;
}

std::vector<Frame> decode_whole(std::string_view bytes, std::size_t max) {
  FrameDecoder d(max);
  d.feed(bytes);
  return drain(d);
}

// "M:<body>" for a message, "too_large" / "bad_header!" otherwise: one string per frame so a
// mismatch prints readably.
std::vector<std::string> describe(const std::vector<Frame>& frames) {
  std::vector<std::string> out;
  for (const auto& f : frames) {
    switch (f.kind) {
      case Kind::message:
        out.push_back("M:" + f.body);
        break;
      case Kind::too_large:
        out.push_back(f.fatal ? "too_large!" : "too_large");
        break;
      case Kind::bad_header:
        out.push_back(f.fatal ? "bad_header!" : "bad_header");
        break;
      case Kind::invalid_header:
        out.push_back(f.fatal ? "invalid_header!" : "invalid_header");
        break;
    }
  }
  return out;
}

std::vector<std::string> as_messages(const std::vector<std::string>& bodies) {
  std::vector<std::string> out;
  for (const auto& b : bodies) out.push_back("M:" + b);
  return out;
}

constexpr std::size_t kLarge = 1 << 20;

// Feeds `bytes` split at every byte boundary and one byte at a time, expecting `expected` each
// time.
void expect_every_split(std::string_view bytes, std::size_t max,
                        const std::vector<std::string>& expected) {
  for (std::size_t i = 0; i <= bytes.size(); ++i) {
    ASSERT_EQ(describe(decode_split(bytes, i, max)), expected) << "split at byte " << i;
  }
  EXPECT_EQ(describe(decode_bytewise(bytes, max)), expected) << "fed one byte at a time";
}

// --- splits --------------------------------------------------------------------------------------

TEST(FramingNdjson, EverySplitPointYieldsTheOriginalMessagesInOrder) {
  const std::string bytes = ndjson_stream(sample_messages());
  expect_every_split(bytes, kLarge, as_messages(sample_messages()));
}

TEST(FramingContentLength, EverySplitPointYieldsTheOriginalMessagesInOrder) {
  const std::string bytes = content_length_stream(sample_messages());
  expect_every_split(bytes, kLarge, as_messages(sample_messages()));
}

TEST(FramingNdjson, DetectsNdjsonFramingFromFirstByte) {
  FrameDecoder d(kLarge);
  EXPECT_EQ(d.framing(), Framing::unknown);
  d.feed(ndjson_stream(sample_messages()));
  ASSERT_TRUE(d.next().has_value());
  EXPECT_EQ(d.framing(), Framing::ndjson);
}

TEST(FramingContentLength, DetectsContentLengthFramingFromFirstByte) {
  FrameDecoder d(kLarge);
  d.feed(content_length_stream(sample_messages()));
  ASSERT_TRUE(d.next().has_value());
  EXPECT_EQ(d.framing(), Framing::content_length);
}

TEST(FramingNdjson, ManyMessagesInOneFeed) {
  std::vector<std::string> messages;
  for (int i = 0; i < 2000; ++i) {
    messages.push_back(R"({"jsonrpc":"2.0","method":"m","id":)" + std::to_string(i) + "}");
  }
  FrameDecoder d(kLarge);
  d.feed(ndjson_stream(messages));
  EXPECT_EQ(describe(drain(d)), as_messages(messages));
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FramingContentLength, ManyMessagesInOneFeed) {
  std::vector<std::string> messages;
  for (int i = 0; i < 2000; ++i) {
    messages.push_back(R"({"jsonrpc":"2.0","method":"m","id":")" + std::to_string(i) + "\"}");
  }
  FrameDecoder d(kLarge);
  d.feed(content_length_stream(messages));
  EXPECT_EQ(describe(drain(d)), as_messages(messages));
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(FramingNdjson, IncompleteLineIsHeldUntilItsNewlineArrives) {
  FrameDecoder d(kLarge);
  d.feed(R"({"id":1})");
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.buffered(), 8u);
  d.feed("\n");
  EXPECT_EQ(describe(drain(d)), as_messages({R"({"id":1})"}));
}

TEST(FramingContentLength, IncompleteBodyIsHeldUntilAllDeclaredBytesArrive) {
  FrameDecoder d(kLarge);
  d.feed("Content-Length: 8\r\n\r\n{\"id\":1");
  EXPECT_FALSE(d.next().has_value());
  d.feed("}{\"next\"");
  EXPECT_EQ(describe(drain(d)), as_messages({R"({"id":1})"}));
}

// --- NDJSON line endings and blank lines ---------------------------------------------------------

TEST(FramingNdjson, CrlfLineEndingsAndBlankLinesAreAccepted) {
  const std::string bytes =
      "{\"id\":1}\r\n"
      "\r\n"
      "\n"
      "   \t \r\n"
      "{\"id\":2}\n"
      "\n"
      "{\"id\":\"é\"}\r\n";
  expect_every_split(bytes, kLarge, as_messages({R"({"id":1})", R"({"id":2})", R"({"id":"é"})"}));
}

TEST(FramingNdjson, LeadingWhitespaceBeforeFirstByteIsSkipped) {
  const std::string bytes = " \r\n\t\n  {\"id\":1}\n";
  FrameDecoder d(kLarge);
  d.feed(" \r\n\t");
  EXPECT_FALSE(d.next().has_value());
  EXPECT_EQ(d.framing(), Framing::unknown) << "blanks alone must not decide the framing";
  expect_every_split(bytes, kLarge, as_messages({R"({"id":1})"}));
}

TEST(FramingNdjson, ArrayAsFirstByteIsNdjson) {
  FrameDecoder d(kLarge);
  d.feed("[1,2]\n");
  EXPECT_EQ(describe(drain(d)), as_messages({"[1,2]"}));
  EXPECT_EQ(d.framing(), Framing::ndjson);
}

TEST(FramingNdjson, OtherFirstByteIsTreatedAsNdjsonSoTheLineReachesTheParser) {
  for (std::string_view first_line : {"hello", "42", "\"str\"", "GET / HTTP/1.1", "]"}) {
    FrameDecoder d(kLarge);
    d.feed(std::string(first_line) + "\n{\"id\":1}\n");
    EXPECT_EQ(describe(drain(d)), as_messages({std::string(first_line), R"({"id":1})"}))
        << first_line;
    EXPECT_EQ(d.framing(), Framing::ndjson) << first_line;
  }
}

// --- NDJSON size limit ---------------------------------------------------------------------------

TEST(FramingNdjson, OversizeCompleteLineIsTooLargeAndNextMessageDecodes) {
  constexpr std::size_t kMax = 64;
  const std::string big = "{\"prompt\":\"" + std::string(200, 'x') + "\"}";
  const std::string bytes = big + "\n{\"id\":2}\n";
  const auto frames = decode_whole(bytes, kMax);
  ASSERT_EQ(describe(frames), (std::vector<std::string>{"too_large", R"(M:{"id":2})"}));
  EXPECT_FALSE(frames[0].fatal);
  EXPECT_NE(frames[0].detail.find("64"), std::string::npos) << frames[0].detail;
  // However the bytes arrive, the oversize line is reported exactly once.
  expect_every_split(bytes, kMax, {"too_large", R"(M:{"id":2})"});
}

TEST(FramingNdjson, UnterminatedOversizeLineIsReportedBeforeItEndsAndNotBuffered) {
  constexpr std::size_t kMax = 64;
  FrameDecoder d(kMax);
  d.feed("{\"prompt\":\"" + std::string(100, 'x'));
  const auto first = drain(d);
  ASSERT_EQ(describe(first), (std::vector<std::string>{"too_large"}));
  EXPECT_FALSE(first[0].fatal);
  // The rest of the endless line keeps arriving: no more frames, and nothing piles up.
  for (int i = 0; i < 100; ++i) {
    d.feed(std::string(1000, 'y'));
    EXPECT_TRUE(drain(d).empty());
    EXPECT_LE(d.buffered(), kMax);
  }
  d.feed("\"}\n{\"id\":2}\n");
  EXPECT_EQ(describe(drain(d)), as_messages({R"({"id":2})"}));
}

TEST(FramingNdjson, LineOfExactlyTheLimitIsAcceptedWithLfOrCrlfInAnySplit) {
  constexpr std::size_t kMax = 32;
  const std::string exact = "{\"p\":\"" + std::string(kMax - 8, 'a') + "\"}";
  ASSERT_EQ(exact.size(), kMax);
  expect_every_split(exact + "\n" + exact + "\r\n{}\n", kMax, as_messages({exact, exact, "{}"}));
  const std::string over = exact + " ";
  expect_every_split(over + "\r\n{}\n", kMax, {"too_large", "M:{}"});
}

// Found by fuzz/framing_fuzz.cpp: a blank line longer than the limit was skipped when its
// newline arrived in the same read, but reported too large when it arrived in pieces. The
// decoder cannot know a line is blank before its end, so it is too large either way.
TEST(FramingNdjson, BlankLineOverTheLimitIsTooLargeInAnySplit) {
  constexpr std::size_t kMax = 32;
  const std::string blank_line = std::string(kMax + 1, ' ');
  expect_every_split("{}\n" + blank_line + "\n{\"id\":2}\n", kMax,
                     {"M:{}", "too_large", R"(M:{"id":2})"});
  // Up to the limit a blank line is still skipped, whatever the split.
  expect_every_split("{}\n" + std::string(kMax, '\t') + "\r\n{\"id\":2}\n", kMax,
                     as_messages({"{}", R"({"id":2})"}));
}

// --- Content-Length framing ----------------------------------------------------------------------

TEST(FramingContentLength, LengthCountsBytesNotCharacters) {
  const std::string body = R"({"t":"日本🚀"})";
  ASSERT_EQ(body.size(), 18u);
  FrameDecoder d(kLarge);
  d.feed("Content-Length: 18\r\n\r\n" + body + "Content-Length: 2\r\n\r\n{}");
  EXPECT_EQ(describe(drain(d)), as_messages({body, "{}"}));
}

TEST(FramingContentLength, ContentTypeHeaderIsIgnoredInEitherOrder) {
  const std::string bytes =
      "Content-Length: 8\r\nContent-Type: "
      "application/vscode-jsonrpc; charset=utf-8\r\n\r\n"
      "{\"id\":1}"
      "Content-Type: application/vscode-jsonrpc; "
      "charset=utf-8\r\nContent-Length: 8\r\n\r\n"
      "{\"id\":2}";
  expect_every_split(bytes, kLarge, as_messages({R"({"id":1})", R"({"id":2})"}));
}

TEST(FramingContentLength, HeaderNameIsCaseInsensitive) {
  for (std::string_view name :
       {"content-length", "CONTENT-LENGTH", "Content-length", "cOnTeNt-LeNgTh"}) {
    FrameDecoder d(kLarge);
    d.feed(std::string(name) + ": 2\r\n\r\n{}" + std::string(name) + ":5\r\n\r\n[1,2]");
    EXPECT_EQ(describe(drain(d)), as_messages({"{}", "[1,2]"})) << name;
    EXPECT_EQ(d.framing(), Framing::content_length) << name;
  }
}

TEST(FramingContentLength, WhitespaceAroundHeaderValueIsAllowed) {
  FrameDecoder d(kLarge);
  d.feed("Content-Length:   2 \t\r\n\r\n{}");
  EXPECT_EQ(describe(drain(d)), as_messages({"{}"}));
}

TEST(FramingContentLength, LeadingWhitespaceAndBlankLinesBetweenMessagesAreSkipped) {
  const std::string bytes =
      "\r\n  \n\tContent-Length: 2\r\n\r\n{}\r\n"
      "Content-Length: 8\r\n\r\n{\"id\":2}\r\n\r\n";
  expect_every_split(bytes, kLarge, as_messages({"{}", R"({"id":2})"}));
}

TEST(FramingContentLength, OversizeBodyIsTooLargeAndNextMessageDecodes) {
  constexpr std::size_t kMax = 64;
  const std::string big(100, 'x');
  const std::string bytes =
      "Content-Length: 100\r\n\r\n" + big + "Content-Length: 8\r\n\r\n{\"id\":2}";
  const auto frames = decode_whole(bytes, kMax);
  ASSERT_EQ(describe(frames), (std::vector<std::string>{"too_large", R"(M:{"id":2})"}));
  EXPECT_FALSE(frames[0].fatal);
  expect_every_split(bytes, kMax, {"too_large", R"(M:{"id":2})"});
}

TEST(FramingContentLength, OversizeIsReportedFromTheHeaderAndSkippedBodyMayArriveInPieces) {
  constexpr std::size_t kMax = 64;
  FrameDecoder d(kMax);
  d.feed("Content-Length: 10000\r\n\r\n");
  EXPECT_EQ(describe(drain(d)), (std::vector<std::string>{"too_large"}))
      << "the declared length is enough to reject the message before its body "
         "arrives";
  // The body looks like headers and JSON; none of it may be taken for a frame.
  std::string skipped_body = "Content-Length: 2\r\n\r\n{}";
  skipped_body += std::string(10000 - skipped_body.size() - 2, 'z') + "\r\n";
  ASSERT_EQ(skipped_body.size(), 10000u);
  for (std::size_t at = 0; at < skipped_body.size(); at += 333) {
    d.feed(std::string_view(skipped_body).substr(at, 333));
    EXPECT_TRUE(drain(d).empty()) << "at byte " << at;
    EXPECT_LE(d.buffered(), kMax);
  }
  d.feed("Content-Length: 8\r\n\r\n{\"id\":2}");
  EXPECT_EQ(describe(drain(d)), as_messages({R"({"id":2})"}));
}

TEST(FramingContentLength, BodyOfExactlyTheLimitIsAccepted) {
  constexpr std::size_t kMax = 16;
  const std::string exact(kMax, 'a');
  expect_every_split("Content-Length: 16\r\n\r\n" + exact + "Content-Length: 17\r\n\r\n" + exact +
                         "b" + "Content-Length: 2\r\n\r\n{}",
                     kMax, {"M:" + exact, "too_large", "M:{}"});
}

TEST(FramingContentLength, ZeroLengthBodyIsAnEmptyMessage) {
  FrameDecoder d(kLarge);
  d.feed("Content-Length: 0\r\n\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(describe(drain(d)), as_messages({"", "{}"}));
}

// --- fatal header errors -------------------------------------------------------------------------

void expect_fatal_bad_header(const std::string& bytes, std::string_view why) {
  SCOPED_TRACE(why);
  FrameDecoder d(kLarge);
  d.feed(bytes);
  const auto f = d.next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, Kind::bad_header);
  EXPECT_TRUE(f->fatal);
  EXPECT_FALSE(f->detail.empty());
  EXPECT_FALSE(d.next().has_value()) << "a failed decoder produces nothing more";
}

TEST(FramingContentLength, MissingContentLengthIsFatal) {
  expect_fatal_bad_header("Content-Type: application/json\r\n\r\n{}", "no Content-Length");
  expect_fatal_bad_header("Content-Type: application/json\r\nX-Other: 1\r\n\r\n{}",
                          "two headers, neither Content-Length");
}

TEST(FramingContentLength, NonNumericContentLengthIsFatal) {
  for (std::string_view value :
       {"abc", "12x", "x12", "-1", "+5", "1.5", "", "0x10", " ", "99999999999999999999999999"}) {
    expect_fatal_bad_header("Content-Length: " + std::string(value) + "\r\n\r\n{}",
                            std::string("value '") + std::string(value) + "'");
  }
}

// Issue 15 item 12: two Content-Length headers are refused, not last-wins (or first-wins): a
// proxy in front that picked the other one would see a different message boundary. Equal
// values are refused too; the rule is one header, not one value.
TEST(FramingContentLength, DuplicateContentLengthIsRefusedAsInvalidRequest) {
  for (std::string_view headers :
       {"Content-Length: 2\r\nContent-Length: 11\r\n", "Content-Length: 2\r\ncontent-length: 2\r\n",
        "Content-Length: 11\r\nContent-Type: application/json\r\nCONTENT-LENGTH: 2\r\n"}) {
    SCOPED_TRACE(std::string(headers));
    FrameDecoder d(kLarge);
    d.feed(std::string(headers) + "\r\n{}{\"x\":123}\n");
    const auto f = d.next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->kind, Kind::invalid_header);
    EXPECT_TRUE(f->fatal);
    EXPECT_NE(f->detail.find("duplicate Content-Length"), std::string::npos);
    EXPECT_FALSE(d.next().has_value()) << "a failed decoder produces nothing more";
  }
}

TEST(FramingContentLength, HeaderLineWithoutColonIsFatal) {
  expect_fatal_bad_header("Content-Length 2\r\n\r\n{}", "first line without colon");
  expect_fatal_bad_header("Content-Length: 2\r\nGarbage\r\n\r\n{}", "second line without colon");
}

TEST(FramingContentLength, BadHeaderAfterAGoodMessageIsFatal) {
  FrameDecoder d(kLarge);
  d.feed(
      "Content-Length: 2\r\n\r\n{}Content-Lenth: 2\r\n\r\n{}Content-Length: "
      "2\r\n\r\n{}");
  EXPECT_EQ(describe(drain(d)), (std::vector<std::string>{"M:{}", "bad_header!"}));
}

TEST(FramingContentLength, HeaderBlockOverLimitIsFatalEvenBeforeItEnds) {
  const std::size_t limit = FrameDecoder::kMaxHeaderBytes;
  ASSERT_EQ(limit, 8192u);
  // Unterminated: the decoder must not wait forever for "\r\n\r\n".
  expect_fatal_bad_header("Content-Length: 2\r\nX-Pad: " + std::string(limit, 'a'),
                          "unterminated long header block");
  // Terminated in the same feed.
  expect_fatal_bad_header("Content-Length: 2\r\nX-Pad: " + std::string(limit, 'a') + "\r\n\r\n{}",
                          "complete long header block");
}

TEST(FramingContentLength, HeaderBlockOfExactlyTheLimitIsAcceptedInAnySplit) {
  const std::size_t limit = FrameDecoder::kMaxHeaderBytes;
  const std::string prefix = "Content-Length: 2\r\nX-Pad: ";
  const std::string header = prefix + std::string(limit - prefix.size(), 'a');
  ASSERT_EQ(header.size(), limit);
  const std::string ok = header + "\r\n\r\n{}";
  expect_every_split(ok, kLarge, {"M:{}"});
  // One byte more is over the limit, however it arrives.
  const std::string over = header + "a\r\n\r\n{}";
  expect_every_split(over, kLarge, {"bad_header!"});
}

// --- encoding ------------------------------------------------------------------------------------

TEST(FramingEncode, NdjsonAppendsOneNewline) {
  EXPECT_EQ(encode_frame(Framing::ndjson, R"({"id":1})"), "{\"id\":1}\n");
  EXPECT_EQ(encode_frame(Framing::unknown, R"({"id":1})"), "{\"id\":1}\n")
      << "a connection whose framing is not known yet is answered in NDJSON";
}

TEST(FramingEncode, ContentLengthCountsBytes) {
  EXPECT_EQ(encode_frame(Framing::content_length, "{}"), "Content-Length: 2\r\n\r\n{}");
  EXPECT_EQ(encode_frame(Framing::content_length, "\"é\""), "Content-Length: 4\r\n\r\n\"é\"");
}

TEST(FramingEncode, AppendFrameAppendsToExistingOutput) {
  std::string out = "Content-Length: 2\r\n\r\n{}";
  append_frame(out, Framing::content_length, "[1]");
  EXPECT_EQ(out, "Content-Length: 2\r\n\r\n{}Content-Length: 3\r\n\r\n[1]");
  std::string nd = "{}\n";
  append_frame(nd, Framing::ndjson, "[1]");
  EXPECT_EQ(nd, "{}\n[1]\n");
}

TEST(FramingEncode, EncodedFramesRoundTripThroughTheDecoderForBothFramings) {
  for (Framing framing : {Framing::ndjson, Framing::content_length}) {
    std::string bytes;
    for (const auto& m : sample_messages()) append_frame(bytes, framing, m);
    SCOPED_TRACE(framing == Framing::ndjson ? "ndjson" : "content_length");
    expect_every_split(bytes, kLarge, as_messages(sample_messages()));
    FrameDecoder d(kLarge);
    d.feed(bytes);
    drain(d);
    EXPECT_EQ(d.framing(), framing);
  }
}

}  // namespace
}  // namespace drover::proto
