#include "proto/json_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace drover::proto {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not one
// (overlong forms, surrogates and code points past U+10FFFF are invalid, as in RFC 3629).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

void append_string(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  std::size_t run = 0;  // start of the bytes that need no escaping, copied in one go
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const std::size_t n = utf8_sequence(s, i); n > 0) {
        i += n;
        continue;
      }
    }
    out.append(s.data() + run, i - run);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out += "\xEF\xBF\xBD";  // U+FFFD for a byte that starts no valid sequence
        }
    }
    run = ++i;
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
  if (std::none_of(buf, r.ptr, [](char c) { return c == '.' || c == 'e' || c == 'E'; })) {
    out += ".0";
  }
}

bool nests_deeper_than(std::string_view text, std::size_t limit) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

bool valid_number(std::string_view t) {
  std::size_t i = 0;
  const auto digit = [&](std::size_t k) { return k < t.size() && t[k] >= '0' && t[k] <= '9'; };
  if (i < t.size() && t[i] == '-') ++i;
  if (!digit(i)) return false;
  if (t[i] == '0') {
    ++i;
  } else {
    while (digit(i)) ++i;
  }
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == t.size();
}

std::string_view trim_token(std::string_view token) {
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t' || token.back() == '\n' ||
                            token.back() == '\r')) {
    token.remove_suffix(1);
  }
  return token;
}

namespace {

// The same walk for a value and for a document's root (simdjson gives them different types).
template <typename V>
simdjson::error_code skip_any(V& v, std::size_t depth) {
  od::json_type type;
  if (auto e = v.type().get(type)) return e;
  if ((type == od::json_type::object || type == od::json_type::array) && depth > kMaxJsonDepth) {
    return simdjson::DEPTH_ERROR;
  }
  switch (type) {
    case od::json_type::object: {
      od::object obj;
      if (auto e = v.get_object().get(obj)) return e;
      for (auto field : obj) {
        std::string_view key;
        od::value value;
        if (auto e = next_field(field, key, value)) return e;
        if (auto e = skip_value(value, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::array: {
      od::array arr;
      if (auto e = v.get_array().get(arr)) return e;
      for (auto item : arr) {
        od::value element;
        if (auto e = std::move(item).get(element)) return e;
        if (auto e = skip_value(element, depth + 1)) return e;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      std::string_view s;
      return v.get_string().get(s);
    }
    case od::json_type::number: {
      std::string_view token;
      token = token_of(v);
      return finite_number(trim_token(token)) ? simdjson::SUCCESS : simdjson::NUMBER_ERROR;
    }
    case od::json_type::boolean: {
      bool b;
      return v.get_bool().get(b);
    }
    case od::json_type::null: {
      bool null = false;
      if (auto e = v.is_null().get(null)) return e;
      return null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::TAPE_ERROR;
}

}  // namespace

simdjson::error_code skip_value(od::value value, std::size_t depth) {
  return skip_any(value, depth);
}

simdjson::error_code skip_document(od::document& doc, std::string_view text) {
  od::json_type type;
  if (auto e = doc.type().get(type)) return e;
  if (type != od::json_type::object && type != od::json_type::array) {
    return valid_root_scalar(doc, text) ? simdjson::SUCCESS : simdjson::TAPE_ERROR;
  }
  if (auto e = skip_any(doc, 1)) return e;
  return at_end(doc) ? simdjson::SUCCESS : simdjson::TRAILING_CONTENT;
}

std::string_view walked_span(od::document& doc, std::string_view token, std::string_view buffer) {
  if (token.empty() || (token[0] != '{' && token[0] != '[')) return trim_token(token);
  // The walk left the document at the token after the value (or past the end).
  const char* end = nullptr;
  if (doc.current_location().get(end)) end = buffer.data() + buffer.size();
  return trim_token(std::string_view(token.data(), static_cast<std::size_t>(end - token.data())));
}

bool finite_number(std::string_view token) {
  if (!valid_number(token)) return false;
  // Only a long mantissa or an exponent can leave a double's range (nlohmann refuses those).
  if (token.size() < 16 && token.find_first_of("eE") == std::string_view::npos) return true;
  const std::string copy(token);
  return std::isfinite(std::strtod(copy.c_str(), nullptr));
}

bool valid_root_scalar(od::document& doc, std::string_view text) {
  // simdjson 3.0.1's root getters misread atoms followed by junk ("falseb") or by whitespace
  // ("null "), so a root scalar is judged by its text: the whole text, trimmed, is one token.
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return false;
  const std::string_view t = trim_token(text.substr(first));
  if (t == "true" || t == "false" || t == "null") return true;
  if (t.front() != '"') return finite_number(t);
  // A string: its closing quote must be the last byte, and its escapes valid.
  std::size_t i = 1;
  while (i < t.size() && t[i] != '"') i += t[i] == '\\' ? 2 : 1;
  if (i != t.size() - 1) return false;
  std::string_view unescaped;
  return !doc.get_string().get(unescaped);
}

simdjson::simdjson_result<od::document> JsonScanner::iterate(std::string_view text) {
  if (padded_.size() < text.size() + simdjson::SIMDJSON_PADDING) {
    padded_.resize(std::max<std::size_t>(4096, 2 * text.size()) + simdjson::SIMDJSON_PADDING);
  }
  // Messages over 1 MiB leave the buffer their size; shrink it back after a rare huge one so a
  // link does not hold 64 MiB for good.
  else if (padded_.size() > (8u << 20) && text.size() < (1u << 20)) {
    padded_ = std::vector<char>(std::max<std::size_t>(4096, 2 * text.size()) +
                                simdjson::SIMDJSON_PADDING);
  }
  std::memcpy(padded_.data(), text.data(), text.size());
  size_ = text.size();
  return parser_.iterate(padded_.data(), text.size(), padded_.size());
}

bool read_uint(od::value v, std::uint64_t& out) {
  std::string_view token;
  if (!(token = token_of(v)).data()) return false;
  token = trim_token(token);
  if (token.empty() || token[0] < '0' || token[0] > '9') return false;
  if (token.size() > 1 && token[0] == '0') return false;  // what valid_number would refuse
  const auto r = std::from_chars(token.data(), token.data() + token.size(), out);
  return r.ec == std::errc() && r.ptr == token.data() + token.size();
}

}  // namespace drover::proto
