// Invariant checks for the fuzz targets. A broken invariant prints what broke and aborts, which
// libFuzzer reports as a crash and saves the input as an artifact (see fuzz/README.md).
// FUZZ_CHECK is always on: the fuzz tree is never built with NDEBUG-dependent checks in mind.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace drover::fuzz {

[[noreturn]] inline void invariant_broken(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what);
  std::abort();
}

}  // namespace drover::fuzz

#define FUZZ_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::drover::fuzz::invariant_broken(#cond, __FILE__, __LINE__))
