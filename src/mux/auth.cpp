// Bearer tokens against mux.token_sha256, and the per-source failure limiter.
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>

#include "pisec/formats.hpp"
#include "pisec/mux.hpp"

namespace pisec::mux {

std::optional<Digest> parse_token_digest(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Digest d{};
  for (std::size_t i = 0; i < 32; ++i) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return d;
}

bool bearer_matches(std::string_view authorization, const Digest& expected) {
  // RFC 6750: "Bearer" (any case), one or more spaces, the token.
  constexpr std::string_view scheme = "bearer";
  bool scheme_ok = authorization.size() > scheme.size() &&
                   (authorization[scheme.size()] == ' ' || authorization[scheme.size()] == '\t');
  for (std::size_t i = 0; scheme_ok && i < scheme.size(); ++i)
    scheme_ok = std::tolower(static_cast<unsigned char>(authorization[i])) == scheme[i];
  std::string_view token;
  if (scheme_ok) {
    token = authorization.substr(scheme.size());
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  }
  // Hash whatever was presented, so the work done does not depend on it.
  const crypto::Sha256 presented = crypto::sha256(token);
  const bool same = CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) == 0;
  return scheme_ok && !token.empty() && same;
}

FailureLimiter::FailureLimiter(std::size_t limit, std::chrono::seconds window, std::size_t max_sources)
    : limit_(std::max<std::size_t>(limit, 1)), window_(window), max_sources_(std::max<std::size_t>(max_sources, 1)) {}

void FailureLimiter::expire(std::deque<Clock::time_point>& times, Clock::time_point now) const {
  while (!times.empty() && now - times.front() >= window_) times.pop_front();
}

bool FailureLimiter::blocked(const std::string& source, Clock::time_point now) {
  auto it = table_.find(source);
  if (it == table_.end()) return false;
  expire(it->second.failures, now);
  if (it->second.failures.empty()) {
    table_.erase(it);
    return false;
  }
  return it->second.failures.size() >= limit_;
}

void FailureLimiter::failed(const std::string& source, Clock::time_point now) {
  auto it = table_.find(source);
  if (it == table_.end()) {
    if (table_.size() >= max_sources_) {
      // Drop the source seen longest ago: a flood of sources costs memory
      // bounded by max_sources, and forgets the quietest first.
      auto oldest = std::min_element(table_.begin(), table_.end(), [](const auto& a, const auto& b) {
        return a.second.last_seen < b.second.last_seen;
      });
      table_.erase(oldest);
    }
    it = table_.emplace(source, Entry{}).first;
  }
  auto& e = it->second;
  expire(e.failures, now);
  e.failures.push_back(now);
  // Only the last `limit` failures matter for the verdict.
  while (e.failures.size() > limit_) e.failures.pop_front();
  e.last_seen = now;
}

}  // namespace pisec::mux
