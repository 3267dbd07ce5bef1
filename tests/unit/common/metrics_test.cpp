// The metrics registry and its Prometheus text exposition (format 0.0.4): what a scraper and
// promtool rely on — HELP/TYPE lines, label escaping, cumulative histogram buckets ending in
// +Inf with _sum and _count — and the declaration rules that keep names conventional. Also the
// `metrics` config block that turns the endpoint on.
#include "common/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <thread>

#include "common/config.hpp"

namespace drover::metrics {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  const auto all = lines_of(text);
  return std::find(all.begin(), all.end(), line) != all.end();
}

TEST(Metrics, CounterHasHelpTypeAndSamples) {
  Registry r;
  auto& c = r.counter("drover_things_total", "Things that happened.", {"kind"});
  c.with({"a"}).inc();
  c.with({"a"}).inc(2);
  c.with({"b"}).inc();
  const auto lines = lines_of(r.expose());
  const std::vector<std::string> expected = {
      "# HELP drover_things_total Things that happened.",
      "# TYPE drover_things_total counter",
      "drover_things_total{kind=\"a\"} 3",
      "drover_things_total{kind=\"b\"} 1",
  };
  EXPECT_EQ(lines, expected);
}

TEST(Metrics, UnlabelledFamiliesExportZeroBeforeAnyUpdate) {
  Registry r;
  r.counter("drover_a_total", "A.");
  r.gauge("drover_b", "B.");
  const std::string text = r.expose();
  EXPECT_TRUE(has_line(text, "drover_a_total 0")) << text;
  EXPECT_TRUE(has_line(text, "drover_b 0")) << text;
}

TEST(Metrics, LabelledFamilyWithoutChildrenStillDeclaresItself) {
  Registry r;
  r.gauge("drover_per_worker", "Per worker.", {"worker"});
  EXPECT_EQ(lines_of(r.expose()), (std::vector<std::string>{"# HELP drover_per_worker Per worker.",
                                                            "# TYPE drover_per_worker gauge"}));
}

TEST(Metrics, LabelValuesAreEscaped) {
  Registry r;
  auto& g = r.gauge("drover_escaped", "Escaping.", {"path", "note"});
  g.with({"C:\\dir", "say \"hi\"\nbye"}).set(1);
  EXPECT_TRUE(
      has_line(r.expose(), "drover_escaped{path=\"C:\\\\dir\",note=\"say \\\"hi\\\"\\nbye\"} 1"))
      << r.expose();
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

TEST(Metrics, HelpTextEscapesBackslashAndNewlineOnly) {
  Registry r;
  r.gauge("drover_help", "Line one\nline \"two\" with a \\ backslash.");
  EXPECT_TRUE(
      has_line(r.expose(), "# HELP drover_help Line one\\nline \"two\" with a \\\\ backslash."))
      << r.expose();
}

TEST(Metrics, LabelsKeepDeclarationOrderAndChildrenAreSorted) {
  Registry r;
  auto& c = r.counter("drover_req_total", "Requests.", {"method", "outcome"});
  c.with({"tokenize", "ok"}).inc();
  c.with({"generate", "timed_out"}).inc();
  c.with({"generate", "ok"}).inc(5);
  const auto lines = lines_of(r.expose());
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[2], "drover_req_total{method=\"generate\",outcome=\"ok\"} 5");
  EXPECT_EQ(lines[3], "drover_req_total{method=\"generate\",outcome=\"timed_out\"} 1");
  EXPECT_EQ(lines[4], "drover_req_total{method=\"tokenize\",outcome=\"ok\"} 1");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  auto& h = r.histogram("drover_latency_seconds", "Latency.", {"method"}, {0.125, 0.5, 1});
  auto& g = h.with({"generate"});
  // Binary fractions, so the sum is exact.
  for (double v : {0.0625, 0.125, 0.25, 0.75, 2.0, 9.0}) g.observe(v);
  const std::string text = r.expose();
  const std::vector<std::string> expected = {
      "# HELP drover_latency_seconds Latency.",
      "# TYPE drover_latency_seconds histogram",
      // 0.125 is "less than or equal" to the 0.125 bound, so it is in that bucket.
      "drover_latency_seconds_bucket{method=\"generate\",le=\"0.125\"} 2",
      "drover_latency_seconds_bucket{method=\"generate\",le=\"0.5\"} 3",
      "drover_latency_seconds_bucket{method=\"generate\",le=\"1\"} 4",
      "drover_latency_seconds_bucket{method=\"generate\",le=\"+Inf\"} 6",
      "drover_latency_seconds_sum{method=\"generate\"} 12.1875",
      "drover_latency_seconds_count{method=\"generate\"} 6",
  };
  EXPECT_EQ(lines_of(text), expected) << text;
  const auto snap = g.snapshot();
  EXPECT_EQ(snap.cumulative, (std::vector<std::uint64_t>{2, 3, 4, 6}));
  EXPECT_EQ(snap.count, 6u);
  EXPECT_EQ(snap.sum, 12.1875);
}

