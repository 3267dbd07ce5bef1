#include "worker/backends/sim_backend.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

namespace drover::worker {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& t : v) s += t;
  return s;
}

// Runs one generate to completion on a private io_context.
BackendResult<GenerateOutcome> run_generate(SimBackend& b, boost::asio::io_context& io,
                                            GenerateRequest req, std::vector<std::string>* chunks,
                                            std::shared_ptr<CancelFlag> cancel = nullptr) {
  if (!cancel) cancel = std::make_shared<CancelFlag>();
  std::optional<BackendResult<GenerateOutcome>> out;
  boost::asio::co_spawn(
      io, b.generate(req, [chunks](const std::string& t) { if (chunks) chunks->push_back(t); }, cancel),
      [&out](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
        if (e) std::rethrow_exception(e);
        out = std::move(r);
      });
  io.run();
  io.restart();
  return *out;
}

TEST(SimTokens, DeterministicPerSeedAndDifferentAcrossSeeds) {
  EXPECT_EQ(sim_tokens("hello", 1, 0.8, 20), sim_tokens("hello", 1, 0.8, 20));
  EXPECT_NE(join(sim_tokens("hello", 1, 0.8, 20)), join(sim_tokens("hello", 2, 0.8, 20)));
  EXPECT_NE(join(sim_tokens("hello", 1, 0.8, 20)), join(sim_tokens("hullo", 1, 0.8, 20)));
}

TEST(SimTokens, TemperatureZeroIgnoresSeed) {
  EXPECT_EQ(sim_tokens("hello", 1, 0.0, 20), sim_tokens("hello", 99, 0.0, 20));
}

TEST(SimTokens, ExactlyMaxTokens) {
  EXPECT_EQ(sim_tokens("x", 3, 1.0, 17).size(), 17u);
}

TEST(SimBackend, StreamsChunksThatConcatenateToTheText) {
  boost::asio::io_context io;
  SimBackend b(io.get_executor(), {});
  std::vector<std::string> chunks;
  GenerateRequest req;
  req.prompt = "hi";
  req.max_tokens = 12;
  req.seed = 5;
  req.stream = true;
  auto out = run_generate(b, io, req, &chunks);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->finish_reason, "length");
  EXPECT_EQ(out->completion_tokens, 12);
  EXPECT_EQ(out->prompt_tokens, 2);
  EXPECT_EQ(chunks.size(), 12u);
  EXPECT_EQ(join(chunks), out->text);
  EXPECT_EQ(out->text, join(sim_tokens("hi", 5, req.temperature, 12)));
}

TEST(SimBackend, StopStringEndsTextBeforeIt) {
  boost::asio::io_context io;
  SimBackend b(io.get_executor(), {});
  GenerateRequest req;
  req.prompt = "stop test";
  req.max_tokens = 40;
  req.seed = 1;
  const std::string full = join(sim_tokens(req.prompt, 1, req.temperature, 40));
  // Use the 5th word as the stop string.
  const auto tokens = sim_tokens(req.prompt, 1, req.temperature, 40);
  const std::string stop = tokens[4];
  req.stop = {stop};
  auto out = run_generate(b, io, req, nullptr);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->finish_reason, "stop");
  EXPECT_EQ(out->text, full.substr(0, full.find(stop)));
}

TEST(SimBackend, CancelStopsGeneration) {
  boost::asio::io_context io;
  SimBackend b(io.get_executor(), {});
  auto cancel = std::make_shared<CancelFlag>();
  cancel->cancelled = true;
  GenerateRequest req;
  req.prompt = "x";
  req.max_tokens = 1000;
  auto out = run_generate(b, io, req, nullptr, cancel);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->finish_reason, "cancelled");
  EXPECT_EQ(out->completion_tokens, 0);
}

// A cancel during the wait for the first token ends the request then, not at the end of the
// wait: a cancelled request must not hold its worker for ttft_ms.
TEST(SimBackend, CancelEndsTheWaitForTheFirstToken) {
  boost::asio::io_context io;
  SimOptions opt;
  opt.ttft_ms = 3'600'000;
  SimBackend b(io.get_executor(), opt);
  auto cancel = std::make_shared<CancelFlag>();
  GenerateRequest req;
  req.prompt = "x";
  req.max_tokens = 5;
  std::optional<BackendResult<GenerateOutcome>> out;
  boost::asio::co_spawn(io, b.generate(req, [](const std::string&) {}, cancel),
                        [&out](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                          if (e) std::rethrow_exception(e);
                          out = std::move(r);
                        });
  // Run what is ready: the generate starts and parks in its wait, having hooked the cancel.
  io.poll();
  ASSERT_TRUE(cancel->wake) << "the sim backend did not hook the cancel for its wait";
  boost::asio::post(io, [cancel] { cancel->cancel(); });
  // Bounded so a regression fails instead of waiting the hour out.
  io.run_for(std::chrono::seconds(120));
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(out->has_value());
  EXPECT_EQ((*out)->finish_reason, "cancelled");
  EXPECT_EQ((*out)->completion_tokens, 0);
  EXPECT_FALSE(cancel->wake) << "the hook must not outlive the request";
}

TEST(SimBackend, UnknownModelIsMinus32006) {
  boost::asio::io_context io;
  SimBackend b(io.get_executor(), {});
  GenerateRequest req;
  req.prompt = "x";
  req.model = "gpt-9";
  auto out = run_generate(b, io, req, nullptr);
  ASSERT_TRUE(out.has_error());
  EXPECT_EQ(out.error().code, RpcError::unknown_model);
  EXPECT_EQ(out.error().data["model"], "gpt-9");
}

TEST(SimBackend, TokenizeRoundTrips) {
  boost::asio::io_context io;
  SimBackend b(io.get_executor(), {});
  const std::string text = "héllo wörld";
  auto tokens = b.batch_tokenize("", {text, ""});
  ASSERT_TRUE(tokens.has_value());
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].size(), text.size());
  EXPECT_TRUE((*tokens)[1].empty());
  auto back = b.detokenize("sim", (*tokens)[0]);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, text);
}

TEST(SimBackend, DetokenizeRejectsOutOfVocabulary) {
  boost::asio::io_context io;
  SimBackend b(io.get_executor(), {});
  auto out = b.detokenize("", {65, 300});
  ASSERT_TRUE(out.has_error());
  EXPECT_EQ(out.error().code, RpcError::invalid_params);
}

TEST(SimBackend, FaultsFireAfterTheConfiguredCount) {
  boost::asio::io_context io;
  SimOptions opt;
  opt.garbage_after = 2;
  SimBackend b(io.get_executor(), opt);
  EXPECT_EQ(b.next_fault(), Fault::none);
  EXPECT_EQ(b.next_fault(), Fault::none);
  EXPECT_EQ(b.next_fault(), Fault::garbage);
  SimOptions crash;
  crash.crash_after = 0;
  SimBackend c(io.get_executor(), crash);
  EXPECT_EQ(c.next_fault(), Fault::crash);
}

}  // namespace
}  // namespace drover::worker
