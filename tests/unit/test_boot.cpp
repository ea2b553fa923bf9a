// The daemon's state machine: every (state, event) pair against the
// invariants the product rests on, then the scenarios named in the issues.
#include <catch2/catch.hpp>

#include <algorithm>

#include "pisec/boot.hpp"
#include "pisec/control.hpp"

using namespace pisec::boot;
using K = Event::Kind;
using F = Effect::Kind;

namespace {

Plan test_plan() {
  Plan p;
  p.firewall = true;
  p.healthy_after_ms = 2000;
  p.watchdog.backoff_initial_ms = 100;
  p.watchdog.backoff_max_ms = 1000;
  p.watchdog.burst = 5;
  p.watchdog.burst_window_s = 60;
  p.watchdog.healthy_after_s = 2;
  return p;
}

Event ev(K kind, bool ok = true, std::size_t index = 0) {
  Event e;
  e.kind = kind;
  e.ok = ok;
  e.index = index;
  e.detail = "detail";
  e.next_plan = test_plan();
  return e;
}

bool has(const std::vector<Effect>& fx, F kind) {
  return std::any_of(fx.begin(), fx.end(), [kind](const Effect& e) { return e.kind == kind; });
}
std::size_t position(const std::vector<Effect>& fx, F kind) {
  return static_cast<std::size_t>(
      std::find_if(fx.begin(), fx.end(), [kind](const Effect& e) { return e.kind == kind; }) - fx.begin());
}

// Drives a machine through events, keeping every effect.
struct Driver {
  State s{test_plan()};
  std::vector<Effect> all;
  std::vector<Effect> last;
  Driver& on(const Event& e) {
    auto t = transition(std::move(s), e);
    s = std::move(t.next);
    last = t.effects;
    all.insert(all.end(), t.effects.begin(), t.effects.end());
    return *this;
  }
  Driver& on(K kind, bool ok = true, std::size_t index = 0) { return on(ev(kind, ok, index)); }
  // start → lockdown → four gates → service → privileges → payload running.
  Driver& boot() {
    on(K::start).on(K::lockdown_applied);
    for (std::size_t i = 0; i < gate_count; ++i) on(K::gate_done, true, i);
    return on(K::service_applied).on(K::privileges_dropped).on(K::payload_spawned);
  }
  int status_exit() const {
    pisec::status::Snapshot snap;
    snap.state = state_name(s);
    snap.payload.state = payload_name(s);
    return pisec::status::exit_code(snap);
  }
};

const Stage all_stages[] = {Stage::idle, Stage::lockdown, Stage::gating, Stage::service,
                            Stage::supervising, Stage::quarantined, Stage::stopping, Stage::finished};
const Payload all_payloads[] = {Payload::stopped, Payload::starting, Payload::running,
                                Payload::backoff, Payload::terminating, Payload::quarantined};
const K all_events[] = {K::start, K::lockdown_applied, K::gate_done, K::service_applied,
                        K::privileges_dropped, K::payload_spawned, K::payload_exited, K::restart_due,
                        K::healthy_due, K::probe_result, K::probe_hung, K::grace_expired, K::stop,
                        K::reload, K::reload_ruleset, K::quarantine};

std::vector<State> every_state() {
  std::vector<State> out;
  for (auto stage : all_stages)
    for (auto payload : all_payloads)
      for (int flags = 0; flags < 16; ++flags) {
        State s(test_plan());
        s.stage = stage;
        s.payload = payload;
        s.gate = static_cast<std::size_t>(flags % gate_count);
        s.restart_on_exit = flags & 1;
        s.reload_pending = flags & 2;
        s.firewall_service = flags & 4;
        s.payload_healthy = flags & 8;
        s.restarts = flags & 8 ? 0 : 3;
        out.push_back(s);
      }
  return out;
}

std::vector<Event> every_event() {
  std::vector<Event> out;
  for (auto kind : all_events)
    for (int ok = 0; ok < 2; ++ok)
      for (std::size_t index : {std::size_t{0}, std::size_t{2}}) {
        Event e = ev(kind, ok == 1, index);
        e.firewall_changed = index == 2;
        e.payload_changed = ok == 1;
        e.code = 1;
        out.push_back(e);
      }
  return out;
}

}  // namespace

