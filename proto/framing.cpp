#include "proto/framing.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace drover::proto {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

FrameDecoder::FrameDecoder(std::size_t max_message_bytes) : max_(max_message_bytes) {}

void FrameDecoder::feed(std::string_view bytes) { buf_.append(bytes.data(), bytes.size()); }

void FrameDecoder::compact() {
  // Drop consumed bytes once they dominate the buffer, so long-lived connections stay small
  // without moving memory on every frame.
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ > 64 * 1024 || pos_ * 2 > buf_.size())) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
}

std::optional<Frame> FrameDecoder::next() {
  if (failed_) return std::nullopt;
  if (framing_ == Framing::unknown) {
    while (pos_ < buf_.size() && is_blank(buf_[pos_])) ++pos_;
    if (pos_ == buf_.size()) {
      compact();
      return std::nullopt;
    }
    const char c = buf_[pos_];
    framing_ = (c == 'C' || c == 'c') ? Framing::content_length : Framing::ndjson;
  }
  auto frame = framing_ == Framing::ndjson ? next_ndjson() : next_content_length();
  compact();
  return frame;
}

std::optional<Frame> FrameDecoder::next_ndjson() {
  for (;;) {
    const char* begin = buf_.data() + pos_;
    const std::size_t avail = buf_.size() - pos_;
    const void* nl = std::memchr(begin + scanned_, '\n', avail - scanned_);
    if (discarding_line_) {
      if (!nl) {
        pos_ = buf_.size();
        scanned_ = 0;
        return std::nullopt;
      }
      pos_ += static_cast<const char*>(nl) - begin + 1;
      scanned_ = 0;
      discarding_line_ = false;
      continue;
    }
    if (!nl) {
      scanned_ = avail;
      // A trailing '\r' may open the line's CRLF, which is not part of the message; counting
      // it would reject a line of exactly max_ bytes only when the CR and LF arrive apart.
      const std::size_t line_bytes = avail > 0 && begin[avail - 1] == '\r' ? avail - 1 : avail;
      if (line_bytes > max_) {
        // The line is already too long: report it now and drop the rest as it arrives, so an
        // endless line cannot grow the buffer.
        discarding_line_ = true;
        Frame f{Frame::Kind::too_large, {}, false, fmt::format("message exceeds {} bytes", max_),
                std::string(begin, std::min(avail, Frame::kHeadBytes))};
        pos_ = buf_.size();
        scanned_ = 0;
        return f;
      }
      return std::nullopt;
    }
    std::size_t len = static_cast<const char*>(nl) - begin;
    pos_ += len + 1;
    scanned_ = 0;
    if (len > 0 && begin[len - 1] == '\r') --len;
    std::string_view line(begin, len);
    // The size check comes first, as on the path above: a blank line longer than max_ is too
    // large too, or the verdict would depend on whether its newline arrived in the same read.
    if (line.size() > max_) {
      return Frame{Frame::Kind::too_large, {}, false, fmt::format("message exceeds {} bytes", max_),
                   std::string(line.substr(0, Frame::kHeadBytes))};
    }
    if (trim(line).empty()) continue;  // blank lines between messages are allowed
    return Frame{Frame::Kind::message, std::string(line), false, {}};
  }
}

std::optional<Frame> FrameDecoder::next_content_length() {
  for (;;) {
    if (skip_ > 0) {
      const std::size_t n = std::min(skip_, buf_.size() - pos_);
      pos_ += n;
      skip_ -= n;
      if (skip_ > 0) return std::nullopt;
    }
    // Tolerate blank lines between messages (some clients send a trailing CRLF).
    while (pos_ < buf_.size() && (buf_[pos_] == '\r' || buf_[pos_] == '\n')) ++pos_;
    const std::string_view rest(buf_.data() + pos_, buf_.size() - pos_);
    const auto end = rest.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      // Up to 3 trailing bytes may be the start of the "\r\n\r\n" terminator, so only more
      // than that proves the block too long (otherwise the verdict would depend on the split).
      if (rest.size() > kMaxHeaderBytes + 3) {
        failed_ = true;
        return Frame{Frame::Kind::bad_header, {}, true, "header block too long"};
      }
      return std::nullopt;
    }
    if (end > kMaxHeaderBytes) {
      failed_ = true;
      return Frame{Frame::Kind::bad_header, {}, true, "header block too long"};
    }
    std::optional<std::size_t> length;
    std::string_view headers = rest.substr(0, end);
    while (!headers.empty()) {
      const auto eol = headers.find("\r\n");
      const std::string_view line = headers.substr(0, eol);
      headers = eol == std::string_view::npos ? std::string_view{} : headers.substr(eol + 2);
      const auto colon = line.find(':');
      if (colon == std::string_view::npos) {
        failed_ = true;
        return Frame{Frame::Kind::bad_header, {}, true,
                     "header line without ':' in Content-Length framing"};
      }
      const std::string_view name = trim(line.substr(0, colon));
      const std::string_view value = trim(line.substr(colon + 1));
      if (iequals(name, "Content-Length")) {
        std::size_t n = 0;
        const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc() || p != value.data() + value.size() || value.empty()) {
          failed_ = true;
          return Frame{Frame::Kind::bad_header, {}, true, "invalid Content-Length value"};
        }
        if (length) {
          failed_ = true;
          return Frame{Frame::Kind::invalid_header, {}, true, "duplicate Content-Length header"};
        }
        length = n;
      }
      // Other headers (Content-Type) are allowed and ignored, as in LSP.
    }
    if (!length) {
      failed_ = true;
      return Frame{Frame::Kind::bad_header, {}, true, "missing Content-Length header"};
    }
    const std::size_t body_start = pos_ + end + 4;
    if (*length > max_) {
      // The length is known, so the body can be skipped and the stream resynchronised.
      pos_ = body_start;
      skip_ = *length;
      return Frame{Frame::Kind::too_large, {}, false,
                   fmt::format("message exceeds {} bytes", max_)};
    }
    if (buf_.size() - body_start < *length) return std::nullopt;
    Frame f{Frame::Kind::message, buf_.substr(body_start, *length), false, {}};
    pos_ = body_start + *length;
    return f;
  }
}

void append_frame(std::string& out, Framing framing, std::string_view json) {
  if (framing == Framing::content_length) {
    fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n\r\n", json.size());
    out.append(json);
  } else {
    out.append(json);
    out.push_back('\n');
  }
}

std::string encode_frame(Framing framing, std::string_view json) {
  std::string out;
  out.reserve(json.size() + 32);
  append_frame(out, framing, json);
  return out;
}

}  // namespace drover::proto
