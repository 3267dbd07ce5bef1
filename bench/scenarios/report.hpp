// Rendering of a throughput run: a short human-readable summary, or one JSON object (--json)
// for scripts and stored baselines. Pure functions.
#pragma once

#include <string>

#include "bench/scenarios/throughput.hpp"

namespace drover::bench {

std::string format_text(const ThroughputOptions& options, const ThroughputResult& result);
std::string format_json(const ThroughputOptions& options, const ThroughputResult& result);

}  // namespace drover::bench
