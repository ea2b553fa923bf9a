// The daemon's event loop: one Boost.Asio loop that turns signals, timers,
// child exits and gate completions into events for the state machine
// (pisec/boot.hpp) and carries out the effects it answers with, through the
// ports in ports.hpp. No decision about what happens next is taken here, and
// nothing here touches a firewall, a gate, a process or a device directly.
//
// With no probe and no hardware watchdog configured the loop makes no
// wakeups at all while the payload runs.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <malloc.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdio>
#include <chrono>
#include <deque>
#include <memory>
#include <random>

#include "pisec/boot.hpp"
#include "pisec/config.hpp"
#include "pisec/control.hpp"
#include "pisec/gates.hpp"
#include "pisec/supervisor.hpp"
#include "pisec/util.hpp"
#include "pisec/version.hpp"
#include "ports.hpp"

namespace pisec::boot {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// The backoff jitter's seed. Never blocking: std::random_device waits in
// getrandom() until the kernel's CRNG is ready, which on a Pi 1B at boot can
// take a long time, and this runs before the lockdown ruleset is applied.
// Jitter only spreads restarts; it needs no secret.
std::uint64_t jitter_seed() {
  std::uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof seed)) return seed;
  const auto t = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return t ^ (static_cast<std::uint64_t>(::getpid()) << 32);
}

Event make(Event::Kind kind, bool ok = false, std::string detail = {}) {
  Event e;
  e.kind = kind;
  e.ok = ok;
  e.detail = std::move(detail);
  return e;
}

}  // namespace

class Daemon : public Host {
 public:
  Daemon(config::Config&& cfg, const MakePorts& make_ports)
      : cfg_(std::move(cfg)),
        state_(plan_from(cfg_)),
        signals_(io_, SIGTERM, SIGINT, SIGHUP),
        restart_timer_(io_),
        gate_timer_(io_),
        probe_timer_(io_),
        healthy_timer_(io_),
        hw_timer_(io_),
        mux_restart_timer_(io_),
        payload_(io_, "payload", Event::Kind::payload_spawned, Event::Kind::grace_expired, Event::Kind::payload_exited),
        mux_(io_, "mux", Event::Kind::mux_spawned, Event::Kind::mux_grace_expired, Event::Kind::mux_exited),
        probe_tracker_(cfg_.watchdog.probe_failures),
        ports_(make_ports(io_, *this, cfg_)),
        rng_(static_cast<std::uint_fast32_t>(jitter_seed() % std::minstd_rand::modulus)) {
    signals_.add(SIGCHLD);  // the constructor takes at most three
    signals_.add(SIGUSR1);  // attest again
    for (auto* name : gate_names) snapshot_.gates.push_back({name, "pending", "", 0});
    snapshot_.version = std::string(build::version) + " (" + build::git_revision + ")";
    snapshot_.attestation.enabled = cfg_.attestation.enabled;
  }

  int run() {
    started_ = Clock::now();
    // Orphans of the payload are re-parented to us, not to init: reap and count them.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
      event("warning: PR_SET_CHILD_SUBREAPER failed; orphans go to init");
    wait_for_signal();
    try {
      ports_.control->start(cfg_);
    } catch (const std::exception& e) {
      text::err(text::cat("pisecd: control socket: ", e.what(), '\n'));
      return 1;
    }
    start_hardware_watchdog();
    asio::post(io_, [this] { post(make(Event::Kind::start)); });
    io_.run();
    return 0;
  }

  // --- Host: what the control socket and the other ports see -------------
  status::Snapshot snapshot() const override {
    status::Snapshot s = snapshot_;
    s.uptime_ms = ms_since(started_);
    s.payload.pid = payload_.pid;
    s.reaped_orphans += ports_.spawner->orphans_reaped_inside();
    if (ports_.mux) s.reaped_orphans += ports_.mux->orphans_reaped_inside();
    s.mux.pid = mux_.pid;
    return s;
  }

