// The request pipeline end to end (docs/PIPELINE.md): prompt cache hits, deduplication of
// identical in-flight requests and coalescing of identical streams, with real droverd and sim
// workers. Overlap is arranged by conditions, never by sleeping: a slow sim worker (time to
// first token, token rate) keeps the first request running while the test watches droverd's
// telemetry (or the first chunk) before it sends the second.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "harness.hpp"

namespace drover::test {
namespace {

json pipeline(DroverProcess& d) {
  return d.client().call("telemetry.metrics")["result"]["pipeline"];
}

json deterministic(const std::string& prompt, int max_tokens, bool stream = false) {
  return {{"prompt", prompt}, {"temperature", 0}, {"max_tokens", max_tokens}, {"stream", stream}};
}

// Reads until `n` final replies arrived; chunks are sorted by their params.id.
struct StreamReader {
  std::map<json, std::vector<json>> chunks;
  std::map<json, json> finals;

  void read_until_final(RpcClient& c, const json& id) {
    while (!finals.contains(id)) {
      const json msg = read_one(c);
      if (msg.value("method", "") == "generate.chunk") {
        chunks[msg["params"]["id"]].push_back(msg["params"]);
      } else {
        finals[msg.value("id", json())] = msg;
      }
    }
  }
  // Reads until at least one chunk for `id` has arrived.
  void read_until_chunk(RpcClient& c, const json& id) {
    while (chunks[id].empty()) {
      const json msg = read_one(c);
      if (msg.value("method", "") == "generate.chunk") {
        chunks[msg["params"]["id"]].push_back(msg["params"]);
      } else {
        finals[msg.value("id", json())] = msg;
      }
    }
  }
  // The chunks of `id` are contiguous from 0 and add up to its final text.
  void expect_contiguous(const json& id) const {
    SCOPED_TRACE("stream " + id.dump());
    const auto& cs = chunks.at(id);
    ASSERT_FALSE(cs.empty());
    std::string joined;
    for (std::size_t i = 0; i < cs.size(); ++i) {
      EXPECT_EQ(cs[i].value("index", -1), static_cast<int>(i));
      joined += cs[i].value("text", "");
    }
    EXPECT_EQ(joined, finals.at(id)["result"].value("text", "~"));
  }
};

TEST_F(DroverTest, PromptCacheHitIsServedWithoutAWorkerAndStreamsTheCachedChunks) {
  ASSERT_TRUE(start({.workers = 1, .worker_args = {"--ttft-ms", "50", "--tokens-per-s", "400"}}));
  auto c = d().client();
  const json first = c.call("generate", deterministic("cache me", 12));
  ASSERT_TRUE(is_result(first)) << first.dump();
  EXPECT_EQ(first["result"]["cache"], "miss");
  EXPECT_EQ(first["result"]["worker"], 0);

  const json again = c.call("generate", deterministic("cache me", 12));
  ASSERT_TRUE(is_result(again)) << again.dump();
  EXPECT_EQ(again["result"]["cache"], "hit");
  EXPECT_TRUE(again["result"]["worker"].is_null()) << "a hit involves no worker";
  EXPECT_EQ(again["result"]["text"], first["result"]["text"]);
  EXPECT_EQ(again["result"]["usage"], first["result"]["usage"]);
  EXPECT_EQ(again["result"]["finish_reason"], first["result"]["finish_reason"]);

  // A streaming request for the same thing still streams: chunks, then the full text.
  c.send(request("s", "generate", deterministic("cache me", 12, true)));
  StreamReader streamed;
  streamed.read_until_final(c, "s");
  ASSERT_TRUE(is_result(streamed.finals["s"])) << streamed.finals["s"].dump();
  EXPECT_EQ(streamed.finals["s"]["result"]["cache"], "hit");
  streamed.expect_contiguous("s");

  // bypass and non-deterministic requests run on a worker.
  json bypass = deterministic("cache me", 12);
  bypass["cache"] = "bypass";
  const json b = c.call("generate", bypass);
  ASSERT_TRUE(is_result(b)) << b.dump();
  EXPECT_EQ(b["result"]["cache"], "bypass");
  EXPECT_EQ(b["result"]["worker"], 0);
  EXPECT_EQ(b["result"]["text"], first["result"]["text"]);
  const json sampled =
      c.call("generate", {{"prompt", "cache me"}, {"temperature", 0.8}, {"max_tokens", 12}});
  ASSERT_TRUE(is_result(sampled)) << sampled.dump();
  EXPECT_EQ(sampled["result"]["cache"], "bypass");

  const json p = pipeline(d());
  EXPECT_EQ(p["prompt_cache"]["hits_total"], 2);
  EXPECT_EQ(p["prompt_cache"]["misses_total"], 1);
  EXPECT_EQ(p["prompt_cache"]["entries"], 1);
  EXPECT_GT(p["prompt_cache"]["bytes"].get<int>(), 0);
  // The first request and the bypass one ran (the sampled one is not the pipeline's).
  EXPECT_EQ(p["executions_total"], 2);
  EXPECT_EQ(p["bypassed_total"], 1);
}

// Issue 15 item 8: after a config reload (which may change the catalog's paths or
// workers.command), a stored result is not served again; the first request after it runs on a
// worker and is stored afresh.
TEST_F(DroverTest, AReloadKeepsEarlierResultsFromBeingServed) {
  ASSERT_TRUE(start({.workers = 1}));
  auto c = d().client();
  EXPECT_EQ(c.call("generate", deterministic("before reload", 8))["result"]["cache"], "miss");
  EXPECT_EQ(c.call("generate", deterministic("before reload", 8))["result"]["cache"], "hit");
  const json reloaded = d().admin().call("config.reload");
  ASSERT_TRUE(is_result(reloaded)) << reloaded.dump();
  const json after = c.call("generate", deterministic("before reload", 8));
  ASSERT_TRUE(is_result(after)) << after.dump();
  EXPECT_EQ(after["result"]["cache"], "miss") << "a result stored before the reload was served";
  EXPECT_EQ(after["result"]["worker"], 0);
  EXPECT_EQ(c.call("generate", deterministic("before reload", 8))["result"]["cache"], "hit");
  EXPECT_EQ(pipeline(d())["invalidations_total"], 1);
}

TEST_F(DroverTest, StagesOffInConfigRunEveryRequest) {
  ASSERT_TRUE(start({.workers = 1,
                     .extra_yaml = "prompt_cache:\n  enabled: false\n"
                                   "request_deduplication:\n  enabled: false\n"}));
  auto c = d().client();
  for (int i = 0; i < 2; ++i) {
    const json r = c.call("generate", deterministic("no cache", 6));
    ASSERT_TRUE(is_result(r)) << r.dump();
    EXPECT_EQ(r["result"]["cache"], "bypass");
    EXPECT_EQ(r["result"]["worker"], 0);
  }
  const json p = pipeline(d());
  EXPECT_EQ(p["prompt_cache"]["enabled"], false);
  EXPECT_EQ(p["prompt_cache"]["requests_out"], 2);
  EXPECT_EQ(p["request_deduplication"]["enabled"], false);
  EXPECT_EQ(p["bypassed_total"], 2);
  EXPECT_EQ(p["executions_total"], 0);
}

TEST_F(DroverTest, FinishedResultAnswersAnIdenticalRequestWithinTheDedupTtl) {
  // A ttl far longer than the test, so the second request is inside it however slow we are.
  ASSERT_TRUE(start({.workers = 1,
                     .extra_yaml = "prompt_cache:\n  enabled: false\n"
                                   "request_deduplication:\n  ttl_ms: 600000\n"}));
  auto c = d().client();
  const json first = c.call("generate", deterministic("remembered", 6));
  const json second = c.call("generate", deterministic("remembered", 6));
  ASSERT_TRUE(is_result(first) && is_result(second)) << first.dump() << second.dump();
  EXPECT_EQ(first["result"]["cache"], "bypass");
  EXPECT_EQ(second["result"]["cache"], "coalesced");
  EXPECT_EQ(second["result"]["text"], first["result"]["text"]);
  const json p = pipeline(d());
  EXPECT_EQ(p["executions_total"], 1);
  EXPECT_EQ(p["request_deduplication"]["shared_recent_total"], 1);
}

TEST_F(DroverTest, IdenticalInFlightRequestsShareOneRunEvenWhenTheLeaderLeaves) {
  // 3 s to the first token: the first request is still running when the others arrive.
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "3000", "--tokens-per-s", "200"}}));
  json params = deterministic("shared", 8);
  params["cache"] = "bypass";  // deduplication alone
  auto leader = d().client();
  auto follower = d().client();
  auto other = d().client();
  leader.send(request("lead", "generate", params));
  ASSERT_TRUE(wait_until([&] { return pipeline(d())["request_deduplication"]["in_flight"] == 1; }));
  follower.send(request("f1", "generate", params));
  other.send(request("f2", "generate", params));
  ASSERT_TRUE(
      wait_until([&] { return pipeline(d())["request_deduplication"]["shared_total"] == 2; }));
  // The leader's client goes away: its followers are still answered by the same run.
  leader.close();
  const json f1 = read_reply(follower, "f1");
  const json f2 = read_reply(other, "f2");
  for (const json* r : {&f1, &f2}) {
    ASSERT_TRUE(is_result(*r)) << r->dump();
    EXPECT_EQ((*r)["result"]["cache"], "coalesced");
    EXPECT_EQ((*r)["result"]["finish_reason"], "length");
    EXPECT_EQ((*r)["result"]["usage"]["completion_tokens"], 8);
  }
  EXPECT_EQ(f1["result"]["text"], f2["result"]["text"]);
  const json p = pipeline(d());
  EXPECT_EQ(p["executions_total"], 1) << "three requests, one worker run";
  EXPECT_EQ(p["abandoned_total"], 0);
  EXPECT_EQ(p["request_deduplication"]["in_flight"], 0);
}

