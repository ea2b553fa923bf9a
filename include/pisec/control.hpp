#pragma once
// The local control socket: a Unix stream socket (mode 0600, or 0660 for
// daemon.admin_group) on the daemon's io_context, and the clients behind
// `pisecd status` and `pisecd logs`.
//
// Protocol, one request per connection, every message one line of JSON:
//   -> {"cmd":"status"}
//   <- {"ok":true,"status":{…pinned status JSON…}}
//   -> {"cmd":"logs","n":100,"follow":false}
//   <- {"ok":true,"dropped":D,"first_seq":F,"last_seq":L}
//   <- {"seq":…,"ts_ms":…,"stream":"stdout","line":"…"}   (one per entry, NDJSON)
//   <- {"end":true}                                       (not sent when following)
//   -> {"cmd":"metrics"}
//   <- {"ok":true,"metrics":{"ring_bytes_used":U,"ring_bytes_capacity":C,"lines_dropped":D,
//                             "rules":[{"chain":"input","index":3,"packets":P,"bytes":B},…]}}
//   errors: {"ok":false,"error":"…"} and the connection is closed.
// Requests longer than 4 KiB or not sent within 2 s are refused. When all
// max_clients slots are taken, a new client still gets one: the oldest silent
// client, else the oldest follower, else the oldest log dump is closed with
// an error line, so `pisecd status` is always answered.
// Every text field may carry bytes from outside (files, payload, peers): the
// JSON writers replace invalid UTF-8 with U+FFFD, and the CLI's printers pass
// text through text::printable (pisec/util.hpp) before it reaches a terminal.
#include <cstdint>
#include <utility>  // before Boost.Asio with GCC 12 + C++20

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pisec/config.hpp"
#include "pisec/logs.hpp"

// ---- status (pisec::status) --------------------------------------------
// What `pisecd status --json` reports (pinned in PRODUCT.md), as plain data.
// The last SIGHUP: a reload applies as a whole or not at all.
// Pinned JSON (nlohmann) both ways: the daemon writes it, the client reads it.
// `pisecd status` exit codes: 0 running, 1 degraded/starting, 2 quarantined.
// (3, daemon unreachable, is decided by the client.)
// The human summary `pisecd status` prints without --json.
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

// The /debug mux, a second supervised process (only with [mux] enabled).
struct Mux {
  bool enabled = false;           // "mux" is in the JSON only when true
  std::string state = "stopped";  // stopped|starting|running|backoff
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

// The last attestation (only with [attestation] enabled).
struct Attestation {
  bool enabled = false;              // "attestation" is in the JSON only when true
  std::string verdict = "none";      // none|pending|affirming|warning|contraindicated|no_answer
  std::string verifier_id;           // who answered (signed into its result)
  std::vector<std::string> differences;  // what the verifier found different
  std::string detail;                // why there was no answer
  std::int64_t at_ms = 0;            // daemon uptime when the verdict arrived
  int rounds = 0;                    // attestations finished since start
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
  Mux mux;
  Attestation attestation;
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

namespace pisec::control {

// What the server needs from the daemon. Called on the io_context's thread.
class ControlHandler {
 public:
  virtual ~ControlHandler() = default;
  virtual status::Snapshot snapshot() = 0;
  // Must outlive the Server; the server subscribes to it for `logs -f`.
  virtual logs::LogRing& log_ring() = 0;
  // Packet and byte counts of the firewall's counted rules, for metrics
  // (none when there is no firewall, or it cannot be read).
  struct RuleCounter {
    std::string chain;
    std::size_t index = 0;
    std::uint64_t packets = 0, bytes = 0;
  };
  virtual std::vector<RuleCounter> rule_counters() { return {}; }
};

struct ServerOptions {
  std::string socket_path = "/run/pisecd/control.sock";
  std::string admin_group;                 // group name or numeric gid; empty = root only
  std::string group_file = "/etc/group";   // parsed directly: no NSS in a static binary
  std::size_t max_clients = 32;
  std::size_t max_request_bytes = 4096;
  std::chrono::milliseconds request_timeout{2000};  // to send one complete request
  std::chrono::milliseconds write_timeout{10000};   // for any one pending write
  std::size_t follow_chunk_bytes = 64 * 1024;       // log lines queued per write
  // A second, read-only channel for one other uid (the mux): the socket is
  // given to it (mode 0600) and admits it besides root. Its directory must be
  // the socket's own: made 0711 when created, refused when others cannot
  // reach it. admin_group does not apply.
  std::optional<uid_t> reader_uid;
  // Posted to the loop each time the last client has gone (the daemon gives
  // the heap pages a request freed back to the kernel then).
  std::function<void()> on_quiet;

