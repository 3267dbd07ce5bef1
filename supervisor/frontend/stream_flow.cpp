#include "supervisor/frontend/stream_flow.hpp"

#include <algorithm>

#include "proto/client_params.hpp"

namespace drover::supervisor {
namespace {

// What a frame adds around its text ({"jsonrpc":"2.0","method":"generate.chunk","params":
// {"id":...,"index":...,"text":""}} plus framing): counted against the hard limit for a chunk
// about to become a frame, so the limit holds in bytes written, not only in text.
constexpr std::size_t kFrameOverhead = 96;

}  // namespace

StreamFlowLimits StreamFlowLimits::effective() const {
  StreamFlowLimits e = *this;
  e.high_watermark_bytes = std::max<std::size_t>(1, std::min(high_watermark_bytes, hard_limit_bytes / 2));
  if (e.low_watermark_bytes >= e.high_watermark_bytes) e.low_watermark_bytes = e.high_watermark_bytes / 2;
  return e;
}

std::string StreamFlow::Frame::notification() const {
  std::string out;
  out.reserve(kFrameOverhead + client_id.size() + text.size());
  proto::encode_chunk_notification(out, client_id, index, text, chunks > 1 ? chunks : 0);
  return out;
}

StreamFlow::StreamFlow(const StreamFlowLimits& limits, Counters* totals)
    : limits_(limits.effective()), counters_(totals ? totals : &own_counters_) {}

StreamFlow::Verdict StreamFlow::on_chunk(StreamKey key, std::string_view client_id,
                                         std::string_view text, bool coalescible,
                                         std::size_t unsent, Clock::time_point now,
                                         std::vector<Frame>& out) {
  update_mode(unsent, out);
  auto [it, fresh] = streams_.try_emplace(key);
  Stream& s = it->second;
  if (fresh) s.client_id = client_id;
  // Everything held leaves as frames eventually, so it counts as buffered already.
  if (unsent + held_bytes_ + text.size() + kFrameOverhead > limits_.hard_limit_bytes) {
    ++counters_->refused;
    held_bytes_ -= s.held_bytes;
    streams_.erase(it);
    return Verdict::slow_consumer;
  }
  if (!coalescing_ || !coalescible) {
    // Held text of this stream (it was coalescing a moment ago) goes first.
    emit_all(s, out);
    emit(s, std::string(text), 1, out);
    s.last_frame = now;
    return Verdict::accepted;
  }
  s.held.emplace_back(text);
  s.held_bytes += text.size();
  held_bytes_ += text.size();
  if (!s.last_frame || now - *s.last_frame >= limits_.coalesce_interval) emit_one(s, now, out);
  return Verdict::accepted;
}

void StreamFlow::on_tick(std::size_t unsent, Clock::time_point now, std::vector<Frame>& out) {
  update_mode(unsent, out);
  if (!coalescing_ || held_bytes_ == 0) return;
  for (auto& [key, s] : streams_) {
    if (s.held_bytes > 0 && (!s.last_frame || now - *s.last_frame >= limits_.coalesce_interval)) {
      emit_one(s, now, out);
    }
  }
}

void StreamFlow::flush_all(std::vector<Frame>& out) {
  if (held_bytes_ == 0) return;
  for (auto& [key, s] : streams_) emit_all(s, out);
}

void StreamFlow::end_stream(StreamKey key, std::vector<Frame>& out) {
  const auto it = streams_.find(key);
  if (it == streams_.end()) return;
  emit_all(it->second, out);
  streams_.erase(it);
}

void StreamFlow::update_mode(std::size_t unsent, std::vector<Frame>& out) {
  const std::size_t buffered = unsent + held_bytes_;
  if (!coalescing_ && buffered >= limits_.high_watermark_bytes) {
    coalescing_ = true;
    ++counters_->coalescing_episodes;
  } else if (coalescing_ && buffered <= limits_.low_watermark_bytes) {
    // The client caught up: what is held goes out now, chunks flow one by one again.
    coalescing_ = false;
    flush_all(out);
  }
}

void StreamFlow::emit_one(Stream& s, Clock::time_point now, std::vector<Frame>& out) {
  if (s.held.empty()) return;
  std::string text = std::move(s.held.front());
  s.held.pop_front();
  std::size_t chunks = 1;
  while (!s.held.empty() && text.size() + s.held.front().size() <= limits_.coalesce_max_bytes) {
    text += s.held.front();
    s.held.pop_front();
    ++chunks;
  }
  s.held_bytes -= text.size();
  held_bytes_ -= text.size();
  emit(s, std::move(text), chunks, out);
  s.last_frame = now;
}

void StreamFlow::emit_all(Stream& s, std::vector<Frame>& out) {
  while (!s.held.empty()) {
    const auto last = s.last_frame;
    emit_one(s, last.value_or(Clock::time_point{}), out);
    s.last_frame = last;  // a flush is not paced, and does not delay the next paced frame
  }
}

void StreamFlow::emit(Stream& s, std::string text, std::size_t chunks, std::vector<Frame>& out) {
  if (chunks > 1) {
    ++counters_->merged_frames;
    counters_->merged_chunks += chunks;
  }
  out.push_back(Frame{s.client_id, s.next_index++, std::move(text), chunks});
}

}  // namespace drover::supervisor
