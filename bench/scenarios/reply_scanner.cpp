#include "bench/scenarios/reply_scanner.hpp"

#include <array>
#include <initializer_list>
#include <nlohmann/json.hpp>

namespace drover::bench {
namespace {

using json = nlohmann::json;

// Tracks the key path of the current value (depth 1 is the top-level object) and records the
// members ReplyInfo names. Keys deeper than kMaxDepth are not kept: nothing there is needed.
class Scanner final : public nlohmann::json_sax<json> {
 public:
  explicit Scanner(ReplyInfo& out) : out_(out) {}

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t v) override { return integer(v); }
  bool number_unsigned(number_unsigned_t v) override {
    return integer(static_cast<std::int64_t>(v));
  }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t& v) override {
    if (at({"method"})) method_ = v;
    return true;
  }
  bool binary(binary_t&) override { return true; }

  bool start_object(std::size_t) override {
    if (depth_ == 0) top_is_object_ = true;
    if (at({"result"})) has_result_ = true;
    if (at({"error"})) has_error_ = true;
    return push(/*array=*/false);
  }
  bool key(string_t& k) override {
    if (depth_ < kMaxDepth) keys_[depth_] = k;
    return true;
  }
  bool end_object() override { return pop(); }
  bool start_array(std::size_t) override { return push(/*array=*/true); }
  bool end_array() override { return pop(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

  void finish() {
    out_.kind = ReplyInfo::Kind::other;
    if (!top_is_object_) return;
    if (has_error_ && out_.id) {
      out_.kind = ReplyInfo::Kind::error;
    } else if (has_result_ && out_.id) {
      out_.kind = ReplyInfo::Kind::result;
    } else if (method_ && !has_id_) {
      out_.kind = ReplyInfo::Kind::notification;
      out_.method = std::move(*method_);
    }
  }

 private:
  static constexpr int kMaxDepth = 4;

  bool integer(std::int64_t v) {
    if (at({"id"})) {
      has_id_ = true;
      out_.id = v;
    } else if (at({"error", "code"})) {
      out_.error_code = static_cast<int>(v);
    } else if (at({"params", "id"})) {
      out_.params_id = v;
    } else if (at({"result", "usage", "completion_tokens"})) {
      out_.completion_tokens = v;
    }
    return true;
  }

  // True when the value being parsed sits at this key path below the top-level object.
  bool at(std::initializer_list<std::string_view> path) const {
    if (!top_is_object_ || depth_ != static_cast<int>(path.size())) return false;
    int d = 1;
    for (std::string_view k : path) {
      if (in_array_[d] || keys_[d] != k) return false;
      ++d;
    }
    return true;
  }

  bool push(bool array) {
    ++depth_;
    if (depth_ < kMaxDepth) {
      keys_[depth_].clear();
      in_array_[depth_] = array;
    }
    return true;
  }
  bool pop() {
    --depth_;
    return true;
  }

  ReplyInfo& out_;
  // keys_[d]: the key of the current member of the object at depth d; in_array_[d]: the
  // container at depth d is an array, whose elements have no key.
  std::array<std::string, kMaxDepth> keys_;
  std::array<bool, kMaxDepth> in_array_{};
  int depth_ = 0;
  bool top_is_object_ = false;
  bool has_result_ = false;
  bool has_error_ = false;
  bool has_id_ = false;
  std::optional<std::string> method_;
};

}  // namespace

ReplyInfo scan_reply(std::string_view text) {
  ReplyInfo info;
  Scanner scanner(info);
  if (!json::sax_parse(text, &scanner)) {
    return ReplyInfo{.kind = ReplyInfo::Kind::invalid};
  }
  scanner.finish();
  return info;
}

}  // namespace drover::bench
