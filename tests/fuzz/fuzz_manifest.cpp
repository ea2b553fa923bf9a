// libFuzzer target for the signed manifest's text (sha256sum format) and the
// release stamp: any input must be accepted or refused with crypto::Error,
// never crash (ASan/UBSan). An accepted manifest must print back to text
// that parses to the same entries, and the release stamp must round-trip.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pisec/formats.hpp"

namespace c = pisec::crypto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const c::Manifest m = c::parse_manifest(text, "fuzz.sha256");
    const c::Manifest again = c::parse_manifest(c::format_manifest(m), "formatted");
    if (again.entries.size() != m.entries.size()) __builtin_trap();
    for (std::size_t i = 0; i < m.entries.size(); ++i)
      if (again.entries[i].path != m.entries[i].path || again.entries[i].hash != m.entries[i].hash)
        __builtin_trap();  // printing changed what the manifest says
  } catch (const c::Error&) {
  }
  if (auto t = c::parse_release_stamp(text))
    if (c::parse_release_stamp(c::format_release_stamp(*t)) != t) __builtin_trap();
  (void)c::manifest_path_problem(text);
  return 0;
}
