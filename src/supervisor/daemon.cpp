// The daemon: one Boost.Asio loop that owns the boot sequence and the payload.
//
//   lockdown ruleset → gates in order → service ruleset → payload in bwrap
//
// Signals arrive through the loop; timers drive backoff, probes and the
// hardware watchdog. With no probe and no hardware watchdog configured the
// loop makes no wakeups at all while the payload runs.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <random>

#include "pisec/config.hpp"
#include "pisec/daemon.hpp"
#include "pisec/gates.hpp"
#include "pisec/hw_watchdog.hpp"
#include "pisec/privileges.hpp"
#include "pisec/status.hpp"
#include "pisec/supervisor.hpp"
#include "pisec/version.hpp"
#include "wiring.hpp"

namespace pisec::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;
using supervisor::Action;

namespace {

const char* gate_names[] = {"entropy", "clock", "integrity", "arch"};

const config::GateCommon& gate_config(const config::Config& c, std::size_t i) {
  switch (i) {
    case 0: return c.gates.entropy;
    case 1: return c.gates.clock;
    case 2: return c.gates.integrity;
    default: return c.gates.arch;
  }
}


}  // namespace

class Daemon : public Wiring::Host {
 public:
  explicit Daemon(config::Config cfg)
      : cfg_(std::move(cfg)),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        restart_timer_(io_),
        stop_timer_(io_),
        gate_timer_(io_),
        probe_timer_(io_),
        hw_timer_(io_),
        policy_(cfg_.watchdog),
        probe_tracker_(cfg_.watchdog.probe_failures),
        wiring_(io_, *this, cfg_),
        rng_(std::random_device{}()) {
    signals_.add(SIGCHLD);  // the constructor takes at most three
    for (auto* name : gate_names) snapshot_.gates.push_back({name, "pending", "", 0});
    snapshot_.version = std::string(build::version) + " (" + build::git_revision + ")";
  }

  int run() {
    started_ = Clock::now();
    // Orphans of the payload are re-parented to us, not to init: reap and count them.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
      event("warning: PR_SET_CHILD_SUBREAPER failed; orphans go to init");
    wait_for_signal();
    try {
      wiring_.start_control(cfg_);
    } catch (const std::exception& e) {
      std::cerr << "pisecd: control socket: " << e.what() << '\n';
      return 1;
    }
    start_hardware_watchdog();
    asio::post(io_, [this] { begin(); });
    io_.run();
    return exit_code_;
  }

  // --- Wiring::Host: what the control socket and the modules see ---------
  status::Snapshot snapshot() const override {
    status::Snapshot s = snapshot_;
    s.uptime_ms = ms_since(started_);
    s.payload.pid = pid_;
    s.reaped_orphans += wiring_.orphans_reaped_in_sandboxes();
    return s;
  }

  void event(const std::string& line) override {
    wiring_.daemon_log(line);
  }

  void payload_exited(int code, int signal) override { on_payload_exit(code, signal); }

 private:
  static std::int64_t ms_since(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
  }
  std::int64_t now_ms() const { return ms_since(started_); }

  // --- boot sequence -----------------------------------------------------
  void begin() {
    set_state("lockdown");
    if (cfg_.firewall.enabled) {
      auto r = wiring_.apply_firewall(cfg_, Wiring::Mode::lockdown);
      record_firewall(r, "lockdown");
      if (!r.ok) {
        // Without even the lockdown ruleset the device is as exposed as it
        // was before we started: never go further.
        return quarantine("lockdown ruleset failed: " + r.error);
      }
    } else {
      event("firewall disabled in config: not touching nftables");
    }
    set_state("gating");
    next_gate_ = 0;
    run_next_gate();
  }

  void run_next_gate() {
    if (next_gate_ >= std::size(gate_names)) return gates_passed();
    const std::size_t i = next_gate_;
    auto& st = snapshot_.gates[i];
    const auto& common = gate_config(cfg_, i);
    if (!common.enabled) {
      st.status = "skipped";
      st.detail = "disabled in config";
      console_gate(st, "skip");
      ++next_gate_;
      return run_next_gate();
    }
    gate_ = wiring_.make_gate(cfg_, i);
    st.status = "running";
    gate_started_ = Clock::now();
    const std::uint64_t token = ++gate_token_;
    gate_timer_.expires_after(std::chrono::seconds(common.timeout_s));
    gate_timer_.async_wait([this, token, i](boost::system::error_code ec) {
      if (ec || token != gate_token_) return;
      if (gate_) gate_->cancel();
      gate_finished(i, {false, "timed out after " + std::to_string(gate_config(cfg_, i).timeout_s) + " s"});
    });
    gate_->start(io_, [this, token, i](gates::Outcome o) {
      if (token != gate_token_) return;  // already timed out
      gate_finished(i, std::move(o));
    });
  }

