#include "worker/backends/tinyllm/tinyllm_backend.hpp"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>

#include "common/log.hpp"
#include "worker/backends/tinyllm/completion.hpp"
#include "worker/backends/tinyllm/sampler.hpp"

namespace drover::worker {
namespace asio = boost::asio;
using namespace tinyllm;

namespace {

// Prompt tokens forwarded per compute step: large enough that the hop to the io thread and
// back (a few microseconds) is noise, small enough that a cancel or another request's token
// waits for at most this many forward passes.
constexpr int kPrefillChunk = 16;

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

std::string default_name(const TinyLlmOptions& o) {
  if (!o.model_name.empty()) return o.model_name;
  const auto stem = std::filesystem::path(o.model_path).stem().string();
  return stem.empty() ? std::string("tinyllm") : stem;
}

}  // namespace

TinyLlmBackend::TinyLlmBackend(asio::any_io_executor executor, TinyLlmOptions options)
    : executor_(std::move(executor)), opt_(std::move(options)), name_(default_name(opt_)) {}

TinyLlmBackend::~TinyLlmBackend() {
  // Let the step in flight (and any queued one) finish: they use model_ and the sequences of
  // generations that are still suspended on the io_context.
  compute_.join();
}

// Runs fn on the compute thread; the calling coroutine resumes on its own executor (the
// io_context), which counts as having work meanwhile, so its run() does not return early. An
// exception from fn is rethrown in the coroutine.
// g++ 12 destroys a temporary lambda inside a co_await expression twice, so callers pass a
// named lambda (co_await on_compute(std::move(work))), never a temporary one.
template <typename F>
asio::awaitable<void> TinyLlmBackend::on_compute(F&& fn) {
  return asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr)>(
      [this](auto handler, std::decay_t<F> f) {
        auto resume_on = asio::prefer(asio::get_associated_executor(handler, executor_),
                                      asio::execution::outstanding_work.tracked);
        asio::post(compute_, [handler = std::move(handler), f = std::move(f),
                              resume_on = std::move(resume_on)]() mutable {
          std::exception_ptr error;
          try {
            f();
          } catch (...) {
            error = std::current_exception();  // handed to the coroutine, which rethrows it
          }
          asio::post(resume_on,
                     [handler = std::move(handler), error]() mutable { handler(error); });
        });
      },
      asio::use_awaitable, std::forward<F>(fn));
}

