// Model management end to end: a real droverd with real drover-worker processes serving the
// sim backend by default and a catalog (config `models`) holding the generated tinyllm model,
// a slow-loading sim model and one that cannot load. Checks load on demand with affinity,
// -32006 for unknown and unloadable models, admin models.load / models.unload, idle unload,
// models.list states, and that a replacement worker loads a model again on demand.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/integration/harness.hpp"

namespace drover::test {
namespace {

const std::string kModel = DROVER_MODEL_PATH;

DroverOptions catalog_options(const std::string& memory_policy = "") {
  DroverOptions o;
  o.extra_yaml = "models:\n"
                 "  tiny: {backend: tinyllm, path: " + kModel + ", options: {threads: 1, max_batch: 4}}\n"
                 "  badbatch: {backend: tinyllm, path: " + kModel + ", options: {max_batch: 0}}\n"
                 "  slow: {backend: sim, options: {load_ms: 300}}\n"
                 "  broken: {backend: tinyllm, path: /nonexistent/model.bin}\n" +
                 memory_policy;
  return o;
}

json model_entry(DroverProcess& d, const std::string& id) {
  const json list = d.client().call("models.list")["result"]["models"];
  for (const auto& m : list) {
    if (m["id"] == id) return m;
  }
  return json();
}

// cache: bypass, so every request reaches a worker (these tests are about where models run).
json generate(RpcClient& c, const std::string& model, const std::string& prompt = "Once upon a time") {
  return c.call("generate",
                {{"model", model}, {"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0},
                 {"cache", "bypass"}},
                kReplyTimeout);
}

TEST(Models, CatalogModelLoadsOnDemandAndLaterRequestsStayOnItsWorker) {
  DroverProcess d(catalog_options());
  ASSERT_TRUE(d.start());
  EXPECT_EQ(model_entry(d, "tiny")["state"], "unloaded");
  EXPECT_EQ(model_entry(d, "sim")["state"], "loaded");  // the workers' own model
  auto c = d.client();
  const json first = generate(c, "tiny");
  ASSERT_TRUE(first.contains("result")) << first.dump();
  const int worker = first["result"]["worker"].get<int>();
  const json entry = model_entry(d, "tiny");
  EXPECT_EQ(entry["state"], "loaded");
  EXPECT_EQ(entry["workers"], json::array({worker}));
  // Affinity: the other worker is idle, yet every request for tiny goes where it is loaded,
  // and greedy decoding gives the same text each time.
  for (int i = 0; i < 5; ++i) {
    const json r = generate(c, "tiny");
    ASSERT_TRUE(r.contains("result")) << r.dump();
    EXPECT_EQ(r["result"]["worker"], worker);
    EXPECT_EQ(r["result"]["text"], first["result"]["text"]);
  }
  // Requests without a model still use the workers' default (sim).
  const json plain = c.call("generate", {{"prompt", "hi"}, {"max_tokens", 4}}, kReplyTimeout);
  EXPECT_TRUE(plain.contains("result")) << plain.dump();
  EXPECT_EQ(d.stop(), 0);
}

TEST(Models, ConcurrentFirstRequestsShareOneLoad) {
  DroverProcess d(catalog_options());
  ASSERT_TRUE(d.start());
  auto c = d.client();
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 8; ++i) {
    ids.push_back(c.send_request("generate", {{"model", "slow"}, {"prompt", "p" + std::to_string(i)},
                                              {"max_tokens", 4}}));
  }
  std::set<int> workers;
  for (std::size_t got = 0; got < ids.size();) {
    const auto m = c.read(kReplyTimeout);
    ASSERT_TRUE(m.has_value());
    if (!m->contains("id")) continue;
    ASSERT_TRUE(m->contains("result")) << m->dump();
    workers.insert((*m)["result"]["worker"].get<int>());
    ++got;
  }
  // One load on one worker served all eight (a 300 ms load: they all waited for it).
  EXPECT_EQ(workers.size(), 1u);
  const json t = d.client().call("telemetry.metrics")["result"]["models"];
  EXPECT_EQ(t["loads_total"], 1) << t.dump();
  EXPECT_EQ(d.stop(), 0);
}

TEST(Models, UnknownAndUnloadableModelsAnswer32006NamingTheModel) {
  DroverProcess d(catalog_options());
  ASSERT_TRUE(d.start());
  auto c = d.client();
  const json unknown = generate(c, "no-such-model");
  ASSERT_TRUE(unknown.contains("error")) << unknown.dump();
  EXPECT_EQ(unknown["error"]["code"], -32006);
  EXPECT_EQ(unknown["error"]["data"]["model"], "no-such-model");
  const json broken = generate(c, "broken");
  ASSERT_TRUE(broken.contains("error")) << broken.dump();
  EXPECT_EQ(broken["error"]["code"], -32006);
  EXPECT_EQ(broken["error"]["data"]["model"], "broken");
  EXPECT_NE(broken["error"]["data"]["detail"].get<std::string>().find("/nonexistent/model.bin"),
            std::string::npos);
  const json badbatch = generate(c, "badbatch");
  ASSERT_TRUE(badbatch.contains("error")) << badbatch.dump();
  EXPECT_EQ(badbatch["error"]["code"], -32006);
  EXPECT_NE(badbatch["error"]["data"]["detail"].get<std::string>().find("max_batch"),
            std::string::npos) << badbatch.dump();
  // A failed load is not the worker's crash: the pool is intact and serves the rest.
  EXPECT_EQ(d.health()["workers_ready"], 2);
  EXPECT_TRUE(generate(c, "tiny").contains("result"));
  const json admin_unknown = d.admin().call("models.load", {{"model", "no-such-model"}});
  EXPECT_EQ(admin_unknown["error"]["code"], -32006);
  const json bad_params = d.admin().call("models.load", {{"model", 7}});
  EXPECT_EQ(bad_params["error"]["code"], -32602);
  EXPECT_EQ(d.client().call("models.load", {{"model", "tiny"}})["error"]["code"], -32008);
  // The workers' own model is not the catalog's to unload: it could not be loaded back.
  const json own = d.admin().call("models.unload", {{"model", "sim"}});
  EXPECT_EQ(own["error"]["code"], -32602) << own.dump();
  EXPECT_EQ(model_entry(d, "sim")["workers"].size(), 2u);
  EXPECT_EQ(d.stop(), 0);
}

TEST(Models, AdminLoadAndUnloadOnEveryWorker) {
  DroverProcess d(catalog_options());
  ASSERT_TRUE(d.start());
  const json loaded = d.admin().call("models.load", {{"model", "tiny"}}, kReplyTimeout);
  ASSERT_TRUE(loaded.contains("result")) << loaded.dump();
  EXPECT_EQ(loaded["result"]["loaded"].size(), 2u);
  EXPECT_EQ(model_entry(d, "tiny")["workers"].size(), 2u);
  // Loaded everywhere: the least busy routing can use both workers again.
  const json again = d.admin().call("models.load", {{"model", "tiny"}}, kReplyTimeout);
  EXPECT_EQ(again["result"]["already_loaded"].size(), 2u);
  const json unloaded = d.admin().call("models.unload", {{"model", "tiny"}}, kReplyTimeout);
  ASSERT_TRUE(unloaded.contains("result")) << unloaded.dump();
  EXPECT_EQ(unloaded["result"]["unloaded"].size(), 2u);
  EXPECT_EQ(model_entry(d, "tiny")["state"], "unloaded");
  // Unloaded is not gone: the next request loads it again on demand.
  auto c = d.client();
  EXPECT_TRUE(generate(c, "tiny").contains("result"));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Models, IdleModelsAreUnloadedAndLoadAgainOnDemand) {
  DroverProcess d(catalog_options("memory_policy: {idle_unload_s: 1}\n"));
  ASSERT_TRUE(d.start());
  auto c = d.client();
  ASSERT_TRUE(generate(c, "tiny").contains("result"));
  EXPECT_EQ(model_entry(d, "tiny")["state"], "loaded");
  ASSERT_TRUE(wait_until([&] { return model_entry(d, "tiny")["state"] == "unloaded"; }))
      << "tiny was not unloaded after 1 s idle";
  // The workers' own model is never unloaded for idleness.
  EXPECT_EQ(model_entry(d, "sim")["state"], "loaded");
  const json t = d.client().call("telemetry.metrics")["result"]["models"];
  EXPECT_GE(t["idle_unloads_total"].get<int>(), 1);
  EXPECT_TRUE(generate(c, "tiny").contains("result"));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Models, ReplacementWorkerLoadsTheModelAgainOnDemand) {
  DroverOptions o = catalog_options();
  o.workers = 1;
  DroverProcess d(o);
  ASSERT_TRUE(d.start());
  auto c = d.client();
  const json before = generate(c, "tiny");
  ASSERT_TRUE(before.contains("result"));
  ASSERT_TRUE(d.admin().call("workers.kill", {{"id", 0}}).contains("result"));
  ASSERT_TRUE(wait_until([&] {
    const json w = d.workers();
    return w.size() == 1 && w[0]["state"] == "ready" && model_entry(d, "tiny")["state"] == "unloaded";
  }));
  const json after = generate(c, "tiny");
  ASSERT_TRUE(after.contains("result")) << after.dump();
  EXPECT_EQ(after["result"]["text"], before["result"]["text"]);
  EXPECT_EQ(d.stop(), 0);
}

TEST(Models, PreloadedCatalogModelIsReadyBeforeTheWorkerIs) {
  DroverOptions o = catalog_options();
  o.extra_yaml += "model_preload:\n  enabled: true\n  parallel: true\n  models:\n"
                  "    - {model_id: tiny, warmup_requests: 1, max_tokens: 4}\n"
                  "    - {model_id: slow, warmup_requests: 1, max_tokens: 4}\n";
  DroverProcess d(o);
  ASSERT_TRUE(d.start());
  EXPECT_EQ(model_entry(d, "tiny")["workers"].size(), 2u);
  EXPECT_EQ(model_entry(d, "slow")["workers"].size(), 2u);
  EXPECT_EQ(d.client().call("telemetry.metrics")["result"]["models"]["loads_total"], 0);
  EXPECT_NE(d.log().find("preload: model tiny loaded"), std::string::npos);
  EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace drover::test
