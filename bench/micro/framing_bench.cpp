// FrameDecoder and encode_frame on a typical generate request, in both framings. "per message"
// feeds one framed request and pulls one frame (a client sending one request per read);
// "64 per feed" feeds 64 back-to-back frames in one buffer and drains them (a pipelining client
// whose requests arrive in one read), so the difference is the per-feed overhead.
#include <benchmark/benchmark.h>

#include <string>

#include "bench/micro/sample_messages.hpp"
#include "proto/framing.hpp"

namespace drover::bench {
namespace {

using proto::Framing;

constexpr std::size_t kMaxMessageBytes =
    std::size_t{8} * 1024 * 1024;  // server.max_message_bytes default

std::string repeated_frames(Framing framing, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) proto::append_frame(out, framing, kGenerateRequest);
  return out;
}

void decode(benchmark::State& state, Framing framing) {
  const int per_feed = static_cast<int>(state.range(0));
  const std::string bytes = repeated_frames(framing, per_feed);
  proto::FrameDecoder decoder(kMaxMessageBytes);
  for (auto _ : state) {
    decoder.feed(bytes);
    for (int i = 0; i < per_feed; ++i) {
      auto frame = decoder.next();
      if (!frame || frame->kind != proto::Frame::Kind::message) {
        state.SkipWithError("decoder did not return the message");
        return;
      }
      benchmark::DoNotOptimize(frame->body.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * per_feed);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
  state.SetLabel(std::to_string(bytes.size() / static_cast<std::size_t>(per_feed)) + " B/frame");
}

void BM_FrameDecoder_Ndjson(benchmark::State& state) { decode(state, Framing::ndjson); }
void BM_FrameDecoder_ContentLength(benchmark::State& state) {
  decode(state, Framing::content_length);
}
BENCHMARK(BM_FrameDecoder_Ndjson)->ArgName("per_feed")->Arg(1)->Arg(64);
BENCHMARK(BM_FrameDecoder_ContentLength)->ArgName("per_feed")->Arg(1)->Arg(64);

void encode(benchmark::State& state, Framing framing) {
  std::size_t frame_bytes = 0;
  for (auto _ : state) {
    std::string frame = proto::encode_frame(framing, kGenerateRequest);
    frame_bytes = frame.size();
    benchmark::DoNotOptimize(frame.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame_bytes));
}

void BM_EncodeFrame_Ndjson(benchmark::State& state) { encode(state, Framing::ndjson); }
void BM_EncodeFrame_ContentLength(benchmark::State& state) {
  encode(state, Framing::content_length);
}
BENCHMARK(BM_EncodeFrame_Ndjson);
BENCHMARK(BM_EncodeFrame_ContentLength);

}  // namespace
}  // namespace drover::bench
