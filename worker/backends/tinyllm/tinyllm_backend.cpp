#include "worker/backends/tinyllm/tinyllm_backend.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <filesystem>

#include "common/log.hpp"
#include "worker/backends/tinyllm/completion.hpp"
#include "worker/backends/tinyllm/sampler.hpp"

namespace drover::worker {
namespace asio = boost::asio;
using namespace tinyllm;

namespace {

// Prompt tokens of one generation forwarded per step (in one matrix-matrix pass): large
// enough that the weights are read once for many positions, small enough that a cancel or the
// other generations' next tokens wait for at most this many more rows.
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
    : executor_(std::move(executor)),
      opt_(std::move(options)),
      name_(default_name(opt_)),
      max_batch_(std::max(1, opt_.max_batch)) {}

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
      "{} parameters ({} weights), {} threads; load {:.1f} ms, warm-up {:.1f} ms",
      name_, model_->checkpoint.path(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
      c.vocab_size, c.shared_classifier ? "" : " (unshared classifier)", c.seq_len,
      c.parameter_count(), weights_name(model_->checkpoint), model_->transformer->threads(),
      loaded->load_ms, loaded->warmup_ms);
  co_return R(boost::system::in_place_value, json{{"models", models()},
                                                  {"load_ms", loaded->load_ms},
                                                  {"warmup_ms", loaded->warmup_ms},
                                                  {"max_batch", max_batch_},
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
                                                    {"weights", weights_name(model_->checkpoint)},
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

// One generation in the batch. The io-thread fields are touched only there; the compute-thread
// fields only inside a step (while the io thread waits for it, it does not read them).
struct TinyLlmBackend::Job {
  Job(asio::any_io_executor ex, const GenerateRequest& r, ChunkSink sink,
      std::shared_ptr<CancelFlag> c, const Transformer& t)
      : prompt_text(r.prompt),
        max_tokens(r.max_tokens),
        stream(r.stream),
        on_chunk(std::move(sink)),
        cancel(std::move(c)),
        done(std::move(ex), asio::steady_timer::time_point::max()),
        seq(t.new_sequence()),
        sampler(t.config().vocab_size, static_cast<float>(std::max(0.0, r.temperature)),
                static_cast<float>(r.top_p), r.seed),
        completion(r.stop) {}

  // The request (io thread, read-only afterwards).
  std::string prompt_text;
  int max_tokens;
  bool stream;
  ChunkSink on_chunk;
  std::shared_ptr<CancelFlag> cancel;
  asio::steady_timer done;  // cancelled when `result` is set
  std::optional<BackendResult<GenerateOutcome>> result;
  // Seen cancelled before a step: the step leaves it out and the io thread finishes it.
  bool cancel_seen = false;

  // Compute thread: the prompt (encoded in the job's first step), the KV cache, sampling.
  bool encoded = false;
  std::optional<BackendError> error;
  std::vector<int> prompt;
  int max_new = 0;
  Transformer::Sequence seq;
  Sampler sampler;
  int pos = 0;    // the next position to forward
  int token = 0;  // the token to forward at `pos` once the prompt is in the cache
  std::optional<int> sampled;  // the token this step sampled, if it reached the prompt's end

  // io thread: what the client gets.
  Completion completion;
  GenerateOutcome out;
};

asio::awaitable<BackendResult<GenerateOutcome>> TinyLlmBackend::generate(
    const GenerateRequest& req, ChunkSink on_chunk, std::shared_ptr<CancelFlag> cancel) {
  using R = BackendResult<GenerateOutcome>;
  if (auto err = check_model(req.model)) co_return R(boost::system::in_place_error, *err);
  auto job = std::make_shared<Job>(executor_, req, std::move(on_chunk), std::move(cancel),
                                   *model_->transformer);
  waiting_.push_back(job);
  if (!stepping_) {
    // Started by a post, so every generate of the message being handled (a batch from
    // droverd's batch queue) joins before the first step: they start together.
    stepping_ = true;
    asio::co_spawn(executor_, run_steps(), asio::detached);
  }
  if (!job->result) {
    // Woken by finish(), which cancels the timer; the error code says so and is expected.
    co_await job->done.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return std::move(*job->result);
}

// Iteration-level scheduling: each step admits waiting generations (up to max_batch running),
// runs one forward pass over every running one (a chunk of its prompt, or its next token) on
// the compute thread, then, back on the io thread, turns each sampled token into text, and
// drops the generations that ended. Between two steps the io thread serves cancels, heartbeats
// and new requests; cancel is checked before every step.
asio::awaitable<void> TinyLlmBackend::run_steps() {
  co_await asio::post(executor_, asio::use_awaitable);
  Transformer& t = *model_->transformer;
  const Tokenizer& tok = model_->tokenizer;
  const ModelConfig& c = model_->checkpoint.config();
  const std::string name = name_;
  std::vector<Transformer::Row> rows;
  std::vector<Job*> owner;  // rows[i] belongs to owner[i]
  while (!running_.empty() || !waiting_.empty()) {
    // Cancelled while waiting for a place: ends now, before its prompt is even read.
    std::erase_if(waiting_, [](const std::shared_ptr<Job>& j) {
      if (!j->cancel->cancelled) return false;
      j->out.finish_reason = "cancelled";
      j->result.emplace(std::move(j->out));
      j->done.cancel();
      return true;
    });
    while (!waiting_.empty() && static_cast<int>(running_.size()) < max_batch_) {
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    for (auto& j : running_) j->cancel_seen = j->cancel->cancelled;
    auto step = [this, &t, &tok, &c, &name, &rows, &owner] {
      rows.clear();
      owner.clear();
      for (auto& jp : running_) {
        Job& j = *jp;
        j.sampled.reset();
        if (!j.encoded) {
          j.encoded = true;
          j.prompt = tok.encode(j.prompt_text, true, false);
          const int n = static_cast<int>(j.prompt.size());
          if (n > c.seq_len) {
            j.error = BackendError{
                RpcError::invalid_params,
                fmt::format("prompt is {} tokens; model '{}' has a context of {}", n, name,
                            c.seq_len),
                json{{"prompt_tokens", n}, {"seq_len", c.seq_len}}};
          }
          // The last prompt token's forward pass yields the first new token; each new token
          // but the last is forwarded at the next position, so at most seq_len - n + 1 fit.
          j.max_new = std::max(0, std::min(j.max_tokens, c.seq_len - n + 1));
          j.token = j.prompt.back();
        }
        if (j.error || j.cancel_seen || j.max_new == 0) continue;
        // Prompt positions 0 .. n-2 only fill the KV cache (up to kPrefillChunk of them per
        // step, so a long prompt delays the others' next token by that much at most); the
        // last prompt token, then each sampled one, yields the next token.
        const int last_prompt = static_cast<int>(j.prompt.size()) - 1;
        int added = 0;
        for (; j.pos + added < last_prompt && added < kPrefillChunk; ++added) {
          rows.push_back({&j.seq, j.prompt[static_cast<std::size_t>(j.pos + added)],
                          j.pos + added, false});
          owner.push_back(&j);
        }
        if (j.pos + added >= last_prompt && added < kPrefillChunk) {
          rows.push_back({&j.seq, j.token, j.pos + added, true});
          owner.push_back(&j);
          ++added;
        }
        j.pos += added;
      }
      t.forward(rows);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].want_logits) owner[i]->sampled = owner[i]->sampler.sample(t.logits(i));
      }
    };
    std::exception_ptr failed;
    const auto started = std::chrono::steady_clock::now();
    try {
      co_await on_compute(std::move(step));
    } catch (...) {
      failed = std::current_exception();
    }
    ++steps_;
    ++step_stats_.steps;
    step_stats_.busy += std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    if (failed) {
      // A step that threw (out of memory) ends the generations in it, not the worker.
      std::string what = "tinyllm: forward pass failed";
      try {
        std::rethrow_exception(failed);
      } catch (const std::exception& e) {
        what += std::string(": ") + e.what();
      } catch (...) {
      }
      for (auto& j : running_) {
        j->result.emplace(boost::system::in_place_error,
                          BackendError{RpcError::internal_error, what, nullptr});
        j->done.cancel();
      }
      running_.clear();
      continue;
    }
    std::erase_if(running_, [&](const std::shared_ptr<Job>& jp) { return after_step(*jp, tok); });
  }
  stepping_ = false;
}

bool TinyLlmBackend::after_step(Job& j, const Tokenizer& tok) {
  GenerateOutcome& out = j.out;
  out.prompt_tokens = static_cast<int>(j.prompt.size());
  auto emit = [&j](const std::string& text) {
    if (!text.empty() && j.stream) j.on_chunk(text);
  };
  auto finish = [&](std::string reason) {
    out.finish_reason = std::move(reason);
    emit(j.completion.finish());
    out.text = j.completion.text();
    j.result.emplace(std::move(out));
    j.done.cancel();
    return true;
  };
  if (j.error) {
    j.result.emplace(boost::system::in_place_error, std::move(*j.error));
    j.done.cancel();
    return true;
  }
  if (j.cancel_seen) return finish("cancelled");
  if (j.max_new == 0) return finish("length");
  if (!j.sampled) return false;  // still in the prompt
  const int next = *j.sampled;
  ++out.completion_tokens;
  if (next == kBosToken || next == kEosToken) return finish("stop");
  emit(j.completion.push(tok.decode(j.token, next)));
  if (j.completion.stopped()) return finish("stop");
  j.token = next;
  if (out.completion_tokens >= j.max_new) return finish("length");
  return false;
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
