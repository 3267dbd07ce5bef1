// RequestPipeline's decisions by time — how long a cached result and a remembered
// deduplication result keep answering — with a fake clock and a pool that answers calls by
// hand (HandPool implements the Pool interface the pipeline talks to): no workers, no sleeps.
#include "supervisor/pipeline/request_pipeline.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/fake_clock.hpp"

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;

// Keeps what it is given; the test answers the calls.
class HandPool final : public Pool {
 public:
  void submit(std::shared_ptr<Call> call) override { submitted.push_back(std::move(call)); }
  void cancel(const std::shared_ptr<Call>& call) override { call->finish_cancelled(); }
  void on_timeout(const std::shared_ptr<Call>& call) override { call->finish_cancelled(); }

  // Answers the most recent run the pipeline started, as a worker in slot `slot` would.
  void answer_last(std::string text, int slot) {
    ASSERT_FALSE(submitted.empty());
    submitted.back()->finish_generate({std::move(text), "stop", {3, 2}}, slot);
  }

  std::vector<std::shared_ptr<Call>> submitted;
};

// One client request: its call and what it was answered.
struct Request {
  std::shared_ptr<Call> call;
  std::shared_ptr<std::vector<json>> replies = std::make_shared<std::vector<json>>();

  bool answered() const { return !replies->empty(); }
  const json& result() const { return replies->front().at("result"); }
};

class RequestPipelineClock : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.prompt_cache.ttl = 300s;
    config_.request_deduplication.ttl = 1000ms;
  }

  RequestPipeline& pipeline() {
    if (!pipeline_) pipeline_ = std::make_unique<RequestPipeline>(io_, config_, pool_, clock_);
    return *pipeline_;
  }

  // Submits a unary deterministic generate whose key is `key`.
  Request submit(const std::string& key, int client_id) {
    Request r;
    CallSink sink;
    sink.reply = [replies = r.replies](std::string&& text) { replies->push_back(json::parse(text)); };
    proto::worker::GenerateRequest generate;
    generate.prompt = "the prompt behind " + key;
    generate.temperature = 0;
    r.call = std::make_shared<Call>("r-" + std::to_string(client_id),
                                    proto::RpcId(std::to_string(client_id)), false,
                                    std::move(generate), std::move(sink));
    pipeline().submit(r.call, PipelineRequest{key, proto::CacheMode::use,
                                              std::to_string(client_id)});
    return r;
  }

  FakeClock clock_;
  asio::io_context io_;
  Config config_;
  HandPool pool_;
  std::unique_ptr<RequestPipeline> pipeline_;  // last: refers to the members above
};

TEST_F(RequestPipelineClock, CachedResultIsServedBeforeTtlAndNotAfter) {
  config_.request_deduplication.enabled = false;  // the cache alone
  auto first = submit("k", 1);
  ASSERT_EQ(pool_.submitted.size(), 1u);
  pool_.answer_last("hello", 3);
  ASSERT_TRUE(first.answered());
  EXPECT_EQ(first.result()["cache"], "miss");
  EXPECT_EQ(first.result()["text"], "hello");
  EXPECT_EQ(pipeline().cache().entries(), 1u);

  clock_.advance(config_.prompt_cache.ttl - 1ms);
  auto hit = submit("k", 2);
  ASSERT_TRUE(hit.answered()) << "answered at once, from the cache";
  EXPECT_EQ(pool_.submitted.size(), 1u) << "no worker run for a hit";
  EXPECT_EQ(hit.result()["cache"], "hit");
  EXPECT_EQ(hit.result()["text"], "hello");
  EXPECT_TRUE(hit.result()["worker"].is_null());

  clock_.advance(1ms);  // the entry is now ttl old: a miss, and a fresh run
  auto expired = submit("k", 3);
  EXPECT_FALSE(expired.answered());
  ASSERT_EQ(pool_.submitted.size(), 2u);
  EXPECT_EQ(pipeline().cache().stats().expired, 1u);
  pool_.answer_last("hello again", 1);
  ASSERT_TRUE(expired.answered());
  EXPECT_EQ(expired.result()["cache"], "miss");
  EXPECT_EQ(expired.result()["text"], "hello again");

  // The fresh result is what the cache holds from now on, for another ttl.
  clock_.advance(config_.prompt_cache.ttl - 1ms);
  auto rehit = submit("k", 4);
  ASSERT_TRUE(rehit.answered());
  EXPECT_EQ(rehit.result()["text"], "hello again");
  EXPECT_EQ(pool_.submitted.size(), 2u);
}

TEST_F(RequestPipelineClock, RememberedDedupResultIsServedBeforeTtlAndNotAfter) {
  config_.prompt_cache.enabled = false;  // deduplication alone
  auto first = submit("k", 1);
  ASSERT_EQ(pool_.submitted.size(), 1u);
  pool_.answer_last("shared", 2);
  ASSERT_TRUE(first.answered());
  EXPECT_EQ(first.result()["cache"], "bypass");  // no cache lookup was made

  clock_.advance(config_.request_deduplication.ttl - 1ms);
  auto late = submit("k", 2);
  ASSERT_TRUE(late.answered()) << "answered at once, from the remembered result";
  EXPECT_EQ(pool_.submitted.size(), 1u);
  EXPECT_EQ(late.result()["cache"], "coalesced");
  EXPECT_EQ(late.result()["text"], "shared");
  EXPECT_EQ(late.result()["worker"], 2) << "the worker that produced it";
  EXPECT_EQ(pipeline().stats().dedup_recent, 1u);

  clock_.advance(1ms);  // remembered for ttl exactly: now forgotten
  auto fresh = submit("k", 3);
  EXPECT_FALSE(fresh.answered());
  ASSERT_EQ(pool_.submitted.size(), 2u);
  EXPECT_EQ(pipeline().stats().dedup_recent, 1u);
  pool_.answer_last("shared, run again", 0);
  ASSERT_TRUE(fresh.answered());
  EXPECT_EQ(fresh.result()["text"], "shared, run again");
}

TEST_F(RequestPipelineClock, BypassRunsAfreshDespiteAFreshCachedResult) {
  config_.request_deduplication.enabled = false;
  submit("k", 1);
  pool_.answer_last("hello", 0);
  Request r;
  CallSink sink;
  sink.reply = [replies = r.replies](std::string&& text) { replies->push_back(json::parse(text)); };
  r.call = std::make_shared<Call>("r-2", proto::RpcId("2"), false, proto::worker::GenerateRequest{},
                                  std::move(sink));
  pipeline().submit(r.call, PipelineRequest{"k", proto::CacheMode::bypass, "2"});
  EXPECT_FALSE(r.answered());
  EXPECT_EQ(pool_.submitted.size(), 2u);
}

}  // namespace
}  // namespace drover::supervisor
