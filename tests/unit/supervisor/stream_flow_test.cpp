// StreamFlow: the per-connection watermark, coalescing and hard-limit rules, driven with an
// injected clock (time points passed in) and a simulated count of unsent socket bytes.
#include "supervisor/frontend/stream_flow.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;
using Frames = std::vector<StreamFlow::Frame>;
using T = StreamFlow::Clock::time_point;

const T t0 = T{} + 1h;
int a_key = 0, b_key = 0;
const StreamFlow::StreamKey A = &a_key;
const StreamFlow::StreamKey B = &b_key;

StreamFlowLimits limits() {
  StreamFlowLimits l;
  l.high_watermark_bytes = 1000;
  l.low_watermark_bytes = 200;
  l.hard_limit_bytes = 100'000;
  l.coalesce_max_bytes = 64;
  l.coalesce_interval = 20ms;
  return l;
}

std::string texts(const Frames& f) {
  std::string s;
  for (const auto& x : f) s += x.text;
  return s;
}

TEST(StreamFlow, BelowTheHighWatermarkEveryChunkIsItsOwnFrame) {
  StreamFlow flow(limits());
  Frames out;
  for (const char* t : {"a", "b", "c"}) {
    EXPECT_EQ(flow.on_chunk(A, "id-a", t, true, 999, t0, out), StreamFlow::Verdict::accepted);
  }
  ASSERT_EQ(out.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i].index, i);
    EXPECT_EQ(out[i].chunks, 1u);
    EXPECT_EQ(out[i].client_id, "id-a");
  }
  EXPECT_FALSE(flow.coalescing());
  EXPECT_FALSE(flow.active());
}

TEST(StreamFlow, AboveTheHighWatermarkChunksLeaveAsOneFramePerInterval) {
  StreamFlow flow(limits());
  Frames out;
  // 1000 unsent bytes: the high watermark. The stream's first frame is not delayed.
  flow.on_chunk(A, "1", "t0", true, 1000, t0, out);
  EXPECT_TRUE(flow.coalescing());
  ASSERT_EQ(out.size(), 1u);
  out.clear();
  for (int i = 1; i < 10; ++i) flow.on_chunk(A, "1", " t" + std::to_string(i), true, 1000, t0 + 2ms * i, out);
  EXPECT_TRUE(out.empty()) << "held within the interval";
  EXPECT_EQ(flow.held_bytes(), 27u);
  flow.on_tick(1000, t0 + 19ms, out);
  EXPECT_TRUE(out.empty());
  flow.on_tick(1000, t0 + 20ms, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].text, " t1 t2 t3 t4 t5 t6 t7 t8 t9");
  EXPECT_EQ(out[0].chunks, 9u);
  EXPECT_EQ(out[0].index, 1u);
  EXPECT_EQ(flow.held_bytes(), 0u);
  EXPECT_EQ(flow.counters().merged_frames, 1u);
  EXPECT_EQ(flow.counters().merged_chunks, 9u);
  // A chunk arriving a full interval after the last frame leaves at once.
  out.clear();
  flow.on_chunk(A, "1", "x", true, 1000, t0 + 40ms, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].index, 2u);
}

TEST(StreamFlow, ACoalescedFrameHoldsWholeChunksUpToTheMaximum) {
  StreamFlow flow(limits());  // coalesce_max_bytes 64
  Frames out;
  flow.on_chunk(A, "1", "first", true, 5000, t0, out);
  out.clear();
  const std::string c30(30, 'x'), big(100, 'y');
  flow.on_chunk(A, "1", c30, true, 5000, t0 + 1ms, out);
  flow.on_chunk(A, "1", c30, true, 5000, t0 + 2ms, out);
  flow.on_chunk(A, "1", c30, true, 5000, t0 + 3ms, out);  // 90 > 64: not in the same frame
  flow.on_chunk(A, "1", big, true, 5000, t0 + 4ms, out);
  flow.on_tick(5000, t0 + 20ms, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].text.size(), 60u);
  EXPECT_EQ(out[0].chunks, 2u);
  flow.on_tick(5000, t0 + 39ms, out);
  EXPECT_EQ(out.size(), 1u) << "one frame per interval";
  flow.on_tick(5000, t0 + 40ms, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].text, c30) << "the next chunk does not fit with it";
  flow.on_tick(5000, t0 + 60ms, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[2].text, big) << "a chunk larger than the maximum leaves alone, unsplit";
}

TEST(StreamFlow, FallingToTheLowWatermarkFlushesWhatIsHeldAndStopsCoalescing) {
  StreamFlow flow(limits());
  Frames out;
  flow.on_chunk(A, "1", "a", true, 1500, t0, out);
  flow.on_chunk(A, "1", "b", true, 1500, t0 + 1ms, out);
  flow.on_chunk(B, "2", "c", true, 1500, t0 + 1ms, out);
  flow.on_chunk(B, "2", "d", true, 1500, t0 + 2ms, out);
  out.clear();
  // Between the watermarks: still coalescing (hysteresis).
  flow.on_tick(500, t0 + 5ms, out);
  EXPECT_TRUE(flow.coalescing());
  EXPECT_TRUE(out.empty());
  // 200 unsent + 2 held: still above the low watermark.
  flow.on_tick(200, t0 + 6ms, out);
  EXPECT_TRUE(flow.coalescing());
  flow.on_tick(198, t0 + 6ms, out);
  EXPECT_FALSE(flow.coalescing());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].text + out[1].text == "bd" || out[0].text + out[1].text == "db", true);
  for (const auto& f : out) EXPECT_EQ(f.index, 1u);
  EXPECT_FALSE(flow.active());
  out.clear();
  // Direct again, and still below high it stays direct.
  flow.on_chunk(A, "1", "e", true, 999, t0 + 7ms, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].index, 2u);
  EXPECT_FALSE(flow.coalescing());
  EXPECT_EQ(flow.counters().coalescing_episodes, 1u);
}

