#include "supervisor/admin/slo_methods.hpp"

#include "proto/client_params.hpp"

namespace drover::supervisor {

void register_slo_methods(RequestHandler& handler, const SloEngine& engine) {
  handler.add_method("slo.status", [&engine](RequestHandler::LocalCall& c) {
    if (auto p = proto::parse_no_params(c.request.params); !p) return c.invalid_params(p.error());
    c.result(engine.status());
  });
}

}  // namespace drover::supervisor
