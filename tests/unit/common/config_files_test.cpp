// The shipped config files must load: runtime.yaml is what ./scripts/run uses, and
// runtime.example.yaml claims to list every key with a valid value.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

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

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The model path a workers.command passes to drover-worker, or "" without --model-path.
std::string model_path_of(const Config& c) {
  const auto& cmd = c.workers.command;
  for (std::size_t i = 0; i + 1 < cmd.size(); ++i) {
    if (cmd[i] == "--model-path") return cmd[i + 1];
  }
  return {};
}

// Issue 21 item 2: every deployment serves the real model, at the path its docs install it to
// (drover-worker's default, ../models beside the program, is wrong for /usr/local/bin).
TEST(ShippedConfig, DeploymentsServeTinyllmFromWhereTheDocsPutTheModel) {
  const Config systemd = load_config_file(DROVER_SOURCE_DIR "/deploy/systemd/runtime.yaml", {}, {});
  EXPECT_EQ(systemd.workers.backend, "tinyllm");
  EXPECT_EQ(model_path_of(systemd), "/var/lib/drover/models/tinyllm.bin");
  EXPECT_NE(read_text(DROVER_SOURCE_DIR "/docs/OPERATIONS.md")
                .find("build/models/tokenizer.bin /var/lib/drover/models/"),
            std::string::npos)
      << "the runbook installs the model where the systemd config looks for it";

  const Config docker = load_config_file(DROVER_SOURCE_DIR "/deploy/docker/runtime.yaml", {}, {});
  EXPECT_EQ(docker.workers.backend, "tinyllm");
  EXPECT_EQ(model_path_of(docker), "/opt/drover/models/tinyllm.bin");
  EXPECT_NE(read_text(DROVER_SOURCE_DIR "/deploy/docker/Dockerfile").find("/opt/drover/models/"),
            std::string::npos);

  // The ConfigMap's runtime.yaml: the block under `runtime.yaml: |`, indented four spaces.
  const std::string cm = read_text(DROVER_SOURCE_DIR "/deploy/kubernetes/base/configmap.yaml");
  const auto start = cm.find("runtime.yaml: |\n");
  ASSERT_NE(start, std::string::npos);
  std::string yaml;
  std::istringstream lines(cm.substr(start + 16));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.rfind("    ", 0) != 0) break;
    yaml += (line.size() >= 4 ? line.substr(4) : std::string()) + "\n";
  }
  const Config k8s = parse_config(yaml, {}, {});
  EXPECT_EQ(k8s.workers.backend, "tinyllm");
  EXPECT_EQ(model_path_of(k8s), "/opt/drover/models/tinyllm.bin");
  // The Service sends clients to the OpenAI API on the pod IP, behind keys from the Secret.
  EXPECT_TRUE(k8s.openai.enabled);
  EXPECT_EQ(k8s.openai.listen, "0.0.0.0:8000");
  EXPECT_FALSE(k8s.openai.api_keys_file.empty());
}

}  // namespace
}  // namespace drover
