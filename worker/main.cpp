// drover-worker: the reference worker process. Reads its identity and control socket from the
// environment droverd sets (DROVER_WORKER_ID, DROVER_CONTROL_SOCKET), builds the backend that
// init names, and serves until told to stop. Backend options are flags, so a pool's
// workers.command carries them (e.g. [drover-worker, --ttft-ms, "20"], or
// [drover-worker, --model-path, build/models/tinyllm.bin, --threads, "1"] for tinyllm).
// With --stdio it speaks the same protocol on stdin/stdout instead (logs stay on stderr), for
// supervisors that spawn workers with pipes, such as the Node baseline in bench/baselines/node.
#include <CLI/CLI.hpp>

#include <boost/asio/io_context.hpp>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>

#include "common/log.hpp"
#include "proto/worker_codec.hpp"
#include "worker/backends/sim_backend.hpp"
#include "worker/backends/tinyllm/tinyllm_backend.hpp"
#include "worker/runtime/worker_runtime.hpp"

int main(int argc, char** argv) {
  CLI::App app{"drover-worker: inference worker process for droverd"};
  drover::worker::RuntimeOptions rt;
  drover::worker::SimOptions sim;
  drover::worker::TinyLlmOptions tinyllm;
  std::string model_name;
  std::string log_level = "info";
  if (const char* s = std::getenv(drover::proto::worker::kEnvControlSocket)) rt.control_socket = s;
  if (const char* id = std::getenv(drover::proto::worker::kEnvWorkerId)) rt.worker_id = std::atoi(id);
  app.add_flag("--stdio", rt.stdio,
               "speak the worker protocol on stdin/stdout instead of the control socket");
  app.add_option("--control-socket", rt.control_socket, "control socket to connect to")
      ->envname(drover::proto::worker::kEnvControlSocket);
  app.add_option("--worker-id", rt.worker_id, "worker id")->envname(drover::proto::worker::kEnvWorkerId);
  app.add_option("--max-message-bytes", rt.max_message_bytes,
                 "longest request accepted from the supervisor; a longer one is answered -32007")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 32));
  app.add_option("--model", model_name,
                 "model id served (default: sim for sim, the checkpoint's file stem for tinyllm)");
  app.add_option("--model-path", tinyllm.model_path,
                 "tinyllm: llama2.c checkpoint file (default: the model the build generates, "
                 "../models/tinyllm.bin beside this program)");
  app.add_option("--tokenizer-path", tinyllm.tokenizer_path,
                 "tinyllm: tokenizer.bin (default: tokenizer.bin beside the checkpoint)");
  app.add_option("--threads", tinyllm.threads, "tinyllm: threads per forward pass")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--max-batch", tinyllm.max_batch,
                 "tinyllm: generations computed together per step (continuous batching); more "
                 "wait for a free place")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--load-ms", sim.load_ms, "sim: model load time")->check(CLI::Range(0, 3'600'000));
  app.add_option("--ttft-ms", sim.ttft_ms, "sim: time to first token")->check(CLI::Range(0, 3'600'000));
  app.add_option("--tokens-per-s", sim.tokens_per_s, "sim: generation rate (0: unlimited)")
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--crash-after", sim.crash_after, "sim: exit abruptly on request N+1")
      ->check(CLI::Range(-1, 1'000'000'000));
  app.add_option("--hang-after", sim.hang_after, "sim: stop responding on request N+1")
      ->check(CLI::Range(-1, 1'000'000'000));
  app.add_option("--garbage-after", sim.garbage_after, "sim: write garbage on request N+1")
      ->check(CLI::Range(-1, 1'000'000'000));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off");
  CLI11_PARSE(app, argc, argv);
  if (rt.control_socket.empty() && !rt.stdio) {
    std::cerr << "drover-worker: no control socket (set " << drover::proto::worker::kEnvControlSocket
              << " or pass --control-socket); droverd starts workers itself\n";
    return 2;
  }
  drover::configure_logging(log_level, drover::LogFormat::text);
  // The link is written with write(2) (a descriptor, so sockets and pipes look alike): a
  // supervisor that went away must surface as EPIPE, which ends the run, not as a SIGPIPE death.
  std::signal(SIGPIPE, SIG_IGN);
  if (tinyllm.model_path.empty()) {
    // The build writes the shipped model to <build>/models; this program is <build>/bin.
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) tinyllm.model_path = (self.parent_path().parent_path() / "models" / "tinyllm.bin").string();
  }
  if (!model_name.empty()) {
    sim.model = model_name;
    tinyllm.model_name = model_name;
  }

  boost::asio::io_context io;
  // init builds the backend the flags describe (spec.id empty); load_model builds a catalog
  // model: the flags' options with the catalog's id, path and options on top.
  auto factory = [&io, &sim, &tinyllm](const drover::ModelSpec& spec)
      -> boost::system::result<std::unique_ptr<drover::worker::Backend>, std::string> {
    using Result = boost::system::result<std::unique_ptr<drover::worker::Backend>, std::string>;
    const auto& o = spec.options;
    auto number = [&o](const char* key, auto fallback) {
      const auto it = o.find(key);
      return it != o.end() && it->is_number() ? it->get<decltype(fallback)>() : fallback;
    };
    for (const auto& [key, value] : o.items()) {
      static const std::set<std::string> known = {"load_ms", "ttft_ms", "tokens_per_s", "threads",
                                                  "tokenizer_path", "max_batch"};
      if (!known.contains(key)) {
        return Result(boost::system::in_place_error,
                      "unknown option '" + key + "' (known: load_ms, ttft_ms, tokens_per_s for sim; "
                      "threads, tokenizer_path, max_batch for tinyllm)");
      }
    }
    if (spec.backend == "sim") {
      auto options = sim;
      if (!spec.id.empty()) options.model = spec.id;
      options.load_ms = number("load_ms", options.load_ms);
      options.ttft_ms = number("ttft_ms", options.ttft_ms);
      options.tokens_per_s = number("tokens_per_s", options.tokens_per_s);
      return std::unique_ptr<drover::worker::Backend>(
          std::make_unique<drover::worker::SimBackend>(io.get_executor(), options));
    }
    if (spec.backend == "tinyllm") {
      auto options = tinyllm;
      if (!spec.id.empty()) {
        options.model_name = spec.id;
        options.tokenizer_path.clear();  // beside the catalog's checkpoint unless given
      }
      if (!spec.path.empty()) options.model_path = spec.path;
      if (const auto t = o.find("tokenizer_path"); t != o.end() && t->is_string()) {
        options.tokenizer_path = t->get<std::string>();
      }
      options.threads = number("threads", options.threads);
      if (const auto mb = o.find("max_batch"); mb != o.end()) {
        if (!mb->is_number_integer() || mb->get<std::int64_t>() < 1 || mb->get<std::int64_t>() > 256) {
          return Result(boost::system::in_place_error,
                        "option 'max_batch' must be an integer in 1..256");
        }
        options.max_batch = mb->get<int>();
      }
      return std::unique_ptr<drover::worker::Backend>(
          std::make_unique<drover::worker::TinyLlmBackend>(io.get_executor(), options));
    }
    return Result(boost::system::in_place_error,
                  "unknown backend '" + spec.backend + "' (available: sim, tinyllm)");
  };
  drover::worker::WorkerRuntime runtime(io, rt, factory);
  int exit_code = 1;
  boost::asio::co_spawn(io, runtime.run(), [&](std::exception_ptr e, int code) {
    if (e) std::rethrow_exception(e);
    exit_code = code;
    io.stop();
  });
  io.run();
  return exit_code;
}
