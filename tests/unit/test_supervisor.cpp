#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio.hpp>
#include <array>
#include <catch2/catch.hpp>
#include <memory>
#include <optional>

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

namespace {
// A loopback server for the prober: answers each connection with `reply`
// (empty: accept and stay silent), on the same io_context as the probe.
struct ProbeTargetServer {
  boost::asio::io_context& io;
  boost::asio::ip::tcp::acceptor acceptor{io, {boost::asio::ip::make_address("127.0.0.1"), 0}};
  std::string reply;
  std::vector<std::shared_ptr<boost::asio::ip::tcp::socket>> held;
  ProbeTargetServer(boost::asio::io_context& ctx, std::string r) : io(ctx), reply(std::move(r)) { accept(); }
  void accept() {
    auto sock = std::make_shared<boost::asio::ip::tcp::socket>(io);
    acceptor.async_accept(*sock, [this, sock](boost::system::error_code ec) {
      if (ec) return;
      held.push_back(sock);
      if (!reply.empty()) {
        auto buf = std::make_shared<std::array<char, 1024>>();
        sock->async_read_some(boost::asio::buffer(*buf), [this, sock, buf](boost::system::error_code, std::size_t) {
          boost::asio::async_write(*sock, boost::asio::buffer(reply),
                                   [sock](boost::system::error_code, std::size_t) {});
        });
      }
      accept();
    });
  }
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
};

std::pair<bool, std::string> probe(boost::asio::io_context& io, const std::string& url, int timeout_ms) {
  std::optional<std::pair<bool, std::string>> got;
  probe_once(io, parse_probe(url), std::chrono::milliseconds(timeout_ms),
             [&](bool ok, const std::string& why) { got.emplace(ok, why); });
  io.restart();
  while (!got && io.run_one_for(std::chrono::seconds(5)) > 0) {
  }
  REQUIRE(got);
  return *got;
}
}  // namespace

TEST_CASE("the prober: HTTP 2xx passes, 5xx and refusals fail, a silent server times out", "[supervisor]") {
  boost::asio::io_context io;
  ProbeTargetServer ok(io, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ProbeTargetServer err(io, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  ProbeTargetServer silent(io, "");
  const auto base = [](std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); };

  CHECK(probe(io, "http://" + base(ok.port()) + "/healthz", 1000) == std::make_pair(true, std::string("HTTP 200")));
  CHECK(probe(io, "http://" + base(err.port()) + "/", 1000) == std::make_pair(false, std::string("HTTP 503")));
  CHECK(probe(io, "tcp://" + base(silent.port()), 1000).first);  // tcp: connecting is enough
  auto hung = probe(io, "http://" + base(silent.port()) + "/", 300);
  CHECK_FALSE(hung.first);
  // Ended by the probe's own deadline, not by the server (which never closes).
  CHECK_THAT(hung.second, Catch::StartsWith("read: ") && Catch::Contains("timeout"));
  // A port nobody listens on: the acceptor is closed first.
  auto closed_port = ok.port();
  ok.acceptor.close();
  auto refused = probe(io, "tcp://" + base(closed_port), 1000);
  CHECK_FALSE(refused.first);
  CHECK_THAT(refused.second, Catch::StartsWith("connect: "));
}

// ---- drop_all_capabilities: in a child, so the test process keeps its own ----

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace {
// The CapPrm/CapEff/CapInh line of this process, e.g. "0000000000000000".
std::string cap_line(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", key.size() + 1));
  return "missing";
}
}  // namespace

TEST_CASE("drop_all_capabilities leaves no capability in any set", "[supervisor]") {
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int bad = 0;
    try {
      pisec::supervisor::drop_all_capabilities();
    } catch (...) {
      _exit(10);
    }
    for (const char* k : {"CapPrm", "CapEff", "CapInh"})
      if (cap_line(k) != "0000000000000000") ++bad;
    _exit(bad);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
