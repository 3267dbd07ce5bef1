#include "common/config.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "common/run_paths.hpp"
#include "common/tls_context.hpp"

extern char** environ;

namespace drover {
namespace {

// Reads the keys of one YAML block into typed fields. Every read marks the key as known, so
// finish() can reject what remains with the list of allowed keys.
class BlockReader {
 public:
  BlockReader(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      fail_block("must be a mapping of keys to values");
    }
  }

  template <typename Int>
  void integer(const std::string& key, Int& out, long long min, long long max) {
    const YAML::Node v = take(key);
    if (!v) return;
    const std::string text = scalar(key, v);
    errno = 0;
    char* end = nullptr;
    const long long parsed = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || parsed < min || parsed > max) {
      fail(key, text, fmt::format("an integer in {}..{}", min, max));
    }
    out = static_cast<Int>(parsed);
  }

  void seconds(const std::string& key, std::chrono::seconds& out, long long min, long long max) {
    long long s = out.count();
    integer(key, s, min, max);
    out = std::chrono::seconds(s);
  }

  void number(const std::string& key, double& out, double min, double max) {
    const YAML::Node v = take(key);
    if (!v) return;
    const std::string text = scalar(key, v);
    char* end = nullptr;
    const double parsed = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !(parsed >= min && parsed <= max)) {
      fail(key, text, fmt::format("a number in {}..{}", min, max));
    }
    out = parsed;
  }

  void boolean(const std::string& key, bool& out) {
    const YAML::Node v = take(key);
    if (!v) return;
    const std::string text = scalar(key, v);
    if (text == "true" || text == "yes" || text == "on") {
      out = true;
    } else if (text == "false" || text == "no" || text == "off") {
      out = false;
    } else {
      fail(key, text, "true or false");
    }
  }

  void uid_list(const std::string& key, std::vector<std::uint32_t>& out) {
    const YAML::Node v = take(key);
    if (!v) return;
    if (!v.IsSequence()) fail(key, describe(v), "a list of numeric uids");
    std::vector<std::uint32_t> items;
    for (const auto& item : v) {
      const std::string text = item.IsScalar() ? item.Scalar() : describe(item);
      char* end = nullptr;
      const unsigned long uid = std::strtoul(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || uid > 0xfffffffeUL) {
        fail(key, describe(v), "a list of numeric uids");
      }
      items.push_back(static_cast<std::uint32_t>(uid));
    }
    out = std::move(items);
  }

  void millis(const std::string& key, Millis& out, long long min, long long max) {
    long long ms = out.count();
    integer(key, ms, min, max);
    out = Millis(ms);
  }

  // A duration given in milliseconds with a fraction (0.75), kept in microseconds.
  void fractional_millis(const std::string& key, std::chrono::microseconds& out, double min,
                         double max) {
    double ms = static_cast<double>(out.count()) / 1000.0;
    number(key, ms, min, max);
    out = std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000.0 + 0.5));
  }

  void string(const std::string& key, std::string& out, bool allow_empty = false) {
    const YAML::Node v = take(key);
    if (!v) return;
    std::string text = scalar(key, v);
    if (text.empty() && !allow_empty) fail(key, text, "a non-empty string");
    out = std::move(text);
  }

  // A file mode written as octal digits, e.g. 0660 or "660".
  void mode(const std::string& key, std::uint32_t& out) {
    const YAML::Node v = take(key);
    if (!v) return;
    const std::string text = scalar(key, v);
    const bool ok = !text.empty() && text.size() <= 4 &&
                    std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; });
    if (!ok) fail(key, text, "an octal file mode such as 0660");
    out = static_cast<std::uint32_t>(std::stoul(text, nullptr, 8));
  }

  template <typename Enum>
  void enumeration(const std::string& key, Enum& out,
                   const std::vector<std::pair<std::string, Enum>>& allowed) {
    const YAML::Node v = take(key);
    if (!v) return;
    const std::string text = scalar(key, v);
    for (const auto& [name, value] : allowed) {
      if (name == text) {
        out = value;
        return;
      }
    }
    std::string names;
    for (const auto& [name, value] : allowed) names += (names.empty() ? "" : ", ") + name;
    fail(key, text, "one of " + names);
  }

  // A nested node read by the caller (marked as known).
  YAML::Node node(const std::string& key) { return take(key); }

  void string_list(const std::string& key, std::vector<std::string>& out) {
    const YAML::Node v = take(key);
    if (!v) return;
    if (!v.IsSequence() || v.size() == 0) {
      fail(key, describe(v), "a non-empty list of strings");
    }
    std::vector<std::string> items;
    for (const auto& item : v) {
      if (!item.IsScalar()) fail(key, describe(v), "a non-empty list of strings");
      items.push_back(item.Scalar());
    }
    out = std::move(items);
  }

  // REQUIRES: every key of this block has been read.
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const std::string key = kv.first.Scalar();
      if (!known_.contains(key)) {
        std::string allowed;
        for (const auto& k : known_) allowed += (allowed.empty() ? "" : ", ") + k;
        throw ConfigError(
            fmt::format("config: unknown key '{}.{}' (allowed keys: {})", path_, key, allowed));
      }
    }
  }

 private:
  // An absent or null key comes back undefined, so callers' `if (!v)` skips it. (YAML::Node()
  // would not do: it is a defined null node, and every unset key would then be rejected.)
  YAML::Node take(const std::string& key) {
    known_.insert(key);
    const YAML::Node absent(YAML::NodeType::Undefined);
    if (!node_ || !node_.IsMap()) return absent;
    YAML::Node v = node_[key];
    if (!v || v.IsNull()) return absent;
    return v;
  }

  std::string scalar(const std::string& key, const YAML::Node& v) const {
    if (!v.IsScalar()) fail(key, describe(v), "a single value");
    return v.Scalar();
  }

  static std::string describe(const YAML::Node& v) {
    YAML::Emitter out;
    out << YAML::Flow << v;
    return out.c_str();
  }

  [[noreturn]] void fail(const std::string& key, const std::string& value,
                         const std::string& allowed) const {
    throw ConfigError(fmt::format("config: key '{}.{}' must be {}, got '{}'", path_, key,
                                  allowed, value));
  }

  [[noreturn]] void fail_block(const std::string& what) const {
    throw ConfigError(fmt::format("config: block '{}' {}", path_, what));
  }

  YAML::Node node_;
  std::string path_;
  std::set<std::string> known_;
};

