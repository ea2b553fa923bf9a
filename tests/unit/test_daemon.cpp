// The daemon's real Asio loop (src/boot/daemon.cpp) over fake ports: the
// fail-closed promises seen from outside, through the status snapshot and
// what the fakes were asked to do. No root, no kernel, no processes.
#include <catch2/catch.hpp>

#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <csignal>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../../src/boot/ports.hpp"
#include "pisec/boot.hpp"
#include "pisec/control.hpp"

using namespace pisec;
using namespace pisec::boot;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// How the fake world behaves.
struct Script {
  bool lockdown_ok = true;
  bool service_ok = true;        // the kernel commits the service ruleset
  bool service_verified = true;  // and reading it back matches
  int failing_gate = -1;         // this gate fails (on_failure from the config)
  bool payload_exits = false;    // the payload exits with code 1 right after it starts
  bool attester = false;         // a fake attester answers with `verdict` (else none is wired)
  Verdict verdict = Verdict::affirming;
  // Once this holds on the status snapshot, the harness sends SIGTERM.
  std::function<bool(const status::Snapshot&)> until;
};

// What the daemon asked of the world.
struct Seen {
  std::vector<std::string> firewall;  // "lockdown" / "service", in order
  std::vector<std::size_t> gates;     // gates made, in order
  int spawns = 0;
  std::vector<int> signals;           // sent to the payload
  bool privileges_dropped = false;
  std::vector<AttesterPort::Facts> attested;  // what each round was told
  std::vector<std::string> log;
  status::Snapshot at_until;          // when `until` first held
  status::Snapshot at_stop;           // when the loop shut the control port down
  bool until_held = false;
  bool timed_out = false;             // the harness had to stop the loop itself
};

class FakeControl final : public ControlPort {
 public:
  FakeControl(asio::io_context& io, Host& host, const Script& script, Seen& seen)
      : io_(io), host_(host), script_(script), seen_(seen), poll_(io), deadline_(io) {}
  void start(const config::Config&) override {
    poll();
    // A loop that does not end is a failed test, not a hung test binary.
    deadline_.expires_after(10s);
    deadline_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      seen_.timed_out = true;
      io_.stop();
    });
  }
  void log(const std::string& line) override { seen_.log.push_back(line); }
  void stop() override {
    seen_.at_stop = host_.snapshot();
    poll_.cancel();
    deadline_.cancel();
  }

 private:
  void poll() {
    poll_.expires_after(2ms);
    poll_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      auto s = host_.snapshot();
      if (script_.until(s)) {
        seen_.at_until = s;
        seen_.until_held = true;
        std::raise(SIGTERM);  // through the daemon's own signal handling
        return;
      }
      poll();
    });
  }
  asio::io_context& io_;
  Host& host_;
  const Script& script_;
  Seen& seen_;
  asio::steady_timer poll_, deadline_;
};

class FakeFirewall final : public FirewallPort {
 public:
  FakeFirewall(const Script& script, Seen& seen) : script_(script), seen_(seen) {}
  Result apply(const config::Config&, Mode mode) override {
    Result r;
    if (mode == Mode::lockdown) {
      seen_.firewall.push_back("lockdown");
      r.ok = script_.lockdown_ok;
      r.verified = r.ok;
      r.error = r.ok ? "" : "netlink: Operation not permitted (fake)";
      r.digest = "sha256:lockdown";
    } else {
      seen_.firewall.push_back("service");
      r.ok = script_.service_ok;
      r.verified = r.ok && script_.service_verified;
      r.error = r.verified ? "" : "read back: chain input differs (fake)";
      r.digest = "sha256:service";
    }
    return r;
  }
  std::string text(const config::Config&) override { return "table inet pisec {}"; }

 private:
  const Script& script_;
  Seen& seen_;
};

class FakeGate final : public gates::Gate {
 public:
  FakeGate(std::size_t index, bool passes) : index_(index), passes_(passes) {}
  std::string_view name() const override { return gate_names[index_]; }
  void start(asio::io_context& io, gates::Done done) override {
    asio::post(io, [done = std::move(done), ok = passes_] { done({ok, ok ? "fake: passed" : "fake: refused"}); });
  }

 private:
  std::size_t index_;
  bool passes_;
};

class FakeGates final : public GatesPort {
 public:
  FakeGates(const Script& script, Seen& seen) : script_(script), seen_(seen) {}
  std::unique_ptr<gates::Gate> make(const config::Config&, std::size_t index) override {
    seen_.gates.push_back(index);
    return std::make_unique<FakeGate>(index, static_cast<int>(index) != script_.failing_gate);
  }
  void failed_continue(const config::Config&, std::size_t) override {}

