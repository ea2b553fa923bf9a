#pragma once
// The configuration: one struct per pinned TOML table, so each module sees
// only its own settings. Loading validates everything; a Config that exists
// is a valid one.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pisec::config {

inline constexpr const char* default_path = "/etc/pisec/pisecd.toml";
inline constexpr std::size_t max_file_bytes = 1024 * 1024;  // a config file above this is refused

enum class OnFailure { quarantine, proceed };  // TOML: "quarantine" / "continue"

struct GateCommon {
  bool enabled = true;
  int timeout_s = 30;
  OnFailure on_failure = OnFailure::quarantine;
};

struct Daemon {
  std::string control_socket = "/run/pisecd/control.sock";
  std::string admin_group;  // name or numeric gid; empty = root only
  std::string state_dir = "/var/lib/pisecd";
};

struct EntropyGate : GateCommon {
  std::string hwrng;      // e.g. "/dev/hwrng"; empty = CRNG readiness only
  std::string seed_file;  // seedrng-style seed; empty = none
  int hwrng_blocks = 16;  // FIPS 140-2 blocks (2,500 bytes each) to read
  double max_block_failure_ratio = 0.1;  // above this the source is rejected
};

struct ClockGate : GateCommon {
  std::vector<std::string> servers;  // "host" or "host:port"
  int min_sources = 2;
  bool set_clock = true;
  std::string state_file;         // saved timestamp (newest trusted time)
  int request_timeout_ms = 2000;  // per SNTP request
  int retries = 2;                // per server
  double max_root_distance_s = 5.0;
  double max_disagreement_s = 0.5;  // sources further apart do not intersect
};

struct IntegrityGate : GateCommon {
  std::string manifest;
  std::string signature;  // default: manifest + ".sig"
  std::string public_key;
  std::string root = "/";  // manifest paths are relative to this
};

struct ArchGate : GateCommon {
  std::string target = "armv6";  // "armv6" or "host"
  bool allow_unknown = false;    // ELF without attributes/Go buildinfo
};

struct Gates {
  EntropyGate entropy;
  ClockGate clock;
  IntegrityGate integrity;
  ArchGate arch;
};

struct Firewall {
  bool enabled = true;
  std::string table = "pisec";
  int public_port = 80;
  int app_port = 8080;
  int new_conn_rate = 20;        // new connections per second per source
  int new_conn_burst = 40;
  int max_conn_per_source = 64;  // concurrent connections per source
  int icmp_echo_rate = 5;        // echo requests per second, all sources
  std::vector<std::string> egress;   // "proto:host:port" for the payload uid
  std::vector<std::string> inbound;  // extra "proto:port[:prefix]" allowed in
  std::vector<std::string> resolvers;  // DNS servers root/payload may reach (empty: any)
};

struct Payload {
  std::vector<std::string> command;
  std::string rootfs;  // empty: read-only binds of ro_binds
  std::vector<std::string> ro_binds = {"/usr", "/lib", "/bin", "/sbin", "/etc"};
  std::vector<std::string> rw_paths;
  std::uint32_t uid = 65534;
  std::uint32_t gid = 65534;
  std::map<std::string, std::string> env;
  std::string init = "builtin";  // "builtin", "tini" or a path
  int stop_grace_ms = 5000;
  int max_processes = 64;
  int max_open_files = 256;
  int max_address_space_mb = 0;  // 0 = unlimited
  // TOML "max_memory" ("64M" or bytes): cgroup v2 memory.max where a memory
  // controller is delegated to the daemon's cgroup, RLIMIT_AS otherwise.
  std::uint64_t max_memory_bytes = 0;  // 0 = unlimited
  std::vector<std::string> seccomp_deny;  // extra syscall names to deny
  std::string hostname = "payload";
  std::string cwd = "/";

  bool operator==(const Payload&) const = default;  // a reload restarts the payload on any change
};

enum class RestartPolicy { always, on_failure, never };

struct Watchdog {
  RestartPolicy restart = RestartPolicy::always;
  int backoff_initial_ms = 100;
  int backoff_max_ms = 30000;
  int burst = 5;
  int burst_window_s = 60;
  int healthy_after_s = 30;  // uptime after which the backoff resets
  std::string probe;         // "http://host:port/path" or "tcp://host:port"
  int probe_interval_ms = 5000;
  int probe_timeout_ms = 2000;
  int probe_failures = 3;
  std::string hardware_device;  // e.g. "/dev/watchdog"
  int hardware_timeout_s = 15;
};

struct Logs {
  std::size_t ring_bytes = 256 * 1024;
  std::vector<std::string> redact;
  bool stderr_copy = true;  // TOML key: "stderr"
  bool syslog = false;
  std::size_t max_line_bytes = 4096;
  // Copy to stderr/syslog: at most stderr_burst lines per stderr_interval_s
  // per payload stream (the ring still gets every line).
  std::size_t stderr_burst = 1000;
  int stderr_interval_s = 30;
};

struct Mux {
  bool enabled = false;
  std::string listen = "0.0.0.0:8080";
  std::string upstream = "127.0.0.1:8081";  // "host:port" or "unix:/path"
  std::string token_sha256;  // hex SHA-256 of the bearer token
  int max_connections = 1024;
  int header_timeout_ms = 10000;  // the whole request header, from its first byte
  int idle_timeout_ms = 75000;    // between requests, and for any one read or write
  int max_header_bytes = 16384;
  int auth_failure_limit = 10;    // failed /debug/ authentications per source ...
  int auth_failure_window_s = 60; // ... in this window, then 429
  // The daemon's read-only channel for status and logs: a socket only the
  // mux's uid (and root) may use, in a directory of its own.
  std::string daemon_socket = "/run/pisecd-mux/status.sock";
  std::uint32_t uid = 65532;  // the mux's own, never the payload's
  std::uint32_t gid = 65532;
  bool operator==(const Mux&) const = default;
};

struct Attestation {
  bool enabled = false;
  std::string verifier_url;
  std::string ca_file;
  std::string device_key;
  std::string device_id;     // empty: the host name
  std::string verifier_key;  // the verifier's signify public key (its answers are signed)
  bool required = false;
  OnFailure on_no_answer = OnFailure::quarantine;
  // "kernel", "initramfs", "apkovl" → absolute path of that file on the card.
  std::map<std::string, std::string> measure;
};

struct Config {
  std::string source_path;  // file it was loaded from
  Daemon daemon;
  Gates gates;
  Firewall firewall;
  Payload payload;
  Watchdog watchdog;
  Logs logs;
  Mux mux;
  Attestation attestation;
};

// One problem found while loading: "file:line: table.key: reason".
struct Error {
  std::string file;
  int line = 0;  // 0 when unknown (e.g. a missing required key)
  std::string key;
  std::string reason;
  std::string to_string() const;
};

class LoadError : public std::runtime_error {
 public:
  explicit LoadError(std::vector<Error> errors);
  const std::vector<Error>& errors() const { return errors_; }

 private:
  std::vector<Error> errors_;
};

// Parses and validates: the one path for run, SIGHUP and check-config, so
// they accept and refuse the same files with the same messages. Throws
// LoadError listing every problem found. load_file reads only a regular file
// of at most max_file_bytes (a FIFO, a device or a directory is refused).
Config load_file(const std::string& path);
Config load_string(std::string_view toml_text, const std::string& display_name);

const char* to_string(OnFailure);
const char* to_string(RestartPolicy);

}  // namespace pisec::config
