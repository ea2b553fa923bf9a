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
};
// sha256 (hex) of the entry's canonical JSON, its id and prev_sha256 included.
std::string entry_digest(const Decision& d);

enum class NonceUse { none, consume };

class Store {
 public:
  // Opens (creating) the database, applies migrations, WAL mode, busy timeout.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static constexpr int schema_version = 1;
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
                  attest::Status status, std::vector<std::string> differences);

  std::vector<Decision> decisions();
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
};

struct Answer {
  int http_status = 200;
  std::string body;  // JSON
};

// POST /v1/challenge {"device_id"} → {"nonce","expires_at"}.
Answer challenge(Store& store, const Settings& s, std::string_view body, std::int64_t now);
// POST /v1/evidence envelope → signed EAR envelope (every decision recorded).
Answer evidence(Store& store, const Settings& s, std::string_view body, std::int64_t now);

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
