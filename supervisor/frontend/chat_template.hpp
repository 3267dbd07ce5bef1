// ChatTemplate: how the messages of a chat completion become the one prompt a worker
// completes (docs/OPENAI.md "Chat template"). drover's workers complete text, so the OpenAI
// frontend renders the conversation and asks for its continuation:
//
//   llama2  Llama 2 chat's layout, for llama2.c checkpoints (the tinyllm backend):
//             [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} [INST] {user} [/INST]
//           (the BOS token is the tokenizer's; `</s><s>` between turns is left out, since the
//           llama2.c tokenizer would read it as text, not as special tokens)
//   plain   one "Role: content" line per message, then "Assistant:" to answer:
//             System: {system}\nUser: {user}\nAssistant: {assistant}\nUser: {user}\nAssistant:
//
// `developer` messages count as system messages. A model gets the template openai.chat_templates
// names for it; otherwise llama2 when its catalog backend (or, for a model not in the catalog,
// workers.backend) is tinyllm, and plain for everything else. Pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "proto/openai_request.hpp"

namespace drover::supervisor {

enum class ChatTemplate { llama2, plain };

ChatTemplate chat_template_for(const Config& config, std::string_view model);
std::string render_chat(ChatTemplate t, const std::vector<proto::openai::ChatMessage>& messages);

}  // namespace drover::supervisor
