#include "worker/backends/tinyllm/tinyllm_backend.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <thread>

#include "common/async_util.hpp"
#include "tests/unit/worker/tinyllm_test_model.hpp"

namespace drover::worker {
namespace {

namespace asio = boost::asio;

// A loaded backend on a private io_context; each call runs the io_context until done.
class TinyllmBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& m = tinyllm::testing::tiny_model();
    TinyLlmOptions opt;
    opt.model_path = m.model;
    opt.tokenizer_path = m.tokenizer;
    opt.model_name = "tiny";
    opt.threads = 2;
    backend_ = std::make_unique<TinyLlmBackend>(io_.get_executor(), opt);
    loaded_ = run(backend_->load());
  }

  template <typename T>
  T run(asio::awaitable<T> a) {
    std::optional<T> out;
    asio::co_spawn(io_, std::move(a), [&out](std::exception_ptr e, T r) {
      if (e) std::rethrow_exception(e);
      out = std::move(r);
    });
    io_.run();
    io_.restart();
    return std::move(*out);
  }

  BackendResult<GenerateOutcome> generate(GenerateRequest req,
                                          std::vector<std::string>* chunks = nullptr,
                                          std::shared_ptr<CancelFlag> cancel = nullptr,
                                          std::function<void(int)> on_chunk_index = nullptr) {
    if (!cancel) cancel = std::make_shared<CancelFlag>();
    int index = 0;
    return run(backend_->generate(
        req,
        [&](const std::string& text) {
          if (chunks) chunks->push_back(text);
          if (on_chunk_index) on_chunk_index(index);
          ++index;
        },
        cancel));
  }

  static GenerateRequest request(std::string prompt, int max_tokens, double temperature,
                                 std::uint64_t seed) {
    GenerateRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.temperature = temperature;
    r.top_p = 0.9;
    r.seed = seed;
    r.stream = true;
    return r;
  }

  asio::io_context io_;
  std::unique_ptr<TinyLlmBackend> backend_;
  std::optional<BackendResult<json>> loaded_;
};

TEST_F(TinyllmBackendTest, LoadReportsTheModel) {
  ASSERT_TRUE(loaded_->has_value()) << loaded_->error().message;
  const json& r = **loaded_;
  EXPECT_EQ(r["models"], json::array({"tiny"}));
  EXPECT_GE(r["load_ms"].get<double>(), 0.0);
  EXPECT_EQ(r["model"]["dim"], 48);
  EXPECT_EQ(r["model"]["threads"], 2);
  EXPECT_EQ(r["model"]["parameters"].get<std::uint64_t>(),
            tinyllm::testing::tiny_model().config.parameter_count());
  EXPECT_EQ(backend_->models(), std::vector<std::string>{"tiny"});
}

TEST_F(TinyllmBackendTest, GreedyGenerationIsDeterministicAndIgnoresTheSeed) {
  auto a = generate(request("Once upon a time", 20, 0.0, 1));
  auto b = generate(request("Once upon a time", 20, 0.0, 2));
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(a->text, b->text);
  EXPECT_EQ(a->completion_tokens, b->completion_tokens);
  EXPECT_GT(a->completion_tokens, 0);
}

TEST_F(TinyllmBackendTest, SameSeedSameTextDifferentSeedsDifferentText) {
  auto a = generate(request("The dog", 24, 1.0, 42));
  auto b = generate(request("The dog", 24, 1.0, 42));
  auto c = generate(request("The dog", 24, 1.0, 43));
  ASSERT_TRUE(a.has_value() && b.has_value() && c.has_value());
  EXPECT_EQ(a->text, b->text);
  EXPECT_NE(a->text, c->text);
}

TEST_F(TinyllmBackendTest, ChunksConcatenateToTheTextAndCountsAreReported) {
  std::vector<std::string> chunks;
  auto out = generate(request("hello", 16, 0.8, 5), &chunks);
  ASSERT_TRUE(out.has_value());
  std::string joined;
  for (const auto& c : chunks) joined += c;
  EXPECT_EQ(joined, out->text);
  EXPECT_EQ(out->prompt_tokens,
            static_cast<int>((*backend_->batch_tokenize("", {"hello"}))[0].size()));
  EXPECT_LE(out->completion_tokens, 16);
  if (out->finish_reason == "length") {
    EXPECT_EQ(out->completion_tokens, 16);
  }
  EXPECT_TRUE(out->finish_reason == "length" || out->finish_reason == "stop");
}

