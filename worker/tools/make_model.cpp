// drover-make-model: writes the model drover ships (or a test model) in llama2.c's format.
//   drover-make-model --out-dir build/models     # build/models/tinyllm.bin + tokenizer.bin
//   drover-make-model --preset tiny --model m.bin --tokenizer t.bin
//   drover-make-model --dim 288 --hidden-dim 768 --layers 6 --heads 6 --kv-heads 6 --out-dir d
//   drover-make-model --quantize q8_0 [--group-size 64] --out-dir d   # the same, Q8_0 weights
//   drover-make-model --quantize q8_0 --from f32.bin --model q8.bin   # quantize a checkpoint
// Deterministic: the same flags write the same bytes. Files are replaced atomically.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>

#include "worker/tools/model_generator.hpp"
#include "worker/tools/model_quantizer.hpp"

namespace {

using namespace drover::worker::tinyllm;

// Writes `src` as Q8_0 to `out` (and, with `announce`, what was written); returns the exit
// status.
int quantize_to(const Checkpoint& src, int group_size, const std::string& out, bool announce) {
  if (group_size == 0) group_size = default_group_size(src.config());
  if (auto msg = validate_group_size(src.config(), group_size); !msg.empty()) {
    std::cerr << "drover-make-model: --group-size: " << msg << "\n";
    return 2;
  }
  auto stats = write_q8_0(src, group_size, out);
  if (!stats) {
    std::cerr << "drover-make-model: " << stats.error() << "\n";
    return 1;
  }
  if (announce) {
    std::cout << fmt::format(
        "wrote {} ({} bytes: llama2.c version 2, Q8_0 in groups of {}; largest weight error "
        "{:.3g})\n",
        out, stats->file_bytes, group_size, stats->max_error);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"drover-make-model: write a deterministic llama2.c-format model and tokenizer"};
  std::string preset = "shipped";
  std::string out_dir;
  std::string model_path;
  std::string tokenizer_path;
  ModelSpec overrides;
  ModelConfig& o = overrides.config;
  o = ModelConfig{0, 0, 0, 0, 0, 0, 0, true};
  overrides.seed = 0;
  bool unshared = false;
  bool if_missing = false;
  std::string quantize;
  int group_size = 0;
  std::string from;
  app.add_option("--preset", preset, "shipped, tiny or tiny-unshared")->capture_default_str();
  app.add_option("--out-dir", out_dir, "write tinyllm.bin and tokenizer.bin here");
  app.add_option("--model", model_path, "checkpoint path (instead of --out-dir)");
  app.add_option("--tokenizer", tokenizer_path,
                 "tokenizer path (default: tokenizer.bin beside the model)");
  app.add_option("--dim", o.dim, "override: model dimension");
  app.add_option("--hidden-dim", o.hidden_dim, "override: feed-forward dimension");
  app.add_option("--layers", o.n_layers, "override: layers");
  app.add_option("--heads", o.n_heads, "override: query heads");
  app.add_option("--kv-heads", o.n_kv_heads, "override: key/value heads");
  app.add_option("--vocab", o.vocab_size, "override: vocabulary size (>= 354)");
  app.add_option("--seq-len", o.seq_len, "override: context length");
  app.add_option("--seed", overrides.seed, "override: weight seed");
  app.add_flag("--unshared", unshared, "store a separate classifier (negative vocab_size)");
  app.add_flag("--if-missing", if_missing, "do nothing when both files exist");
  app.add_option("--quantize", quantize,
                 "q8_0: write llama2.c's version-2 export (int8 weights in groups, runq.c)")
      ->check(CLI::IsMember({"q8_0"}));
  app.add_option("--group-size", group_size,
                 "Q8_0 group size; must divide dim and hidden_dim (default: the largest power "
                 "of two <= 64 that does)");
  app.add_option("--from", from,
                 "quantize this float32 checkpoint to --model instead of generating one (the "
                 "tokenizer is not written)");
  CLI11_PARSE(app, argc, argv);
  if ((group_size != 0 || !from.empty()) && quantize.empty()) {
    std::cerr << "drover-make-model: --group-size and --from need --quantize q8_0\n";
    return 2;
  }
  if (!from.empty()) {
    if (model_path.empty()) {
      std::cerr << "drover-make-model: --from needs --model OUT\n";
      return 2;
    }
    auto src = Checkpoint::open(from);
    if (!src) {
      std::cerr << "drover-make-model: " << src.error() << "\n";
      return 1;
    }
    return quantize_to(*src, group_size, model_path, true);
  }

  ModelSpec spec;
  if (!preset_spec(preset, spec)) {
    std::cerr << "drover-make-model: unknown preset '" << preset
              << "' (shipped, tiny, tiny-unshared)\n";
    return 2;
  }
  ModelConfig& c = spec.config;
  if (o.dim) c.dim = o.dim;
  if (o.hidden_dim) c.hidden_dim = o.hidden_dim;
  if (o.n_layers) c.n_layers = o.n_layers;
  if (o.n_heads) c.n_heads = o.n_heads;
  if (o.n_kv_heads) c.n_kv_heads = o.n_kv_heads;
  if (o.vocab_size) c.vocab_size = o.vocab_size;
  if (o.seq_len) c.seq_len = o.seq_len;
  if (overrides.seed) spec.seed = overrides.seed;
  if (unshared) c.shared_classifier = false;

  if (model_path.empty()) {
    if (out_dir.empty()) {
      std::cerr << "drover-make-model: give --out-dir DIR or --model FILE\n";
      return 2;
    }
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    if (ec) {
      std::cerr << "drover-make-model: cannot create " << out_dir << ": " << ec.message() << "\n";
      return 1;
    }
    model_path = (std::filesystem::path(out_dir) / "tinyllm.bin").string();
  }
  if (tokenizer_path.empty()) {
    tokenizer_path = (std::filesystem::path(model_path).parent_path() / "tokenizer.bin").string();
  }
  if (if_missing && std::filesystem::exists(model_path) &&
      std::filesystem::exists(tokenizer_path)) {
    return 0;
  }
  if (!quantize.empty() && group_size != 0) {
    if (auto msg = validate_group_size(c, group_size); !msg.empty()) {
      std::cerr << "drover-make-model: --group-size: " << msg << "\n";
      return 2;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  // Q8_0: the float32 model goes to a temporary file first, then is quantized from there.
  const std::string f32_path =
      quantize.empty() ? model_path : fmt::format("{}.f32.tmp.{}", model_path, ::getpid());
  if (auto err = write_model(spec, f32_path, tokenizer_path); !err.empty()) {
    std::cerr << "drover-make-model: " << err << "\n";
    return 1;
  }
  if (!quantize.empty()) {
    int rc = 1;
    if (auto src = Checkpoint::open(f32_path)) {
      rc = quantize_to(*src, group_size, model_path, false);
    } else {
      std::cerr << "drover-make-model: " << src.error() << "\n";
    }
    std::filesystem::remove(f32_path);
    if (rc != 0) return rc;
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::cout << fmt::format(
      "wrote {} ({} bytes: dim {}, hidden_dim {}, {} layers, {} heads, {} kv heads, vocab {}{}, "
      "seq_len {}, {} parameters{}) and {} in {:.0f} ms\n",
      model_path, std::filesystem::file_size(model_path), c.dim, c.hidden_dim, c.n_layers,
      c.n_heads, c.n_kv_heads, c.vocab_size, c.shared_classifier ? "" : " unshared", c.seq_len,
      c.parameter_count(), quantize.empty() ? "" : ", Q8_0", tokenizer_path, ms);
  return 0;
}
