// The shipped config files must load: runtime.yaml is what ./scripts/run uses, and
// runtime.example.yaml claims to list every key with a valid value.
#include <gtest/gtest.h>

#include "common/config.hpp"

namespace drover {
namespace {

TEST(ShippedConfig, RuntimeYamlLoads) {
  const Config c = load_config_file(DROVER_SOURCE_DIR "/config/runtime.yaml", {}, {});
  EXPECT_GE(c.workers.count, 1);
  EXPECT_FALSE(c.workers.command.empty());
}

TEST(ShippedConfig, ExampleYamlLoadsWithTheDefaults) {
  const Config c = load_config_file(DROVER_SOURCE_DIR "/config/runtime.example.yaml", {}, {});
  const Config d = parse_config("", {}, {});
  // The example documents the defaults, so loading it must give them back.
  EXPECT_EQ(c.server.max_message_bytes, d.server.max_message_bytes);
  EXPECT_EQ(c.server.max_queue, d.server.max_queue);
  EXPECT_EQ(c.workers.count, d.workers.count);
  EXPECT_EQ(c.workers.heartbeat_timeout, d.workers.heartbeat_timeout);
  EXPECT_EQ(c.workers.max_restarts, d.workers.max_restarts);
  EXPECT_EQ(c.circuit_breaker.consecutive_failures, d.circuit_breaker.consecutive_failures);
  EXPECT_EQ(c.circuit_breaker.open_duration, d.circuit_breaker.open_duration);
  EXPECT_EQ(c.retry.max_attempts, d.retry.max_attempts);
  EXPECT_EQ(c.retry.poison_threshold, d.retry.poison_threshold);
  EXPECT_EQ(c.routing.strategy, d.routing.strategy);
}

}  // namespace
}  // namespace drover