// Block names in the order the environment matcher tries them: longest first, so that a
// future PROMPT_CACHE block wins over a PROMPT block.
const std::vector<std::string> kBlocks = {
    "server", "workers", "routing",       "transport", "models",  "memory_policy",
    "circuit_breaker", "retry", "model_preload", "batch_queue", "request_deduplication",
    "prompt_cache", "request_coalescing", "streaming", "feature_flags", "logging", "metrics",
    "fault_injection", "rollouts", "openai"};

std::vector<std::string> env_block_names() {
  std::vector<std::string> names = kBlocks;
  std::sort(names.begin(), names.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return names;
}

// A YAML scalar as the JSON value it most likely means: integer, number, boolean or string.
nlohmann::json scalar_json(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long long i = std::strtoll(text.c_str(), &end, 10);
  if (!text.empty() && *end == '\0' && errno == 0) return i;
  const double d = std::strtod(text.c_str(), &end);
  if (!text.empty() && *end == '\0') return d;
  if (text == "true") return true;
  if (text == "false") return false;
  return text;
}

// models: {<id>: {backend, path, options: {name: scalar}}}
void read_models(const YAML::Node& node, std::map<std::string, ModelSpec>& out) {
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) {
    throw ConfigError("config: block 'models' must map model ids to {backend, path, options}");
  }
  for (const auto& kv : node) {
    ModelSpec m;
    m.id = kv.first.Scalar();
    const std::string path = "models." + m.id;
    if (m.id.empty() || m.id.size() > 128 ||
        m.id.find_first_of(" \t\n\"\\") != std::string::npos) {
      throw ConfigError(fmt::format(
          "config: model id '{}' must be 1..128 characters without spaces, quotes or backslashes", m.id));
    }
    BlockReader r(kv.second, path);
    r.string("backend", m.backend);
    r.string("path", m.path, /*allow_empty=*/true);
    const YAML::Node options = r.node("options");
    r.finish();
    if (m.backend.empty()) {
      throw ConfigError(fmt::format("config: key '{}.backend' is required (e.g. tinyllm, sim)", path));
    }
    if (options && !options.IsNull()) {
      if (!options.IsMap()) {
        throw ConfigError(fmt::format("config: key '{}.options' must map option names to values", path));
      }
      for (const auto& o : options) {
        if (!o.second.IsScalar()) {
          throw ConfigError(fmt::format("config: key '{}.options.{}' must be a single value", path,
                                        o.first.Scalar()));
        }
        m.options[o.first.Scalar()] = scalar_json(o.second.Scalar());
      }
    }
    out.emplace(m.id, std::move(m));
  }
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// DROVER_<BLOCK>_<KEY>=value sets block.key; the value is read as YAML so lists work
// (DROVER_WORKERS_COMMAND='[drover-worker, --x]'); an empty value is the empty string. Variables naming no block are left alone:
// DROVER_WORKER_ID and friends belong to workers.
void apply_environment(YAML::Node& root, const Environment& env) {
  const auto blocks = env_block_names();
  for (const auto& [name, value] : env) {
    if (!name.starts_with("DROVER_")) continue;
    const std::string rest = name.substr(7);
    for (const auto& block : blocks) {
      const std::string prefix = upper(block) + "_";
      if (!rest.starts_with(prefix) || rest.size() == prefix.size()) continue;
      const std::string key = lower(rest.substr(prefix.size()));
      // An empty value is the empty string, as `key: ""` in the file: YAML would read it as
      // null, which the block reader treats as absent, so DROVER_METRICS_LISTEN= would leave the
      // default listener on instead of turning it off. Keys that need a value then reject it
      // by name instead of the variable being silently ignored.
      YAML::Node parsed;
      try {
        parsed = value.empty() ? YAML::Node(std::string()) : YAML::Load(value);
      } catch (const YAML::Exception& e) {
        throw ConfigError(fmt::format("config: environment variable {}: {}", name, e.what()));
      }
      if (!root[block] || root[block].IsNull()) root[block] = YAML::Node(YAML::NodeType::Map);
      if (!root[block].IsMap()) {
        throw ConfigError(fmt::format("config: block '{}' must be a mapping", block));
      }
      // Unknown keys set this way are rejected by the block reader like unknown file keys.
      root[block][key] = parsed;
      break;
    }
  }
}

void apply_flags(YAML::Node& root, const ConfigOverrides& flags) {
  auto set = [&root](const char* block, const char* key, const std::string& value) {
    if (!root[block] || root[block].IsNull()) root[block] = YAML::Node(YAML::NodeType::Map);
    // As for the environment: indexing a scalar block would throw a YAML exception, and a
    // sequence block would silently become a mapping.
    if (!root[block].IsMap()) {
      throw ConfigError(fmt::format("config: block '{}' must be a mapping", block));
    }
    root[block][key] = value;
  };
  if (flags.socket) set("server", "socket", *flags.socket);
  if (flags.admin_socket) set("server", "admin_socket", *flags.admin_socket);
  if (flags.workers) set("workers", "count", std::to_string(*flags.workers));
  if (flags.log_level) set("logging", "level", *flags.log_level);
}

// fault_injection and rollouts (common/rollout_config.hpp).
void read_rollout_blocks(const YAML::Node& root, Config& c) {
  {
    BlockReader r(root["fault_injection"], "fault_injection");
    auto& f = c.fault_injection;
    r.boolean("enabled", f.enabled);
    r.number("abort_percent", f.abort_percent, 0.0, 100.0);
    r.integer("abort_code", f.abort_code, -32768, -32000);
    r.millis("delay_ms", f.delay, 0, 600'000);
    r.number("delay_percent", f.delay_percent, 0.0, 100.0);
    r.finish();
    const bool known = f.abort_code == -32603 || (f.abort_code >= -32010 && f.abort_code <= -32001);
    if (!known) {
      throw ConfigError(fmt::format(
          "config: key 'fault_injection.abort_code' must be -32603 or one of drover's error codes "
          "-32010..-32001, got '{}'",
          f.abort_code));
    }
  }
  const YAML::Node block = root["rollouts"];
  if (!block || block.IsNull()) return;
  if (!block.IsMap()) throw ConfigError("config: block 'rollouts' must be a mapping of stage names to ramps");
  for (const auto& kv : block) {
    const std::string stage = kv.first.Scalar();
    if (std::find(kRolloutStages.begin(), kRolloutStages.end(), stage) == kRolloutStages.end()) {
      throw ConfigError(fmt::format("config: unknown stage 'rollouts.{}' (allowed: {})", stage,
                                    fmt::join(kRolloutStages, ", ")));
    }
    if (stage == "stream_coalescing") {
      // Its percentage is copied into each connection when droverd starts, so a controller
      // could not move it.
      throw ConfigError(
          "config: stage 'rollouts.stream_coalescing' cannot be ramped: its percentage is fixed "
          "at start; set feature_flags.stream_coalescing instead");
    }
    const std::string path = "rollouts." + stage;
    BlockReader r(kv.second, path);
    RolloutSpec spec;
    if (const YAML::Node steps = r.node("steps")) {
      const auto bad = [&] {
        YAML::Emitter out;
        out << YAML::Flow << steps;
        return ConfigError(fmt::format(
            "config: key '{}.steps' must be a non-empty list of strictly increasing percentages "
            "in 1..100, got '{}'",
            path, out.c_str()));
      };
      if (!steps.IsSequence() || steps.size() == 0) throw bad();
      spec.steps.clear();
      for (const auto& item : steps) {
        char* end = nullptr;
        const std::string text = item.IsScalar() ? item.Scalar() : std::string();
        const long v = std::strtol(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || v < 1 || v > 100 ||
            (!spec.steps.empty() && v <= spec.steps.back())) {
          throw bad();
        }
        spec.steps.push_back(static_cast<int>(v));
      }
    }
    r.seconds("step_interval_s", spec.step_interval, 1, 86'400);
    r.integer("min_requests", spec.min_requests, 1, 100'000'000);
    r.boolean("dry_run", spec.dry_run);
    BlockReader t(r.node("triggers"), path + ".triggers");
    auto& tr = spec.triggers;
    t.number("error_ratio_x", tr.error_ratio_x, 0.0, 1000.0);
    t.number("p95_x", tr.p95_x, 0.0, 1000.0);
    t.number("ttft_p95_x", tr.ttft_p95_x, 0.0, 1000.0);
    t.number("rss_growth_pct_per_h", tr.rss_growth_pct_per_h, 0.0, 1e6);
    t.number("crash_ratio", tr.crash_ratio, 0.0, 1.0);
    t.finish();
    r.finish();
    c.rollouts[stage] = std::move(spec);
  }
}

// A tls block (server.tls, openai.tls); the files are loaded once here so that a missing,
// unreadable or mismatched file fails the load naming its key.
void read_tls(const YAML::Node& node, const std::string& path, TlsConfig& t) {
  BlockReader r(node, path);
  r.string("cert_file", t.cert_file, /*allow_empty=*/true);
  r.string("key_file", t.key_file, /*allow_empty=*/true);
  r.string("client_ca_file", t.client_ca_file, /*allow_empty=*/true);
  r.finish();
  if (t.cert_file.empty() != t.key_file.empty()) {
    throw ConfigError(fmt::format("config: keys '{0}.cert_file' and '{0}.key_file' go together: "
                                  "set both for TLS, or neither",
                                  path));
  }
  if (!t.client_ca_file.empty() && t.cert_file.empty()) {
    throw ConfigError(fmt::format(
        "config: key '{0}.client_ca_file' needs '{0}.cert_file' and '{0}.key_file' (mutual TLS "
        "is TLS first)",
        path));
  }
  if (t.enabled()) {
    try {
      make_tls_server_context(t, path);
    } catch (const std::runtime_error& e) {
      throw ConfigError(fmt::format("config: {}", e.what()));
    }
  }
}

void read_openai(const YAML::Node& node, OpenAiConfig& o) {
  BlockReader r(node, "openai");
  r.boolean("enabled", o.enabled);
  r.string("listen", o.listen);
  const YAML::Node keys = r.node("api_keys");
  r.string("api_keys_file", o.api_keys_file, /*allow_empty=*/true);
  r.boolean("allow_unauthenticated", o.allow_unauthenticated);
  r.integer("max_body_bytes", o.max_body_bytes, 1024, 1LL << 30);
  const YAML::Node templates = r.node("chat_templates");
  read_tls(r.node("tls"), "openai.tls", o.tls);
  r.finish();
  const auto hp = parse_host_port(o.listen);
  if (!hp) {
    throw ConfigError(fmt::format(
        "config: key 'openai.listen' must be host:port (e.g. 127.0.0.1:8000 or [::1]:8000, port "
        "0..65535), got '{}'",
        o.listen));
  }
  if (keys) {
    // A list, possibly empty (DROVER_OPENAI_API_KEYS='[]' turns keys off).
    if (!keys.IsSequence()) {
      throw ConfigError("config: key 'openai.api_keys' must be a list of strings");
    }
    o.api_keys.clear();
    for (const auto& k : keys) {
      if (!k.IsScalar() || k.Scalar().empty() ||
          k.Scalar().find_first_of(" \t\r\n") != std::string::npos) {
        throw ConfigError(
            "config: key 'openai.api_keys' must be a list of non-empty strings without spaces");
      }
      o.api_keys.push_back(k.Scalar());
    }
  }
  if (templates) {
    if (!templates.IsMap()) {
      throw ConfigError("config: key 'openai.chat_templates' must map model ids to llama2 or plain");
    }
    for (const auto& t : templates) {
      const std::string name = t.second.IsScalar() ? t.second.Scalar() : std::string();
      if (name != "llama2" && name != "plain") {
        throw ConfigError(fmt::format(
            "config: key 'openai.chat_templates.{}' must be one of llama2, plain, got '{}'",
            t.first.Scalar(), name));
      }
      o.chat_templates[t.first.Scalar()] = name;
    }
  }
  if (o.enabled && o.api_keys.empty() && o.api_keys_file.empty() && !o.allow_unauthenticated &&
      !is_loopback_host(hp->host)) {
    throw ConfigError(fmt::format(
        "config: key 'openai.listen' is '{}', not a loopback address, and no openai.api_keys or "
        "openai.api_keys_file is set: configure keys, or set openai.allow_unauthenticated: true "
        "to serve without authentication",
        o.listen));
  }
}

void check_tcp_listen(const ServerConfig& s) {
  if (s.tcp_listen.empty()) return;
  const auto hp = parse_host_port(s.tcp_listen);
  if (!hp) {
    throw ConfigError(fmt::format(
        "config: key 'server.tcp_listen' must be host:port (e.g. 127.0.0.1:7000 or [::1]:7000, "
        "port 0..65535) or empty to disable, got '{}'",
        s.tcp_listen));
  }
  if (!s.tls.enabled() && !s.allow_plaintext_tcp && !is_loopback_host(hp->host)) {
    throw ConfigError(fmt::format(
        "config: key 'server.tcp_listen' is '{}', not a loopback address, and server.tls is not "
        "set: configure server.tls (cert_file, key_file), or set server.allow_plaintext_tcp: true "
        "to serve JSON-RPC unencrypted on the network",
        s.tcp_listen));
  }
}

Config read_blocks(const YAML::Node& root) {
  Config c;
  {
    BlockReader r(root["server"], "server");
    r.string("socket", c.server.socket);
    r.mode("socket_mode", c.server.socket_mode);
    r.string("admin_socket", c.server.admin_socket);
    r.uid_list("admin_uids", c.server.admin_uids);
    r.integer("max_connections", c.server.max_connections, 1, 1'000'000);
    r.integer("max_message_bytes", c.server.max_message_bytes, 1024, 1LL << 30);
    r.integer("max_queue", c.server.max_queue, 1, 10'000'000);
    r.integer("write_buffer_bytes", c.server.write_buffer_bytes, 4096, 1LL << 32);
    r.millis("request_timeout_ms", c.server.request_timeout, 1, 24LL * 3600 * 1000);
    r.string("run_dir", c.server.run_dir, /*allow_empty=*/true);
    r.string("socket_group", c.server.socket_group, /*allow_empty=*/true);
    r.string("user", c.server.user, /*allow_empty=*/true);
    r.string("group", c.server.group, /*allow_empty=*/true);
    r.integer("max_batch_length", c.server.max_batch_length, 1, 1'000'000);
    r.integer("max_inflight_per_connection", c.server.max_inflight_per_connection, 1, 10'000'000);
    r.millis("idle_timeout_ms", c.server.idle_timeout, 0, 7LL * 24 * 3600 * 1000);
    r.millis("partial_message_timeout_ms", c.server.partial_message_timeout, 0, 24LL * 3600 * 1000);
    r.millis("max_stream_duration_ms", c.server.max_stream_duration, 0, 7LL * 24 * 3600 * 1000);
    r.string("tcp_listen", c.server.tcp_listen, /*allow_empty=*/true);
    read_tls(r.node("tls"), "server.tls", c.server.tls);
    r.boolean("allow_plaintext_tcp", c.server.allow_plaintext_tcp);
    r.finish();
    check_tcp_listen(c.server);
  }
  {
    BlockReader r(root["workers"], "workers");
    r.integer("count", c.workers.count, 1, 256);
    r.string_list("command", c.workers.command);
    r.enumeration<std::string>("backend", c.workers.backend, {{"sim", "sim"}, {"tinyllm", "tinyllm"}});
    r.millis("heartbeat_interval_ms", c.workers.heartbeat_interval, 10, 60'000);
    r.millis("heartbeat_timeout_ms", c.workers.heartbeat_timeout, 50, 600'000);
    r.millis("stall_timeout_ms", c.workers.stall_timeout, 50, 3'600'000);
    r.millis("start_timeout_ms", c.workers.start_timeout, 100, 600'000);
    r.integer("max_inflight", c.workers.max_inflight, 1, 100'000);
    r.millis("drain_timeout_ms", c.workers.drain_timeout, 0, 3'600'000);
    r.integer("warm_spares", c.workers.warm_spares, 0, 64);
    r.millis("restart_backoff_base_ms", c.workers.restart_backoff_base, 1, 600'000);
    r.millis("restart_backoff_max_ms", c.workers.restart_backoff_max, 1, 3'600'000);
    r.integer("max_restarts", c.workers.max_restarts, 1, 1'000'000);
    r.seconds("restart_window_s", c.workers.restart_window, 1, 86'400);
    r.seconds("crash_loop_window_s", c.workers.crash_loop_window, 0, 86'400);
    r.integer("max_requests", c.workers.max_requests, 0, 1LL << 40);
    r.integer("max_requests_jitter", c.workers.max_requests_jitter, 0, 1LL << 40);
    r.integer("max_rss_mb", c.workers.max_rss_mb, 0, 1LL << 24);
    r.integer("max_message_bytes", c.workers.max_message_bytes, 1024, 1LL << 30);
    r.integer("max_notifications_per_s", c.workers.max_notifications_per_s, 0, 10'000'000);
    r.string("user", c.workers.user, /*allow_empty=*/true);
    r.string("group", c.workers.group, /*allow_empty=*/true);
    r.finish();
    if (c.workers.heartbeat_timeout <= c.workers.heartbeat_interval) {
      throw ConfigError(fmt::format(
          "config: key 'workers.heartbeat_timeout_ms' must be greater than "
          "workers.heartbeat_interval_ms ({}), got '{}'",
          c.workers.heartbeat_interval.count(), c.workers.heartbeat_timeout.count()));
    }
    if (c.workers.restart_backoff_max < c.workers.restart_backoff_base) {
      throw ConfigError(fmt::format(
          "config: key 'workers.restart_backoff_max_ms' must be at least "
          "workers.restart_backoff_base_ms ({}), got '{}'",
          c.workers.restart_backoff_base.count(), c.workers.restart_backoff_max.count()));
    }
  }
  {
    BlockReader r(root["circuit_breaker"], "circuit_breaker");
    auto& b = c.circuit_breaker;
    r.boolean("enabled", b.enabled);
    r.integer("consecutive_failures", b.consecutive_failures, 1, 1'000'000);
    r.number("failure_rate", b.failure_rate, 0.01, 1.0);
    r.integer("min_requests", b.min_requests, 1, 1'000'000);
    r.seconds("window_s", b.window, 1, 3600);
    r.millis("open_ms", b.open_duration, 1, 3'600'000);
    r.integer("half_open_probes", b.half_open_probes, 1, 1000);
    r.finish();
  }
  {
    BlockReader r(root["retry"], "retry");
    auto& t = c.retry;
    r.integer("max_attempts", t.max_attempts, 1, 10);
    r.millis("base_delay_ms", t.base_delay, 0, 60'000);
    r.millis("max_delay_ms", t.max_delay, 0, 600'000);
    r.number("budget_percent", t.budget_percent, 0.0, 100.0);
    r.integer("min_retry_concurrency", t.min_retry_concurrency, 0, 1'000'000);
    r.integer("poison_threshold", t.poison_threshold, 1, 100);
    r.seconds("poison_ttl_s", t.poison_ttl, 0, 86'400);
    r.finish();
  }
  {
    BlockReader r(root["routing"], "routing");
    r.enumeration<RoutingStrategy>("strategy", c.routing.strategy,
                                   {{"round_robin", RoutingStrategy::round_robin},
                                    {"least_busy", RoutingStrategy::least_busy}});
    r.boolean("model_affinity", c.routing.model_affinity);
    r.finish();
  }
  {
    BlockReader r(root["transport"], "transport");
    r.boolean("shm", c.transport.shm);
    r.integer("ring_bytes", c.transport.ring_bytes, 4096, 1LL << 30);
    r.finish();
    if ((c.transport.ring_bytes & (c.transport.ring_bytes - 1)) != 0) {
      throw ConfigError(fmt::format(
          "config: key 'transport.ring_bytes' must be a power of two in 4096..1073741824, got '{}'",
          c.transport.ring_bytes));
    }
  }
  read_models(root["models"], c.models);
  {
    BlockReader r(root["memory_policy"], "memory_policy");
    r.seconds("idle_unload_s", c.memory_policy.idle_unload, 0, 30L * 86'400);
    r.finish();
  }
  {
    BlockReader r(root["model_preload"], "model_preload");
    auto& p = c.model_preload;
    r.boolean("enabled", p.enabled);
    r.boolean("parallel", p.parallel);
    r.integer("max_parallel", p.max_parallel, 1, 64);
    r.boolean("fail_fast", p.fail_fast);
    const YAML::Node models = r.node("models");
    r.finish();
    if (models) {
      if (!models.IsSequence()) {
        throw ConfigError("config: key 'model_preload.models' must be a list of {model_id, "
                          "warmup_requests, max_tokens, warmup_prompts}");
      }
      for (std::size_t i = 0; i < models.size(); ++i) {
        PreloadModel m;
        BlockReader mr(models[i], fmt::format("model_preload.models[{}]", i));
        mr.string("model_id", m.model_id);
        mr.integer("warmup_requests", m.warmup_requests, 0, 1000);
        mr.integer("max_tokens", m.max_tokens, 1, 4096);
        mr.string_list("warmup_prompts", m.warmup_prompts);
        mr.finish();
        if (m.model_id.empty()) {
          throw ConfigError(fmt::format("config: key 'model_preload.models[{}].model_id' is required", i));
        }
        p.models.push_back(std::move(m));
      }
    }
  }
  {
    BlockReader r(root["batch_queue"], "batch_queue");
    auto& b = c.batch_queue;
    r.boolean("enabled", b.enabled);
    r.integer("max_batch_size", b.max_batch_size, 1, 100);
    r.fractional_millis("flush_interval_ms", b.flush_interval, 0.0, 1000.0);
    r.boolean("adaptive_sizing", b.adaptive_sizing);
    r.fractional_millis("target_batch_time_ms", b.target_batch_time, 0.01, 60'000.0);
    r.boolean("priority_queue", b.priority_queue);
    r.millis("priority_aging_ms", b.priority_aging, 1, 3'600'000);
    r.boolean("adaptive_window", b.adaptive_window);
    r.boolean("fast_path", b.fast_path);
    r.finish();
  }
  {
    BlockReader r(root["request_deduplication"], "request_deduplication");
    auto& d = c.request_deduplication;
    r.boolean("enabled", d.enabled);
    r.millis("ttl_ms", d.ttl, 0, 3'600'000);
    r.integer("max_entries", d.max_entries, 1, 10'000'000);
    r.finish();
  }
  {
    BlockReader r(root["prompt_cache"], "prompt_cache");
    auto& p = c.prompt_cache;
    r.boolean("enabled", p.enabled);
    r.integer("max_entries", p.max_entries, 1, 100'000'000);
    r.integer("max_bytes", p.max_bytes, 1024, 1LL << 40);
    r.seconds("ttl_s", p.ttl, 1, 30L * 86'400);
    r.finish();
  }
  {
    BlockReader r(root["request_coalescing"], "request_coalescing");
    auto& q = c.request_coalescing;
    r.boolean("enabled", q.enabled);
    r.integer("max_replay_bytes", q.max_replay_bytes, 0, 1LL << 32);
    r.finish();
  }
  {
    BlockReader r(root["streaming"], "streaming");
    auto& s = c.streaming;
    r.integer("high_watermark_bytes", s.high_watermark_bytes, 1024, 1LL << 32);
    r.integer("low_watermark_bytes", s.low_watermark_bytes, 0, 1LL << 32);
    r.integer("coalesce_max_bytes", s.coalesce_max_bytes, 64, 64LL * 1024 * 1024);
    r.millis("coalesce_interval_ms", s.coalesce_interval, 0, 10'000);
    r.integer("max_concurrent_per_worker", s.max_concurrent_per_worker, 0, 100'000);
    r.integer("max_concurrent_total", s.max_concurrent_total, 0, 10'000'000);
    r.finish();
    if (s.low_watermark_bytes >= s.high_watermark_bytes) {
      throw ConfigError(fmt::format(
          "config: key 'streaming.low_watermark_bytes' must be below "
          "streaming.high_watermark_bytes ({}), got '{}'",
          s.high_watermark_bytes, s.low_watermark_bytes));
    }
  }
  {
    BlockReader r(root["feature_flags"], "feature_flags");
    auto& f = c.feature_flags;
    r.integer("batch_queue", f.batch_queue, 0, 100);
    r.integer("request_deduplication", f.request_deduplication, 0, 100);
    r.integer("prompt_cache", f.prompt_cache, 0, 100);
    r.integer("request_coalescing", f.request_coalescing, 0, 100);
    r.integer("stream_coalescing", f.stream_coalescing, 0, 100);
    r.integer("fault_injection", f.fault_injection, 0, 100);
    r.finish();
  }
  read_rollout_blocks(root, c);
  {
    BlockReader r(root["logging"], "logging");
    r.enumeration<std::string>("level", c.logging.level,
                               {{"trace", "trace"},
                                {"debug", "debug"},
                                {"info", "info"},
                                {"warn", "warn"},
                                {"error", "error"},
                                {"critical", "critical"},
                                {"off", "off"}});
    r.enumeration<LogFormat>("format", c.logging.format,
                             {{"text", LogFormat::text}, {"json", LogFormat::json}});
    r.finish();
  }
  {
    BlockReader r(root["metrics"], "metrics");
    r.boolean("enabled", c.metrics.enabled);
    r.string("listen", c.metrics.listen, /*allow_empty=*/true);
    r.finish();
    if (!c.metrics.listen.empty() && !parse_host_port(c.metrics.listen)) {
      throw ConfigError(fmt::format(
          "config: key 'metrics.listen' must be host:port (e.g. 127.0.0.1:9464 or [::1]:9464, "
          "port 0..65535) or empty to disable, got '{}'",
          c.metrics.listen));
    }
  }
  read_openai(root["openai"], c.openai);
  // Top-level keys: only the known blocks.
  const std::set<std::string> blocks(kBlocks.begin(), kBlocks.end());
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (!blocks.contains(key)) {
      throw ConfigError(fmt::format(
          "config: unknown block '{}' (allowed blocks: {})", key, fmt::join(blocks, ", ")));
    }
  }
  return c;
}

}  // namespace

Environment current_environment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry(*e);
    const auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

Config parse_config(const std::string& yaml_text, const Environment& env,
                    const ConfigOverrides& flags, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("config: {}: invalid YAML: {}", origin, e.what()));
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    throw ConfigError(fmt::format("config: {}: the top level must be a mapping of blocks", origin));
  }
  apply_environment(root, env);
  apply_flags(root, flags);
  Config c = read_blocks(root);
  const std::string base = default_run_base(env, ::geteuid());
  if (c.server.socket.empty()) c.server.socket = default_client_socket(base);
  if (c.server.admin_socket.empty()) c.server.admin_socket = default_admin_socket(base);
  return c;
}

Config load_config_file(const std::string& path, const Environment& env,
                        const ConfigOverrides& flags) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("config: cannot read '{}'", path));
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), env, flags, path);
}

std::string to_string(RoutingStrategy s) {
  return s == RoutingStrategy::round_robin ? "round_robin" : "least_busy";
}

std::optional<HostPort> parse_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  std::string host = text.substr(0, colon);
  const std::string port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return std::nullopt;  // an IPv6 address needs brackets
  }
  if (host.empty() || port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const unsigned long p = std::stoul(port);
  if (p > 65535) return std::nullopt;
  return HostPort{std::move(host), static_cast<std::uint16_t>(p)};
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

}  // namespace drover

namespace drover {

namespace {

nlohmann::json fault_json(const FaultInjectionConfig& f) {
  return {{"enabled", f.enabled},
          {"abort_percent", f.abort_percent},
          {"abort_code", f.abort_code},
          {"delay_ms", f.delay.count()},
          {"delay_percent", f.delay_percent}};
}

nlohmann::json tls_json(const TlsConfig& t) {
  return {{"cert_file", t.cert_file}, {"key_file", t.key_file}, {"client_ca_file", t.client_ca_file}};
}

nlohmann::json rollouts_json(const RolloutsConfig& rollouts) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [stage, r] : rollouts) {
    out[stage] = {{"steps", r.steps},
                  {"step_interval_s", r.step_interval.count()},
                  {"min_requests", r.min_requests},
                  {"dry_run", r.dry_run},
                  {"triggers",
                   {{"error_ratio_x", r.triggers.error_ratio_x},
                    {"p95_x", r.triggers.p95_x},
                    {"ttft_p95_x", r.triggers.ttft_p95_x},
                    {"rss_growth_pct_per_h", r.triggers.rss_growth_pct_per_h},
                    {"crash_ratio", r.triggers.crash_ratio}}}};
  }
  return out;
}

}  // namespace

nlohmann::json to_json(const Config& c) {
  auto octal = [](std::uint32_t mode) { return fmt::format("{:04o}", mode); };
  const char* format = c.logging.format == LogFormat::json ? "json" : "text";
  return {
      {"server",
       {{"socket", c.server.socket},
        {"socket_mode", octal(c.server.socket_mode)},
        {"admin_socket", c.server.admin_socket},
        {"admin_uids", c.server.admin_uids},
        {"max_connections", c.server.max_connections},
        {"max_message_bytes", c.server.max_message_bytes},
        {"max_queue", c.server.max_queue},
        {"write_buffer_bytes", c.server.write_buffer_bytes},
        {"request_timeout_ms", c.server.request_timeout.count()},
        {"run_dir", c.server.run_dir},
        {"socket_group", c.server.socket_group},
        {"user", c.server.user},
        {"group", c.server.group},
        {"max_batch_length", c.server.max_batch_length},
        {"max_inflight_per_connection", c.server.max_inflight_per_connection},
        {"idle_timeout_ms", c.server.idle_timeout.count()},
        {"partial_message_timeout_ms", c.server.partial_message_timeout.count()},
        {"max_stream_duration_ms", c.server.max_stream_duration.count()},
        {"tcp_listen", c.server.tcp_listen},
        {"tls", tls_json(c.server.tls)},
        {"allow_plaintext_tcp", c.server.allow_plaintext_tcp}}},
      {"workers",
       {{"count", c.workers.count},
        {"command", c.workers.command},
        {"backend", c.workers.backend},
        {"heartbeat_interval_ms", c.workers.heartbeat_interval.count()},
        {"heartbeat_timeout_ms", c.workers.heartbeat_timeout.count()},
        {"stall_timeout_ms", c.workers.stall_timeout.count()},
        {"start_timeout_ms", c.workers.start_timeout.count()},
        {"max_inflight", c.workers.max_inflight},
        {"drain_timeout_ms", c.workers.drain_timeout.count()},
        {"warm_spares", c.workers.warm_spares},
        {"restart_backoff_base_ms", c.workers.restart_backoff_base.count()},
        {"restart_backoff_max_ms", c.workers.restart_backoff_max.count()},
        {"max_restarts", c.workers.max_restarts},
        {"restart_window_s", c.workers.restart_window.count()},
        {"crash_loop_window_s", c.workers.crash_loop_window.count()},
        {"max_requests", c.workers.max_requests},
        {"max_requests_jitter", c.workers.max_requests_jitter},
        {"max_rss_mb", c.workers.max_rss_mb},
        {"max_message_bytes", c.workers.max_message_bytes},
        {"max_notifications_per_s", c.workers.max_notifications_per_s},
        {"user", c.workers.user},
        {"group", c.workers.group}}},
      {"routing", {{"strategy", to_string(c.routing.strategy)},
                   {"model_affinity", c.routing.model_affinity}}},
      {"transport", {{"shm", c.transport.shm}, {"ring_bytes", c.transport.ring_bytes}}},
      {"models", [&c] {
         nlohmann::json models = nlohmann::json::object();
         for (const auto& [id, m] : c.models) {
           models[id] = {{"backend", m.backend}, {"path", m.path}, {"options", m.options}};
         }
         return models;
       }()},
      {"memory_policy", {{"idle_unload_s", c.memory_policy.idle_unload.count()}}},
      {"circuit_breaker",
       {{"enabled", c.circuit_breaker.enabled},
        {"consecutive_failures", c.circuit_breaker.consecutive_failures},
        {"failure_rate", c.circuit_breaker.failure_rate},
        {"min_requests", c.circuit_breaker.min_requests},
        {"window_s", c.circuit_breaker.window.count()},
        {"open_ms", c.circuit_breaker.open_duration.count()},
        {"half_open_probes", c.circuit_breaker.half_open_probes}}},
      {"retry",
       {{"max_attempts", c.retry.max_attempts},
        {"base_delay_ms", c.retry.base_delay.count()},
        {"max_delay_ms", c.retry.max_delay.count()},
        {"budget_percent", c.retry.budget_percent},
        {"min_retry_concurrency", c.retry.min_retry_concurrency},
        {"poison_threshold", c.retry.poison_threshold},
        {"poison_ttl_s", c.retry.poison_ttl.count()}}},
      {"model_preload",
       {{"enabled", c.model_preload.enabled},
        {"parallel", c.model_preload.parallel},
        {"max_parallel", c.model_preload.max_parallel},
        {"fail_fast", c.model_preload.fail_fast},
        {"models", [&c] {
           nlohmann::json list = nlohmann::json::array();
           for (const auto& m : c.model_preload.models) {
             list.push_back({{"model_id", m.model_id},
                             {"warmup_requests", m.warmup_requests},
                             {"max_tokens", m.max_tokens},
                             {"warmup_prompts", m.warmup_prompts}});
           }
           return list;
         }()}}},
      {"batch_queue",
       {{"enabled", c.batch_queue.enabled},
        {"max_batch_size", c.batch_queue.max_batch_size},
        {"flush_interval_ms", c.batch_queue.flush_interval.count() / 1000.0},
        {"adaptive_sizing", c.batch_queue.adaptive_sizing},
        {"target_batch_time_ms", c.batch_queue.target_batch_time.count() / 1000.0},
        {"priority_queue", c.batch_queue.priority_queue},
        {"priority_aging_ms", c.batch_queue.priority_aging.count()},
        {"adaptive_window", c.batch_queue.adaptive_window},
        {"fast_path", c.batch_queue.fast_path}}},
      {"request_deduplication",
       {{"enabled", c.request_deduplication.enabled},
        {"ttl_ms", c.request_deduplication.ttl.count()},
        {"max_entries", c.request_deduplication.max_entries}}},
      {"prompt_cache",
       {{"enabled", c.prompt_cache.enabled},
        {"max_entries", c.prompt_cache.max_entries},
        {"max_bytes", c.prompt_cache.max_bytes},
        {"ttl_s", c.prompt_cache.ttl.count()}}},
      {"request_coalescing",
       {{"enabled", c.request_coalescing.enabled},
        {"max_replay_bytes", c.request_coalescing.max_replay_bytes}}},
      {"streaming",
       {{"high_watermark_bytes", c.streaming.high_watermark_bytes},
        {"low_watermark_bytes", c.streaming.low_watermark_bytes},
        {"coalesce_max_bytes", c.streaming.coalesce_max_bytes},
        {"coalesce_interval_ms", c.streaming.coalesce_interval.count()},
        {"max_concurrent_per_worker", c.streaming.max_concurrent_per_worker},
        {"max_concurrent_total", c.streaming.max_concurrent_total}}},
      {"feature_flags",
       {{"batch_queue", c.feature_flags.batch_queue},
        {"request_deduplication", c.feature_flags.request_deduplication},
        {"prompt_cache", c.feature_flags.prompt_cache},
        {"request_coalescing", c.feature_flags.request_coalescing},
        {"stream_coalescing", c.feature_flags.stream_coalescing},
        {"fault_injection", c.feature_flags.fault_injection}}},
      {"fault_injection", fault_json(c.fault_injection)},
      {"rollouts", rollouts_json(c.rollouts)},
      {"logging", {{"level", c.logging.level}, {"format", format}}},
      {"metrics", {{"enabled", c.metrics.enabled}, {"listen", c.metrics.listen}}},
      // Keys are secrets: config.get shows how many there are, not what they are.
      {"openai",
       {{"enabled", c.openai.enabled},
        {"listen", c.openai.listen},
        {"api_keys", fmt::format("<{} keys>", c.openai.api_keys.size())},
        {"api_keys_file", c.openai.api_keys_file},
        {"allow_unauthenticated", c.openai.allow_unauthenticated},
        {"max_body_bytes", c.openai.max_body_bytes},
        {"chat_templates", c.openai.chat_templates},
        {"tls", tls_json(c.openai.tls)}}},
  };
}

std::vector<std::string> changed_keys(const Config& before, const Config& after) {
  const auto a = to_json(before);
  const auto b = to_json(after);
  std::vector<std::string> out;
  for (const auto& [block, keys] : b.items()) {
    for (const auto& [key, value] : keys.items()) {
      if (!a.contains(block) || !a[block].contains(key) || a[block][key] != value) {
        out.push_back(block + "." + key);
      }
    }
  }
  return out;
}

}  // namespace drover
