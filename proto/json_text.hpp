// JSON as bytes: the small pieces every codec in proto/ builds on, so that no message on the hot
// path becomes a tree (shared/DESIGN.md section 4a).
//
//  - Writing: append_string() escapes a string into JSON text (invalid UTF-8 becomes U+FFFD, as
//    nlohmann's dump with error_handler_t::replace did, so a token that splits a multi-byte
//    character never produces invalid JSON); append_double() writes the shortest form that
//    reads back as the same double.
//  - Reading: JsonScanner holds a simdjson on-demand parser and a padded copy of the input
//    (simdjson reads up to SIMDJSON_PADDING bytes past the end). Decoders walk the document
//    once, taking the fields they know and validating every other value with skip_value(), so
//    text that nlohmann would refuse is refused here too (the fuzz targets check this against
//    nlohmann), and nothing throws.
//  - Raw values: walked_span() gives the bytes of a value just walked, so it can be carried
//    onward as received (ids, params, results, error data).
//
// Pure functions and per-instance state; a JsonScanner is used by one thread at a time.
#pragma once

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/json_write.hpp"

namespace drover::proto {

namespace od = simdjson::ondemand;

// Deepest nesting of arrays and objects accepted in a message, from a client or a worker: the
// protocols nest 4 levels or so, and whoever walks or serialises a value recursively (the
// validator here, nlohmann on the control plane) must not run out of stack on a 64 MiB message
// that nests millions of levels.
inline constexpr std::size_t kMaxJsonDepth = 256;

// --- reading ----------------------------------------------------------------------------------

// True when `text` opens more than `limit` arrays/objects at once (brackets in strings do not
// count). A byte scan, so deep text is refused before anything recurses over it.
bool nests_deeper_than(std::string_view text, std::size_t limit);

// JSON's number grammar, exactly: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool valid_number(std::string_view token);

// The token without the whitespace simdjson's raw_json_token() keeps after it.
std::string_view trim_token(std::string_view token);

// Validates one value completely (every nested scalar parsed, every string unescaped) and moves
// past it. SUCCESS or the simdjson error that made the text invalid.
// `depth`: the nesting level of `value` (a member of the root object or array is at 2); a
// container deeper than kMaxJsonDepth is DEPTH_ERROR, so the recursion is bounded.
simdjson::error_code skip_value(od::value value, std::size_t depth);

// The JSON text of the value whose first token is `token`, just walked completely in `doc`,
// whose input is `buffer` (JsonScanner::buffer() or the caller's padded copy).
std::string_view walked_span(od::document& doc, std::string_view token, std::string_view buffer);

// Validates a whole document (`text` is its input): an object or array walked to its end with
// nothing after it, or a single scalar. SUCCESS, DEPTH_ERROR past kMaxJsonDepth, or another error.
simdjson::error_code skip_document(od::document& doc, std::string_view text);

// valid_number() and within a double's range, as nlohmann requires.
bool finite_number(std::string_view token);

// For a document whose root is not an object or array: whether `text` (the whole input) is one
// valid JSON scalar. REQUIRES: `doc` iterates `text`.
bool valid_root_scalar(od::document& doc, std::string_view text);

// The raw text of the current token (trailing whitespace included), for a value or a root.
inline std::string_view token_of(od::value& v) { return v.raw_json_token(); }
inline std::string_view token_of(od::document& d) {
  std::string_view t;
  if (d.raw_json_token().get(t)) return {};
  return t;
}

// Unpacks one member of an object being iterated: its key (unescaped) and its value.
inline simdjson::error_code next_field(simdjson::simdjson_result<od::field> member,
                                       std::string_view& key, od::value& value) {
  od::field f;
  if (auto e = std::move(member).get(f)) return e;
  if (auto e = f.unescaped_key().get(key)) return e;
  value = f.value();
  return simdjson::SUCCESS;
}

// Whether a document has been consumed up to its end (nothing follows the root value).
inline bool at_end(od::document& d) {
  const char* where = nullptr;
  return d.current_location().get(where) == simdjson::OUT_OF_BOUNDS;
}

class JsonScanner {
 public:
  // Copies `text` into the padded buffer and starts a document over it. The document (and every
  // string_view a decoder takes from it) is valid until the next iterate(); raw views into the
  // copy (buffer()) stay valid until then too.
  simdjson::simdjson_result<od::document> iterate(std::string_view text);
  // The padded copy of the last text iterated.
  std::string_view buffer() const { return {padded_.data(), size_}; }

 private:
  od::parser parser_;
  std::vector<char> padded_;
  std::size_t size_ = 0;
};

// Reads a value already known to be a non-negative integer, such as an id; false when it is not.
bool read_uint(od::value v, std::uint64_t& out);

}  // namespace drover::proto
