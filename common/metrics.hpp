// Metrics: a small registry of counters, gauges and fixed-bucket histograms with labels, and
// their Prometheus text exposition (format 0.0.4, what /metrics serves).
//
// Shape: Registry -> Family<T> (one metric name, its help text and label names) -> T (one child
// per tuple of label values). Families are declared once at start-up and live as long as the
// registry. Children are created on first use by with(...) and live until remove(), retain()
// or clear() drops them; the references with() returns stay valid until then, so hot paths
// look a child up once and keep the reference.
//
// Thread-safety: every member may be called from any thread. Registry::mu_ guards the list of
// families and the collect hooks; each family's mu_ guards its map of children; values are
// atomics updated with relaxed ordering (each value is independent and publishes no other
// memory, so no ordering is needed; a reader only needs an untorn value). Registry::expose_mu_
// serialises scrapes, so collect hooks never run concurrently with each other. In droverd all of
// it — request events, the collector's hooks and the HTTP handler that scrapes — runs on the one
// io_context thread and the locks are never contended; they make the registry safe for the
// frontend threads the architecture plans for. A scrape concurrent with updates from another
// thread sees every value untorn but not all of them at one instant: a histogram's _sum may
// include an observation its buckets do not show yet (its _count is derived from the buckets,
// so _count always equals the +Inf bucket).
//
// Naming rules are checked when a family is declared (std::invalid_argument, a programming
// error): metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and
// do not start with "__"; counters end in "_total"; histograms may not use the label "le".
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace drover::metrics {

// The Content-Type of the text exposition format.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

class Counter {
 public:
  // REQUIRES: by >= 0 (a counter only goes up).
  void inc(double by = 1.0) { value_.fetch_add(by, std::memory_order_relaxed); }
  // For a counter mirrored from a source that keeps its own running total (a pool statistic
  // read at scrape time). A value below the previous one reads as a counter reset to
  // Prometheus, which is right when the source itself was reset.
  void set_total(double total) { value_.store(total, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double by = 1.0) { value_.fetch_add(by, std::memory_order_relaxed); }
  void dec(double by = 1.0) { value_.fetch_sub(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Fixed upper bounds ("le"), set by the family; the +Inf bucket is implicit. An observation v
// lands in the first bucket with v <= bound. NaN observations are ignored.
class Histogram {
 public:
  // REQUIRES: `bounds` outlives the histogram (it is the family's).
  explicit Histogram(const std::vector<double>& bounds);

  void observe(double v);

  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    std::uint64_t count = 0;  // == cumulative.back()
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double>& bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0.0};
};

// Bucket bounds growing by `factor` from `start`: exponential_buckets(0.001, 2, 4) is
// {0.001, 0.002, 0.004, 0.008}.
std::vector<double> exponential_buckets(double start, double factor, int count);

// Formats a sample value as Prometheus expects: integers without a fraction, +Inf, -Inf, NaN.
std::string format_value(double v);
// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);

class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, std::string_view type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends "# HELP", "# TYPE" and every sample, children in label-value order.
  virtual void render(std::string& out) const = 0;

 protected:
  void render_header(std::string& out) const;
  // `{a="x",b="y"` plus `extra` (e.g. `le="0.5"`), then `}`; nothing at all without labels.
  void render_labels(std::string& out, const std::vector<std::string>& values,
                     std::string_view extra = {}) const;
  void check_arity(const std::vector<std::string>& values) const;

  std::string name_;
  std::string help_;
  std::string_view type_;
  std::vector<std::string> label_names_;
  mutable std::mutex mu_;  // guards the derived family's children
};

template <typename Metric>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, std::string_view type,
         std::vector<std::string> label_names, std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        bounds_(std::move(bounds)) {
    // A family without labels has exactly one child; create it so it is exported as 0.
    if (label_names_.empty()) with({});
  }

  // The child for these label values (in the order of the label names), created on first use.
  // REQUIRES: as many values as label names (std::invalid_argument otherwise).
  Metric& with(const std::vector<std::string>& values) {
    check_arity(values);
    std::lock_guard lock(mu_);
    auto& slot = children_[values];
    if (!slot) slot = make();
    return *slot;
  }
  Metric& with(std::initializer_list<std::string_view> values) {
    return with(std::vector<std::string>(values.begin(), values.end()));
  }

  // Drops one child (a worker slot that no longer exists). Invalidates references to it.
  void remove(const std::vector<std::string>& values) {
    std::lock_guard lock(mu_);
    children_.erase(values);
  }
  // Drops the children `keep` returns false for. Invalidates references to them.
  void retain(const std::function<bool(const std::vector<std::string>&)>& keep) {
    std::lock_guard lock(mu_);
    std::erase_if(children_, [&keep](const auto& kv) { return !keep(kv.first); });
  }
  // Drops every child (a labelled family) or resets the single one (no labels).
  void clear() {
    std::lock_guard lock(mu_);
    children_.clear();
    if (label_names_.empty()) children_[{}] = make();
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return children_.size();
  }

  void render(std::string& out) const override;

 private:
  std::unique_ptr<Metric> make() const {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      return std::make_unique<Histogram>(bounds_);
    } else {
      return std::make_unique<Metric>();
    }
  }

  std::vector<double> bounds_;  // histograms only
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Declares a family. Throws std::invalid_argument for a bad or duplicate name, bad label
  // names, or (histograms) bounds that are empty, not finite or not strictly increasing.
  Family<Counter>& counter(std::string name, std::string help,
                           std::vector<std::string> label_names = {});
  Family<Gauge>& gauge(std::string name, std::string help,
                       std::vector<std::string> label_names = {});
  Family<Histogram>& histogram(std::string name, std::string help,
                               std::vector<std::string> label_names, std::vector<double> bounds);

  // Runs at the start of every expose(), to set values that are read from elsewhere at scrape
  // time (gauges from snapshots). Hooks run in the order added, under expose_mu_.
  void add_collect_hook(std::function<void()> hook);

  // Runs the collect hooks, then renders every family in declaration order.
  std::string expose();

 private:
  template <typename Metric>
  Family<Metric>& add(std::string name, std::string help, std::string_view type,
                      std::vector<std::string> label_names, std::vector<double> bounds = {});

  std::mutex expose_mu_;  // one scrape at a time (hooks and rendering)
  std::mutex mu_;         // guards families_ and hooks_
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::vector<std::function<void()>> hooks_;
};

// Defined (explicitly instantiated) in metrics.cpp.
extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

}  // namespace drover::metrics
