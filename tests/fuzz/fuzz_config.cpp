// libFuzzer target for the config loader (pisecd.toml: run, SIGHUP and
// check-config share it): any text must end in a Config or a LoadError whose
// every message names the file, never a crash, a hang or undefined behaviour
// (ASan/UBSan) in toml++ or in the validators the loader asks.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pisec/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The loader refuses files over max_file_bytes before parsing.
  if (size > pisec::config::max_file_bytes) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)pisec::config::load_string(text, "fuzz.toml");
  } catch (const pisec::config::LoadError& e) {
    if (e.errors().empty()) __builtin_trap();  // a refusal that says nothing
    for (const auto& err : e.errors())
      if (err.file != "fuzz.toml") __builtin_trap();  // the message would not say where
  }
  return 0;
}
