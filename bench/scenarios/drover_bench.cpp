// drover-bench: load generator for droverd (shared/DESIGN.md section 2). Parses flags, runs one
// scenario and prints its report; the scenarios live in their own files:
//   throughput  closed-loop load, C connections x P in flight   (throughput.hpp)
//   ttft        N streamed requests, time to first chunk         (throughput.hpp, report.hpp)
//   stress      ramp connections until errors or p99 break       (stress.hpp)
//   regression  rerun a stored --json baseline, fail beyond ±10 % (regression.hpp)
// Every scenario runs against droverd's client socket (--socket) or, with --direct, against one
// worker that drover-bench spawns and initialises itself, with nothing in between: the physical
// reference for what the supervisor adds (direct_worker.hpp). In direct mode the C x P requests
// in flight all share the worker's one link; with --direct-workers N, N workers are spawned and
// the C x P requests are split evenly over their N links (client-side balancing, the ideal a
// supervisor of N workers can only approach).
//
// Exit status: 0 when the run completed (regression: and nothing regressed); 1 when a
// connection failed on the client side, no request succeeded, the direct worker could not be
// started, or (regression) a figure regressed; 2 for bad flags, an unreadable baseline, or a
// baseline whose load shape differs from the run it is compared with.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "bench/scenarios/chaos.hpp"
#include "bench/scenarios/direct_worker.hpp"
#include "bench/scenarios/regression.hpp"
#include "bench/scenarios/report.hpp"
#include "bench/scenarios/stress.hpp"
#include "bench/scenarios/throughput.hpp"
#include "common/run_paths.hpp"

namespace {

using drover::bench::ThroughputOptions;
using drover::bench::ThroughputResult;

std::chrono::milliseconds from_seconds(double s) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000.0));
}

// Where the load goes: droverd's socket, or one worker this process spawns (--direct).
struct Target {
  bool direct = false;
  int workers = 1;
  drover::bench::DirectOptions worker;
  std::string worker_args;  // split on spaces into worker.worker_args
};

// Runs throughput passes against the target. In direct mode the workers are started once and
// kept for every pass (stress steps), so each pass is one more run on their links.
class Runner {
 public:
  explicit Runner(Target target) : target_(std::move(target)) {
    if (!target_.direct) return;
    std::istringstream words(target_.worker_args);
    for (std::string w; words >> w;) target_.worker.worker_args.push_back(w);
    for (int i = 0; i < target_.workers; ++i) {
      drover::bench::DirectOptions w = target_.worker;
      w.worker_id = i;
      workers_.push_back(std::make_unique<drover::bench::DirectWorker>(w));
    }
  }

  ThroughputResult run(ThroughputOptions& o) {
    if (workers_.empty()) return drover::bench::run_throughput(o);
    o.direct_transport = transport();
    o.direct_workers = static_cast<int>(workers_.size());
    const int total = o.connections * o.inflight;
    const int n = static_cast<int>(workers_.size());
    if (total % n != 0) {
      throw std::runtime_error(fmt::format(
          "--direct-workers {}: C x P = {} in flight does not split evenly over the workers", n, total));
    }
    ThroughputOptions on_link = o;
    on_link.inflight = total / n;
    std::vector<drover::client::RpcClient*> links;
    for (auto& w : workers_) links.push_back(&w->link());
    return drover::bench::run_throughput_on(on_link, links);
  }

  // The direct workers' transport, or empty when the target is droverd.
  std::string transport() const { return workers_.empty() ? std::string() : workers_[0]->transport(); }

 private:
  Target target_;
  std::vector<std::unique_ptr<drover::bench::DirectWorker>> workers_;
};

