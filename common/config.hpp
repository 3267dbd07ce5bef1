// drover's configuration: YAML parsed once into typed, validated structs (shared/DESIGN.md
// section 7). Precedence, lowest first: built-in defaults, the YAML file, environment variables
// DROVER_<BLOCK>_<KEY>, command-line flags. Unknown keys and out-of-range values throw
// ConfigError naming the key path, the value and what is allowed. Each component receives only
// its own sub-struct. Immutable after load; safe to read from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/rollout_config.hpp"

namespace drover {

using Millis = std::chrono::milliseconds;

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// TLS of a TCP listener (server.tls, openai.tls; docs/SECURITY.md "TCP and TLS"): PEM files.
// cert_file and key_file set: the listener speaks TLS 1.2+; client_ca_file set as well: mutual
// TLS, a client must present a certificate signed by that CA. All empty: no TLS. The files are
// loaded and checked when the configuration is (a bad one is a ConfigError naming its key).
struct TlsConfig {
  std::string cert_file;  // the server's certificate chain, leaf first
  std::string key_file;
  std::string client_ca_file;
  bool enabled() const { return !cert_file.empty(); }
  bool operator==(const TlsConfig&) const = default;
};

struct ServerConfig {
  // Unset: drover.sock and admin.sock in the private run directory (common/run_paths.hpp),
  // filled in by parse_config, so a loaded Config always holds the paths in use.
  std::string socket;
  std::uint32_t socket_mode = 0660;
  std::string admin_socket;  // always mode 0600
  // Peer uids (SO_PEERCRED) allowed on the admin socket besides droverd's own uid and root.
  std::vector<std::uint32_t> admin_uids;
  std::size_t max_connections = 4096;
  std::size_t max_message_bytes = 8 * 1024 * 1024;
  // Admission: requests accepted but not yet finished, across all clients. Beyond it -32001.
  std::size_t max_queue = 4096;
  // Bytes a client may leave unread before its streams are failed with -32010.
  std::size_t write_buffer_bytes = 16 * 1024 * 1024;
  // Deadline of a request that does not carry timeout_ms.
  Millis request_timeout{300'000};
  // Where per-worker control sockets are created; empty means a fresh directory
  // drover-<pid>-XXXXXX in the private run directory (common/run_paths.hpp), removed on exit.
  std::string run_dir;
  // Group owning the client socket (name or number; empty: droverd's group), so socket_mode
  // 0660 admits exactly that group's members.
  std::string socket_group;
  // Privileges dropped after the sockets are bound (only when started as root); empty keeps
  // the current user / that user's primary group.
  std::string user;
  std::string group;
  // Per-connection limits. A JSON-RPC batch longer than max_batch_length is refused whole
  // (-32600); requests beyond max_inflight_per_connection unanswered on one connection get
  // -32001; a connection with nothing in flight and no bytes for idle_timeout is closed; a
  // message begun but not completed within partial_message_timeout (slow-loris) gets -32600
  // and the connection is closed; a stream running longer than max_stream_duration ends with
  // -32004. 0 disables a timeout.
  std::size_t max_batch_length = 1000;
  std::size_t max_inflight_per_connection = 1024;
  Millis idle_timeout{600'000};
  Millis partial_message_timeout{30'000};
  Millis max_stream_duration{600'000};
  // JSON-RPC over TCP as well as the Unix socket: "host:port" (port 0 picks a free port,
  // logged as `JSON-RPC on tcp://HOST:PORT` or tls://...); empty: off. Client methods only.
  // A non-loopback address needs tls, or allow_plaintext_tcp: true to say plaintext is meant.
  std::string tcp_listen;
  TlsConfig tls;
  bool allow_plaintext_tcp = false;
};

struct WorkersConfig {
  int count = 2;
  // argv of a worker; a bare program name is looked up next to droverd first, then in PATH.
  std::vector<std::string> command = {"drover-worker"};
  std::string backend = "sim";
  Millis heartbeat_interval{1000};
  // No heartbeat for this long (a stopped or spinning worker): killed and replaced.
  Millis heartbeat_timeout{5000};
  // Holding work but no token, reply or heartbeat progress for this long: hung, replaced.
  Millis stall_timeout{30'000};
  // A worker must connect and finish init within this, or it is killed and replaced.
  Millis start_timeout{30'000};
  // Requests a worker holds at once; more wait in the admission queue.
  int max_inflight = 256;
  // Drain (SIGTERM, workers.drain, recycling): how long in-flight work may take.
  Millis drain_timeout{10'000};
  // Ready workers kept idle to replace a dead one at once.
  int warm_spares = 0;
  // Restart policy for crash loops (a worker dying before ready or within
  // crash_loop_window of ready): exponential backoff with jitter, and more than
  // max_restarts crashes within restart_window parks the slot.
  Millis restart_backoff_base{100};
  Millis restart_backoff_max{10'000};
  int max_restarts = 5;
  std::chrono::seconds restart_window{60};
  std::chrono::seconds crash_loop_window{10};
  // Recycling: replace a worker after max_requests (+ up to max_requests_jitter more, so a
  // pool does not recycle all at once) or above max_rss_mb. 0 disables each.
  std::int64_t max_requests = 0;
  std::int64_t max_requests_jitter = 0;
  std::int64_t max_rss_mb = 0;
  // What a worker may send: a message larger than max_message_bytes, or more than
  // max_notifications_per_s notifications not tied to a request (heartbeats, model.loaded)
  // in a second, is garbage: the worker is killed and replaced. 0 disables the rate limit.
  std::size_t max_message_bytes = 64 * 1024 * 1024;
  int max_notifications_per_s = 1000;
  // Workers run as this user (name or uid) and group (name or gid; empty: the user's primary
  // group) instead of droverd's identity, so a compromised worker is not droverd's user. Only a
  // droverd started as root that stays root (server.user empty) can do it; checked at start
  // (docs/SECURITY.md "Workers as another user").
  std::string user;
  std::string group;
};

struct CircuitBreakerConfig {
  bool enabled = true;
  // Opens after this many consecutive failures...
  int consecutive_failures = 5;
  // ...or when at least min_requests in the window failed at this rate or more.
  double failure_rate = 0.5;
  int min_requests = 20;
  std::chrono::seconds window{10};
  // How long an open breaker keeps its worker out of rotation before probing it.
  Millis open_duration{5000};
  // Requests let through while half-open; all must succeed to close again.
  int half_open_probes = 2;
};

struct RetryConfig {
  // Attempts per request, the first included (1 disables retries).
  int max_attempts = 3;
  // Full-jitter exponential backoff: a retry waits uniform(0, min(max, base * 2^n)).
  Millis base_delay{10};
  Millis max_delay{500};
  // Envoy-style retry budget: retries in progress stay below budget_percent of the requests
  // in progress, but min_retry_concurrency are always allowed.
  double budget_percent = 20.0;
  int min_retry_concurrency = 8;
  // A request that took down this many different workers is poison: not retried again, and
  // identical requests fail fast for poison_ttl.
  int poison_threshold = 2;
  std::chrono::seconds poison_ttl{300};
};

enum class RoutingStrategy { round_robin, least_busy };

struct RoutingConfig {
  RoutingStrategy strategy = RoutingStrategy::round_robin;
  // Requests naming a model go to workers that have it loaded; when none has, one worker
  // loads it on demand. Off: any worker, which answers -32006 when it lacks the model.
  bool model_affinity = true;
};

// Transport between droverd and its workers: the control socket always; shared-memory rings
// for requests and replies when both sides support them (shared/DESIGN.md section 5).
struct TransportConfig {
  bool shm = true;
  // Bytes per ring (a power of two); a record larger than half a ring travels on the socket.
  std::size_t ring_bytes = 1024 * 1024;
};

// One entry of the model catalog: what a worker needs to load the model on demand.
struct ModelSpec {
  std::string id;
  std::string backend;       // a worker backend name: sim, tinyllm, or what a Python worker serves
  std::string path;          // the model file (tinyllm: the llama2.c checkpoint); may be empty
  nlohmann::json options = nlohmann::json::object();  // backend options, scalars by name
};

// Idle unload: a model loaded on demand (or by models.load) that no request used for
// idle_unload_s on a worker is unloaded there. Models a worker preloads at start, or serves
// from its command line, stay. 0 disables.
struct MemoryPolicyConfig {
  std::chrono::seconds idle_unload{0};
};

// Models loaded and warmed by every worker before it is marked ready.
struct PreloadModel {
  std::string model_id;
  int warmup_requests = 1;
  int max_tokens = 8;
  std::vector<std::string> warmup_prompts = {"Hello"};
};

struct ModelPreloadConfig {
  bool enabled = true;
  // Load a worker's models concurrently (at most max_parallel at once) rather than in turn.
  bool parallel = false;
  int max_parallel = 2;
  // A model that fails to load or warm fails the worker's start (else it is reported and the
  // worker serves what did load).
  bool fail_fast = false;
  std::vector<PreloadModel> models;
};

// --- Request pipeline stages (shared/DESIGN.md sections 1 and 7). Each can be switched off
// with `enabled`; feature_flags rolls an enabled stage out to a percentage of requests.

// Batch queue: requests bound for one worker within a flush window travel as one JSON-RPC
// batch (one write or ring record); tokenize requests merge into one batch_tokenize.
struct BatchQueueConfig {
  // Off by default: measured after the hot-path redesign, IPC batching costs throughput and
  // CPU on both transports and buys nothing until a backend computes a batch together
  // (docs/PIPELINE.md "Batch queue", "The default").
  bool enabled = false;
  // Requests per flush; the adaptive controller moves it within 1..100.
  int max_batch_size = 20;
  // Longest a request waits for companions (the adaptive window replaces it when on).
  std::chrono::microseconds flush_interval{2000};
  // Resize batches so a flush's batch time stays near target_batch_time.
  bool adaptive_sizing = true;
  std::chrono::microseconds target_batch_time{10'000};
  // high before normal before low, with high never starved behind low.
  bool priority_queue = true;
  // Aging: a queued request counts one priority higher for every priority_aging it has
  // waited, so low is not starved forever (supervisor/pool/priority_queue.hpp).
  Millis priority_aging{100};
  // Window chosen from the queue depth (0-1: 0.75 ms, 2-5: 1 ms, 6+: 2 ms), smoothed.
  bool adaptive_window = true;
  // An empty queue sends a lone request at once instead of waiting for the window.
  bool fast_path = true;
};

// Identical in-flight deterministic requests (temperature 0 or an explicit seed) share one
// execution.
struct RequestDeduplicationConfig {
  bool enabled = true;
  // How long a finished result still answers an identical request arriving late.
  Millis ttl{1000};
  std::size_t max_entries = 10'000;
};

// LRU cache of deterministic results, bounded by entries, bytes and age.
struct PromptCacheConfig {
  bool enabled = true;
  std::size_t max_entries = 10'000;
  std::size_t max_bytes = 64 * 1024 * 1024;
  std::chrono::seconds ttl{300};
};

// A streaming request identical to one already streaming joins it (buffered replay first).
struct RequestCoalescingConfig {
  bool enabled = true;
  // Chunks kept for replay to late joiners; a stream past this no longer accepts joiners.
  std::size_t max_replay_bytes = 1024 * 1024;
};

// Per-connection stream flow control. server.write_buffer_bytes stays the hard limit past
// which a stream is cancelled at its worker and answered -32010.
struct StreamingConfig {
  // Above high_watermark unsent bytes a connection's chunks are coalesced; below
  // low_watermark they are written one by one again.
  std::size_t high_watermark_bytes = 256 * 1024;
  std::size_t low_watermark_bytes = 64 * 1024;
  // A coalesced frame carries at most this many bytes of text, at most one per interval.
  std::size_t coalesce_max_bytes = 64 * 1024;
  Millis coalesce_interval{20};
  // Streams running at once, per worker and in total; further streams wait in the queue.
  // 0: derived from each worker's measured throughput (adaptive).
  int max_concurrent_per_worker = 0;
  int max_concurrent_total = 0;
};

// Percentage rollout of each stage, decided by a stable hash of the request id, so a request
// is in or out consistently. A stage with enabled: false is off whatever its percentage.
struct FeatureFlagsConfig {
  int batch_queue = 100;
  int request_deduplication = 100;
  int prompt_cache = 100;
  int request_coalescing = 100;
  int stream_coalescing = 100;
  int fault_injection = 100;
};

struct LoggingConfig {
  std::string level = "info";
  LogFormat format = LogFormat::text;
};

// HTTP endpoints for operators: /metrics (Prometheus), /healthz and /readyz.
struct MetricsConfig {
  bool enabled = true;
  // "host:port" (an IPv4 address, a [bracketed] IPv6 address or a host name; port 0 picks a
  // free port). Empty disables the endpoints like enabled: false.
  std::string listen = "127.0.0.1:9464";
};

// The OpenAI-compatible HTTP API (shared/DESIGN.md section 4b, docs/OPENAI.md): a second
// frontend on the same request pipeline. Off unless enabled (the shipped runtime.yaml turns it
// on at 127.0.0.1:8000). A listen address that is not loopback needs API keys, or
// allow_unauthenticated: true to say that an open endpoint is meant.
struct OpenAiConfig {
  bool enabled = false;
  // "host:port" as metrics.listen (port 0 picks a free port; droverd logs the port it got).
  std::string listen = "127.0.0.1:8000";
  // Bearer keys accepted; with api_keys_file (one key a line, # comments), the union. None:
  // no authentication.
  std::vector<std::string> api_keys;
  std::string api_keys_file;
  bool allow_unauthenticated = false;
  // A request body past this gets 413.
  std::size_t max_body_bytes = 8 * 1024 * 1024;
  // The chat template of a model by id (llama2 or plain); a model not named here gets llama2
  // when its catalog backend is tinyllm, plain otherwise (docs/OPENAI.md "Chat template").
  std::map<std::string, std::string> chat_templates;
  // HTTPS instead of HTTP (as server.tls; the log line then says https://).
  TlsConfig tls;
};

struct Config {
  ServerConfig server;
  WorkersConfig workers;
  RoutingConfig routing;
  TransportConfig transport;
  // The model catalog, by id (ordered, so listings are stable).
  std::map<std::string, ModelSpec> models;
  MemoryPolicyConfig memory_policy;
  CircuitBreakerConfig circuit_breaker;
  RetryConfig retry;
  ModelPreloadConfig model_preload;
  BatchQueueConfig batch_queue;
  RequestDeduplicationConfig request_deduplication;
  PromptCacheConfig prompt_cache;
  RequestCoalescingConfig request_coalescing;
  StreamingConfig streaming;
  FeatureFlagsConfig feature_flags;
  FaultInjectionConfig fault_injection;
  RolloutsConfig rollouts;
  LoggingConfig logging;
  MetricsConfig metrics;
  OpenAiConfig openai;
};

// Command-line flags that override the file and the environment.
struct ConfigOverrides {
  std::optional<std::string> socket;
  std::optional<std::string> admin_socket;
  std::optional<int> workers;
  std::optional<std::string> log_level;
};

using Environment = std::map<std::string, std::string>;

// The process environment as a map (only DROVER_* entries matter to the loader).
Environment current_environment();

// Parses YAML text (possibly empty) with environment and flag overrides applied.
// `origin` names the source in error messages (a file path or "<string>").
Config parse_config(const std::string& yaml_text, const Environment& env,
                    const ConfigOverrides& flags, const std::string& origin = "<string>");

// Reads and parses a file; a missing or unreadable file is a ConfigError.
Config load_config_file(const std::string& path, const Environment& env,
                        const ConfigOverrides& flags);

std::string to_string(RoutingStrategy s);

// "host:port" split into its parts: "127.0.0.1:9464", "[::1]:9464" (host "::1"),
// "localhost:9464". nullopt when the host is empty or the port is not in 0..65535.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
std::optional<HostPort> parse_host_port(const std::string& text);
// Whether a listen host is a loopback address (127.0.0.0/8, ::1) or "localhost".
bool is_loopback_host(const std::string& host);

// The effective configuration as JSON, keyed like the YAML (for config.get and reload diffs).
nlohmann::json to_json(const Config& c);

// Keys (as "block.key") whose values differ between two configurations.
std::vector<std::string> changed_keys(const Config& before, const Config& after);

}  // namespace drover
