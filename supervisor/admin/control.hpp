// AdminControl: the supervisor-wide admin operations the request handler exposes on the admin
// socket (config.get, config.reload). Implemented by Supervisor, which owns the configuration;
// supervisor thread only.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace drover::supervisor {

class AdminControl {
 public:
  virtual ~AdminControl() = default;
  // The effective configuration.
  virtual nlohmann::json effective_config() const = 0;
  // Re-reads the config file. On success returns {applied: [keys], restart_required: [keys]};
  // on failure sets `error` (the old configuration stays) and returns null.
  virtual nlohmann::json reload(std::string& error) = 0;
};

}  // namespace drover::supervisor
