// Test models for the tinyllm unit tests: the generator's "tiny" and "tiny-unshared" presets,
// written once per test process into a private temporary directory that is removed at exit.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "worker/tools/model_generator.hpp"
#include "worker/tools/model_quantizer.hpp"

namespace drover::worker::tinyllm::testing {

struct TestModel {
  std::string model;
  std::string tokenizer;
  ModelConfig config;
};

class TestModelDir {
 public:
  static TestModelDir& instance() {
    static TestModelDir dir;
    return dir;
  }
  const std::filesystem::path& path() const { return dir_; }

  // The preset's files (written on first use). "PRESET@q8_0:N" is the preset quantized to Q8_0
  // in groups of N (llama2.c's version-2 format), with the preset's tokenizer.
  const TestModel& get(const std::string& preset) {
    if (const auto at = preset.find("@q8_0:"); at != std::string::npos) return get_q8(preset, at);
    auto it = models_.find(preset);
    if (it != models_.end()) return it->second;
    ModelSpec spec;
    if (!preset_spec(preset, spec)) throw std::runtime_error("unknown preset " + preset);
    const auto sub = dir_ / preset;
    std::filesystem::create_directories(sub);
    TestModel m{(sub / "model.bin").string(), (sub / "tokenizer.bin").string(), spec.config};
    const auto err = write_model(spec, m.model, m.tokenizer);
    if (!err.empty()) throw std::runtime_error(err);
    return models_.emplace(preset, m).first->second;
  }

 private:
  const TestModel& get_q8(const std::string& name, std::size_t at) {
    if (auto it = models_.find(name); it != models_.end()) return it->second;
    const TestModel& base = get(name.substr(0, at));
    const int group_size = std::stoi(name.substr(at + 6));
    TestModel m = base;
    m.model = (dir_ / (name.substr(0, at) + "-q8_0-" + std::to_string(group_size) + ".bin")).string();
    auto src = Checkpoint::open(base.model);
    if (!src) throw std::runtime_error(src.error());
    auto written = write_q8_0(*src, group_size, m.model);
    if (!written) throw std::runtime_error(written.error());
    return models_.emplace(name, m).first->second;
  }

  TestModelDir()
      : dir_(std::filesystem::temp_directory_path() /
             ("drover-tinyllm-test-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
  }
  ~TestModelDir() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::filesystem::path dir_;
  std::map<std::string, TestModel> models_;
};

inline const TestModel& tiny_model() { return TestModelDir::instance().get("tiny"); }
inline const TestModel& tiny_unshared_model() {
  return TestModelDir::instance().get("tiny-unshared");
}

}  // namespace drover::worker::tinyllm::testing
