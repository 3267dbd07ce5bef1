// The `throughput` scenario: C connections to droverd's client socket, one thread each, every
// connection keeping P generate requests outstanding (pipelined on one socket: it sends until
// P are in flight, then sends one more for every final reply it reads). Blocking sockets, no
// event loop: a thread only ever waits on its own socket.
//
// Measurement window. A request counts when it is sent at or after the end of the warm-up;
// latency runs from just before its bytes are written to the moment its final reply is
// decoded. Sending stops when the window closes (--duration-s) or when N counted requests have
// been sent (--requests); outstanding requests are then drained. Throughput is counted
// requests over the time from the window's start to the last counted reply.
//
// The same loop drives droverd's client API and, with --direct, one worker's protocol: the
// request text is the same JSON-RPC `generate` (the worker ignores client-only params), and
// worker replies and chunks have the shape the client API relays (proto/README.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <vector>

#include "bench/scenarios/latency_histogram.hpp"
#include "client/rpc_client.hpp"
#include "proto/framing.hpp"

namespace drover::bench {

struct ThroughputOptions {
  std::string socket;  // drover-bench's default: droverd's (common/run_paths.hpp)
  int connections = 1;
  int inflight = 1;  // per connection
  std::chrono::milliseconds duration{10'000};
  std::optional<std::int64_t> requests;  // when set, replaces duration
  std::chrono::milliseconds warmup{1'000};
  // A connection that gets no byte for this long while it waits for replies gives up.
  std::chrono::milliseconds reply_timeout{30'000};
  proto::Framing framing = proto::Framing::ndjson;
  // The generate params.
  std::string prompt = "Summarise in one sentence: the quick brown fox jumps over the lazy dog.";
  std::string model;  // empty: not sent (the pool's default model)
  int max_tokens = 16;
  bool stream = false;
  // > 0: a workload with repeats for the pipeline stages (docs/PIPELINE.md): requests cycle
  // through N prompts ("<prompt> #0" .. "#N-1") with temperature 0, so identical requests
  // can be deduplicated, coalesced or served from the prompt cache. 0: every request is the
  // same prompt at the default temperature (not deterministic: no stage applies).
  int distinct_prompts = 0;
  // Sends cache: "bypass" (deduplication and coalescing still apply).
  bool cache_bypass = false;
  // A progress line on stderr once a second (drover_bench.cpp turns it on for a terminal).
  bool progress = false;
  // Set by --direct: the transport of the one worker link the load runs on ("socket" or
  // "stdio"); empty when the target is droverd's client socket. For reports only.
  std::string direct_transport;
  int direct_workers = 1;
  // Connections opened before the load and held, idle, until it ends (the "10,000 connections,
  // 64 active" shape): each sends one `health` request and must get its answer before the run
  // starts (so the server has accepted it), then sends nothing; one the server closes during
  // the run is a client failure. NDJSON only; not with --direct.
  int idle_connections = 0;
  // When set, the CPU time (utime + stime) of this process over the load itself (from the
  // moment every connection is open to the last reply) is reported: the supervisor's CPU
  // without the cost of opening the connections (scripts/bench's connection sweep).
  std::optional<int> supervisor_pid;
};

struct ThroughputResult {
  std::chrono::nanoseconds elapsed{0};  // measurement window, start to last counted reply
  std::uint64_t ok = 0;
  std::uint64_t completion_tokens = 0;
  std::uint64_t chunks = 0;                  // generate.chunk notifications of counted requests
  std::map<int, std::uint64_t> error_codes;  // JSON-RPC error replies to counted requests
  // Failures on the client side: connection refused or closed, reply timeout, a reply that is
  // not JSON-RPC. Each one ends its connection; the text is the first such failure.
  std::uint64_t client_failures = 0;
  std::string first_client_failure;
  // The whole run, first request to last reply, warm-up included, and the CPU drover-bench
  // itself used meanwhile (user + system, all threads): on a small machine the load generator
  // competes with droverd and the workers for the same cores.
  std::chrono::nanoseconds run_wall{0};
  std::chrono::nanoseconds client_cpu{0};
  // Every final reply of the run, warm-up and drain included: the denominator for CPU per
  // request when a script samples the supervisor's CPU time over the whole invocation.
  std::uint64_t replies_total = 0;
  // Every generate.chunk of the run, warm-up and drain included: the denominator for CPU per
  // chunk, as replies_total is for CPU per request.
  std::uint64_t chunks_total = 0;
  std::uint64_t idle_connections = 0;  // held open over the run (options.idle_connections)
  // options.supervisor_pid's CPU time over the load; nullopt when not asked or not readable.
  std::optional<std::chrono::nanoseconds> supervisor_cpu;
  LatencyHistogram latency;      // send -> final reply, successful requests
  LatencyHistogram first_chunk;  // send -> first generate.chunk, streamed requests

  std::uint64_t errors() const;
  double requests_per_s() const;
  double tokens_per_s() const;
};

// Runs the scenario to completion. Throws std::runtime_error when no connection can be made.
ThroughputResult run_throughput(const ThroughputOptions& options);

// Runs the scenario on links the caller connected (drover-bench --direct lends its one worker
// link; options.connections is then ignored): one thread per link, options.inflight requests
// in flight on each. The links stay the caller's; after a run without client failures every
// request has been answered, so a link can carry another run.
ThroughputResult run_throughput_on(const ThroughputOptions& options,
                                   const std::vector<client::RpcClient*>& links);

}  // namespace drover::bench
