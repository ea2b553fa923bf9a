// The verifier's SQLite store: schema version + migrations, WAL, busy timeout,
// and the hash-chained decision log.
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "pisec/util.hpp"
#include "pisec/verifier.hpp"

namespace pisec::verifier {
namespace {

using json = nlohmann::json;

const std::string genesis(64, '0');

// One prepared statement; binds by position (1-based) and steps.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      throw Error(std::string("sqlite: ") + sqlite3_errmsg(db) + " (" + sql + ")");
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, const std::optional<std::string>& v) {
    if (v) return bind(i, *v);
    sqlite3_bind_null(s_, i);
    return *this;
  }
  // true while a row is available.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  std::optional<std::string> opt_text(int col) const {
    if (sqlite3_column_type(s_, col) == SQLITE_NULL) return std::nullopt;
    return text(col);
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error("sqlite: " + msg);
  }
}

// Rolls back unless committed.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { exec(db_, "BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    exec(db_, "COMMIT");
    done_ = true;
  }

 private:
  sqlite3* db_;
  bool done_ = false;
};

// Migration n brings the schema from version n to n + 1.
const char* const migrations[] = {
    R"sql(
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  pubkey TEXT NOT NULL,
  keynum TEXT NOT NULL UNIQUE,
  revoked INTEGER NOT NULL DEFAULT 0,
  enrolled_at INTEGER NOT NULL,
  manifest_sha256 TEXT NOT NULL,
  ruleset_sha256 TEXT,
  config_sha256 TEXT
);
CREATE TABLE expected (
  device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  path TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY (device_id, path)
);
CREATE TABLE nonces (
  value TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX nonces_device ON nonces(device_id, used, expires_at);
CREATE TABLE decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  status TEXT NOT NULL,
  nonce TEXT NOT NULL,
  differences TEXT NOT NULL,
  prev_sha256 TEXT NOT NULL,
  sha256 TEXT NOT NULL
);
CREATE TABLE chain_head (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  last_id INTEGER NOT NULL,
  last_sha256 TEXT NOT NULL
);
INSERT INTO chain_head VALUES (1, 0, ')sql"
    "0000000000000000000000000000000000000000000000000000000000000000"
    R"sql(');
)sql",
    // 2: whether the decided report was signed by the enrolled key of the
    // device it is filed under (NULL for the entries before).
    R"sql(
ALTER TABLE decisions ADD COLUMN authenticated INTEGER;
CREATE INDEX decisions_authenticated ON decisions(authenticated, device_id, id);
)sql",
};

Device read_device(const Stmt& q) {
  Device d;
  d.id = q.text(0);
  d.pubkey = q.text(1);
  d.keynum = q.text(2);
  d.revoked = q.integer(3) != 0;
  d.enrolled_at = q.integer(4);
  d.manifest_sha256 = q.text(5);
  d.ruleset_sha256 = q.opt_text(6);
  d.config_sha256 = q.opt_text(7);
  return d;
}

constexpr const char* device_columns =
    "SELECT id, pubkey, keynum, revoked, enrolled_at, manifest_sha256, ruleset_sha256, config_sha256 FROM devices ";

constexpr const char* decision_columns =
    "SELECT id, device_id, at, status, nonce, differences, prev_sha256, sha256, authenticated FROM decisions ";

Decision read_decision(const Stmt& q) {
  Decision d;
  d.id = q.integer(0);
  d.device_id = q.text(1);
  d.at = q.integer(2);
  d.status = q.text(3);
  d.nonce = q.text(4);
  auto diffs = json::parse(q.text(5), nullptr, false);
  if (diffs.is_array())
    for (const auto& x : diffs)
      if (x.is_string()) d.differences.push_back(x.get<std::string>());
      else d.differences.push_back(x.dump());
  else
    d.differences.push_back("\x01unreadable: " + q.text(5));  // cannot match its digest
  d.prev_sha256 = q.text(6);
  d.sha256 = q.text(7);
  if (q.opt_text(8)) d.authenticated = q.integer(8) != 0;
  return d;
}

std::vector<Decision> read_decisions(sqlite3* db, const std::string& sql) {
  Stmt q(db, (std::string(decision_columns) + sql).c_str());
  std::vector<Decision> out;
  while (q.step()) out.push_back(read_decision(q));
  return out;
}

std::optional<Device> one_device(sqlite3* db, const std::string& where, const std::string& value) {
  Stmt q(db, (std::string(device_columns) + where).c_str());
  q.bind(1, value);
  if (!q.step()) return std::nullopt;
  return read_device(q);
}

}  // namespace

std::string entry_digest(const Decision& d) {
  json j = {{"id", d.id},         {"device_id", d.device_id},     {"at", d.at},
            {"status", d.status}, {"nonce", d.nonce},             {"differences", d.differences},
            {"prev", d.prev_sha256}};
  if (d.authenticated) j["authenticated"] = *d.authenticated;
  const auto h = crypto::sha256(j.dump(-1, ' ', true));
  return crypto::to_hex(h.data(), h.size());
}

