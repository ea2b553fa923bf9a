// The daemon's state × event table. Every decision about what happens next
// lives here; the event loop only carries out the effects.
#include "pisec/boot.hpp"

#include <limits>
#include <utility>

namespace pisec::boot {

namespace {

using K = Event::Kind;
using F = Effect::Kind;

class Step {
 public:
  explicit Step(State s) : s_(std::move(s)) {}

  Transition run(const Event& e) {
    if (e.kind == K::stop) {
      on_stop(e);
    } else if (e.kind == K::reload) {
      on_reload(e);
    } else if (e.kind == K::quarantine) {
      on_outside_quarantine(e);
    } else if (e.kind == K::attest_now) {
      on_attest_now();
    } else if (e.kind == K::attested) {
      on_attested(e);
    } else if (e.kind == K::mux_spawned || e.kind == K::mux_exited || e.kind == K::mux_restart_due ||
               e.kind == K::mux_grace_expired) {
      on_mux(e);
    } else {
      switch (s_.stage) {
        case Stage::idle: on_idle(e); break;
        case Stage::lockdown: on_lockdown(e); break;
        case Stage::gating: on_gating(e); break;
        case Stage::service: on_service(e); break;
        case Stage::attesting: break;  // only attested (above), stop, reload and quarantine matter here
        case Stage::supervising: on_supervising(e); break;
        case Stage::quarantined: on_quarantined(e); break;
        case Stage::stopping: on_stopping(e); break;
        case Stage::finished: break;
      }
    }
    return {std::move(s_), std::move(fx_)};
  }

 private:
  void emit(F kind, std::string text = {}, std::size_t index = 0, std::int64_t delay_ms = 0) {
    fx_.push_back({kind, std::move(text), index, delay_ms});
  }
  void log(std::string text) { emit(F::log, std::move(text)); }

  // --- boot --------------------------------------------------------------
  void on_idle(const Event& e) {
    if (e.kind != K::start) return;
    s_.stage = Stage::lockdown;
    if (s_.plan.firewall) return emit(F::apply_lockdown);
    log("firewall disabled in config: not touching nftables");
    begin_gating();
  }

  void on_lockdown(const Event& e) {
    if (e.kind != K::lockdown_applied) return;
    // Without even the lockdown ruleset the device is as exposed as it was
    // before we started: never go further.
    if (!e.ok) return quarantine("lockdown ruleset failed: " + e.detail);
    begin_gating();
  }

  void begin_gating() {
    s_.stage = Stage::gating;
    s_.gate = 0;
    next_gate();
  }

  void next_gate() {
    while (s_.gate < gate_count && !s_.plan.gates[s_.gate].enabled) emit(F::skip_gate, {}, s_.gate++);
    if (s_.gate < gate_count) return emit(F::run_gate, {}, s_.gate);
    s_.stage = Stage::service;
    if (s_.plan.firewall) return emit(F::apply_service);
    emit(F::drop_privileges);
  }

  void on_gating(const Event& e) {
    if (e.kind != K::gate_done || e.index != s_.gate) return;  // a stale completion
    if (!e.ok) {
      if (s_.plan.gates[s_.gate].quarantine_on_failure)
        return quarantine(std::string("gate ") + gate_names[s_.gate] + " failed: " + e.detail);
      s_.gate_continued = true;
      emit(F::gate_continued, {}, s_.gate);
    }
    ++s_.gate;
    next_gate();
  }

  void on_service(const Event& e) {
    if (e.kind == K::service_applied) {
      if (!e.ok) return service_lost("service ruleset not applied: " + e.detail);
      s_.firewall_service = true;
      return emit(F::drop_privileges);
    }
    if (e.kind == K::privileges_dropped) {
      if (!e.ok) return quarantine("cannot drop privileges: " + e.detail);
      s_.mux_allowed = true;
      if (s_.plan.attest == Plan::Attest::required) {
        s_.stage = Stage::attesting;
        log("attestation: asking the verifier before the payload starts (required)");
        return emit(F::attest);
      }
      begin_supervising();
      if (s_.plan.attest == Plan::Attest::beside) emit(F::attest);
    }
  }

