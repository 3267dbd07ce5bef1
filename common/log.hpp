// Logging set-up: one named spdlog logger per component ("frontend", "pool", "router",
// "worker", ...), created on first use and sharing one stderr sink. Thread-safe (spdlog's _mt
// sinks); call configure_logging() once at start-up before other threads exist.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace drover {

enum class LogFormat { text, json };

// Sets the level and format of every component logger, existing and future.
// REQUIRES: level is one of trace, debug, info, warn, error, critical, off.
void configure_logging(std::string_view level, LogFormat format);

// The logger of one component, e.g. component_logger("pool").
std::shared_ptr<spdlog::logger> component_logger(const std::string& name);

}  // namespace drover
