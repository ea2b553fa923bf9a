#pragma once
// pisec-verifier (host only, never linked into pisecd): the SQLite store of
// enrolled devices, expected measurements, outstanding nonces and the
// hash-chained decision log; the two protocol endpoints as pure functions
// over the store; the HTTPS server.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pisec/attest.hpp"
#include "pisec/formats.hpp"

struct sqlite3;

namespace pisec::verifier {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Device {
  std::string id;
  std::string pubkey;  // the signify public key file text
  std::string keynum;  // hex, unique among enrolled devices
  bool revoked = false;
  std::int64_t enrolled_at = 0;
  std::string manifest_sha256;                // of the enrolled manifest's bytes
  std::optional<std::string> ruleset_sha256;  // compared only when enrolled
  std::optional<std::string> config_sha256;
};

struct Decision {
  std::int64_t id = 0;
  std::string device_id;
  std::int64_t at = 0;
  std::string status;
  std::string nonce;
  std::vector<std::string> differences;
  std::string prev_sha256;
  std::string sha256;
  // true: the report's signature verified under the enrolled key of
  // device_id (revoked or not), so the entry is that device's word. false:
  // anyone's (a key not enrolled, whose device_id is only claimed; a copied
  // keynum with a bad signature). nullopt: recorded before schema version 2.
  std::optional<bool> authenticated;
};
// sha256 (hex) of the entry's canonical JSON, its id and prev_sha256 included
// (and `authenticated` when set, so entries from before it keep their digest).
std::string entry_digest(const Decision& d);

enum class NonceUse { none, consume };
// Who the decided report is from, as far as the verifier could check.
enum class Origin { unverified, enrolled_key };

class Store {
 public:
  // Opens (creating) the database, applies migrations, WAL mode, busy timeout.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static constexpr int schema_version = 2;
  int version();

  // Inserts or replaces the device and its expected measurements (path → sha256).
  // Throws Error if another device holds the same key.
  void enroll(const Device& d, const std::map<std::string, std::string>& expected);
  bool revoke(const std::string& id);  // false if unknown
  std::vector<Device> devices();
  std::optional<Device> device(const std::string& id);
  std::optional<Device> device_by_keynum(const std::string& keynum_hex);
  std::map<std::string, std::string> expected(const std::string& device_id);

  // Counts this device's unused, unexpired nonces (a bound on what one asks for).
  std::int64_t outstanding_nonces(const std::string& device_id, std::int64_t now);
  void add_nonce(const std::string& nonce, const std::string& device_id, std::int64_t expires_at, std::int64_t now);

  // One IMMEDIATE transaction: with NonceUse::consume the nonce must be
  // issued to device_id, unused and unexpired (otherwise the decision becomes
  // contraindicated with the reason added) and is marked used; the decision is
  // appended to the chained log. Returns the entry as recorded.
  Decision record(const std::string& device_id, const std::string& nonce, NonceUse use, std::int64_t now,
                  attest::Status status, std::vector<std::string> differences, Origin origin);

  std::vector<Decision> decisions();
  // Each device's newest decision on a report signed by its enrolled key:
  // its state as far as the verifier knows. A forged report never shows here.
  std::vector<Decision> last_authenticated();
  // The newest `limit` decisions on reports not signed by the enrolled key (a
  // key not enrolled, a bad signature), newest first, and
  // their count. Entries from before schema version 2 are in neither list.
  std::vector<Decision> recent_unauthenticated(std::size_t limit);
  std::int64_t unauthenticated_count();
  // Problems found walking the chain, each naming an entry id; empty = intact.
  std::vector<std::string> verify_log();

  sqlite3* handle() { return db_; }

 private:
  sqlite3* db_ = nullptr;
  void migrate();
};

// ---- the endpoints, pure over the store ----------------------------------------
struct Settings {
  crypto::SecretKey signing_key;
  std::string verifier_id = "pisec-verifier";
  std::int64_t nonce_ttl_s = 60;
  std::int64_t max_outstanding_nonces = 16;
  // The fleet page (GET /) answers only with this token (Bearer, or as the
  // password of HTTP Basic); without one it does not exist (404).
  std::optional<std::string> admin_token;
};

struct Answer {
  int http_status = 200;
  std::string body;  // JSON
};

// POST /v1/challenge {"device_id"} → {"nonce","expires_at"}.
Answer challenge(Store& store, const Settings& s, std::string_view body, std::int64_t now);
// POST /v1/evidence envelope → signed EAR envelope (every decision recorded).
Answer evidence(Store& store, const Settings& s, std::string_view body, std::int64_t now);

// ---- HTTP, without sockets --------------------------------------------------------
struct Request {
  std::string method;  // as sent: "GET", "POST", ...
  std::string target;  // "/v1/evidence"
  std::string authorization;  // the Authorization header's value, or empty
  std::string body;
};
struct Response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type
};
// Routes one request: POST /v1/challenge, POST /v1/evidence, GET / (the
// fleet page). Unknown path 404, wrong method 405 (with Allow). Errors from
// the store become 500 without detail; everything the client sent is only
// ever shown HTML-escaped.
Response handle(const Request& req, Store& store, const Settings& s, std::int64_t now);
// The fleet page's HTML: every device, its last authenticated report and
// verdict and what differs, then the refused unauthenticated attempts.
std::string fleet_page(Store& store, std::int64_t now);
// "&<>\"'" as entities; other bytes made valid UTF-8.
std::string html_escape(std::string_view text);
// The measurement a difference names when its digest differs ("payload
// (srv/app)"), or nullopt for any other difference.
std::optional<std::string> differing_measurement(std::string_view difference);
// The admin token from its file: one line, 16-256 printable ASCII
// characters, no spaces (a trailing newline is dropped). Throws Error.
std::string load_admin_token(const std::string& path);

// ---- the server -----------------------------------------------------------------
struct ServeOptions {
  std::string db;
  std::string listen_host;
  std::uint16_t listen_port = 0;
  std::string cert_file, key_file;
  Settings settings;
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_connections = 512;
  int request_timeout_s = 10;
};
int serve(const ServeOptions& o);

}  // namespace pisec::verifier
