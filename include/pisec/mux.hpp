#pragma once
// The single public port's mux: `pisecd mux`, a separate unprivileged process
// that listens where the firewall redirects the public port, passes every
// request to the payload (mux.upstream) and answers /debug/* itself, only to a
// valid bearer token. It reads status and logs from the daemon over a
// read-only socket and can change nothing.
//
// The pure parts (routing, token check, failure limiter, metrics text) are
// here so they are unit-tested and fuzzed without sockets; run() is the loop.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pisec/config.hpp"
#include "pisec/control.hpp"

namespace pisec::mux {

// ---- routing ---------------------------------------------------------------

enum class Route { app, debug_status, debug_logs, debug_metrics, debug_unknown };

struct LogsQuery {
  std::size_t n = 100;
  bool follow = false;
};

struct Request {
  Route route = Route::app;
  LogsQuery logs;     // for debug_logs
  std::string error;  // non-empty: a /debug/ request whose query is invalid (400)
};

// The request target (origin form, "/path?query") to its route. Anything
// under "/debug/" (and "/debug" itself) is the mux's; the rest is the app's.
// Percent-encoded or dot-segment paths that would name /debug/ are the mux's
// too, so no spelling reaches the app as a debug request or the reverse.
Request classify(std::string_view target);
constexpr std::size_t max_logs_n = 100000;

// ---- authentication --------------------------------------------------------

using Digest = std::array<std::uint8_t, 32>;

// mux.token_sha256 (64 lower-case hex digits) to bytes; nullopt if malformed.
std::optional<Digest> parse_token_digest(std::string_view hex);
// Whether an Authorization header value is "Bearer <token>" with
// sha256(token) == expected. The token is hashed first and the digests are
// compared in constant time, so neither length nor content leaks in timing.
bool bearer_matches(std::string_view authorization, const Digest& expected);

// Per-source failed authentications in a sliding window; a source at the
// limit is refused (429) until its oldest failure leaves the window. The
// table is bounded: past max_sources the source seen longest ago is dropped.
class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  FailureLimiter(std::size_t limit, std::chrono::seconds window, std::size_t max_sources = 4096);
  bool blocked(const std::string& source, Clock::time_point now);
  void failed(const std::string& source, Clock::time_point now);
  std::size_t sources() const { return table_.size(); }

 private:
  void expire(std::deque<Clock::time_point>& times, Clock::time_point now) const;
  std::size_t limit_;
  std::chrono::seconds window_;
  std::size_t max_sources_;
  struct Entry {
    std::deque<Clock::time_point> failures;
    Clock::time_point last_seen;
  };
  std::unordered_map<std::string, Entry> table_;
};

// ---- metrics ---------------------------------------------------------------

// The mux's own counters.
struct Counters {
  // requests by class ("app", "debug") and status code
  std::map<std::pair<std::string, int>, std::uint64_t> requests;
  std::uint64_t open_connections = 0;
  std::uint64_t connections_total = 0;
  std::uint64_t connections_refused = 0;  // over max_connections
  std::uint64_t auth_failures = 0;
};

// What the daemon adds for /debug/metrics beyond the status snapshot.
struct DaemonMetrics {
  std::uint64_t ring_bytes_used = 0;
  std::uint64_t ring_bytes_limit = 0;
  std::uint64_t lines_dropped = 0;
  std::vector<control::ControlHandler::RuleCounter> rules;  // the firewall's counted rules
};

// Prometheus text exposition format 0.0.4: names prefixed pisecd_, base
// units in the name, counters ending _total, HELP and TYPE for every family.
std::string render_metrics(const status::Snapshot& snapshot, const DaemonMetrics& daemon,
                           const Counters& counters);

// ---- the process -------------------------------------------------------------

struct Endpoint {
  enum class Kind { tcp, unix_socket } kind = Kind::tcp;
  std::string host;  // tcp: an IP address ("localhost" = 127.0.0.1)
  std::uint16_t port = 0;
  std::string path;  // unix_socket
};
// "127.0.0.1:8081", "[::1]:8081", "0.0.0.0:8080" or "unix:/run/app.sock".
// Throws std::invalid_argument with the reason.
Endpoint parse_endpoint(std::string_view text);

struct Options {
  Endpoint listen;
  Endpoint upstream;
  std::string control_socket;  // the daemon's read-only channel
  Digest token{};
  std::size_t max_connections = 1024;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds idle_timeout{75000};
  std::size_t max_header_bytes = 16384;
  std::size_t auth_failure_limit = 10;
  std::chrono::seconds auth_failure_window{60};

  // Throws std::invalid_argument naming the key.
  static Options from_config(const config::Mux& mux);
};

// The argv tail that gives `pisecd mux` these settings (how the daemon starts
// it: the sandbox need not read the configuration file), and its reader.
std::vector<std::string> to_args(const config::Mux& mux);
// Applies "--key VALUE" pairs over `mux`; throws std::invalid_argument naming
// the flag. Unknown flags are errors.
void apply_args(const std::vector<std::string>& args, config::Mux& mux);

// Runs until SIGTERM/SIGINT; returns the exit code. One line per request on
// stderr: request id, source, method, target (printable), status.
int run(const Options& options);

}  // namespace pisec::mux
