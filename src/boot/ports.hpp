#pragma once
// What the daemon's loop (daemon.cpp) needs from the world, as small
// interfaces: chrony's local-clock driver table (lcl_*) is the model. The
// loop decides nothing about firewalls, gates or processes; it calls these.
// The real ones are made in one place (wiring.cpp); tests/unit/test_daemon.cpp
// runs the real loop over fakes.
//
// No clock port: the loop only reads the steady clock for timers and uptime.
// Setting the wall clock is the clock gate's business, behind its own adapter
// (clock::system_clock()), reached through GatesPort.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pisec/boot.hpp"
#include "pisec/config.hpp"
#include "pisec/control.hpp"
#include "pisec/gates.hpp"
#include "pisec/supervisor.hpp"

namespace boost::asio {
class io_context;
}

namespace pisec::boot {

// What the ports may ask of the daemon, on the loop's thread.
class Host {
 public:
  virtual ~Host() = default;
  virtual status::Snapshot snapshot() const = 0;
  virtual void event(const std::string& line) = 0;        // one line for the daemon's log
  virtual void payload_exited(int code, int signal) = 0;  // the payload's own exit status
  virtual void mux_exited(int code, int signal) = 0;      // the mux's
};

// The control socket and the log ring (src/control, src/logs).
class ControlPort {
 public:
  virtual ~ControlPort() = default;
  virtual void start(const config::Config& cfg) = 0;  // throws when the socket cannot be made
  virtual void log(const std::string& line) = 0;
  virtual void stop() = 0;
};

// The ruleset in the kernel (src/firewall).
class FirewallPort {
 public:
  enum class Mode { lockdown, service };
  struct Result {
    bool ok = false;        // the kernel committed it
    bool verified = false;  // and reading it back matched the model
    std::string digest;
    std::string error;
  };
  virtual ~FirewallPort() = default;
  virtual Result apply(const config::Config& cfg, Mode mode) = 0;  // never throws
  // The service ruleset as text: a reload compares old and new.
  virtual std::string text(const config::Config& cfg) = 0;
};

// The boot gates (src/gates), by index in gate_names.
class GatesPort {
 public:
  virtual ~GatesPort() = default;
  virtual std::unique_ptr<gates::Gate> make(const config::Config& cfg, std::size_t index) = 0;
  // on_failure = "continue" still leaves something to do for the clock: it is
  // at least raised to the floor.
  virtual void failed_continue(const config::Config& cfg, std::size_t index) = 0;
};

// A sandboxed process (src/sandbox): the payload, and with [mux] the mux.
class SpawnerPort {
 public:
  virtual ~SpawnerPort() = default;
  virtual pid_t spawn(const config::Config& cfg) = 0;  // throws std::runtime_error
  virtual void signal(int sig) = 0;
  // The spawned pid was reaped with wait_status: works out the process's own
  // exit and calls Host::payload_exited (or Host::mux_exited).
  virtual void reaped(int wait_status) = 0;
  virtual std::int64_t orphans_reaped_inside() const = 0;  // by the sandboxes' inits
};

// /dev/watchdog (src/supervisor).
class HardwareWatchdogPort {
 public:
  virtual ~HardwareWatchdogPort() = default;
  virtual int open(const std::string& device, int timeout_s) = 0;  // the timeout accepted; throws
  virtual void pet() = 0;
  virtual void magic_close() = 0;
  virtual bool is_open() const = 0;
};

// One liveness probe of the payload (src/supervisor).
class ProberPort {
 public:
  using Done = std::function<void(bool ok, const std::string& why)>;
  virtual ~ProberPort() = default;
  virtual void probe(boost::asio::io_context& io, const supervisor::ProbeTarget& target,
                     std::chrono::milliseconds timeout, Done done) = 0;
};

// Dropping root once the service ruleset holds (src/supervisor).
class PrivilegesPort {
 public:
  virtual ~PrivilegesPort() = default;
  virtual std::string drop() = 0;  // a line for the log; throws naming the step
};

// One attestation round (src/boot/attester.cpp: `pisecd attest --json` as a
// child process, so the TLS exchange with an outside server never runs in the
// daemon, a hung verifier costs a timer, and OpenSSL's memory goes with it).
class AttesterPort {
 public:
  struct Answer {
    Verdict verdict = Verdict::no_answer;
    std::string verifier_id;
    std::vector<std::string> differences;
    std::string detail;  // why there was no answer
  };
  // What the daemon knows and a file cannot tell: the ruleset the kernel
  // holds (read back), and how each gate ended.
  struct Facts {
    std::string ruleset_digest;  // "sha256:<hex>", "" when none is applied
    std::vector<std::pair<std::string, std::string>> gates;  // name, status
  };
  using Done = std::function<void(Answer)>;
  virtual ~AttesterPort() = default;
  // Starts a round; false (and `done` never called) when one is running.
  // Otherwise `done` is called exactly once, on the loop.
  virtual bool start(const config::Config& cfg, const Facts& facts, Done done) = 0;
  // A child the daemon reaped: true when it was the round's process.
  virtual bool reaped(pid_t pid, int wait_status) = 0;
  virtual void cancel() = 0;  // kills a running round; its `done` is not called
};

// The pure halves of the real attester, for the unit tests: the child's argv
// (argv[0] "pisecd"; the binary run is /proc/self/exe), and its answer from
// how it exited and what it printed. Anything but a clean verdict is
// no_answer, and a verdict printed by a process that did not exit with its
// code is not believed.
std::vector<std::string> attest_argv(const std::string& config_path, const AttesterPort::Facts& facts);
AttesterPort::Answer attest_answer(int wait_status, std::string_view output);
std::unique_ptr<AttesterPort> real_attester(boost::asio::io_context& io);

struct Ports {
  std::unique_ptr<ControlPort> control;
  std::unique_ptr<FirewallPort> firewall;
  std::unique_ptr<GatesPort> gates;
  std::unique_ptr<SpawnerPort> spawner;
  std::unique_ptr<SpawnerPort> mux;  // used only with [mux] enabled
  std::unique_ptr<HardwareWatchdogPort> watchdog;
  std::unique_ptr<ProberPort> prober;
  std::unique_ptr<PrivilegesPort> privileges;
  std::unique_ptr<AttesterPort> attester;  // null: every round has no answer
};

// Called once, after the loop's io_context exists; the ports may keep io and
// host (both outlive them) but must not call host before the loop runs.
using MakePorts = std::function<Ports(boost::asio::io_context& io, Host& host, const config::Config& cfg)>;

// The daemon over the given ports: runs in the foreground until SIGTERM/SIGINT
// (or the machine finishes); returns the process exit code.
int run_daemon(config::Config&& cfg, const MakePorts& make_ports);

}  // namespace pisec::boot