  void event(const std::string& line) override { ports_.control->log(line); }

  void payload_exited(int code, int signal) override { exited(payload_, snapshot_.payload.last_exit, code, signal); }
  void mux_exited(int code, int signal) override { exited(mux_, snapshot_.mux.last_exit, code, signal); }

 private:
  static std::int64_t ms_since(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
  }
  std::int64_t now_ms() const { return ms_since(started_); }
  double jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  // One sandboxed process under the machine: the payload, or the mux.
  struct Child {
    Child(asio::io_context& io, const char* n, Event::Kind on_spawn, Event::Kind on_grace, Event::Kind on_exit)
        : name(n), spawned(on_spawn), grace_over(on_grace), exited(on_exit), grace(io) {}
    const char* name;
    Event::Kind spawned, grace_over, exited;
    pid_t pid = 0;
    Clock::time_point started;
    asio::steady_timer grace;  // SIGKILL after SIGTERM, bound to one run
  };

  // What the restart policy needs to know about "now" and the child's current run.
  Event timed(const Child& c, Event e, int code = 0, int signal = 0) {
    e.code = code;
    e.signal = signal;
    e.now_ms = now_ms();
    e.uptime_ms = ms_since(c.started);
    e.jitter = jitter();
    return e;
  }
  Event timed(Event e) { return timed(payload_, std::move(e)); }

  // --- the machine -------------------------------------------------------
  // Effects may produce events at once (the firewall answers synchronously);
  // they queue behind the current one, so every transition sees a settled state.
  void post(Event e) {
    queue_.push_back(std::move(e));
    if (dispatching_) return;
    dispatching_ = true;
    while (!queue_.empty()) {
      Event next = std::move(queue_.front());
      queue_.pop_front();
      auto t = transition(std::move(state_), next);
      state_ = std::move(t.next);
      for (const auto& fx : t.effects) carry_out(fx);
      publish();
    }
    dispatching_ = false;
  }

  void publish() {
    snapshot_.state = state_name(state_);
    snapshot_.payload.state = payload_name(state_);
    snapshot_.payload.restarts = state_.restarts;
    snapshot_.mux.enabled = state_.mux != Mux::off;
    snapshot_.mux.state = mux_name(state_);
    snapshot_.mux.restarts = state_.mux_restarts;
  }

  void carry_out(const Effect& fx) {
    using K = Effect::Kind;
    switch (fx.kind) {
      case K::log: return event(fx.text);
      case K::apply_lockdown: return apply_lockdown();
      case K::run_gate: return run_gate(fx.index);
      case K::skip_gate: return skip_gate(fx.index);
      case K::gate_continued: return ports_.gates->failed_continue(cfg_, fx.index);
      case K::cancel_gate: return cancel_gate();
      case K::apply_service: return apply_service(cfg_, Event::Kind::service_applied);
      case K::drop_privileges: return drop_privileges();
      case K::spawn_payload: return spawn(payload_, *ports_.spawner, snapshot_.payload.last_exit);
      case K::terminate_payload:
        return terminate(payload_, *ports_.spawner, std::chrono::milliseconds(cfg_.payload.stop_grace_ms));
      case K::kill_payload: return ports_.spawner->signal(SIGKILL);
      case K::arm_restart: return arm(restart_timer_, restart_token_, fx.delay_ms, Event::Kind::restart_due);
      case K::cancel_restart: return disarm(restart_timer_, restart_token_);
      case K::arm_healthy: return arm(healthy_timer_, healthy_token_, fx.delay_ms, Event::Kind::healthy_due);
      case K::cancel_healthy: return disarm(healthy_timer_, healthy_token_);
      case K::start_probe:
        probe_tracker_ = supervisor::ProbeTracker(cfg_.watchdog.probe_failures);
        return schedule_probe();
      case K::stop_probe: return disarm(probe_timer_, probe_token_);
      case K::apply_new_ruleset: return apply_service(pending(), Event::Kind::reload_ruleset);
      case K::commit_reload: return commit_reload();
      case K::reload_rejected: return reload_rejected(fx.text);
      case K::finish: return finish();
      case K::spawn_mux: return spawn(mux_, *ports_.mux, snapshot_.mux.last_exit);
      case K::terminate_mux: return terminate(mux_, *ports_.mux, mux_stop_grace);
      case K::kill_mux: return ports_.mux->signal(SIGKILL);
      case K::arm_mux_restart:
        return arm(mux_restart_timer_, mux_restart_token_, fx.delay_ms, Event::Kind::mux_restart_due);
      case K::cancel_mux_restart: return disarm(mux_restart_timer_, mux_restart_token_);
      case K::attest: return attest();
    }
  }

