#include "common/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace drover {
namespace {

// Guards creation of loggers and the current settings; loggers themselves are thread-safe.
std::mutex g_mutex;
spdlog::level::level_enum g_level = spdlog::level::info;
LogFormat g_format = LogFormat::text;

void apply(spdlog::logger& logger) {
  logger.set_level(g_level);
  if (g_format == LogFormat::json) {
    // Message text is escaped by the caller-independent %v only for plain ASCII; drover's log
    // messages are its own, without quotes or control characters, so this stays valid JSON.
    logger.set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","pid":%P,"msg":"%v"})",
        spdlog::pattern_time_type::utc);
  } else {
    logger.set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
}

}  // namespace

void configure_logging(std::string_view level, LogFormat format) {
  std::lock_guard lock(g_mutex);
  g_level = spdlog::level::from_str(std::string(level));
  g_format = format;
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { apply(*l); });
}

std::shared_ptr<spdlog::logger> component_logger(const std::string& name) {
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::stderr_logger_mt(name);
  apply(*logger);
  return logger;
}

}  // namespace drover