TEST_CASE("every (state, event) pair keeps the machine's promises", "[boot]") {
  const auto states = every_state();
  const auto events = every_event();
  std::size_t pairs = 0;
  for (const auto& s : states) {
    for (const auto& e : events) {
      ++pairs;
      auto t = transition(s, e);
      const auto& n = t.next;
      const auto& fx = t.effects;
      INFO("stage " << to_string(s.stage) << ", payload " << static_cast<int>(s.payload) << ", event "
                    << to_string(e.kind) << " ok=" << e.ok << " → " << to_string(n.stage));
      // Nothing leaves stopping, and nothing is started once it began.
      if (s.stage == Stage::stopping || s.stage == Stage::finished) {
        CHECK((n.stage == Stage::stopping || n.stage == Stage::finished));
        for (auto k : {F::spawn_payload, F::run_gate, F::apply_service, F::apply_new_ruleset,
                       F::commit_reload, F::arm_restart, F::drop_privileges, F::arm_healthy})
          CHECK_FALSE(has(fx, k));
      }
      // The first SIGTERM always stops.
      if (e.kind == K::stop) CHECK((n.stage == Stage::stopping || n.stage == Stage::finished));
      // finish exactly when the machine reaches finished.
      CHECK(has(fx, F::finish) == (n.stage == Stage::finished && s.stage != Stage::finished));
      // A payload starts only while supervising.
      if (has(fx, F::spawn_payload)) {
        CHECK(n.stage == Stage::supervising);
        CHECK(n.payload == Payload::starting);
      }
      // Quarantine is left only towards stopping.
      if (s.stage == Stage::quarantined)
        CHECK((n.stage == Stage::quarantined || n.stage == Stage::stopping || n.stage == Stage::finished));
      if (n.stage == Stage::quarantined) CHECK_FALSE(has(fx, F::spawn_payload));
      // No payload before the service ruleset and the gates.
      if (s.stage == Stage::idle || s.stage == Stage::lockdown || s.stage == Stage::gating)
        CHECK_FALSE(has(fx, F::spawn_payload));
      // A reload that changes the service ruleset commits nothing before the
      // new ruleset's verdict; a refused one commits nothing at all.
      if (e.kind == K::reload && s.firewall_service && e.firewall_changed) CHECK_FALSE(has(fx, F::commit_reload));
      if (e.kind == K::reload_ruleset && !e.ok) {
        CHECK_FALSE(has(fx, F::commit_reload));
        CHECK_FALSE(has(fx, F::terminate_payload));
      }
      // "running" is earned: supervising, payload up, healthy, probe passing.
      if (std::string(state_name(n)) == "running") {
        CHECK(n.stage == Stage::supervising);
        CHECK(n.payload == Payload::running);
        CHECK(n.payload_healthy);
        CHECK(n.probe_ok);
        CHECK_FALSE(n.gate_continued);
      }
      // The kernel is never left with a ruleset that did not verify.
      if (e.kind == K::service_applied && !e.ok && (s.stage == Stage::service || s.stage == Stage::supervising)) {
        CHECK(has(fx, F::apply_lockdown));
        CHECK(n.stage == Stage::quarantined);
      }
    }
  }
  CHECK(pairs == every_state().size() * every_event().size());
}

