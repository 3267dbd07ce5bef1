#include "common/log.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace drover {
namespace {

TEST(JsonLogs, EachLineIsValidJsonWithRequestAndWorkerFields) {
  auto logger = component_logger("logtest");
  std::ostringstream out;
  logger->sinks().push_back(std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  configure_logging("info", LogFormat::json);
  logger->warn("request_id=r1-7 worker_id=3 said \"hi\"\tand\\left");
  logger->info("no fields here");
  logger->debug("below the level");
  configure_logging("info", LogFormat::text);
  logger->sinks().pop_back();

  std::istringstream lines(out.str());
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["component"], "logtest");
  EXPECT_EQ(j["request_id"], "r1-7");
  EXPECT_EQ(j["worker_id"], "3");
  EXPECT_EQ(j["msg"], "request_id=r1-7 worker_id=3 said \"hi\"\tand\\left");
  EXPECT_TRUE(j["ts"].get<std::string>().ends_with("Z"));
  EXPECT_TRUE(j["pid"].is_number_integer());
  ASSERT_TRUE(std::getline(lines, line));
  const auto k = nlohmann::json::parse(line);
  EXPECT_FALSE(k.contains("request_id"));
  EXPECT_FALSE(std::getline(lines, line)) << "debug must be filtered at level info";
}

}  // namespace
}  // namespace drover
