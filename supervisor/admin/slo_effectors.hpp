// SloEffectors: the SloActuator of droverd — small adapters from the SLO policies' actions
// (slo_engine.hpp) to the components they change: the Admission (shedding, the effective
// server.max_queue), the pool's Batcher (target batch time and size) and the WorkerPool (extra
// warm spares, graceful recycling as workers.drain does).
//
// A factor in force is applied on top of the configured value, so a reload that resets
// server.max_queue or the batch_queue block is followed by reapply(), which puts it back on the
// new values. Supervisor thread only.
#pragma once

#include "common/config.hpp"
#include "common/metrics.hpp"
#include "supervisor/admin/slo_engine.hpp"
#include "supervisor/pipeline/admission.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {

class SloEffectors final : public SloActuator {
 public:
  // `config` is the supervisor's live configuration; all three must outlive this object.
  SloEffectors(const Config& config, Admission& admission, WorkerPool& pool);

  void shed_low_priority(std::optional<std::int64_t> retry_after_ms) override;
  void tighten_admission(double factor) override;
  void lower_batch_target(double factor) override;
  void set_extra_spares(int extra) override;
  std::string recycle_worker(int id) override;

  // After a reload: the factors in force again, on the reloaded values.
  void reapply();
  // drover_slo_shed_requests_total.
  void register_metrics(metrics::Registry& registry);

 private:
  const Config& config_;
  Admission& admission_;
  WorkerPool& pool_;
  double admission_factor_ = 1.0;
  double batch_factor_ = 1.0;
  int batch_size_before_ = 0;  // the controller's size when the batch factor was applied
};

}  // namespace drover::supervisor
