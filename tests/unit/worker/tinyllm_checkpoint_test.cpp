#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
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

// The version-2 file of the tiny model, quantized in groups of 8 (written on first use).
const std::string& q8_tiny() { return TestModelDir::instance().get("tiny@q8_0:8").model; }

float q8_value(const Q8Tensor& t, std::size_t i, int group_size) {
  float s;
  std::memcpy(&s, t.scales + i / static_cast<std::size_t>(group_size) * sizeof(float), 4);
  return static_cast<float>(t.q[i]) * s;
}

// Every value of a Q8_0 tensor is within half a step (scale / 2) of the float32 original, and
// the step is max |w| / 127 of its group.
void expect_within_q8_error(const float* f, const Q8Tensor& t, std::size_t count, int gs,
                            const char* name) {
  for (std::size_t g = 0; g < count / static_cast<std::size_t>(gs); ++g) {
    float max_abs = 0;
    for (std::size_t i = g * gs; i < (g + 1) * gs; ++i) max_abs = std::max(max_abs, std::fabs(f[i]));
    const float step = max_abs / 127.0f;
    for (std::size_t i = g * gs; i < (g + 1) * gs; ++i) {
      ASSERT_LE(std::fabs(q8_value(t, i, gs) - f[i]), step * 0.5001f) << name << " value " << i;
    }
  }
}

TEST(TinyllmCheckpoint, Q8RoundTripKeepsTheHeaderAndEveryWeightWithinHalfAStep) {
  for (const char* preset : {"tiny", "tiny-unshared"}) {
    const auto& m = TestModelDir::instance().get(preset);
    const auto& q = TestModelDir::instance().get(std::string(preset) + "@q8_0:4");
    auto f32 = Checkpoint::open(m.model);
    auto q8 = Checkpoint::open(q.model);
    ASSERT_TRUE(f32.has_value()) << f32.error();
    ASSERT_TRUE(q8.has_value()) << q8.error();
    const ModelConfig& c = q8->config();
    const ModelConfig& e = f32->config();
    EXPECT_EQ(q8->format(), WeightFormat::q8_0);
    EXPECT_EQ(f32->format(), WeightFormat::f32);
    EXPECT_EQ(q8->weights().group_size, 4);
    EXPECT_EQ(std::tie(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                       c.seq_len, c.shared_classifier),
              std::tie(e.dim, e.hidden_dim, e.n_layers, e.n_heads, e.n_kv_heads, e.vocab_size,
                       e.seq_len, e.shared_classifier));
    EXPECT_EQ(q8->file_bytes(), kVersionedHeaderBytes + q8_weight_bytes(c, 4));
    const Weights& a = f32->weights();
    const Weights& b = q8->weights();
    const std::size_t d = static_cast<std::size_t>(c.dim), h = static_cast<std::size_t>(c.hidden_dim),
                      kv = static_cast<std::size_t>(c.kv_dim()), v = static_cast<std::size_t>(c.vocab_size);
    const std::size_t l = static_cast<std::size_t>(c.n_layers);
    // RMSNorm gains stay float32, bit for bit.
    EXPECT_EQ(std::memcmp(a.rms_att, b.rms_att, l * d * 4), 0);
    EXPECT_EQ(std::memcmp(a.rms_ffn, b.rms_ffn, l * d * 4), 0);
    EXPECT_EQ(std::memcmp(a.rms_final, b.rms_final, d * 4), 0);
    expect_within_q8_error(a.token_embedding, b.q_token_embedding, v * d, 4, "embedding");
    expect_within_q8_error(a.wcls, b.q_wcls, v * d, 4, "wcls");
    EXPECT_EQ(b.q_wcls.q == b.q_token_embedding.q, c.shared_classifier);
    ASSERT_EQ(b.q_wq.size(), l);
    for (std::size_t i = 0; i < l; ++i) {
      expect_within_q8_error(a.wq + i * d * d, b.q_wq[i], d * d, 4, "wq");
      expect_within_q8_error(a.wk + i * kv * d, b.q_wk[i], kv * d, 4, "wk");
      expect_within_q8_error(a.wv + i * kv * d, b.q_wv[i], kv * d, 4, "wv");
      expect_within_q8_error(a.wo + i * d * d, b.q_wo[i], d * d, 4, "wo");
      expect_within_q8_error(a.w1 + i * h * d, b.q_w1[i], h * d, 4, "w1");
      expect_within_q8_error(a.w2 + i * d * h, b.q_w2[i], d * h, 4, "w2");
      expect_within_q8_error(a.w3 + i * h * d, b.q_w3[i], h * d, 4, "w3");
    }
  }
}