 private:
  const Script& script_;
  Seen& seen_;
};

class FakeSpawner final : public SpawnerPort {
 public:
  FakeSpawner(asio::io_context& io, Host& host, const Script& script, Seen& seen)
      : io_(io), host_(host), script_(script), seen_(seen) {}
  pid_t spawn(const config::Config&) override {
    ++seen_.spawns;
    if (script_.payload_exits) exit_soon(1, 0);
    return 4000 + seen_.spawns;  // never a real process: only this fake signals it
  }
  void signal(int sig) override {
    seen_.signals.push_back(sig);
    exit_soon(0, sig);
  }
  void reaped(int) override {}
  std::int64_t orphans_reaped_inside() const override { return 0; }

 private:
  void exit_soon(int code, int sig) {
    asio::post(io_, [this, code, sig] { host_.payload_exited(code, sig); });
  }
  asio::io_context& io_;
  Host& host_;
  const Script& script_;
  Seen& seen_;
};

class FakeHardwareWatchdog final : public HardwareWatchdogPort {
 public:
  int open(const std::string&, int timeout_s) override { return timeout_s; }
  void pet() override {}
  void magic_close() override {}
  bool is_open() const override { return false; }
};

class FakeProber final : public ProberPort {
 public:
  void probe(asio::io_context& io, const supervisor::ProbeTarget&, std::chrono::milliseconds, Done done) override {
    asio::post(io, [done = std::move(done)] { done(true, ""); });
  }
};

class FakePrivileges final : public PrivilegesPort {
 public:
  explicit FakePrivileges(Seen& seen) : seen_(seen) {}
  std::string drop() override {
    seen_.privileges_dropped = true;
    return "privileges dropped (fake)";
  }

 private:
  Seen& seen_;
};

// Answers each round on the loop, as the real one does after its child exits.
class FakeAttester final : public AttesterPort {
 public:
  FakeAttester(asio::io_context& io, const Script& script, Seen& seen) : io_(io), script_(script), seen_(seen) {}
  bool start(const config::Config&, const Facts& facts, Done done) override {
    seen_.attested.push_back(facts);
    asio::post(io_, [done = std::move(done), v = script_.verdict] {
      Answer a;
      a.verdict = v;
      a.verifier_id = "fake-verifier";
      if (v == Verdict::contraindicated) a.differences = {"payload (srv/app): sha256 expected 00…, got 11…"};
      if (v == Verdict::no_answer) a.detail = "connection refused";
      done(std::move(a));
    });
    return true;
  }
  bool reaped(pid_t, int) override { return false; }
  void cancel() override {}

 private:
  asio::io_context& io_;
  const Script& script_;
  Seen& seen_;
};

config::Config test_config() {
  config::Config cfg;
  cfg.firewall.enabled = true;
  cfg.watchdog.backoff_initial_ms = 60000;  // a backoff the test would notice waiting out
  cfg.watchdog.backoff_max_ms = 60000;
  cfg.payload.stop_grace_ms = 60000;
  return cfg;
}

struct Run {
  Seen seen;
  int rc = -1;
  std::chrono::milliseconds took{};
};

Run run(const Script& script, config::Config cfg = test_config()) {
  Run r;
  auto make = [&script, &seen = r.seen](asio::io_context& io, Host& host, const config::Config&) {
    Ports p;
    p.control = std::make_unique<FakeControl>(io, host, script, seen);
    p.firewall = std::make_unique<FakeFirewall>(script, seen);
    p.gates = std::make_unique<FakeGates>(script, seen);
    p.spawner = std::make_unique<FakeSpawner>(io, host, script, seen);
    p.watchdog = std::make_unique<FakeHardwareWatchdog>();
    p.prober = std::make_unique<FakeProber>();
    p.privileges = std::make_unique<FakePrivileges>(seen);
    if (script.attester) p.attester = std::make_unique<FakeAttester>(io, script, seen);
    return p;
  };
  const auto t0 = std::chrono::steady_clock::now();
  r.rc = run_daemon(std::move(cfg), make);
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  return r;
}

bool state_is(const status::Snapshot& s, const char* state) { return s.state == state; }

}  // namespace

