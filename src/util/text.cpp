// UTF-8 repair and terminal-safe text (see pisec/util.hpp).
#include <cstdint>
#include <cstdio>

#include "pisec/util.hpp"

namespace pisec::text {

void append(std::string& s, double v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%g", v);
  if (n > 0) s.append(buf, static_cast<std::size_t>(n) < sizeof buf ? static_cast<std::size_t>(n) : sizeof buf - 1);
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  constexpr std::string_view space = " \t\n\r\v\f";
  for (auto at = s.find_first_not_of(space); at != std::string_view::npos; at = s.find_first_not_of(space, at)) {
    auto end = s.find_first_of(space, at);
    out.push_back(s.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at));
    at = end;
  }
  return out;
}

std::optional<long long> to_int(std::string_view s) {
  long long v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

void out(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }
void err(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stderr); }

namespace {

constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD

// Calls on_char(code point, its bytes) for each well-formed character and
// on_char(-1, {}) for each maximal ill-formed subpart (Unicode 15, 3.9 D93b).
template <class F>
void decode(std::string_view s, F&& on_char) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      on_char(static_cast<std::int32_t>(b), s.substr(i, 1));
      ++i;
      continue;
    }
    // Length and the allowed range of the second byte (Table 3-7), which
    // excludes overlong forms, surrogates and code points above U+10FFFF.
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b == 0xE0) {
      len = 3;
      lo = 0xA0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      len = 3;
    } else if (b == 0xED) {
      len = 3;
      hi = 0x9F;
    } else if (b == 0xF0) {
      len = 4;
      lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
      len = 4;
    } else if (b == 0xF4) {
      len = 4;
      hi = 0x8F;
    }
    if (len == 0) {  // continuation byte, C0, C1, F5-FF: never a lead byte
      on_char(-1, {});
      ++i;
      continue;
    }
    std::int32_t cp = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    std::size_t j = i + 1;
    for (; j < i + len && j < s.size(); ++j) {
      const auto c = static_cast<unsigned char>(s[j]);
      if (c < (j == i + 1 ? lo : 0x80) || c > (j == i + 1 ? hi : 0xBF)) break;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (j == i + len) on_char(cp, s.substr(i, len));
    else on_char(-1, {});  // the byte that broke the sequence starts the next one
    i = j;
  }
}

}  // namespace

std::string valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  decode(bytes, [&](std::int32_t cp, std::string_view raw) { out += cp < 0 ? replacement : raw; });
  return out;
}

std::string printable(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  decode(bytes, [&](std::int32_t cp, std::string_view raw) {
    if (cp < 0) out += replacement;
    else if ((cp < 0x20 && cp != '\t') || (cp >= 0x7F && cp <= 0x9F)) out += '?';
    else out += raw;
  });
  return out;
}

}  // namespace pisec::text
