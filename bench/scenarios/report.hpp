// Rendering of a throughput run: a short human-readable summary, or one JSON object (--json)
// for scripts and stored baselines (the shape `regression` reads back). The ttft scenario is a
// streamed throughput run reported by its first-chunk latency. Pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "bench/scenarios/throughput.hpp"

namespace drover::bench {

std::string format_text(const ThroughputOptions& options, const ThroughputResult& result);
std::string format_json(const ThroughputOptions& options, const ThroughputResult& result);
// The object format_json prints, with `scenario` set to the given name.
nlohmann::json to_json(const ThroughputOptions& options, const ThroughputResult& result,
                       const std::string& scenario = "throughput");

// ttft: N streamed requests; the report leads with time to first chunk.
std::string format_ttft_text(const ThroughputOptions& options, const ThroughputResult& result);

// One line naming what was measured: droverd's socket, or one worker directly.
std::string target_line(const ThroughputOptions& options);
// "p50 ...  p95 ...  p99 ...  p99.9 ...  max ...  (mean ...) ms"
std::string percentiles_line(const LatencyHistogram& histogram);

}  // namespace drover::bench