  void begin_supervising() {
    s_.stage = Stage::supervising;
    spawn();
    start_mux();
  }

  // --- attestation -------------------------------------------------------------
  void on_attest_now() {
    if (s_.plan.attest == Plan::Attest::off) return log("SIGUSR1: attestation is not enabled in the configuration");
    if (s_.stage != Stage::supervising && s_.stage != Stage::attesting)
      return log(std::string("SIGUSR1: no attestation while ") + state_name(s_) +
                 " (it runs once the service ruleset stands)");
    emit(F::attest);
  }

  // Verdicts arriving in any other stage (gating cannot have one; quarantined
  // and stopping stay as they are) change nothing.
  void on_attested(const Event& e) {
    if (s_.stage != Stage::attesting && s_.stage != Stage::supervising) return;
    const auto v = e.code >= 0 && e.code <= 3 ? static_cast<Verdict>(e.code) : Verdict::no_answer;
    const std::string what = std::string("attestation: ") + to_string(v) + (e.detail.empty() ? "" : ": " + e.detail);
    bool refused = v == Verdict::contraindicated;
    if (v == Verdict::no_answer) {
      refused = s_.plan.attest_no_answer_quarantines;
      s_.attest_unproven = !refused;
      if (!refused) log(what + " (on_no_answer = continue)");
    } else if (!refused) {
      s_.attest_unproven = false;
      log(what);
    }
    if (refused) {
      // The device cannot vouch for what it runs: back to lockdown first.
      if (s_.firewall_service) service_lost(what);
      else {
        withdraw_mux();
        quarantine(what);
      }
      return;
    }
    if (s_.stage == Stage::attesting) begin_supervising();
  }

  // The service ruleset could not be applied or verified: back to lockdown
  // before reporting, so the kernel never holds a ruleset we cannot vouch for.
  void service_lost(const std::string& why) {
    s_.firewall_service = false;
    emit(F::apply_lockdown);
    withdraw_mux();
    quarantine(why);
  }

  // --- the payload's life ------------------------------------------------
  void spawn() {
    s_.payload = Payload::starting;
    emit(F::spawn_payload);
  }

  void on_supervising(const Event& e) {
    switch (e.kind) {
      case K::payload_spawned:
        if (s_.payload != Payload::starting) return;
        if (!e.ok) {
          log("payload: cannot start: " + e.detail);
          return after_exit(supervisor::Exit{127, 0}, e);
        }
        s_.payload = Payload::running;
        s_.probe_ok = true;
        // The first run is healthy at once; a restarted one must prove it.
        s_.payload_healthy = s_.restarts == 0;
        if (!s_.payload_healthy) emit(F::arm_healthy, {}, 0, s_.plan.healthy_after_ms);
        return emit(F::start_probe);
      case K::payload_exited:
        if (s_.payload != Payload::running && s_.payload != Payload::terminating) return;
        return after_exit(supervisor::Exit{e.code, e.signal}, e);
      case K::restart_due:
        if (s_.payload != Payload::backoff) return;
        ++s_.restarts;
        return spawn();
      case K::healthy_due:
        if (s_.payload == Payload::running) s_.payload_healthy = true;
        return;
      case K::probe_result:
        if (s_.payload == Payload::running) s_.probe_ok = e.ok;
        return;
      case K::probe_hung:
        if (s_.payload != Payload::running) return;
        s_.forced = s_.policy.on_forced_restart(e.now_ms, e.uptime_ms, e.jitter, e.detail);
        log("payload: " + s_.forced.reason);
        s_.restart_on_exit = true;
        return terminate();
      case K::grace_expired:
        return grace_expired();
      case K::service_applied:
        // The previous ruleset, re-applied after a reload's new one failed.
        if (e.ok) {
          s_.firewall_service = true;
          return log("firewall: the previous service ruleset is back in place");
        }
        return service_lost("service ruleset lost after a failed reload: " + e.detail);
      case K::reload_ruleset:
        return on_reload_ruleset(e);
      default:
        return;
    }
  }

