// libFuzzer target for bwrap's --json-status-fd records as the sandbox reads
// them (bytes in arbitrary pieces, then EOF): any input must yield events or
// a std::runtime_error naming the bad record, never crash (ASan/UBSan); how
// the bytes are split must not change the events.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "pisec/sandbox.hpp"

namespace s = pisec::sandbox;

namespace {

// Every event, or nullopt when a record was refused.
std::optional<std::vector<s::StatusEvent>> events(std::string_view bytes, std::size_t piece) {
  s::StatusFdParser parser;
  std::vector<s::StatusEvent> all;
  try {
    while (!bytes.empty()) {
      const std::size_t n = std::min(piece, bytes.size());
      for (const auto& e : parser.feed(bytes.substr(0, n))) all.push_back(e);
      bytes.remove_prefix(n);
    }
    for (const auto& e : parser.finish()) all.push_back(e);
  } catch (const std::runtime_error&) {
    return std::nullopt;
  }
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t piece = 1 + data[0] % 16;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto whole = events(bytes, bytes.size() + 1);
  const auto split = events(bytes, piece);
  if (whole.has_value() != split.has_value()) __builtin_trap();
  if (whole) {
    if (whole->size() != split->size()) __builtin_trap();
    std::optional<long> exit_code;
    for (std::size_t i = 0; i < whole->size(); ++i) {
      if ((*whole)[i].kind != (*split)[i].kind || (*whole)[i].value != (*split)[i].value) __builtin_trap();
      if ((*whole)[i].kind == s::StatusEvent::Kind::exit_code) exit_code = (*whole)[i].value;
    }
    (void)s::classify_exit(0, exit_code);
  }
  return 0;
}