TEST_CASE("boot: lockdown, gates in order, service, then the payload", "[boot]") {
  Driver d;
  d.on(K::start);
  CHECK(d.last == std::vector<Effect>{Effect{F::apply_lockdown}});
  CHECK(std::string(state_name(d.s)) == "lockdown");
  d.on(K::lockdown_applied);
  CHECK(d.last == std::vector<Effect>{Effect{F::run_gate, {}, 0}});
  for (std::size_t i = 0; i < gate_count; ++i) {
    CHECK(std::string(state_name(d.s)) == "gating");
    d.on(K::gate_done, true, i);
  }
  CHECK(d.last == std::vector<Effect>{Effect{F::apply_service}});
  d.on(K::service_applied).on(K::privileges_dropped);
  CHECK(d.last == std::vector<Effect>{Effect{F::spawn_payload}});
  d.on(K::payload_spawned);
  CHECK(std::string(state_name(d.s)) == "running");
  CHECK(d.status_exit() == 0);
}

TEST_CASE("a stale gate completion is ignored", "[boot]") {
  Driver d;
  d.on(K::start).on(K::lockdown_applied).on(K::gate_done, true, 0);
  d.on(K::gate_done, false, 0);  // gate 0 again: late, after a timeout
  CHECK(d.s.stage == Stage::gating);
  CHECK(d.s.gate == 1);
  CHECK(d.last.empty());
}

TEST_CASE("disabled gates are skipped; continue records and goes on", "[boot]") {
  Plan p = test_plan();
  p.gates[0].enabled = false;
  p.gates[1].quarantine_on_failure = false;
  Driver d;
  d.s = State(p);
  d.on(K::start).on(K::lockdown_applied);
  CHECK(d.last == std::vector<Effect>{Effect{F::skip_gate, {}, 0}, Effect{F::run_gate, {}, 1}});
  d.on(K::gate_done, false, 1);
  CHECK(d.last == std::vector<Effect>{Effect{F::gate_continued, {}, 1}, Effect{F::run_gate, {}, 2}});
  d.on(K::gate_done, true, 2).on(K::gate_done, true, 3).on(K::service_applied).on(K::privileges_dropped);
  d.on(K::payload_spawned);
  CHECK(std::string(state_name(d.s)) == "degraded");
  CHECK(d.status_exit() == 1);
}

TEST_CASE("fail closed: lockdown apply fails → quarantined, nothing else runs", "[boot]") {
  Driver d;
  d.on(K::start).on(K::lockdown_applied, false);
  CHECK(d.s.stage == Stage::quarantined);
  CHECK(d.s.quarantine_reason == "lockdown ruleset failed: detail");
  CHECK_FALSE(has(d.all, F::run_gate));
  CHECK(d.status_exit() == 2);
}

TEST_CASE("fail closed: service ruleset mismatch on read-back → lockdown, quarantined", "[boot]") {
  Driver d;
  d.on(K::start).on(K::lockdown_applied);
  for (std::size_t i = 0; i < gate_count; ++i) d.on(K::gate_done, true, i);
  d.on(K::service_applied, false);
  CHECK(has(d.last, F::apply_lockdown));
  CHECK(d.s.stage == Stage::quarantined);
  CHECK_FALSE(d.s.firewall_service);
  CHECK_FALSE(has(d.all, F::spawn_payload));
  CHECK_FALSE(has(d.all, F::drop_privileges));
  CHECK(std::string(state_name(d.s)) == "quarantined");
  CHECK(d.status_exit() == 2);
  // The lockdown result changes nothing further.
  d.on(K::lockdown_applied, true);
  CHECK(d.s.stage == Stage::quarantined);
  CHECK(d.last.empty());
}

TEST_CASE("a gate failing with quarantine keeps the later ones pending", "[boot]") {
  Driver d;
  d.on(K::start).on(K::lockdown_applied).on(K::gate_done, true, 0).on(K::gate_done, false, 1);
  CHECK(d.s.stage == Stage::quarantined);
  CHECK_FALSE(has(d.last, F::run_gate));
  CHECK(d.s.quarantine_reason == "gate clock failed: detail");
}