// Issue 15 item 4: a run whose last subscriber cancelled is on its way to finish_reason
// "cancelled"; an identical request arriving before the worker answers must not join it. The
// cancel and the new request travel in one write, so droverd handles both before the worker's
// answer to the cancel can arrive.
void cancelled_run_is_not_joined(DroverProcess& d, bool stream) {
  json params = deterministic(stream ? "cancelled stream" : "cancelled run", 8, stream);
  params["cache"] = "bypass";  // sharing alone
  auto c = d.client();
  c.send(request("a", "generate", params));
  ASSERT_TRUE(wait_until([&] {
    for (const auto& w : d.workers()) {
      if (w.value("inflight", 0) > 0) return true;
    }
    return false;
  }));
  c.send_raw(request("c", "cancel", {{"id", "a"}}).dump() + "\n" +
             request("b", "generate", params).dump() + "\n");
  std::vector<json> others;
  const json b = read_reply(c, "b", kReplyTimeout, &others);
  ASSERT_TRUE(is_result(b)) << b.dump();
  EXPECT_EQ(b["result"]["finish_reason"], "length") << b.dump();
  EXPECT_EQ(b["result"]["usage"]["completion_tokens"], 8);
  EXPECT_EQ(b["result"]["cache"], "bypass") << "joined a run being cancelled";
  if (stream) {
    std::string joined;
    for (const auto& m : others) {
      if (m.value("method", "") == "generate.chunk" && m["params"]["id"] == "b") {
        joined += m["params"].value("text", "");
      }
    }
    EXPECT_EQ(joined, b["result"]["text"]);
  }
  // a's reply (cancelled) may well have come before b's.
  json a;
  for (const auto& m : others) {
    if (m.value("id", json()) == "a") a = m;
  }
  if (a.is_null()) a = read_reply(c, "a");
  ASSERT_TRUE(is_result(a)) << a.dump();
  EXPECT_EQ(a["result"]["finish_reason"], "cancelled");
}

