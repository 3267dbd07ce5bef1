// proto/json_text.hpp: the byte-level pieces every codec builds on. What is written must be JSON
// that nlohmann (and so droverd's clients) read back as the value meant; what is read must be
// refused exactly when it is not JSON.
#include "proto/json_text.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace drover::proto {
namespace {

using json = nlohmann::json;
using namespace std::string_literals;

std::string json_string(std::string_view s) {
  std::string out;
  append_string(out, s);
  return out;
}

std::string double_text(double v) {
  std::string out;
  append_double(out, v);
  return out;
}

// What nlohmann reads from `text`, or a discarded value when it refuses it.
json read_back(std::string_view text) { return json::parse(text, nullptr, false); }

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// --- append_string -------------------------------------------------------------------------------

TEST(AppendString, PlainTextIsQuotedAsIs) {
  EXPECT_EQ(json_string(""), R"("")");
  EXPECT_EQ(json_string("hello world"), R"("hello world")");
  EXPECT_EQ(json_string("a/b"), R"("a/b")") << "the solidus needs no escape";
  EXPECT_EQ(json_string("\x7f"), "\"\x7f\"") << "DEL is not a control character in JSON";
}

TEST(AppendString, QuotesBackslashesAndControlCharactersAreEscaped) {
  EXPECT_EQ(json_string("say \"hi\""), R"("say \"hi\"")");
  EXPECT_EQ(json_string("C:\\dir\\"), R"("C:\\dir\\")");
  EXPECT_EQ(json_string("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(json_string("\x01\x1f"), R"("\u0001\u001f")");
  EXPECT_EQ(json_string("a\0b"s), R"("a\u0000b")") << "an embedded NUL is kept, escaped";
  // Every control character, each read back as itself.
  for (int c = 0; c < 0x20; ++c) {
    const std::string s = "x"s + static_cast<char>(c) + "y";
    const json back = read_back(json_string(s));
    ASSERT_TRUE(back.is_string()) << c;
    EXPECT_EQ(back.get<std::string>(), s) << c;
  }
}

TEST(AppendString, ValidMultiByteUtf8IsCopiedUnescaped) {
  for (const std::string& s :
       {"héllo"s, "日本語"s, "emoji 😀 and 𝄞"s, "\xF4\x8F\xBF\xBF"s /* U+10FFFF */,
        "\xEE\x80\x80"s /* U+E000, just past the surrogates */}) {
    EXPECT_EQ(json_string(s), "\"" + s + "\"");
    EXPECT_EQ(read_back(json_string(s)), json(s));
  }
}

TEST(AppendString, EachByteOfInvalidUtf8BecomesTheReplacementCharacter) {
  struct Case {
    std::string in;
    std::string out;  // the unquoted text written
  };
  const std::vector<Case> cases = {
      {"ok\xff", "ok" + kReplacement},
      {"ok\xff\xfe", "ok" + kReplacement + kReplacement},
      {"\x80", kReplacement},                                        // lone continuation byte
      {"\xC0\xAF", kReplacement + kReplacement},                     // overlong '/'
      {"\xE0\x80\xAF", kReplacement + kReplacement + kReplacement},  // overlong, 3 bytes
      {"\xED\xA0\x80", kReplacement + kReplacement + kReplacement},  // UTF-16 surrogate D800
      {"\xF4\x90\x80\x80",
       std::string() + kReplacement + kReplacement + kReplacement + kReplacement},  // past U+10FFFF
      {"a\xC3", "a" + kReplacement},                                     // truncated at the end
      {"\xE6\x97z", kReplacement + kReplacement + "z"},                  // truncated mid-text
      {"\xC3\xA9\xff\xC3\xA9", "\xC3\xA9" + kReplacement + "\xC3\xA9"},  // valid around invalid
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(json_string(c.in), "\"" + c.out + "\"");
    const json back = read_back(json_string(c.in));
    ASSERT_TRUE(back.is_string()) << "invalid UTF-8 must never make invalid JSON";
    EXPECT_EQ(back.get<std::string>(), c.out);
  }
}

TEST(AppendString, AppendsToWhatIsAlreadyThere) {
  std::string out = "[";
  append_string(out, "a");
  out += ',';
  append_string(out, "b\"");
  out += ']';
  EXPECT_EQ(out, R"(["a","b\""])");
}

TEST(AppendString, RandomBytesAlwaysMakeJsonThatReadsBackAsTheValidPart) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 2000; ++round) {
    std::string s(rng() % 24, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    const json back = read_back(json_string(s));
    ASSERT_TRUE(back.is_string()) << testing::PrintToString(s);
    // Re-escaping what came back is stable: it is valid UTF-8 now.
    EXPECT_EQ(json_string(back.get<std::string>()), json(back.get<std::string>()).dump());
  }
}

// --- numbers -------------------------------------------------------------------------------------

TEST(AppendDouble, ShortestFormsWithIntegralValuesKeepingAFraction) {
  EXPECT_EQ(double_text(0.8), "0.8");
  EXPECT_EQ(double_text(3.0), "3.0");
  EXPECT_EQ(double_text(0.0), "0.0");
  EXPECT_EQ(double_text(-0.0), "-0.0");
  EXPECT_EQ(double_text(-2.5), "-2.5");
  EXPECT_EQ(double_text(1e-7), "1e-07");
  EXPECT_EQ(double_text(1e300), "1e+300");
  EXPECT_EQ(double_text(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(double_text(123456789.0), "123456789.0");
}

TEST(AppendDouble, NanAndInfinitiesBecomeNull) {
  EXPECT_EQ(double_text(std::numeric_limits<double>::quiet_NaN()), "null");
  EXPECT_EQ(double_text(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(double_text(-std::numeric_limits<double>::infinity()), "null");
}

TEST(AppendDouble, TypicalValuesAreWrittenAsNlohmannWritesThem) {
  for (const double v : {0.8, 0.95, 0.7, 12.5, 0.004, 0.061, 0.083, 1e-7, 1e21, 1e16, 5e-324,
                         1.7976931348623157e308, 100.0, 1.0 / 3, 2.0 / 3, -1e-300}) {
    EXPECT_EQ(double_text(v), json(v).dump());
  }
}

TEST(AppendDouble, AnyFiniteDoubleReadsBackExactly) {
  // Large integral values may be written in full ("53165205877497296.0") where nlohmann writes
  // an exponent ("5.3165205877497296e+16"): both are the shortest round trip, read back alike.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    double v;
    const std::uint64_t bits = rng();
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v)) continue;
    const std::string text = double_text(v);
    SCOPED_TRACE(text);
    EXPECT_TRUE(valid_number(text));
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v);
    EXPECT_EQ(json::parse(text).get<double>(), v);
  }
}

TEST(AppendInt, FullRanges) {
  std::string out;
  append_int(out, std::numeric_limits<std::int64_t>::min());
  out += ' ';
  append_int(out, 0);
  out += ' ';
  append_int(out, -1);
  out += ' ';
  append_uint(out, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(out, "-9223372036854775808 0 -1 18446744073709551615");
}

TEST(ValidNumber, AcceptsJsonsGrammar) {
  for (const std::string_view t :
       {"0", "-0", "1", "-1", "10", "1234567890", "123456789012345678901234567890", "0.5", "-0.0",
        "1.25", "1e2", "1E2", "1e+2", "1e-2", "1.5E-07", "0e0", "-0.0e-0", "1e-400"}) {
    EXPECT_TRUE(valid_number(t)) << t;
    EXPECT_FALSE(read_back(t).is_discarded()) << "nlohmann agrees: " << t;
  }
  // The grammar has no bound on magnitude (nlohmann refuses what overflows a double: see
  // SkipValue.NumbersBeyondDoubleRangeAreRefusedAsNlohmannRefusesThem).
  EXPECT_TRUE(valid_number("1e400"));
}

TEST(ValidNumber, RefusesEverythingElse) {
  for (const std::string_view t :
       {"",          "-",   "+1",  "01",    "-01",   "00",   "1.", ".5", "-.5",
        "1e",        "1e+", "1E-", "1.e5",  "0x10",  "1 ",   " 1", "1,", "Infinity",
        "-Infinity", "NaN", "--1", "1e5.5", "1.2.3", "1ee2", "٣"}) {
    EXPECT_FALSE(valid_number(t)) << t;
    EXPECT_TRUE(read_back(t).is_discarded() || t == "1 " || t == " 1") << "nlohmann agrees: " << t;
  }
}

// --- scanning ------------------------------------------------------------------------------------

TEST(NestsDeeperThan, CountsOpenContainersNotBracketsInStrings) {
  EXPECT_FALSE(nests_deeper_than("", 0));
  EXPECT_FALSE(nests_deeper_than("1", 0));
  EXPECT_TRUE(nests_deeper_than("[]", 0));
  EXPECT_FALSE(nests_deeper_than("[[]]", 2));
  EXPECT_TRUE(nests_deeper_than("[[[]]]", 2));
  EXPECT_FALSE(nests_deeper_than("[][][][]", 1)) << "siblings do not add up";
  EXPECT_FALSE(nests_deeper_than(R"({"a":[1,{"b":2}]})", 3));
  EXPECT_TRUE(nests_deeper_than(R"({"a":[1,{"b":2}]})", 2));
  EXPECT_FALSE(nests_deeper_than(R"(["[[[[{{{{"])", 1));
  // Neither an escaped quote nor an escaped backslash ends the string early.
  EXPECT_FALSE(nests_deeper_than(R"(["\"[[[[", "\\", "x"])", 1));
  EXPECT_TRUE(nests_deeper_than(R"(["\\"[[])", 2)) << R"(\\ ends in a backslash, then " closes)";
  // Stray closers do not buy depth back.
  EXPECT_TRUE(nests_deeper_than("]]]]][[", 1));
}

TEST(NestsDeeperThan, TheMessageLimitIsBoundedByAByteScan) {
  const std::string at_limit = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_FALSE(nests_deeper_than(at_limit, kMaxJsonDepth));
  EXPECT_TRUE(nests_deeper_than("[" + at_limit + "]", kMaxJsonDepth));
  // A megabyte of openers: refused without recursing (and quickly).
  EXPECT_TRUE(nests_deeper_than(std::string(1 << 20, '{'), kMaxJsonDepth));
}

TEST(TrimToken, DropsOnlyTrailingJsonWhitespace) {
  EXPECT_EQ(trim_token("1 \t\r\n"), "1");
  EXPECT_EQ(trim_token(R"("a b" )"), R"("a b")");
  EXPECT_EQ(trim_token(" x"), " x");
  EXPECT_EQ(trim_token(""), "");
  EXPECT_EQ(trim_token("1\f"), "1\f") << "form feed is not JSON whitespace";
}

// The validation every decoder runs over the values it does not read, over a whole text.
bool validates(std::string_view text) {
  JsonScanner scanner;
  od::document doc;
  if (scanner.iterate(text).get(doc)) return false;
  return skip_document(doc, scanner.buffer()) == simdjson::SUCCESS;
}

TEST(SkipValue, NestingIsBoundedAtTheMessageLimit) {
  const auto nested = [](std::size_t n) { return std::string(n, '[') + std::string(n, ']'); };
  EXPECT_TRUE(validates(nested(kMaxJsonDepth)));
  JsonScanner scanner;
  od::document doc;
  const std::string deep = nested(kMaxJsonDepth + 1);
  ASSERT_FALSE(scanner.iterate(deep).get(doc));
  EXPECT_EQ(skip_document(doc, scanner.buffer()), simdjson::DEPTH_ERROR);
}

TEST(SkipValue, AcceptsWhatNlohmannAccepts) {
  for (const std::string_view text :
       {R"({"a":[1,2.5,-3e2,true,false,null,"s",{}],"b":{"c":[]}})", R"([])", R"({})",
        R"([["\u00e9\ud83d\ude00\n\"\\\/"]])", R"({"a":1,"a":2})", R"( [ 1 , { "k" : "v" } ] )",
        R"([123456789012345678901234567890, 1e308, 1e-400, -0])"}) {
    SCOPED_TRACE(text);
    ASSERT_FALSE(read_back(text).is_discarded());
    EXPECT_TRUE(validates(text));
  }
}

TEST(SkipValue, RefusesWhatNlohmannRefusesAnywhereInTheValue) {
  for (const std::string_view text : {R"({"a":tru})",
                                      R"({"a":nul})",
                                      R"({"a":fals})",
                                      R"([1,])",
                                      R"([01])",
                                      R"([1.])",
                                      R"([-])",
                                      R"([.5])",
                                      R"({"a":1,})",
                                      R"({"a" 1})",
                                      R"({a:1})",
                                      R"(['a'])",
                                      R"(["\x"])",
                                      "[\"\x01\"]",
                                      "[\"\xff\"]",
                                      R"(["\u12"])",
                                      R"({"a":[1,{"b":[2,}]}]})",
                                      R"([1 2])",
                                      R"({"a":1 "b":2})",
                                      R"([NaN])",
                                      R"([Infinity])",
                                      R"([1]])",
                                      R"({"a":1}})",
                                      R"([[1])",
                                      R"({"a":{"b":1})"}) {
    SCOPED_TRACE(text);
    ASSERT_TRUE(read_back(text).is_discarded());
    EXPECT_FALSE(validates(text));
  }
}

// The header's promise: "text that nlohmann would refuse is refused here too". nlohmann refuses
// a number that overflows a double ("number overflow parsing '1e400'", out_of_range.406), and
// so droverd's control plane (parse_json, RpcRequest::params_tree) cannot read text that
// skip_value let through. FAILS: skip_value checks the grammar (valid_number) only.
TEST(SkipValue, NumbersBeyondDoubleRangeAreRefusedAsNlohmannRefusesThem) {
  for (const std::string& text :
       {"[1e400]"s, "[-1e400]"s, R"({"a":1.5e309})"s, "[1" + std::string(400, '0') + "]"}) {
    SCOPED_TRACE(text.substr(0, 40));
    ASSERT_TRUE(read_back(text).is_discarded());
    EXPECT_FALSE(validates(text));
  }
}

TEST(JsonScanner, BufferHoldsTheLastTextAndSurvivesLargeThenSmallInputs) {
  JsonScanner scanner;
  // 9 MiB, then sizes on both sides of the 4 KiB and 1 MiB marks of the shrink rule, then large
  // again: every text must be read whole, whatever the buffer did with the previous one.
  for (const std::size_t n :
       {std::size_t{9} << 20, std::size_t{100'000}, std::size_t{10}, std::size_t{5000},
        std::size_t{2} << 20, std::size_t{9} << 20, std::size_t{4000}, std::size_t{900'000}}) {
    const std::string text = "[\"" + std::string(n, 'x') + "\"]";
    od::document doc;
    ASSERT_FALSE(scanner.iterate(text).get(doc)) << n;
    EXPECT_EQ(scanner.buffer(), text) << n;
    od::array arr;
    ASSERT_FALSE(doc.get_array().get(arr)) << n;
    for (auto item : arr) {
      std::string_view s;
      ASSERT_FALSE(item.get_string().get(s)) << n;
      EXPECT_EQ(s.size(), n);
    }
    EXPECT_TRUE(at_end(doc)) << n;
  }
}

TEST(ReadUint, OnlyPlainNonNegativeIntegersThatFit) {
  const auto read = [](std::string_view text, std::uint64_t& out) {
    JsonScanner scanner;
    const std::string wrapped = "[" + std::string(text) + "]";
    od::document doc;
    od::array arr;
    if (scanner.iterate(wrapped).get(doc) || doc.get_array().get(arr)) return false;
    for (auto item : arr) {
      od::value v;
      if (std::move(item).get(v)) return false;
      return read_uint(v, out);
    }
    return false;
  };
  std::uint64_t v = 0;
  EXPECT_TRUE(read("0", v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(read("18446744073709551615", v));
  EXPECT_EQ(v, std::numeric_limits<std::uint64_t>::max());
  EXPECT_TRUE(read("7 ", v));
  EXPECT_EQ(v, 7u);
  for (const std::string_view bad :
       {"18446744073709551616", "-1", "-0", "1.0", "1e2", "01", "\"1\"", "null", "true"}) {
    EXPECT_FALSE(read(bad, v)) << bad;
  }
}

}  // namespace
}  // namespace drover::proto
