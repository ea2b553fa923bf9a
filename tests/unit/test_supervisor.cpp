#include <catch2/catch.hpp>

#include "pisec/supervisor.hpp"

using namespace pisec::supervisor;

namespace {
pisec::config::Watchdog watchdog(int initial, int max, int burst, int window_s) {
  pisec::config::Watchdog w;
  w.backoff_initial_ms = initial;
  w.backoff_max_ms = max;
  w.burst = burst;
  w.burst_window_s = window_s;
  w.healthy_after_s = 30;
  return w;
}
const Exit crash{1, 0};
}  // namespace

TEST_CASE("crash loop: growing delays, then quarantine at the burst", "[supervisor]") {
  RestartPolicy p(watchdog(100, 1000, 5, 60));
  std::int64_t now = 0;
  std::vector<std::int64_t> delays;
  for (int i = 0; i < 4; ++i) {
    auto d = p.on_exit(crash, now, 5, 0.0);
    REQUIRE(d.action == Action::restart);
    delays.push_back(d.delay_ms);
    now += d.delay_ms + 5;
  }
  CHECK(delays == std::vector<std::int64_t>{100, 200, 400, 800});
  auto last = p.on_exit(crash, now, 5, 0.0);
  CHECK(last.action == Action::quarantine);
  CHECK(last.reason.find("5 exits within 60 s") != std::string::npos);
}

TEST_CASE("backoff is capped and jitter stays under the cap", "[supervisor]") {
  RestartPolicy p(watchdog(400, 1000, 100, 60));
  std::int64_t now = 0;
  std::vector<std::int64_t> delays;
  for (int i = 0; i < 5; ++i) {
    auto d = p.on_exit(crash, now, 5, 0.99);
    delays.push_back(d.delay_ms);
    now += 10;
  }
  CHECK(delays[0] == 499);  // 400 + 25% * 0.99, floored
  for (auto d : delays) CHECK(d <= 1000);
  CHECK(delays.back() == 1000);
}

TEST_CASE("exits outside the window do not count towards the burst", "[supervisor]") {
  RestartPolicy p(watchdog(0, 0, 3, 10));
  CHECK(p.on_exit(crash, 0, 5, 0).action == Action::restart);
  CHECK(p.on_exit(crash, 1000, 5, 0).action == Action::restart);
  // 11 s later both earlier exits have left the window.
  CHECK(p.on_exit(crash, 12000, 5, 0).action == Action::restart);
  CHECK(p.on_exit(crash, 12001, 5, 0).action == Action::restart);
  CHECK(p.on_exit(crash, 12002, 5, 0).action == Action::quarantine);
}

TEST_CASE("zero initial backoff restarts at once", "[supervisor]") {
  RestartPolicy p(watchdog(0, 5000, 10, 60));
  for (int i = 0; i < 5; ++i) CHECK(p.on_exit(crash, i, 1, 0.5).delay_ms == 0);
}

TEST_CASE("a run that stayed up long enough resets the backoff", "[supervisor]") {
  RestartPolicy p(watchdog(100, 10000, 10, 600));
  p.on_exit(crash, 0, 5, 0);
  p.on_exit(crash, 200, 5, 0);
  CHECK(p.on_exit(crash, 700, 5, 0).delay_ms == 400);
  CHECK(p.on_exit(crash, 100000, 60000, 0).delay_ms == 100);
}

TEST_CASE("restart policies: never, on-failure, always", "[supervisor]") {
  auto w = watchdog(100, 1000, 5, 60);
  w.restart = pisec::config::RestartPolicy::never;
  CHECK(RestartPolicy(w).on_exit(crash, 0, 5, 0).action == Action::stop);
  w.restart = pisec::config::RestartPolicy::on_failure;
  CHECK(RestartPolicy(w).on_exit(Exit{0, 0}, 0, 5, 0).action == Action::stop);
  CHECK(RestartPolicy(w).on_exit(Exit{0, 9}, 0, 5, 0).action == Action::restart);
  w.restart = pisec::config::RestartPolicy::always;
  CHECK(RestartPolicy(w).on_exit(Exit{0, 0}, 0, 5, 0).action == Action::restart);
}

TEST_CASE("the probe asks for a restart after N consecutive failures only", "[supervisor]") {
  ProbeTracker t(3);
  CHECK_FALSE(t.on_result(false));
  CHECK_FALSE(t.on_result(false));
  CHECK_FALSE(t.on_result(true));
  CHECK_FALSE(t.on_result(false));
  CHECK_FALSE(t.on_result(false));
  CHECK(t.on_result(false));
}

TEST_CASE("probe URLs", "[supervisor]") {
  auto h = parse_probe("http://127.0.0.1:8080/healthz");
  CHECK(h.kind == ProbeTarget::Kind::http);
  CHECK(h.host == "127.0.0.1");
  CHECK(h.port == 8080);
  CHECK(h.path == "/healthz");
  auto t = parse_probe("tcp://localhost:22");
  CHECK(t.kind == ProbeTarget::Kind::tcp);
  CHECK(t.port == 22);
  CHECK(parse_probe("").kind == ProbeTarget::Kind::none);
}
