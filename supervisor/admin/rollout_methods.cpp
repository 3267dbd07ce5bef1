#include "supervisor/admin/rollout_methods.hpp"

#include "proto/client_params.hpp"

namespace drover::supervisor {
using proto::json;

namespace {

// {stage} (and {percent} for rollouts.set): the stage as a string, the percent as an integer.
std::optional<std::string> stage_param(const json& p) {
  if (!p.is_object() || !p.contains("stage") || !p["stage"].is_string()) return std::nullopt;
  return p["stage"].get<std::string>();
}

}  // namespace

void register_rollout_methods(RequestHandler& handler, RolloutController& controller) {
  using LocalCall = RequestHandler::LocalCall;
  handler.add_method("rollouts.status", [&controller](LocalCall& c) {
    if (auto p = proto::parse_no_params(c.request.params); !p) return c.invalid_params(p.error());
    c.result(json{{"stages", controller.status()}});
  });
  auto action = [&controller](auto act) {
    return [&controller, act](LocalCall& c) {
      const json p = c.params();
      const auto stage = stage_param(p);
      if (!stage) return c.invalid_params("param 'stage' must be a stage name (string)");
      const std::string error = act(controller, *stage, p);
      if (!error.empty()) return c.invalid_params(error);
      c.result(json{{"stages", controller.status()}});
    };
  };
  handler.add_method("rollouts.pause", action([](RolloutController& r, const std::string& s, const json&) {
                       return r.pause(s);
                     }));
  handler.add_method("rollouts.resume", action([](RolloutController& r, const std::string& s, const json&) {
                       return r.resume(s);
                     }));
  handler.add_method("rollouts.rollback",
                     action([](RolloutController& r, const std::string& s, const json&) {
                       return r.rollback(s);
                     }));
  handler.add_method("rollouts.set", action([](RolloutController& r, const std::string& s, const json& p) {
                       if (!p.contains("percent") || !p["percent"].is_number_integer()) {
                         return std::string("param 'percent' must be an integer in 0..100");
                       }
                       const auto v = p["percent"].get<std::int64_t>();
                       if (v < 0 || v > 100) return std::string("param 'percent' must be an integer in 0..100");
                       return r.set(s, static_cast<int>(v));
                     }));
}

}  // namespace drover::supervisor
