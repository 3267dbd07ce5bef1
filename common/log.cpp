#include "common/log.hpp"

#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>

namespace drover {
namespace {

// Guards creation of loggers and the current settings; loggers themselves are thread-safe.
std::mutex g_mutex;
spdlog::level::level_enum g_level = spdlog::level::info;
LogFormat g_format = LogFormat::text;

// One JSON object per line: ts, level, component, pid, msg, and the request_id / worker_id
// named in the message ("request_id=r1-7 worker_id=2 ..." is drover's convention), so log
// pipelines can filter on them. Strings are escaped by nlohmann-json, so any message (a
// worker's stderr line included) stays valid JSON.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto t = msg.time;
    const auto secs = time_point_cast<seconds>(t);
    const std::time_t tt = system_clock::to_time_t(secs);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    const auto us = duration_cast<microseconds>(t - secs).count();
    const std::string ts = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900,
                                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
    const std::string_view text(msg.payload.data(), msg.payload.size());
    const auto level = spdlog::level::to_string_view(msg.level);
    nlohmann::ordered_json line = {{"ts", ts},
                                   {"level", std::string(level.data(), level.size())},
                                   {"component", std::string(msg.logger_name.data(), msg.logger_name.size())},
                                   {"pid", pid_},
                                   {"msg", std::string(text)}};
    for (const char* key : {"request_id", "worker_id"}) {
      const std::string prefix = std::string(key) + "=";
      std::size_t at = text.find(prefix);
      if (at == std::string_view::npos || (at > 0 && text[at - 1] != ' ')) continue;
      at += prefix.size();
      const std::size_t end = text.find(' ', at);
      line[key] = std::string(text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at));
    }
    const std::string out = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(out.data(), out.data() + out.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }

 private:
  int pid_ = static_cast<int>(::getpid());
};

void apply(spdlog::logger& logger) {
  logger.set_level(g_level);
  if (g_format == LogFormat::json) {
    logger.set_formatter(std::make_unique<JsonFormatter>());
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
