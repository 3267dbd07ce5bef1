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

#include "common/log.hpp"

namespace drover {

using Millis = std::chrono::milliseconds;

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ServerConfig {
  std::string socket = "/tmp/drover.sock";
  std::uint32_t socket_mode = 0660;
  std::string admin_socket = "/tmp/drover-admin.sock";  // always mode 0600
  std::size_t max_connections = 4096;
  std::size_t max_message_bytes = 8 * 1024 * 1024;
  // Admission: requests accepted but not yet finished, across all clients. Beyond it -32001.
  std::size_t max_queue = 4096;
  // Bytes a client may leave unread before its streams are failed with -32010.
  std::size_t write_buffer_bytes = 16 * 1024 * 1024;
  // Deadline of a request that does not carry timeout_ms.
  Millis request_timeout{300'000};
  // Where per-worker control sockets are created; empty means a fresh directory under
  // $TMPDIR (or /tmp) named drover-<pid>-XXXXXX, removed on exit.
  std::string run_dir;
};

struct WorkersConfig {
  int count = 2;
  // argv of a worker; a bare program name is looked up next to droverd first, then in PATH.
  std::vector<std::string> command = {"drover-worker"};
  std::string backend = "sim";
  Millis heartbeat_interval{1000};
  // A worker must connect and finish init within this, or it is killed and replaced.
  Millis start_timeout{30'000};
  // Requests a worker holds at once; more wait in the admission queue.
  int max_inflight = 256;
  Millis drain_timeout{10'000};
};

enum class RoutingStrategy { round_robin, least_busy };

struct RoutingConfig {
  RoutingStrategy strategy = RoutingStrategy::round_robin;
};

struct LoggingConfig {
  std::string level = "info";
  LogFormat format = LogFormat::text;
};

struct Config {
  ServerConfig server;
  WorkersConfig workers;
  RoutingConfig routing;
  LoggingConfig logging;
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

}  // namespace drover
