#include "supervisor/admin/slo_effectors.hpp"

#include <algorithm>
#include <cmath>

namespace drover::supervisor {

SloEffectors::SloEffectors(const Config& config, Admission& admission, WorkerPool& pool)
    : config_(config), admission_(admission), pool_(pool) {}

void SloEffectors::shed_low_priority(std::optional<std::int64_t> retry_after_ms) {
  admission_.set_shedding(retry_after_ms);
}

void SloEffectors::tighten_admission(double factor) {
  admission_factor_ = factor;
  // At least one slot: a limit of 0 would refuse everything, which is not tightening.
  const auto base = static_cast<double>(config_.server.max_queue);
  admission_.set_limit(static_cast<std::size_t>(std::max(1.0, std::floor(base * factor))));
}

void SloEffectors::lower_batch_target(double factor) {
  Batcher& b = pool_.batcher();
  const auto base_target = config_.batch_queue.target_batch_time;
  if (factor >= 1.0) {
    b.update_targets(base_target, batch_size_before_ > 0 ? batch_size_before_ : b.size());
    batch_factor_ = 1.0;
    return;
  }
  if (batch_factor_ >= 1.0) batch_size_before_ = b.size();
  batch_factor_ = factor;
  const auto target = std::chrono::microseconds(
      std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(base_target.count()) * factor)));
  const int size = std::max(BatchController::kMinSize,
                            static_cast<int>(std::lround(batch_size_before_ * factor)));
  b.update_targets(target, size);
}

void SloEffectors::set_extra_spares(int extra) { pool_.set_extra_spares(extra); }

std::string SloEffectors::recycle_worker(int id) { return pool_.restart(id); }

void SloEffectors::reapply() {
  if (admission_factor_ < 1.0) tighten_admission(admission_factor_);
  if (batch_factor_ < 1.0) lower_batch_target(batch_factor_);
}

void SloEffectors::register_metrics(metrics::Registry& r) {
  auto& shed = r.counter("drover_slo_shed_requests_total",
                         "Low-priority requests refused with -32001 by the SLO policy "
                         "shed_low_priority.",
                         {});
  r.add_collect_hook([this, &shed] { shed.with({}).set_total(static_cast<double>(admission_.shed_total())); });
}

}  // namespace drover::supervisor
