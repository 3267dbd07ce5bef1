#include "worker/tools/model_quantizer.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "worker/backends/tinyllm/q8.hpp"

namespace drover::worker::tinyllm {

int default_group_size(const ModelConfig& c) {
  int gs = 64;
  while (gs > 1 && (c.dim % gs != 0 || c.hidden_dim % gs != 0)) gs /= 2;
  return gs;
}

boost::system::result<QuantizeStats, std::string> write_q8_0(const Checkpoint& src,
                                                              int group_size,
                                                              const std::string& out_path) {
  using R = boost::system::result<QuantizeStats, std::string>;
  auto error = [](std::string msg) { return R(boost::system::in_place_error, std::move(msg)); };
  const ModelConfig& c = src.config();
  const Weights& w = src.weights();
  if (src.format() != WeightFormat::f32) {
    return error(fmt::format("{} is already quantized (Q8_0, group size {})", src.path(),
                             w.group_size));
  }
  if (auto msg = validate_group_size(c, group_size); !msg.empty()) return error(msg);

  const std::string tmp = out_path + fmt::format(".tmp.{}", ::getpid());
  auto fail = [&] {
    std::remove(tmp.c_str());
    return error(fmt::format("cannot write {}", out_path));
  };
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(tmp.c_str(), "wb"),
                                                       &std::fclose);
  if (!file) return fail();
  bool ok = true;
  auto put = [&](const void* data, std::size_t bytes) {
    ok = ok && std::fwrite(data, 1, bytes, file.get()) == bytes;
  };

  // The 256-byte header, byte for byte as export.py packs it ('I', 'i', 7 x 'i', 'B', 'i').
  std::vector<char> header(kVersionedHeaderBytes, 0);
  const std::int32_t version = 2;
  const std::int32_t params[7] = {c.dim,        c.hidden_dim, c.n_layers, c.n_heads,
                                  c.n_kv_heads, c.vocab_size, c.seq_len};
  std::memcpy(header.data(), &kVersionedMagic, 4);
  std::memcpy(header.data() + 4, &version, 4);
  std::memcpy(header.data() + 8, params, sizeof(params));
  header[36] = c.shared_classifier ? 1 : 0;
  std::memcpy(header.data() + 37, &group_size, 4);
  put(header.data(), header.size());

  const std::size_t d = static_cast<std::size_t>(c.dim);
  const std::size_t l = static_cast<std::size_t>(c.n_layers);
  const std::size_t v = static_cast<std::size_t>(c.vocab_size);
  put(w.rms_att, l * d * sizeof(float));
  put(w.rms_ffn, l * d * sizeof(float));
  put(w.rms_final, d * sizeof(float));

  QuantizeStats stats;
  std::vector<std::int8_t> q;
  std::vector<float> scales;
  const auto gs = static_cast<std::size_t>(group_size);
  // One matrix (rows x cols): its int8 values, then its scales.
  auto tensor = [&](const float* f, std::size_t rows, std::size_t cols) {
    const std::size_t count = rows * cols;
    q.resize(count);
    scales.resize(count / gs);
    for (std::size_t r = 0; r < rows; ++r) {
      q8::quantize(f + r * cols, static_cast<int>(cols), group_size, q.data() + r * cols,
                   scales.data() + r * cols / gs);
    }
    for (std::size_t i = 0; i < count; ++i) {
      const float back = static_cast<float>(q[i]) * scales[i / gs];
      stats.max_error = std::max(stats.max_error, std::fabs(back - f[i]));
    }
    put(q.data(), q.size());
    put(scales.data(), scales.size() * sizeof(float));
  };
  tensor(w.token_embedding, v, d);
  for (const LayerMatrix& m : layer_matrices(c)) {
    for (std::size_t i = 0; i < l; ++i) tensor(w.*m.f32 + i * m.rows * m.cols, m.rows, m.cols);
  }
  if (!c.shared_classifier) tensor(w.wcls, v, d);
  if (!ok || std::fclose(file.release()) != 0) return fail();
  if (std::rename(tmp.c_str(), out_path.c_str()) != 0) return fail();
  stats.file_bytes = kVersionedHeaderBytes + q8_weight_bytes(c, group_size);
  return stats;
}

}  // namespace drover::worker::tinyllm
