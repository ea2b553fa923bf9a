#pragma once
// The one place where the daemon's state machine meets the modules that do
// the work: firewall, gates, sandbox, logs and the control socket. The state
// machine (daemon.cpp) decides; this file only connects.
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "pisec/config.hpp"
#include "pisec/gates.hpp"
#include "pisec/sandbox.hpp"
#include "pisec/control.hpp"

namespace boost::asio {
class io_context;
}
namespace pisec::clock {
struct GateResult;
}
namespace pisec::logs {
class Logger;
}
namespace pisec::control {
class Server;
}

namespace pisec::daemon {

class Wiring {
 public:
  // What the modules may ask of the daemon.
  struct Host {
    virtual ~Host() = default;
    virtual status::Snapshot snapshot() const = 0;
    virtual void event(const std::string& line) = 0;
    virtual void payload_exited(int code, int signal) = 0;
  };

  enum class Mode { lockdown, service };
  struct FirewallResult {
    bool ok = false;  // the kernel committed it
    bool verified = false;  // and reading it back matched the model
    std::string digest;
    std::string error;
  };

  Wiring(boost::asio::io_context& io, Host& host, const config::Config& cfg);
  ~Wiring();
  Wiring(const Wiring&) = delete;
  Wiring& operator=(const Wiring&) = delete;

  void start_control(const config::Config& cfg);  // throws on failure
  void daemon_log(const std::string& line);

  FirewallResult apply_firewall(const config::Config& cfg, Mode mode);
  static std::string firewall_text(const config::Config& cfg);

  std::unique_ptr<gates::Gate> make_gate(const config::Config& cfg, std::size_t index);
  // on_failure = "continue" still leaves something to do for the clock: it is
  // at least raised to the floor.
  void gate_failed_continue(const config::Config& cfg, std::size_t index);

  pid_t spawn_payload(const config::Config& cfg);  // throws std::runtime_error
  void signal_payload(int sig);
  // bwrap was reaped: works out the payload's own exit and calls host.payload_exited.
  void payload_reaped(int wait_status);
  std::int64_t orphans_reaped_in_sandboxes() const;
  void stop();

 private:
  struct PayloadRun;
  struct ControlBridge;
  enum class Output { out, err };

  void read_output(const std::shared_ptr<PayloadRun>& run, Output which);
  void read_status(const std::shared_ptr<PayloadRun>& run);
  void read_report(const std::shared_ptr<PayloadRun>& run);
  static void feed_report(PayloadRun& run, std::string_view bytes);
  void status_events(PayloadRun& run, const std::vector<sandbox::StatusEvent>& events);
  void drain(PayloadRun& run);

  boost::asio::io_context& io_;
  Host& host_;
  std::unique_ptr<logs::Logger> logger_;
  std::unique_ptr<ControlBridge> bridge_;
  std::unique_ptr<control::Server> control_;
  std::shared_ptr<clock::GateResult> clock_result_;
  std::shared_ptr<PayloadRun> payload_;
  std::int64_t reaped_in_finished_ = 0;
};

}  // namespace pisec::daemon