std::string with_int32(std::string bytes, std::size_t at, std::int32_t value) {
  std::memcpy(bytes.data() + at, &value, 4);
  return bytes;
}

TEST(TinyllmCheckpoint, BadVersion2FilesAreRefusedWithWhatIsWrong) {
  const std::string bytes = read_all(q8_tiny());
  auto expect_error = [](const std::string& name, const std::string& content, const char* what) {
    auto cp = Checkpoint::open(write_file(name, content));
    ASSERT_FALSE(cp.has_value()) << name;
    EXPECT_NE(cp.error().find(what), std::string::npos) << name << ": " << cp.error();
  };
  expect_error("v3.bin", with_int32(bytes, 4, 3), "version 3 is not supported");
  expect_error("v1.bin", with_int32(bytes, 4, 1), "version 1 is not supported");
  expect_error("gs5.bin", with_int32(bytes, 37, 5), "group_size = 5 must be positive and divide dim = 48");
  expect_error("gs0.bin", with_int32(bytes, 37, 0), "group_size = 0");
  expect_error("gs16.bin", with_int32(bytes, 37, 16), "hidden_dim = 72");  // divides dim only
  // A valid group size, but not the file's: the scales take another number of bytes.
  expect_error("gs4.bin", with_int32(bytes, 37, 4), "Q8_0 group_size 4), which needs 104128 bytes");
  std::string flag = bytes;
  flag[36] = 2;
  expect_error("flag.bin", flag, "shared_classifier = 2 is not 0 or 1");
  expect_error("heads.bin", with_int32(bytes, 8 + 3 * 4, 5), "not a multiple of n_heads");
  expect_error("vocab.bin", with_int32(bytes, 8 + 5 * 4, -384), "|vocab_size| = -384");
  expect_error("cut.bin", bytes.substr(0, bytes.size() - 4), "truncated");
  expect_error("cut.bin", bytes.substr(0, bytes.size() - 4), std::to_string(bytes.size()).c_str());
  expect_error("long.bin", bytes + "junk", "does not match its header");
  expect_error("header.bin", bytes.substr(0, 100), "shorter than the 256-byte header");
}

TEST(TinyllmCheckpoint, GarbageIsNeitherFormat) {
  std::string bytes(512, '\x7f');
  auto cp = Checkpoint::open(write_file("garbage.bin", bytes));
  ASSERT_FALSE(cp.has_value());
  EXPECT_NE(cp.error().find("neither the magic 'ak42'"), std::string::npos) << cp.error();
}

TEST(TinyllmCheckpoint, QuantizerRefusesAQ8SourceAndAGroupSizeThatDoesNotDivide) {
  auto q8 = Checkpoint::open(q8_tiny());
  ASSERT_TRUE(q8.has_value()) << q8.error();
  const auto out = (TestModelDir::instance().path() / "requantized.bin").string();
  auto again = write_q8_0(*q8, 8, out);
  ASSERT_FALSE(again.has_value());
  EXPECT_NE(again.error().find("already quantized"), std::string::npos) << again.error();
  auto f32 = Checkpoint::open(testing::tiny_model().model);
  ASSERT_TRUE(f32.has_value());
  auto bad = write_q8_0(*f32, 32, out);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find("group_size = 32 must be positive and divide dim = 48 and hidden_dim = 72"),
            std::string::npos)
      << bad.error();
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(default_group_size(f32->config()), 8);  // 48 and 72: 64, 32, 16 do not divide
  EXPECT_EQ(default_group_size(ModelConfig{288, 768, 6, 6, 6, 32000, 256, true}), 32);
  EXPECT_EQ(default_group_size(ModelConfig{256, 704, 4, 8, 4, 512, 512, false}), 64);
}

TEST(TinyllmCheckpoint, ParameterCountLeavesOutTheRopeTables) {
  ModelConfig c{288, 768, 6, 6, 6, 32000, 256, true};  // TinyStories stories15M
  EXPECT_EQ(c.parameter_count(), 15'191'712u);
  EXPECT_EQ(kHeaderBytes + c.weight_floats() * 4, 60'816'028u);  // stories15M.bin's size
}

}  // namespace
}  // namespace drover::worker::tinyllm