TEST_CASE("reload whose ruleset is refused: nothing of the new config applied", "[boot]") {
  Driver d;
  d.boot();
  Event r = ev(K::reload);
  r.firewall_changed = true;
  r.payload_changed = true;
  r.next_plan.watchdog.burst = 9;  // a visible difference
  d.on(r);
  CHECK(d.last == std::vector<Effect>{Effect{F::apply_new_ruleset}});
  Event verdict = ev(K::reload_ruleset, false);
  verdict.firewall_changed = false;  // refused whole: the kernel kept the old one
  d.on(verdict);
  CHECK(d.last == std::vector<Effect>{Effect{F::reload_rejected, "new service ruleset not applied: detail"}});
  CHECK(d.s.plan.watchdog.burst == 5);
  CHECK(d.s.payload == Payload::running);
  CHECK(d.s.stage == Stage::supervising);
  CHECK(d.status_exit() == 0);
}

TEST_CASE("reload whose ruleset was committed but did not verify: the old one goes back", "[boot]") {
  Driver d;
  d.boot();
  Event r = ev(K::reload);
  r.firewall_changed = true;
  d.on(r);
  Event verdict = ev(K::reload_ruleset, false);
  verdict.firewall_changed = true;
  d.on(verdict);
  CHECK(has(d.last, F::reload_rejected));
  CHECK(has(d.last, F::apply_service));
  CHECK_FALSE(has(d.last, F::commit_reload));
  // ... and if even that fails, lockdown and quarantine, payload stopped.
  d.on(K::service_applied, false);
  CHECK(has(d.last, F::apply_lockdown));
  CHECK(has(d.last, F::terminate_payload));
  CHECK(d.s.stage == Stage::quarantined);
  d.on(K::payload_exited);
  CHECK(d.s.payload == Payload::quarantined);
  CHECK(d.status_exit() == 2);
}

TEST_CASE("reload: the ruleset first, then the payload", "[boot]") {
  Driver d;
  d.boot();
  Event r = ev(K::reload);
  r.firewall_changed = true;
  r.payload_changed = true;
  d.on(r);
  CHECK_FALSE(has(d.last, F::terminate_payload));
  d.on(K::reload_ruleset, true);
  CHECK(position(d.last, F::commit_reload) < position(d.last, F::terminate_payload));
  CHECK(d.s.restart_on_exit);
  d.on(K::payload_exited);
  CHECK(d.s.payload == Payload::backoff);
  CHECK(has(d.last, F::arm_restart));
}

TEST_CASE("reload without a ruleset change commits at once", "[boot]") {
  Driver d;
  d.boot();
  Event r = ev(K::reload);
  r.payload_changed = false;
  r.next_plan.watchdog.burst = 7;
  d.on(r);
  CHECK(d.last == std::vector<Effect>{Effect{F::commit_reload}});
  CHECK(d.s.plan.watchdog.burst == 7);
}

TEST_CASE("SIGTERM during gating cancels the gate and finishes", "[boot]") {
  Driver d;
  d.on(K::start).on(K::lockdown_applied);
  d.on(ev(K::stop));
  CHECK(has(d.last, F::cancel_gate));
  CHECK(has(d.last, F::finish));
  d.on(K::gate_done, true, 0);  // the cancelled gate answers late
  CHECK(d.s.stage == Stage::finished);
  CHECK(d.last.empty());
}

TEST_CASE("SIGTERM during backoff cancels the restart and finishes", "[boot]") {
  Driver d;
  d.boot();
  d.on(K::payload_exited);
  REQUIRE(d.s.payload == Payload::backoff);
  d.on(K::stop);
  CHECK(has(d.last, F::cancel_restart));
  CHECK(has(d.last, F::finish));
  d.on(K::restart_due);  // the cancelled timer's handler was already queued
  CHECK_FALSE(has(d.last, F::spawn_payload));
}

TEST_CASE("SIGTERM in the grace period, then a reload: the stop goes on", "[boot]") {
  Driver d;
  d.boot();
  d.on(K::stop);
  CHECK(d.last.back() == Effect{F::terminate_payload});
  d.on(ev(K::reload));
  CHECK(d.last.size() == 1);
  CHECK(d.last[0].kind == F::reload_rejected);
  CHECK(d.s.stage == Stage::stopping);
  d.on(K::stop);  // a second SIGTERM: still stopping, the grace timer keeps running
  CHECK(d.s.stage == Stage::stopping);
  CHECK_FALSE(has(d.last, F::terminate_payload));
  d.on(K::grace_expired);
  CHECK(has(d.last, F::kill_payload));
  d.on(K::payload_exited);
  CHECK(has(d.last, F::finish));
  CHECK(d.s.stage == Stage::finished);
}

