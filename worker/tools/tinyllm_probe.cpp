// drover-tinyllm-probe: runs the tinyllm backend outside a worker, for tests and measurements.
//   logits   --model M --tokens 1,72,9      JSON logits at every position (reference tests)
//   encode   --model M < texts.json         JSON token lists for a JSON array of strings
//   generate --model M --prompt P ...       one generation through TinyLlmBackend: text and
//                                           load time, time to first token and tokens/s
//   agree    --model A --other B            greedy-token agreement of two models (a float32
//                                           checkpoint and its Q8_0 version) position by position
#include <fmt/format.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "common/async_util.hpp"
#include "common/log.hpp"
#include "worker/backends/tinyllm/sampler.hpp"
#include "worker/backends/tinyllm/tinyllm_backend.hpp"

namespace {

using namespace drover::worker;
using namespace drover::worker::tinyllm;
using Clock = std::chrono::steady_clock;

std::string tokenizer_for(const std::string& model, const std::string& tokenizer) {
  if (!tokenizer.empty()) return tokenizer;
  return (std::filesystem::path(model).parent_path() / "tokenizer.bin").string();
}

int cmd_logits(const std::string& model_path, const std::string& tokens_csv, int threads) {
  auto cp = Checkpoint::open(model_path);
  if (!cp) {
    std::cerr << cp.error() << "\n";
    return 1;
  }
  std::vector<int> tokens;
  std::stringstream ss(tokens_csv);
  for (std::string item; std::getline(ss, item, ',');) tokens.push_back(std::stoi(item));
  const ModelConfig& c = cp->config();
  if (static_cast<int>(tokens.size()) > c.seq_len) {
    std::cerr << "more tokens than seq_len " << c.seq_len << "\n";
    return 1;
  }
  Transformer t(*cp, threads);
  auto seq = t.new_sequence();
  json out = {{"tokens", tokens}, {"logits", json::array()}};
  for (std::size_t pos = 0; pos < tokens.size(); ++pos) {
    if (tokens[pos] < 0 || tokens[pos] >= c.vocab_size) {
      std::cerr << "token " << tokens[pos] << " outside the vocabulary\n";
      return 1;
    }
    const auto logits = t.forward(seq, tokens[pos], static_cast<int>(pos), true);
    out["logits"].push_back(std::vector<float>(logits.begin(), logits.end()));
  }
  std::cout << out.dump() << "\n";
  return 0;
}

// Both models read the same tokens — sampled from model A at temperature 1 with `seed`, so
// the text is varied — and at every position their argmax tokens are compared.
int cmd_agree(const std::string& a_path, const std::string& b_path, int positions,
              std::uint64_t seed) {
  auto a = Checkpoint::open(a_path);
  auto b = Checkpoint::open(b_path);
  for (const auto* cp : {&a, &b}) {
    if (!*cp) {
      std::cerr << cp->error() << "\n";
      return 1;
    }
  }
  const ModelConfig& c = a->config();
  if (c.vocab_size != b->config().vocab_size) {
    std::cerr << "the models have different vocabularies\n";
    return 1;
  }
  positions = std::min({positions, c.seq_len, b->config().seq_len});
  Transformer ta(*a, 1), tb(*b, 1);
  auto sa = ta.new_sequence();
  auto sb = tb.new_sequence();
  Sampler sampler(c.vocab_size, 1.0f, 1.0f, seed);
  int token = kBosToken, same = 0;
  double max_diff = 0, max_gap = 0;
  for (int pos = 0; pos < positions; ++pos) {
    const auto la = ta.forward(sa, token, pos);
    const auto lb = tb.forward(sb, token, pos);
    const auto best_a = static_cast<std::size_t>(argmax(la));
    const auto best_b = static_cast<std::size_t>(argmax(lb));
    same += best_a == best_b ? 1 : 0;
    // How far behind A's best token B's choice is, in A's logits: near ties or real misses.
    max_gap = std::max(max_gap, static_cast<double>(la[best_a] - la[best_b]));
    for (std::size_t i = 0; i < la.size(); ++i)
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(la[i] - lb[i])));
    std::vector<float> logits(la.begin(), la.end());
    token = sampler.sample(logits);
  }
  std::cout << fmt::format(
      "argmax agreement {}/{} positions ({:.1f}%), largest logit difference {:.4g}; where they "
      "differ, the other's choice is at most {:.4g} below the best in the first model's logits\n",
      same, positions, 100.0 * same / positions, max_diff, max_gap);
  return 0;
}

