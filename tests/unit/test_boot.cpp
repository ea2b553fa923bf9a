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

const Stage all_stages[] = {Stage::idle, Stage::lockdown, Stage::gating, Stage::service, Stage::attesting,
                            Stage::supervising, Stage::quarantined, Stage::stopping, Stage::finished};
const Payload all_payloads[] = {Payload::stopped, Payload::starting, Payload::running,
                                Payload::backoff, Payload::terminating, Payload::quarantined};
const K all_events[] = {K::start, K::lockdown_applied, K::gate_done, K::service_applied,
                        K::privileges_dropped, K::payload_spawned, K::payload_exited, K::restart_due,
                        K::healthy_due, K::probe_result, K::probe_hung, K::grace_expired, K::stop,
                        K::reload, K::reload_ruleset, K::quarantine, K::attest_now, K::attested};

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
      for (std::size_t index : {std::size_t{0}, std::size_t{2}})
        for (int code : {0, 1, 2, 3, 9}) {  // exit codes; for attested, the verdicts and one out of range
          if (kind != K::attested && code != 1) continue;
          Event e = ev(kind, ok == 1, index);
          e.firewall_changed = index == 2;
          e.payload_changed = ok == 1;
          e.code = code;
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
      // A refusing verdict (contraindicated, no answer, anything unknown:
      // the test plan quarantines on no answer) never lets the payload run,
      // and withdraws the service ruleset.
      if (e.kind == K::attested && e.code != 0 && e.code != 1 &&
          (s.stage == Stage::attesting || s.stage == Stage::supervising)) {
        CHECK(n.stage == Stage::quarantined);
        CHECK_FALSE(has(fx, F::spawn_payload));
        if (s.firewall_service) CHECK(has(fx, F::apply_lockdown));
      }
      // Attestation waits for the service ruleset.
      if (has(fx, F::attest)) CHECK((n.stage == Stage::attesting || n.stage == Stage::supervising));
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

// A running payload under an outside verdict: lockdown, stopped, never restarted.
static void locked_down_and_stopped(Driver& d) {
  CHECK(has(d.last, F::apply_lockdown));
  CHECK(has(d.last, F::terminate_payload));
  CHECK(d.s.stage == Stage::quarantined);
  d.on(K::payload_exited);
  CHECK(d.s.payload == Payload::quarantined);
  CHECK_FALSE(has(d.last, F::arm_restart));
}

TEST_CASE("an outside quarantine stops the payload and locks down", "[boot]") {
  Driver d;
  d.boot();
  d.on(K::quarantine);
  locked_down_and_stopped(d);
}

// ---- attestation ------------------------------------------------------------

namespace {

Plan attest_plan(Plan::Attest mode, bool no_answer_quarantines = true) {
  Plan p = test_plan();
  p.attest = mode;
  p.attest_no_answer_quarantines = no_answer_quarantines;
  return p;
}

Event verdict(Verdict v, std::string detail = {}) {
  Event e = ev(K::attested, v != Verdict::no_answer);
  e.code = static_cast<int>(v);
  e.detail = std::move(detail);
  return e;
}

// A machine with this attestation plan, driven through start → lockdown →
// gates → service → privileges.
Driver attesting(Plan::Attest mode, bool no_answer_quarantines = true) {
  Driver d;
  d.s = State(attest_plan(mode, no_answer_quarantines));
  d.on(K::start).on(K::lockdown_applied);
  for (std::size_t i = 0; i < gate_count; ++i) d.on(K::gate_done, true, i);
  d.on(K::service_applied).on(K::privileges_dropped);
  return d;
}

}  // namespace

TEST_CASE("attestation required: the payload waits for an affirming verdict", "[boot][attest]") {
  Driver d = attesting(Plan::Attest::required);
  CHECK(d.s.stage == Stage::attesting);
  CHECK(has(d.last, F::attest));
  CHECK_FALSE(has(d.last, F::spawn_payload));
  CHECK(std::string(state_name(d.s)) == "gating");
  d.on(verdict(Verdict::affirming));
  CHECK(d.s.stage == Stage::supervising);
  CHECK(has(d.last, F::spawn_payload));
  d.on(K::payload_spawned);
  CHECK(std::string(state_name(d.s)) == "running");
}

TEST_CASE("attestation required: a warning lets the payload run", "[boot][attest]") {
  Driver d = attesting(Plan::Attest::required);
  d.on(verdict(Verdict::warning, "kernel: no expected value"));
  CHECK(has(d.last, F::spawn_payload));
}

TEST_CASE("attestation required: contraindicated → lockdown, quarantined, payload never started",
          "[boot][attest]") {
  Driver d = attesting(Plan::Attest::required);
  d.on(verdict(Verdict::contraindicated, "payload differs"));
  CHECK(has(d.last, F::apply_lockdown));
  CHECK(d.s.stage == Stage::quarantined);
  CHECK(d.s.quarantine_reason.find("contraindicated: payload differs") != std::string::npos);
  CHECK_FALSE(has(d.all, F::spawn_payload));
  CHECK(d.status_exit() == 2);
  d.on(K::attest_now);  // no second chance from a quarantine
  CHECK_FALSE(has(d.last, F::attest));
}

TEST_CASE("attestation required: no answer follows on_no_answer", "[boot][attest]") {
  SECTION("quarantine") {
    Driver d = attesting(Plan::Attest::required, true);
    d.on(verdict(Verdict::no_answer, "cannot connect"));
    CHECK(has(d.last, F::apply_lockdown));
    CHECK(d.s.stage == Stage::quarantined);
    CHECK_FALSE(has(d.all, F::spawn_payload));
  }
  SECTION("continue: the payload runs, the state says degraded until an answer") {
    Driver d = attesting(Plan::Attest::required, false);
    d.on(verdict(Verdict::no_answer, "cannot connect"));
    CHECK(has(d.last, F::spawn_payload));
    CHECK_FALSE(has(d.last, F::apply_lockdown));
    d.on(K::payload_spawned);
    CHECK(std::string(state_name(d.s)) == "degraded");
    d.on(K::attest_now);
    CHECK(has(d.last, F::attest));
    d.on(verdict(Verdict::affirming));
    CHECK(std::string(state_name(d.s)) == "running");
  }
}

TEST_CASE("attestation beside the payload: it starts at once; a later contraindicated quarantines",
          "[boot][attest]") {
  Driver d = attesting(Plan::Attest::beside);
  CHECK(d.s.stage == Stage::supervising);
  CHECK(has(d.last, F::spawn_payload));
  CHECK(has(d.last, F::attest));
  d.on(K::payload_spawned);
  d.on(verdict(Verdict::contraindicated, "ruleset differs"));
  locked_down_and_stopped(d);
}

TEST_CASE("SIGUSR1: attests again while supervising, not before the service ruleset", "[boot][attest]") {
  Driver d;
  d.s = State(attest_plan(Plan::Attest::beside));
  d.on(K::start).on(K::lockdown_applied);
  d.on(K::attest_now);
  CHECK_FALSE(has(d.last, F::attest));
  CHECK(has(d.last, F::log));
  for (std::size_t i = 0; i < gate_count; ++i) d.on(K::gate_done, true, i);
  d.on(K::service_applied).on(K::privileges_dropped).on(K::payload_spawned);
  d.on(verdict(Verdict::affirming));
  d.on(K::attest_now);
  CHECK(has(d.last, F::attest));
  Driver off;
  off.boot();
  off.on(K::attest_now);
  CHECK_FALSE(has(off.last, F::attest));
}

TEST_CASE("SIGTERM while attesting finishes without starting the payload", "[boot][attest]") {
  Driver d = attesting(Plan::Attest::required);
  d.on(K::stop);
  CHECK(d.s.stage == Stage::finished);
  d.on(verdict(Verdict::affirming));  // the verdict arrives late: nothing starts
  CHECK_FALSE(has(d.all, F::spawn_payload));
}

// ---- the mux: a second process beside the payload ----------------------------

namespace {

Plan mux_plan() {
  Plan p = test_plan();
  p.mux = true;
  return p;
}

Event mux_ev(K kind, bool ok = true) {
  Event e = ev(kind, ok);
  e.next_plan = mux_plan();
  return e;
}

struct MuxDriver : Driver {
  MuxDriver() { s = State(mux_plan()); }
  MuxDriver& on(K kind, bool ok = true, std::size_t index = 0) {
    Event e = mux_ev(kind, ok);
    e.index = index;
    Driver::on(e);
    return *this;
  }
  MuxDriver& boot() {
    on(K::start).on(K::lockdown_applied);
    for (std::size_t i = 0; i < gate_count; ++i) on(K::gate_done, true, i);
    on(K::service_applied).on(K::privileges_dropped);
    return on(K::payload_spawned).on(K::mux_spawned);
  }
};

const Mux all_muxes[] = {Mux::stopped, Mux::starting, Mux::running, Mux::backoff, Mux::terminating};
const K mux_events[] = {K::mux_spawned, K::mux_exited, K::mux_restart_due, K::mux_grace_expired, K::stop,
                        K::payload_exited, K::payload_spawned, K::service_applied, K::quarantine, K::reload,
                        K::privileges_dropped, K::grace_expired};

}  // namespace

TEST_CASE("every (state, event) pair with a mux keeps the machine's promises", "[boot][mux]") {
  std::size_t pairs = 0;
  for (auto stage : all_stages)
    for (auto payload : all_payloads)
      for (auto mux : all_muxes)
        for (int allowed = 0; allowed < 2; ++allowed)
          for (auto kind : mux_events)
            for (int ok = 0; ok < 2; ++ok) {
              State s(mux_plan());
              s.stage = stage;
              s.payload = payload;
              s.mux = mux;
              s.mux_allowed = allowed == 1;
              s.firewall_service = true;
              s.payload_healthy = true;
              Event e = mux_ev(kind, ok == 1);
              e.mux_changed = ok == 1;
              auto t = transition(s, e);
              const auto& n = t.next;
              const auto& fx = t.effects;
              ++pairs;
              INFO("stage " << to_string(stage) << ", payload " << static_cast<int>(payload) << ", mux "
                            << static_cast<int>(mux) << ", allowed " << allowed << ", event " << to_string(kind)
                            << " ok=" << ok << " → " << to_string(n.stage));
              // Nothing of the mux starts once the stop began, or without the service ruleset.
              if (stage == Stage::stopping || stage == Stage::finished || kind == K::stop) {
                CHECK_FALSE(has(fx, F::spawn_mux));
                CHECK_FALSE(has(fx, F::arm_mux_restart));
              }
              if (has(fx, F::spawn_mux)) {
                CHECK(n.mux_allowed);
                CHECK(n.mux == Mux::starting);
                CHECK((n.stage == Stage::supervising || n.stage == Stage::quarantined));
              }
              // The machine finishes only when the mux is gone too.
              if (has(fx, F::finish)) CHECK((n.mux == Mux::stopped || n.mux == Mux::off));
              // A stop or a lost service ruleset takes a running mux down.
              if ((kind == K::stop && stage != Stage::stopping && stage != Stage::finished) ||
                  (kind == K::service_applied && !ok && (stage == Stage::service || stage == Stage::supervising))) {
                CHECK_FALSE(n.mux_allowed);
                if (mux == Mux::running) CHECK(has(fx, F::terminate_mux));
                if (mux == Mux::backoff) CHECK(has(fx, F::cancel_mux_restart));
              }
              // "running" needs the mux up: the public port answers through it.
              if (std::string(state_name(n)) == "running") CHECK(n.mux == Mux::running);
              // The payload is never touched by the mux's events.
              if (kind == K::mux_spawned || kind == K::mux_exited || kind == K::mux_restart_due ||
                  kind == K::mux_grace_expired) {
                CHECK(n.payload == s.payload);
                CHECK_FALSE(has(fx, F::terminate_payload));
                CHECK_FALSE(has(fx, F::spawn_payload));
              }
            }
  CHECK(pairs == std::size(all_stages) * std::size(all_payloads) * std::size(all_muxes) * 2 *
                     std::size(mux_events) * 2);
}

TEST_CASE("mux: started with the payload, running only once both are up", "[boot][mux]") {
  MuxDriver d;
  d.on(K::start).on(K::lockdown_applied);
  for (std::size_t i = 0; i < gate_count; ++i) d.on(K::gate_done, true, i);
  d.on(K::service_applied).on(K::privileges_dropped);
  CHECK(has(d.last, F::spawn_payload));
  CHECK(has(d.last, F::spawn_mux));
  d.on(K::payload_spawned);
  CHECK(std::string(state_name(d.s)) == "degraded");  // the public port has no mux yet
  d.on(K::mux_spawned);
  CHECK(std::string(state_name(d.s)) == "running");
  CHECK(std::string(mux_name(d.s)) == "running");
}

TEST_CASE("mux: a crash is restarted with backoff, the payload left alone", "[boot][mux]") {
  MuxDriver d;
  d.boot();
  Event crash = mux_ev(K::mux_exited);
  crash.signal = 9;
  d.Driver::on(crash);
  CHECK(d.s.mux == Mux::backoff);
  CHECK(has(d.last, F::arm_mux_restart));
  CHECK_FALSE(has(d.last, F::terminate_payload));
  CHECK(std::string(state_name(d.s)) == "degraded");
  CHECK(d.status_exit() == 1);
  d.on(K::mux_restart_due);
  CHECK(d.last == std::vector<Effect>{Effect{F::spawn_mux}});
  d.on(K::mux_spawned);
  CHECK(d.s.mux_restarts == 1);
  CHECK(d.s.payload == Payload::running);
  CHECK(d.s.restarts == 0);
  CHECK(std::string(state_name(d.s)) == "running");
  // A mux that cannot even start is retried too, never given up.
  for (int i = 0; i < 20; ++i) {
    d.on(K::mux_exited).on(K::mux_restart_due).on(K::mux_spawned, false);
    CHECK(d.s.mux == Mux::backoff);
    CHECK(d.s.stage == Stage::supervising);
    d.on(K::mux_restart_due).on(K::mux_spawned);
  }
}

TEST_CASE("mux: SIGTERM stops both; the daemon finishes when both are gone", "[boot][mux]") {
  MuxDriver d;
  d.boot();
  d.on(K::stop);
  CHECK(has(d.last, F::terminate_payload));
  CHECK(has(d.last, F::terminate_mux));
  d.on(K::payload_exited);
  CHECK_FALSE(has(d.last, F::finish));
  CHECK(d.s.stage == Stage::stopping);
  d.on(K::mux_grace_expired);
  CHECK(d.last == std::vector<Effect>{Effect{F::log, "mux: still running after its stop grace period, sending SIGKILL"},
                                      Effect{F::kill_mux}});
  d.on(K::mux_exited);
  CHECK(has(d.last, F::finish));
  CHECK(d.s.stage == Stage::finished);
}

TEST_CASE("mux: kept while a given-up payload is quarantined, withdrawn with the service ruleset", "[boot][mux]") {
  MuxDriver d;
  d.boot();
  for (int i = 0; i < 5; ++i) d.on(K::payload_exited).on(K::restart_due).on(K::payload_spawned);
  d.on(K::payload_exited);
  REQUIRE(d.s.stage == Stage::quarantined);
  CHECK(d.s.mux == Mux::running);  // the operator's window onto a quarantined payload
  CHECK_FALSE(has(d.all, F::terminate_mux));

  MuxDriver lost;
  lost.boot();
  lost.on(K::reload_ruleset);  // not pending: ignored
  Event gone = mux_ev(K::service_applied, false);
  lost.Driver::on(gone);
  CHECK(lost.s.stage == Stage::quarantined);
  CHECK(has(lost.last, F::apply_lockdown));
  CHECK(has(lost.last, F::terminate_mux));
  lost.on(K::mux_exited);
  CHECK(lost.s.mux == Mux::stopped);
  CHECK_FALSE(has(lost.last, F::arm_mux_restart));
}

TEST_CASE("mux: a reload that changes [mux] restarts only the mux", "[boot][mux]") {
  MuxDriver d;
  d.boot();
  Event reload = mux_ev(K::reload);
  reload.mux_changed = true;
  d.Driver::on(reload);
  CHECK(has(d.last, F::commit_reload));
  CHECK(has(d.last, F::terminate_mux));
  CHECK_FALSE(has(d.last, F::terminate_payload));
  d.on(K::mux_exited);
  CHECK(d.last.back() == Effect{F::spawn_mux});  // at once, not after a backoff
  d.on(K::mux_spawned);
  CHECK(std::string(state_name(d.s)) == "running");
}