TEST_CASE("SIGTERM while a probe restart is in its grace period finishes after the exit", "[boot]") {
  Driver d;
  d.boot();
  d.on(K::probe_hung);
  REQUIRE(d.s.payload == Payload::terminating);
  d.on(K::stop);
  CHECK_FALSE(d.s.restart_on_exit);
  d.on(K::payload_exited);
  CHECK(has(d.last, F::finish));
  CHECK_FALSE(has(d.all, F::arm_restart));
}

TEST_CASE("SIGTERM while the spawn is under way waits for it, then stops it", "[boot]") {
  Driver d;
  d.on(K::start).on(K::lockdown_applied);
  for (std::size_t i = 0; i < gate_count; ++i) d.on(K::gate_done, true, i);
  d.on(K::service_applied).on(K::privileges_dropped);
  REQUIRE(d.s.payload == Payload::starting);
  d.on(K::stop);
  CHECK_FALSE(has(d.last, F::finish));
  d.on(K::payload_spawned);
  CHECK(has(d.last, F::terminate_payload));
  d.on(K::payload_exited);
  CHECK(has(d.last, F::finish));
}

TEST_CASE("after a restart the payload is degraded until healthy_after_s", "[boot]") {
  Driver d;
  d.boot();
  CHECK(d.status_exit() == 0);
  d.on(K::payload_exited);
  CHECK(d.status_exit() == 1);
  d.on(K::restart_due);
  CHECK(d.last == std::vector<Effect>{Effect{F::spawn_payload}});
  d.on(K::payload_spawned);
  CHECK(has(d.last, F::arm_healthy));
  CHECK(d.last[position(d.last, F::arm_healthy)].delay_ms == 2000);
  CHECK(std::string(state_name(d.s)) == "degraded");
  CHECK(d.status_exit() == 1);
  d.on(K::healthy_due);
  CHECK(std::string(state_name(d.s)) == "running");
  CHECK(d.status_exit() == 0);
}

TEST_CASE("a failing liveness probe makes the state degraded until one passes", "[boot]") {
  Driver d;
  d.boot();
  d.on(K::probe_result, false);
  CHECK(std::string(state_name(d.s)) == "degraded");
  d.on(K::probe_result, true);
  CHECK(std::string(state_name(d.s)) == "running");
}

TEST_CASE("crash loop: backoff, then quarantine at the burst", "[boot]") {
  Driver d;
  d.boot();
  for (int i = 0; i < 4; ++i) {
    Event exit = ev(K::payload_exited);
    exit.code = 1;
    exit.now_ms = i * 100;
    d.on(exit);
    REQUIRE(d.s.payload == Payload::backoff);
    d.on(K::restart_due).on(K::payload_spawned);
    CHECK(d.status_exit() == 1);
  }
  Event exit = ev(K::payload_exited);
  exit.code = 1;
  exit.now_ms = 500;
  d.on(exit);
  CHECK(d.s.payload == Payload::quarantined);
  CHECK(d.s.stage == Stage::quarantined);
  CHECK(d.s.restarts == 4);
  CHECK(d.status_exit() == 2);
}

TEST_CASE("an outside quarantine (attestation) stops the payload and locks down", "[boot]") {
  Driver d;
  d.boot();
  d.on(K::quarantine);
  CHECK(has(d.last, F::apply_lockdown));
  CHECK(has(d.last, F::terminate_payload));
  CHECK(d.s.stage == Stage::quarantined);
  d.on(K::payload_exited);
  CHECK(d.s.payload == Payload::quarantined);
  CHECK_FALSE(has(d.last, F::arm_restart));
}