  void gate_finished(std::size_t i, gates::Outcome o) {
    ++gate_token_;  // invalidates the other completion path
    gate_timer_.cancel();
    // Keep the gate object alive until this handler returns: it may be the caller.
    asio::post(io_, [g = std::shared_ptr<gates::Gate>(std::move(gate_))] {});
    auto& st = snapshot_.gates[i];
    st.duration_ms = ms_since(gate_started_);
    st.status = o.passed ? "passed" : "failed";
    st.detail = o.detail;
    const auto& common = gate_config(cfg_, i);
    console_gate(st, o.passed ? "ok" : (common.on_failure == config::OnFailure::quarantine ? "!!" : "warn"));
    if (!o.passed) {
      if (common.on_failure == config::OnFailure::quarantine)
        return quarantine("gate " + st.name + " failed: " + st.detail);
      degraded_ = true;
      wiring_.gate_failed_continue(cfg_, i);
    }
    ++next_gate_;
    run_next_gate();
  }

  void gates_passed() {
    if (cfg_.firewall.enabled) {
      auto r = wiring_.apply_firewall(cfg_, Wiring::Mode::service);
      if (!r.ok || !r.verified) {
        event("service ruleset " + std::string(r.ok ? "did not verify" : "failed") + ": " + r.error);
        // Fail closed: back to lockdown before reporting.
        auto back = wiring_.apply_firewall(cfg_, Wiring::Mode::lockdown);
        record_firewall(back, "lockdown");
        return quarantine("service ruleset not applied: " + r.error);
      }
      record_firewall(r, "service");
    }
    try {
      event(supervisor::drop_privileges());
    } catch (const std::exception& e) {
      return quarantine(std::string("cannot drop privileges: ") + e.what());
    }
    set_state(degraded_ ? "degraded" : "running");
    start_payload();
  }

  void record_firewall(const Wiring::FirewallResult& r, const char* mode) {
    if (r.ok) {
      snapshot_.firewall = {mode, r.verified, r.digest};
      event(std::string("firewall: ") + mode + " ruleset applied" + (r.verified ? " and verified" : "") +
            (r.digest.empty() ? "" : " (" + r.digest + ")"));
    } else {
      event(std::string("firewall: ") + mode + " ruleset failed: " + r.error);
    }
  }

  void quarantine(const std::string& why) {
    set_state("quarantined");
    event("quarantined: " + why);
  }

  void set_state(const std::string& s) {
    if (snapshot_.state == "stopping") return;
    snapshot_.state = s;
  }

  void console_gate(const status::Gate& g, const char* mark) {
    // OpenRC style: one line per gate, result at the end.
    std::cout << " * gate " << g.name << ": " << g.status;
    if (!g.detail.empty()) std::cout << " (" << g.detail << ")";
    std::cout << " [ " << mark << " ]" << std::endl;
    event("gate " + g.name + ": " + g.status + (g.detail.empty() ? "" : ": " + g.detail));
  }

  // --- payload -----------------------------------------------------------
  void start_payload() {
    if (stopping_) return;
    snapshot_.payload.state = "starting";
    try {
      pid_ = wiring_.spawn_payload(cfg_);
    } catch (const std::exception& e) {
      event(std::string("payload: cannot start: ") + e.what());
      pid_ = 0;
      payload_started_ = Clock::now();
      return after_exit(127, 0);
    }
    payload_started_ = Clock::now();
    snapshot_.payload.state = "running";
    if (snapshot_.state == "degraded" && !degraded_) set_state("running");
    event("payload: started, pid " + std::to_string(pid_));
    probe_tracker_.reset();
    schedule_probe();
  }

  void on_payload_exit(int code, int signal) {
    pid_ = 0;
    after_exit(code, signal);
  }

  void after_exit(int code, int signal) {
    probe_timer_.cancel();
    stop_timer_.cancel();  // its SIGKILL was meant for the run that just ended
    snapshot_.payload.last_exit = {code, signal, now_ms()};
    if (stopping_) {
      snapshot_.payload.state = "stopped";
      if (on_stopped_) std::exchange(on_stopped_, {})();
      return;
    }
    if (restart_pending_) {  // a restart we asked for (probe, reload)
      restart_pending_ = false;
      return schedule_restart(forced_decision_);
    }
    const std::int64_t uptime = ms_since(payload_started_);
    auto d = policy_.on_exit({code, signal}, now_ms(), uptime, jitter());
    event("payload: " + d.reason);
    schedule_restart(d);
  }