  // A timer whose expiry is an event. The token makes a cancelled timer's
  // already-queued handler harmless.
  void arm(asio::steady_timer& t, std::uint64_t& token, std::int64_t delay_ms, Event::Kind kind) {
    const auto mine = ++token;
    t.expires_after(std::chrono::milliseconds(delay_ms));
    t.async_wait([this, &token, mine, kind](boost::system::error_code ec) {
      if (!ec && token == mine) post(timed(make(kind)));
    });
  }
  static void disarm(asio::steady_timer& t, std::uint64_t& token) {
    ++token;
    t.cancel();
  }

  // --- firewall ------------------------------------------------------------
  void apply_lockdown() {
    auto r = ports_.firewall->apply(cfg_, FirewallPort::Mode::lockdown);
    record_firewall(r, "lockdown");
    post(make(Event::Kind::lockdown_applied, r.ok, r.error));
  }

  void apply_service(const config::Config& cfg, Event::Kind answer) {
    auto r = ports_.firewall->apply(cfg, FirewallPort::Mode::service);
    if (r.ok && r.verified) {
      record_firewall(r, "service");
      return post(make(answer, true));
    }
    const std::string why = std::string(r.ok ? "did not verify" : "failed") + ": " + r.error;
    event("firewall: service ruleset " + why);
    if (r.ok) snapshot_.firewall = {"service", false, r.digest};
    Event e = make(answer, false, why);
    e.firewall_changed = r.ok;  // committed, but not what we built
    post(std::move(e));
  }

  void record_firewall(const FirewallPort::Result& r, const char* mode) {
    if (r.ok) {
      snapshot_.firewall = {mode, r.verified, r.digest};
      event(std::string("firewall: ") + mode + " ruleset applied" + (r.verified ? " and verified" : "") +
            (r.digest.empty() ? "" : " (" + r.digest + ")"));
    } else {
      event(std::string("firewall: ") + mode + " ruleset failed: " + r.error);
    }
  }

