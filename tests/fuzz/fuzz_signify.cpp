// libFuzzer target for signify public keys, secret keys and signatures (the
// integrity gate reads the first two from the device, the signature from the
// release) and for strict base64: any input must parse or be refused with
// crypto::Error, never crash (ASan/UBSan); a key or signature that parses
// prints back to a text that parses to the same value; base64 decodes only
// its own canonical form; no fuzzed signature verifies a fixed message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pisec/formats.hpp"

namespace c = pisec::crypto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto bytes = c::base64_decode(text))
    if (c::base64_encode(bytes->data(), bytes->size()) != text) __builtin_trap();  // not canonical

  std::optional<c::PublicKey> pub;
  try {
    pub = c::parse_public_key(text, "fuzz.pub");
    const c::PublicKey again = c::parse_public_key(c::format_public_key(*pub), "formatted");
    if (again.keynum != pub->keynum || again.key != pub->key) __builtin_trap();
  } catch (const c::Error&) {
  }
  try {
    const c::SecretKey sec = c::parse_secret_key(text, "fuzz.sec");
    const c::SecretKey again = c::parse_secret_key(c::format_secret_key(sec), "formatted");
    if (again.keynum != sec.keynum || again.key != sec.key) __builtin_trap();
  } catch (const c::Error&) {
  }
  try {
    const c::Signature sig = c::parse_signature(text, "fuzz.sig");
    const c::Signature again = c::parse_signature(c::format_signature(sig, "x"), "formatted");
    if (again.keynum != sig.keynum || again.sig != sig.sig) __builtin_trap();
    // The signature against the key in the same input (both halves of a
    // split input), over a message nobody signed.
    const std::size_t half = size / 2;
    const c::PublicKey k = c::parse_public_key(text.substr(0, half), "fuzz.pub");
    const c::Signature s = c::parse_signature(text.substr(half), "fuzz.sig");
    if (c::verify(k, s, "a message nobody signed")) __builtin_trap();
  } catch (const c::Error&) {
  }
  return 0;
}