TEST_F(TinyllmBackendTest, UnaryRequestsGetNoChunks) {
  std::vector<std::string> chunks;
  auto req = request("hello", 8, 0.0, 1);
  req.stream = false;
  auto out = generate(req, &chunks);
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(chunks.empty());
}

TEST_F(TinyllmBackendTest, StopStringEndsTheGenerationBeforeIt) {
  auto full = generate(request("Once", 30, 0.0, 1));
  ASSERT_TRUE(full.has_value());
  ASSERT_GE(full->text.size(), 6u) << full->text;
  // A stop string taken from the middle of the greedy text.
  const std::size_t at = full->text.size() / 2;
  const std::string stop = full->text.substr(at, 2);
  const std::size_t first = full->text.find(stop);
  std::vector<std::string> chunks;
  auto req = request("Once", 30, 0.0, 1);
  req.stop = {stop};
  auto out = generate(req, &chunks);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->finish_reason, "stop");
  EXPECT_EQ(out->text, full->text.substr(0, first));
  std::string joined;
  for (const auto& c : chunks) joined += c;
  EXPECT_EQ(joined, out->text);
  EXPECT_LT(out->completion_tokens, full->completion_tokens);
}

TEST_F(TinyllmBackendTest, CancelStopsBetweenTokens) {
  auto cancel = std::make_shared<CancelFlag>();
  std::vector<std::string> chunks;
  auto out =
      generate(request("Once upon a time", 30, 1.0, 9), &chunks, cancel, [&cancel](int index) {
        if (index == 2) cancel->cancelled = true;
      });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->finish_reason, "cancelled");
  EXPECT_LT(out->completion_tokens, 30);
  std::string joined;
  for (const auto& c : chunks) joined += c;
  EXPECT_EQ(joined, out->text);

  auto before = std::make_shared<CancelFlag>();
  before->cancelled = true;
  auto none = generate(request("Once upon a time", 30, 1.0, 9), nullptr, before);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->finish_reason, "cancelled");
  EXPECT_EQ(none->completion_tokens, 0);
  EXPECT_EQ(none->text, "");
}

TEST_F(TinyllmBackendTest, MaxTokensIsCappedByTheContext) {
  const int seq_len = tinyllm::testing::tiny_model().config.seq_len;
  auto out = generate(request("", 10 * seq_len, 0.5, 3));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->prompt_tokens, 1);  // BOS only
  EXPECT_LE(out->completion_tokens, seq_len);
  if (out->finish_reason == "length") {
    EXPECT_EQ(out->completion_tokens, seq_len);
  }

  auto zero = generate(request("hi", 0, 0.5, 3));
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero->completion_tokens, 0);
  EXPECT_EQ(zero->finish_reason, "length");
}

TEST_F(TinyllmBackendTest, PromptLongerThanTheContextIsInvalidParams) {
  auto out = generate(request(std::string(200, 'q'), 4, 0.0, 1));
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, RpcError::invalid_params);
  EXPECT_EQ(out.error().data["seq_len"], tinyllm::testing::tiny_model().config.seq_len);
}

TEST_F(TinyllmBackendTest, UnknownModelIsRefused) {
  auto req = request("hi", 4, 0.0, 1);
  req.model = "gpt-9";
  auto out = generate(req);
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, RpcError::unknown_model);
  auto tok = backend_->batch_tokenize("gpt-9", {"x"});
  ASSERT_FALSE(tok.has_value());
  EXPECT_EQ(tok.error().code, RpcError::unknown_model);
}

TEST_F(TinyllmBackendTest, TokenizeAndDetokenizeRoundTrip) {
  const std::vector<std::string> texts = {"Once upon a time", "héllo 日本 🐶", "", " spaced  out "};
  auto tokens = backend_->batch_tokenize("tiny", texts);
  ASSERT_TRUE(tokens.has_value());
  ASSERT_EQ(tokens->size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ((*tokens)[i].front(), tinyllm::kBosToken);
    auto text = backend_->detokenize("", (*tokens)[i]);
    ASSERT_TRUE(text.has_value());
    EXPECT_EQ(*text, texts[i]);
  }
}

