// libFuzzer target for what pisec-verifier does with a POST /v1/evidence body
// before any store lookup, and what a device does with an answer: the
// envelope's shape, the signature check over the exact bytes, then the
// strict canonical parsers. Any input must end in an accepted value or an
// attest::Error, never a crash (ASan/UBSan); an accepted report or result
// must print back to exactly the text it was read from.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pisec/attest.hpp"

namespace a = pisec::attest;
namespace c = pisec::crypto;

namespace {

const c::KeyPair& keys() {
  static const c::KeyPair k = c::generate_keypair();
  return k;
}

template <class Parse>
void canonical_or_refused(std::string_view text, Parse parse) {
  try {
    auto value = parse(text);
    if (a::to_json(value) != text) __builtin_trap();  // accepted, but not its own canonical form
  } catch (const a::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  canonical_or_refused(in, [](std::string_view t) { return a::parse_report(t); });
  canonical_or_refused(in, [](std::string_view t) { return a::parse_result(t); });
  for (std::string_view key : {"report", "result"}) {
    try {
      a::Envelope e = a::parse_envelope(in, key);
      (void)a::format_envelope(e, key);
      try {
        a::check_signature(e, keys().pub);
        __builtin_trap();  // a forgery verified
      } catch (const a::Error&) {
      }
    } catch (const a::Error&) {
    }
  }
  // The inner text wrapped in a validly signed envelope: only the parser judges it.
  if (size < 4096) {
    try {  // (not UTF-8: refused by format_envelope)
      const std::string wire = a::format_envelope({std::string(in), c::sign(keys().sec, in)}, "report");
      (void)a::open_report(wire, keys().pub);
    } catch (const a::Error&) {
    }
  }
  return 0;
}
