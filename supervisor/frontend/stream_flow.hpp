// StreamFlow: flow control of one client connection's generate.chunk notifications — the
// decision, for every chunk a worker produces, between writing it now as its own frame,
// holding it to merge with the next ones (coalescing), and refusing it because the client has
// stopped reading (-32010). Pure logic: the caller passes the clock and how many bytes its
// socket writer still holds; owned by one ClientSession; supervisor thread only.
//
// Watermarks, on the connection's buffered bytes (unsent bytes queued for the socket plus the
// chunk text held here):
//   - below high_watermark a chunk is written at once as its own frame;
//   - at or above high_watermark the connection coalesces: each stream's chunks are held and
//     leave as one frame per coalesce_interval (whole chunks, at most coalesce_max_bytes of
//     text per frame; a single larger chunk leaves alone), until buffered bytes fall to
//     low_watermark, when everything held is written and chunks flow one by one again;
//   - a chunk that would take buffered bytes past the hard limit (server.write_buffer_bytes)
//     is refused: its stream is failed with -32010 (and cancelled at its worker by the
//     caller); what it held is dropped, the other streams go on.
// Example (high 256 KiB, low 64 KiB, 20 ms): a client stops reading while 5-byte tokens arrive
// at 1000/s. Each ~80-byte frame queues until 256 KiB are buffered (~3,300 frames); from then
// on the stream leaves one frame of ~100 bytes of text per 20 ms (20 tokens), ~8x fewer bytes
// per token, so the 16 MiB hard limit is reached ~8x later. If the client resumes and drains
// the socket to 64 KiB, the held text is written and frames are per chunk again.
//
// Frames of one stream carry contiguous indices 0, 1, 2... whatever was merged (a client that
// checks index == previous + 1 keeps working); a merged frame also says how many worker chunks
// it holds ("coalesced": n). The concatenated text is exactly the worker's.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/jsonrpc.hpp"

namespace drover::supervisor {

struct StreamFlowLimits {
  std::size_t high_watermark_bytes = 256 * 1024;
  std::size_t low_watermark_bytes = 64 * 1024;
  std::size_t hard_limit_bytes = 16 * 1024 * 1024;
  std::size_t coalesce_max_bytes = 64 * 1024;
  std::chrono::milliseconds coalesce_interval{20};

  // The watermarks as applied: high at most half the hard limit (so coalescing starts well
  // before a stream is refused, also with a small write_buffer_bytes), low below high.
  StreamFlowLimits effective() const;
};

class StreamFlow {
 public:
  using Clock = std::chrono::steady_clock;
  using StreamKey = const void*;  // identifies one stream (the session uses its Call)

  // One frame to write: a generate.chunk notification of `client_id`'s stream.
  struct Frame {
    proto::RpcId client_id;
    std::uint64_t index = 0;
    std::string text;
    std::size_t chunks = 1;  // worker chunks merged into it
    std::string notification() const;
  };
  enum class Verdict { accepted, slow_consumer };

  // Running totals, for metrics.
  struct Counters {
    std::uint64_t coalescing_episodes = 0;  // times the high watermark was crossed
    std::uint64_t merged_frames = 0;        // frames that carry more than one chunk
    std::uint64_t merged_chunks = 0;        // chunks carried by those frames
    std::uint64_t refused = 0;              // chunks refused at the hard limit (-32010)
    // Reply backpressure (client_session.hpp), counted here with the rest of the flow.
    std::uint64_t reader_pauses = 0;   // sessions that stopped reading: replies unread
    std::uint64_t backlog_closes = 0;  // sessions closed with replies unread past the limits
  };

  // `totals`: where the counters add up (shared by every connection); null: kept here.
  explicit StreamFlow(const StreamFlowLimits& limits, Counters* totals = nullptr);
  StreamFlow(const StreamFlow&) = delete;
  StreamFlow& operator=(const StreamFlow&) = delete;

  // A worker chunk of `stream`. `coalescible`: the request is in the stream_coalescing
  // rollout (otherwise its chunks are never held). `unsent`: bytes the socket writer holds.
  // Frames to write now are appended to `out`, in order, before anything written later.
  Verdict on_chunk(StreamKey stream, std::string_view client_id, std::string_view text,
                   bool coalescible, std::size_t unsent, Clock::time_point now,
                   std::vector<Frame>& out);
  // Re-evaluates the watermarks and emits the frames that are due. Call every
  // coalesce_interval while active(), and when the writer drains.
  void on_tick(std::size_t unsent, Clock::time_point now, std::vector<Frame>& out);
  // Emits everything held, for every stream (before a reply, which must follow its chunks).
  void flush_all(std::vector<Frame>& out);
  // The stream ended: what it still holds is emitted and its state is forgotten.
  void end_stream(StreamKey stream, std::vector<Frame>& out);

  bool coalescing() const { return coalescing_; }
  // Something needs the clock: text is held, or the connection is coalescing.
  bool active() const { return coalescing_ || held_bytes_ > 0; }
  std::size_t held_bytes() const { return held_bytes_; }
  std::size_t streams() const { return streams_.size(); }

  const Counters& counters() const { return *counters_; }
  const StreamFlowLimits& limits() const { return limits_; }

 private:
  struct Stream {
    proto::RpcId client_id;
    std::uint64_t next_index = 0;
    std::deque<std::string> held;  // whole chunks, so a frame never splits a UTF-8 sequence
    std::size_t held_bytes = 0;
    std::optional<Clock::time_point> last_frame;
  };

  void update_mode(std::size_t unsent, std::vector<Frame>& out);
  // One frame of at most coalesce_max_bytes of the stream's held chunks.
  void emit_one(Stream& s, Clock::time_point now, std::vector<Frame>& out);
  void emit_all(Stream& s, std::vector<Frame>& out);
  void emit(Stream& s, std::string text, std::size_t chunks, std::vector<Frame>& out);

  StreamFlowLimits limits_;
  std::map<StreamKey, Stream> streams_;
  std::size_t held_bytes_ = 0;
  bool coalescing_ = false;
  Counters own_counters_;
  Counters* counters_;
};

}  // namespace drover::supervisor