asio::awaitable<BackendResult<json>> TinyLlmBackend::load() {
  using R = BackendResult<json>;
  if (opt_.model_path.empty()) {
    co_return R(
        boost::system::in_place_error,
        BackendError{RpcError::internal_error,
                     "tinyllm: no model; start drover-worker with --model-path FILE", nullptr});
  }
  if (model_) {
    co_return R(boost::system::in_place_error,
                BackendError{RpcError::internal_error, "tinyllm: model already loaded", nullptr});
  }
  struct Loaded {
    std::unique_ptr<Model> model;
    std::string error;
    double load_ms = 0;
    double warmup_ms = 0;
  };
  auto loaded = std::make_shared<Loaded>();
  const TinyLlmOptions opt = opt_;
  auto work = [loaded, opt] {
    const auto start = std::chrono::steady_clock::now();
    auto cp = Checkpoint::open(opt.model_path);
    if (!cp) {
      loaded->error = cp.error();
      return;
    }
    cp->prefetch();
    const std::string tok_path =
        !opt.tokenizer_path.empty()
            ? opt.tokenizer_path
            : (std::filesystem::path(opt.model_path).parent_path() / "tokenizer.bin").string();
    auto tok = Tokenizer::load(tok_path, cp->config().vocab_size);
    if (!tok) {
      loaded->error = tok.error();
      return;
    }
    auto model = std::make_unique<Model>(Model{std::move(*cp), std::move(*tok), nullptr});
    model->transformer = std::make_unique<Transformer>(model->checkpoint, opt.threads);
    loaded->load_ms = ms_since(start);
    // Warm-up: one forward pass reads every weight once, so the first request does not pay
    // for page faults (minor ones when another worker already has the file in page cache).
    const auto warm = std::chrono::steady_clock::now();
    auto seq = model->transformer->new_sequence();
    model->transformer->forward(seq, kBosToken, 0, true);
    loaded->warmup_ms = ms_since(warm);
    loaded->model = std::move(model);
  };
  co_await on_compute(std::move(work));
  if (!loaded->model) {
    co_return R(boost::system::in_place_error,
                BackendError{RpcError::internal_error, loaded->error, json{{"model", name_}}});
  }
  model_ = std::move(loaded->model);
  const ModelConfig& c = model_->checkpoint.config();
  component_logger("tinyllm")->info(
      "loaded {} from {}: dim {}, hidden {}, {} layers, {} heads ({} kv), vocab {}{}, seq_len {}, "
      "{} parameters, {} threads; load {:.1f} ms, warm-up {:.1f} ms",
      name_, model_->checkpoint.path(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
      c.vocab_size, c.shared_classifier ? "" : " (unshared classifier)", c.seq_len,
      c.parameter_count(), model_->transformer->threads(), loaded->load_ms, loaded->warmup_ms);
  co_return R(boost::system::in_place_value, json{{"models", models()},
                                                  {"load_ms", loaded->load_ms},
                                                  {"warmup_ms", loaded->warmup_ms},
                                                  {"model",
                                                   {{"id", name_},
                                                    {"path", model_->checkpoint.path()},
                                                    {"dim", c.dim},
                                                    {"hidden_dim", c.hidden_dim},
                                                    {"n_layers", c.n_layers},
                                                    {"n_heads", c.n_heads},
                                                    {"n_kv_heads", c.n_kv_heads},
                                                    {"vocab_size", c.vocab_size},
                                                    {"seq_len", c.seq_len},
                                                    {"shared_classifier", c.shared_classifier},
                                                    {"parameters", c.parameter_count()},
                                                    {"file_bytes", model_->checkpoint.file_bytes()},
                                                    {"threads", model_->transformer->threads()}}}});
}

std::optional<BackendError> TinyLlmBackend::check_model(const std::string& model) const {
  if (!model.empty() && model != name_) {
    return BackendError{RpcError::unknown_model, fmt::format("Unknown model '{}'", model),
                        json{{"model", model}}};
  }
  if (!model_) return BackendError{RpcError::internal_error, "tinyllm: model not loaded", nullptr};
  return std::nullopt;
}

asio::awaitable<BackendResult<GenerateOutcome>> TinyLlmBackend::generate(
    const GenerateRequest& req, ChunkSink on_chunk, std::shared_ptr<CancelFlag> cancel) {
  using R = BackendResult<GenerateOutcome>;
  if (auto err = check_model(req.model)) co_return R(boost::system::in_place_error, *err);
  const Model& m = *model_;
  const ModelConfig& c = m.checkpoint.config();

  // Everything the compute thread touches lives in one shared block, so it stays valid even
  // if this coroutine were destroyed while a step runs.
  struct Job {
    std::vector<int> prompt;
    Transformer::Sequence seq;
    Sampler sampler;
    int next = 0;
  };
  const std::string prompt = req.prompt;
  auto job = std::make_shared<Job>(
      Job{{},
          m.transformer->new_sequence(),
          Sampler(c.vocab_size, static_cast<float>(std::max(0.0, req.temperature)),
                  static_cast<float>(req.top_p), req.seed),
          0});
  auto encode = [job, &m, prompt] { job->prompt = m.tokenizer.encode(prompt, true, false); };
  co_await on_compute(std::move(encode));
  const int n_prompt = static_cast<int>(job->prompt.size());
  if (n_prompt > c.seq_len) {
    co_return R(boost::system::in_place_error,
                BackendError{RpcError::invalid_params,
                             fmt::format("prompt is {} tokens; model '{}' has a context of {}",
                                         n_prompt, name_, c.seq_len),
                             json{{"prompt_tokens", n_prompt}, {"seq_len", c.seq_len}}});
  }

  GenerateOutcome out;
  out.prompt_tokens = n_prompt;
  out.finish_reason = "length";
  // The last prompt token's forward pass yields the first new token; each new token but the
  // last is forwarded at the next position, so at most seq_len - n_prompt + 1 fit.
  const int max_new = std::max(0, std::min(req.max_tokens, c.seq_len - n_prompt + 1));
  Completion completion(req.stop);
  auto emit = [&](const std::string& text) {
    if (!text.empty() && req.stream) on_chunk(text);
  };

  // Prompt positions 0 .. n_prompt - 2 only fill the KV cache.
  int pos = 0;
  while (max_new > 0 && pos < n_prompt - 1) {
    if (cancel->cancelled) break;
    const int end = std::min(n_prompt - 1, pos + kPrefillChunk);
    auto prefill = [job, &m, pos, end] {
      for (int p = pos; p < end; ++p) {
        m.transformer->forward(job->seq, job->prompt[static_cast<std::size_t>(p)], p, false);
      }
    };
    co_await on_compute(std::move(prefill));
    pos = end;
  }
  int token = job->prompt.back();
  while (out.completion_tokens < max_new) {
    if (cancel->cancelled) break;
    auto step = [job, &m, token, pos] {
      job->next = job->sampler.sample(m.transformer->forward(job->seq, token, pos, true));
    };
    co_await on_compute(std::move(step));
    ++pos;
    ++out.completion_tokens;
    const int next = job->next;
    if (next == kBosToken || next == kEosToken) {
      out.finish_reason = "stop";
      break;
    }
    emit(completion.push(m.tokenizer.decode(token, next)));
    if (completion.stopped()) {
      out.finish_reason = "stop";
      break;
    }
    token = next;
  }
  if (cancel->cancelled && out.finish_reason == "length" && out.completion_tokens < max_new) {
    out.finish_reason = "cancelled";
  }
  emit(completion.finish());
  out.text = completion.text();
  co_return out;
}

BackendResult<std::vector<std::vector<std::int64_t>>> TinyLlmBackend::batch_tokenize(
    const std::string& model, const std::vector<std::string>& texts) {
  if (auto err = check_model(model)) return *err;
  std::vector<std::vector<std::int64_t>> out;
  out.reserve(texts.size());
  for (const auto& t : texts) {
    const auto ids = model_->tokenizer.encode(t, true, false);
    out.emplace_back(ids.begin(), ids.end());
  }
  return out;
}

BackendResult<std::string> TinyLlmBackend::detokenize(const std::string& model,
                                                      const std::vector<std::int64_t>& tokens) {
  if (auto err = check_model(model)) return *err;
  const int vocab = model_->tokenizer.vocab_size();
  std::vector<int> ids;
  ids.reserve(tokens.size());
  for (const auto t : tokens) {
    if (t < 0 || t >= vocab) {
      return BackendError{RpcError::invalid_params,
                          fmt::format("token {} is outside the vocabulary 0..{} of model '{}'", t,
                                      vocab - 1, name_),
                          json{{"token", t}}};
    }
    ids.push_back(static_cast<int>(t));
  }
  return sanitize_utf8(model_->tokenizer.decode_all(ids));
}

}  // namespace drover::worker
