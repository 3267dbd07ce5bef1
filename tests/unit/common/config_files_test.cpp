// The shipped config files must load: runtime.yaml is what ./scripts/run uses, and
// runtime.example.yaml claims to list every key with a valid value.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

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
  // The example documents the defaults, so loading it must give them back, block by block
  // (models and model_preload show examples of entries instead; they have no defaults).
  const auto example = to_json(c);
  const auto defaults = to_json(d);
  for (const auto& [block, keys] : defaults.items()) {
    if (block == "models" || block == "model_preload") continue;
    EXPECT_EQ(example[block], keys) << "block " << block;
  }
  // And it names every key.
  std::ifstream in(DROVER_SOURCE_DIR "/config/runtime.example.yaml");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& [block, keys] : defaults.items()) {
    EXPECT_NE(text.find("\n" + block + ":"), std::string::npos) << "block " << block;
    if (!keys.is_object() || block == "models") continue;
    for (const auto& [key, value] : keys.items()) {
      EXPECT_NE(text.find(" " + key + ":"), std::string::npos) << block << "." << key;
    }
  }
}

}  // namespace
}  // namespace drover
