// The `openai` block (common/config.hpp OpenAiConfig): defaults, every key, the environment
// overrides, and the refusals that name the key, the non-loopback one above all.
#include <gtest/gtest.h>

#include "common/config.hpp"
#include "tests/unit/common/config_parse.hpp"

namespace drover {
namespace {

using test::error_of;
using test::parse;

TEST(OpenAiConfig, OffByDefaultOnLoopbackPort8000) {
  const Config c = parse("");
  EXPECT_FALSE(c.openai.enabled);
  EXPECT_EQ(c.openai.listen, "127.0.0.1:8000");
  EXPECT_TRUE(c.openai.api_keys.empty());
  EXPECT_EQ(c.openai.max_body_bytes, 8u * 1024 * 1024);
  EXPECT_FALSE(c.openai.allow_unauthenticated);
}

TEST(OpenAiConfig, EveryKeyIsRead) {
  const Config c = parse(R"(
openai:
  enabled: true
  listen: "0.0.0.0:9000"
  api_keys: [k1, k2]
  api_keys_file: /etc/drover/keys
  allow_unauthenticated: false
  max_body_bytes: 4096
  chat_templates: {tinyllm: plain, other: llama2}
)");
  EXPECT_TRUE(c.openai.enabled);
  EXPECT_EQ(c.openai.listen, "0.0.0.0:9000");
  EXPECT_EQ(c.openai.api_keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_EQ(c.openai.api_keys_file, "/etc/drover/keys");
  EXPECT_EQ(c.openai.max_body_bytes, 4096u);
  EXPECT_EQ(c.openai.chat_templates.at("tinyllm"), "plain");
  EXPECT_EQ(c.openai.chat_templates.at("other"), "llama2");
  // config.get shows how many keys, never the keys.
  const auto j = to_json(c);
  EXPECT_EQ(j["openai"]["api_keys"], "<2 keys>");
  EXPECT_EQ(j.dump().find("k1"), std::string::npos);
}

TEST(OpenAiConfig, EnvironmentOverrides) {
  const Config c = parse("", {{"DROVER_OPENAI_ENABLED", "true"},
                              {"DROVER_OPENAI_LISTEN", "127.0.0.1:0"},
                              {"DROVER_OPENAI_API_KEYS", "[secret]"}});
  EXPECT_TRUE(c.openai.enabled);
  EXPECT_EQ(c.openai.listen, "127.0.0.1:0");
  EXPECT_EQ(c.openai.api_keys, std::vector<std::string>{"secret"});
  EXPECT_FALSE(parse("openai: {enabled: true}", {{"DROVER_OPENAI_ENABLED", "false"}}).openai.enabled);
}

TEST(OpenAiConfig, NonLoopbackListenNeedsKeysOrAnExplicitOptOut) {
  const std::string e = error_of("openai: {enabled: true, listen: \"0.0.0.0:8000\"}");
  EXPECT_NE(e.find("'openai.listen'"), std::string::npos) << e;
  EXPECT_NE(e.find("allow_unauthenticated"), std::string::npos) << e;
  EXPECT_EQ(error_of("openai: {enabled: true, listen: \"0.0.0.0:8000\", api_keys: [k]}"), "(accepted)");
  EXPECT_EQ(error_of("openai: {enabled: true, listen: \"0.0.0.0:8000\", api_keys_file: /k}"), "(accepted)");
  EXPECT_EQ(error_of("openai: {enabled: true, listen: \"0.0.0.0:8000\", allow_unauthenticated: true}"),
            "(accepted)");
  // Loopback in every spelling needs nothing; a disabled block is not checked.
  for (const char* listen : {"127.0.0.1:8000", "127.1.2.3:8000", "[::1]:8000", "localhost:8000"}) {
    EXPECT_EQ(error_of(std::string("openai: {enabled: true, listen: \"") + listen + "\"}"), "(accepted)")
        << listen;
  }
  EXPECT_EQ(error_of("openai: {enabled: false, listen: \"0.0.0.0:8000\"}"), "(accepted)");
}

TEST(OpenAiConfig, BadValuesNameTheKey) {
  EXPECT_NE(error_of("openai: {listen: nowhere}").find("'openai.listen'"), std::string::npos);
  EXPECT_NE(error_of("openai: {max_body_bytes: 10}").find("'openai.max_body_bytes'"), std::string::npos);
  EXPECT_NE(error_of("openai: {api_keys: k}").find("'openai.api_keys'"), std::string::npos);
  EXPECT_NE(error_of("openai: {api_keys: [\"a b\"]}").find("'openai.api_keys'"), std::string::npos);
  EXPECT_NE(error_of("openai: {chat_templates: {m: chatml}}").find("'openai.chat_templates.m'"),
            std::string::npos);
  EXPECT_NE(error_of("openai: {enabled: maybe}").find("'openai.enabled'"), std::string::npos);
  EXPECT_NE(error_of("openai: {listen_port: 1}").find("unknown key 'openai.listen_port'"), std::string::npos);
}

}  // namespace
}  // namespace drover
