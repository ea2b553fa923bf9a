#pragma once
// What `pisecd status --json` reports (pinned in PRODUCT.md), as plain data.
#include <cstdint>
#include <string>
#include <vector>

namespace pisec::status {

struct Gate {
  std::string name;
  std::string status = "pending";  // pending|running|passed|failed|skipped
  std::string detail;
  std::int64_t duration_ms = 0;
};

struct Firewall {
  std::string mode = "none";  // none|lockdown|service
  bool verified = false;
  std::string digest;  // "sha256:<hex>" of the applied ruleset
};

struct LastExit {
  int code = 0;
  int signal = 0;
  std::int64_t at_ms = 0;  // daemon uptime when it exited
};

struct Payload {
  std::string state = "stopped";  // stopped|starting|running|backoff|quarantined
  int pid = 0;
  int restarts = 0;
  LastExit last_exit;
};

// The last SIGHUP: a reload applies as a whole or not at all.
struct Reload {
  std::string result = "none";  // none|applied|rejected
  std::string detail;           // why it was rejected, or what it changed
  std::int64_t at_ms = 0;       // daemon uptime when it was decided
};

struct Snapshot {
  std::string version;
  std::string state = "lockdown";  // lockdown|gating|running|degraded|quarantined|stopping
  std::int64_t uptime_ms = 0;
  std::vector<Gate> gates;
  Firewall firewall;
  Payload payload;
  std::int64_t reaped_orphans = 0;
  Reload reload;
};

// Pinned JSON (nlohmann) both ways: the daemon writes it, the client reads it.
std::string to_json(const Snapshot&);
Snapshot from_json(const std::string& text);  // throws std::runtime_error on bad input

// `pisecd status` exit codes: 0 running, 1 degraded/starting, 2 quarantined.
// (3, daemon unreachable, is decided by the client.)
int exit_code(const Snapshot&);
// The human summary `pisecd status` prints without --json.
std::string to_text(const Snapshot&);

}  // namespace pisec::status