void add_target_options(CLI::App* sub, ThroughputOptions& opt, Target& target) {
  sub->add_option("--socket", opt.socket,
                  "droverd client socket: a Unix socket path, tcp://HOST:PORT or tls://HOST:PORT "
                  "(TLS files from DROVER_TLS_CA, DROVER_TLS_CERT, DROVER_TLS_KEY)")
      ->capture_default_str();
  sub->add_flag("--direct", target.direct,
                "no droverd: spawn one drover-worker and drive its worker protocol directly "
                "(the C x P requests in flight share its one link)");
  sub->add_option("--direct-workers", target.workers,
                  "--direct: spawn N workers and split the in-flight requests evenly over them")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_option("--worker-bin", target.worker.worker_bin,
                  "--direct: the worker program (default: drover-worker beside drover-bench)");
  sub->add_option("--worker-args", target.worker_args,
                  "--direct: extra worker arguments, space-separated, given with '=' "
                  "(--worker-args=\"--ttft-ms 0\")");
  sub->add_flag("--worker-stdio", target.worker.stdio,
                "--direct: talk to the worker over its stdin/stdout (a socketpair, drover-worker "
                "--stdio) instead of a control socket");
  sub->add_option("--backend", target.worker.backend, "--direct: the backend init names")
      ->capture_default_str();
}

void add_request_options(CLI::App* sub, ThroughputOptions& opt, std::string& framing,
                         double& timeout_s, double& warmup_s) {
  sub->add_option("--max-tokens", opt.max_tokens, "generate max_tokens")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--prompt", opt.prompt, "generate prompt")->capture_default_str();
  sub->add_option("--model", opt.model, "generate model (default: the pool's default)");
  sub->add_option("--distinct-prompts", opt.distinct_prompts,
                  "cycle through N prompts at temperature 0 (a workload with repeats for the "
                  "prompt cache, deduplication and coalescing); 0: one prompt, not deterministic")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  sub->add_flag("--cache-bypass", opt.cache_bypass, "send cache: \"bypass\" (skip the prompt cache)");
  sub->add_option("--framing", framing, "ndjson or content-length (droverd only)")
      ->check(CLI::IsMember({"ndjson", "content-length"}))
      ->capture_default_str();
  sub->add_option("--timeout-s", timeout_s, "give up a connection that waits this long for a reply")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  sub->add_option("--warmup-s", warmup_s, "seconds of unmeasured load before the window")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
}

void add_shape_options(CLI::App* sub, ThroughputOptions& opt) {
  sub->add_option("-c,--connections", opt.connections, "connections, one thread each")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  sub->add_option("-p,--inflight", opt.inflight, "requests kept in flight per connection (pipelined)")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
}

std::optional<nlohmann::json> read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << "drover-bench: cannot read " << path << "\n";
    return std::nullopt;
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "drover-bench: " << path << " is not JSON\n";
    return std::nullopt;
  }
  return j;
}

