#include <catch2/catch.hpp>

#include "pisec/config.hpp"

using pisec::config::LoadError;
using pisec::config::load_string;

namespace {

constexpr const char* minimal = R"(
[gates.integrity]
enabled = false
[gates.clock]
servers = ["127.0.0.1:1230", "127.0.0.2:1230"]
[payload]
command = ["/bin/app"]
)";

// Loads text that must fail and returns the single error message.
std::string only_error(const std::string& text) {
  try {
    load_string(text, "t.toml");
  } catch (const LoadError& e) {
    REQUIRE(e.errors().size() == 1);
    return e.errors().front().to_string();
  }
  FAIL("config was accepted: " << text);
  return {};
}

}  // namespace

TEST_CASE("the shipped example config is valid", "[config]") {
  auto c = pisec::config::load_file(PISEC_SOURCE_DIR "/etc/pisec/pisecd.toml");
  CHECK(c.firewall.public_port == 80);
  CHECK(c.firewall.app_port == 8080);
  CHECK(c.payload.uid == 65534);
  CHECK(c.gates.clock.servers.size() == 3);
  CHECK(c.gates.integrity.root == "/media/mmcblk0p1");
  CHECK(c.payload.env.at("LANG") == "C.UTF-8");
}

TEST_CASE("defaults fill every table that is left out", "[config]") {
  auto c = load_string(minimal, "t.toml");
  CHECK(c.daemon.control_socket == "/run/pisecd/control.sock");
  CHECK(c.firewall.table == "pisec");
  CHECK(c.watchdog.restart == pisec::config::RestartPolicy::always);
  CHECK(c.gates.entropy.on_failure == pisec::config::OnFailure::quarantine);
  CHECK(c.logs.ring_bytes == 256 * 1024);
  CHECK_FALSE(c.mux.enabled);
}

TEST_CASE("bad configs are refused with file, line, key and reason", "[config]") {
  std::string base = minimal;
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {base + "[firewall]\napp_port = 70000\n",
       "t.toml:9: firewall.app_port: must be 1-65535, got 70000"},
      {base + "[firewall]\npublic_prot = 80\n", "t.toml:9: firewall.public_prot: unknown key"},
      {base + "[firewall]\nenabled = \"yes\"\n",
       "t.toml:9: firewall.enabled: must be true or false, got \"yes\""},
      {base + "[watchdog]\nrestart = \"sometimes\"\n",
       "t.toml:9: watchdog.restart: must be one of \"always\", \"on-failure\", \"never\", got "
       "\"sometimes\""},
      {base + "[gates.entropy]\non_failure = \"ignore\"\n",
       "t.toml:9: gates.entropy.on_failure: must be one of \"quarantine\", \"continue\", got "
       "\"ignore\""},
      {base + "[logs]\nredact = [\"(unclosed\"]\n",
       "t.toml:9: logs.redact[0]: invalid regex: missing ): (unclosed"},
      {base + "[daemon]\ncontrol_socket = \"run/x.sock\"\n",
       "t.toml:9: daemon.control_socket: must be an absolute path, got \"run/x.sock\""},
      {base + "[payload2]\nx = 1\n", "t.toml:8: payload2: unknown key"},
      {base + "[firewall\n", "t.toml:8: TOML syntax: "},
      {base + "[watchdog]\nprobe = \"ftp://x:21\"\n",
       "t.toml:9: watchdog.probe: must be \"http://HOST:PORT/PATH\" or \"tcp://HOST:PORT\", got "
       "\"ftp://x:21\""},
      {base + "[mux]\ntoken_sha256 = \"abc\"\n",
       "t.toml:9: mux.token_sha256: must be 64 lowercase hex digits (sha256 of the token)"},
      {"[gates.integrity]\nenabled = false\n[payload]\ncommand = [\"/bin/app\"]\n"
       "[gates.clock]\nservers = [\"a\", \"b\"]\nmin_sources = 3\n",
       "t.toml: gates.clock.servers: lists 2 server(s) but min_sources is 3"},
      {base + "[watchdog]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 100\n",
       "t.toml: watchdog.backoff_max_ms: must be >= backoff_initial_ms"},
      {base + "[payload.env]\n\"1BAD\" = \"x\"\n",
       "t.toml:9: payload.env.1BAD: is not a valid environment variable name"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    std::string got = only_error(c.text);
    // Regex and TOML-syntax messages end with the library's own wording.
    CHECK(got.rfind(c.message, 0) == 0);
  }
}

TEST_CASE("redact patterns are checked with RE2's syntax, and the copy limits' ranges", "[config]") {
  std::string base = std::string(minimal) + "[logs]\n";
  // ECMAScript accepted these; RE2 (what the redactor runs) has no
  // backreferences or lookahead, and "(a+)+$" is fine: it runs in linear time.
  CHECK(only_error(base + "redact = ['ok', '(a)\\1']\n") ==
        "t.toml:9: logs.redact[1]: invalid regex: invalid escape sequence: \\1");
  CHECK(only_error(base + "redact = ['(a']\n") == "t.toml:9: logs.redact[0]: invalid regex: missing ): (a");
  CHECK(only_error(base + "redact = ['x(?=y)']\n") ==
        "t.toml:9: logs.redact[0]: invalid regex: invalid perl operator: (?=");
  CHECK(load_string(base + "redact = ['(a+)+$']\n", "t.toml").logs.redact.size() == 1);
  auto c = load_string(minimal, "t.toml");
  CHECK(c.logs.stderr_burst == 1000);
  CHECK(c.logs.stderr_interval_s == 30);
  c = load_string(base + "stderr_burst = 5\nstderr_interval_s = 2\n", "t.toml");
  CHECK(c.logs.stderr_burst == 5);
  CHECK(c.logs.stderr_interval_s == 2);
  CHECK(only_error(base + "stderr_burst = 0\n") == "t.toml:9: logs.stderr_burst: must be 1-1000000, got 0");
  CHECK(only_error(base + "stderr_interval_s = 3601\n") ==
        "t.toml:9: logs.stderr_interval_s: must be 1-3600, got 3601");
}

TEST_CASE("a repeated table is a syntax error, a missing command a semantic one", "[config]") {
  CHECK_THROWS_AS(load_string(std::string(minimal) + "[payload]\ncommand = [\"/x\"]\n", "t.toml"),
                  LoadError);
  CHECK(only_error("[gates.integrity]\nenabled = false\n[gates.clock]\nenabled = false\n") ==
        "t.toml: payload.command: must name the program to run");
  CHECK(only_error("[gates.integrity]\nenabled = false\n[gates.clock]\nenabled = false\n"
                   "[payload]\ncommand = [\"app\"]\n") ==
        "t.toml: payload.command: program must be an absolute path, got \"app\"");
}

TEST_CASE("several errors are all reported at once", "[config]") {
  try {
    load_string(std::string(minimal) + "[firewall]\napp_port = 0\npublic_port = -1\n", "t.toml");
    FAIL("accepted");
  } catch (const LoadError& e) {
    CHECK(e.errors().size() == 2);
  }
}