  void terminate() {
    s_.payload = Payload::terminating;
    emit(F::stop_probe);
    emit(F::cancel_healthy);
    emit(F::terminate_payload);
  }

  void grace_expired() {
    if (s_.payload != Payload::terminating) return;  // it exited meanwhile
    log("payload: still running after the stop grace period, sending SIGKILL");
    emit(F::kill_payload);
  }

  void after_exit(const supervisor::Exit& exit, const Event& e) {
    emit(F::stop_probe);
    emit(F::cancel_healthy);
    s_.payload_healthy = false;
    supervisor::Decision d;
    if (std::exchange(s_.restart_on_exit, false)) {
      d = s_.forced;  // a restart we asked for (probe, reload) was decided then
    } else {
      d = s_.policy.on_exit(exit, e.now_ms, e.uptime_ms, e.jitter);
      log("payload: " + d.reason);
    }
    switch (d.action) {
      case supervisor::Action::restart:
        s_.payload = Payload::backoff;
        return emit(F::arm_restart, {}, 0, d.delay_ms);
      case supervisor::Action::stop:
        s_.payload = Payload::stopped;
        return;
      case supervisor::Action::quarantine:
        s_.payload = Payload::quarantined;
        return quarantine(d.reason);
    }
  }

  // --- quarantine ----------------------------------------------------------
  void quarantine(const std::string& why) {
    s_.stage = Stage::quarantined;
    s_.quarantine_reason = why;
    s_.attest_unproven = false;
    s_.restart_on_exit = false;
    s_.reload_pending = false;
    log("quarantined: " + why);
    switch (s_.payload) {
      case Payload::starting:  // spawned event still to come: stopped then
      case Payload::running: terminate(); break;
      case Payload::backoff:
        emit(F::cancel_restart);
        s_.payload = Payload::quarantined;
        break;
      default: break;
    }
  }

  void on_outside_quarantine(const Event& e) {
    switch (s_.stage) {
      case Stage::idle: case Stage::quarantined: case Stage::stopping: case Stage::finished:
        return;
      case Stage::gating: emit(F::cancel_gate); break;
      default: break;
    }
    if (s_.plan.firewall) {
      s_.firewall_service = false;
      emit(F::apply_lockdown);
    }
    withdraw_mux();
    quarantine(e.detail);
  }

  void on_quarantined(const Event& e) {
    switch (e.kind) {
      case K::payload_spawned:
        if (s_.payload == Payload::starting && e.ok) return terminate();
        if (s_.payload == Payload::starting) s_.payload = Payload::quarantined;
        return;
      case K::payload_exited:
        if (s_.payload == Payload::terminating) s_.payload = Payload::quarantined;
        return;
      case K::grace_expired:
        return grace_expired();
      default:
        return;  // lockdown results, stale timers and gates: nothing changes
    }
  }

  // --- stop ------------------------------------------------------------------
  void on_stop(const Event& e) {
    if (s_.stage == Stage::stopping || s_.stage == Stage::finished)
      return log("received " + e.detail + " while stopping: already stopping");
    const Stage was = s_.stage;
    s_.stage = Stage::stopping;
    s_.restart_on_exit = false;
    s_.reload_pending = false;
    log("received " + e.detail + ", stopping");
    if (was == Stage::gating) emit(F::cancel_gate);
    withdraw_mux();
    switch (s_.payload) {
      case Payload::running: return terminate();
      case Payload::terminating: return;  // its grace timer keeps running
      case Payload::starting: return;     // wait for the spawn's result
      case Payload::backoff:
        emit(F::cancel_restart);
        s_.payload = Payload::stopped;
        return maybe_finish();
      default: return maybe_finish();
    }
  }

  void on_stopping(const Event& e) {
    switch (e.kind) {
      case K::payload_spawned:
        if (s_.payload != Payload::starting) return;
        if (e.ok) return terminate();
        s_.payload = Payload::stopped;
        return maybe_finish();
      case K::payload_exited:
        if (s_.payload != Payload::terminating && s_.payload != Payload::running) return;
        s_.payload = Payload::stopped;
        emit(F::stop_probe);
        emit(F::cancel_healthy);
        return maybe_finish();
      case K::grace_expired:
        return grace_expired();
      default:
        return;  // gates, timers, probes, rulesets: nothing leaves stopping
    }
  }

