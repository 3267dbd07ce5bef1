#include "worker/backends/sim_backend.hpp"

#include <fmt/format.h>

#include <array>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <random>

#include "common/async_util.hpp"

namespace drover::worker {
namespace {

constexpr std::array<const char*, 48> kWords = {
    "the",    "a",      "drover", "moves",  "herd",   "across", "plains", "river",  "at",
    "dawn",   "and",    "dusk",   "with",   "steady", "pace",   "under",  "wide",   "sky",
    "cattle", "graze",  "near",   "water",  "dust",   "rises",  "from",   "trail",  "long",
    "road",   "home",   "camp",   "fire",   "stars",  "quiet",  "night",  "wind",   "over",
    "hills",  "grass",  "green",  "gold",   "sun",    "light",  "cold",   "morning", "rain",
    "falls",  "slowly", "again"};

// FNV-1a: a stable hash so the same prompt gives the same text on every build and machine.
std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

std::vector<std::string> sim_tokens(const std::string& prompt, std::uint64_t seed,
                                    double temperature, int max_tokens) {
  // Temperature 0 is greedy decoding: the output depends on the prompt only.
  const std::uint64_t effective_seed = temperature == 0.0 ? 0 : seed;
  std::mt19937_64 rng(fnv1a(prompt) ^ (effective_seed * 0x9E3779B97F4A7C15ULL));
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(max_tokens));
  for (int i = 0; i < max_tokens; ++i) {
    const char* w = kWords[rng() % kWords.size()];
    out.push_back(i == 0 ? std::string(w) : fmt::format(" {}", w));
  }
  return out;
}

SimBackend::SimBackend(boost::asio::any_io_executor executor, SimOptions options)
    : executor_(std::move(executor)), opt_(std::move(options)) {}

boost::asio::awaitable<BackendResult<json>> SimBackend::load() {
  const auto start = std::chrono::steady_clock::now();
  if (opt_.load_ms > 0) {
    boost::asio::steady_timer t(executor_, std::chrono::milliseconds(opt_.load_ms));
    co_await t.async_wait(use_nothrow);
  }
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
  co_return BackendResult<json>(boost::system::in_place_value,
                                json{{"models", models()}, {"load_ms", ms.count()}});
}

std::optional<BackendError> SimBackend::check_model(const std::string& model) const {
  if (model.empty() || model == opt_.model) return std::nullopt;
  return BackendError{RpcError::unknown_model, fmt::format("Unknown model '{}'", model),
                      json{{"model", model}}};
}

Fault SimBackend::next_fault() {
  const int n = served_++;
  if (opt_.crash_after >= 0 && n >= opt_.crash_after) return Fault::crash;
  if (opt_.hang_after >= 0 && n >= opt_.hang_after) return Fault::hang;
  if (opt_.garbage_after >= 0 && n >= opt_.garbage_after) return Fault::garbage;
  return Fault::none;
}

bool SimBackend::inject(Fault fault) {
  if (fault == Fault::stall) {
    stalled_ = true;
    return true;
  }
  if (fault == Fault::slow) {
    opt_.tokens_per_s = opt_.tokens_per_s > 0 ? opt_.tokens_per_s / 10 : 10;
    opt_.ttft_ms *= 10;
    return true;
  }
  return false;
}

boost::asio::awaitable<BackendResult<GenerateOutcome>> SimBackend::generate(
    const GenerateRequest& req, ChunkSink on_chunk, std::shared_ptr<CancelFlag> cancel) {
  if (auto err = check_model(req.model)) {
    co_return BackendResult<GenerateOutcome>(boost::system::in_place_error, *err);
  }
  GenerateOutcome out;
  out.prompt_tokens = static_cast<int>(req.prompt.size());
  boost::asio::steady_timer timer(executor_);
  // A cancel ends the current wait (time to first token, between tokens, a stall) at once.
  cancel->wake = [&timer] { timer.cancel(); };
  struct Unhook {
    CancelFlag& flag;
    ~Unhook() { flag.wake = nullptr; }
  } unhook{*cancel};
  if (opt_.ttft_ms > 0) {
    timer.expires_after(std::chrono::milliseconds(opt_.ttft_ms));
    co_await timer.async_wait(use_nothrow);
  }
  const auto per_token = opt_.tokens_per_s > 0
                             ? std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   std::chrono::duration<double>(1.0 / opt_.tokens_per_s))
                             : std::chrono::steady_clock::duration::zero();
  // Token times are scheduled from the start, so timer overhead does not slow the rate.
  auto next_at = std::chrono::steady_clock::now();
  const auto tokens = sim_tokens(req.prompt, req.seed, req.temperature, req.max_tokens);
  out.finish_reason = "length";
  for (const auto& token : tokens) {
    if (cancel->cancelled) {
      out.finish_reason = "cancelled";
      break;
    }
    if (per_token.count() > 0 && out.completion_tokens > 0) {
      next_at += per_token;
      timer.expires_at(next_at);
      co_await timer.async_wait(use_nothrow);
      if (cancel->cancelled) {
        out.finish_reason = "cancelled";
        break;
      }
    }
    while (stalled_ && !cancel->cancelled) {
      // Injected stall: heartbeats go on, tokens stop (what a wedged engine looks like).
      timer.expires_after(std::chrono::milliseconds(50));
      co_await timer.async_wait(use_nothrow);
    }
    std::string piece = token;
    bool stopped = false;
    for (const auto& stop : req.stop) {
      // A stop string ends the text before it; the stop string itself is not returned.
      const auto combined = out.text + piece;
      const auto at = combined.find(stop);
      if (at != std::string::npos) {
        piece = combined.substr(out.text.size(), at >= out.text.size() ? at - out.text.size() : 0);
        stopped = true;
        break;
      }
    }
    ++out.completion_tokens;
    if (!piece.empty()) {
      out.text += piece;
      on_chunk(piece);
    }
    if (stopped) {
      out.finish_reason = "stop";
      break;
    }
  }
  co_return out;
}

BackendResult<std::vector<std::vector<std::int64_t>>> SimBackend::batch_tokenize(
    const std::string& model, const std::vector<std::string>& texts) {
  if (auto err = check_model(model)) return *err;
  std::vector<std::vector<std::int64_t>> out;
  out.reserve(texts.size());
  for (const auto& t : texts) {
    std::vector<std::int64_t> ids;
    ids.reserve(t.size());
    for (unsigned char c : t) ids.push_back(c);
    out.push_back(std::move(ids));
  }
  return out;
}

BackendResult<std::string> SimBackend::detokenize(const std::string& model,
                                                  const std::vector<std::int64_t>& tokens) {
  if (auto err = check_model(model)) return *err;
  std::string out;
  out.reserve(tokens.size());
  for (const auto t : tokens) {
    if (t < 0 || t > 255) {
      return BackendError{RpcError::invalid_params,
                          fmt::format("token {} is outside the sim vocabulary 0..255", t),
                          json{{"token", t}}};
    }
    out.push_back(static_cast<char>(t));
  }
  return out;
}

}  // namespace drover::worker