TEST_CASE("daemon: all ports succeed → service ruleset, then the payload; SIGTERM stops it", "[daemon]") {
  Script script;
  script.until = [](const status::Snapshot& s) { return s.payload.state == "running"; };
  auto r = run(script);
  REQUIRE_FALSE(r.seen.timed_out);
  CHECK(r.rc == 0);
  CHECK(r.seen.firewall == std::vector<std::string>{"lockdown", "service"});
  CHECK(r.seen.gates == std::vector<std::size_t>{0, 1, 2, 3});
  CHECK(r.seen.privileges_dropped);
  CHECK(r.seen.spawns == 1);
  CHECK(r.seen.at_until.firewall.mode == "service");
  CHECK(r.seen.at_until.firewall.verified);
  CHECK(r.seen.signals == std::vector<int>{SIGTERM});  // stopped through the spawner
  CHECK(state_is(r.seen.at_stop, "stopping"));
}

TEST_CASE("daemon: lockdown apply fails → quarantined, no gate, no payload", "[daemon]") {
  Script script;
  script.lockdown_ok = false;
  script.until = [](const status::Snapshot& s) { return state_is(s, "quarantined"); };
  auto r = run(script);
  REQUIRE_FALSE(r.seen.timed_out);
  REQUIRE(r.seen.until_held);
  CHECK(status::exit_code(r.seen.at_until) == 2);
  CHECK(r.seen.firewall == std::vector<std::string>{"lockdown"});
  CHECK(r.seen.gates.empty());
  CHECK(r.seen.spawns == 0);
  CHECK_FALSE(r.seen.privileges_dropped);
}

TEST_CASE("daemon: service ruleset does not read back → lockdown again, quarantined, no payload", "[daemon]") {
  Script script;
  script.service_verified = false;
  script.until = [](const status::Snapshot& s) { return state_is(s, "quarantined"); };
  auto r = run(script);
  REQUIRE_FALSE(r.seen.timed_out);
  REQUIRE(r.seen.until_held);
  CHECK(status::exit_code(r.seen.at_until) == 2);
  CHECK(r.seen.firewall == std::vector<std::string>{"lockdown", "service", "lockdown"});
  CHECK(r.seen.at_until.firewall.mode == "lockdown");
  CHECK(r.seen.spawns == 0);
  CHECK_FALSE(r.seen.privileges_dropped);
}

TEST_CASE("daemon: a gate failing with on_failure = quarantine → no service ruleset, no payload", "[daemon]") {
  Script script;
  script.failing_gate = 1;  // clock
  script.until = [](const status::Snapshot& s) { return state_is(s, "quarantined"); };
  auto cfg = test_config();
  cfg.gates.clock.on_failure = config::OnFailure::quarantine;
  auto r = run(script, cfg);
  REQUIRE_FALSE(r.seen.timed_out);
  REQUIRE(r.seen.until_held);
  CHECK(status::exit_code(r.seen.at_until) == 2);
  CHECK(r.seen.firewall == std::vector<std::string>{"lockdown"});
  CHECK(r.seen.gates == std::vector<std::size_t>{0, 1});  // nothing after the failed gate
  REQUIRE(r.seen.at_until.gates.size() == gate_count);
  CHECK(r.seen.at_until.gates[1].status == "failed");
  CHECK(r.seen.at_until.gates[2].status == "pending");
  CHECK(r.seen.spawns == 0);
}

TEST_CASE("daemon: SIGTERM during the restart backoff ends the loop at once", "[daemon]") {
  Script script;
  script.payload_exits = true;
  script.until = [](const status::Snapshot& s) { return s.payload.state == "backoff"; };
  auto r = run(script);
  REQUIRE_FALSE(r.seen.timed_out);
  REQUIRE(r.seen.until_held);
  CHECK(r.rc == 0);
  CHECK(r.seen.at_until.payload.last_exit.code == 1);
  CHECK(status::exit_code(r.seen.at_until) == 1);  // degraded, never 0 in a crash loop
  CHECK(r.seen.spawns == 1);                       // the backoff was not waited out
  CHECK(r.took < 5s);                              // the backoff is 60 s
}

// ---- attestation through the loop ------------------------------------------

namespace {
config::Config attest_config(bool required) {
  auto cfg = test_config();
  cfg.attestation.enabled = true;
  cfg.attestation.required = required;
  return cfg;
}
}  // namespace