TEST(Metrics, UnlabelledHistogramPutsOnlyLeInBraces) {
  Registry r;
  auto& h = r.histogram("drover_ttft", "TTFT.", {}, {1}).with({});
  h.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
  h.observe(0.5);
  const std::string text = r.expose();
  EXPECT_TRUE(has_line(text, "drover_ttft_bucket{le=\"1\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "drover_ttft_bucket{le=\"+Inf\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "drover_ttft_sum 0.5")) << text;
  EXPECT_TRUE(has_line(text, "drover_ttft_count 1")) << text;
}

TEST(Metrics, ValuesAreFormattedAsPrometheusParsesThem) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(42), "42");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(-3.5), "-3.5");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
  EXPECT_EQ(std::stod(format_value(1e21)), 1e21);
}

TEST(Metrics, GaugesGoUpAndDown) {
  Registry r;
  auto& g = r.gauge("drover_depth", "Depth.").with({});
  g.set(5);
  g.inc();
  g.dec(2.5);
  EXPECT_DOUBLE_EQ(g.value(), 3.5);
  EXPECT_TRUE(has_line(r.expose(), "drover_depth 3.5"));
}

TEST(Metrics, CollectHooksRunBeforeEveryScrape) {
  Registry r;
  auto& g = r.gauge("drover_snapshot", "From a snapshot.").with({});
  int source = 7;
  r.add_collect_hook([&] { g.set(source); });
  EXPECT_TRUE(has_line(r.expose(), "drover_snapshot 7"));
  source = 9;
  EXPECT_TRUE(has_line(r.expose(), "drover_snapshot 9"));
}

TEST(Metrics, ChildrenCanBeRemovedRetainedAndCleared) {
  Registry r;
  auto& f = r.gauge("drover_worker_x", "X.", {"worker"});
  for (const char* w : {"0", "1", "2"}) f.with({w}).set(1);
  f.remove({"1"});
  EXPECT_EQ(f.size(), 2u);
  f.retain([](const std::vector<std::string>& v) { return v[0] != "2"; });
  EXPECT_EQ(f.size(), 1u);
  const std::string text = r.expose();
  EXPECT_TRUE(has_line(text, "drover_worker_x{worker=\"0\"} 1")) << text;
  EXPECT_FALSE(has_line(text, "drover_worker_x{worker=\"2\"} 1")) << text;
  f.clear();
  EXPECT_EQ(f.size(), 0u);
  auto& single = r.counter("drover_single_total", "S.");
  single.with({}).inc(3);
  single.clear();  // an unlabelled family keeps its one child, reset
  EXPECT_TRUE(has_line(r.expose(), "drover_single_total 0"));
}

TEST(Metrics, CounterMirrorsASourceTotal) {
  Registry r;
  auto& c = r.counter("drover_mirrored_total", "Mirrored.").with({});
  c.set_total(12);
  EXPECT_TRUE(has_line(r.expose(), "drover_mirrored_total 12"));
}

