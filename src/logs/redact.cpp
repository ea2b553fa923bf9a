// Secret redaction. The built-ins are keyword scanners rather than std::regex:
// libstdc++'s regex is slow, and its recursive matcher overflows the stack on
// long lines (a 32 KiB line of letters against "[a-z]+" crashes with an 8 MiB
// stack) - a payload must not be able to crash the daemon with its output.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "pisec/logs.hpp"

namespace pisec::logs {
namespace {

using Range = std::pair<std::size_t, std::size_t>;  // [begin, end) in the line
constexpr std::size_t npos = std::string_view::npos;

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}
bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::strchr("-._~+/=", c) != nullptr;
}

std::size_t skip_spaces(std::string_view s, std::size_t i) {
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

// End of a quoted value starting after the opening quote: the closing quote
// (not escaped by a backslash) or the end of the line.
std::size_t quoted_end(std::string_view s, std::size_t i, char quote) {
  while (i < s.size() && s[i] != quote) i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
  return std::min(i, s.size());
}

// After a key ends at i: optional closing quote of a JSON/YAML key, spaces,
// ':' or '=', spaces. Returns where the value starts, or npos if no separator.
std::size_t value_start_after_key(std::string_view s, std::size_t i) {
  if (i < s.size() && (s[i] == '"' || s[i] == '\'')) ++i;
  i = skip_spaces(s, i);
  if (i >= s.size() || (s[i] != ':' && s[i] != '=')) return npos;
  return skip_spaces(s, i + 1);
}

// key=value, key: value, ?key=value&, "key": "value", "key": 123. The key is
// any word containing one of the keywords (db_password, access_token, ...).
void scan_secret_keys(std::string_view line, std::string_view low, std::vector<Range>& out) {
  static constexpr std::string_view keywords[] = {"passw", "passphrase", "secret", "token"};
  for (std::string_view kw : keywords) {
    for (std::size_t at = low.find(kw); at != npos; at = low.find(kw, at + 1)) {
      std::size_t key_end = at + kw.size();
      while (key_end < low.size() && is_key_char(low[key_end])) ++key_end;
      std::size_t v = value_start_after_key(line, key_end);
      if (v == npos || v >= line.size()) continue;
      if (line[v] == '"' || line[v] == '\'') {
        out.emplace_back(v + 1, quoted_end(line, v + 1, line[v]));
      } else {
        std::size_t e = v;
        // Stops only where a value surely ends; over-redacting beats leaking.
        while (e < line.size() && !is_space(line[e]) && line[e] != '&' && line[e] != '"' &&
               line[e] != '\'')
          ++e;
        out.emplace_back(v, e);
      }
    }
  }
}

// "Authorization: <anything to end of line>" and "authorization": "<value>".
void scan_authorization(std::string_view line, std::string_view low, std::vector<Range>& out) {
  constexpr std::string_view kw = "authorization";
  for (std::size_t at = low.find(kw); at != npos; at = low.find(kw, at + 1)) {
    std::size_t v = value_start_after_key(line, at + kw.size());
    if (v == npos || v >= line.size()) continue;
    if (line[v] == '"' || line[v] == '\'')
      out.emplace_back(v + 1, quoted_end(line, v + 1, line[v]));
    else
      out.emplace_back(v, line.size());
  }
}

void scan_bearer(std::string_view line, std::string_view low, std::vector<Range>& out) {
  constexpr std::string_view kw = "bearer";
  for (std::size_t at = low.find(kw); at != npos; at = low.find(kw, at + 1)) {
    std::size_t t = at + kw.size();
    if (t >= line.size() || !is_space(line[t])) continue;
    t = skip_spaces(line, t);
    std::size_t e = t;
    while (e < line.size() && is_token_char(line[e])) ++e;
    if (e > t) out.emplace_back(t, e);
  }
}

// scheme://user:password@host -> the password.
void scan_url_userinfo(std::string_view line, std::vector<Range>& out) {
  for (std::size_t at = line.find("://"); at != npos; at = line.find("://", at + 3)) {
    std::size_t i = at + 3, colon = npos;
    while (i < line.size() && !is_space(line[i]) && line[i] != '/' && line[i] != '@' &&
           line[i] != '"' && line[i] != '\'') {
      if (line[i] == ':' && colon == npos) colon = i;
      ++i;
    }
    if (i < line.size() && line[i] == '@' && colon != npos && colon + 1 < i)
      out.emplace_back(colon + 1, i);
  }
}

// "-----BEGIN <words> PRIVATE KEY-----": returns the index just past it, or npos.
std::size_t pem_marker_end(std::string_view low, std::size_t at, std::string_view lead) {
  constexpr std::string_view tail = "private key-----";
  std::size_t words = at + lead.size();
  std::size_t t = low.find(tail, words);
  if (t == npos || t - words > 40) return npos;
  for (std::size_t i = words; i < t; ++i)
    if (!((low[i] >= 'a' && low[i] <= 'z') || low[i] == ' ')) return npos;
  return t + tail.size();
}

// Finds the next END marker at or after `from`: {start, end} or {npos, npos}.
Range find_pem_end(std::string_view low, std::size_t from) {
  constexpr std::string_view lead = "-----end ";
  for (std::size_t at = low.find(lead, from); at != npos; at = low.find(lead, at + 1)) {
    std::size_t e = pem_marker_end(low, at, lead);
    if (e != npos) return {at, e};
  }
  return {npos, npos};
}

// Key material between BEGIN and END markers, on one line (e.g. JSON with
// "\n" escapes) or across lines (state carried in StreamState).
void scan_pem(std::string_view low, Redactor::StreamState& state, std::vector<Range>& out) {
  std::size_t pos = 0;
  if (state.in_private_key) {
    Range end = find_pem_end(low, 0);
    if (end.first == npos) {
      out.emplace_back(0, low.size());
      return;
    }
    out.emplace_back(0, end.first);
    state.in_private_key = false;
    pos = end.second;
  }
  constexpr std::string_view lead = "-----begin ";
  for (std::size_t at = low.find(lead, pos); at != npos; at = low.find(lead, at + 1)) {
    std::size_t body = pem_marker_end(low, at, lead);
    if (body == npos) continue;
    Range end = find_pem_end(low, body);
    if (end.first == npos) {
      out.emplace_back(body, low.size());
      state.in_private_key = true;
      return;
    }
    out.emplace_back(body, end.first);
    at = end.second - 1;
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

// User regexes run over windows of this size (overlapping by window_overlap)
// to bound the recursion depth of std::regex; a match longer than the
// overlap that straddles a window boundary may be cut short.
constexpr std::size_t regex_window = 4096;
constexpr std::size_t window_overlap = 1024;

void collect_regex_matches(const std::regex& re, std::string_view s, std::vector<Range>& out) {
  for (std::size_t start = 0;; start += regex_window - window_overlap) {
    std::size_t end = std::min(s.size(), start + regex_window);
    auto flags = std::regex_constants::match_default;
    if (start > 0) flags |= std::regex_constants::match_prev_avail;
    if (end < s.size()) flags |= std::regex_constants::match_not_eol;
    const char* base = s.data();
    for (std::cregex_iterator it(base + start, base + end, re, flags), last; it != last; ++it) {
      auto b = static_cast<std::size_t>(it->position(0)) + start;
      out.emplace_back(b, b + static_cast<std::size_t>(it->length(0)));
    }
    if (end == s.size()) break;
  }
}

}  // namespace

std::string required_prefix(std::string_view pattern) {
  // Alternation anywhere could make the prefix optional: give up.
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\') ++i;
    else if (pattern[i] == '|') return "";
  }
  std::string lit;
  std::size_t i = pattern.size() > 0 && pattern[0] == '^' ? 1 : 0;
  while (i < pattern.size()) {
    char c = pattern[i];
    if (c == '\\') {
      // \. \- \/ ... are literal; \d \w \b \1 ... are not.
      if (i + 1 >= pattern.size()) break;
      char n = pattern[i + 1];
      if ((n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z') || (n >= '0' && n <= '9')) break;
      lit += n;
      i += 2;
      continue;
    }
    if (std::strchr(".[]()*+?{}|^$", c) != nullptr) {
      // A quantifier applies to the last literal character: it is not required.
      if ((c == '*' || c == '?' || c == '{') && !lit.empty()) lit.pop_back();
      break;
    }
    lit += c;
    ++i;
  }
  return lit;
}

Redactor::Redactor(const std::vector<std::string>& user_patterns) {
  for (const auto& p : user_patterns) {
    try {
      user_.push_back({std::regex(p, std::regex::ECMAScript | std::regex::optimize), required_prefix(p)});
    } catch (const std::regex_error& e) {
      throw std::runtime_error("logs.redact: invalid regular expression \"" + p + "\": " + e.what());
    }
  }
}

std::string Redactor::redact(std::string_view line, StreamState& state) const {
  std::string low(line);
  for (char& c : low)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');

  std::vector<Range> ranges;
  scan_pem(low, state, ranges);
  scan_authorization(line, low, ranges);
  scan_bearer(line, low, ranges);
  scan_secret_keys(line, low, ranges);
  scan_url_userinfo(line, ranges);
  std::string result = ranges.empty() ? std::string(line) : replace_ranges(line, ranges);

  for (const auto& u : user_) {
    if (!u.required.empty() && result.find(u.required) == std::string::npos) continue;
    ranges.clear();
    collect_regex_matches(u.re, result, ranges);
    if (!ranges.empty()) result = replace_ranges(result, ranges);
  }
  return result;
}

}  // namespace pisec::logs
