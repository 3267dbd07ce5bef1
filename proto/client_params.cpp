#include "proto/client_params.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <initializer_list>

#include "proto/json_text.hpp"

namespace drover::proto {
namespace {

// Reads a params object in one walk. Params are declared in the order their problems are
// reported (so the first problem named does not depend on the client's key order); a null value
// counts as absent; an unknown name is reported after every known one is fine, so a typo
// ("max_token") is named, not ignored. A repeated key: the last one counts.
class ParamReader {
 public:
  explicit ParamReader(std::initializer_list<std::string_view> names)
      : names_(names), problems_(names.size()), present_(names.size(), false) {}

  // Walks `params`, calling on_field(index of the name, value) for every known, non-null param.
  template <typename OnField>
  void walk(std::string_view params, OnField&& on_field) {
    if (params.empty()) return;
    static thread_local JsonScanner scanner;
    od::document doc;
    od::json_type type;
    if (scanner.iterate(params).get(doc) || doc.type().get(type)) {
      early_ = "params are not JSON";
      return;
    }
    if (type != od::json_type::object) {
      early_ = "params must be an object";
      return;
    }
    od::object obj;
    if (doc.get_object().get(obj)) {
      early_ = "params are not JSON";
      return;
    }
    for (auto field : obj) {
      std::string_view key;
      od::value value;
      if (next_field(field, key, value)) {
        early_ = "params are not JSON";
        return;
      }
      const auto it = std::find(names_.begin(), names_.end(), key);
      if (it == names_.end()) {
        if (!unknown_) unknown_.emplace(key);
        continue;
      }
      const auto i = static_cast<std::size_t>(it - names_.begin());
      problems_[i].clear();
      bool null = false;
      if (!value.is_null().get(null) && null) {
        present_[i] = false;
        continue;
      }
      present_[i] = true;
      on_field(i, value);
    }
  }

  void wrong(std::size_t i, std::string_view what) {
    problems_[i] = fmt::format("param '{}' must be {}", names_[i], what);
  }
  void require(std::size_t i, std::string_view what) { required_.emplace_back(i, what); }
  bool present(std::size_t i) const { return present_[i]; }

  // The error text, or empty when all params were valid and known.
  std::string finish() {
    if (!early_.empty()) return early_;
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (!problems_[i].empty()) return problems_[i];
      for (const auto& [r, what] : required_) {
        if (r == i && !present_[i]) return fmt::format("missing param '{}' ({})", names_[i], what);
      }
    }
    if (unknown_) {
      std::vector<std::string_view> sorted(names_.begin(), names_.end());
      std::sort(sorted.begin(), sorted.end());
      return fmt::format("unknown param '{}' (allowed: {})", *unknown_, fmt::join(sorted, ", "));
    }
    return {};
  }

 private:
  std::vector<std::string_view> names_;
  std::vector<std::string> problems_;
  std::vector<bool> present_;
  std::vector<std::pair<std::size_t, std::string_view>> required_;
  std::optional<std::string> unknown_;  // the first unknown name (which may be "")
  std::string early_;
};

template <typename T>
ParamsResult<T> done(ParamReader& r, T value) {
  std::string err = r.finish();
  if (!err.empty()) return ParamsResult<T>(boost::system::in_place_error, std::move(err));
  return value;
}

void read_string(ParamReader& r, std::size_t i, od::value& v, std::string& out) {
  std::string_view s;
  if (v.get_string().get(s)) return r.wrong(i, "a string");
  out.assign(s);
}

template <typename Int>
void read_integer(ParamReader& r, std::size_t i, od::value& v, Int& out, std::int64_t min,
                  std::int64_t max) {
  std::int64_t n;
  if (v.get_int64().get(n) || n < min || n > max) {
    return r.wrong(i, fmt::format("an integer in {}..{}", min, max));
  }
  out = static_cast<Int>(n);
}

void read_number(ParamReader& r, std::size_t i, od::value& v, double& out, double min, double max) {
  double d;
  if (v.get_double().get(d) || d < min || d > max) {
    return r.wrong(i, fmt::format("a number in {}..{}", min, max));
  }
  out = d;
}

template <typename E>
void read_choice(ParamReader& r, std::size_t i, od::value& v, E& out,
                 std::initializer_list<std::pair<std::string_view, E>> allowed) {
  std::string_view s;
  const bool is_string = !v.get_string().get(s);
  std::string names;
  for (const auto& [n, e] : allowed) {
    if (is_string && s == n) {
      out = e;
      return;
    }
    names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", n);
  }
  r.wrong(i, "one of " + names);
}

void read_priority(ParamReader& r, std::size_t i, od::value& v, Priority& out) {
  read_choice<Priority>(r, i, v, out,
                        {{"high", Priority::high}, {"normal", Priority::normal}, {"low", Priority::low}});
}

}  // namespace

