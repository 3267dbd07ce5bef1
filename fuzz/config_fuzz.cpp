// Fuzz target: the config loader (common/config.hpp): YAML text plus environment overrides
// DROVER_<BLOCK>_<KEY> and command-line flags, as droverd reads them at start and on reload.
//
// Input: YAML text, optionally followed by a line "#@overrides" (a YAML comment, so seeds stay
// valid YAML) and then one override per line:
//   NAME=VALUE              an environment variable (VALUE is read as YAML by the loader)
//   --socket=PATH           the command-line flags of droverd
//   --admin-socket=PATH
//   --workers=N             (N read with strtol: any text is tried)
//   --log-level=LEVEL
// Contract checked: parse_config() either returns a Config or throws ConfigError; any other
// exception escaping is a bug (a reload with a bad file must be rejected, not crash droverd),
// so it is left to terminate the process and libFuzzer reports it. A returned Config is
// turned into JSON and serialised as config.get does, and must survive that too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/config.hpp"
#include "fuzz/fuzz_check.hpp"

namespace {

constexpr std::string_view kOverridesMarker = "\n#@overrides\n";

void read_overrides(std::string_view lines, drover::Environment& env,
                    drover::ConfigOverrides& flags) {
  while (!lines.empty()) {
    const auto eol = lines.find('\n');
    const std::string_view line = lines.substr(0, eol);
    lines = eol == std::string_view::npos ? std::string_view{} : lines.substr(eol + 1);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string name(line.substr(0, eq));
    const std::string value(line.substr(eq + 1));
    if (name == "--socket") {
      flags.socket = value;
    } else if (name == "--admin-socket") {
      flags.admin_socket = value;
    } else if (name == "--workers") {
      flags.workers = static_cast<int>(std::strtol(value.c_str(), nullptr, 10));
    } else if (name == "--log-level") {
      flags.log_level = value;
    } else {
      env[name] = value;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  drover::Environment env;
  drover::ConfigOverrides flags;
  std::string_view yaml = input;
  if (const auto marker = input.find(kOverridesMarker); marker != std::string_view::npos) {
    yaml = input.substr(0, marker);
    read_overrides(input.substr(marker + kOverridesMarker.size()), env, flags);
  }
  try {
    const drover::Config config = drover::parse_config(std::string(yaml), env, flags, "<fuzz>");
    const std::string dumped =
        drover::to_json(config).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    FUZZ_CHECK(!nlohmann::json::parse(dumped, nullptr, false).is_discarded());
    FUZZ_CHECK(config.workers.heartbeat_timeout > config.workers.heartbeat_interval);
    FUZZ_CHECK(config.server.max_message_bytes >= 1024);
  } catch (const drover::ConfigError& e) {
    FUZZ_CHECK(std::string_view(e.what()).starts_with("config: "));
  }
  return 0;
}
