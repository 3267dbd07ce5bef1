#include "bench/scenarios/regression.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace drover::bench {
namespace {

using json = nlohmann::json;

const json& member(const json& j, const char* key, const char* what) {
  if (!j.is_object() || !j.contains(key)) {
    throw std::runtime_error(fmt::format("{} has no '{}': not a drover-bench --json result", what, key));
  }
  return j.at(key);
}

double number_at(const json& j, const json::json_pointer& ptr, const char* what) {
  if (!j.contains(ptr) || !j.at(ptr).is_number()) {
    throw std::runtime_error(fmt::format("{} has no number at {}", what, ptr.to_string()));
  }
  return j.at(ptr).get<double>();
}

// The members of `options` that define the load; two runs are comparable when they agree.
constexpr const char* kShapeKeys[] = {"connections", "inflight", "max_tokens", "stream", "framing"};

RegressionCheck check(const std::string& metric, double base, double cur, bool higher_is_better,
                      double tolerance) {
  RegressionCheck c{metric, base, cur, higher_is_better, "ok"};
  const double worse = higher_is_better ? base * (1 - tolerance) : base * (1 + tolerance);
  const double better = higher_is_better ? base * (1 + tolerance) : base * (1 - tolerance);
  if (higher_is_better ? cur < worse : cur > worse) {
    c.verdict = "regressed";
  } else if (higher_is_better ? cur > better : cur < better) {
    c.verdict = "improved";
  }
  return c;
}

}  // namespace

bool RegressionReport::regressed() const {
  for (const auto& c : checks) {
    if (c.verdict == "regressed") return true;
  }
  return false;
}

void apply_baseline_options(const json& baseline, ThroughputOptions& o) {
  const json& opt = member(baseline, "options", "the baseline");
  o.connections = member(opt, "connections", "the baseline's options").get<int>();
  o.inflight = member(opt, "inflight", "the baseline's options").get<int>();
  o.max_tokens = member(opt, "max_tokens", "the baseline's options").get<int>();
  o.stream = opt.value("stream", false);
  o.framing = opt.value("framing", std::string("ndjson")) == "content-length"
                  ? proto::Framing::content_length
                  : proto::Framing::ndjson;
  if (opt.contains("warmup_s")) {
    o.warmup = std::chrono::milliseconds(static_cast<std::int64_t>(opt["warmup_s"].get<double>() * 1000));
  }
  if (opt.contains("requests")) {
    o.requests = opt["requests"].get<std::int64_t>();
  } else if (opt.contains("duration_s")) {
    o.requests.reset();
    o.duration =
        std::chrono::milliseconds(static_cast<std::int64_t>(opt["duration_s"].get<double>() * 1000));
  }
  if (opt.contains("model")) o.model = opt["model"].get<std::string>();
}

RegressionReport compare_runs(const json& baseline, const json& current, double tolerance) {
  const json& bo = member(baseline, "options", "the baseline");
  const json& co = member(current, "options", "the current run");
  for (const char* key : kShapeKeys) {
    if (bo.value(key, json()) != co.value(key, json())) {
      throw std::invalid_argument(fmt::format(
          "the runs differ in options.{} (baseline {}, current {}): not comparable", key,
          bo.value(key, json()).dump(), co.value(key, json()).dump()));
    }
  }
  if (bo.value("direct", false) != co.value("direct", false)) {
    throw std::invalid_argument("one run is --direct and the other is not: not comparable");
  }
  RegressionReport r;
  using ptr = json::json_pointer;
  r.checks.push_back(check("requests_per_s", number_at(baseline, ptr("/requests_per_s"), "the baseline"),
                           number_at(current, ptr("/requests_per_s"), "the current run"), true,
                           tolerance));
  for (const char* p : {"p50", "p99"}) {
    const ptr at("/latency_ms/" + std::string(p));
    r.checks.push_back(check(fmt::format("latency_ms.{}", p), number_at(baseline, at, "the baseline"),
                             number_at(current, at, "the current run"), false, tolerance));
  }
  const ptr first_chunk("/first_chunk_ms/p50");
  if (baseline.contains(first_chunk) && current.contains(first_chunk)) {
    r.checks.push_back(check("first_chunk_ms.p50", number_at(baseline, first_chunk, "the baseline"),
                             number_at(current, first_chunk, "the current run"), false, tolerance));
  }
  const double base_errors = number_at(baseline, ptr("/errors"), "the baseline");
  const double cur_errors = number_at(current, ptr("/errors"), "the current run");
  RegressionCheck errors{"errors", base_errors, cur_errors, false, "ok"};
  if (base_errors == 0 && cur_errors > 0) {
    errors.verdict = "regressed";
  } else if (base_errors > 0) {
    errors = check("errors", base_errors, cur_errors, false, tolerance);
  }
  r.checks.push_back(errors);
  return r;
}

std::string format_regression_text(const RegressionReport& r, double tolerance) {
  std::string out = fmt::format("regression check, tolerance {:.0f} %\n", 100 * tolerance);
  out += fmt::format("{:<20} {:>14} {:>14} {:>9}  {}\n", "metric", "baseline", "current", "change",
                     "verdict");
  for (const auto& c : r.checks) {
    const std::string change =
        c.baseline != 0 ? fmt::format("{:+.1f} %", 100 * (c.current - c.baseline) / c.baseline) : "-";
    out += fmt::format("{:<20} {:>14.4g} {:>14.4g} {:>9}  {}\n", c.metric, c.baseline, c.current,
                       change, c.verdict);
  }
  out += r.regressed() ? "REGRESSED\n" : "ok: within tolerance\n";
  return out;
}

json regression_json(const RegressionReport& r, double tolerance, const json& current) {
  json checks = json::array();
  for (const auto& c : r.checks) {
    checks.push_back({{"metric", c.metric},
                      {"baseline", c.baseline},
                      {"current", c.current},
                      {"higher_is_better", c.higher_is_better},
                      {"verdict", c.verdict}});
  }
  return {{"scenario", "regression"},
          {"tolerance", tolerance},
          {"regressed", r.regressed()},
          {"checks", checks},
          {"current", current}};
}

}  // namespace drover::bench
