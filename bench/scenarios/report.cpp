#include "bench/scenarios/report.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/error_codes.hpp"

namespace drover::bench {
namespace {

using json = nlohmann::json;

double ms(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}
double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

double cpu_percent(const ThroughputResult& r) {
  return r.run_wall.count() > 0 ? 100.0 * seconds(r.client_cpu) / seconds(r.run_wall) : 0.0;
}

const char* framing_name(proto::Framing f) {
  return f == proto::Framing::content_length ? "content-length" : "ndjson";
}

std::string error_name(int code) {
  return std::string(default_message(static_cast<RpcError>(code)));
}

json percentiles_ms(const LatencyHistogram& h) {
  return {{"count", h.count()},
          {"min", ms(h.min())},
          {"mean", ms(h.mean())},
          {"p50", ms(h.percentile(0.50))},
          {"p95", ms(h.percentile(0.95))},
          {"p99", ms(h.percentile(0.99))},
          {"p99_9", ms(h.percentile(0.999))},
          {"max", ms(h.max())}};
}

// "error CODE: COUNT (name)" per code, then the client-side failures, if any.
std::string error_lines(const ThroughputResult& r) {
  std::string out;
  for (const auto& [code, count] : r.error_codes) {
    out += fmt::format("error {}: {} ({})\n", code, count, error_name(code));
  }
  if (r.client_failures > 0) {
    out +=
        fmt::format("client failures: {} (first: {})\n", r.client_failures, r.first_client_failure);
  }
  return out;
}

}  // namespace

std::string percentiles_line(const LatencyHistogram& h) {
  return fmt::format(
      "p50 {:.3f}  p95 {:.3f}  p99 {:.3f}  p99.9 {:.3f}  max {:.3f}  (mean {:.3f}) ms",
      ms(h.percentile(0.50)), ms(h.percentile(0.95)), ms(h.percentile(0.99)),
      ms(h.percentile(0.999)), ms(h.max()), ms(h.mean()));
}

std::string target_line(const ThroughputOptions& o) {
  if (o.direct_transport.empty()) return fmt::format("target:      droverd at {}\n", o.socket);
  if (o.direct_workers == 1) {
    return fmt::format(
        "target:      one worker, direct over {} ({} x {} = {} in flight on its one link)\n",
        o.direct_transport, o.connections, o.inflight, o.connections * o.inflight);
  }
  return fmt::format(
      "target:      {} workers, direct over {} ({} x {} = {} in flight, split evenly over their "
      "links)\n",
      o.direct_workers, o.direct_transport, o.connections, o.inflight, o.connections * o.inflight);
}

std::string format_text(const ThroughputOptions& o, const ThroughputResult& r) {
  std::string out = fmt::format(
      "throughput: {} connection(s) x {} in flight, {} generate, max_tokens {}, {} framing\n",
      o.connections, o.inflight, o.stream ? "streamed" : "unary", o.max_tokens,
      framing_name(o.framing));
  out += target_line(o);
  out += o.requests ? fmt::format("window:      {} requests after {:.1f} s warm-up, {:.2f} s\n",
                                  *o.requests, seconds(o.warmup), seconds(r.elapsed))
                    : fmt::format("window:      {:.2f} s after {:.1f} s warm-up\n",
                                  seconds(r.elapsed), seconds(o.warmup));
  if (r.idle_connections > 0)
    out += fmt::format("idle:        {} connections held open\n", r.idle_connections);
  out += fmt::format("requests:    {} ok, {} errors\n", r.ok, r.errors());
  out += fmt::format("throughput:  {:.0f} req/s, {:.0f} tokens/s\n", r.requests_per_s(),
                     r.tokens_per_s());
  out += fmt::format("latency:     {}\n", percentiles_line(r.latency));
  if (o.stream) {
    out += fmt::format("first chunk: {}\n", percentiles_line(r.first_chunk));
    out += fmt::format("chunks:      {}\n", r.chunks);
  }
  out += fmt::format("client cpu:  {:.2f} s over a {:.2f} s run ({:.0f} % of one core)\n",
                     seconds(r.client_cpu), seconds(r.run_wall), cpu_percent(r));
  if (r.supervisor_cpu) {
    out += fmt::format("supervisor:  {:.2f} s of CPU (pid {}), {:.2f} us per reply\n",
                       seconds(*r.supervisor_cpu), o.supervisor_pid.value_or(0),
                       r.replies_total
                           ? 1e6 * seconds(*r.supervisor_cpu) / static_cast<double>(r.replies_total)
                           : 0.0);
  }
  return out + error_lines(r);
}

std::string format_ttft_text(const ThroughputOptions& o, const ThroughputResult& r) {
  std::string out = fmt::format(
      "ttft: {} samples of a streamed generate, {} connection(s) x {} in flight, max_tokens {}\n",
      o.requests.value_or(0), o.connections, o.inflight, o.max_tokens);
  out += target_line(o);
  out += fmt::format("samples:     {} ok, {} errors, {} with a chunk\n", r.ok, r.errors(),
                     r.first_chunk.count());
  out += fmt::format("first chunk: {}\n", percentiles_line(r.first_chunk));
  out += fmt::format("final reply: {}\n", percentiles_line(r.latency));
  return out + error_lines(r);
}

std::string format_json(const ThroughputOptions& o, const ThroughputResult& r) {
  return to_json(o, r).dump(2);
}

json to_json(const ThroughputOptions& o, const ThroughputResult& r, const std::string& scenario) {
  json options = {{"socket", o.socket},
                  {"connections", o.connections},
                  {"inflight", o.inflight},
                  {"warmup_s", seconds(o.warmup)},
                  {"framing", framing_name(o.framing)},
                  {"max_tokens", o.max_tokens},
                  {"stream", o.stream},
                  {"prompt_bytes", o.prompt.size()}};
  if (o.requests) {
    options["requests"] = *o.requests;
  } else {
    options["duration_s"] = seconds(o.duration);
  }
  if (!o.model.empty()) options["model"] = o.model;
  if (o.idle_connections > 0) options["idle_connections"] = o.idle_connections;
  options["direct"] = !o.direct_transport.empty();
  if (!o.direct_transport.empty()) {
    options["transport"] = o.direct_transport;
    options["workers"] = o.direct_workers;
  }
  json errors = json::object();
  for (const auto& [code, count] : r.error_codes) {
    errors[std::to_string(code)] = {{"count", count}, {"message", error_name(code)}};
  }
  json out = {{"scenario", scenario},
              {"options", options},
              {"elapsed_s", seconds(r.elapsed)},
              {"requests_ok", r.ok},
              {"errors", r.errors()},
              {"error_codes", errors},
              {"client_failures", r.client_failures},
              {"requests_per_s", r.requests_per_s()},
              {"tokens_per_s", r.tokens_per_s()},
              {"completion_tokens", r.completion_tokens},
              {"replies_total", r.replies_total},
              {"run_wall_s", seconds(r.run_wall)},
              {"client_cpu_s", seconds(r.client_cpu)},
              {"latency_ms", percentiles_ms(r.latency)}};
  if (r.client_failures > 0) out["first_client_failure"] = r.first_client_failure;
  if (r.supervisor_cpu) out["supervisor_cpu_s"] = seconds(*r.supervisor_cpu);
  if (o.stream) {
    out["chunks"] = r.chunks;
    out["chunks_total"] = r.chunks_total;
    out["first_chunk_ms"] = percentiles_ms(r.first_chunk);
  }
  return out;
}

}  // namespace drover::bench