worker::GenerateRequest GenerateParams::to_worker_request(std::uint64_t resolved_seed) const {
  return worker::GenerateRequest{model, prompt, max_tokens, temperature, top_p, resolved_seed,
                                 stop,  stream};
}

ParamsResult<GenerateParams> parse_generate_params(std::string_view params) {
  enum : std::size_t { model, prompt, max_tokens, temperature, top_p, seed, stop, stream, priority,
                       cache, timeout_ms };
  GenerateParams g;
  ParamReader r({"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "stream",
                 "priority", "cache", "timeout_ms"});
  r.require(prompt, "a string");
  r.walk(params, [&](std::size_t i, od::value& v) {
    switch (i) {
      case model: return read_string(r, i, v, g.model);
      case prompt: return read_string(r, i, v, g.prompt);
      case max_tokens: return read_integer(r, i, v, g.max_tokens, 1, kMaxTokensLimit);
      case temperature: return read_number(r, i, v, g.temperature, 0.0, 100.0);
      case top_p: return read_number(r, i, v, g.top_p, 0.0, 1.0);
      case seed: {
        std::uint64_t s;
        if (v.get_uint64().get(s)) return r.wrong(i, "a non-negative integer");
        g.seed = s;
        return;
      }
      case stop: {
        od::array arr;
        std::vector<std::string> out;
        bool ok = !v.get_array().get(arr);
        if (ok) {
          for (auto item : arr) {
            std::string_view s;
            ok = ok && !item.get_string().get(s) && !s.empty() && out.size() < 16;
            if (!ok) break;
            out.emplace_back(s);
          }
        }
        if (!ok) return r.wrong(i, "a list of at most 16 non-empty strings");
        g.stop = std::move(out);
        return;
      }
      case stream: {
        if (v.get_bool().get(g.stream)) r.wrong(i, "true or false");
        return;
      }
      case priority: return read_priority(r, i, v, g.priority);
      case cache:
        return read_choice<CacheMode>(r, i, v, g.cache,
                                      {{"default", CacheMode::use}, {"bypass", CacheMode::bypass}});
      case timeout_ms: {
        std::int64_t t = 0;
        read_integer(r, i, v, t, 1, 24LL * 3600 * 1000);
        g.timeout_ms = t;
        return;
      }
    }
  });
  if (!r.present(timeout_ms)) g.timeout_ms.reset();
  if (!r.present(seed)) g.seed.reset();
  return done(r, std::move(g));
}

ParamsResult<TokenizeParams> parse_tokenize_params(std::string_view params) {
  enum : std::size_t { model, text, priority };
  TokenizeParams t;
  ParamReader r({"model", "text", "priority"});
  r.require(text, "a string");
  r.walk(params, [&](std::size_t i, od::value& v) {
    switch (i) {
      case model: return read_string(r, i, v, t.model);
      case text: return read_string(r, i, v, t.text);
      case priority: return read_priority(r, i, v, t.priority);
    }
  });
  return done(r, std::move(t));
}