int run_failed(const ThroughputResult& r) { return r.client_failures > 0 || r.ok == 0 ? 1 : 0; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"drover-bench: load, stress and regression tool for droverd"};
  app.require_subcommand(1);

  // droverd's default sockets: the private run directory, from the same environment.
  const std::string run_base = drover::default_run_base(drover::current_environment(), ::geteuid());
  ThroughputOptions opt;
  opt.socket = drover::default_client_socket(run_base);
  Target target;
  double duration_s = 10.0, warmup_s = 1.0, timeout_s = 30.0;
  std::int64_t requests = 0;
  bool json_output = false, progress = false;
  std::string framing = "ndjson";

  CLI::App* tp = app.add_subcommand(
      "throughput", "closed-loop load: C connections, each keeping P generate requests in flight");
  add_target_options(tp, opt, target);
  add_shape_options(tp, opt);
  auto* duration = tp->add_option("-d,--duration-s", duration_s, "measured seconds after warm-up")
                       ->check(CLI::Range(0.001, 86400.0))
                       ->capture_default_str();
  tp->add_option("-n,--requests", requests, "measure exactly N requests instead of a duration")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->excludes(duration);
  add_request_options(tp, opt, framing, timeout_s, warmup_s);
  tp->add_flag("--stream", opt.stream, "streamed generate (chunks, then the final reply)");
  tp->add_option("--idle-connections", opt.idle_connections,
                 "also hold N connections open and silent over the run (each answered one health "
                 "request first; NDJSON, not with --direct)")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  tp->add_option("--supervisor-pid", opt.supervisor_pid,
                 "report this process's CPU time over the load (from /proc/PID/stat), connection "
                 "set-up excluded");

  std::int64_t samples = 1000;
  CLI::App* ttft = app.add_subcommand(
      "ttft", "time to first chunk: N streamed generate requests (1 x 1 in flight by default)");
  add_target_options(ttft, opt, target);
  add_shape_options(ttft, opt);
  ttft->add_option("-n,--samples", samples, "streamed requests measured")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->capture_default_str();
  add_request_options(ttft, opt, framing, timeout_s, warmup_s);

  drover::bench::StressOptions stress_opt;
  double step_s = 3.0, step_warmup_s = 0.5;
  std::int64_t p99_bound_ms = 100;
  CLI::App* stress = app.add_subcommand(
      "stress", "ramp connections (1, 2, 4, ...) until errors pass a ratio or p99 a bound");
  add_target_options(stress, opt, target);
  stress->add_option("-p,--inflight", opt.inflight, "requests in flight per connection")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  stress->add_option("--max-connections", stress_opt.max_connections, "last step's connections")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  stress->add_option("--step-s", step_s, "measured seconds per step")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  stress->add_option("--step-warmup-s", step_warmup_s, "unmeasured seconds before each step")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  stress->add_option("--max-error-ratio", stress_opt.max_error_ratio, "errors / requests that break a step")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  stress->add_option("--p99-bound-ms", p99_bound_ms, "p99 that breaks a step")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{3'600'000}))
      ->capture_default_str();
  stress->add_option("--max-tokens", opt.max_tokens, "generate max_tokens")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  stress->add_flag("--stream", opt.stream, "streamed generate");
  stress->add_option("--timeout-s", timeout_s, "give up a connection that waits this long for a reply")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();

  std::string baseline_path, current_path;
  double tolerance = 0.10;
  std::optional<double> regression_duration_s;
  CLI::App* regression = app.add_subcommand(
      "regression",
      "rerun the load of a stored --json baseline and compare; exit 1 when a figure regressed");
  regression->add_option("--baseline", baseline_path, "stored drover-bench --json result")
      ->required()
      ->check(CLI::ExistingFile);
  regression->add_option("--current", current_path,
                         "compare this stored result instead of running (no load is generated)")
      ->check(CLI::ExistingFile);
  regression->add_option("--tolerance", tolerance, "allowed change, as a fraction")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  regression->add_option("-d,--duration-s", regression_duration_s,
                         "measured seconds (default: the baseline's)");
  add_target_options(regression, opt, target);
  regression->add_option("--timeout-s", timeout_s, "give up a connection that waits this long")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();

  drover::bench::ChaosOptions chaos_opt;
  chaos_opt.admin_socket = drover::default_admin_socket(run_base);
  std::int64_t chaos_interval_ms = 1000, recovery_timeout_ms = 30'000;
  double steady_s = 5.0;
  CLI::App* chaos = app.add_subcommand(
      "chaos", "closed-loop load while a random worker is killed every interval; exactly-once check");
  add_target_options(chaos, opt, target);
  add_shape_options(chaos, opt);
  chaos->add_option("-d,--duration-s", duration_s, "seconds of the chaos phase")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  add_request_options(chaos, opt, framing, timeout_s, warmup_s);
  chaos->add_flag("--stream", opt.stream, "streamed generate");
  chaos->add_option("--admin-socket", chaos_opt.admin_socket, "droverd's admin socket")
      ->capture_default_str();
  chaos->add_option("--interval-ms", chaos_interval_ms, "time between kills")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{3'600'000}))
      ->capture_default_str();
  chaos->add_option("--steady-s", steady_s, "fault-free phase before the chaos phase (0: none)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  chaos->add_flag("--via-admin", chaos_opt.via_admin, "kill with workers.kill instead of kill(2)");
  chaos->add_option("--recovery-timeout-ms", recovery_timeout_ms,
                    "how long the pool may take to be back to its size after the run")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{3'600'000}))
      ->capture_default_str();
  chaos->add_option("--seed", chaos_opt.seed, "which worker each kill picks")->capture_default_str();

  for (CLI::App* sub : {tp, ttft, stress, regression, chaos}) {
    sub->add_flag("--json", json_output, "print one JSON object instead of text");
    sub->add_flag("--progress", progress,
                  "a progress line on stderr once a second (default when stderr is a terminal)");
  }

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
  opt.progress = progress || ::isatty(STDERR_FILENO);
  if (target.direct && opt.idle_connections > 0) {
    std::cerr << "drover-bench: --idle-connections needs a supervisor's socket, not --direct\n";
    return 2;
  }
  if (target.direct && opt.framing != drover::proto::Framing::ndjson) {
    std::cerr << "drover-bench: --direct speaks the worker protocol, which is NDJSON only\n";
    return 2;
  }

  try {
    if (regression->parsed()) {
      const auto baseline = read_json_file(baseline_path);
      if (!baseline) return 2;
      nlohmann::json current;
      if (!current_path.empty()) {
        const auto stored = read_json_file(current_path);
        if (!stored) return 2;
        current = *stored;
      } else {
        drover::bench::apply_baseline_options(*baseline, opt);
        if (regression_duration_s) {
          opt.requests.reset();
          opt.duration = from_seconds(*regression_duration_s);
        }
        Runner runner(target);
        const ThroughputResult r = runner.run(opt);
        current = drover::bench::to_json(opt, r, baseline->value("scenario", std::string("throughput")));
      }
      const auto report = drover::bench::compare_runs(*baseline, current, tolerance);
      std::cout << (json_output ? drover::bench::regression_json(report, tolerance, current).dump(2)
                                : drover::bench::format_regression_text(report, tolerance))
                << std::endl;
      return report.regressed() ? 1 : 0;
    }

    if (chaos->parsed()) {
      if (target.direct) {
        std::cerr << "drover-bench: chaos needs droverd (--socket and --admin-socket), not --direct\n";
        return 2;
      }
      chaos_opt.interval = std::chrono::milliseconds(chaos_interval_ms);
      chaos_opt.steady = from_seconds(steady_s);
      chaos_opt.recovery_timeout = std::chrono::milliseconds(recovery_timeout_ms);
      const auto r = drover::bench::run_chaos(opt, chaos_opt);
      std::cout << (json_output ? drover::bench::chaos_json(opt, chaos_opt, r).dump(2)
                                : drover::bench::format_chaos_text(opt, chaos_opt, r))
                << std::endl;
      return r.failed() ? 1 : 0;
    }

    Runner runner(target);
    if (tp->parsed()) {
      const ThroughputResult r = runner.run(opt);
      std::cout << (json_output ? drover::bench::format_json(opt, r)
                                : drover::bench::format_text(opt, r))
                << std::endl;
      return run_failed(r);
    }
    if (ttft->parsed()) {
      opt.stream = true;
      opt.requests = samples;
      const ThroughputResult r = runner.run(opt);
      std::cout << (json_output ? drover::bench::to_json(opt, r, "ttft").dump(2)
                                : drover::bench::format_ttft_text(opt, r))
                << std::endl;
      return run_failed(r);
    }
    stress_opt.step = from_seconds(step_s);
    stress_opt.step_warmup = from_seconds(step_warmup_s);
    stress_opt.p99_bound = std::chrono::milliseconds(p99_bound_ms);
    const auto result = drover::bench::run_stress(
        opt, stress_opt, [&runner](const ThroughputOptions& step) {
          ThroughputOptions o = step;
          return runner.run(o);
        });
    opt.direct_transport = runner.transport();
    opt.direct_workers = target.workers;
    std::cout << (json_output ? drover::bench::stress_json(opt, stress_opt, result).dump(2)
                              : drover::bench::format_stress_text(opt, stress_opt, result))
              << std::endl;
    return result.steps.empty() || result.steps.front().result.ok == 0 ? 1 : 0;
  } catch (const std::invalid_argument& e) {
    std::cerr << "drover-bench: " << e.what() << "\n";  // runs of different shapes
    return 2;
  } catch (const std::runtime_error& e) {
    std::cerr << "drover-bench: " << e.what() << "\n";
    return 1;
  }
}