  // Finished once both processes are gone.
  void maybe_finish() {
    if (s_.stage != Stage::stopping) return;
    const bool payload_gone = s_.payload != Payload::running && s_.payload != Payload::terminating &&
                              s_.payload != Payload::starting;
    const bool mux_gone = s_.mux == Mux::off || s_.mux == Mux::stopped;
    if (payload_gone && mux_gone) finish();
  }

  void finish() {
    s_.stage = Stage::finished;
    emit(F::finish);
  }

  // --- the mux ---------------------------------------------------------------
  void start_mux() {
    if (!mux_wanted() || s_.mux != Mux::stopped) return;
    s_.mux = Mux::starting;
    emit(F::spawn_mux);
  }

  void terminate_mux() {
    s_.mux = Mux::terminating;
    emit(F::terminate_mux);
  }

  // Stops it without a restart (a starting one is stopped when it reports).
  void stop_mux() {
    s_.mux_restart_on_exit = false;
    if (s_.mux == Mux::running) terminate_mux();
    if (s_.mux == Mux::backoff) {
      emit(F::cancel_mux_restart);
      s_.mux = Mux::stopped;
    }
  }

  // The service ruleset is gone or the daemon stops: the mux has nothing to serve.
  void withdraw_mux() {
    s_.mux_allowed = false;
    stop_mux();
  }

  void on_mux(const Event& e) {
    switch (e.kind) {
      case K::mux_spawned:
        if (s_.mux != Mux::starting) return;
        if (!e.ok) {
          log("mux: cannot start: " + e.detail);
          return after_mux_exit(supervisor::Exit{127, 0}, e);
        }
        s_.mux = Mux::running;
        if (!mux_wanted()) terminate_mux();
        return;
      case K::mux_exited:
        if (s_.mux != Mux::running && s_.mux != Mux::terminating) return;
        return after_mux_exit(supervisor::Exit{e.code, e.signal}, e);
      case K::mux_restart_due:
        if (s_.mux != Mux::backoff) return;
        ++s_.mux_restarts;
        s_.mux = Mux::stopped;
        return start_mux();
      case K::mux_grace_expired:
        if (s_.mux != Mux::terminating) return;
        log("mux: still running after its stop grace period, sending SIGKILL");
        return emit(F::kill_mux);
      default:
        return;
    }
  }

  // Only beside a payload's life under the service ruleset (a quarantined
  // payload included), never once the stop began.
  bool mux_wanted() const {
    return s_.plan.mux && s_.mux_allowed && (s_.stage == Stage::supervising || s_.stage == Stage::quarantined);
  }

  void after_mux_exit(const supervisor::Exit& exit, const Event& e) {
    if (!mux_wanted()) {
      s_.mux = s_.plan.mux ? Mux::stopped : Mux::off;
      s_.mux_restart_on_exit = false;
      return maybe_finish();
    }
    if (std::exchange(s_.mux_restart_on_exit, false)) {  // a reload's restart: at once
      s_.mux = Mux::stopped;
      return start_mux();
    }
    const supervisor::Decision d = s_.mux_policy.on_exit(exit, e.now_ms, e.uptime_ms, e.jitter);
    log("mux: " + d.reason);
    s_.mux = Mux::backoff;
    // The policy never gives the mux up; a stop or quarantine verdict (not
    // expected with it) still waits the longest backoff rather than spin.
    const std::int64_t delay = d.action == supervisor::Action::restart ? d.delay_ms : s_.plan.watchdog.backoff_max_ms;
    emit(F::arm_mux_restart, {}, 0, delay);
  }

