// drover-bench: load generator for droverd (shared/DESIGN.md section 2). Parses flags, runs one
// scenario and prints its report; the scenarios live in their own files. Modes so far:
// `throughput` (bench/scenarios/throughput.hpp).
//
// Exit status: 0 when the run completed; 1 when a connection failed on the client side or no
// request succeeded (JSON-RPC error replies are reported, not fatal); 2 for bad flags.
#include <CLI/CLI.hpp>
#include <iostream>
#include <stdexcept>

#include "bench/scenarios/report.hpp"
#include "bench/scenarios/throughput.hpp"

namespace {

std::chrono::milliseconds from_seconds(double s) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000.0));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"drover-bench: load, stress and regression tool for droverd"};
  app.require_subcommand(1);

  drover::bench::ThroughputOptions opt;
  double duration_s = 10.0, warmup_s = 1.0, timeout_s = 30.0;
  std::int64_t requests = 0;
  bool json_output = false;
  std::string framing = "ndjson";

  CLI::App* tp = app.add_subcommand(
      "throughput", "closed-loop load: C connections, each keeping P generate requests in flight");
  tp->add_option("--socket", opt.socket, "droverd client socket")->capture_default_str();
  tp->add_option("-c,--connections", opt.connections, "connections, one thread each")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  tp->add_option("-p,--inflight", opt.inflight,
                 "requests kept in flight per connection (pipelined)")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  auto* duration = tp->add_option("-d,--duration-s", duration_s, "measured seconds after warm-up")
                       ->check(CLI::Range(0.001, 86400.0))
                       ->capture_default_str();
  tp->add_option("-n,--requests", requests, "measure exactly N requests instead of a duration")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->excludes(duration);
  tp->add_option("--warmup-s", warmup_s, "seconds of unmeasured load before the window")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  tp->add_option("--timeout-s", timeout_s, "give up a connection that waits this long for a reply")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  tp->add_option("--max-tokens", opt.max_tokens, "generate max_tokens")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  tp->add_flag("--stream", opt.stream, "streamed generate (chunks, then the final reply)");
  tp->add_option("--prompt", opt.prompt, "generate prompt")->capture_default_str();
  tp->add_option("--model", opt.model, "generate model (default: the pool's default)");
  tp->add_option("--framing", framing, "ndjson or content-length")
      ->check(CLI::IsMember({"ndjson", "content-length"}))
      ->capture_default_str();
  tp->add_flag("--json", json_output, "print one JSON object instead of text");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);  // prints help, version or the error
    return status == 0 ? 0 : 2;
  }

  opt.duration = from_seconds(duration_s);
  opt.warmup = from_seconds(warmup_s);
  opt.reply_timeout = from_seconds(timeout_s);
  if (requests > 0) opt.requests = requests;
  opt.framing = framing == "content-length" ? drover::proto::Framing::content_length
                                            : drover::proto::Framing::ndjson;

  try {
    const drover::bench::ThroughputResult result = drover::bench::run_throughput(opt);
    std::cout << (json_output ? drover::bench::format_json(opt, result)
                              : drover::bench::format_text(opt, result))
              << std::endl;
    return result.client_failures > 0 || result.ok == 0 ? 1 : 0;
  } catch (const std::runtime_error& e) {
    std::cerr << "drover-bench: " << e.what() << "\n";
    return 1;
  }
}
