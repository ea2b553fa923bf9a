// The mux's pure parts: routing, bearer tokens, the failure limiter, metrics text.
#include <catch2/catch.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "pisec/mux.hpp"

using namespace pisec::mux;

TEST_CASE("mux routes /debug/ spellings to itself and everything else to the app", "[mux]") {
  CHECK(classify("/").route == Route::app);
  CHECK(classify("/index.html").route == Route::app);
  CHECK(classify("/debugger").route == Route::app);
  CHECK(classify("/api/debug/status").route == Route::app);
  CHECK(classify("*").route == Route::app);

  CHECK(classify("/debug/status").route == Route::debug_status);
  CHECK(classify("/debug/metrics").route == Route::debug_metrics);
  CHECK(classify("/debug/logs").route == Route::debug_logs);
  CHECK(classify("/debug").route == Route::debug_unknown);
  CHECK(classify("/debug/").route == Route::debug_unknown);
  CHECK(classify("/debug/nothing").route == Route::debug_unknown);
  CHECK(classify("/debug/status/x").route == Route::debug_unknown);

  // Every other spelling of the same path is the mux's too, never the app's.
  for (const char* t : {"/DEBUG/status", "/%64ebug/status", "/%44EBUG/status", "//debug/status",
                        "/./debug/status", "/app/../debug/status", "/debug;x/status", "\\debug\\status",
                        "/debug/status/", "http://example/debug/status", "HTTP://example/debug/status?x"})
    CHECK(classify(t).route == Route::debug_status);
  // ".." cannot climb above the root into /debug either way.
  CHECK(classify("/../debug/status").route == Route::debug_status);
  CHECK(classify("/debug/../index.html").route == Route::app);
}

TEST_CASE("mux reads /debug/logs queries strictly", "[mux]") {
  auto r = classify("/debug/logs");
  CHECK(r.error.empty());
  CHECK(r.logs.n == 100);
  CHECK_FALSE(r.logs.follow);

  r = classify("/debug/logs?n=5&follow=1");
  CHECK(r.error.empty());
  CHECK(r.logs.n == 5);
  CHECK(r.logs.follow);
  CHECK(classify("/debug/logs?follow=true&n=0").logs.n == 0);

  for (const char* bad : {"/debug/logs?n=-1", "/debug/logs?n=abc", "/debug/logs?n=", "/debug/logs?n=100001",
                          "/debug/logs?n=99999999999999999999", "/debug/logs?follow=yes", "/debug/logs?x=1",
                          "/debug/logs?n=1&n=2", "/debug/logs?follow=1&follow=0"}) {
    INFO(bad);
    CHECK_FALSE(classify(bad).error.empty());
  }
}

TEST_CASE("mux bearer tokens: only Bearer sha256(token) passes", "[mux]") {
  // printf 's3cret-token' | sha256sum
  const std::string hex = "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e";
  auto digest = parse_token_digest(hex);
  REQUIRE(digest);

  CHECK(bearer_matches("Bearer s3cret-token", *digest));
  CHECK(bearer_matches("bearer   s3cret-token  ", *digest));
  CHECK_FALSE(bearer_matches("Bearer s3cret-tokeN", *digest));
  CHECK_FALSE(bearer_matches("Bearer s3cret-token-and-more", *digest));
  CHECK_FALSE(bearer_matches("Bearer ", *digest));
  CHECK_FALSE(bearer_matches("Bearer", *digest));
  CHECK_FALSE(bearer_matches("", *digest));
  CHECK_FALSE(bearer_matches("Basic s3cret-token", *digest));
  CHECK_FALSE(bearer_matches("Bearers3cret-token", *digest));
  CHECK_FALSE(bearer_matches(hex, *digest));  // the digest itself is not the token

  CHECK_FALSE(parse_token_digest(""));
  CHECK_FALSE(parse_token_digest(hex.substr(1)));
  CHECK_FALSE(parse_token_digest(std::string(64, 'G')));
  CHECK_FALSE(parse_token_digest(std::string(64, 'A')));  // upper case is refused, as the config does
}

