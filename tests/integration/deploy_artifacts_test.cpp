// The deploy/ artifacts, checked by the tools that consume them: promtool (Prometheus rules,
// the Grafana dashboard's queries, the prometheus-adapter rule), systemd-analyze (the unit),
// kubectl kustomize (the Kubernetes base and overlays) and, for what no offline tool checks,
// the references between the Kubernetes objects (selectors, named ports, volumes, the HPA's
// metric, the drain budget).
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "harness.hpp"

namespace drover::test {
namespace {

// The repository root (from CMake, via the harness target). Not derived from __FILE__: a
// build with ccache's base_dir (CCACHE_BASEDIR) compiles by relative path, and __FILE__ is then
// relative to the build directory, not to the test's working directory.
std::string source_dir() { return DROVER_SOURCE_DIR; }

// A temp dir removed when the test ends.
class TempDir {
 public:
  TempDir() : path_("/tmp/drover-deploy-XXXXXX") {
    if (::mkdtemp(path_.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(DeployArtifacts, PrometheusRulesAndConfigPassPromtool) {
  const std::string tool = promtool();
  ASSERT_FALSE(tool.empty());
  const std::string dir = source_dir() + "/deploy/prometheus";
  TempDir work;  // run_program's output files: one dir per test, as tests run in parallel
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{tool, "check", "rules", dir + "/alerts.yml"},
        std::vector<std::string>{tool, "test", "rules", dir + "/alerts_test.yml"},
        std::vector<std::string>{tool, "check", "config", dir + "/prometheus.yml"}}) {
    const auto r = run_program(args, work.path());
    EXPECT_EQ(r.exit_code, 0) << testing::PrintToString(args) << "\n" << r.out << r.err;
  }
}

// `promtool check rules` on PromQL expressions, each wrapped as a recording rule.
void expect_valid_promql(const std::vector<std::string>& exprs) {
  const std::string tool = promtool();
  ASSERT_FALSE(tool.empty());
  std::string rules = "groups:\n  - name: checked\n    rules:\n";
  int n = 0;
  for (const auto& expr : exprs) {
    rules += "      - record: checked_query_" + std::to_string(++n) +
             "\n        expr: " + json(expr).dump() + "\n";
  }
  TempDir dir;
  std::ofstream(dir.path() + "/rules.yml") << rules;
  const auto r = run_program({tool, "check", "rules", dir.path() + "/rules.yml"}, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) {
    text.replace(at, from.size(), to);
  }
  return text;
}

TEST(DeployArtifacts, DashboardQueriesAreValidPromQL) {
  // Every panel query of the Grafana dashboard, with Grafana's variables filled in, must parse.
  const json dash = json::parse(read_file(source_dir() + "/deploy/grafana/drover-dashboard.json"));
  std::vector<std::string> exprs;
  for (const auto& panel : dash.at("panels")) {
    for (const auto& target : panel.value("targets", json::array())) {
      std::string expr = target.at("expr").get<std::string>();
      expr = replace_all(expr, "$__rate_interval", "5m");
      expr = replace_all(expr, "$instance", ".*");
      exprs.push_back(expr);
    }
  }
  EXPECT_GT(exprs.size(), 20u);
  expect_valid_promql(exprs);
}

TEST(DeployArtifacts, SystemdUnitPassesSystemdAnalyzeVerify) {
  const std::string analyze = find_in_path("systemd-analyze");
  if (analyze.empty()) GTEST_SKIP() << "systemd-analyze not installed (Debian package systemd)";
  // The shipped unit runs /usr/local/bin/droverd, which is not installed here: verify a copy
  // that points at the binary under test, so everything else in the unit is checked.
  TempDir dir;
  std::string unit = read_file(source_dir() + "/deploy/systemd/droverd.service");
  ASSERT_FALSE(unit.empty());
  unit = replace_all(unit, "/usr/local/bin/droverd", droverd_bin());
  std::ofstream(dir.path() + "/droverd.service") << unit;
  const auto r = run_program({analyze, "verify", dir.path() + "/droverd.service"}, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // verify exits 0 even for unknown keys and unparsable values (it only warns), so any
  // message about the unit is a failure.
  std::istringstream lines(r.out + r.err);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_EQ(line.find("droverd.service"), std::string::npos) << line;
  }
}

// --- Kubernetes ---

const std::string kKubeDir = "/deploy/kubernetes";

// The objects of a kustomization, rendered by `kubectl kustomize` when kubectl is installed
// (it resolves patches and overlays), else the base's resources read as they are.
std::vector<YAML::Node> render(const std::string& kustomization_dir) {
  std::vector<YAML::Node> objects;
  const std::string kubectl = find_in_path("kubectl");
  if (!kubectl.empty()) {
    TempDir work;  // run_program's output files: one dir per test, as tests run in parallel
    const auto r = run_program({kubectl, "kustomize", kustomization_dir}, work.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const auto& doc : YAML::LoadAll(r.out)) objects.push_back(doc);
    return objects;
  }
  const YAML::Node k = YAML::LoadFile(kustomization_dir + "/kustomization.yaml");
  for (const auto& res : k["resources"]) {
    for (const auto& doc : YAML::LoadAllFromFile(kustomization_dir + "/" + res.as<std::string>())) {
      objects.push_back(doc);
    }
  }
  return objects;
}

YAML::Node find_object(const std::vector<YAML::Node>& objects, const std::string& kind,
                       const std::string& name) {
  for (const auto& o : objects) {
    if (o["kind"].as<std::string>("") == kind && o["metadata"]["name"].as<std::string>("") == name)
      return o;
  }
  ADD_FAILURE() << kind << " " << name << " is missing";
  return YAML::Node();
}

// True when every label of `selector` is set to the same value in `labels`.
bool selects(const YAML::Node& selector, const YAML::Node& labels) {
  if (!selector || selector.size() == 0) return false;
  for (const auto& kv : selector) {
    if (labels[kv.first.as<std::string>()].as<std::string>("") != kv.second.as<std::string>())
      return false;
  }
  return true;
}

// droverd's runtime.yaml inside the ConfigMap.
YAML::Node runtime_config(const std::vector<YAML::Node>& objects) {
  return YAML::Load(find_object(objects, "ConfigMap", "drover-config")["data"]["runtime.yaml"]
                        .as<std::string>(""));
}

// The checks no offline tool makes: every reference between the objects resolves, and the pod
// is given the time its drain needs.
void check_pool_objects(const std::vector<YAML::Node>& objects) {
  for (const auto& o : objects) {
    EXPECT_TRUE(o["apiVersion"] && o["kind"] && o["metadata"]["name"]) << YAML::Dump(o);
  }
  const YAML::Node deploy = find_object(objects, "Deployment", "drover");
  ASSERT_TRUE(deploy);
  const YAML::Node pod = deploy["spec"]["template"];
  const YAML::Node labels = pod["metadata"]["labels"];
  EXPECT_TRUE(selects(deploy["spec"]["selector"]["matchLabels"], labels));
  EXPECT_FALSE(deploy["spec"]["replicas"]) << "the HPA owns replicas; apply would reset it";

  const YAML::Node droverd = pod["spec"]["containers"][0];
  std::set<std::string> ports, mounts, volumes;
  for (const auto& p : droverd["ports"]) ports.insert(p["name"].as<std::string>());
  for (const auto& m : droverd["volumeMounts"]) mounts.insert(m["name"].as<std::string>());
  for (const auto& v : pod["spec"]["volumes"]) volumes.insert(v["name"].as<std::string>());
  EXPECT_EQ(mounts, volumes) << "every volume mounted, every mount backed by a volume";
  EXPECT_TRUE(ports.count("openai") && ports.count("metrics"));
  // droverd listens where the container port (and so the Service) points.
  for (const auto& p : droverd["ports"]) {
    const std::string name = p["name"].as<std::string>();
    const std::string listen =
        runtime_config(objects)[name == "openai" ? "openai" : "metrics"]["listen"].as<std::string>("");
    EXPECT_EQ(listen, "0.0.0.0:" + p["containerPort"].as<std::string>()) << name;
  }
  for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
    EXPECT_TRUE(ports.count(droverd[probe]["httpGet"]["port"].as<std::string>(""))) << probe;
  }
  EXPECT_EQ(droverd["readinessProbe"]["httpGet"]["path"].as<std::string>(""), "/readyz");

  // Services and the PDB select the pods and name ports the container has.
  int services = 0;
  for (const auto& o : objects) {
    const std::string kind = o["kind"].as<std::string>("");
    if (kind == "Service") {
      ++services;
      EXPECT_TRUE(selects(o["spec"]["selector"], labels)) << YAML::Dump(o);
      for (const auto& p : o["spec"]["ports"]) {
        EXPECT_TRUE(ports.count(p["targetPort"].as<std::string>(""))) << YAML::Dump(p);
      }
    } else if (kind == "PodDisruptionBudget") {
      EXPECT_TRUE(selects(o["spec"]["selector"]["matchLabels"], labels));
    }
  }
  EXPECT_EQ(services, 2);
  for (const auto& c : pod["spec"]["topologySpreadConstraints"]) {
    EXPECT_TRUE(selects(c["labelSelector"]["matchLabels"], labels));
  }
  EXPECT_EQ(pod["spec"]["topologySpreadConstraints"].size(), 2u);

  // SIGTERM arrives after the preStop hook; the drain must then fit in the grace period.
  const YAML::Node pre_stop = droverd["lifecycle"]["preStop"]["exec"]["command"];
  ASSERT_TRUE(pre_stop && pre_stop.size() == 2 && pre_stop[0].as<std::string>() == "sleep");
  const int pre_stop_s = pre_stop[1].as<int>();
  const int drain_s = runtime_config(objects)["workers"]["drain_timeout_ms"].as<int>() / 1000;
  const int grace_s = pod["spec"]["terminationGracePeriodSeconds"].as<int>();
  EXPECT_GE(grace_s, pre_stop_s + drain_s + 5) << "grace " << grace_s << " s, preStop "
                                                << pre_stop_s << " s, drain " << drain_s << " s";

  // The HPA scales this Deployment on the metric the adapter rule serves.
  const YAML::Node hpa = find_object(objects, "HorizontalPodAutoscaler", "drover");
  ASSERT_TRUE(hpa);
  EXPECT_EQ(hpa["apiVersion"].as<std::string>(), "autoscaling/v2");
  EXPECT_EQ(hpa["spec"]["scaleTargetRef"]["kind"].as<std::string>(), "Deployment");
  EXPECT_EQ(hpa["spec"]["scaleTargetRef"]["name"].as<std::string>(), "drover");
  const YAML::Node adapter = YAML::Load(
      YAML::LoadFile(source_dir() + kKubeDir + "/prometheus-adapter-rules.yaml")["data"]
                    ["config.yaml"]
                        .as<std::string>());
  EXPECT_EQ(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"].as<std::string>(),
            adapter["rules"][0]["name"]["as"].as<std::string>());
}

TEST(DeployArtifacts, KubernetesBaseObjectsReferToEachOther) {
  check_pool_objects(render(source_dir() + kKubeDir + "/base"));
}

TEST(DeployArtifacts, KubernetesGpuOverlayRendersAndKeepsTheDrainBudget) {
  if (find_in_path("kubectl").empty()) GTEST_SKIP() << "kubectl not installed: overlays need it";
  const auto objects = render(source_dir() + kKubeDir + "/overlays/gpu");
  check_pool_objects(objects);
  const YAML::Node droverd =
      find_object(objects, "Deployment", "drover")["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(droverd["resources"]["limits"]["nvidia.com/gpu"].as<int>(0), 1);
  EXPECT_EQ(runtime_config(objects)["workers"]["count"].as<int>(), 1);
}

// The adapter's rule names a series droverd exports, and its query (with the adapter's
// template filled in as it would for one pod) is valid PromQL.
TEST(DeployArtifacts, PrometheusAdapterRuleServesADroverdSeries) {
  const YAML::Node cm = YAML::LoadFile(source_dir() + kKubeDir + "/prometheus-adapter-rules.yaml");
  const YAML::Node rule = YAML::Load(cm["data"]["config.yaml"].as<std::string>())["rules"][0];
  const std::string series_query = rule["seriesQuery"].as<std::string>();
  const std::string series = series_query.substr(0, series_query.find('{'));
  const std::string collector = read_file(source_dir() + "/supervisor/admin/metrics_collector.cpp");
  EXPECT_NE(collector.find("\"" + series + "\""), std::string::npos)
      << series << " is not a metric droverd registers";
  std::string query = rule["metricsQuery"].as<std::string>();
  query = replace_all(query, "<<.Series>>", series);
  query = replace_all(query, "<<.LabelMatchers>>", "namespace=\"drover\",pod=\"drover-0\"");
  query = replace_all(query, "<<.GroupBy>>", "pod");
  expect_valid_promql({series_query, query});
}

}  // namespace
}  // namespace drover::test