  static ServerOptions from_config(const config::Daemon& daemon);
};

struct ServerStats {
  std::size_t refused = 0;   // wrong peer credentials
  std::size_t evicted = 0;   // silent clients, followers or log dumps closed to make room
  std::size_t rejected = 0;  // turned away: every slot busy answering a status or error
  std::size_t timed_out = 0; // request or write deadline passed
};

class Server {
 public:
  // Creates the parent directory (0700) if missing, removes a stale socket
  // file (only when nothing answers on it), binds, sets mode/owner, listens.
  // Throws std::runtime_error naming the path if another daemon is listening,
  // the path is not a socket, admin_group is unknown, or a syscall fails.
  Server(boost::asio::io_context& io, ServerOptions options, ControlHandler& handler);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Closes the listener and every client, removes the socket file. Idempotent.
  void stop();
  std::size_t client_count() const;
  ServerStats stats() const;
  const std::string& socket_path() const;

  struct Core;  // shared with the per-client sessions

 private:
  std::shared_ptr<Core> core_;
};

// ---- the request line (pure: unit-tested and fuzzed) ----------------------------

struct Request {
  enum class Command { status, metrics, logs };
  Command command = Command::status;
  std::size_t n = 100;  // logs: how many entries back
  bool follow = false;  // logs: then keep sending new ones
};
// Why a request was refused; what() is the text of the error line sent back.
struct RequestError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// One request line (without its '\n'), as sent by a client. Throws RequestError
// ("request is not valid JSON", "unknown command \"x\"", ...).
Request parse_request(std::string_view line);

// ---- peer credentials (pure parts, unit-tested) ------------------------------

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups
};

// Root, or a member (primary or supplementary) of admin_gid.
bool peer_allowed(const PeerCredentials& peer, std::optional<gid_t> admin_gid);
// "wheel" -> its gid from a /etc/group-format text; "10" -> 10. nullopt if
// unknown, or a number above 4294967294 ((gid_t)-1 means "no change" to chown).
std::optional<gid_t> find_group(std::string_view name_or_gid, std::string_view group_file_text);
// daemon.admin_group to its gid, by find_group over group_file (read directly:
// a static binary has no NSS). The one resolver: the config loader refuses what
// the server would. Throws std::runtime_error with the reason, without the key.
gid_t resolve_admin_group(std::string_view name_or_gid, const std::string& group_file = "/etc/group");
// The "Groups:" line of /proc/<pid>/status.
std::vector<gid_t> parse_status_groups(std::string_view proc_status_text);

// ---- clients ----------------------------------------------------------------

// Daemon unreachable, refused, timed out or answered nonsense. what() is the
// message for stderr, e.g. "cannot reach daemon at /run/pisecd/control.sock:
// No such file or directory".
struct ClientError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct StatusReply {
  status::Snapshot snapshot;
  std::string json;  // the status object as the daemon sent it, re-serialised as ASCII-only JSON
};
StatusReply request_status(const std::string& socket_path,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5));

struct LogsRequest {
  std::size_t n = 100;
  bool follow = false;
};
// Calls on_entry for each entry, oldest first. Without follow, returns after
// the last one; with follow, only throws (ClientError when the daemon closes).
// `timeout` bounds connecting and every wait for the daemon, except the wait
// for new lines while following.
void request_logs(const std::string& socket_path, const LogsRequest& request,
                  const std::function<void(const logs::Entry&)>& on_entry,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace pisec::control