TEST(Metrics, DeclarationRulesAreEnforced) {
  Registry r;
  EXPECT_THROW(r.counter("drover_no_suffix", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("9starts_with_digit", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("has-dash", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("drover_x", "x", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.gauge("drover_x", "x", {"bad-label"}), std::invalid_argument);
  EXPECT_THROW(r.gauge("drover_x", "x", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(r.histogram("drover_h", "x", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("drover_h", "x", {}, {}), std::invalid_argument);
  EXPECT_THROW(r.histogram("drover_h", "x", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("drover_h", "x", {}, {2, 1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("drover_h", "x", {}, {1, std::numeric_limits<double>::infinity()}),
               std::invalid_argument);
  r.gauge("drover_once", "x");
  EXPECT_THROW(r.gauge("drover_once", "x"), std::invalid_argument);
  auto& f = r.counter("drover_arity_total", "x", {"a", "b"});
  EXPECT_THROW(f.with({"only one"}), std::invalid_argument);
}

TEST(Metrics, ExponentialBuckets) {
  EXPECT_EQ(exponential_buckets(0.001, 2, 4), (std::vector<double>{0.001, 0.002, 0.004, 0.008}));
  EXPECT_THROW(exponential_buckets(0, 2, 3), std::invalid_argument);
}

TEST(Metrics, UpdatesFromSeveralThreadsAreNotLostWhileScraping) {
  Registry r;
  auto& c = r.counter("drover_concurrent_total", "C.", {"t"});
  auto& h = r.histogram("drover_concurrent_seconds", "H.", {}, {0.5}).with({});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&c, &h, t] {
      // Half the threads share a child, half create their own: lookups race with creation.
      auto& mine = c.with({t % 2 == 0 ? "shared" : std::to_string(t)});
      for (int i = 0; i < kPerThread; ++i) {
        mine.inc();
        h.observe(1.0);
      }
    });
  }
  // Scrapes interleave with the updates; each must be well-formed (the +Inf bucket equals
  // _count by construction).
  for (int i = 0; i < 50; ++i) {
    const std::string text = r.expose();
    ASSERT_NE(text.find("# TYPE drover_concurrent_seconds histogram"), std::string::npos);
  }
  for (auto& th : threads) th.join();
  double total = 0;
  for (const char* t : {"shared", "1", "3"}) total += c.with({t}).value();
  EXPECT_EQ(total, kThreads * kPerThread);
  EXPECT_EQ(h.snapshot().count, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(h.snapshot().cumulative.front(), 0u);
}

}  // namespace
}  // namespace drover::metrics

namespace drover {
namespace {

Config parse_yaml(const std::string& yaml, const Environment& env = {}) {
  return parse_config(yaml, env, {});
}

TEST(MetricsConfigBlock, DefaultsToLoopback) {
  const Config c = parse_yaml("");
  EXPECT_TRUE(c.metrics.enabled);
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9464");
}

TEST(MetricsConfigBlock, ReadsKeysAndEnvironment) {
  Config c = parse_yaml("metrics:\n  enabled: false\n  listen: \"[::1]:9100\"\n");
  EXPECT_FALSE(c.metrics.enabled);
  EXPECT_EQ(c.metrics.listen, "[::1]:9100");
  c = parse_yaml("", {{"DROVER_METRICS_LISTEN", "0.0.0.0:9464"}});
  EXPECT_EQ(c.metrics.listen, "0.0.0.0:9464");
  c = parse_yaml("metrics:\n  listen: \"\"\n");
  EXPECT_EQ(c.metrics.listen, "");
}

TEST(MetricsConfigBlock, RejectsBadValuesAndUnknownKeys) {
  auto message = [](const std::string& yaml) {
    try {
      parse_yaml(yaml);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("metrics:\n  listen: 9464\n").find("'metrics.listen'"), std::string::npos);
  EXPECT_NE(message("metrics:\n  listen: host:99999\n").find("'metrics.listen'"),
            std::string::npos);
  EXPECT_NE(message("metrics:\n  listen: \"::1:9464\"\n").find("'metrics.listen'"),
            std::string::npos);
  EXPECT_NE(message("metrics:\n  enabled: maybe\n").find("'metrics.enabled'"), std::string::npos);
  EXPECT_NE(message("metrics:\n  port: 1\n").find("unknown key 'metrics.port'"), std::string::npos);
}

TEST(MetricsConfigBlock, ParsesHostPort) {
  auto hp = parse_host_port("127.0.0.1:9464");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 9464);
  hp = parse_host_port("[::1]:0");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 0);
  EXPECT_TRUE(parse_host_port("localhost:80"));
  EXPECT_FALSE(parse_host_port(":9464"));
  EXPECT_FALSE(parse_host_port("host:"));
  EXPECT_FALSE(parse_host_port("host:65536"));
  EXPECT_FALSE(parse_host_port("host:-1"));
  EXPECT_FALSE(parse_host_port("::1:80"));
}

}  // namespace
}  // namespace drover
