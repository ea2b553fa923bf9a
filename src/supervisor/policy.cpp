#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <string_view>
#include <stdexcept>

#include "pisec/supervisor.hpp"

namespace pisec::supervisor {

namespace {
std::string describe(const Exit& e) {
  return e.signal ? "killed by signal " + std::to_string(e.signal)
                  : "exited with code " + std::to_string(e.code);
}
}  // namespace

Decision RestartPolicy::on_exit(const Exit& exit, std::int64_t now_ms, std::int64_t uptime_ms,
                                double jitter01) {
  const std::string what = describe(exit);
  switch (cfg_.restart) {
    case config::RestartPolicy::never:
      return {Action::stop, 0, what + "; restart = never"};
    case config::RestartPolicy::on_failure:
      if (!exit.failed()) return {Action::stop, 0, what + "; restart = on-failure"};
      break;
    case config::RestartPolicy::always:
      break;
  }
  return count_and_schedule(now_ms, uptime_ms, jitter01, what);
}

Decision RestartPolicy::on_forced_restart(std::int64_t now_ms, std::int64_t uptime_ms,
                                          double jitter01, const std::string& why) {
  return count_and_schedule(now_ms, uptime_ms, jitter01, why);
}

Decision RestartPolicy::count_and_schedule(std::int64_t now_ms, std::int64_t uptime_ms,
                                           double jitter01, std::string reason) {
  // A run that lasted long enough proves the payload healthy: start over.
  if (uptime_ms >= std::int64_t{cfg_.healthy_after_s} * 1000) {
    next_backoff_ms_ = -1;
    recent_.clear();
  }
  const std::int64_t window_ms = std::int64_t{cfg_.burst_window_s} * 1000;
  while (!recent_.empty() && now_ms - recent_.front() >= window_ms) recent_.pop_front();
  recent_.push_back(now_ms);
  if (static_cast<int>(recent_.size()) >= cfg_.burst) {
    return {Action::quarantine, 0,
            reason + "; " + std::to_string(recent_.size()) + " exits within " +
                std::to_string(cfg_.burst_window_s) + " s (burst " + std::to_string(cfg_.burst) +
                "): quarantined"};
  }
  const std::int64_t base = next_backoff_ms_ < 0 ? cfg_.backoff_initial_ms : next_backoff_ms_;
  // Up to +25% jitter so a fleet does not restart in lockstep; never past the cap.
  const auto jitter = static_cast<std::int64_t>(std::floor(static_cast<double>(base) * 0.25 * jitter01));
  const std::int64_t delay = std::min<std::int64_t>(base + jitter, cfg_.backoff_max_ms);
  next_backoff_ms_ = std::min<std::int64_t>(std::max<std::int64_t>(base * 2, 1), cfg_.backoff_max_ms);
  if (cfg_.backoff_initial_ms == 0 && base == 0) next_backoff_ms_ = 0;
  return {Action::restart, delay, reason + "; restarting in " + std::to_string(delay) + " ms"};
}

ProbeTarget parse_probe(const std::string& url) {
  ProbeTarget t;
  if (url.empty()) return t;
  // (http|tcp)://HOST:PORT[/PATH]: HOST without '/', ':' or white space,
  // PORT 1-5 digits, PATH without white space; no PATH for tcp.
  const auto bad = [&] {
    return std::invalid_argument("must be \"http://HOST:PORT/PATH\" or \"tcp://HOST:PORT\", got \"" + url + "\"");
  };
  const auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    t.kind = ProbeTarget::Kind::http;
    rest.remove_prefix(7);
  } else if (rest.starts_with("tcp://")) {
    t.kind = ProbeTarget::Kind::tcp;
    rest.remove_prefix(6);
  } else {
    throw bad();
  }
  const auto host_end = std::find_if(rest.begin(), rest.end(), [&](char c) { return c == '/' || c == ':' || space(c); });
  if (host_end == rest.begin() || host_end == rest.end() || *host_end != ':') throw bad();
  t.host.assign(rest.begin(), host_end);
  rest.remove_prefix(static_cast<std::size_t>(host_end - rest.begin()) + 1);
  const std::string_view digits = rest.substr(0, rest.find('/'));
  const std::string_view path = rest.substr(digits.size());
  if (digits.empty() || digits.size() > 5 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::any_of(path.begin(), path.end(), space) || (t.kind == ProbeTarget::Kind::tcp && !path.empty()))
    throw bad();
  // The probe connects to a literal address: DNS is neither trusted nor
  // reachable from every ruleset.
  in_addr ignored{};
  if (t.host != "localhost" && inet_pton(AF_INET, t.host.c_str(), &ignored) != 1)
    throw std::invalid_argument("host must be an IPv4 address or \"localhost\" (the probe uses no DNS), got \"" +
                                t.host + "\"");
  const int port = std::stoi(std::string(digits));
  if (port < 1 || port > 65535)
    throw std::invalid_argument("port must be 1-65535, got " + std::string(digits));
  t.port = static_cast<std::uint16_t>(port);
  if (!path.empty()) t.path = path;
  return t;
}

}  // namespace pisec::supervisor
