#pragma once
// The boot sequence and the payload's life as one explicit state machine,
// s6-supervise style: a state, an event, and a pure transition that says what
// the next state is and which effects the event loop must carry out. The loop
// (src/boot/daemon.cpp) only turns signals, timers, child exits and control
// requests into events, and effects into calls on its ports.
//
//   lockdown → gating (entropy, clock, integrity, arch) → service
//     → [attesting, with attestation.required] → supervising
//   any failure that leaves the device exposed or unproven → quarantined
//   the first SIGTERM → stopping → finished; nothing leaves stopping
//
// With [mux] enabled a second process, the /debug mux, lives beside the
// payload: started with it, restarted with backoff when it exits (never
// given up), kept while the service ruleset stands (so a quarantined payload
// can still be looked at), stopped with it.
//
// With [attestation] enabled the daemon proves what it booted to the
// verifier after the service ruleset: before the payload starts when
// `required`, beside it otherwise, and again on SIGUSR1. A contraindicated
// verdict, or no answer with on_no_answer = quarantine, puts the lockdown
// ruleset back and quarantines.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pisec/config.hpp"
#include "pisec/supervisor.hpp"

namespace pisec::boot {

inline constexpr std::size_t gate_count = 4;
// Boot order, the one place it is written down.
inline constexpr const char* gate_names[gate_count] = {"entropy", "clock", "integrity", "arch"};

enum class Stage {
  idle,         // before start
  lockdown,     // applying the lockdown ruleset
  gating,       // running gate `State::gate`
  service,      // applying the service ruleset, then dropping privileges
  attesting,    // attestation.required: the verifier's verdict before the payload
  supervising,  // the payload's life under the watchdog
  quarantined,  // locked down or the payload given up; waits for SIGTERM
  stopping,     // from the first SIGTERM on: only towards finished
  finished,     // the loop may exit
};

enum class Payload { stopped, starting, running, backoff, terminating, quarantined };
// off: [mux] disabled.
enum class Mux { off, stopped, starting, running, backoff, terminating };

// What the machine needs to know of the configuration.
struct GatePlan {
  bool enabled = true;
  bool quarantine_on_failure = true;  // on_failure = "quarantine"
};

struct Plan {
  bool firewall = true;  // firewall.enabled
  GatePlan gates[gate_count];
  std::int64_t healthy_after_ms = 30000;
  config::Watchdog watchdog;  // for the restart policy
  bool mux = false;           // mux.enabled
  enum class Attest { off, beside, required };  // [attestation] enabled / required
  Attest attest = Attest::off;
  bool attest_no_answer_quarantines = true;     // on_no_answer = "quarantine"
};

// A verdict as Event::code carries it (the exit codes of `pisecd attest`).
enum class Verdict { affirming = 0, warning = 1, contraindicated = 2, no_answer = 3 };
const char* to_string(Verdict);
Plan plan_from(const config::Config& cfg);
// The [gates.*] table of gate `index`, in the boot order of gate_names.
const config::GateCommon& gate_common(const config::Config& cfg, std::size_t index);

struct State {
  explicit State(Plan p)
      : plan(std::move(p)), policy(plan.watchdog), mux_policy(mux_watchdog(plan.watchdog)),
        mux(plan.mux ? Mux::stopped : Mux::off) {}
  // The mux's restart policy: the payload's backoff, always restarting, never
  // given up (without it the public port answers nothing).
  static config::Watchdog mux_watchdog(config::Watchdog w);

  Plan plan;
  Stage stage = Stage::idle;
  std::size_t gate = 0;         // the gate running, while gating
  bool gate_continued = false;  // a gate failed with on_failure = continue
  bool firewall_service = false;  // the service ruleset is what the kernel has
  Payload payload = Payload::stopped;
  bool payload_healthy = false;   // up for healthy_after_s since its last (re)start
  bool probe_ok = true;           // the last liveness probe passed (or none ran yet)
  bool restart_on_exit = false;   // terminating for a restart the daemon chose
  bool reload_pending = false;    // a reload waiting for its ruleset's verdict
  Plan reload_plan;               // ... and what it will commit if the ruleset holds
  bool reload_payload_changed = false;
  bool reload_mux_changed = false;
  int restarts = 0;
  supervisor::RestartPolicy policy;
  supervisor::Decision forced;  // what follows a restart the daemon chose
  std::string quarantine_reason;
  bool attest_unproven = false;   // the last attestation had no answer (on_no_answer = continue)

