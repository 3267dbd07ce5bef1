#include "supervisor/frontend/chat_template.hpp"

namespace drover::supervisor {
namespace {

bool is_system(const proto::openai::ChatMessage& m) {
  return m.role == "system" || m.role == "developer";
}

std::string render_llama2(const std::vector<proto::openai::ChatMessage>& messages) {
  std::string system;
  for (const auto& m : messages) {
    if (!is_system(m)) continue;
    if (!system.empty()) system += '\n';
    system += m.content;
  }
  std::string out;
  bool first_user = true;
  bool open = false;  // an [INST] waits for its [/INST]
  for (const auto& m : messages) {
    if (is_system(m)) continue;
    if (m.role == "user") {
      if (open) out += " [/INST]";
      out += out.empty() ? "[INST] " : " [INST] ";
      if (first_user && !system.empty()) out += "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
      first_user = false;
      out += m.content;
      open = true;
    } else {  // assistant
      if (open) out += " [/INST]";
      out += ' ';
      out += m.content;
      open = false;
    }
  }
  if (first_user && !system.empty()) {
    // Only system messages: the system block alone, as the first instruction.
    out = "[INST] <<SYS>>\n" + system + "\n<</SYS>>\n\n";
    open = true;
  }
  if (open) out += " [/INST]";
  return out;
}

std::string render_plain(const std::vector<proto::openai::ChatMessage>& messages) {
  std::string out;
  for (const auto& m : messages) {
    out += is_system(m) ? "System: " : m.role == "user" ? "User: " : "Assistant: ";
    out += m.content;
    out += '\n';
  }
  out += "Assistant:";
  return out;
}

}  // namespace

ChatTemplate chat_template_for(const Config& config, std::string_view model) {
  const std::string id(model);
  if (const auto it = config.openai.chat_templates.find(id); it != config.openai.chat_templates.end()) {
    return it->second == "llama2" ? ChatTemplate::llama2 : ChatTemplate::plain;
  }
  const auto spec = config.models.find(id);
  const std::string& backend = spec != config.models.end() ? spec->second.backend : config.workers.backend;
  return backend == "tinyllm" ? ChatTemplate::llama2 : ChatTemplate::plain;
}

std::string render_chat(ChatTemplate t, const std::vector<proto::openai::ChatMessage>& messages) {
  return t == ChatTemplate::llama2 ? render_llama2(messages) : render_plain(messages);
}

}  // namespace drover::supervisor
