// Request identity for the pipeline stages: which generate requests are deterministic, the key
// under which identical ones share an execution or a cached result. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proto/client_params.hpp"

namespace drover::supervisor {

// SHA-256 (hex) of the canonical JSON of what determines a generate's output: model, prompt,
// max_tokens, temperature, top_p, stop and the seed — only a seed the CLIENT gave (droverd
// assigns one to every request for stream failover; that one must not split the key).
// nullopt when the request is not deterministic: temperature > 0 without a client seed, whose
// output is a fresh sample each time and so is neither shared nor cached. `stream` is not part
// of the key: a streamed and an unstreamed run of the same request produce the same text.
std::optional<std::string> deterministic_key(const proto::GenerateParams& params);

}  // namespace drover::supervisor
