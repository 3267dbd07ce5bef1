// droverd: parses flags, loads the config, wires the Supervisor and runs it.
#include <CLI/CLI.hpp>

#include <iostream>

#include "common/config.hpp"
#include "common/log.hpp"
#include "supervisor/supervisor.hpp"
#include "supervisor/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"droverd: JSON-RPC supervisor for a pool of inference worker processes"};
  std::string config_path;
  drover::ConfigOverrides flags;
  app.add_option("--config", config_path, "YAML config file (default: built-in defaults)");
  app.add_option("--socket", flags.socket, "client socket path (server.socket)");
  app.add_option("--admin-socket", flags.admin_socket, "admin socket path (server.admin_socket)");
  app.add_option("--workers", flags.workers, "number of workers (workers.count)");
  app.add_option("--log-level", flags.log_level,
                 "trace, debug, info, warn, error, critical or off (logging.level)");
  app.set_version_flag("--version", drover::supervisor::kVersion);
  CLI11_PARSE(app, argc, argv);

  drover::Config config;
  try {
    config = config_path.empty()
                 ? drover::parse_config("", drover::current_environment(), flags, "<defaults>")
                 : drover::load_config_file(config_path, drover::current_environment(), flags);
  } catch (const drover::ConfigError& e) {
    std::cerr << "droverd: " << e.what() << "\n";
    return 2;
  }
  drover::configure_logging(config.logging.level, config.logging.format);
  try {
    drover::supervisor::Supervisor supervisor(std::move(config), config_path, flags);
    return supervisor.run();
  } catch (const std::runtime_error& e) {
    drover::component_logger("supervisor")->critical("{}", e.what());
    return 1;
  }
}
