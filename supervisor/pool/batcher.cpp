#include "supervisor/pool/batcher.hpp"

#include <algorithm>

namespace drover::supervisor {
using proto::json;

Batcher::Batcher(const BatchQueueConfig& config)
    : config_(config),
      controller_(config.max_batch_size, config.target_batch_time, config.adaptive_sizing) {
  times_us_.reserve(kTimeSamples);
}

void Batcher::reconfigure(const BatchQueueConfig& config) {
  const bool size_changed = config.max_batch_size != config_.max_batch_size;
  config_ = config;
  controller_.set_adaptive(config.adaptive_sizing);
  controller_.set_target(config.target_batch_time);
  // A reload that leaves max_batch_size alone keeps what the controller learnt.
  if (size_changed) controller_.set_size(config.max_batch_size);
}

Batcher::Decision Batcher::decide(std::size_t pending, std::size_t in_flight) const {
  if (!config_.enabled) return Decision::flush_alone;
  if (config_.fast_path && pending <= 1 && in_flight < kBatchesInFlight) {
    return Decision::flush_fast_path;
  }
  if (pending >= static_cast<std::size_t>(controller_.size())) return Decision::flush_full;
  return Decision::wait;
}

Batcher::Micros Batcher::window(Clock::time_point now) const {
  const Micros base = config_.adaptive_window ? window_.window() : config_.flush_interval;
  if (!controller_.steps_fresh(now)) return base;
  return std::min(base, std::max(worker_step_, Micros(1)));
}

void Batcher::on_worker_steps(Micros step_time, std::uint64_t steps, Clock::time_point now) {
  if (steps == 0) return;
  worker_step_ = step_time;
  ++step_reports_;
  if (config_.enabled) controller_.record_steps(step_time, steps, now);
}

void Batcher::on_flush(std::size_t requests, std::size_t merged_texts, FlushCause cause) {
  ++flushes_;
  requests_ += requests;
  merged_texts_ += merged_texts;
  ++causes_[static_cast<std::size_t>(cause)];
  if (config_.enabled) window_.observe(requests);
  if (size_hist_) size_hist_->observe(static_cast<double>(requests));
}

void Batcher::on_batch_done(Micros batch_time, Clock::time_point now) {
  const double us = static_cast<double>(batch_time.count());
  ++batches_done_;
  time_sum_us_ += us;
  if (times_us_.size() < kTimeSamples) {
    times_us_.push_back(us);
  } else {
    times_us_[next_time_] = us;
  }
  next_time_ = (next_time_ + 1) % kTimeSamples;
  if (time_hist_) time_hist_->observe(us / 1e6);
  if (config_.enabled) controller_.record(batch_time, now);
}

void Batcher::update_targets(std::optional<Micros> target, std::optional<int> size) {
  if (target) {
    controller_.set_target(*target);
    config_.target_batch_time = *target;
  }
  if (size) {
    controller_.set_size(*size);
    config_.max_batch_size = *size;
  }
}

json Batcher::stats(const std::array<std::size_t, 3>& queue_depth, Clock::time_point now) const {
  auto ms = [](double us) { return us / 1000.0; };
  json time = {{"count", batches_done_}, {"window_samples", times_us_.size()}};
  time["mean_ms"] = batches_done_ ? ms(time_sum_us_ / static_cast<double>(batches_done_)) : 0.0;
  std::vector<double> sorted = times_us_;
  std::sort(sorted.begin(), sorted.end());
  // Nearest-rank quantiles over the last kTimeSamples batches.
  auto q = [&sorted, &ms](double p) {
    if (sorted.empty()) return 0.0;
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
    return ms(sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1]);
  };
  time["p50_ms"] = q(0.50);
  time["p90_ms"] = q(0.90);
  time["p99_ms"] = q(0.99);
  time["max_ms"] = sorted.empty() ? 0.0 : ms(sorted.back());
  return {{"enabled", config_.enabled},
          {"adaptive_sizing", controller_.adaptive()},
          {"adaptive_window", config_.adaptive_window},
          {"fast_path", config_.fast_path},
          {"priority_queue", config_.priority_queue},
          {"size", controller_.size()},
          {"max_batch_size", config_.max_batch_size},
          {"target_batch_time_ms", ms(static_cast<double>(controller_.target().count()))},
          {"window_ms", ms(static_cast<double>(window(now).count()))},
          {"size_source", controller_.steps_fresh(now) ? "worker_steps" : "batch_time"},
          {"worker_step_ms", ms(static_cast<double>(worker_step_.count()))},
          {"worker_step_reports", step_reports_},
          {"smoothed_depth", window_.smoothed_depth()},
          {"flushes", flushes_},
          {"requests", requests_},
          {"mean_batch_size",
           flushes_ ? static_cast<double>(requests_) / static_cast<double>(flushes_) : 0.0},
          {"flush_causes",
           {{"alone", causes_[0]},
            {"fast_path", causes_[1]},
            {"full", causes_[2]},
            {"window", causes_[3]},
            {"batch_done", causes_[4]}}},
          {"tokenize_texts_merged", merged_texts_},
          {"size_adjustments", controller_.adjustments()},
          {"window_changes", window_.changes()},
          {"batch_time", std::move(time)},
          {"queue_depth",
           {{"high", queue_depth[0]}, {"normal", queue_depth[1]}, {"low", queue_depth[2]}}}};
}

}  // namespace drover::supervisor
