// Writing JSON as bytes (the half of proto/json_text.hpp that needs no parser, so that code
// which only writes does not include simdjson). Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace drover::proto {

// --- writing ----------------------------------------------------------------------------------

// Appends `s` as a JSON string literal (quotes included).
void append_string(std::string& out, std::string_view s);
void append_uint(std::string& out, std::uint64_t v);
void append_int(std::string& out, std::int64_t v);
// Shortest round-trip form; integral values keep a ".0" (3.0, as nlohmann writes them); NaN
// and infinities, which JSON cannot carry, become null.
void append_double(std::string& out, double v);

}  // namespace drover::proto
