#pragma once
// The watchdog's decisions as plain functions over plain data: when to
// restart the payload, how long to wait, when to give up (quarantine), and
// when a failing liveness probe means the payload is hung.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "pisec/config.hpp"
#include "pisec/util.hpp"

namespace boost::asio {
class io_context;
}

namespace pisec::supervisor {

struct Exit {
  int code = 0;    // exit status when it exited
  int signal = 0;  // terminating signal, 0 if it exited
  bool failed() const { return code != 0 || signal != 0; }
};

enum class Action { restart, stop, quarantine };

struct Decision {
  Action action = Action::stop;
  std::int64_t delay_ms = 0;  // for restart
  std::string reason;
};

// Restart policy with exponential backoff, jitter and a burst limit.
// Every exit that would lead to a restart counts towards the burst; `burst`
// of them inside `burst_window_s` quarantine the payload. A payload that
// stayed up for `healthy_after_s` starts over with the initial backoff.
class RestartPolicy {
 public:
  explicit RestartPolicy(const config::Watchdog& cfg) : cfg_(cfg) {}

  // now_ms: a monotonic clock; uptime_ms: how long this run of the payload
  // lasted; jitter01: uniform in [0, 1) (injected so tests are exact).
  Decision on_exit(const Exit& exit, std::int64_t now_ms, std::int64_t uptime_ms,
                   double jitter01);

  // A restart the supervisor chose itself (hung probe, config reload).
  Decision on_forced_restart(std::int64_t now_ms, std::int64_t uptime_ms, double jitter01,
                             const std::string& why);

  void update(const config::Watchdog& cfg) { cfg_ = cfg; }
  std::int64_t next_backoff_ms() const { return next_backoff_ms_; }

 private:
  Decision count_and_schedule(std::int64_t now_ms, std::int64_t uptime_ms, double jitter01,
                              std::string reason);

  config::Watchdog cfg_;
  std::deque<std::int64_t> recent_;  // times of counted exits inside the window
  std::int64_t next_backoff_ms_ = -1;  // -1: use the initial backoff
};

// Consecutive probe failures; true from on_result means "restart it now".
class ProbeTracker {
 public:
  explicit ProbeTracker(int failures_needed) : needed_(failures_needed) {}
  bool on_result(bool ok) {
    consecutive_ = ok ? 0 : consecutive_ + 1;
    return consecutive_ >= needed_;
  }
  void reset() { consecutive_ = 0; }
  int consecutive_failures() const { return consecutive_; }

 private:
  int needed_;
  int consecutive_ = 0;
};

// Parses "http://host:port/path" or "tcp://host:port"; "" is Kind::none. The
// host is an IPv4 address or "localhost" (the probe uses no DNS), the port
// 1-65535. Throws std::invalid_argument with the reason: the config loader
// calls it, so a loaded probe always parses the same way at run time.
struct ProbeTarget {
  enum class Kind { none, http, tcp } kind = Kind::none;
  std::string host;
  std::uint16_t port = 0;
  std::string path = "/";
};
ProbeTarget parse_probe(const std::string& url);

// The prober port: one HTTP GET (2xx/3xx passes) or TCP connect against the
// target within timeout, on the io_context; done(ok, why) is called once, on
// its thread. The daemon keeps the schedule and the verdict (ProbeTracker).
void probe_once(boost::asio::io_context& io, const ProbeTarget& target, std::chrono::milliseconds timeout,
                std::function<void(bool ok, const std::string& why)> done);

// ---- hardware watchdog --------------------------------------------------
// Thin adapter over a Linux watchdog device (/dev/watchdog). The supervisor
// pets it only while its own loop is healthy; an orderly stop magic-closes it.
class HardwareWatchdog {
 public:
  HardwareWatchdog() = default;
  ~HardwareWatchdog();
  HardwareWatchdog(const HardwareWatchdog&) = delete;
  HardwareWatchdog& operator=(const HardwareWatchdog&) = delete;

  // Opens the device and sets its timeout; returns the timeout the driver
  // accepted (it may round), or throws std::system_error naming the device.
  int open(const std::string& device, int timeout_s);
  void pet();
  // Writes the magic 'V' so the driver stops the timer, then closes.
  void magic_close();
  bool is_open() const { return static_cast<bool>(fd_); }

 private:
  util::UniqueFd fd_;
  std::string device_;
};

// ---- privileges --------------------------------------------------------
// What the daemon keeps of root once set-up is done, and dropping the rest.
// Capabilities the running supervisor still needs after the gates:
//   NET_ADMIN   re-apply the ruleset on SIGHUP or fall back to lockdown
//   SETUID, SETGID  become the payload's user before exec'ing bwrap
//   KILL        signal the payload, which runs under another uid
//   CHOWN, FOWNER   recreate the control socket for an admin group
//   SETPCAP     drop further from the bounding set
// Everything else (SYS_ADMIN, SYS_TIME, SYS_MODULE, DAC_OVERRIDE, ...) is
// dropped from the bounding, permitted, effective and inheritable sets.
// Drops every other capability and sets no_new_privs. Returns a short
// description for the log, or throws std::runtime_error naming the step.
// Capabilities the running supervisor still needs after the gates:
//   NET_ADMIN   re-apply the ruleset on SIGHUP or fall back to lockdown
//   SETUID, SETGID  become the payload's user before exec'ing bwrap
//   KILL        signal the payload, which runs under another uid
//   CHOWN, FOWNER   recreate the control socket for an admin group
//   SETPCAP     drop further from the bounding set
// Everything else (SYS_ADMIN, SYS_TIME, SYS_MODULE, DAC_OVERRIDE, ...) is
// dropped from the bounding, permitted, effective and inheritable sets.
std::vector<std::string> kept_capabilities();

// Drops every other capability and sets no_new_privs. Returns a short
// description for the log, or throws std::runtime_error naming the step.
std::string drop_privileges();
// Empties this process's permitted, effective and inheritable sets (for a
// helper that needs none, e.g. `pisecd attest` run by the daemon). Throws.
void drop_all_capabilities();

}  // namespace pisec::supervisor