ParamsResult<DetokenizeParams> parse_detokenize_params(std::string_view params) {
  enum : std::size_t { model, tokens };
  DetokenizeParams d;
  ParamReader r({"model", "tokens"});
  r.require(tokens, "a list of integers");
  r.walk(params, [&](std::size_t i, od::value& v) {
    if (i == model) return read_string(r, i, v, d.model);
    od::array arr;
    bool ok = !v.get_array().get(arr);
    if (ok) {
      for (auto item : arr) {
        std::int64_t n;
        ok = ok && !item.get_int64().get(n);
        if (!ok) break;
        d.tokens.push_back(n);
      }
    }
    if (!ok) r.wrong(i, "a list of integers");
  });
  return done(r, std::move(d));
}

ParamsResult<CancelParams> parse_cancel_params(std::string_view params) {
  CancelParams c;
  bool have_id = false;
  ParamReader r({"id"});
  // A null id is a legal request id, so it is read here rather than as "absent".
  if (!params.empty()) {
    static thread_local JsonScanner scanner;
    od::document doc;
    od::object obj;
    if (!scanner.iterate(params).get(doc) && !doc.get_object().get(obj)) {
      for (auto field : obj) {
        std::string_view key;
        od::value value;
        if (next_field(field, key, value) || key != "id") {
          continue;
        }
        od::json_type type;
        std::string_view token;
        if (value.type().get(type) || !(token = token_of(value)).data()) continue;
        have_id = type == od::json_type::null || type == od::json_type::string ||
                  type == od::json_type::number;
        c.id = have_id ? RpcId(trim_token(token)) : RpcId();
      }
    }
  }
  r.walk(params, [&](std::size_t i, od::value&) {
    if (!have_id) r.wrong(i, "a string, a number or null");
  });
  if (!have_id && r.finish().empty()) {
    return ParamsResult<CancelParams>(boost::system::in_place_error,
                                      "missing param 'id' (the id of a request on this connection)");
  }
  return done(r, std::move(c));
}

ParamsResult<bool> parse_no_params(std::string_view params) {
  if (params_empty(params)) return true;
  return ParamsResult<bool>(boost::system::in_place_error, "this method takes no params");
}

std::string to_string(Priority p) {
  switch (p) {
    case Priority::high: return "high";
    case Priority::normal: return "normal";
    case Priority::low: return "low";
  }
  return "normal";
}

void encode_generate_result(std::string& out, const worker::GenerateResult& r, int worker_slot,
                            std::string_view cache, const GenerateTiming& timing) {
  out += '{';
  worker::append_generate_fields(out, r);
  out += R"(,"worker":)";
  if (worker_slot >= 0) {
    append_int(out, worker_slot);
  } else {
    out += "null";
  }
  out += R"(,"cache":)";
  append_string(out, cache);
  out += R"(,"timing":{"queue_ms":)";
  append_double(out, timing.queue_ms);
  out += R"(,"ttft_ms":)";
  append_double(out, timing.ttft_ms);
  out += R"(,"total_ms":)";
  append_double(out, timing.total_ms);
  out += "}}";
}

void encode_tokens_result(std::string& out, const std::vector<std::int64_t>& tokens) {
  out += R"({"tokens":[)";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i) out += ',';
    append_int(out, tokens[i]);
  }
  out += "]}";
}

void encode_text_result(std::string& out, std::string_view text) {
  out += R"({"text":)";
  append_string(out, text);
  out += '}';
}

void encode_chunk_notification(std::string& out, std::string_view id, std::uint64_t index,
                               std::string_view text, std::size_t coalesced) {
  out += R"({"jsonrpc":"2.0","method":"generate.chunk","params":{"id":)";
  out += id;
  out += R"(,"index":)";
  append_uint(out, index);
  out += R"(,"text":)";
  append_string(out, text);
  if (coalesced > 0) {
    out += R"(,"coalesced":)";
    append_uint(out, coalesced);
  }
  out += "}}";
}

}  // namespace drover::proto