  supervisor::RestartPolicy mux_policy;
  Mux mux = Mux::off;
  bool mux_allowed = false;          // privileges dropped and the service ruleset not withdrawn
  bool mux_restart_on_exit = false;  // terminating for a reload: back at once
  int mux_restarts = 0;
};

struct Event {
  enum class Kind {
    start,
    lockdown_applied,   // ok, detail
    gate_done,          // index, ok (passed), detail
    service_applied,    // ok (committed and verified), detail
    privileges_dropped, // ok, detail
    payload_spawned,    // ok, detail (error)
    payload_exited,     // code, signal
    restart_due,        // the backoff timer fired
    healthy_due,        // the payload has been up healthy_after_s
    probe_result,       // ok: one liveness probe passed or failed (running needs the last to pass)
    probe_hung,         // the liveness probe gave its verdict; detail = why
    grace_expired,      // the payload ignored SIGTERM for stop_grace_ms
    stop,               // SIGTERM/SIGINT; detail = the signal's name
    reload,             // a new, valid configuration; firewall_changed/payload_changed
    reload_ruleset,     // ok, detail: the new service ruleset's verdict;
                        // firewall_changed: the kernel committed it (so it holds something new)
    quarantine,         // an outside verdict; detail = why
    attest_now,         // SIGUSR1: attest again
    attested,           // code: a Verdict; detail: the verifier's differences or why there was no answer
    mux_spawned,        // ok, detail (error)
    mux_exited,         // code, signal
    mux_restart_due,    // the mux's backoff timer fired
    mux_grace_expired,  // the mux ignored SIGTERM
  };
  Kind kind = Kind::start;
  bool ok = false;
  std::size_t index = 0;
  std::string detail;
  int code = 0, signal = 0;
  std::int64_t now_ms = 0;     // monotonic
  std::int64_t uptime_ms = 0;  // how long the current/last payload run lasted
  double jitter = 0;           // uniform [0, 1), for the backoff
  bool firewall_changed = false, payload_changed = false, mux_changed = false;
  Plan next_plan;              // for reload
};

struct Effect {
  enum class Kind {
    log,               // text
    apply_lockdown,
    run_gate,          // index
    skip_gate,         // index (disabled in config)
    gate_continued,    // index: failed, on_failure = continue (the clock raises itself to its floor)
    cancel_gate,
    apply_service,
    drop_privileges,
    spawn_payload,
    terminate_payload, // SIGTERM inside the sandbox and arm the grace timer
    kill_payload,      // SIGKILL
    arm_restart,       // delay_ms
    cancel_restart,
    arm_healthy,       // delay_ms
    cancel_healthy,
    start_probe,
    stop_probe,
    apply_new_ruleset, // the reload's service ruleset (verified before anything else changes)
    commit_reload,     // the new configuration replaces the old; payload restarts if it changed
    reload_rejected,   // text: why; nothing of it applied
    finish,            // exit the loop (exit code 0)
    spawn_mux,
    terminate_mux,     // SIGTERM and arm the mux's grace timer
    kill_mux,          // SIGKILL
    arm_mux_restart,   // delay_ms
    cancel_mux_restart,
    attest,            // one attestation round (a round already running answers for this one)
  };
  Effect(Kind k, std::string t = {}, std::size_t i = 0, std::int64_t delay = 0)
      : kind(k), text(std::move(t)), index(i), delay_ms(delay) {}
  Kind kind;
  std::string text;
  std::size_t index = 0;
  std::int64_t delay_ms = 0;
  bool operator==(const Effect&) const = default;
};

struct Transition {
  State next;
  std::vector<Effect> effects;
};

// Pure: no clocks, no I/O, no randomness beyond what the event carries.
Transition transition(State state, const Event& event);

// The pinned names status reports.
const char* state_name(const State&);    // lockdown|gating|running|degraded|quarantined|stopping
                                         // (attesting reports gating: the device is still proving itself)
const char* payload_name(const State&);  // stopped|starting|running|backoff|quarantined
const char* mux_name(const State&);      // stopped|starting|running|backoff (off: not reported)
const char* to_string(Stage);
const char* to_string(Event::Kind);
const char* to_string(Effect::Kind);

}  // namespace pisec::boot

namespace pisec::daemon {

// `pisecd run`: lockdown → gates → service ruleset → sandboxed payload under
// the watchdog, with the control socket answering throughout. Runs in the
// foreground until SIGTERM/SIGINT; returns the process exit code.
int run(config::Config&& cfg);

}  // namespace pisec::daemon