  void schedule_restart(const supervisor::Decision& d) {
    switch (d.action) {
      case Action::stop:
        snapshot_.payload.state = "stopped";
        set_state("degraded");
        return;
      case Action::quarantine:
        snapshot_.payload.state = "quarantined";
        set_state("quarantined");
        return;
      case Action::restart:
        break;
    }
    snapshot_.payload.state = "backoff";
    set_state("degraded");
    restart_timer_.expires_after(std::chrono::milliseconds(d.delay_ms));
    restart_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      ++snapshot_.payload.restarts;
      start_payload();
    });
  }

  // Asks the payload to stop: SIGTERM inside the sandbox, SIGKILL after the grace period.
  void stop_payload(std::function<void()> then) {
    restart_timer_.cancel();
    probe_timer_.cancel();
    if (pid_ == 0) {
      if (then) then();
      return;
    }
    on_stopped_ = std::move(then);
    wiring_.signal_payload(SIGTERM);
    stop_timer_.expires_after(std::chrono::milliseconds(cfg_.payload.stop_grace_ms));
    // Bound to this run: after a forced restart pid_ is the next run's, which
    // must not get the SIGKILL (cancel() cannot recall an already-queued handler).
    stop_timer_.async_wait([this, run = pid_](boost::system::error_code ec) {
      if (ec || pid_ == 0 || pid_ != run) return;
      event("payload: still running after " + std::to_string(cfg_.payload.stop_grace_ms) +
            " ms, sending SIGKILL");
      wiring_.signal_payload(SIGKILL);
    });
  }

  void restart_payload(const std::string& why) {
    if (pid_ == 0) return;
    restart_pending_ = true;
    forced_decision_ = policy_.on_forced_restart(now_ms(), ms_since(payload_started_), jitter(), why);
    event("payload: " + forced_decision_.reason);
    stop_payload({});
  }

  double jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  // --- liveness probe ----------------------------------------------------
  void schedule_probe() {
    auto target = supervisor::parse_probe(cfg_.watchdog.probe);
    if (target.kind == supervisor::ProbeTarget::Kind::none) return;
    probe_timer_.expires_after(std::chrono::milliseconds(cfg_.watchdog.probe_interval_ms));
    probe_timer_.async_wait([this, target](boost::system::error_code ec) {
      if (ec || pid_ == 0) return;
      run_probe(target);
    });
  }

  void run_probe(const supervisor::ProbeTarget& target) {
    auto stream = std::make_shared<beast::tcp_stream>(io_);
    stream->expires_after(std::chrono::milliseconds(cfg_.watchdog.probe_timeout_ms));
    auto token = ++probe_token_;
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(target.host == "localhost" ? "127.0.0.1" : target.host, ec);
    if (ec) return probe_done(token, false, "probe host must be an IP address: " + target.host);
    asio::ip::tcp::endpoint ep(addr, target.port);
    stream->async_connect(ep, [this, stream, target, token](boost::system::error_code cec) {
      if (cec) return probe_done(token, false, "connect: " + cec.message());
      if (target.kind == supervisor::ProbeTarget::Kind::tcp) return probe_done(token, true, "");
      auto req = std::make_shared<beast::http::request<beast::http::empty_body>>(
          beast::http::verb::get, target.path, 11);
      req->set(beast::http::field::host, target.host);
      req->set(beast::http::field::user_agent, "pisecd-probe");
      beast::http::async_write(*stream, *req, [this, stream, req, token](boost::system::error_code wec, std::size_t) {
        if (wec) return probe_done(token, false, "write: " + wec.message());
        auto buf = std::make_shared<beast::flat_buffer>();
        auto res = std::make_shared<beast::http::response<beast::http::string_body>>();
        beast::http::async_read(*stream, *buf, *res,
                                [this, stream, buf, res, token](boost::system::error_code rec, std::size_t) {
                                  if (rec) return probe_done(token, false, "read: " + rec.message());
                                  int status = res->result_int();
                                  probe_done(token, status >= 200 && status < 400,
                                             "HTTP " + std::to_string(status));
                                });
      });
    });
  }

  void probe_done(std::uint64_t token, bool ok, const std::string& why) {
    if (token != probe_token_ || pid_ == 0) return;
    if (probe_tracker_.on_result(ok)) {
      restart_payload("liveness probe failed " + std::to_string(probe_tracker_.consecutive_failures()) +
                      " times (" + why + ")");
      probe_tracker_.reset();
      return;
    }
    if (!ok) event("payload: probe failed (" + why + ")");
    schedule_probe();
  }

  // --- hardware watchdog ---------------------------------------------------
  void start_hardware_watchdog() {
    if (cfg_.watchdog.hardware_device.empty()) return;
    try {
      int t = hw_.open(cfg_.watchdog.hardware_device, cfg_.watchdog.hardware_timeout_s);
      hw_interval_ms_ = std::max(500, t * 1000 / 2);  // pet at half the timeout
      event("hardware watchdog " + cfg_.watchdog.hardware_device + ": timeout " + std::to_string(t) + " s");
      pet_hardware_watchdog();
    } catch (const std::exception& e) {
      event(std::string("hardware watchdog not available: ") + e.what());
    }
  }

  void pet_hardware_watchdog() {
    // Petting from a loop timer means: if the loop stalls, the board reboots.
    hw_.pet();
    hw_timer_.expires_after(std::chrono::milliseconds(hw_interval_ms_));
    hw_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) pet_hardware_watchdog();
    });
  }

  // --- signals -------------------------------------------------------------
  void wait_for_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      switch (sig) {
        case SIGCHLD: reap(); break;
        case SIGHUP: reload(); break;
        default: shutdown(sig); break;
      }
      if (!finished_) wait_for_signal();
    });
  }

  // Every child that changed state: the payload's bwrap, or an orphan
  // re-parented to us as subreaper.
  void reap() {
    for (;;) {
      int st = 0;
      pid_t p = ::waitpid(-1, &st, WNOHANG);
      if (p <= 0) break;
      if (p == pid_) {
        wiring_.payload_reaped(st);  // wiring reports the payload's own exit status
      } else {
        ++snapshot_.reaped_orphans;
      }
    }
  }

  void reload() {
    event("SIGHUP: reloading " + cfg_.source_path);
    config::Config next;
    try {
      next = config::load_file(cfg_.source_path);
    } catch (const config::LoadError& e) {
      event("reload rejected, keeping the running configuration: " + std::string(e.what()));
      return;
    } catch (const std::exception& e) {
      event("reload rejected, keeping the running configuration: " + std::string(e.what()));
      return;
    }
    const bool payload_changed = cfg_.payload != next.payload;
    const bool firewall_changed = render_differs(cfg_, next);
    cfg_.watchdog = next.watchdog;
    cfg_.logs = next.logs;
    policy_.update(cfg_.watchdog);
    probe_tracker_ = supervisor::ProbeTracker(cfg_.watchdog.probe_failures);
    if (firewall_changed && snapshot_.firewall.mode == "service") {
      auto candidate = cfg_;
      candidate.firewall = next.firewall;
      candidate.payload = next.payload;
      auto r = wiring_.apply_firewall(candidate, Wiring::Mode::service);
      if (!r.ok || !r.verified) {
        event("reload: new service ruleset not applied (" + r.error + "); previous one stays");
      } else {
        cfg_.firewall = next.firewall;
        record_firewall(r, "service");
      }
    }
    if (payload_changed) {
      cfg_.payload = next.payload;
      if (pid_ != 0) restart_payload("configuration changed");
    }
    event("reload done" + std::string(payload_changed ? ", payload restarting" : ""));
  }

  static bool render_differs(const config::Config& a, const config::Config& b) {
    return Wiring::firewall_text(a) != Wiring::firewall_text(b);
  }

  void shutdown(int sig) {
    if (stopping_) return;
    stopping_ = true;
    event(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
    snapshot_.state = "stopping";
    gate_timer_.cancel();
    if (gate_) gate_->cancel();
    stop_payload([this] { finish(); });
  }

  void finish() {
    finished_ = true;
    signals_.cancel();
    restart_timer_.cancel();
    stop_timer_.cancel();
    probe_timer_.cancel();
    hw_timer_.cancel();
    if (hw_.is_open()) hw_.magic_close();
    reap();
    wiring_.stop();
    exit_code_ = 0;
    io_.stop();
  }

  asio::io_context io_;
  config::Config cfg_;
  asio::signal_set signals_;
  asio::steady_timer restart_timer_, stop_timer_, gate_timer_, probe_timer_, hw_timer_;
  supervisor::RestartPolicy policy_;
  supervisor::ProbeTracker probe_tracker_;
  supervisor::HardwareWatchdog hw_;
  Wiring wiring_;
  std::mt19937 rng_;

  status::Snapshot snapshot_;
  Clock::time_point started_, payload_started_, gate_started_;
  std::unique_ptr<gates::Gate> gate_;
  std::size_t next_gate_ = 0;
  std::uint64_t gate_token_ = 0, probe_token_ = 0;
  int hw_interval_ms_ = 7500;
  pid_t pid_ = 0;
  bool degraded_ = false, stopping_ = false, finished_ = false, restart_pending_ = false;
  supervisor::Decision forced_decision_;
  std::function<void()> on_stopped_;
  int exit_code_ = 0;
};

int run(config::Config cfg) {
  Daemon d(std::move(cfg));
  return d.run();
}

}  // namespace pisec::daemon