TEST_CASE("daemon: attestation required and affirming → payload runs; status has the verdict", "[daemon][attest]") {
  Script script;
  script.attester = true;
  script.until = [](const status::Snapshot& s) { return s.payload.state == "running"; };
  auto r = run(script, attest_config(true));
  REQUIRE_FALSE(r.seen.timed_out);
  REQUIRE(r.seen.attested.size() == 1);
  // Told what only the daemon knows: the ruleset as read back, the gates.
  CHECK(r.seen.attested[0].ruleset_digest == "sha256:service");
  CHECK(r.seen.attested[0].gates.size() == gate_count);
  CHECK(r.seen.spawns == 1);
  CHECK(r.seen.at_until.attestation.enabled);
  CHECK(r.seen.at_until.attestation.verdict == "affirming");
  CHECK(r.seen.at_until.attestation.verifier_id == "fake-verifier");
  CHECK(r.seen.at_until.attestation.rounds == 1);
  const auto json = status::to_json(r.seen.at_until);
  CHECK(json.find("\"attestation\":{") != std::string::npos);
  CHECK(status::from_json(json).attestation.verdict == "affirming");
}

TEST_CASE("daemon: attestation required and contraindicated → lockdown again, no payload", "[daemon][attest]") {
  Script script;
  script.attester = true;
  script.verdict = Verdict::contraindicated;
  script.until = [](const status::Snapshot& s) { return state_is(s, "quarantined"); };
  auto r = run(script, attest_config(true));
  REQUIRE_FALSE(r.seen.timed_out);
  REQUIRE(r.seen.until_held);
  CHECK(r.seen.firewall == std::vector<std::string>{"lockdown", "service", "lockdown"});
  CHECK(r.seen.spawns == 0);
  CHECK(r.seen.at_until.attestation.verdict == "contraindicated");
  REQUIRE(r.seen.at_until.attestation.differences.size() == 1);
  CHECK(status::exit_code(r.seen.at_until) == 2);
}

TEST_CASE("daemon: attestation enabled with no attester → no answer → quarantined", "[daemon][attest]") {
  Script script;  // no attester wired: every round has no answer
  script.until = [](const status::Snapshot& s) { return state_is(s, "quarantined"); };
  auto r = run(script, attest_config(true));
  REQUIRE_FALSE(r.seen.timed_out);
  REQUIRE(r.seen.until_held);
  CHECK(r.seen.spawns == 0);
  CHECK(r.seen.at_until.attestation.verdict == "no_answer");
}

TEST_CASE("attester child: argv and answers", "[attest]") {
  AttesterPort::Facts f;
  f.ruleset_digest = "sha256:ab";
  f.gates = {{"entropy", "passed"}, {"clock", "skipped"}};
  CHECK(attest_argv("/etc/pisecd.toml", f) ==
        std::vector<std::string>{"pisecd", "attest", "-c", "/etc/pisecd.toml", "--json", "--ruleset", "sha256:ab",
                                 "--gate", "entropy=passed", "--gate", "clock=skipped"});
  CHECK(attest_argv("/c", {}) == std::vector<std::string>{"pisecd", "attest", "-c", "/c", "--json", "--ruleset", "none"});

  const auto exited = [](int code) { return code << 8; };  // a wait status of exit(code)
  const std::string ok = R"({"verdict":"affirming","verifier_id":"v1","differences":[],"detail":""})";
  auto a = attest_answer(exited(0), ok);
  CHECK(a.verdict == Verdict::affirming);
  CHECK(a.verifier_id == "v1");
  const std::string bad = R"({"verdict":"contraindicated","verifier_id":"v1","differences":["payload"],"detail":""})";
  a = attest_answer(exited(2), bad);
  CHECK(a.verdict == Verdict::contraindicated);
  CHECK(a.differences == std::vector<std::string>{"payload"});
  // Not believed: a verdict its exit code contradicts, killed, garbage, empty.
  CHECK(attest_answer(exited(2), ok).verdict == Verdict::no_answer);
  CHECK(attest_answer(exited(0), bad).verdict == Verdict::no_answer);
  CHECK(attest_answer(SIGKILL, ok).verdict == Verdict::no_answer);
  CHECK(attest_answer(SIGKILL, ok).detail.find("signal 9") != std::string::npos);
  CHECK(attest_answer(exited(0), "affirming").verdict == Verdict::no_answer);
  CHECK(attest_answer(exited(0), "").verdict == Verdict::no_answer);
  CHECK(attest_answer(exited(7), R"({"verdict":"x","verifier_id":"","differences":[],"detail":""})").verdict ==
        Verdict::no_answer);
  a = attest_answer(exited(3), R"({"verdict":"no_answer","verifier_id":"","differences":[],"detail":"refused"})");
  CHECK(a.verdict == Verdict::no_answer);
  CHECK(a.detail == "refused");
}