TEST_F(DroverTest, AnIdenticalRequestDoesNotJoinARunBeingCancelled) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "1500", "--tokens-per-s", "200"}}));
  cancelled_run_is_not_joined(d(), false);
}

TEST_F(DroverTest, AnIdenticalStreamDoesNotJoinAStreamBeingCancelled) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "1500", "--tokens-per-s", "200"}}));
  cancelled_run_is_not_joined(d(), true);
}

TEST_F(DroverTest, AFollowersTimeoutIsItsOwnAndTheRunGoesOnForTheLeader) {
  ASSERT_TRUE(start({.workers = 1, .worker_args = {"--ttft-ms", "3000", "--tokens-per-s", "200"}}));
  const json params = deterministic("deadline", 6);
  auto leader = d().client();
  auto follower = d().client();
  leader.send(request("lead", "generate", params));
  ASSERT_TRUE(wait_until([&] { return pipeline(d())["request_deduplication"]["in_flight"] == 1; }));
  json impatient = params;
  impatient["timeout_ms"] = 100;  // timeout_ms is not part of the key: it joins the run
  follower.send(request("f", "generate", impatient));
  const json f = read_reply(follower, "f");
  EXPECT_EQ(error_code(f), -32004) << f.dump();
  const json l = read_reply(leader, "lead");
  ASSERT_TRUE(is_result(l)) << l.dump();
  EXPECT_EQ(l["result"]["cache"], "miss");
  EXPECT_EQ(l["result"]["finish_reason"], "length");
  const json p = pipeline(d());
  EXPECT_EQ(p["request_deduplication"]["shared_total"], 1);
  EXPECT_EQ(p["executions_total"], 1);
  EXPECT_EQ(p["abandoned_total"], 0);
}