TEST_CASE("mux failure limiter: a source at the limit is refused until the window passes", "[mux]") {
  using namespace std::chrono_literals;
  FailureLimiter lim(3, 60s, 4);
  const auto t0 = FailureLimiter::Clock::time_point{} + 1000s;
  CHECK_FALSE(lim.blocked("a", t0));
  lim.failed("a", t0);
  lim.failed("a", t0 + 1s);
  CHECK_FALSE(lim.blocked("a", t0 + 2s));
  lim.failed("a", t0 + 2s);
  CHECK(lim.blocked("a", t0 + 3s));
  CHECK_FALSE(lim.blocked("b", t0 + 3s));  // other sources are not affected
  CHECK(lim.blocked("a", t0 + 59s));
  CHECK_FALSE(lim.blocked("a", t0 + 61s));  // the first failure left the window

  // The table stays bounded: a flood of sources forgets the quietest.
  for (int i = 0; i < 100; ++i) lim.failed("x" + std::to_string(i), t0 + 70s + std::chrono::seconds(i));
  CHECK(lim.sources() <= 4);
}

TEST_CASE("mux metrics are Prometheus text format 0.0.4 with pisecd_ names", "[mux]") {
  pisec::status::Snapshot s;
  s.state = "running";
  s.uptime_ms = 12345;
  s.gates = {{"entropy", "passed", "", 12}, {"clock", "failed", "no \"quorum\"\n", 3000}};
  s.firewall = {"service", true, "sha256:00"};
  s.payload.state = "running";
  s.payload.restarts = 4;
  s.reaped_orphans = 2;
  DaemonMetrics d{100, 4096, 7, {{"input", 3, 12, 3400}}};
  Counters c;
  c.requests[{"app", 200}] = 10;
  c.requests[{"debug", 401}] = 3;
  c.open_connections = 5;
  c.connections_total = 9;
  const std::string text = render_metrics(s, d, c);

  CHECK(text.find("pisecd_state{state=\"running\"} 1\n") != std::string::npos);
  CHECK(text.find("pisecd_state{state=\"degraded\"} 0\n") != std::string::npos);
  CHECK(text.find("pisecd_uptime_seconds 12.345\n") != std::string::npos);
  CHECK(text.find("pisecd_payload_restarts_total 4\n") != std::string::npos);
  CHECK(text.find("pisecd_gate_duration_seconds{gate=\"clock\"} 3.000\n") != std::string::npos);
  CHECK(text.find("pisecd_gate_status{gate=\"clock\",status=\"failed\"} 1\n") != std::string::npos);
  CHECK(text.find("pisecd_mux_requests_total{class=\"debug\",code=\"401\"} 3\n") != std::string::npos);
  CHECK(text.find("pisecd_log_lines_dropped_total 7\n") != std::string::npos);
  CHECK(text.find("pisecd_mux_open_connections 5\n") != std::string::npos);
  CHECK(text.find("pisecd_firewall_rule_packets_total{chain=\"input\",rule=\"3\"} 12\n") != std::string::npos);
  CHECK(text.find("pisecd_firewall_rule_bytes_total{chain=\"input\",rule=\"3\"} 3400\n") != std::string::npos);

  // Every line is a comment (HELP/TYPE) or a sample of a family declared
  // before it; counters end in _total; every family has HELP and TYPE once.
  const std::regex sample(R"(^(pisecd_[a-z_]+)(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? -?[0-9.]+$)");
  const std::regex type(R"(^# TYPE (pisecd_[a-z_]+) (counter|gauge)$)");
  const std::regex help(R"(^# HELP (pisecd_[a-z_]+) .+$)");
  std::map<std::string, std::string> types;
  std::set<std::string> helps;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    INFO(line);
    std::smatch mt;
    if (std::regex_match(line, mt, type)) {
      CHECK(types.emplace(mt[1], mt[2]).second);
      if (mt[2] == "counter") CHECK(std::string(mt[1]).ends_with("_total"));
    } else if (std::regex_match(line, mt, help)) {
      CHECK(helps.insert(mt[1]).second);
    } else {
      REQUIRE(std::regex_match(line, mt, sample));
      CHECK(types.count(mt[1]) == 1);
      ++samples;
    }
  }
  CHECK(samples > 20);
  CHECK(helps.size() == types.size());
}

TEST_CASE("mux endpoints: addresses and unix sockets only, no names", "[mux]") {
  auto e = parse_endpoint("127.0.0.1:8081");
  CHECK(e.kind == Endpoint::Kind::tcp);
  CHECK(e.host == "127.0.0.1");
  CHECK(e.port == 8081);
  e = parse_endpoint("[::1]:80");
  CHECK(e.host == "::1");
  e = parse_endpoint("unix:/run/app.sock");
  CHECK(e.kind == Endpoint::Kind::unix_socket);
  CHECK(e.path == "/run/app.sock");
  CHECK(parse_endpoint("localhost:1").port == 1);
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "example.com:80", "unix:rel",
                          "[::1]80", "127.0.0.1:8o"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_endpoint(bad), std::invalid_argument);
  }
}
