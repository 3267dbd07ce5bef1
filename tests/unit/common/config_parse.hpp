// Helpers of the config block tests: parse YAML text (with an environment) the way droverd
// loads a file, or get the ConfigError it raises.
#pragma once

#include <string>

#include "common/config.hpp"

namespace drover::test {

inline Config parse(const std::string& yaml, const Environment& env = {}) {
  return parse_config(yaml, env, {});
}

// The ConfigError's message for `yaml`, or "(accepted)" when it loads.
inline std::string error_of(const std::string& yaml, const Environment& env = {}) {
  try {
    parse(yaml, env);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace drover::test
