#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "child.hpp"
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

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/pisec-config-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// load_file(path) in a child process, so a loader that blocks or reads
// forever fails the test after timeout_ms instead of hanging it. Returns the
// error text, "accepted", or "timed out".
std::string load_file_within(const std::string& path, int timeout_ms) {
  return pisec::testing::run_in_child(
      [&] {
        pisec::config::load_file(path);
        return std::string("accepted");
      },
      timeout_ms);
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

// Found by fuzz_config: toml++ 3.3 reaches undefined behaviour (an
// "unreachable" branch) on non-ASCII outside strings and in multi-line
// strings, so the loader refuses non-ASCII before toml++ sees it.
TEST_CASE("non-ASCII bytes are refused outside comments, with line and column", "[config]") {
  const std::string why = ": the configuration is ASCII outside comments (in a \"string\", write \\uXXXX)";
  CHECK(only_error("\xc3\xa9 = 1\n" + std::string(minimal)) == "t.toml:1: non-ASCII byte 0xC3 at column 1" + why);
  CHECK(only_error(std::string(minimal) + "x = 1\xc3\xa9\n") == "t.toml:8: non-ASCII byte 0xC3 at column 6" + why);
  CHECK(only_error(std::string(minimal) + "x = 'caf\xc3\xa9'\n") == "t.toml:8: non-ASCII byte 0xC3 at column 9" + why);
  CHECK(only_error(std::string(minimal) + "x = \"\"\"a\\\n\xe2\x80\x83" "b\"\"\"\n") ==
        "t.toml:9: non-ASCII byte 0xE2 at column 1" + why);
  CHECK(only_error(std::string(minimal) + "x = '# not a comment \xc3\xa9'\n") ==
        "t.toml:8: non-ASCII byte 0xC3 at column 22" + why);
  // Comments may hold any text (the shipped example has an em dash), and a
  // string its escapes.
  auto c = load_string("# caf\xc3\xa9 \xe2\x80\x94 ok\n" + std::string(minimal) +
                             "[logs]\nredact = [\"caf\\u00e9\"] # \xe2\x80\x94\n",
                         "t.toml");
  REQUIRE(c.logs.redact.size() == 1);
  CHECK(c.logs.redact[0] == "caf\xc3\xa9");
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

// Issue 8 item 9: what run and SIGHUP reload would refuse, the loader refuses,
// with file:line: key: reason (check-config adds nothing of its own).
TEST_CASE("firewall entries are checked by the loader, with their line", "[config]") {
  const std::string base = minimal;
  CHECK(only_error(base + "[firewall]\negress = [\"tcp:192.0.2.1:443\", \"tcp:example.com:443\"]\n") ==
        "t.toml:9: firewall.egress[1]: \"tcp:example.com:443\": \"example.com\" is not an IPv4/IPv6 "
        "address or prefix (names are not allowed: the firewall is set before DNS can be trusted; use "
        "the address)");
  // Refused even while the firewall is off: turning it on must not be what
  // reveals the mistake.
  CHECK(only_error(base + "[firewall]\nenabled = false\negress = [\"tcp:192.0.2.1\"]\n") ==
        "t.toml:10: firewall.egress[0]: \"tcp:192.0.2.1\": must be \"proto:host:port\", e.g. "
        "\"tcp:192.0.2.10:443\"");
  CHECK(only_error(base + "[firewall]\ninbound = [\"sctp:22\"]\n") ==
        "t.toml:9: firewall.inbound[0]: \"sctp:22\": protocol must be \"tcp\" or \"udp\", got \"sctp\"");
  CHECK(only_error(base + "[firewall]\nresolvers = [\"192.0.2.1/8\"]\n") ==
        "t.toml:9: firewall.resolvers[0]: \"192.0.2.1/8\": \"192.0.2.1/8\" has host bits set beyond /8");
  auto c = load_string(
      base + "[firewall]\negress = [\"udp:[2001:db8::1]:53\"]\ninbound = [\"tcp:22:198.51.100.0/24\"]\n", "t.toml");
  CHECK(c.firewall.egress.size() == 1);
  CHECK(c.firewall.inbound.size() == 1);
}

TEST_CASE("the probe needs a port 1-65535 and an IP address or localhost", "[config]") {
  const std::string base = std::string(minimal) + "[watchdog]\n";
  CHECK(only_error(base + "probe = \"http://127.0.0.1:74616/\"\n") ==
        "t.toml:9: watchdog.probe: port must be 1-65535, got 74616");
  CHECK(only_error(base + "probe = \"tcp://127.0.0.1:0\"\n") ==
        "t.toml:9: watchdog.probe: port must be 1-65535, got 0");
  CHECK(only_error(base + "probe = \"http://health.example:8080/\"\n") ==
        "t.toml:9: watchdog.probe: host must be an IPv4 address or \"localhost\" (the probe uses no DNS), "
        "got \"health.example\"");
  CHECK(only_error(base + "probe = \"tcp://127.0.0.1:80/x\"\n") ==
        "t.toml:9: watchdog.probe: must be \"http://HOST:PORT/PATH\" or \"tcp://HOST:PORT\", got "
        "\"tcp://127.0.0.1:80/x\"");
  CHECK(load_string(base + "probe = \"tcp://localhost:65535\"\n", "t.toml").watchdog.probe ==
        "tcp://localhost:65535");
  CHECK(load_string(base + "probe = \"http://10.0.0.1:1/h?x=1\"\n", "t.toml").watchdog.probe ==
        "http://10.0.0.1:1/h?x=1");
}

TEST_CASE("seccomp_deny names are resolved by libseccomp at load time", "[config]") {
  const std::string base = minimal;  // ends inside [payload]
  CHECK(only_error(base + "seccomp_deny = [\"chmod\", \"chmood\"]\n") ==
        "t.toml:8: payload.seccomp_deny[1]: unknown system call \"chmood\"");
  // Known to libseccomp on another architecture only: a warning at spawn, not an error.
  CHECK(load_string(base + "seccomp_deny = [\"chmod\", \"clock_settime64\"]\n", "t.toml")
            .payload.seccomp_deny.size() == 2);
}

TEST_CASE("admin_group must resolve the way the control server resolves it", "[config]") {
  const std::string base = std::string(minimal) + "[daemon]\n";
  CHECK(only_error(base + "admin_group = \"no-such-group-pisec\"\n") ==
        "t.toml:9: daemon.admin_group: group \"no-such-group-pisec\" not found in /etc/group (read "
        "directly, no NSS: add the group there or give its number)");
  CHECK(only_error(base + "admin_group = \"4294967295\"\n") ==
        "t.toml:9: daemon.admin_group: gid 4294967295 is out of range (0-4294967294)");
  CHECK(only_error(base + "admin_group = \"99999999999999999999999\"\n") ==
        "t.toml:9: daemon.admin_group: gid 99999999999999999999999 is out of range (0-4294967294)");
  CHECK(load_string(base + "admin_group = \"4294967294\"\n", "t.toml").daemon.admin_group == "4294967294");
  CHECK(load_string(base + "admin_group = \"root\"\n", "t.toml").daemon.admin_group == "root");
}

TEST_CASE("the control socket path fits sun_path, the hostname HOST_NAME_MAX", "[config]") {
  const std::string path107 = "/" + std::string(106, 's');
  CHECK(load_string(std::string(minimal) + "[daemon]\ncontrol_socket = \"" + path107 + "\"\n", "t.toml")
            .daemon.control_socket == path107);
  CHECK(only_error(std::string(minimal) + "[daemon]\ncontrol_socket = \"" + path107 + "x\"\n") ==
        "t.toml:9: daemon.control_socket: must be at most 107 bytes (the sun_path limit), got 108");
  const std::string name64(64, 'h');
  CHECK(load_string(std::string(minimal) + "hostname = \"" + name64 + "\"\n", "t.toml").payload.hostname ==
        name64);
  CHECK(only_error(std::string(minimal) + "hostname = \"" + name64 + "h\"\n") ==
        "t.toml:8: payload.hostname: must be at most 64 bytes (HOST_NAME_MAX), got 65");
}

TEST_CASE("a NUL byte in any string or key is refused, naming the key", "[config]") {
  const std::string head = "[gates.integrity]\nenabled = false\n[gates.clock]\nenabled = false\n";
  CHECK(only_error(head + "[payload]\ncommand = [\"/bin/sleep\\u0000/x\", \"1\"]\n") ==
        "t.toml:6: payload.command[0]: must not contain a NUL byte (\\u0000)");
  CHECK(only_error(std::string(minimal) + "[payload.env]\nTOKEN = \"a\\u0000b\"\n") ==
        "t.toml:9: payload.env.TOKEN: must not contain a NUL byte (\\u0000)");
  CHECK(only_error(std::string(minimal) + "[payload.env]\n\"A\\u0000B\" = \"x\"\n") ==
        "t.toml:9: payload.env.A\\u0000B: key must not contain a NUL byte (\\u0000)");
  CHECK(only_error(std::string(minimal) + "[mux]\nlisten = \"\\u0000\"\n") ==
        "t.toml:9: mux.listen: must not contain a NUL byte (\\u0000)");
  // In an unknown table too: the bytes must never reach a message.
  CHECK(only_error(std::string(minimal) + "[nope]\nx = [[\"\\u0000\"]]\n") ==
        "t.toml:9: nope.x[0][0]: must not contain a NUL byte (\\u0000)");
}

// Issue 8 item 10: only a regular file of at most 1 MiB is read.
TEST_CASE("a config path that is not a regular file is refused without reading it", "[config]") {
  TempDir dir;
  const std::string fifo = (dir.path / "fifo.toml").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(load_file_within(fifo, 5000) == fifo + ": not a regular file");
  CHECK(load_file_within("/dev/zero", 5000) == "/dev/zero: not a regular file");
  CHECK(load_file_within(dir.path.string(), 5000) == dir.path.string() + ": not a regular file");
  const std::string missing = (dir.path / "missing.toml").string();
  CHECK(load_file_within(missing, 5000) == missing + ": cannot read: No such file or directory");
}

TEST_CASE("a config file above 1 MiB is refused, one of exactly 1 MiB is read", "[config]") {
  TempDir dir;
  std::string text = minimal;
  text += "#" + std::string(pisec::config::max_file_bytes - text.size() - 3, 'x') + "\n";
  REQUIRE(text.size() == 1048576 - 1);
  const std::string path = (dir.path / "big.toml").string();
  std::ofstream(path, std::ios::binary) << text << '\n';
  CHECK(pisec::config::load_file(path).payload.command.front() == "/bin/app");
  std::ofstream(path, std::ios::binary) << text << "\n\n";
  CHECK(load_file_within(path, 5000) == path + ": larger than 1048576 bytes");
}

TEST_CASE("[mux]: addresses only, the firewall's app port, its own uid", "[config][mux]") {
  const std::string token = "token_sha256 = \"" + std::string(64, 'a') + "\"\n";
  auto mux = [&](const std::string& lines) { return std::string(minimal) + "[mux]\nenabled = true\n" + token + lines; };
  // The defaults fit together: listen 0.0.0.0:8080 = firewall.app_port 8080.
  auto c = load_string(mux(""), "t.toml");
  CHECK(c.mux.enabled);
  CHECK(c.mux.uid == 65532);
  CHECK(c.mux.daemon_socket == "/run/pisecd-mux/status.sock");
  CHECK(load_string(mux("upstream = \"unix:/run/app/http.sock\"\n"), "t.toml").mux.upstream == "unix:/run/app/http.sock");

  CHECK(only_error(mux("listen = \"0.0.0.0:9090\"\n")).find(
            "t.toml: mux.listen: port must be firewall.app_port (8080)") != std::string::npos);
  CHECK(only_error(mux("listen = \"0.0.0.0:80\"\n[firewall]\napp_port = 80\npublic_port = 81\n"))
            .find("mux.listen: port must be 1024 or above") != std::string::npos);
  CHECK(only_error(mux("upstream = \"app.local:8081\"\n")).find("mux.upstream:") != std::string::npos);
  CHECK(only_error(mux("upstream = \"unix:relative.sock\"\n")).find("mux.upstream:") != std::string::npos);
  CHECK(only_error(mux("uid = 65534\n")).find("mux.uid: must differ from payload.uid (65534)") != std::string::npos);
  CHECK(only_error(mux("uid = 0\n")).find("mux.uid:") != std::string::npos);
  CHECK(only_error(mux("max_connections = 0\n")).find("mux.max_connections:") != std::string::npos);
  CHECK(only_error(mux("header_timeout_ms = 10\n")).find("mux.header_timeout_ms:") != std::string::npos);
  CHECK(only_error(std::string(minimal) + "[mux]\nenabled = true\n").find("mux.token_sha256: must be set") !=
        std::string::npos);
  // Off, the mux's settings are still checked, but need not fit the firewall.
  CHECK_FALSE(load_string(std::string(minimal) + "[mux]\nlisten = \"0.0.0.0:9090\"\n", "t.toml").mux.enabled);
}

TEST_CASE("[attestation]: device id, verifier key, on_no_answer, measured boot files", "[config]") {
  auto att = [](const std::string& lines) { return std::string(minimal) + "[attestation]\n" + lines; };
  const std::string on = "enabled = true\nverifier_url = \"https://v.test:8443\"\ndevice_key = \"/etc/pisec/device.sec\"\n"
                         "verifier_key = \"/etc/pisec/verifier.pub\"\n";
  auto c = load_string(att(on + "device_id = \"pi-1\"\non_no_answer = \"continue\"\n"
                                "measure = { kernel = \"/media/sd/boot/vmlinuz\", apkovl = \"/media/sd/pi.apkovl.tar.gz\" }\n"),
                       "t.toml");
  CHECK(c.attestation.device_id == "pi-1");
  CHECK(c.attestation.verifier_key == "/etc/pisec/verifier.pub");
  CHECK(c.attestation.on_no_answer == pisec::config::OnFailure::proceed);
  CHECK(c.attestation.measure.size() == 2);
  CHECK(c.attestation.measure.at("kernel") == "/media/sd/boot/vmlinuz");
  CHECK(load_string(att(""), "t.toml").attestation.on_no_answer == pisec::config::OnFailure::quarantine);

  CHECK(only_error(att(on + "device_id = \"pi 1\"\n")).find("attestation.device_id: must be at most 64") !=
        std::string::npos);
  CHECK(only_error(att(on + "on_no_answer = \"ignore\"\n")).find("attestation.on_no_answer: must be one of") !=
        std::string::npos);
  CHECK(only_error(att(on + "measure = { bootloader = \"/x\" }\n")).find("attestation.measure.bootloader: unknown file") !=
        std::string::npos);
  CHECK(only_error(att(on + "measure = { kernel = \"boot/vmlinuz\" }\n")).find(
            "attestation.measure.kernel: must be an absolute path") != std::string::npos);
  CHECK(only_error(att("enabled = true\nverifier_url = \"https://v.test\"\ndevice_key = \"/k\"\n")).find(
            "verifier_key is not set") != std::string::npos);
}

TEST_CASE("payload.max_memory takes a size with a binary unit or bytes, 0 or 8M-1024G", "[config]") {
  const std::string base = minimal;  // ends inside [payload]
  auto mem = [&](const std::string& v) { return load_string(base + "max_memory = " + v + "\n", "t.toml").payload.max_memory_bytes; };
  CHECK(load_string(base, "t.toml").payload.max_memory_bytes == 0);
  CHECK(mem("\"64M\"") == 64ULL << 20);
  CHECK(mem("\"8192K\"") == 8ULL << 20);
  CHECK(mem("\"1G\"") == 1ULL << 30);
  CHECK(mem("\"1024G\"") == 1024ULL << 30);
  CHECK(mem("16777216") == 16ULL << 20);
  CHECK(mem("0") == 0);
  CHECK(mem("\"0\"") == 0);
  const std::string usage = "must be a size such as \"64M\" (K, M or G, binary) or a number of bytes";
  CHECK(only_error(base + "max_memory = \"64 MB\"\n") == "t.toml:8: payload.max_memory: " + usage + ", got \"64 MB\"");
  CHECK(only_error(base + "max_memory = \"64m\"\n") == "t.toml:8: payload.max_memory: " + usage + ", got \"64m\"");
  CHECK(only_error(base + "max_memory = -1\n") == "t.toml:8: payload.max_memory: " + usage + ", got -1");
  CHECK(only_error(base + "max_memory = 1.5\n") == "t.toml:8: payload.max_memory: " + usage + ", got 1.5");
  CHECK(only_error(base + "max_memory = \"4M\"\n") ==
        "t.toml:8: payload.max_memory: must be 0 (unlimited) or 8M-1024G, got \"4M\"");
  CHECK(only_error(base + "max_memory = \"1025G\"\n") ==
        "t.toml:8: payload.max_memory: must be 0 (unlimited) or 8M-1024G, got \"1025G\"");
}
