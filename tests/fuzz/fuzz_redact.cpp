// libFuzzer target for a payload's output on its way to the log ring: bytes
// in arbitrary pieces, cut into lines no longer than logs.max_line_bytes,
// redacted, stored. Never a crash (ASan/UBSan); and no line that redaction
// hides when it sees the whole stream at once, with no length limit (e.g.
// the body of a PEM private-key block), may be stored in clear because of
// where the pieces or the line limit cut it.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "pisec/logs.hpp"

namespace lg = pisec::logs;

namespace {

std::vector<lg::Entry> store(std::string_view bytes, std::size_t max_line, std::size_t piece) {
  pisec::config::Logs cfg;
  cfg.ring_bytes = 64u * 1024 * 1024;  // nothing evicted: entry i is line i
  cfg.max_line_bytes = max_line;
  lg::Logger logger(cfg, {}, [] { return std::int64_t{0}; }, [] { return std::int64_t{0}; });
  while (!bytes.empty()) {
    const std::size_t n = std::min(piece, bytes.size());
    logger.feed(lg::Stream::payload_stdout, bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
  logger.end_of_stream(lg::Stream::payload_stdout);
  return logger.ring().since(0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t max_line = 16 + data[0];   // 16..271 bytes: cuts land anywhere
  const std::size_t piece = 1 + data[1] % 64;  // pipe reads of any size
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  const auto reference = store(bytes, SIZE_MAX / 2, bytes.size() + 1);
  const auto stored = store(bytes, max_line, piece);
  if (reference.size() != stored.size()) __builtin_trap();  // one entry per line, cut or not
  for (std::size_t i = 0; i < reference.size(); ++i)
    if (reference[i].text == lg::redacted_marker && stored[i].text != lg::redacted_marker)
      __builtin_trap();  // a line hidden as a whole is stored (partly) in clear
  return 0;
}