TEST_F(TinyllmBackendTest, DetokenizeRefusesUnknownIdsAndRepairsUtf8) {
  auto bad = backend_->detokenize("", {1, 100000});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, RpcError::invalid_params);
  auto half = backend_->detokenize("", {tinyllm::kFirstByteToken + 0xC3});  // half of "é"
  ASSERT_TRUE(half.has_value());
  EXPECT_EQ(*half, "\xEF\xBF\xBD");
}

TEST_F(TinyllmBackendTest, ForwardPassesDoNotBlockTheIoThread) {
  // A handler posted after the generation starts runs before it ends: the io thread was free
  // while tokens were computed. Chunks arrive on the io thread.
  const auto io_thread = std::this_thread::get_id();
  int chunks_seen = 0;
  int chunks_when_posted_ran = -1;
  bool wrong_thread = false;
  std::optional<BackendResult<GenerateOutcome>> out;
  auto req = request("Once upon a time", 20, 0.0, 1);
  asio::co_spawn(io_,
                 backend_->generate(
                     req,
                     [&](const std::string&) {
                       ++chunks_seen;
                       wrong_thread |= std::this_thread::get_id() != io_thread;
                     },
                     std::make_shared<CancelFlag>()),
                 [&out](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                   if (e) std::rethrow_exception(e);
                   out = std::move(r);
                 });
  asio::post(io_, [&] { chunks_when_posted_ran = chunks_seen; });
  io_.run();
  io_.restart();
  ASSERT_TRUE(out && out->has_value());
  EXPECT_FALSE(wrong_thread);
  EXPECT_EQ(chunks_when_posted_ran, 0);
  EXPECT_GT(chunks_seen, 0);
}

TEST_F(TinyllmBackendTest, ConcurrentGenerationsMatchTheirSoloRuns) {
  auto solo_a = generate(request("The cat", 16, 1.0, 11));
  auto solo_b = generate(request("A bird", 16, 1.0, 12));
  ASSERT_TRUE(solo_a.has_value() && solo_b.has_value());
  std::optional<BackendResult<GenerateOutcome>> a, b;
  // generate() takes the request by reference and starts lazily: keep both alive until done.
  const auto req_a = request("The cat", 16, 1.0, 11);
  const auto req_b = request("A bird", 16, 1.0, 12);
  asio::co_spawn(io_,
                 backend_->generate(
                     req_a, [](const std::string&) {}, std::make_shared<CancelFlag>()),
                 [&a](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                   if (e) std::rethrow_exception(e);
                   a = std::move(r);
                 });
  asio::co_spawn(io_,
                 backend_->generate(
                     req_b, [](const std::string&) {}, std::make_shared<CancelFlag>()),
                 [&b](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                   if (e) std::rethrow_exception(e);
                   b = std::move(r);
                 });
  io_.run();
  io_.restart();
  ASSERT_TRUE(a && a->has_value() && b && b->has_value());
  EXPECT_EQ((*a)->text, solo_a->text);
  EXPECT_EQ((*b)->text, solo_b->text);
}