TEST(StreamFlow, PastTheHardLimitTheChunkIsRefusedAndOtherStreamsGoOn) {
  StreamFlowLimits l = limits();
  l.hard_limit_bytes = 4096;
  StreamFlow flow(l);
  Frames out;
  flow.on_chunk(A, "1", "held", true, 3000, t0, out);
  flow.on_chunk(A, "1", "more", true, 3000, t0 + 1ms, out);
  EXPECT_EQ(flow.held_bytes(), 4u);
  // 3990 unsent + 4 held + 10 + frame overhead > 4096.
  EXPECT_EQ(flow.on_chunk(A, "1", "0123456789", true, 3990, t0 + 2ms, out),
            StreamFlow::Verdict::slow_consumer);
  EXPECT_EQ(flow.held_bytes(), 0u) << "the failed stream's held text is dropped";
  EXPECT_EQ(flow.counters().refused, 1u);
  out.clear();
  EXPECT_EQ(flow.on_chunk(B, "2", "ok", true, 100, t0 + 3ms, out), StreamFlow::Verdict::accepted);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].client_id, "2");
}

TEST(StreamFlow, AStreamOutsideTheRolloutIsNeverHeld) {
  StreamFlow flow(limits());
  Frames out;
  flow.on_chunk(A, "1", "a", false, 5000, t0, out);
  flow.on_chunk(A, "1", "b", false, 5000, t0 + 1ms, out);
  EXPECT_TRUE(flow.coalescing());
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(flow.held_bytes(), 0u);
}

TEST(StreamFlow, EndAndFlushEmitEverythingHeldSoTheReplyFollowsTheChunks) {
  StreamFlow flow(limits());
  Frames out;
  for (int i = 0; i < 5; ++i) flow.on_chunk(A, "1", std::string(20, 'a' + i), true, 5000, t0 + 1ms * i, out);
  for (int i = 0; i < 3; ++i) flow.on_chunk(B, "2", "b", true, 5000, t0 + 1ms * i, out);
  out.clear();
  flow.end_stream(A, out);
  EXPECT_EQ(texts(out), std::string(20, 'b') + std::string(20, 'c') + std::string(20, 'd') + std::string(20, 'e'));
  EXPECT_EQ(out.size(), 2u) << "flushed in frames of at most coalesce_max_bytes";
  EXPECT_EQ(flow.streams(), 1u);
  out.clear();
  flow.flush_all(out);
  EXPECT_EQ(texts(out), "bb");
  EXPECT_EQ(flow.held_bytes(), 0u);
}

TEST(StreamFlow, TheClientSeesContiguousIndicesAndExactlyTheWorkersText) {
  StreamFlow flow(limits());
  Frames out;
  std::string sent;
  // Unsent bytes rise past high, hover, drop below low, rise again: every mode is crossed.
  const std::vector<std::size_t> unsent = {0, 500, 1200, 1500, 800, 600, 150, 0, 2000, 1800, 100};
  int n = 0;
  for (std::size_t round = 0; round < unsent.size(); ++round) {
    for (int i = 0; i < 7; ++i, ++n) {
      const std::string t = " w" + std::to_string(n);
      sent += t;
      const auto now = t0 + 3ms * n;
      ASSERT_EQ(flow.on_chunk(A, "1", t, true, unsent[round], now, out), StreamFlow::Verdict::accepted);
      flow.on_tick(unsent[round], now, out);
    }
  }
  flow.end_stream(A, out);
  EXPECT_EQ(texts(out), sent);
  std::size_t chunks = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].index, i);
    chunks += out[i].chunks;
  }
  EXPECT_EQ(chunks, static_cast<std::size_t>(n));
  EXPECT_LT(out.size(), static_cast<std::size_t>(n)) << "some frames were merged";
}

TEST(StreamFlow, WatermarksAreCappedBelowASmallHardLimit) {
  StreamFlowLimits l;  // defaults: high 256 KiB, low 64 KiB
  l.hard_limit_bytes = 4096;
  const auto e = l.effective();
  EXPECT_EQ(e.high_watermark_bytes, 2048u);
  EXPECT_EQ(e.low_watermark_bytes, 1024u);
  l.hard_limit_bytes = 16 * 1024 * 1024;
  EXPECT_EQ(l.effective().high_watermark_bytes, 256u * 1024);
  EXPECT_EQ(l.effective().low_watermark_bytes, 64u * 1024);
}

TEST(StreamFlow, AMergedFrameSaysHowManyChunksItCarries) {
  const auto single = proto::json::parse(StreamFlow::Frame{"7", 3, "x", 1}.notification());
  EXPECT_EQ(single["method"], "generate.chunk");
  EXPECT_EQ(single["params"], (proto::json{{"id", 7}, {"index", 3}, {"text", "x"}}));
  const auto merged = proto::json::parse(StreamFlow::Frame{R"("r")", 4, "xy", 2}.notification());
  EXPECT_EQ(merged["params"]["coalesced"], 2);
}

}  // namespace
}  // namespace drover::supervisor
