// droverctl: the operator's and scripter's CLI for droverd (shared/DESIGN.md section 1).
// Exit status: 0 on success, 1 when droverd answered with a JSON-RPC error (printed on
// stderr), 2 on usage errors, 3 when droverd cannot be reached.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "client/rpc_client.hpp"
#include "common/config.hpp"
#include "common/run_paths.hpp"
#include "proto/methods.hpp"

namespace {

using drover::client::json;
using drover::client::RpcClient;

struct Target {
  std::string socket;
  std::string admin_socket;
  int timeout_ms = 300'000;
  std::string run_base;  // the default private run directory (common/run_paths.hpp)
  drover::client::TlsOptions tls;  // for a tls:// --socket
};

// Prints a reply; returns the exit status it stands for.
int report(const json& reply, bool as_json, const std::function<void(const json&)>& pretty) {
  if (reply.contains("error")) {
    std::cerr << "error " << reply["error"].value("code", 0) << ": "
              << reply["error"].value("message", std::string()) << "\n";
    if (reply["error"].contains("data")) std::cerr << reply["error"]["data"].dump(2) << "\n";
    return 1;
  }
  if (as_json || !pretty) {
    std::cout << reply["result"].dump(2) << "\n";
  } else {
    pretty(reply["result"]);
  }
  return 0;
}

json call(const Target& t, const std::string& method, const json& params,
          const std::function<void(const json&)>& on_notification = {}) {
  const std::string& path = drover::proto::is_admin_method(method) ? t.admin_socket : t.socket;
  // A socket in the default run directory is trusted only if that directory is ours (or
  // root's): in the /tmp fallback another user could have made it first and be listening.
  if (std::filesystem::path(path).parent_path() == std::filesystem::path(t.run_base)) {
    if (const std::string problem = drover::untrusted_run_base(t.run_base, ::geteuid());
        !problem.empty()) {
      throw drover::client::ClientError(problem);
    }
  }
  RpcClient c(path, drover::proto::Framing::ndjson, 64 * 1024 * 1024, t.tls);
  return c.call(method, params, std::chrono::milliseconds(t.timeout_ms), on_notification);
}

void print_workers(const json& result) {
  std::cout << fmt::format("{:>4} {:>8} {:<9} {:>8} {:>8} {:>9} {:>10} {:>9} {:<9} {}\n", "ID",
                           "PID", "STATE", "INFLIGHT", "RESTARTS", "UPTIME_S", "RSS_MB", "HB_AGE",
                           "TRANSPORT", "MODELS");
  for (const auto& w : result.value("workers", json::array())) {
    std::string models;
    for (const auto& m : w.value("models", json::array())) {
      if (!models.empty()) models.push_back(',');
      models.append(m.get<std::string>());
    }
    const json age = w.value("heartbeat_age_ms", json());
    std::cout << fmt::format("{:>4} {:>8} {:<9} {:>8} {:>8} {:>9.1f} {:>10.1f} {:>9} {:<9} {}\n",
                             w.value("id", -1), w.value("pid", 0), w.value("state", std::string()),
                             w.value("inflight", 0), w.value("restarts", 0),
                             w.value("uptime_s", 0.0), w.value("rss_bytes", 0) / 1048576.0,
                             age.is_null() ? std::string("-") : fmt::format("{}ms", age.get<long>()),
                             w.value("transport", std::string("-")), models);
  }
}

void print_rollouts(const json& result) {
  std::cout << fmt::format("{:<22} {:>7} {:<12} {:>9} {:>15} {:>15}  {}\n", "STAGE", "PERCENT",
                           "STATE", "ROLLBACKS", "CANARY(err/n)", "BASELINE(err/n)", "LAST DECISION");
  const json stages = result.value("stages", json::object());
  for (const auto& [name, s] : stages.items()) {
    const json w = s.value("window", json::object());
    auto cohort = [&w](const char* c) {
      const json x = w.value(c, json::object());
      return fmt::format("{}/{}", x.value("errors", 0), x.value("requests", 0));
    };
    const json last = s.value("last_decision", json::object());
    std::string decision = last.is_object() ? last.value("action", std::string()) : std::string();
    if (last.is_object() && last.contains("figures") && last["figures"].is_object() &&
        last["figures"].contains("trigger")) {
      decision += " (" + last["figures"]["trigger"].get<std::string>() + ")";
    }
    std::cout << fmt::format("{:<22} {:>6}% {:<12} {:>9} {:>15} {:>15}  {}\n", name,
                             s.value("percent", 0), s.value("state", std::string()),
                             s.value("rollbacks_total", 0), cohort("canary"), cohort("baseline"),
                             decision);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"droverctl: talk to droverd (JSON-RPC over its Unix sockets, or TCP/TLS)"};
  app.require_subcommand(1);
  // droverd's defaults: the same private run directory from the same environment.
  const std::string run_base = drover::default_run_base(drover::current_environment(), ::geteuid());
  Target target{drover::default_client_socket(run_base), drover::default_admin_socket(run_base),
                300'000, run_base};
  if (const char* s = std::getenv("DROVER_SERVER_SOCKET")) target.socket = s;
  if (const char* s = std::getenv("DROVER_SERVER_ADMIN_SOCKET")) target.admin_socket = s;
  target.tls = drover::client::TlsOptions::from_environment();
  bool as_json = false;
  app.add_option("--socket", target.socket,
                 "client socket of droverd: a Unix socket path, tcp://HOST:PORT or tls://HOST:PORT")
      ->capture_default_str();
  app.add_option("--tls-ca", target.tls.ca_file,
                 "tls://: CA file that signs droverd's certificate (default: the system's CAs; env "
                 "DROVER_TLS_CA)");
  app.add_option("--tls-cert", target.tls.cert_file,
                 "tls://: client certificate for mutual TLS (env DROVER_TLS_CERT)");
  app.add_option("--tls-key", target.tls.key_file,
                 "tls://: key of --tls-cert (env DROVER_TLS_KEY)");
  app.add_option("--admin-socket", target.admin_socket, "admin socket of droverd")->capture_default_str();
  app.add_option("--timeout-ms", target.timeout_ms, "give up waiting after this long")->capture_default_str();
  app.add_flag("--json", as_json, "print results as JSON");
  // The global options above may also follow the subcommand (droverctl generate hi --socket S):
  // subcommands created from here on inherit fallthrough, which hands options they do not know
  // to this parent instead of failing.
  app.fallthrough();

  auto* call_cmd = app.add_subcommand("call", "call any method: droverctl call METHOD [JSON-PARAMS]");
  std::string method, params_text;
  call_cmd->add_option("method", method, "method name, e.g. health")->required();
  call_cmd->add_option("params", params_text, "params as JSON, e.g. '{\"prompt\":\"hi\"}'");

  auto* gen_cmd = app.add_subcommand("generate", "generate text for a prompt");
  std::string prompt, model;
  bool stream = false;
  int max_tokens = 64;
  std::optional<double> temperature;
  std::optional<std::uint64_t> seed;
  gen_cmd->add_option("prompt", prompt, "the prompt")->required();
  gen_cmd->add_flag("--stream", stream, "print chunks as they arrive");
  gen_cmd->add_option("--model", model, "model id");
  gen_cmd->add_option("--max-tokens", max_tokens, "tokens to generate")->capture_default_str();
  gen_cmd->add_option("--temperature", temperature, "sampling temperature");
  gen_cmd->add_option("--seed", seed, "sampling seed");

  app.add_subcommand("health", "pool health (status, workers ready)");
  app.add_subcommand("workers",
                     "list workers (admin socket); RESTARTS counts replacements after the slot's "
                     "process died or was killed, not drains or restarts");
  auto* kill_cmd = app.add_subcommand("kill", "send a signal to a worker (admin socket)");
  int worker_id = 0;
  std::string signal_name = "KILL";
  kill_cmd->add_option("id", worker_id, "worker id")->required();
  kill_cmd->add_option("--signal", signal_name, "signal name or number")->capture_default_str();

  auto* restart_cmd = app.add_subcommand("restart", "gracefully replace a worker; unparks a parked slot (admin socket)");
  restart_cmd->add_option("id", worker_id, "worker id")->required();
  auto* drain_cmd = app.add_subcommand("drain", "drain a worker: it finishes its work and is replaced (admin socket)");
  drain_cmd->add_option("id", worker_id, "worker id")->required();
  auto* scale_cmd = app.add_subcommand("scale", "change the number of workers (admin socket)");
  int count = 0;
  scale_cmd->add_option("count", count, "new worker count")->required();
  auto* inject_cmd = app.add_subcommand("inject", "make a worker misbehave, for chaos drills (admin socket)");
  std::string fault;
  inject_cmd->add_option("id", worker_id, "worker id")->required();
  inject_cmd->add_option("fault", fault, "crash, hang, stall, garbage, slow, ring_garbage or exit_after_reply")->required();

  app.add_subcommand("reload", "re-read droverd's config file (admin socket)");
  app.add_subcommand("config", "print the effective configuration (admin socket)");
  app.add_subcommand("metrics", "a summary of droverd's counters");

  auto* rollout_cmd = app.add_subcommand(
      "rollout", "canary rollouts of pipeline stages: status|pause|resume|set|rollback (admin socket)");
  rollout_cmd->require_subcommand(1);
  std::string stage;
  int percent = 0;
  rollout_cmd->add_subcommand("status", "every controlled stage: percent, state, last decision");
  for (const char* action : {"pause", "resume", "rollback"}) {
    rollout_cmd->add_subcommand(action, std::string(action) + " a stage's rollout")
        ->add_option("stage", stage, "stage name, e.g. prompt_cache")
        ->required();
  }
  auto* rollout_set = rollout_cmd->add_subcommand("set", "set a stage's percentage (then paused there)");
  rollout_set->add_option("stage", stage, "stage name")->required();
  rollout_set->add_option("percent", percent, "0..100")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2, as the header promises (CLI11's
    // own codes, e.g. 109 for an unexpected argument, are not a contract scripts can use).
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (*call_cmd) {
      json params = nullptr;
      if (!params_text.empty()) {
        params = json::parse(params_text, nullptr, false);
        if (params.is_discarded()) {
          std::cerr << "droverctl: params are not valid JSON: " << params_text << "\n";
          return 2;
        }
      }
      return report(call(target, method, params), true, {});
    }
    if (app.got_subcommand("generate")) {
      json params = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"stream", stream}};
      if (!model.empty()) params["model"] = model;
      if (temperature) params["temperature"] = *temperature;
      if (seed) params["seed"] = *seed;
      bool printed_chunks = false;
      const json reply = call(target, "generate", params, [&](const json& n) {
        if (as_json) {
          std::cout << n.dump() << "\n";
        } else {
          std::cout << n["params"].value("text", std::string()) << std::flush;
          printed_chunks = true;
        }
      });
      return report(reply, as_json, [&](const json& r) {
        if (!printed_chunks) std::cout << r.value("text", std::string());
        std::cout << "\n";
      });
    }
    if (app.got_subcommand("health")) return report(call(target, "health", nullptr), true, {});
    if (app.got_subcommand("workers")) {
      return report(call(target, "workers.list", nullptr), as_json, print_workers);
    }
    if (app.got_subcommand("kill")) {
      json sig = signal_name;
      if (!signal_name.empty() && std::isdigit(static_cast<unsigned char>(signal_name[0]))) {
        sig = std::stoi(signal_name);
      }
      return report(call(target, "workers.kill", {{"id", worker_id}, {"signal", sig}}), true, {});
    }
    if (app.got_subcommand("reload")) return report(call(target, "config.reload", nullptr), true, {});
    if (app.got_subcommand("config")) return report(call(target, "config.get", nullptr), true, {});
    if (app.got_subcommand("metrics")) {
      return report(call(target, "telemetry.metrics", nullptr), as_json, [](const json& m) {
        const auto& w = m["workers"];
        const auto& p = m["pool"];
        std::cout << fmt::format(
            "workers   {} ready of {} ({} parked, {} breakers open, {} spares ready)\n"
            "requests  {} outstanding of {} admitted max, {} queued, {} refused\n"
            "pool      {} restarts ({} crashes), {} spare promotions, {} recycled\n"
            "retries   {} ({} stream failovers), {} refused by budget, {} poison\n"
            "uptime    {:.0f} s\n",
            w.value("ready", 0), w.value("total", 0), w.value("parked", 0), w.value("open_breakers", 0),
            w.value("spares_ready", 0), m["admission"].value("outstanding", 0), m["admission"].value("limit", 0),
            m.value("queue_depth", 0), m["admission"].value("rejected_total", 0), p.value("restarts_total", 0),
            p.value("crashes_total", 0), p.value("promotions_total", 0), p.value("recycled_total", 0),
            p.value("retries_total", 0), p.value("failovers_total", 0), p.value("retry_budget_exhausted_total", 0),
            p.value("poisoned_total", 0), m.value("uptime_s", 0.0));
      });
    }
    if (*rollout_cmd) {
      const std::string action = rollout_cmd->get_subcommands().front()->get_name();
      json params = nullptr;
      if (action != "status") params = {{"stage", stage}};
      if (action == "set") params["percent"] = percent;
      return report(call(target, "rollouts." + action, params), as_json, print_rollouts);
    }
    if (*restart_cmd) return report(call(target, "workers.restart", {{"id", worker_id}}), true, {});
    if (*drain_cmd) return report(call(target, "workers.drain", {{"id", worker_id}}), true, {});
    if (*scale_cmd) return report(call(target, "workers.scale", {{"count", count}}), true, {});
    if (*inject_cmd) {
      return report(call(target, "workers.inject", {{"id", worker_id}, {"fault", fault}}), true, {});
    }
  } catch (const drover::client::ClientError& e) {
    std::cerr << "droverctl: " << e.what() << "\n";
    return 3;
  }
  return 2;
}