// Continuous batching through the backend: generations with their own prompts, sampling,
// seeds, stop strings and streams, started together and joining while others run, give what
// each gives alone, at every max_batch (those beyond it wait for a place).
TEST(TinyllmBackendBatching, GenerationsMatchTheirSoloRunsAtEveryBatchSize) {
  const auto& m = tinyllm::testing::tiny_model();
  struct Case {
    GenerateRequest req;
    int join_after_chunk;  // -1: at the start; else when generation 0 streamed this many chunks
  };
  const char* prompts[] = {"Once upon a time", "The dog", "", "hello there", "A",
                           "a cat sat on the mat", "zz", "Tom and Lily"};
  std::vector<Case> cases;
  for (int i = 0; i < 20; ++i) {
    GenerateRequest r;
    r.prompt = prompts[i % 8];
    r.max_tokens = 6 + (i * 7) % 17;
    r.temperature = i % 3 == 0 ? 0.0 : 0.7 + 0.1 * (i % 4);
    r.top_p = i % 2 == 0 ? 0.9 : 1.0;
    r.seed = static_cast<std::uint64_t>(100 + i);
    r.stream = i % 4 != 1;
    if (i % 5 == 2) r.stop = {"e"};
    cases.push_back({r, i < 6 ? -1 : i % 7});
  }
  struct Got {
    std::optional<BackendResult<GenerateOutcome>> out;
    std::string streamed;
  };
  auto run_all = [&](int max_batch, bool together) {
    asio::io_context io;
    TinyLlmOptions opt;
    opt.model_path = m.model;
    opt.tokenizer_path = m.tokenizer;
    opt.model_name = "tiny";
    opt.threads = 2;
    opt.max_batch = max_batch;
    TinyLlmBackend b(io.get_executor(), opt);
    std::optional<BackendResult<json>> loaded;
    asio::co_spawn(io, b.load(), [&](std::exception_ptr e, BackendResult<json> r) {
      if (e) std::rethrow_exception(e);
      loaded = std::move(r);
    });
    io.run();
    io.restart();
    EXPECT_TRUE(loaded && loaded->has_value());
    EXPECT_EQ((**loaded)["max_batch"], max_batch);
    std::vector<Got> got(cases.size());
    std::vector<bool> started(cases.size(), false);
    int chunks_of_first = 0;
    int joined_while_running = 0;
    std::function<void(std::size_t)> start = [&](std::size_t i) {
      started[i] = true;
      asio::co_spawn(io,
                     b.generate(cases[i].req,
                                [&, i](const std::string& text) {
                                  got[i].streamed += text;
                                  if (i != 0 || !together) return;
                                  ++chunks_of_first;
                                  for (std::size_t k = 0; k < cases.size(); ++k) {
                                    if (!started[k] && cases[k].join_after_chunk == chunks_of_first) {
                                      ++joined_while_running;
                                      start(k);
                                    }
                                  }
                                },
                                std::make_shared<CancelFlag>()),
                     [&, i](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                       if (e) std::rethrow_exception(e);
                       got[i].out = std::move(r);
                     });
    };
    if (together) {
      for (std::size_t i = 0; i < cases.size(); ++i) {
        if (cases[i].join_after_chunk < 0) start(i);
      }
      io.run();
      io.restart();
      EXPECT_GE(joined_while_running, 3);
      // Those whose chunk never came (generation 0 ended first) start now, beside each other.
      for (std::size_t i = 0; i < cases.size(); ++i) {
        if (!started[i]) start(i);
      }
      io.run();
    } else {
      for (std::size_t i = 0; i < cases.size(); ++i) {
        start(i);
        io.run();
        io.restart();
      }
    }
    return got;
  };
  const auto solo = run_all(1, false);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(solo[i].out && solo[i].out->has_value()) << i;
  }
  for (const int max_batch : {1, 2, 3, 8, 16, 32}) {
    const auto got = run_all(max_batch, true);
    for (std::size_t i = 0; i < cases.size(); ++i) {
      ASSERT_TRUE(got[i].out && got[i].out->has_value()) << "max_batch " << max_batch << " #" << i;
      const auto& a = **got[i].out;
      const auto& e = **solo[i].out;
      EXPECT_EQ(a.text, e.text) << "max_batch " << max_batch << " #" << i;
      EXPECT_EQ(a.finish_reason, e.finish_reason) << "max_batch " << max_batch << " #" << i;
      EXPECT_EQ(a.completion_tokens, e.completion_tokens) << "max_batch " << max_batch << " #" << i;
      EXPECT_EQ(a.prompt_tokens, e.prompt_tokens);
      EXPECT_EQ(got[i].streamed, cases[i].req.stream ? a.text : std::string());
    }
  }
}

// Generates that arrive together (one handler: a batch from droverd's batch queue) start in
// the same step and share every step: the steps taken are those of the longest generation,
// not the sum. Short prompts fit one step with their first token.
TEST_F(TinyllmBackendTest, GeneratesArrivingTogetherShareEveryStep) {
  std::vector<std::optional<BackendResult<GenerateOutcome>>> outs(8);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(request(i % 2 ? "hi" : "the cat", 10, 0.9, 70 + i));
  const auto before = backend_->steps();
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    asio::co_spawn(io_, backend_->generate(reqs[i], [](const std::string&) {},
                                           std::make_shared<CancelFlag>()),
                   [&outs, i](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                     if (e) std::rethrow_exception(e);
                     outs[i] = std::move(r);
                   });
  }
  io_.run();
  io_.restart();
  int longest = 0;
  for (const auto& o : outs) {
    ASSERT_TRUE(o && o->has_value());
    longest = std::max(longest, (*o)->completion_tokens);
  }
  EXPECT_EQ(backend_->steps() - before, static_cast<std::uint64_t>(longest));
}

