// The shared-memory ring (proto/shm_ring.hpp) in a 1 MiB segment.
//  - PushPop: one thread pushes a record and pops it (copying it out), so the figure is the
//    ring's own per-record cost with warm caches and no other core involved.
//  - PushPeekConsume: the same with the zero-copy read.
//  - StagedBatch32: 32 records staged, published with one store, then 32 popped.
//  - CrossThread / CrossProcess: a producer thread (or forked process that opens the segment by
//    name, as a worker does) streams records while the benchmark thread consumes; `spin_us` is
//    how long each side spins before sleeping on its doorbell (0: sleep at once).
//  - RoundTrip_CrossProcess: ping-pong of one 64-byte record through both rings with a forked
//    echo process; per round-trip latency, sleeping (spin 0) or spinning first.
// Records carry `size` bytes of payload (framed: 16 + size rounded up to 16).
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "proto/shm_segment.hpp"

namespace drover::bench {
namespace {

using namespace std::chrono_literals;
using proto::shm::Record;
using proto::shm::RecordKind;
using proto::shm::RingConsumer;
using proto::shm::RingId;
using proto::shm::RingProducer;
using proto::shm::Segment;

constexpr std::size_t kRingBytes = std::size_t{1} << 20;

std::optional<Segment> make_segment(benchmark::State& state) {
  auto seg = Segment::create(kRingBytes, "drover-bench");
  if (!seg) {
    state.SkipWithError(("Segment::create: " + seg.error().message()).c_str());
    return std::nullopt;
  }
  return std::move(*seg);
}

void set_counters(benchmark::State& state, std::size_t size) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

// One segment's request ring with both ends in this thread, and a payload of the benchmark's
// size (state.range(0)); ok() is false (the benchmark skipped) when the segment failed.
struct SameThreadRing {
  explicit SameThreadRing(benchmark::State& state)
      : size(static_cast<std::size_t>(state.range(0))), seg(make_segment(state)), payload(size, 'x') {
    if (seg) {
      producer.emplace(seg->producer(RingId::requests));
      consumer.emplace(seg->consumer(RingId::requests));
    }
  }
  bool ok() const { return seg.has_value(); }

