#include "bench/scenarios/stress.hpp"

#include <fmt/format.h>

#include <iostream>

#include "bench/scenarios/report.hpp"
#include "common/error_codes.hpp"

namespace drover::bench {
namespace {

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

double error_ratio(const ThroughputResult& r) {
  const double all = static_cast<double>(r.ok + r.errors());
  return all > 0 ? static_cast<double>(r.errors()) / all : 0.0;
}

}  // namespace

std::string stress_failure(const ThroughputResult& r, const StressOptions& o) {
  if (r.client_failures > 0) {
    return fmt::format("client-side failure on {} connection(s): {}", r.client_failures,
                       r.first_client_failure);
  }
  if (r.ok == 0) return "no request succeeded";
  if (error_ratio(r) > o.max_error_ratio) {
    std::string codes;
    for (const auto& [code, count] : r.error_codes) {
      codes += fmt::format("{}{} {} x {}", codes.empty() ? "" : ", ", code,
                           default_message(static_cast<RpcError>(code)), count);
    }
    return fmt::format("error ratio {:.2f} % > {:.2f} % ({})", 100 * error_ratio(r),
                       100 * o.max_error_ratio, codes);
  }
  const double p99 = ms(r.latency.percentile(0.99));
  if (p99 > static_cast<double>(o.p99_bound.count())) {
    return fmt::format("p99 {:.3f} ms > bound {} ms", p99, o.p99_bound.count());
  }
  return {};
}

StressResult run_stress(const ThroughputOptions& base, const StressOptions& o,
                        const StepRunner& run_step) {
  StressResult out;
  for (int c = 1;; c = std::min(c * 2, o.max_connections)) {
    ThroughputOptions step = base;
    step.connections = c;
    step.duration = o.step;
    step.warmup = o.step_warmup;
    step.requests.reset();
    if (base.progress) {
      std::cerr << fmt::format("stress: {} x {} in flight ...\n", c, base.inflight);
    }
    StressStep s{c, run_step(step), {}};
    s.failure = stress_failure(s.result, o);
    out.steps.push_back(std::move(s));
    if (!out.steps.back().failure.empty()) {
      out.breaking = out.steps.size() - 1;
      break;
    }
    if (c >= o.max_connections) break;
  }
  return out;
}

std::string format_stress_text(const ThroughputOptions& base, const StressOptions& o,
                               const StressResult& r) {
  std::string out = fmt::format(
      "stress: connections doubling up to {}, {} in flight each, {} generate, max_tokens {}; "
      "a step breaks past {:.2f} % errors or p99 {} ms\n",
      o.max_connections, base.inflight, base.stream ? "streamed" : "unary", base.max_tokens,
      100 * o.max_error_ratio, o.p99_bound.count());
  out += base.direct_transport.empty()
             ? target_line(base)
             : fmt::format("target:      {} worker(s), direct over {} (each step's requests in "
                           "flight share the worker links)\n",
                           base.direct_workers, base.direct_transport);
  out += fmt::format("{:>11} {:>9} {:>10} {:>9} {:>9} {:>8}  {}\n", "connections", "in flight",
                     "req/s", "p50 ms", "p99 ms", "errors", "verdict");
  for (const StressStep& s : r.steps) {
    out += fmt::format("{:>11} {:>9} {:>10.0f} {:>9.3f} {:>9.3f} {:>8}  {}\n", s.connections,
                       s.connections * base.inflight, s.result.requests_per_s(),
                       ms(s.result.latency.percentile(0.50)), ms(s.result.latency.percentile(0.99)),
                       s.result.errors(), s.failure.empty() ? "held" : s.failure);
  }
  if (r.breaking) {
    const StressStep& b = r.steps[*r.breaking];
    out += fmt::format("breaking point: {} connections x {} in flight: {}\n", b.connections,
                       base.inflight, b.failure);
    if (*r.breaking > 0) {
      const StressStep& held = r.steps[*r.breaking - 1];
      out += fmt::format("last step held: {} connections, {:.0f} req/s\n", held.connections,
                         held.result.requests_per_s());
    }
  } else {
    out += fmt::format("no breaking point up to {} connections\n", o.max_connections);
  }
  return out;
}

nlohmann::json stress_json(const ThroughputOptions& base, const StressOptions& o,
                           const StressResult& r) {
  nlohmann::json steps = nlohmann::json::array();
  for (const StressStep& s : r.steps) {
    ThroughputOptions step = base;
    step.connections = s.connections;
    step.duration = o.step;
    step.warmup = o.step_warmup;
    nlohmann::json j = to_json(step, s.result, "stress.step");
    j["verdict"] = s.failure.empty() ? "held" : "broke";
    if (!s.failure.empty()) j["failure"] = s.failure;
    steps.push_back(std::move(j));
  }
  nlohmann::json out = {{"scenario", "stress"},
                        {"bounds", {{"max_error_ratio", o.max_error_ratio},
                                    {"p99_bound_ms", o.p99_bound.count()},
                                    {"max_connections", o.max_connections},
                                    {"step_s", std::chrono::duration<double>(o.step).count()}}},
                        {"steps", steps}};
  if (r.breaking) {
    out["breaking_point"] = {{"connections", r.steps[*r.breaking].connections},
                             {"inflight", base.inflight},
                             {"failure", r.steps[*r.breaking].failure}};
  } else {
    out["breaking_point"] = nullptr;
  }
  return out;
}

}  // namespace drover::bench
