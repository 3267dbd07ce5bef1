// drover-tinyllm-probe: runs the tinyllm backend outside a worker, for tests and measurements.
//   logits   --model M --tokens 1,72,9      JSON logits at every position (reference tests)
//   encode   --model M < texts.json         JSON token lists for a JSON array of strings
//   generate --model M --prompt P ...       one generation through TinyLlmBackend: text and
//                                           load time, time to first token and tokens/s
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "common/async_util.hpp"
#include "common/log.hpp"
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

int cmd_generate(const TinyLlmOptions& opt, GenerateRequest req, int repeat) {
  boost::asio::io_context io;
  TinyLlmBackend backend(io.get_executor(), opt);
  int rc = 0;
  drover::spawn(io, [&]() -> boost::asio::awaitable<void> {
    const auto load_start = Clock::now();
    auto loaded = co_await backend.load();
    const double load_total_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - load_start).count();
    if (!loaded) {
      std::cerr << loaded.error().message << "\n";
      rc = 1;
      co_return;
    }
    std::cout << fmt::format(
        "load: {:.2f} ms (map + tokenizer {:.2f} ms, warm-up forward {:.2f} ms), "
        "{} parameters, {} threads\n",
        load_total_ms, (*loaded)["load_ms"].get<double>(), (*loaded)["warmup_ms"].get<double>(),
        (*loaded)["model"]["parameters"].get<std::uint64_t>(),
        (*loaded)["model"]["threads"].get<int>());
    for (int i = 0; i < repeat; ++i) {
      const auto start = Clock::now();
      Clock::time_point first{};
      req.stream = true;
      auto out = co_await backend.generate(
          req,
          [&first](const std::string&) {
            if (first == Clock::time_point{}) first = Clock::now();
          },
          std::make_shared<CancelFlag>());
      const double total = std::chrono::duration<double>(Clock::now() - start).count();
      if (!out) {
        std::cerr << out.error().message << "\n";
        rc = 1;
        co_return;
      }
      const double ttft_ms = first == Clock::time_point{}
                                 ? 0.0
                                 : std::chrono::duration<double, std::milli>(first - start).count();
      if (i == 0) std::cout << "text: " << json(out->text).dump() << "\n";
      std::cout << fmt::format(
          "run {}: {} prompt + {} new tokens ({}) in {:.1f} ms: {:.1f} tokens/s, first chunk "
          "after {:.2f} ms\n",
          i + 1, out->prompt_tokens, out->completion_tokens, out->finish_reason, total * 1000,
          out->completion_tokens / total, ttft_ms);
    }
  });
  io.run();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"drover-tinyllm-probe: run tinyllm outside a worker"};
  app.require_subcommand(1);
  std::string model_path, tokenizer_path, tokens_csv;
  int threads = 1;
  int repeat = 3;
  GenerateRequest req;
  req.prompt = "Once upon a time";
  req.max_tokens = 256;
  auto* logits = app.add_subcommand("logits", "logits at each position of a token sequence");
  logits->add_option("--model", model_path)->required();
  logits->add_option("--tokens", tokens_csv, "comma-separated token ids")->required();
  logits->add_option("--threads", threads);
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
  gen->add_option("--repeat", repeat, "generations to run")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  drover::configure_logging("warn", drover::LogFormat::text);
  if (*logits) return cmd_logits(model_path, tokens_csv, threads);
  if (*encode) return cmd_encode(model_path, tokenizer_path);
  TinyLlmOptions opt;
  opt.model_path = model_path;
  opt.tokenizer_path = tokenizer_path;
  opt.threads = threads;
  return cmd_generate(opt, req, repeat);
}
