#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "tests/unit/worker/tinyllm_test_model.hpp"
#include "worker/backends/tinyllm/checkpoint.hpp"

namespace drover::worker::tinyllm {
namespace {

using testing::TestModelDir;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const auto path = (TestModelDir::instance().path() / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  return path;
}

TEST(TinyllmCheckpoint, OpensAGeneratedModelAndReadsItsHeader) {
  const auto& m = testing::tiny_model();
  auto cp = Checkpoint::open(m.model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  const ModelConfig& c = cp->config();
  EXPECT_EQ(c.dim, m.config.dim);
  EXPECT_EQ(c.hidden_dim, m.config.hidden_dim);
  EXPECT_EQ(c.n_layers, m.config.n_layers);
  EXPECT_EQ(c.n_heads, m.config.n_heads);
  EXPECT_EQ(c.n_kv_heads, m.config.n_kv_heads);
  EXPECT_EQ(c.vocab_size, m.config.vocab_size);
  EXPECT_EQ(c.seq_len, m.config.seq_len);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(cp->weights().wcls, cp->weights().token_embedding);
  EXPECT_EQ(cp->file_bytes(), kHeaderBytes + c.weight_floats() * sizeof(float));
}

TEST(TinyllmCheckpoint, NegativeVocabSizeMeansASeparateClassifierAtTheEnd) {
  const auto& m = testing::tiny_unshared_model();
  auto cp = Checkpoint::open(m.model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  const ModelConfig& c = cp->config();
  EXPECT_FALSE(c.shared_classifier);
  EXPECT_EQ(c.vocab_size, m.config.vocab_size);  // reported positive
  const auto* base = reinterpret_cast<const char*>(cp->weights().token_embedding) - kHeaderBytes;
  const auto* cls_end = reinterpret_cast<const char*>(cp->weights().wcls + c.vocab_size * c.dim);
  EXPECT_EQ(static_cast<std::size_t>(cls_end - base), cp->file_bytes());
}

TEST(TinyllmCheckpoint, MissingFileNamesThePath) {
  auto cp = Checkpoint::open("/nonexistent/drover/model.bin");
  ASSERT_FALSE(cp.has_value());
  EXPECT_NE(cp.error().find("/nonexistent/drover/model.bin"), std::string::npos);
  EXPECT_NE(cp.error().find("cannot open"), std::string::npos);
}

TEST(TinyllmCheckpoint, TruncatedOrOverlongFilesAreRefusedWithBothSizes) {
  const std::string bytes = read_all(testing::tiny_model().model);
  auto cut = Checkpoint::open(write_file("cut.bin", bytes.substr(0, bytes.size() - 4)));
  ASSERT_FALSE(cut.has_value());
  EXPECT_NE(cut.error().find("truncated"), std::string::npos) << cut.error();
  EXPECT_NE(cut.error().find(std::to_string(bytes.size())), std::string::npos) << cut.error();
  auto longer = Checkpoint::open(write_file("long.bin", bytes + "junk"));
  ASSERT_FALSE(longer.has_value());
  EXPECT_NE(longer.error().find("does not match its header"), std::string::npos) << longer.error();
}

TEST(TinyllmCheckpoint, ImpossibleHeadersAreRefused) {
  std::string bytes = read_all(testing::tiny_model().model);
  std::int32_t heads = 5;  // dim 48 is not a multiple of 5
  std::memcpy(bytes.data() + 3 * 4, &heads, 4);
  auto bad = Checkpoint::open(write_file("heads.bin", bytes));
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find("not a multiple of n_heads"), std::string::npos) << bad.error();

  auto tiny = Checkpoint::open(write_file("short.bin", "abc"));
  ASSERT_FALSE(tiny.has_value());
  EXPECT_NE(tiny.error().find("shorter than"), std::string::npos) << tiny.error();

  std::string zeros(64, '\0');
  auto zero = Checkpoint::open(write_file("zero.bin", zeros));
  ASSERT_FALSE(zero.has_value());
  EXPECT_NE(zero.error().find("dim = 0"), std::string::npos) << zero.error();
}

TEST(TinyllmCheckpoint, ParameterCountLeavesOutTheRopeTables) {
  ModelConfig c{288, 768, 6, 6, 6, 32000, 256, true};  // TinyStories stories15M
  EXPECT_EQ(c.parameter_count(), 15'191'712u);
  EXPECT_EQ(kHeaderBytes + c.weight_floats() * 4, 60'816'028u);  // stories15M.bin's size
}

}  // namespace
}  // namespace drover::worker::tinyllm
