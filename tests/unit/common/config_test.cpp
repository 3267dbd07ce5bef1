// Configuration loading: defaults, every validation path (each must name the full key and what is
// allowed, since that message is all an operator sees when droverd refuses to start), and the
// precedence file < environment < flags.
#include "common/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>

namespace drover {
namespace {

Config parse(const std::string& yaml, const Environment& env = {},
             const ConfigOverrides& flags = {}) {
  return parse_config(yaml, env, flags);
}

// Expects parsing to throw a ConfigError whose message holds every one of `parts`.
void expect_error(const std::string& yaml, std::initializer_list<std::string_view> parts,
                  const Environment& env = {}, const ConfigOverrides& flags = {}) {
  SCOPED_TRACE("yaml: " + yaml);
  try {
    parse(yaml, env, flags);
    ADD_FAILURE() << "parsed without error";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    for (std::string_view part : parts) {
      EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' not in: " << what;
    }
  }
}

// --- defaults ------------------------------------------------------------------------------------

void expect_defaults(const Config& c) {
  // No XDG_RUNTIME_DIR in the test's environment map: root's /run/drover, else the per-user
  // directory under /tmp (common/run_paths.hpp).
  const std::string base =
      ::geteuid() == 0 ? "/run/drover" : "/tmp/drover-" + std::to_string(::geteuid());
  EXPECT_EQ(c.server.socket, base + "/drover.sock");
  EXPECT_EQ(c.server.socket_mode, 0660u);
  EXPECT_EQ(c.server.admin_socket, base + "/admin.sock");
  EXPECT_EQ(c.workers.user, "");
  EXPECT_EQ(c.workers.group, "");
  EXPECT_EQ(c.server.max_connections, 4096u);
  EXPECT_EQ(c.server.max_message_bytes, 8u * 1024 * 1024);
  EXPECT_EQ(c.server.max_queue, 4096u);
  EXPECT_EQ(c.server.request_timeout, Millis(300'000));
  EXPECT_EQ(c.server.run_dir, "");
  EXPECT_EQ(c.workers.count, 2);
  EXPECT_EQ(c.workers.command, std::vector<std::string>{"drover-worker"});
  EXPECT_EQ(c.workers.backend, "sim");
  EXPECT_EQ(c.workers.heartbeat_interval, Millis(1000));
  EXPECT_EQ(c.routing.strategy, RoutingStrategy::round_robin);
  EXPECT_EQ(c.logging.level, "info");
  EXPECT_EQ(c.logging.format, LogFormat::text);
}

TEST(Config, EmptyTextGivesDefaults) {
  expect_defaults(parse(""));
  expect_defaults(parse("# only a comment\n"));
  expect_defaults(parse("{}"));
  expect_defaults(parse("server:\nworkers:\n"));  // empty blocks
}

TEST(Config, EveryKeyIsRead) {
  const Config c = parse(R"(
server:
  socket: /run/drover/client.sock
  socket_mode: 0600
  admin_socket: /run/drover/admin.sock
  max_connections: 100
  max_message_bytes: 1048576
  max_queue: 50
  write_buffer_bytes: 65536
  request_timeout_ms: 2500
  run_dir: /run/drover/workers
workers:
  count: 8
  command: [drover-worker, --backend, sim]
  backend: sim
  heartbeat_interval_ms: 250
  start_timeout_ms: 5000
  max_inflight: 32
  drain_timeout_ms: 0
routing:
  strategy: least_busy
logging:
  level: debug
  format: json
)");
  EXPECT_EQ(c.server.socket, "/run/drover/client.sock");
  EXPECT_EQ(c.server.socket_mode, 0600u);
  EXPECT_EQ(c.server.admin_socket, "/run/drover/admin.sock");
  EXPECT_EQ(c.server.max_connections, 100u);
  EXPECT_EQ(c.server.max_message_bytes, 1048576u);
  EXPECT_EQ(c.server.max_queue, 50u);
  EXPECT_EQ(c.server.write_buffer_bytes, 65536u);
  EXPECT_EQ(c.server.request_timeout, Millis(2500));
  EXPECT_EQ(c.server.run_dir, "/run/drover/workers");
  EXPECT_EQ(c.workers.count, 8);
  EXPECT_EQ(c.workers.command, (std::vector<std::string>{"drover-worker", "--backend", "sim"}));
  EXPECT_EQ(c.workers.backend, "sim");
  EXPECT_EQ(c.workers.heartbeat_interval, Millis(250));
  EXPECT_EQ(c.workers.start_timeout, Millis(5000));
  EXPECT_EQ(c.workers.max_inflight, 32);
  EXPECT_EQ(c.workers.drain_timeout, Millis(0));
  EXPECT_EQ(c.routing.strategy, RoutingStrategy::least_busy);
  EXPECT_EQ(c.logging.level, "debug");
  EXPECT_EQ(c.logging.format, LogFormat::json);
  EXPECT_EQ(to_string(c.routing.strategy), "least_busy");
  EXPECT_EQ(to_string(RoutingStrategy::round_robin), "round_robin");
}

// --- socket_mode ---------------------------------------------------------------------------------

TEST(Config, SocketModeIsOctal) {
  EXPECT_EQ(parse("server: {socket_mode: 0660}").server.socket_mode, 0660u);
  EXPECT_EQ(parse("server: {socket_mode: 660}").server.socket_mode, 0660u);
  EXPECT_EQ(parse("server: {socket_mode: '0600'}").server.socket_mode, 0600u);
  EXPECT_EQ(parse("server: {socket_mode: 0777}").server.socket_mode, 0777u);
  EXPECT_EQ(parse("server: {socket_mode: 0}").server.socket_mode, 0u);
}

TEST(Config, BadSocketModeNamesKeyAndForm) {
  for (std::string_view mode :
       {"0999", "0x1B0", "rw-rw----", "07777 ", "12345", "-660", "0o660", "6.6"}) {
    expect_error("server: {socket_mode: " + std::string(mode) + "}",
                 {"server.socket_mode", "octal"});
  }
}

// --- integer and duration ranges, block by block -------------------------------------------------

struct RangeCase {
  std::string block;
  std::string key;
  std::string bad;    // a value outside the range (or not an integer)
  std::string range;  // "min..max" as the message must state it
};

TEST(Config, OutOfRangeOrNonIntegerValuesNameTheKeyAndRange) {
  const std::vector<RangeCase> cases = {
      {"server", "max_connections", "0", "1..1000000"},
      {"server", "max_connections", "1000001", "1..1000000"},
      {"server", "max_message_bytes", "1023", "1024..1073741824"},
      {"server", "max_message_bytes", "1073741825", "1024..1073741824"},
      {"server", "max_queue", "0", "1..10000000"},
      {"server", "write_buffer_bytes", "4095", "4096..4294967296"},
      {"server", "request_timeout_ms", "0", "1..86400000"},
      {"server", "request_timeout_ms", "86400001", "1..86400000"},
      {"workers", "count", "0", "1..256"},
      {"workers", "count", "257", "1..256"},
      {"workers", "count", "-1", "1..256"},
      {"workers", "count", "two", "1..256"},
      {"workers", "count", "2.5", "1..256"},
      {"workers", "count", "0x10", "1..256"},
      {"workers", "count", "true", "1..256"},
      {"workers", "count", "''", "1..256"},
      {"workers", "count", "99999999999999999999999", "1..256"},
      {"workers", "heartbeat_interval_ms", "9", "10..60000"},
      {"workers", "heartbeat_interval_ms", "60001", "10..60000"},
      {"workers", "start_timeout_ms", "99", "100..600000"},
      {"workers", "max_inflight", "0", "1..100000"},
      {"workers", "max_inflight", "100001", "1..100000"},
      {"workers", "drain_timeout_ms", "-1", "0..3600000"},
      {"workers", "drain_timeout_ms", "3600001", "0..3600000"},
  };
  for (const auto& c : cases) {
    expect_error(c.block + ":\n  " + c.key + ": " + c.bad + "\n",
                 {"'" + c.block + "." + c.key + "'", c.range, "integer"});
  }
}

TEST(Config, ErrorQuotesTheRejectedValue) {
  expect_error("workers:\n  count: 300\n", {"'workers.count'", "1..256", "'300'"});
}

TEST(Config, ListOrMappingWhereAValueBelongsIsRejected) {
  expect_error("workers: {count: [1, 2]}", {"'workers.count'", "single value"});
  expect_error("server: {socket: {path: /tmp/x}}", {"'server.socket'", "single value"});
  expect_error("server: {run_dir: [a]}", {"'server.run_dir'", "single value"});
}

TEST(Config, EmptyStringsAreRejectedWhereAPathIsNeeded) {
  expect_error("server: {socket: ''}", {"'server.socket'", "non-empty"});
  expect_error("server: {admin_socket: ''}", {"'server.admin_socket'", "non-empty"});
  EXPECT_EQ(parse("server: {run_dir: ''}").server.run_dir, "") << "empty run_dir means a temp dir";
}

// --- enumerations --------------------------------------------------------------------------------

TEST(Config, BadRoutingStrategyListsTheStrategies) {
  expect_error("routing: {strategy: random}",
               {"'routing.strategy'", "round_robin", "least_busy", "'random'"});
  expect_error("routing: {strategy: Round_Robin}", {"'routing.strategy'"});
}

TEST(Config, BadLoggingLevelListsTheLevels) {
  expect_error("logging: {level: verbose}",
               {"'logging.level'", "trace", "debug", "info", "warn", "error", "critical", "off"});
}

TEST(Config, BadLoggingFormatListsTheFormats) {
  expect_error("logging: {format: xml}", {"'logging.format'", "text", "json"});
}

TEST(Config, BadWorkersBackendListsTheBackends) {
  expect_error("workers: {backend: gpu}", {"'workers.backend'", "sim", "'gpu'"});
}

TEST(Config, EveryLoggingLevelIsAccepted) {
  for (std::string level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_EQ(parse("logging: {level: " + level + "}").logging.level, level);
  }
}

// --- workers.command -----------------------------------------------------------------------------

TEST(Config, WorkersCommandMustBeANonEmptyListOfStrings) {
  expect_error("workers: {command: []}", {"'workers.command'", "non-empty list"});
  expect_error("workers: {command: drover-worker}", {"'workers.command'", "list"});
  expect_error("workers: {command: [a, [b]]}", {"'workers.command'", "list of strings"});
  expect_error("workers: {command: [a, {b: c}]}", {"'workers.command'", "list of strings"});
}

// --- structure -----------------------------------------------------------------------------------

TEST(Config, UnknownKeyInEachBlockIsNamedWithTheAllowedKeys) {
  expect_error("server: {sockett: /tmp/x}",
               {"'server.sockett'", "allowed keys", "socket", "socket_mode", "max_message_bytes"});
  expect_error("workers: {cuont: 3}",
               {"'workers.cuont'", "allowed keys", "count", "command", "backend"});
  expect_error("routing: {stratgy: least_busy}", {"'routing.stratgy'", "allowed keys", "strategy"});
  expect_error("logging: {lvel: debug}", {"'logging.lvel'", "allowed keys", "level", "format"});
}

TEST(Config, UnknownTopLevelBlockIsNamedWithTheAllowedBlocks) {
  expect_error("servers: {socket: /tmp/x}",
               {"'servers'", "allowed blocks", "server", "workers", "routing", "logging"});
  expect_error("workers: {count: 2}\nwrkers: {count: 3}\n", {"'wrkers'", "allowed blocks"});
}

TEST(Config, BlockThatIsNotAMappingIsRejected) {
  expect_error("workers: 5", {"'workers'", "mapping"});
  expect_error("routing: [round_robin]", {"'routing'", "mapping"});
  expect_error("server: /tmp/drover.sock", {"'server'", "mapping"});
  expect_error("logging: debug", {"'logging'", "mapping"});
}

TEST(Config, TopLevelThatIsNotAMappingIsRejected) {
  expect_error("- server\n- workers\n", {"top level", "mapping"});
  expect_error("just a string", {"top level", "mapping"});
}

TEST(Config, InvalidYamlIsRejectedNamingTheOrigin) {
  try {
    parse_config("server: [unclosed\n", {}, {}, "/etc/drover/runtime.yaml");
    ADD_FAILURE() << "parsed without error";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/etc/drover/runtime.yaml"), std::string::npos) << what;
    EXPECT_NE(what.find("invalid YAML"), std::string::npos) << what;
  }
  expect_error("server: {socket: \"unterminated}\n", {"invalid YAML"});
}

// --- environment ---------------------------------------------------------------------------------

TEST(ConfigEnvironment, OverridesSingleValues) {
  const Config c = parse("", {{"DROVER_WORKERS_COUNT", "5"},
                              {"DROVER_ROUTING_STRATEGY", "least_busy"},
                              {"DROVER_LOGGING_LEVEL", "warn"},
                              {"DROVER_SERVER_SOCKET", "/tmp/env.sock"}});
  EXPECT_EQ(c.workers.count, 5);
  EXPECT_EQ(c.routing.strategy, RoutingStrategy::least_busy);
  EXPECT_EQ(c.logging.level, "warn");
  EXPECT_EQ(c.server.socket, "/tmp/env.sock");
}

TEST(ConfigEnvironment, KeysWithUnderscoresAreMatched) {
  const Config c = parse("", {{"DROVER_SERVER_MAX_MESSAGE_BYTES", "2048"},
                              {"DROVER_SERVER_SOCKET_MODE", "0600"},
                              {"DROVER_WORKERS_HEARTBEAT_INTERVAL_MS", "50"}});
  EXPECT_EQ(c.server.max_message_bytes, 2048u);
  EXPECT_EQ(c.server.socket_mode, 0600u) << "an environment mode is octal too";
  EXPECT_EQ(c.workers.heartbeat_interval, Millis(50));
}

TEST(ConfigEnvironment, WorkersUserAndGroupFromFileAndEnvironment) {
  const Config f = parse("workers: {user: drover-worker, group: \"4243\"}\n");
  EXPECT_EQ(f.workers.user, "drover-worker");
  EXPECT_EQ(f.workers.group, "4243");
  const Config e = parse("workers: {user: a}\n",
                         {{"DROVER_WORKERS_USER", "nobody"}, {"DROVER_WORKERS_GROUP", "nogroup"}});
  EXPECT_EQ(e.workers.user, "nobody");
  EXPECT_EQ(e.workers.group, "nogroup");
  EXPECT_EQ(to_json(e)["workers"]["user"], "nobody");
}

TEST(ConfigEnvironment, ListValueIsReadAsYaml) {
  const Config c = parse("", {{"DROVER_WORKERS_COMMAND", "[a, b]"}});
  EXPECT_EQ(c.workers.command, (std::vector<std::string>{"a", "b"}));
}

TEST(ConfigEnvironment, OverridesTheFile) {
  const Config c = parse(
      "workers:\n  count: 3\n  backend: sim\nrouting:\n  "
      "strategy: round_robin\n",
      {{"DROVER_WORKERS_COUNT", "5"}, {"DROVER_ROUTING_STRATEGY", "least_busy"}});
  EXPECT_EQ(c.workers.count, 5);
  EXPECT_EQ(c.workers.backend, "sim") << "keys the environment does not set stay as in the file";
  EXPECT_EQ(c.routing.strategy, RoutingStrategy::least_busy);
}

TEST(ConfigEnvironment, InvalidValueIsAnErrorNamingTheKey) {
  expect_error("", {"'workers.count'", "1..256"}, {{"DROVER_WORKERS_COUNT", "0"}});
  expect_error("", {"'routing.strategy'", "least_busy"}, {{"DROVER_ROUTING_STRATEGY", "fastest"}});
  expect_error("", {"'workers.command'"}, {{"DROVER_WORKERS_COMMAND", "[]"}});
}

TEST(ConfigEnvironment, UnknownKeyIsAnError) {
  expect_error("", {"'workers.foo'", "allowed keys"}, {{"DROVER_WORKERS_FOO", "1"}});
  expect_error("", {"'server.max_message_byte'"}, {{"DROVER_SERVER_MAX_MESSAGE_BYTE", "1"}});
}

TEST(ConfigEnvironment, EmptyValueIsTheEmptyStringNotAbsent) {
  // OPERATIONS.md: an empty metrics.listen turns the endpoint off, and DROVER_METRICS_LISTEN=
  // must do the same as `listen: ""` in the file rather than leave the default listener on.
  EXPECT_EQ(parse("", {{"DROVER_METRICS_LISTEN", ""}}).metrics.listen, "");
  EXPECT_EQ(parse("metrics:\n  listen: 127.0.0.1:9999\n", {{"DROVER_METRICS_LISTEN", ""}})
                .metrics.listen,
            "");
  // A key that needs a value says so instead of the variable being ignored.
  expect_error("", {"'workers.count'"}, {{"DROVER_WORKERS_COUNT", ""}});
}

TEST(ConfigEnvironment, InvalidYamlInAValueNamesTheVariable) {
  expect_error("", {"DROVER_WORKERS_COMMAND"}, {{"DROVER_WORKERS_COMMAND", "[a, b"}});
}

TEST(ConfigEnvironment, BlockThatIsNotAMappingInTheFileIsAnError) {
  expect_error("workers: 5", {"'workers'", "mapping"}, {{"DROVER_WORKERS_COUNT", "3"}});
}

TEST(ConfigEnvironment, VariablesNamingNoBlockAreIgnored) {
  // DROVER_WORKER_ID and DROVER_CONTROL_SOCKET are set for workers, which may load config too.
  const Config c = parse("", {{"DROVER_WORKER_ID", "3"},
                              {"DROVER_CONTROL_SOCKET", "/tmp/w3.sock"},
                              {"DROVER_", "x"},
                              {"DROVER_WORKERS", "x"},
                              {"DROVER_WORKERS_", "x"},
                              {"WORKERS_COUNT", "9"},
                              {"PATH", "/usr/bin"}});
  expect_defaults(c);
}

// --- flags ---------------------------------------------------------------------------------------

TEST(ConfigFlags, OverrideFileAndEnvironment) {
  ConfigOverrides flags;
  flags.workers = 7;
  flags.socket = "/tmp/flag.sock";
  flags.admin_socket = "/tmp/flag-admin.sock";
  flags.log_level = "error";
  const Config c = parse(
      "server: {socket: /tmp/file.sock, admin_socket: /tmp/file-admin.sock}\n"
      "workers: {count: 3}\nlogging: {level: debug}\n",
      {{"DROVER_WORKERS_COUNT", "5"},
       {"DROVER_SERVER_SOCKET", "/tmp/env.sock"},
       {"DROVER_SERVER_ADMIN_SOCKET", "/tmp/env-admin.sock"},
       {"DROVER_LOGGING_LEVEL", "trace"}},
      flags);
  EXPECT_EQ(c.workers.count, 7);
  EXPECT_EQ(c.server.socket, "/tmp/flag.sock");
  EXPECT_EQ(c.server.admin_socket, "/tmp/flag-admin.sock");
  EXPECT_EQ(c.logging.level, "error");
}

TEST(ConfigFlags, UnsetFlagsLeaveFileAndEnvironment) {
  ConfigOverrides flags;
  flags.workers = 4;
  const Config c =
      parse("server: {socket: /tmp/file.sock}\n", {{"DROVER_LOGGING_LEVEL", "trace"}}, flags);
  EXPECT_EQ(c.workers.count, 4);
  EXPECT_EQ(c.server.socket, "/tmp/file.sock");
  EXPECT_EQ(c.logging.level, "trace");
}

TEST(ConfigFlags, InvalidFlagValuesAreValidatedLikeTheFile) {
  ConfigOverrides workers;
  workers.workers = 0;
  expect_error("", {"'workers.count'", "1..256"}, {}, workers);
  ConfigOverrides level;
  level.log_level = "loud";
  expect_error("", {"'logging.level'"}, {}, level);
}

TEST(ConfigFlags, BlockThatIsNotAMappingInTheFileIsAConfigError) {
  ConfigOverrides flags;
  flags.workers = 3;
  expect_error("workers: 5", {"'workers'", "mapping"}, {}, flags);
  expect_error("workers: [1, 2]", {"'workers'", "mapping"}, {}, flags);
  ConfigOverrides socket;
  socket.socket = "/tmp/x.sock";
  expect_error("server: /tmp/y.sock", {"'server'", "mapping"}, {}, socket);
}

// --- files ---------------------------------------------------------------------------------------

TEST(ConfigFile, MissingFileIsAConfigErrorNamingThePath) {
  const std::string path = "/nonexistent-drover-dir/runtime.yaml";
  try {
    load_config_file(path, {}, {});
    ADD_FAILURE() << "loaded a missing file";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(ConfigFile, ReadsAFileAndNamesItInErrors) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("drover-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto good = dir / "good.yaml";
  const auto bad = dir / "bad.yaml";
  std::ofstream(good) << "workers:\n  count: 9\n";
  std::ofstream(bad) << "workers:\n  count: 0\nservers: [\n";
  EXPECT_EQ(load_config_file(good.string(), {}, {}).workers.count, 9);
  try {
    load_config_file(bad.string(), {}, {});
    ADD_FAILURE() << "loaded invalid YAML";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(bad.string()), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace drover

// --- models catalog, memory policy, transport ----------------------------------------------------

namespace drover {
namespace {

TEST(ConfigModels, CatalogEntriesAreTyped) {
  const Config c = parse(
      "models:\n"
      "  tiny: {backend: tinyllm, path: /m/tiny.bin, options: {threads: 2, tokenizer_path: /m/t.bin}}\n"
      "  fast: {backend: sim, options: {tokens_per_s: 12.5, load_ms: 0}}\n"
      "memory_policy: {idle_unload_s: 600}\n"
      "routing: {model_affinity: false}\n"
      "transport: {shm: false, ring_bytes: 65536}\n");
  ASSERT_EQ(c.models.size(), 2u);
  const ModelSpec& tiny = c.models.at("tiny");
  EXPECT_EQ(tiny.id, "tiny");
  EXPECT_EQ(tiny.backend, "tinyllm");
  EXPECT_EQ(tiny.path, "/m/tiny.bin");
  EXPECT_EQ(tiny.options["threads"], 2);
  EXPECT_EQ(tiny.options["tokenizer_path"], "/m/t.bin");
  EXPECT_EQ(c.models.at("fast").options["tokens_per_s"], 12.5);
  EXPECT_EQ(c.memory_policy.idle_unload, std::chrono::seconds(600));
  EXPECT_FALSE(c.routing.model_affinity);
  EXPECT_FALSE(c.transport.shm);
  EXPECT_EQ(c.transport.ring_bytes, 65536u);
  // Round trip through config.get's JSON.
  const auto j = to_json(c);
  EXPECT_EQ(j["models"]["tiny"]["options"]["threads"], 2);
  EXPECT_EQ(j["memory_policy"]["idle_unload_s"], 600);
}

TEST(ConfigModels, DefaultsAreEmptyCatalogAffinityOnNoIdleUnload) {
  const Config c = parse("");
  EXPECT_TRUE(c.models.empty());
  EXPECT_TRUE(c.routing.model_affinity);
  EXPECT_EQ(c.memory_policy.idle_unload.count(), 0);
  EXPECT_TRUE(c.transport.shm);
}

TEST(ConfigModels, BadEntriesNameTheKey) {
  expect_error("models: [a, b]", {"'models'", "map model ids"});
  expect_error("models:\n  tiny: {path: /x}\n", {"'models.tiny.backend'", "required"});
  expect_error("models:\n  tiny: {backend: sim, colour: red}\n", {"'models.tiny.colour'", "backend, options, path"});
  expect_error("models:\n  tiny: {backend: sim, options: [1]}\n", {"'models.tiny.options'"});
  expect_error("models:\n  tiny: {backend: sim, options: {threads: [1]}}\n", {"'models.tiny.options.threads'"});
  expect_error("models:\n  'a b': {backend: sim}\n", {"model id 'a b'"});
  expect_error("memory_policy: {idle_unload_s: -1}\n", {"'memory_policy.idle_unload_s'"});
  expect_error("transport: {ring_bytes: 5000}\n", {"'transport.ring_bytes'", "power of two"});
  expect_error("transport: {ring_bytes: 1024}\n", {"'transport.ring_bytes'", "4096"});
}

TEST(ConfigModels, EnvironmentReachesTheNewBlocks) {
  const Config c = parse("", {{"DROVER_MEMORY_POLICY_IDLE_UNLOAD_S", "30"},
                              {"DROVER_TRANSPORT_SHM", "false"},
                              {"DROVER_ROUTING_MODEL_AFFINITY", "false"}});
  EXPECT_EQ(c.memory_policy.idle_unload.count(), 30);
  EXPECT_FALSE(c.transport.shm);
  EXPECT_FALSE(c.routing.model_affinity);
}

// --- pipeline stages ----------------------------------------------------------------------------

TEST(ConfigPipeline, DefaultsMatchTheIssueAndEveryStageIsOn) {
  const Config c = parse("");
  EXPECT_FALSE(c.batch_queue.enabled) << "off by default, as measured (docs/PIPELINE.md)";
  EXPECT_EQ(c.batch_queue.max_batch_size, 20);
  EXPECT_EQ(c.batch_queue.flush_interval.count(), 2000);
  EXPECT_EQ(c.batch_queue.target_batch_time.count(), 10'000);
  EXPECT_TRUE(c.request_deduplication.enabled);
  EXPECT_EQ(c.request_deduplication.ttl.count(), 1000);
  EXPECT_TRUE(c.prompt_cache.enabled);
  EXPECT_EQ(c.prompt_cache.max_entries, 10'000u);
  EXPECT_TRUE(c.request_coalescing.enabled);
  EXPECT_EQ(c.feature_flags.prompt_cache, 100);
}

TEST(ConfigPipeline, FractionalWindowsAndEnvironmentOverrides) {
  const Config c = parse("batch_queue: {flush_interval_ms: 0.75}\n",
                         {{"DROVER_FEATURE_FLAGS_PROMPT_CACHE", "25"},
                          {"DROVER_PROMPT_CACHE_MAX_ENTRIES", "7"},
                          {"DROVER_REQUEST_DEDUPLICATION_ENABLED", "false"}});
  EXPECT_EQ(c.batch_queue.flush_interval.count(), 750);
  EXPECT_EQ(c.feature_flags.prompt_cache, 25);
  EXPECT_EQ(c.prompt_cache.max_entries, 7u);
  EXPECT_FALSE(c.request_deduplication.enabled);
}

TEST(ConfigPipeline, OutOfRangeNamesTheKey) {
  expect_error("batch_queue: {max_batch_size: 101}\n", {"'batch_queue.max_batch_size'", "1..100"});
  expect_error("feature_flags: {prompt_cache: 120}\n", {"'feature_flags.prompt_cache'", "0..100"});
  expect_error("feature_flags: {cache: 10}\n", {"feature_flags", "cache"});
  expect_error("streaming: {high_watermark_bytes: 4096, low_watermark_bytes: 8192}\n",
               {"'streaming.low_watermark_bytes'", "high_watermark_bytes"});
}

}  // namespace
}  // namespace drover
