// Secret redaction, all of it with RE2: its automata match in time linear in
// the line, with no recursion, so neither a user pattern such as "(a+)+$" nor
// a payload's long line can stall or crash the daemon (std::regex did both).
// Patterns are compiled as Latin-1, i.e. over bytes, as std::regex on char
// did: any payload bytes, valid UTF-8 or not, are matched the same way.
#include <re2/re2.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "pisec/logs.hpp"

namespace pisec::logs {
namespace {

using Range = std::pair<std::size_t, std::size_t>;  // [begin, end) in the line
constexpr std::size_t npos = std::string_view::npos;

RE2::Options pattern_options() {
  RE2::Options o;
  o.set_encoding(RE2::Options::EncodingLatin1);
  o.set_log_errors(false);
  return o;
}

// A quoted value after its opening quote, up to the closing quote (a
// backslash escapes the next byte) or the end of the line.
#define PISEC_QUOTED(q) q "((?:[^" q "\\\\]|\\\\.)*\\\\?)"

// One pattern for the single-line built-ins; each alternative starts with its
// own literal, so no two can match at the same position:
//  - key=value, key: value, ?key=value&, "key": "value", "key": 123, where
//    the key is any word containing passw/passphrase/secret/token
//    (db_password, access_token, ...); an unquoted value stops only where it
//    surely ends (over-redacting beats leaking);
//  - "Authorization: <anything to end of line>" and "authorization": "<value>";
//  - "bearer <token>";
//  - scheme://user:password@host -> the password.
constexpr const char* single_line_secrets =
    "(?i)(?:passw|passphrase|secret|token)[a-z0-9_.\\-]*[\"']?[ \t]*[:=][ \t]*"
    "(?:" PISEC_QUOTED("\"") "|" PISEC_QUOTED("'") "|([^ \t&\"']*))"
    "|authorization[\"']?[ \t]*[:=][ \t]*"
    "(?:" PISEC_QUOTED("\"") "|" PISEC_QUOTED("'") "|(.+))"
    "|bearer[ \t]+([a-z0-9\\-._~+/=]+)"
    "|://[^ \t/@\"':]*:([^ \t/@\"']+)@";
#undef PISEC_QUOTED
constexpr int single_line_groups = 8;

struct Builtins {
  RE2 secrets{single_line_secrets, pattern_options()};
  RE2 pem_begin{"(?i)-----begin [a-z ]{0,40}private key-----", pattern_options()};
  RE2 pem_end{"(?i)-----end [a-z ]{0,40}private key-----", pattern_options()};
  Builtins() {
    for (const RE2* re : {&secrets, &pem_begin, &pem_end})
      if (!re->ok()) throw std::logic_error("built-in redact pattern: " + re->error());
  }
};

// Compiled on the first line that may hold a built-in's secret, not at
// start: their parse trees, programs and DFA caches are the daemon's largest
// heap object, and a payload whose lines never name a secret never needs them.
const Builtins& builtins() {
  static const Builtins b;
  return b;
}

// Every match of the single-line built-ins, the value (the one group that
// took part) as the range. The search restarts one byte after each match's
// start, not at its end, so a secret inside another one's key or value is
// found too (password=token="x" hides both values).
void scan_single_line(const RE2& re, std::string_view line, std::vector<Range>& out) {
  re2::StringPiece text(line.data(), line.size());
  re2::StringPiece m[single_line_groups + 1];
  for (std::size_t pos = 0; pos < line.size();) {
    if (!re.Match(text, pos, line.size(), RE2::UNANCHORED, m, single_line_groups + 1)) break;
    for (int g = 1; g <= single_line_groups; ++g) {
      if (m[g].data() == nullptr) continue;
      auto b = static_cast<std::size_t>(m[g].data() - line.data());
      out.emplace_back(b, b + m[g].size());
      break;
    }
    pos = static_cast<std::size_t>(m[0].data() - line.data()) + 1;
  }
}

// Whether the line contains a literal every single-line built-in match does.
bool may_hold_single_line_secret(std::string_view line) {
  if (line.find("://") != npos) return true;
  std::string low(line);
  for (char& c : low)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  for (std::string_view kw : {"pass", "secret", "token", "authorization", "bearer"})
    if (low.find(kw) != npos) return true;
  return false;
}

// The next marker at or after `from`: {start, end} or {npos, npos}.
Range find_marker(const RE2& re, std::string_view line, std::size_t from) {
  re2::StringPiece m;
  if (from > line.size() ||
      !re.Match(re2::StringPiece(line.data(), line.size()), from, line.size(), RE2::UNANCHORED, &m, 1))
    return {npos, npos};
  auto b = static_cast<std::size_t>(m.data() - line.data());
  return {b, b + m.size()};
}

// Key material between BEGIN and END markers, on one line (e.g. JSON with
// "\n" escapes) or across lines (state carried in StreamState).
void scan_pem(std::string_view line, Redactor::StreamState& state, std::vector<Range>& out) {
  const Builtins& re = builtins();
  std::size_t pos = 0;
  if (state.in_private_key) {
    Range end = find_marker(re.pem_end, line, 0);
    if (end.first == npos) {
      out.emplace_back(0, line.size());
      return;
    }
    out.emplace_back(0, end.first);
    state.in_private_key = false;
    pos = end.second;
  }
  for (Range begin = find_marker(re.pem_begin, line, pos); begin.first != npos;
       begin = find_marker(re.pem_begin, line, pos)) {
    Range end = find_marker(re.pem_end, line, begin.second);
    if (end.first == npos) {
      out.emplace_back(begin.second, line.size());
      state.in_private_key = true;
      return;
    }
    out.emplace_back(begin.second, end.first);
    pos = end.second;
  }
}

// Replaces the union of the ranges with the marker.
std::string replace_ranges(std::string_view line, std::vector<Range>& ranges) {
  std::sort(ranges.begin(), ranges.end());
  std::string result;
  result.reserve(line.size());
  std::size_t copied = 0;
  for (std::size_t i = 0; i < ranges.size();) {
    std::size_t b = ranges[i].first, e = ranges[i].second;
    for (++i; i < ranges.size() && ranges[i].first <= e; ++i) e = std::max(e, ranges[i].second);
    if (e <= b) continue;  // empty match: nothing to hide
    result.append(line.substr(copied, b - copied));
    result.append(redacted_marker);
    copied = e;
  }
  result.append(line.substr(std::min(copied, line.size())));
  return result;
}

// Every non-overlapping match, as std::regex_iterator gave them.
void collect_matches(const RE2& re, std::string_view s, std::vector<Range>& out) {
  re2::StringPiece text(s.data(), s.size());
  re2::StringPiece m;
  for (std::size_t pos = 0; pos <= s.size();) {
    if (!re.Match(text, pos, s.size(), RE2::UNANCHORED, &m, 1)) break;
    auto b = static_cast<std::size_t>(m.data() - s.data());
    out.emplace_back(b, b + m.size());
    pos = b + std::max<std::size_t>(m.size(), 1);  // an empty match moves on by one
  }
}

}  // namespace

std::string pattern_error(const std::string& pattern) {
  RE2 re(pattern, pattern_options());
  return re.ok() ? "" : re.error();
}

Redactor::Redactor(const std::vector<std::string>& user_patterns) {
  for (const auto& p : user_patterns) {
    auto re = std::make_unique<RE2>(p, pattern_options());
    if (!re->ok())
      throw std::runtime_error("logs.redact: invalid regex \"" + p + "\": " + re->error());
    user_.push_back(std::move(re));
  }
}

Redactor::~Redactor() = default;
Redactor::Redactor(Redactor&&) noexcept = default;
Redactor& Redactor::operator=(Redactor&&) noexcept = default;

std::string Redactor::redact(std::string_view line, StreamState& state) const {
  std::vector<Range> ranges;
  // Most lines hold no secret: plain substring searches rule out the
  // built-ins before the regex engine runs (measured: ~2x on access logs).
  if (state.in_private_key || line.find("-----") != npos) scan_pem(line, state, ranges);
  if (may_hold_single_line_secret(line)) scan_single_line(builtins().secrets, line, ranges);
  std::string result = ranges.empty() ? std::string(line) : replace_ranges(line, ranges);

  // No literal-prefix prefilter for these: RE2 skips to a pattern's literal
  // prefix itself (measured: no difference with the example config's pattern).
  for (const auto& re : user_) {
    ranges.clear();
    collect_matches(*re, result, ranges);
    if (!ranges.empty()) result = replace_ranges(result, ranges);
  }
  return result;
}

void Redactor::follow_cut(std::string_view cut_window, StreamState& state) const {
  // The window may repeat the end of what redact() or the last window saw:
  // scanning a marker twice leaves the same state, since the state after any
  // run of markers is set by the last one.
  std::vector<Range> unused;
  if (state.in_private_key || cut_window.find("-----") != npos) scan_pem(cut_window, state, unused);
}

}  // namespace pisec::logs