  // --- gates ---------------------------------------------------------------
  void run_gate(std::size_t i) {
    auto& st = snapshot_.gates[i];
    gate_ = ports_.gates->make(cfg_, i);
    st.status = "running";
    gate_started_ = Clock::now();
    const std::uint64_t token = ++gate_token_;
    const int timeout_s = gate_common(cfg_, i).timeout_s;
    gate_timer_.expires_after(std::chrono::seconds(timeout_s));
    gate_timer_.async_wait([this, token, i, timeout_s](boost::system::error_code ec) {
      if (ec || token != gate_token_) return;
      if (gate_) gate_->cancel();
      gate_finished(i, {false, "timed out after " + std::to_string(timeout_s) + " s"});
    });
    gate_->start(io_, [this, token, i](gates::Outcome o) {
      if (token != gate_token_) return;  // timed out or cancelled
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
    const bool quarantines = gate_common(cfg_, i).on_failure == config::OnFailure::quarantine;
    console_gate(st, o.passed ? "ok" : (quarantines ? "!!" : "warn"));
    Event e = make(Event::Kind::gate_done, o.passed, o.detail);
    e.index = i;
    post(std::move(e));
  }

  void skip_gate(std::size_t i) {
    auto& st = snapshot_.gates[i];
    st.status = "skipped";
    st.detail = "disabled in config";
    console_gate(st, "skip");
  }

  void cancel_gate() {
    ++gate_token_;
    gate_timer_.cancel();
    if (gate_) gate_->cancel();
  }

  void console_gate(const status::Gate& g, const char* mark) {
    // OpenRC style: one line per gate, result at the end.
    // The detail quotes files from the card: never raw to the console.
    // Straight to the descriptor: stdio's buffer for it would be 4 KiB of
    // heap kept for the daemon's life.
    util::write_all(1, text::cat(" * gate ", g.name, ": ", g.status,
                                 g.detail.empty() ? "" : " (" + text::printable(g.detail) + ")", " [ ", mark, " ]\n"));
    event("gate " + g.name + ": " + g.status + (g.detail.empty() ? "" : ": " + g.detail));
  }

  void drop_privileges() {
    try {
      event(ports_.privileges->drop());
      post(make(Event::Kind::privileges_dropped, true));
    } catch (const std::exception& e) {
      post(make(Event::Kind::privileges_dropped, false, e.what()));
    }
  }

  // --- the payload and the mux -----------------------------------------------
  void spawn(Child& c, SpawnerPort& port, status::LastExit& last_exit) {
    c.started = Clock::now();
    try {
      c.pid = port.spawn(cfg_);
    } catch (const std::exception& e) {
      c.pid = 0;
      last_exit = {127, 0, now_ms()};
      return post(timed(c, make(c.spawned, false, e.what())));
    }
    event(std::string(c.name) + ": started, pid " + std::to_string(c.pid));
    post(make(c.spawned, true));
    // The boot sequence is behind us (gates, rulesets): give the pages of
    // what it freed back to the kernel, not only the top of the heap, and the
    // stack its deep frames touched. The daemon may now idle for months on a
    // board with 256 MB.
    // Posted: it runs once this handler has returned (its short-lived
    // allocations freed), from the loop's depth rather than a transition's.
    if (&c == &payload_) asio::post(io_, [] { util::release_unused_memory(); });
  }

  // SIGTERM (inside the sandbox), SIGKILL when the grace period is over.
  void terminate(Child& c, SpawnerPort& port, std::chrono::milliseconds grace) {
    if (c.pid == 0) return;
    port.signal(SIGTERM);
    c.grace.expires_after(grace);
    // Bound to this run: the next run must never get this run's SIGKILL.
    c.grace.async_wait([this, &c, run = c.pid](boost::system::error_code ec) {
      if (ec || c.pid == 0 || c.pid != run) return;
      post(make(c.grace_over));
    });
  }

  void exited(Child& c, status::LastExit& last_exit, int code, int signal) {
    c.pid = 0;
    last_exit = {code, signal, now_ms()};
    post(timed(c, make(c.exited), code, signal));
  }

  // --- liveness probe ------------------------------------------------------
  void schedule_probe() {
    auto target = supervisor::parse_probe(cfg_.watchdog.probe);
    if (target.kind == supervisor::ProbeTarget::Kind::none) return;
    const auto token = ++probe_token_;
    probe_timer_.expires_after(std::chrono::milliseconds(cfg_.watchdog.probe_interval_ms));
    probe_timer_.async_wait([this, target, token](boost::system::error_code ec) {
      if (ec || token != probe_token_ || payload_.pid == 0) return;
      run_probe(target, token);
    });
  }

  void run_probe(const supervisor::ProbeTarget& target, std::uint64_t token) {
    ports_.prober->probe(io_, target, std::chrono::milliseconds(cfg_.watchdog.probe_timeout_ms),
                         [this, token](bool ok, const std::string& why) { probe_done(token, ok, why); });
  }

  void probe_done(std::uint64_t token, bool ok, const std::string& why) {
    if (token != probe_token_ || payload_.pid == 0) return;
    if (probe_tracker_.on_result(ok)) {
      const int failures = probe_tracker_.consecutive_failures();
      return post(timed(make(Event::Kind::probe_hung, false,
                             "liveness probe failed " + std::to_string(failures) + " times (" + why + ")")));
    }
    if (!ok) event("payload: probe failed (" + why + ")");
    post(make(Event::Kind::probe_result, ok));
    schedule_probe();
  }

  // --- attestation ---------------------------------------------------------
  void attest() {
    AttesterPort::Facts facts;
    if (snapshot_.firewall.mode == "service" && snapshot_.firewall.verified) facts.ruleset_digest = snapshot_.firewall.digest;
    for (const auto& g : snapshot_.gates) facts.gates.emplace_back(g.name, g.status);
    if (!ports_.attester) return attested({Verdict::no_answer, {}, {}, "no attester in this build"});
    if (!ports_.attester->start(cfg_, facts, [this](AttesterPort::Answer a) { attested(std::move(a)); }))
      return event("attestation: a round is already running; its verdict answers this request too");
    if (snapshot_.attestation.verdict == "none") snapshot_.attestation.verdict = "pending";
    event("attestation: measuring and asking the verifier");
  }

  void attested(AttesterPort::Answer a) {
    auto& st = snapshot_.attestation;
    st.verdict = a.verdict == Verdict::no_answer ? "no_answer" : to_string(a.verdict);
    st.verifier_id = a.verifier_id;
    st.differences = a.differences;
    st.detail = a.detail;
    st.at_ms = now_ms();
    ++st.rounds;
    std::string summary = a.detail;
    for (const auto& d : a.differences) {
      event("attestation: differs: " + d);
      summary += (summary.empty() ? "" : "; ") + d;
    }
    Event e = make(Event::Kind::attested, a.verdict != Verdict::no_answer, summary);
    e.code = static_cast<int>(a.verdict);
    post(std::move(e));
  }

  // --- hardware watchdog ---------------------------------------------------
  void start_hardware_watchdog() {
    if (cfg_.watchdog.hardware_device.empty()) return;
    try {
      int t = ports_.watchdog->open(cfg_.watchdog.hardware_device, cfg_.watchdog.hardware_timeout_s);
      hw_interval_ms_ = std::max(500, t * 1000 / 2);  // pet at half the timeout
      event("hardware watchdog " + cfg_.watchdog.hardware_device + ": timeout " + std::to_string(t) + " s");
      pet_hardware_watchdog();
    } catch (const std::exception& e) {
      event(std::string("hardware watchdog not available: ") + e.what());
    }
  }

  void pet_hardware_watchdog() {
    // Petting from a loop timer means: if the loop stalls, the board reboots.
    ports_.watchdog->pet();
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
        case SIGUSR1: post(make(Event::Kind::attest_now)); break;
        default: post(make(Event::Kind::stop, false, sig == SIGINT ? "SIGINT" : "SIGTERM")); break;
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
      if (p == payload_.pid) {
        ports_.spawner->reaped(st);  // the spawner reports the payload's own exit status
      } else if (p == mux_.pid && ports_.mux) {
        ports_.mux->reaped(st);
      } else if (ports_.attester && ports_.attester->reaped(p, st)) {
        // an attestation round's process: its answer follows from the attester
      } else {
        ++snapshot_.reaped_orphans;
      }
    }
  }

  // --- reload: validated here, decided by the machine, all or nothing --------
  void reload() {
    event("SIGHUP: reloading " + cfg_.source_path);
    config::Config next;
    try {
      next = config::load_file(cfg_.source_path);
    } catch (const std::exception& e) {
      return reload_rejected(e.what());
    }
    // [daemon] and [logs] own the control socket and the log ring, which live
    // as long as the process: they change at the next start only.
    next.daemon = cfg_.daemon;
    next.logs = cfg_.logs;
    // Likewise whether there is a mux, and its uid and socket (the read-only
    // channel is made at start).
    if (next.mux.enabled != cfg_.mux.enabled || next.mux.uid != cfg_.mux.uid || next.mux.gid != cfg_.mux.gid ||
        next.mux.daemon_socket != cfg_.mux.daemon_socket)
      event("reload: mux.enabled, uid, gid and daemon_socket change at the next start; keeping the running ones");
    next.mux.enabled = cfg_.mux.enabled;
    next.mux.uid = cfg_.mux.uid;
    next.mux.gid = cfg_.mux.gid;
    next.mux.daemon_socket = cfg_.mux.daemon_socket;
    pending_ = std::make_unique<config::Config>(std::move(next));
    Event e = timed(make(Event::Kind::reload, true));
    e.firewall_changed = ports_.firewall->text(cfg_) != ports_.firewall->text(*pending_);
    e.payload_changed = cfg_.payload != pending_->payload;
    e.mux_changed = cfg_.mux != pending_->mux;
    e.next_plan = plan_from(*pending_);
    post(std::move(e));
  }

  void commit_reload() {
    const bool payload_changed = cfg_.payload != pending().payload;
    if (pending_) cfg_ = std::move(*pending_);
    pending_.reset();
    snapshot_.attestation.enabled = cfg_.attestation.enabled;
    probe_tracker_ = supervisor::ProbeTracker(cfg_.watchdog.probe_failures);
    snapshot_.reload = {"applied", payload_changed ? "payload restarting" : "", now_ms()};
    event(std::string("reload done") + (payload_changed ? ", payload restarting" : ""));
  }

  void reload_rejected(const std::string& why) {
    pending_.reset();
    snapshot_.reload = {"rejected", why, now_ms()};
    event("reload rejected, keeping the running configuration: " + why);
  }

  void finish() {
    finished_ = true;
    signals_.cancel();
    for (auto* t : {&restart_timer_, &payload_.grace, &gate_timer_, &probe_timer_, &healthy_timer_, &hw_timer_,
                    &mux_restart_timer_, &mux_.grace})
      t->cancel();
    if (ports_.watchdog->is_open()) ports_.watchdog->magic_close();
    if (ports_.attester) ports_.attester->cancel();
    reap();
    ports_.control->stop();
    io_.stop();
  }

  asio::io_context io_;
  config::Config cfg_;
  // A reload's configuration while its ruleset is tried; null otherwise (a
  // Config is 1.5 KB, and the Daemon lives on the main stack).
  std::unique_ptr<config::Config> pending_;
  // The running configuration when no reload is pending (the machine asks
  // for neither step then; re-applying what runs is the harmless answer).
  const config::Config& pending() const { return pending_ ? *pending_ : cfg_; }
  State state_;
  std::deque<Event> queue_;
  bool dispatching_ = false;
  asio::signal_set signals_;
  asio::steady_timer restart_timer_, gate_timer_, probe_timer_, healthy_timer_, hw_timer_;
  asio::steady_timer mux_restart_timer_;
  Child payload_, mux_;
  // The mux holds no state worth a long goodbye: in-flight requests get this long.
  static constexpr std::chrono::milliseconds mux_stop_grace{2000};
  supervisor::ProbeTracker probe_tracker_;
  Ports ports_;
  std::minstd_rand rng_;  // 8 bytes (mt19937_64 was 2.5 KB of the idle stack)

  status::Snapshot snapshot_;
  Clock::time_point started_, gate_started_;
  std::unique_ptr<gates::Gate> gate_;
  std::uint64_t gate_token_ = 0, probe_token_ = 0, restart_token_ = 0, healthy_token_ = 0, mux_restart_token_ = 0;
  int hw_interval_ms_ = 7500;
  bool finished_ = false;
};

int run_daemon(config::Config&& cfg, const MakePorts& make_ports) {
  Daemon d(std::move(cfg), make_ports);
  return d.run();
}

}  // namespace pisec::boot