TEST_F(DroverTest, DeduplicationOffRunsIdenticalRequestsSeparately) {
  ASSERT_TRUE(
      start({.workers = 2,
             .worker_args = {"--ttft-ms", "500"},
             .extra_yaml =
                 "prompt_cache:\n  enabled: false\nfeature_flags:\n  request_deduplication: 0\n"}));
  auto a = d().client();
  auto b = d().client();
  a.send(request(1, "generate", deterministic("twice", 4)));
  b.send(request(2, "generate", deterministic("twice", 4)));
  const json ra = read_reply(a, 1);
  const json rb = read_reply(b, 2);
  ASSERT_TRUE(is_result(ra) && is_result(rb)) << ra.dump() << rb.dump();
  EXPECT_EQ(ra["result"]["cache"], "bypass");
  EXPECT_EQ(rb["result"]["cache"], "bypass");
  EXPECT_EQ(ra["result"]["text"], rb["result"]["text"]);
  const json p = pipeline(d());
  EXPECT_EQ(p["request_deduplication"]["shared_total"], 0);
  EXPECT_EQ(p["request_deduplication"]["requests_out"], 2);
  EXPECT_EQ(p["request_deduplication"]["rollout_percent"], 0);
}

TEST_F(DroverTest, StreamJoinerGetsBufferedReplayThenLiveChunksAndOutlivesTheLeader) {
  // 60 tokens at 20/s: about 3 s of stream after the first chunk.
  ASSERT_TRUE(start({.workers = 1, .worker_args = {"--ttft-ms", "100", "--tokens-per-s", "20"}}));
  json params = deterministic("a long stream", 60, true);
  params["cache"] = "bypass";  // coalescing alone
  auto leader = d().client();
  auto joiner = d().client();
  StreamReader lr, jr;
  leader.send(request("lead", "generate", params));
  lr.read_until_chunk(leader, "lead");  // the stream is under way
  joiner.send(request(42, "generate", params));
  jr.read_until_chunk(joiner, 42);
  EXPECT_EQ(jr.chunks[42].front().value("index", -1), 0) << "the joiner's stream starts at 0";
  // The leader disconnects mid-stream; the joiner's stream goes on to the end.
  leader.close();
  jr.read_until_final(joiner, 42);
  const json& r = jr.finals[42];
  ASSERT_TRUE(is_result(r)) << r.dump();
  EXPECT_EQ(r["result"]["cache"], "coalesced");
  EXPECT_EQ(r["result"]["finish_reason"], "length");
  EXPECT_EQ(r["result"]["usage"]["completion_tokens"], 60);
  jr.expect_contiguous(42);
  for (const auto& [id, cs] : jr.chunks) EXPECT_EQ(id, 42) << "a chunk of another request";

  // The same request run alone produces the same text.
  json fresh = params;
  fresh["stream"] = false;
  const json alone = d().client().call("generate", fresh);
  ASSERT_TRUE(is_result(alone)) << alone.dump();
  EXPECT_EQ(alone["result"]["text"], r["result"]["text"]);

  const json p = pipeline(d());
  EXPECT_EQ(p["request_coalescing"]["coalesced_total"], 1);
  EXPECT_EQ(p["executions_total"], 2) << "the shared stream, then the lone unary run";
}

}  // namespace
}  // namespace drover::test
