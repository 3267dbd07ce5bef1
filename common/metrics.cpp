#include "common/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace drover::metrics {
namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  auto first = [](char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  };
  auto rest = [&first](char c) { return first(c) || std::isdigit(static_cast<unsigned char>(c)); };
  return first(n.front()) && std::all_of(n.begin() + 1, n.end(), rest);
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  auto first = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; };
  auto rest = [&first](char c) { return first(c) || std::isdigit(static_cast<unsigned char>(c)); };
  return first(n.front()) && std::all_of(n.begin() + 1, n.end(), rest);
}

// HELP text escapes only backslash and newline (the format's rule for docstrings).
std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  const auto bucket = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                               bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.reserve(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) {
    throw std::invalid_argument("exponential_buckets: need start > 0, factor > 1, count >= 1");
  }
  std::vector<double> out;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // fmt's shortest round-trip form: 3 -> "3", 0.25 -> "0.25", 1e+21 -> "1e+21" (all valid
  // Go ParseFloat input, which is what Prometheus uses).
  return fmt::format("{}", v);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

FamilyBase::FamilyBase(std::string name, std::string help, std::string_view type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  if (!valid_metric_name(name_)) {
    throw std::invalid_argument(fmt::format("metrics: invalid metric name '{}'", name_));
  }
  for (std::size_t i = 0; i < label_names_.size(); ++i) {
    const auto& l = label_names_[i];
    if (!valid_label_name(l)) {
      throw std::invalid_argument(fmt::format("metrics: {}: invalid label name '{}'", name_, l));
    }
    if (std::find(label_names_.begin(), label_names_.begin() + static_cast<std::ptrdiff_t>(i), l) !=
        label_names_.begin() + static_cast<std::ptrdiff_t>(i)) {
      throw std::invalid_argument(fmt::format("metrics: {}: duplicate label name '{}'", name_, l));
    }
  }
}

void FamilyBase::render_header(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  out += escape_help(help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += type_;
  out += '\n';
}

void FamilyBase::render_labels(std::string& out, const std::vector<std::string>& values,
                               std::string_view extra) const {
  if (label_names_.empty() && extra.empty()) return;
  out += '{';
  for (std::size_t i = 0; i < label_names_.size(); ++i) {
    if (i > 0) out += ',';
    out += label_names_[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (!extra.empty()) {
    if (!label_names_.empty()) out += ',';
    out += extra;
  }
  out += '}';
}

void FamilyBase::check_arity(const std::vector<std::string>& values) const {
  if (values.size() != label_names_.size()) {
    throw std::invalid_argument(fmt::format("metrics: {} takes {} label values, got {}", name_,
                                            label_names_.size(), values.size()));
  }
}

template <typename Metric>
void Family<Metric>::render(std::string& out) const {
  render_header(out);
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      const auto snap = child->snapshot();
      for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        out += name_;
        out += "_bucket";
        const std::string le = i < bounds_.size() ? format_value(bounds_[i]) : std::string("+Inf");
        render_labels(out, values, fmt::format("le=\"{}\"", le));
        out += ' ';
        out += std::to_string(snap.cumulative[i]);
        out += '\n';
      }
      out += name_;
      out += "_sum";
      render_labels(out, values);
      out += ' ';
      out += format_value(snap.sum);
      out += '\n';
      out += name_;
      out += "_count";
      render_labels(out, values);
      out += ' ';
      out += std::to_string(snap.count);
      out += '\n';
    } else {
      out += name_;
      render_labels(out, values);
      out += ' ';
      out += format_value(child->value());
      out += '\n';
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

template <typename Metric>
Family<Metric>& Registry::add(std::string name, std::string help, std::string_view type,
                              std::vector<std::string> label_names, std::vector<double> bounds) {
  auto family = std::make_unique<Family<Metric>>(std::move(name), std::move(help), type,
                                                 std::move(label_names), std::move(bounds));
  Family<Metric>& ref = *family;
  std::lock_guard lock(mu_);
  for (const auto& f : families_) {
    if (f->name() == ref.name()) {
      throw std::invalid_argument(fmt::format("metrics: family '{}' declared twice", ref.name()));
    }
  }
  families_.push_back(std::move(family));
  return ref;
}

Family<Counter>& Registry::counter(std::string name, std::string help,
                                   std::vector<std::string> label_names) {
  if (!name.ends_with("_total")) {
    throw std::invalid_argument(fmt::format("metrics: counter '{}' must end in _total", name));
  }
  return add<Counter>(std::move(name), std::move(help), "counter", std::move(label_names));
}

Family<Gauge>& Registry::gauge(std::string name, std::string help,
                               std::vector<std::string> label_names) {
  return add<Gauge>(std::move(name), std::move(help), "gauge", std::move(label_names));
}

Family<Histogram>& Registry::histogram(std::string name, std::string help,
                                       std::vector<std::string> label_names,
                                       std::vector<double> bounds) {
  if (std::find(label_names.begin(), label_names.end(), "le") != label_names.end()) {
    throw std::invalid_argument(
        fmt::format("metrics: histogram '{}' may not use label 'le'", name));
  }
  bool ok = !bounds.empty();
  for (std::size_t i = 0; ok && i < bounds.size(); ++i) {
    ok = std::isfinite(bounds[i]) && (i == 0 || bounds[i] > bounds[i - 1]);
  }
  if (!ok) {
    throw std::invalid_argument(fmt::format(
        "metrics: histogram '{}' needs finite, strictly increasing bucket bounds", name));
  }
  return add<Histogram>(std::move(name), std::move(help), "histogram", std::move(label_names),
                        std::move(bounds));
}

void Registry::add_collect_hook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  hooks_.push_back(std::move(hook));
}

std::string Registry::expose() {
  std::lock_guard scrape(expose_mu_);
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lock(mu_);
    hooks = hooks_;
  }
  // Not under mu_: a hook declares nothing, but it does take family locks via with().
  for (const auto& hook : hooks) hook();
  std::string out;
  out.reserve(8192);
  std::lock_guard lock(mu_);
  for (const auto& f : families_) f->render(out);
  return out;
}

}  // namespace drover::metrics