// Beyond max_batch, generations wait for a place; one cancelled while waiting ends at the next
// step boundary, without running (not once a place frees), while the one holding the place
// goes on.
TEST(TinyllmBackendBatching, CancelWhileWaitingForAPlaceEndsItAtOnce) {
  const auto& m = tinyllm::testing::tiny_model();
  asio::io_context io;
  TinyLlmOptions opt;
  opt.model_path = m.model;
  opt.tokenizer_path = m.tokenizer;
  opt.max_batch = 1;
  TinyLlmBackend b(io.get_executor(), opt);
  asio::co_spawn(io, b.load(), [](std::exception_ptr e, BackendResult<json> r) {
    if (e) std::rethrow_exception(e);
    ASSERT_TRUE(r.has_value());
  });
  io.run();
  io.restart();
  GenerateRequest running;
  running.prompt = "Once upon a time";
  running.max_tokens = 20;
  running.temperature = 0.0;
  running.stream = true;
  GenerateRequest waiting = running;
  auto cancel = std::make_shared<CancelFlag>();
  cancel->cancelled = true;  // before it ever gets the place `running` holds
  std::vector<std::string> order;
  std::optional<BackendResult<GenerateOutcome>> a, w;
  asio::co_spawn(io,
                 b.generate(running, [](const std::string&) {}, std::make_shared<CancelFlag>()),
                 [&](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                   if (e) std::rethrow_exception(e);
                   a = std::move(r);
                   order.push_back("running");
                 });
  asio::co_spawn(io, b.generate(waiting, [](const std::string&) {}, cancel),
                 [&](std::exception_ptr e, BackendResult<GenerateOutcome> r) {
                   if (e) std::rethrow_exception(e);
                   w = std::move(r);
                   order.push_back("waiting");
                 });
  io.run();
  ASSERT_TRUE(a && a->has_value() && w && w->has_value());
  EXPECT_EQ((*w)->finish_reason, "cancelled");
  EXPECT_EQ((*w)->completion_tokens, 0);
  EXPECT_EQ((*w)->text, "");
  EXPECT_NE((*a)->finish_reason, "cancelled");
  EXPECT_GT((*a)->completion_tokens, 1);
  EXPECT_EQ(order, (std::vector<std::string>{"waiting", "running"}));
}

TEST(TinyllmBackendLoad, MissingFilesFailInitWithAClearMessage) {
  asio::io_context io;
  TinyLlmOptions opt;
  opt.model_path = "/nonexistent/model.bin";
  TinyLlmBackend b(io.get_executor(), opt);
  EXPECT_EQ(b.models(), std::vector<std::string>{"model"});  // the file stem
  std::optional<BackendResult<json>> r;
  asio::co_spawn(io, b.load(), [&r](std::exception_ptr e, BackendResult<json> v) {
    if (e) std::rethrow_exception(e);
    r = std::move(v);
  });
  io.run();
  ASSERT_TRUE(r && !r->has_value());
  EXPECT_NE(r->error().message.find("/nonexistent/model.bin"), std::string::npos);

  asio::io_context io2;
  TinyLlmOptions opt2;
  opt2.model_path = tinyllm::testing::tiny_model().model;
  opt2.tokenizer_path = tinyllm::testing::tiny_unshared_model().tokenizer;  // wrong vocabulary
  TinyLlmBackend b2(io2.get_executor(), opt2);
  std::optional<BackendResult<json>> r2;
  asio::co_spawn(io2, b2.load(), [&r2](std::exception_ptr e, BackendResult<json> v) {
    if (e) std::rethrow_exception(e);
    r2 = std::move(v);
  });
  io2.run();
  ASSERT_TRUE(r2 && !r2->has_value());
  EXPECT_NE(r2->error().message.find("tokenizer"), std::string::npos) << r2->error().message;
}

}  // namespace
}  // namespace drover::worker
