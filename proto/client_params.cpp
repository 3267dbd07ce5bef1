#include "proto/client_params.hpp"

#include <fmt/format.h>

#include <initializer_list>
#include <set>

namespace drover::proto {
namespace {

// Reads named params from a params object; remembers which names are known so unknown ones
// can be reported. The first problem wins; later reads are no-ops once one is recorded.
class ParamReader {
 public:
  explicit ParamReader(const json& params) : params_(params) {
    if (!params.is_null() && !params.is_object()) error_ = "params must be an object";
  }

  const json* find(const char* name) {
    known_.insert(name);
    if (!error_.empty() || !params_.is_object()) return nullptr;
    const auto it = params_.find(name);
    if (it == params_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  void string(const char* name, std::string& out, bool required = false) {
    const json* v = find(name);
    if (!v) {
      if (required) missing(name, "a string");
      return;
    }
    if (!v->is_string()) return wrong(name, "a string");
    out = v->get<std::string>();
  }

  void integer(const char* name, int& out, int min, int max) {
    const json* v = find(name);
    if (!v) return;
    if (!v->is_number_integer() || v->get<std::int64_t>() < min || v->get<std::int64_t>() > max) {
      return wrong(name, fmt::format("an integer in {}..{}", min, max));
    }
    out = v->get<int>();
  }

  void number(const char* name, double& out, double min, double max) {
    const json* v = find(name);
    if (!v) return;
    if (!v->is_number() || v->get<double>() < min || v->get<double>() > max) {
      return wrong(name, fmt::format("a number in {}..{}", min, max));
    }
    out = v->get<double>();
  }

  void boolean(const char* name, bool& out) {
    const json* v = find(name);
    if (!v) return;
    if (!v->is_boolean()) return wrong(name, "true or false");
    out = v->get<bool>();
  }

  template <typename E>
  void choice(const char* name, E& out, std::initializer_list<std::pair<const char*, E>> allowed) {
    const json* v = find(name);
    if (!v) return;
    std::string names;
    for (const auto& [n, e] : allowed) {
      if (v->is_string() && *v == n) {
        out = e;
        return;
      }
      names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", n);
    }
    wrong(name, "one of " + names);
  }

  void priority(Priority& out) {
    choice<Priority>("priority", out,
                     {{"high", Priority::high}, {"normal", Priority::normal}, {"low", Priority::low}});
  }

  void missing(const char* name, const char* what) {
    if (error_.empty()) error_ = fmt::format("missing param '{}' ({})", name, what);
  }

  void wrong(const char* name, const std::string& what) {
    if (error_.empty()) error_ = fmt::format("param '{}' must be {}", name, what);
  }

  // The error text, or empty when all params were valid and known.
  std::string finish() {
    if (error_.empty() && params_.is_object()) {
      for (const auto& [key, value] : params_.items()) {
        if (!known_.contains(key)) {
          std::string allowed;
          for (const auto& k : known_) allowed += (allowed.empty() ? "" : ", ") + k;
          error_ = fmt::format("unknown param '{}' (allowed: {})", key, allowed);
          break;
        }
      }
    }
    return error_;
  }

 private:
  const json& params_;
  std::set<std::string> known_;
  std::string error_;
};

template <typename T>
ParamsResult<T> done(ParamReader& r, T value) {
  std::string err = r.finish();
  if (!err.empty()) return ParamsResult<T>(boost::system::in_place_error, std::move(err));
  return value;
}

}  // namespace

json GenerateParams::to_worker_params(std::uint64_t resolved_seed) const {
  json p = {{"prompt", prompt},           {"max_tokens", max_tokens}, {"temperature", temperature},
            {"top_p", top_p},             {"seed", resolved_seed},    {"stream", stream}};
  if (!model.empty()) p["model"] = model;
  if (!stop.empty()) p["stop"] = stop;
  return p;
}

ParamsResult<GenerateParams> parse_generate_params(const json& params) {
  GenerateParams g;
  ParamReader r(params);
  r.string("model", g.model);
  r.string("prompt", g.prompt, /*required=*/true);
  r.integer("max_tokens", g.max_tokens, 1, kMaxTokensLimit);
  r.number("temperature", g.temperature, 0.0, 100.0);
  r.number("top_p", g.top_p, 0.0, 1.0);
  if (const json* seed = r.find("seed")) {
    if (!seed->is_number_unsigned() && !(seed->is_number_integer() && seed->get<std::int64_t>() >= 0)) {
      r.wrong("seed", "a non-negative integer");
    } else {
      g.seed = seed->get<std::uint64_t>();
    }
  }
  if (const json* stop = r.find("stop")) {
    bool ok = stop->is_array() && stop->size() <= 16;
    if (ok) {
      for (const auto& s : *stop) ok = ok && s.is_string() && !s.get<std::string>().empty();
    }
    if (!ok) {
      r.wrong("stop", "a list of at most 16 non-empty strings");
    } else {
      g.stop = stop->get<std::vector<std::string>>();
    }
  }
  r.boolean("stream", g.stream);
  r.priority(g.priority);
  r.choice<CacheMode>("cache", g.cache, {{"default", CacheMode::use}, {"bypass", CacheMode::bypass}});
  if (const json* t = r.find("timeout_ms")) {
    if (!t->is_number_integer() || t->get<std::int64_t>() < 1 ||
        t->get<std::int64_t>() > 24LL * 3600 * 1000) {
      r.wrong("timeout_ms", "an integer in 1..86400000");
    } else {
      g.timeout_ms = t->get<std::int64_t>();
    }
  }
  return done(r, std::move(g));
}

ParamsResult<TokenizeParams> parse_tokenize_params(const json& params) {
  TokenizeParams t;
  ParamReader r(params);
  r.string("model", t.model);
  r.string("text", t.text, /*required=*/true);
  r.priority(t.priority);
  return done(r, std::move(t));
}

ParamsResult<DetokenizeParams> parse_detokenize_params(const json& params) {
  DetokenizeParams d;
  ParamReader r(params);
  r.string("model", d.model);
  const json* tokens = r.find("tokens");
  if (!tokens) {
    r.missing("tokens", "a list of integers");
  } else {
    bool ok = tokens->is_array();
    if (ok) {
      for (const auto& t : *tokens) ok = ok && t.is_number_integer();
    }
    if (!ok) {
      r.wrong("tokens", "a list of integers");
    } else {
      d.tokens = tokens->get<std::vector<std::int64_t>>();
    }
  }
  return done(r, std::move(d));
}

ParamsResult<CancelParams> parse_cancel_params(const json& params) {
  CancelParams c;
  ParamReader r(params);
  const json* id = params.is_object() && params.contains("id") ? r.find("id") : nullptr;
  if (!id) {
    r.find("id");
    if (params.is_object() && params.contains("id") && params["id"].is_null()) {
      c.id = nullptr;  // a null id is a legal request id
    } else {
      r.missing("id", "the id of a request on this connection");
    }
  } else if (!id->is_string() && !id->is_number()) {
    r.wrong("id", "a string, a number or null");
  } else {
    c.id = *id;
  }
  return done(r, std::move(c));
}

ParamsResult<bool> parse_no_params(const json& params) {
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

}  // namespace drover::proto