  // --- reload: all or nothing ----------------------------------------------
  void on_reload(const Event& e) {
    if (s_.stage == Stage::stopping || s_.stage == Stage::finished)
      return emit(F::reload_rejected, "the daemon is stopping; a reload cannot cancel a stop");
    if (s_.reload_pending) return emit(F::reload_rejected, "another reload is still being applied");
    if (s_.firewall_service && e.firewall_changed) {
      // The new ruleset first: if the kernel refuses it or it does not read
      // back, nothing of the new configuration is used.
      s_.reload_pending = true;
      s_.reload_payload_changed = e.payload_changed;
      s_.reload_mux_changed = e.mux_changed;
      s_.reload_plan = e.next_plan;
      return emit(F::apply_new_ruleset);
    }
    commit(e.next_plan, e.payload_changed, e.mux_changed, e);
  }

  void on_reload_ruleset(const Event& e) {
    if (!s_.reload_pending) return;
    s_.reload_pending = false;
    if (!e.ok) {
      emit(F::reload_rejected, "new service ruleset not applied: " + e.detail);
      // Refused whole, the kernel still has the old ruleset. Committed but not
      // read back as built: put back the ruleset we can vouch for.
      if (e.firewall_changed) emit(F::apply_service);
      return;
    }
    commit(s_.reload_plan, s_.reload_payload_changed, s_.reload_mux_changed, e);
  }

  // (mux.enabled itself never changes on a reload: the daemon keeps it.)
  void commit(const Plan& next, bool payload_changed, bool mux_changed, const Event& e) {
    s_.plan = next;
    s_.policy.update(next.watchdog);
    s_.mux_policy.update(State::mux_watchdog(next.watchdog));
    emit(F::commit_reload);
    if (mux_changed && s_.mux == Mux::running) {
      log("mux: configuration changed, restarting it");
      s_.mux_restart_on_exit = true;
      terminate_mux();
    }
    if (payload_changed && s_.stage == Stage::supervising && s_.payload == Payload::running) {
      s_.forced = s_.policy.on_forced_restart(e.now_ms, e.uptime_ms, e.jitter, "configuration changed");
      log("payload: " + s_.forced.reason);
      s_.restart_on_exit = true;
      terminate();
    }
  }

  State s_;
  std::vector<Effect> fx_;
};

}  // namespace

Transition transition(State state, const Event& event) { return Step(std::move(state)).run(event); }

const config::GateCommon& gate_common(const config::Config& cfg, std::size_t index) {
  const config::GateCommon* common[gate_count] = {&cfg.gates.entropy, &cfg.gates.clock,
                                                  &cfg.gates.integrity, &cfg.gates.arch};
  return *common[index];
}

Plan plan_from(const config::Config& cfg) {
  Plan p;
  p.firewall = cfg.firewall.enabled;
  for (std::size_t i = 0; i < gate_count; ++i) {
    const auto& common = gate_common(cfg, i);
    p.gates[i] = {common.enabled, common.on_failure == config::OnFailure::quarantine};
  }
  p.healthy_after_ms = std::int64_t{cfg.watchdog.healthy_after_s} * 1000;
  p.watchdog = cfg.watchdog;
  p.mux = cfg.mux.enabled;
  if (cfg.attestation.enabled) p.attest = cfg.attestation.required ? Plan::Attest::required : Plan::Attest::beside;
  p.attest_no_answer_quarantines = cfg.attestation.on_no_answer == config::OnFailure::quarantine;
  return p;
}

config::Watchdog State::mux_watchdog(config::Watchdog w) {
  w.restart = config::RestartPolicy::always;
  w.burst = std::numeric_limits<int>::max();
  return w;
}

const char* state_name(const State& s) {
  switch (s.stage) {
    case Stage::idle:
    case Stage::lockdown: return "lockdown";
    case Stage::gating:
    case Stage::service:
    case Stage::attesting: return "gating";
    case Stage::quarantined: return "quarantined";
    case Stage::stopping:
    case Stage::finished: return "stopping";
    case Stage::supervising: break;
  }
  const bool up = s.payload == Payload::running;
  // With the mux on, the public port answers only while it runs.
  const bool mux_ok = s.mux == Mux::off || s.mux == Mux::running;
  return up && s.payload_healthy && s.probe_ok && !s.gate_continued && mux_ok && !s.attest_unproven ? "running"
                                                                                                       : "degraded";
}

const char* mux_name(const State& s) {
  switch (s.mux) {
    case Mux::off:
    case Mux::stopped: return "stopped";
    case Mux::starting: return "starting";
    case Mux::running:
    case Mux::terminating: return "running";  // still up until it exits
    case Mux::backoff: return "backoff";
  }
  return "stopped";
}

const char* payload_name(const State& s) {
  switch (s.payload) {
    case Payload::stopped: return "stopped";
    case Payload::starting: return "starting";
    case Payload::running:
    case Payload::terminating: return "running";  // still up until it exits
    case Payload::backoff: return "backoff";
    case Payload::quarantined: return "quarantined";
  }
  return "stopped";
}

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::affirming: return "affirming";
    case Verdict::warning: return "warning";
    case Verdict::contraindicated: return "contraindicated";
    case Verdict::no_answer: return "no answer";
  }
  return "no answer";  // a code out of range is no verdict at all
}