Store::Store(const std::string& path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw Error(path + ": cannot open: " + msg);
  }
  try {
    sqlite3_busy_timeout(db_, 5000);
    exec(db_, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
    migrate();
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

Store::~Store() { sqlite3_close(db_); }

int Store::version() {
  Stmt q(db_, "PRAGMA user_version");
  q.step();
  return static_cast<int>(q.integer(0));
}

void Store::migrate() {
  Transaction t(db_);
  const int have = version();
  if (have > schema_version)
    throw Error("database schema version " + std::to_string(have) + " is newer than this program's " +
                std::to_string(schema_version));
  for (int v = have; v < schema_version; ++v) {
    exec(db_, migrations[v]);
    exec(db_, ("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
  }
  t.commit();
}

void Store::enroll(const Device& d, const std::map<std::string, std::string>& expected) {
  Transaction t(db_);
  if (auto other = device_by_keynum(d.keynum); other && other->id != d.id)
    throw Error("key " + d.keynum + " is already enrolled for device " + other->id);
  Stmt(db_, "DELETE FROM expected WHERE device_id = ?").bind(1, d.id).step();
  Stmt ins(db_,
           "INSERT INTO devices (id, pubkey, keynum, revoked, enrolled_at, manifest_sha256, ruleset_sha256, "
           "config_sha256) VALUES (?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET pubkey = excluded.pubkey, "
           "keynum = excluded.keynum, revoked = 0, enrolled_at = excluded.enrolled_at, manifest_sha256 = "
           "excluded.manifest_sha256, ruleset_sha256 = excluded.ruleset_sha256, config_sha256 = "
           "excluded.config_sha256");
  ins.bind(1, d.id).bind(2, d.pubkey).bind(3, d.keynum).bind(4, d.enrolled_at).bind(5, d.manifest_sha256);
  ins.bind(6, d.ruleset_sha256).bind(7, d.config_sha256).step();
  for (const auto& [path, sha] : expected)
    Stmt(db_, "INSERT INTO expected (device_id, path, sha256) VALUES (?, ?, ?)")
        .bind(1, d.id)
        .bind(2, path)
        .bind(3, sha)
        .step();
  t.commit();
}

bool Store::revoke(const std::string& id) {
  Stmt(db_, "UPDATE devices SET revoked = 1 WHERE id = ?").bind(1, id).step();
  return sqlite3_changes(db_) == 1;
}

std::vector<Device> Store::devices() {
  Stmt q(db_, (std::string(device_columns) + "ORDER BY id").c_str());
  std::vector<Device> out;
  while (q.step()) out.push_back(read_device(q));
  return out;
}

std::optional<Device> Store::device(const std::string& id) { return one_device(db_, "WHERE id = ?", id); }

std::optional<Device> Store::device_by_keynum(const std::string& keynum_hex) {
  return one_device(db_, "WHERE keynum = ?", keynum_hex);
}

std::map<std::string, std::string> Store::expected(const std::string& device_id) {
  Stmt q(db_, "SELECT path, sha256 FROM expected WHERE device_id = ?");
  q.bind(1, device_id);
  std::map<std::string, std::string> out;
  while (q.step()) out.emplace(q.text(0), q.text(1));
  return out;
}

std::int64_t Store::outstanding_nonces(const std::string& device_id, std::int64_t now) {
  Stmt q(db_, "SELECT count(*) FROM nonces WHERE device_id = ? AND used = 0 AND expires_at >= ?");
  q.bind(1, device_id).bind(2, now);
  q.step();
  return q.integer(0);
}

void Store::add_nonce(const std::string& nonce, const std::string& device_id, std::int64_t expires_at,
                      std::int64_t now) {
  Transaction t(db_);
  // Expired nonces are kept a day, so a late report is told "expired", not "unknown".
  Stmt(db_, "DELETE FROM nonces WHERE expires_at < ?").bind(1, now - 86400).step();
  Stmt(db_, "INSERT INTO nonces (value, device_id, expires_at, used) VALUES (?, ?, ?, 0)")
      .bind(1, nonce)
      .bind(2, device_id)
      .bind(3, expires_at)
      .step();
  t.commit();
}

Decision Store::record(const std::string& device_id, const std::string& nonce, NonceUse use, std::int64_t now,
                       attest::Status status, std::vector<std::string> differences, Origin origin) {
  Transaction t(db_);
  if (use == NonceUse::consume) {
    Stmt q(db_, "SELECT device_id, expires_at, used FROM nonces WHERE value = ?");
    q.bind(1, nonce);
    std::string problem;
    if (!q.step())
      problem = "nonce unknown (never issued by this verifier)";
    else if (q.text(0) != device_id)
      problem = "nonce issued to another device (" + q.text(0) + ")";
    else if (q.integer(2) != 0)
      problem = "nonce already used (replayed report)";
    else if (q.integer(1) < now)
      problem = "nonce expired at " + std::to_string(q.integer(1)) + " (now " + std::to_string(now) + ")";
    if (problem.empty()) {
      Stmt(db_, "UPDATE nonces SET used = 1 WHERE value = ? AND used = 0").bind(1, nonce).step();
      if (sqlite3_changes(db_) != 1) problem = "nonce already used (replayed report)";
    }
    if (!problem.empty()) {
      status = attest::Status::contraindicated;
      differences.insert(differences.begin(), problem);
    }
  }
  Decision d;
  {
    Stmt head(db_, "SELECT last_id, last_sha256 FROM chain_head WHERE one = 1");
    if (!head.step()) throw Error("decision log: chain head missing");
    d.prev_sha256 = head.text(1);
  }
  d.device_id = device_id;
  d.at = now;
  d.status = std::string(attest::status_name(status));
  d.nonce = nonce;
  d.differences = std::move(differences);
  // A difference may quote a report's bytes: valid UTF-8, or neither the
  // JSON column nor the digest can be written and the decision is lost.
  for (auto& x : d.differences) x = text::valid_utf8(x);
  d.authenticated = origin == Origin::enrolled_key;
  Stmt ins(db_,
           "INSERT INTO decisions (device_id, at, status, nonce, differences, prev_sha256, sha256, authenticated) "
           "VALUES (?, ?, ?, ?, ?, ?, '', ?)");
  ins.bind(1, d.device_id).bind(2, d.at).bind(3, d.status).bind(4, d.nonce);
  ins.bind(5, json(d.differences).dump(-1, ' ', true)).bind(6, d.prev_sha256);
  ins.bind(7, std::int64_t{*d.authenticated ? 1 : 0}).step();
  d.id = sqlite3_last_insert_rowid(db_);
  d.sha256 = entry_digest(d);
  Stmt(db_, "UPDATE decisions SET sha256 = ? WHERE id = ?").bind(1, d.sha256).bind(2, d.id).step();
  Stmt(db_, "UPDATE chain_head SET last_id = ?, last_sha256 = ? WHERE one = 1").bind(1, d.id).bind(2, d.sha256).step();
  t.commit();
  return d;
}

std::vector<Decision> Store::decisions() { return read_decisions(db_, "ORDER BY id"); }

std::vector<Decision> Store::last_authenticated() {
  return read_decisions(
      db_, "WHERE id IN (SELECT max(id) FROM decisions WHERE authenticated = 1 GROUP BY device_id) ORDER BY device_id");
}

std::vector<Decision> Store::recent_unauthenticated(std::size_t limit) {
  return read_decisions(db_, "WHERE authenticated = 0 ORDER BY id DESC LIMIT " + std::to_string(limit));
}

std::int64_t Store::unauthenticated_count() {
  Stmt q(db_, "SELECT count(*) FROM decisions WHERE authenticated = 0");
  q.step();
  return q.integer(0);
}

std::vector<std::string> Store::verify_log() {
  std::vector<std::string> problems;
  std::int64_t prev_id = 0;
  std::string prev_stored = genesis, prev_computed = genesis;
  for (const Decision& d : decisions()) {
    const std::string id = "entry " + std::to_string(d.id);
    if (d.id != prev_id + 1)
      problems.push_back(id + ": entries " + std::to_string(prev_id + 1) + ".." + std::to_string(d.id - 1) +
                         " before it are missing (removed)");
    const std::string computed = entry_digest(d);
    if (computed != d.sha256)
      problems.push_back(id + ": edited (its content does not match its digest)");
    else if (d.prev_sha256 != prev_stored && d.prev_sha256 != prev_computed)
      problems.push_back(id + ": does not follow entry " + std::to_string(prev_id) +
                         " (an entry was removed or the log reordered)");
    prev_id = d.id;
    prev_stored = d.sha256;
    prev_computed = computed;
  }
  Stmt head(db_, "SELECT last_id, last_sha256 FROM chain_head WHERE one = 1");
  if (!head.step()) {
    problems.push_back("chain head missing");
  } else if (head.integer(0) != prev_id) {
    problems.push_back("entry " + std::to_string(head.integer(0)) + ": the log ends at entry " +
                       std::to_string(prev_id) + " but its head says " + std::to_string(head.integer(0)) +
                       " (entries removed from the end)");
  } else if (head.text(1) != prev_stored && head.text(1) != prev_computed) {
    problems.push_back("entry " + std::to_string(prev_id) + ": does not match the chain head");
  }
  return problems;
}

}  // namespace pisec::verifier
