// Model quantizer: writes a float32 checkpoint as llama2.c's version-2 export (Q8_0 weights,
// the format of its export.py --version 2 and runq.c; layout in checkpoint.hpp). drover-make-
// model uses it for generated models (--quantize q8_0) and for existing files (--from).
#pragma once

#include <boost/system/result.hpp>
#include <string>

#include "worker/backends/tinyllm/checkpoint.hpp"

namespace drover::worker::tinyllm {

// The largest power of two <= 64 that divides dim and hidden_dim (llama2.c's export.py starts
// at 64 and halves until it divides dim; hidden_dim must be whole groups too).
int default_group_size(const ModelConfig& c);

struct QuantizeStats {
  std::size_t file_bytes = 0;
  float max_error = 0.0f;  // largest |w - q * scale| over every quantized weight
};

// Writes `src` (float32) quantized in groups of `group_size` to `out_path` (replaced by
// rename, like write_model). Errors: a Q8_0 source, a group size that does not divide dim
// and hidden_dim, I/O.
boost::system::result<QuantizeStats, std::string> write_q8_0(const Checkpoint& src,
                                                              int group_size,
                                                              const std::string& out_path);

}  // namespace drover::worker::tinyllm
