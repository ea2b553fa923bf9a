#pragma once
// The clock gate: SNTP (RFC 4330/5905) against several servers, replies
// validated one by one, a majority/intersection of sources chosen, the result
// refused below the clock floor. Decisions are plain functions over plain
// data; the kernel clock sits behind ClockAdapter so tests never touch it.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pisec/config.hpp"
#include "pisec/gates.hpp"

namespace boost::asio {
class io_context;
}

namespace pisec::clock {

using UnixNanos = std::int64_t;  // nanoseconds since 1970-01-01 UTC

inline constexpr std::size_t packet_size = 48;
inline constexpr std::int64_t ntp_to_unix_s = 2208988800;  // 1900-01-01 .. 1970-01-01
inline constexpr std::int64_t floor_horizon_s = 15LL * 366 * 86400;  // accepted span above the floor
// How far a saved floor may lie past the newest floor someone signed (build
// or manifest time). A state file is only ever written by this gate, but one
// bad result must not lock the right time out on every later boot: past this,
// the saved time is neither saved nor trusted until a newer signed manifest
// (or build) vouches for the year. A constant, not a setting: 400 days is a
// year of uptime between manifest updates plus slack, and nobody should need
// to widen how far one boot can push the next boot's floor.
inline constexpr std::int64_t max_saved_ahead_s = 400LL * 86400;

// ---- the kernel clock -------------------------------------------------------

// Thin adapter over CLOCK_REALTIME (like chrony's lcl_* layer). Errors throw
// std::system_error.
class ClockAdapter {
 public:
  virtual ~ClockAdapter() = default;
  virtual UnixNanos realtime_ns() = 0;
  virtual void set_realtime_ns(UnixNanos t) = 0;
};

// The real CLOCK_REALTIME; 64-bit safe on 32-bit ARM (clock_*time64 syscalls).
ClockAdapter& system_clock();

// Raises the clock to floor_unix if it is behind it; never moves it backwards.
// Returns true when the clock was stepped. For on_failure = "continue".
bool raise_clock_to_floor(ClockAdapter& clock, std::int64_t floor_unix);

// ---- the floor ----------------------------------------------------------------

struct Floor {
  std::int64_t unix_s = 0;  // newest of the sources below
  std::string source;       // "build", "state file", "manifest"
  std::string note;         // a state file that was ignored, and why; empty if none
};

// Reads a saved timestamp (decimal unix seconds). nullopt when missing;
// throws std::runtime_error naming the file when it is unreadable or malformed.
std::optional<std::int64_t> read_state_file(const std::string& path);
// Atomic: tmp file, fsync, rename, fsync of the directory. Throws on error.
void write_state_file(const std::string& path, std::int64_t unix_s);

// max(build floor, state file, extra floor). A state file that is malformed,
// beyond build floor + floor_horizon_s, or more than max_saved_ahead_s past
// max(build floor, extra floor) is ignored (fail closed would brick the clock
// for good) and said so in note.
Floor compute_floor(std::int64_t build_floor_unix, const std::string& state_file,
                    std::int64_t extra_floor_unix);

// ---- SNTP packets -------------------------------------------------------------

// A client request: LI 0, VN 4, mode 3; all zero except nonce in the transmit
// timestamp (the real send time stays local, RFC 5905 §15 / timesyncd style).
std::array<std::uint8_t, packet_size> build_request(std::uint64_t nonce);

// Server fields we look at, in wire order.
struct Reply {
  int leap = 0;
  int version = 0;
  int mode = 0;
  int stratum = 0;
  std::uint32_t root_delay = 0;       // NTP short format (16.16 seconds)
  std::uint32_t root_dispersion = 0;  // NTP short format
  std::uint32_t reference_id = 0;
  std::uint64_t origin = 0;    // NTP timestamp format (32.32, era-ambiguous)
  std::uint64_t receive = 0;
  std::uint64_t transmit = 0;
};
std::optional<Reply> parse_reply(std::span<const std::uint8_t> bytes);  // nullopt if < 48 bytes

// NTP timestamp → unix nanoseconds, choosing the 136-year era that puts it
// nearest to floor_unix (so a time just below the floor stays below it).
UnixNanos ntp_to_unix_ns(std::uint64_t ntp, std::int64_t floor_unix);
std::uint64_t unix_ns_to_ntp(UnixNanos t);

// What we knew when we sent, and when the answer came.
struct Exchange {
  std::uint64_t nonce = 0;    // what we put in the transmit timestamp
  UnixNanos t1 = 0;           // CLOCK_REALTIME at send
  std::int64_t rtt_ns = 0;    // CLOCK_MONOTONIC receive − send: a clock step mid-flight cannot fake it
  bool from_server = true;    // reply came from the address/port we asked
};

struct Limits {
  std::int64_t floor_unix = 0;      // replies before it are refused
  double max_root_distance_s = 5.0;
  double max_delay_s = 2.0;         // round trip; the gate uses its request timeout
  double max_server_hold_s = 1.0;   // T3 − T2: real servers answer in microseconds
};
// How far T3 − T2 may exceed our own round trip (a negative delay): timestamp
// granularity and clock rate error, not days.
inline constexpr double delay_tolerance_s = 0.05;

struct Sample {
  std::int64_t offset_ns = 0;  // ((T2−T1)+(T3−T4))/2, T4 = T1 + rtt
  std::int64_t delay_ns = 0;   // (T4−T1)−(T3−T2)
  double root_distance_s = 0;  // root delay/2 + root dispersion
  int stratum = 0;
  double offset_s() const { return static_cast<double>(offset_ns) / 1e9; }
  // Half-width of the interval the true offset lies in: delay/2 + root distance.
  double distance_s() const { return static_cast<double>(delay_ns) / 2e9 + root_distance_s; }
};

struct Verdict {
  std::optional<Sample> sample;  // set iff accepted
  std::string refusal;           // why not, e.g. "stratum 16"
  std::string kiss_code;         // stratum-0 kiss code ("RATE", "DENY", ...)
  // A refusal that an off-path packet could cause (wrong source, origin or
  // size): keep waiting for the real answer rather than trusting it.
  bool spoofable = false;
};

Verdict validate_reply(std::span<const std::uint8_t> bytes, const Exchange& exchange,
                       const Limits& limits);

// ---- choosing among sources ---------------------------------------------------

struct SourceResult {
  std::string server;            // as configured, e.g. "127.0.0.1:123"
  std::optional<Sample> sample;  // a good reply
  std::string refusal;           // otherwise: why ("timeout", "stratum 16", ...)
  std::string address;           // the endpoint asked ("127.0.0.1:123"); empty = unknown, distinct
};

struct Selection {
  bool ok = false;
  std::int64_t offset_ns = 0;         // median of the agreeing sources
  std::vector<std::size_t> agreeing;  // indexes into the results
  std::vector<std::size_t> falsetickers;
  std::size_t good = 0;               // replies that passed validation
  std::size_t distinct_agreeing = 0;  // agreeing sources at different addresses
  std::string reason;                 // why not ok
};

// Marzullo-style intersection of [offset − distance − d/2, offset + distance + d/2]
// with d = max_disagreement_s (so two exact sources agree iff they are within d).
// ok needs ≥ min_sources agreeing at distinct addresses (one server listed
// twice is one source) and a strict majority of the good replies.
Selection select_sources(const std::vector<SourceResult>& results, int min_sources,
                         double max_disagreement_s);

// The one-line gate detail, e.g. "3/3 sources agree, offset +0.012 s, clock stepped".
std::string describe(const std::vector<SourceResult>& results, const Selection& selection,
                     const std::string& action);

// ---- servers and names --------------------------------------------------------

struct ServerName {
  std::string host;  // name or IP literal, without brackets
  std::uint16_t port = 123;
};
// "host", "host:port", "[v6]:port", bare IPv6 literal. Throws std::invalid_argument.
ServerName parse_server(const std::string& text);

// Resolves names with c-ares on the io_context (no glibc NSS, so a static
// binary works on musl). IP literals are answered without a lookup. The
// callback gets the addresses as text (first preferred) or an error message.
class Resolver {
 public:
  using Callback = std::function<void(std::vector<std::string> addresses, std::string error)>;
  // dns_servers: c-ares CSV ("127.0.0.1:5353,[::1]:53"); empty = /etc/resolv.conf.
  explicit Resolver(boost::asio::io_context& io, const std::string& dns_servers = "");
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;
  void resolve(const std::string& host, Callback callback);
  void cancel();  // pending callbacks are dropped, sockets released

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// ---- the gate -----------------------------------------------------------------

struct GateResult {  // what the last run decided, for callers that want more than the detail
  bool passed = false;
  std::int64_t offset_ns = 0;
  bool stepped = false;
  Floor floor;
};

// The clock gate for the daemon's runner. extra_floor_unix: e.g. the manifest's
// signing time (0 = none). The adapter must outlive the gate. When result is
// given, it is filled before done is called.
std::unique_ptr<gates::Gate> make_clock_gate(const config::ClockGate& config,
                                             std::int64_t extra_floor_unix = 0,
                                             ClockAdapter& clock = system_clock(),
                                             std::shared_ptr<GateResult> result = nullptr);

}  // namespace pisec::clock