  std::size_t size;
  std::optional<Segment> seg;
  std::string payload;
  std::optional<RingProducer> producer;
  std::optional<RingConsumer> consumer;
};

void BM_ShmRing_PushPop(benchmark::State& state) {
  SameThreadRing ring(state);
  if (!ring.ok()) return;
  Record rec;
  for (auto _ : state) {
    auto pushed = ring.producer->try_push(RecordKind::message, ring.payload);
    auto popped = ring.consumer->try_pop(rec);
    if (!pushed || !*pushed || !popped || !*popped) {
      state.SkipWithError("push or pop failed");
      return;
    }
    benchmark::DoNotOptimize(rec.payload.data());
  }
  set_counters(state, ring.size);
}
BENCHMARK(BM_ShmRing_PushPop)->ArgName("size")->Arg(64)->Arg(512)->Arg(4096);

void BM_ShmRing_PushPeekConsume(benchmark::State& state) {
  SameThreadRing ring(state);
  if (!ring.ok()) return;
  for (auto _ : state) {
    auto pushed = ring.producer->try_push(RecordKind::message, ring.payload);
    auto peeked = ring.consumer->peek();
    if (!pushed || !*pushed || !peeked || !*peeked) {
      state.SkipWithError("push or peek failed");
      return;
    }
    benchmark::DoNotOptimize((*peeked)->payload.data());
    ring.consumer->consume();
  }
  set_counters(state, ring.size);
}
BENCHMARK(BM_ShmRing_PushPeekConsume)->ArgName("size")->Arg(64)->Arg(512)->Arg(4096);

void BM_ShmRing_StagedBatch32(benchmark::State& state) {
  SameThreadRing ring(state);
  if (!ring.ok()) return;
  Record rec;
  for (auto _ : state) {
    for (int i = 0; i < 32; ++i) {
      auto staged = ring.producer->try_stage(RecordKind::message, ring.payload);
      if (!staged || !*staged) {
        state.SkipWithError("stage failed");
        return;
      }
    }
    ring.producer->publish();
    for (int i = 0; i < 32; ++i) {
      auto popped = ring.consumer->try_pop(rec);
      if (!popped || !*popped) {
        state.SkipWithError("pop failed");
        return;
      }
      benchmark::DoNotOptimize(rec.payload.data());
    }
  }
  state.SetItemsProcessed(state.iterations() * 32);
  state.SetBytesProcessed(state.iterations() * 32 * static_cast<std::int64_t>(ring.size));
}
BENCHMARK(BM_ShmRing_StagedBatch32)->ArgName("size")->Arg(64);

// Pushes `count` records, sleeping for space when full. False on any error.
bool produce(RingProducer& producer, std::int64_t count, std::size_t size,
             std::chrono::microseconds spin) {
  const std::string payload(size, 'x');
  for (std::int64_t i = 0; i < count; ++i) {
    for (;;) {
      auto r = producer.try_push(RecordKind::message, payload);
      if (!r) return false;
      if (*r) break;
      auto w = producer.wait_for_space(size, 10s, spin);
      if (!w || !*w) return false;
    }
  }
  return true;
}

// The timed loop: one record consumed (zero-copy) per iteration. On failure it reports the
// error before leaving the loop, as Google Benchmark requires.
bool consume_loop(benchmark::State& state, RingConsumer& consumer, std::chrono::microseconds spin) {
  for (auto _ : state) {
    for (;;) {
      auto r = consumer.peek();
      if (!r) {
        state.SkipWithError("consumer: ring corrupt");
        return false;
      }
      if (*r) {
        benchmark::DoNotOptimize((*r)->payload.data());
        consumer.consume();
        break;
      }
      auto w = consumer.wait(10s, spin);
      if (!w || !*w) {
        state.SkipWithError("consumer: no record within 10 s");
        return false;
      }
    }
  }
  return true;
}

void BM_ShmRing_CrossThread(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::chrono::microseconds spin(state.range(1));
  auto seg = make_segment(state);
  if (!seg) return;
  RingProducer producer = seg->producer(RingId::requests);
  RingConsumer consumer = seg->consumer(RingId::requests);
  bool produced = false;
  std::thread writer([&] { produced = produce(producer, state.max_iterations, size, spin); });
  const bool consumed = consume_loop(state, consumer, spin);
  writer.join();
  if (consumed && !produced) state.SkipWithError("producer failed");
  set_counters(state, size);
}
BENCHMARK(BM_ShmRing_CrossThread)
    ->ArgNames({"size", "spin_us"})
    ->Args({64, 0})
    ->Args({64, 50})
    ->Args({512, 50})
    ->Args({4096, 50})
    ->UseRealTime();

pid_t fork_or_skip(benchmark::State& state) {
  const pid_t pid = ::fork();
  if (pid < 0) state.SkipWithError("fork failed");
  return pid;
}

bool reap_ok(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void BM_ShmRing_CrossProcess(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::chrono::microseconds spin(state.range(1));
  auto seg = make_segment(state);
  if (!seg) return;
  const std::int64_t count = state.max_iterations;
  const pid_t pid = fork_or_skip(state);
  if (pid < 0) return;
  if (pid == 0) {
    auto mine = Segment::open(seg->name());
    if (!mine) ::_exit(10);
    RingProducer producer = mine->producer(RingId::replies);
    ::_exit(produce(producer, count, size, spin) ? 0 : 11);
  }
  RingConsumer consumer = seg->consumer(RingId::replies);
  const bool consumed = consume_loop(state, consumer, spin);
  if (!consumed) ::kill(pid, SIGKILL);
  if (!reap_ok(pid) && consumed) state.SkipWithError("producer process failed");
  set_counters(state, size);
}
BENCHMARK(BM_ShmRing_CrossProcess)
    ->ArgNames({"size", "spin_us"})
    ->Args({64, 0})
    ->Args({64, 50})
    ->Args({4096, 50})
    ->UseRealTime();

void BM_ShmRing_RoundTrip_CrossProcess(benchmark::State& state) {
  const std::chrono::microseconds spin(state.range(0));
  auto seg = make_segment(state);
  if (!seg) return;
  const std::int64_t count = state.max_iterations;
  const pid_t pid = fork_or_skip(state);
  if (pid < 0) return;
  if (pid == 0) {
    auto mine = Segment::open(seg->name());
    if (!mine) ::_exit(10);
    RingConsumer requests = mine->consumer(RingId::requests);
    RingProducer replies = mine->producer(RingId::replies);
    Record rec;
    for (std::int64_t i = 0; i < count;) {
      auto popped = requests.try_pop(rec);
      if (!popped) ::_exit(11);
      if (!*popped) {
        auto w = requests.wait(10s, spin);
        if (!w || !*w) ::_exit(12);
        continue;
      }
      auto pushed = replies.try_push(RecordKind::message, rec.payload);
      if (!pushed || !*pushed) ::_exit(13);
      ++i;
    }
    ::_exit(0);
  }
  RingProducer requests = seg->producer(RingId::requests);
  RingConsumer replies = seg->consumer(RingId::replies);
  const std::string payload(64, 'x');
  Record rec;
  bool ok = true;
  for (auto _ : state) {
    auto pushed = requests.try_push(RecordKind::message, payload);
    ok = pushed && *pushed;
    while (ok) {
      auto popped = replies.try_pop(rec);
      if (!popped) ok = false;
      if (!popped || *popped) break;
      auto w = replies.wait(10s, spin);
      ok = w && *w;
    }
    if (!ok) {
      state.SkipWithError("round trip failed");
      break;
    }
  }
  if (!ok) ::kill(pid, SIGKILL);
  if (!reap_ok(pid) && ok) state.SkipWithError("echo process failed");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ShmRing_RoundTrip_CrossProcess)->ArgName("spin_us")->Arg(0)->Arg(50)->UseRealTime();

}  // namespace
}  // namespace drover::bench