const char* to_string(Stage s) {
  switch (s) {
    case Stage::idle: return "idle";
    case Stage::lockdown: return "lockdown";
    case Stage::gating: return "gating";
    case Stage::service: return "service";
    case Stage::attesting: return "attesting";
    case Stage::supervising: return "supervising";
    case Stage::quarantined: return "quarantined";
    case Stage::stopping: return "stopping";
    case Stage::finished: return "finished";
  }
  return "?";
}

const char* to_string(Event::Kind k) {
  switch (k) {
    case K::start: return "start";
    case K::lockdown_applied: return "lockdown_applied";
    case K::gate_done: return "gate_done";
    case K::service_applied: return "service_applied";
    case K::privileges_dropped: return "privileges_dropped";
    case K::payload_spawned: return "payload_spawned";
    case K::payload_exited: return "payload_exited";
    case K::restart_due: return "restart_due";
    case K::healthy_due: return "healthy_due";
    case K::probe_result: return "probe_result";
    case K::probe_hung: return "probe_hung";
    case K::grace_expired: return "grace_expired";
    case K::stop: return "stop";
    case K::reload: return "reload";
    case K::reload_ruleset: return "reload_ruleset";
    case K::quarantine: return "quarantine";
    case K::attest_now: return "attest_now";
    case K::attested: return "attested";
    case K::mux_spawned: return "mux_spawned";
    case K::mux_exited: return "mux_exited";
    case K::mux_restart_due: return "mux_restart_due";
    case K::mux_grace_expired: return "mux_grace_expired";
  }
  return "?";
}

const char* to_string(Effect::Kind k) {
  switch (k) {
    case F::log: return "log";
    case F::apply_lockdown: return "apply_lockdown";
    case F::run_gate: return "run_gate";
    case F::skip_gate: return "skip_gate";
    case F::gate_continued: return "gate_continued";
    case F::cancel_gate: return "cancel_gate";
    case F::apply_service: return "apply_service";
    case F::drop_privileges: return "drop_privileges";
    case F::spawn_payload: return "spawn_payload";
    case F::terminate_payload: return "terminate_payload";
    case F::kill_payload: return "kill_payload";
    case F::arm_restart: return "arm_restart";
    case F::cancel_restart: return "cancel_restart";
    case F::arm_healthy: return "arm_healthy";
    case F::cancel_healthy: return "cancel_healthy";
    case F::start_probe: return "start_probe";
    case F::stop_probe: return "stop_probe";
    case F::apply_new_ruleset: return "apply_new_ruleset";
    case F::commit_reload: return "commit_reload";
    case F::reload_rejected: return "reload_rejected";
    case F::finish: return "finish";
    case F::spawn_mux: return "spawn_mux";
    case F::terminate_mux: return "terminate_mux";
    case F::kill_mux: return "kill_mux";
    case F::arm_mux_restart: return "arm_mux_restart";
    case F::cancel_mux_restart: return "cancel_mux_restart";
    case F::attest: return "attest";
  }
  return "?";
}

}  // namespace pisec::boot