int cmd_encode(const std::string& model_path, const std::string& tokenizer_path) {
  auto cp = Checkpoint::open(model_path);
  if (!cp) {
    std::cerr << cp.error() << "\n";
    return 1;
  }
  auto tok = Tokenizer::load(tokenizer_for(model_path, tokenizer_path), cp->config().vocab_size);
  if (!tok) {
    std::cerr << tok.error() << "\n";
    return 1;
  }
  const json texts = json::parse(std::cin);
  json out = json::array();
  for (const auto& t : texts) out.push_back(tok->encode(t.get<std::string>(), true, false));
  std::cout << out.dump() << "\n";
  return 0;
}

// User + system CPU time of this process (all threads) so far: on a shared machine the
// tokens per CPU-second of a run do not depend on how much of a core the scheduler gave it.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// `concurrent` generations per run, started together (seeds seed, seed+1, ...): with more than
// one, the backend's continuous batching computes them in shared steps.
int cmd_generate(const TinyLlmOptions& opt, GenerateRequest req, int repeat, int concurrent) {
  boost::asio::io_context io;
  TinyLlmBackend backend(io.get_executor(), opt);
  int rc = 0;
  const auto load_start = Clock::now();
  std::optional<drover::worker::BackendResult<json>> loaded;
  drover::spawn(io, [&]() -> boost::asio::awaitable<void> { loaded = co_await backend.load(); });
  io.run();
  io.restart();
  const double load_total_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - load_start).count();
  if (!loaded || !*loaded) {
    std::cerr << (loaded ? loaded->error().message : std::string("load did not finish")) << "\n";
    return 1;
  }
  std::cout << fmt::format(
      "load: {:.2f} ms (map + tokenizer {:.2f} ms, warm-up forward {:.2f} ms), "
      "{} parameters, {} threads, max batch {}\n",
      load_total_ms, (**loaded)["load_ms"].get<double>(), (**loaded)["warmup_ms"].get<double>(),
      (**loaded)["model"]["parameters"].get<std::uint64_t>(),
      (**loaded)["model"]["threads"].get<int>(), (**loaded)["max_batch"].get<int>());
  struct Stream {
    GenerateRequest req;
    Clock::time_point first{}, end{};
    std::optional<drover::worker::BackendResult<drover::worker::GenerateOutcome>> out;
  };
  for (int i = 0; i < repeat; ++i) {
    std::vector<Stream> streams(static_cast<std::size_t>(concurrent));
    const double cpu_start = cpu_seconds();
    const std::uint64_t steps_start = backend.steps();
    const auto start = Clock::now();
    for (std::size_t k = 0; k < streams.size(); ++k) {
      Stream& st = streams[k];
      st.req = req;
      st.req.stream = true;
      st.req.seed = req.seed + k;
      drover::spawn(io, [&st, &backend]() -> boost::asio::awaitable<void> {
        st.out = co_await backend.generate(
            st.req,
            [&st](const std::string&) {
              if (st.first == Clock::time_point{}) st.first = Clock::now();
            },
            std::make_shared<CancelFlag>());
        st.end = Clock::now();
      });
    }
    io.run();
    io.restart();
    const double total = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu = cpu_seconds() - cpu_start;
    int tokens = 0;
    double slowest = 1e300, fastest = 0, ttft_max = 0;
    for (const auto& st : streams) {
      if (!st.out || !*st.out) {
        std::cerr << (st.out ? st.out->error().message : std::string("did not finish")) << "\n";
        return 1;
      }
      const auto& o = **st.out;
      tokens += o.completion_tokens;
      const double secs = std::chrono::duration<double>(st.end - start).count();
      slowest = std::min(slowest, o.completion_tokens / secs);
      fastest = std::max(fastest, o.completion_tokens / secs);
      if (st.first != Clock::time_point{}) {
        ttft_max = std::max(ttft_max, std::chrono::duration<double, std::milli>(st.first - start).count());
      }
    }
    const auto& o0 = **streams[0].out;
    if (i == 0) std::cout << "text: " << json(o0.text).dump() << "\n";
    if (concurrent == 1) {
      std::cout << fmt::format(
          "run {}: {} prompt + {} new tokens ({}) in {:.1f} ms: {:.1f} tokens/s, first chunk "
          "after {:.2f} ms; {:.1f} ms CPU: {:.1f} tokens per CPU-second\n",
          i + 1, o0.prompt_tokens, o0.completion_tokens, o0.finish_reason, total * 1000,
          o0.completion_tokens / total, ttft_max, cpu * 1000, o0.completion_tokens / cpu);
    } else {
      std::cout << fmt::format(
          "run {}: {} streams, {} new tokens in {} steps, {:.1f} ms: {:.1f} tokens/s in total; per stream "
          "{:.1f} (slowest) to {:.1f} (fastest) tokens/s; last first chunk after {:.2f} ms; "
          "{:.1f} ms CPU: {:.1f} tokens per CPU-second\n",
          i + 1, concurrent, tokens, backend.steps() - steps_start, total * 1000, tokens / total,
          slowest, fastest, ttft_max,
          cpu * 1000, tokens / cpu);
    }
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"drover-tinyllm-probe: run tinyllm outside a worker"};
  app.require_subcommand(1);
  std::string model_path, tokenizer_path, tokens_csv;
  int threads = 1;
  int repeat = 3;
  int concurrent = 1;
  GenerateRequest req;
  req.prompt = "Once upon a time";
  req.max_tokens = 256;
  auto* logits = app.add_subcommand("logits", "logits at each position of a token sequence");
  logits->add_option("--model", model_path)->required();
  logits->add_option("--tokens", tokens_csv, "comma-separated token ids")->required();
  logits->add_option("--threads", threads);
  std::string other_path;
  int positions = 256;
  std::uint64_t agree_seed = 1;
  auto* agree = app.add_subcommand("agree", "argmax agreement of two models of one vocabulary");
  agree->add_option("--model", model_path)->required();
  agree->add_option("--other", other_path)->required();
  agree->add_option("--positions", positions, "at most seq_len")->capture_default_str();
  agree->add_option("--seed", agree_seed, "sampling seed of the tokens fed")->capture_default_str();
  auto* encode = app.add_subcommand("encode", "encode a JSON array of strings read from stdin");
  encode->add_option("--model", model_path)->required();
  encode->add_option("--tokenizer", tokenizer_path);
  auto* gen = app.add_subcommand("generate", "time generations through TinyLlmBackend");
  gen->add_option("--model", model_path)->required();
  gen->add_option("--tokenizer", tokenizer_path);
  gen->add_option("--threads", threads)->capture_default_str();
  gen->add_option("--prompt", req.prompt)->capture_default_str();
  gen->add_option("--max-tokens", req.max_tokens)->capture_default_str();
  gen->add_option("--temperature", req.temperature)->capture_default_str();
  gen->add_option("--top-p", req.top_p)->capture_default_str();
  gen->add_option("--seed", req.seed)->capture_default_str();
  gen->add_option("--repeat", repeat, "runs")->capture_default_str();
  gen->add_option("--concurrent", concurrent, "generations per run, started together")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  int max_batch = TinyLlmOptions::kDefaultMaxBatch;
  gen->add_option("--max-batch", max_batch, "generations computed together per step")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  drover::configure_logging("warn", drover::LogFormat::text);
  if (*logits) return cmd_logits(model_path, tokens_csv, threads);
  if (*encode) return cmd_encode(model_path, tokenizer_path);
  if (*agree) return cmd_agree(model_path, other_path, positions, agree_seed);
  TinyLlmOptions opt;
  opt.model_path = model_path;
  opt.tokenizer_path = tokenizer_path;
  opt.threads = threads;
  opt.max_batch = max_batch;
  return cmd_generate(opt, req, repeat, concurrent);
}
