// The chat templates (supervisor/frontend/chat_template.hpp): the exact prompt each renders,
// and which model gets which.
#include <gtest/gtest.h>

#include "supervisor/frontend/chat_template.hpp"

namespace drover::supervisor {
namespace {

using Messages = std::vector<proto::openai::ChatMessage>;

TEST(ChatTemplate, Llama2RendersTurnsAndTheSystemBlock) {
  const Messages m = {{"system", "Be brief."},
                      {"user", "Hi"},
                      {"assistant", "Hello."},
                      {"user", "Tell a story"}};
  EXPECT_EQ(render_chat(ChatTemplate::llama2, m),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. [INST] Tell a story [/INST]");
  EXPECT_EQ(render_chat(ChatTemplate::llama2, {{"user", "Hi"}}), "[INST] Hi [/INST]");
  // A last assistant message is continued (prefill).
  EXPECT_EQ(render_chat(ChatTemplate::llama2, {{"user", "Hi"}, {"assistant", "Once"}}),
            "[INST] Hi [/INST] Once");
  EXPECT_EQ(render_chat(ChatTemplate::llama2, {{"developer", "Rules"}}),
            "[INST] <<SYS>>\nRules\n<</SYS>>\n\n [/INST]");
}

TEST(ChatTemplate, PlainRendersOneLinePerMessage) {
  const Messages m = {{"developer", "Rules"}, {"user", "Hi"}, {"assistant", "Yes"}, {"user", "More"}};
  EXPECT_EQ(render_chat(ChatTemplate::plain, m),
            "System: Rules\nUser: Hi\nAssistant: Yes\nUser: More\nAssistant:");
}

TEST(ChatTemplate, ChosenByConfigThenBackend) {
  Config c;
  c.workers.backend = "sim";
  c.models["tiny"] = ModelSpec{"tiny", "tinyllm", "/m.bin", {}};
  c.models["py"] = ModelSpec{"py", "python", "", {}};
  EXPECT_EQ(chat_template_for(c, "tiny"), ChatTemplate::llama2);
  EXPECT_EQ(chat_template_for(c, "py"), ChatTemplate::plain);
  EXPECT_EQ(chat_template_for(c, "other"), ChatTemplate::plain);  // workers.backend sim
  c.workers.backend = "tinyllm";
  EXPECT_EQ(chat_template_for(c, "other"), ChatTemplate::llama2);
  c.openai.chat_templates["tiny"] = "plain";
  EXPECT_EQ(chat_template_for(c, "tiny"), ChatTemplate::plain);
}

}  // namespace
}  // namespace drover::supervisor
