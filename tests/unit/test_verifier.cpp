#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "pisec/verifier.hpp"

namespace v = pisec::verifier;
namespace a = pisec::attest;
namespace c = pisec::crypto;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct TempDb {
  fs::path dir;
  TempDb() {
    std::string tmpl = (fs::temp_directory_path() / "pisec-verifier-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
  }
  ~TempDb() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string path() const { return (dir / "v.db").string(); }
};

std::string hex(const c::Sha256& h) { return c::to_hex(h.data(), h.size()); }

void sql(v::Store& s, const std::string& text) {
  REQUIRE(sqlite3_exec(s.handle(), text.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
}

struct Fleet {
  c::KeyPair device = c::generate_keypair();
  c::KeyPair verifier = c::generate_keypair();
  v::Settings settings;
  std::map<std::string, std::string> files = {{"boot/vmlinuz", hex(c::sha256("kernel"))},
                                              {"boot/initramfs", hex(c::sha256("initramfs"))},
                                              {"pi.apkovl.tar.gz", hex(c::sha256("apkovl"))},
                                              {"srv/app", hex(c::sha256("payload"))},
                                              {"usr/sbin/pisecd", hex(c::sha256("pisecd"))}};
  Fleet() { settings.signing_key = verifier.sec; }

  void enroll(v::Store& s, const std::string& id = "pi-1") {
    v::Device d;
    d.id = id;
    d.pubkey = c::format_public_key(device.pub);
    d.keynum = c::keynum_hex(device.pub.keynum);
    d.manifest_sha256 = hex(c::sha256("manifest"));
    d.ruleset_sha256 = hex(c::sha256("ruleset"));
    d.config_sha256 = hex(c::sha256("config"));
    s.enroll(d, files);
  }
  a::Report report(const std::string& nonce) const {
    a::Report r;
    r.device_id = "pi-1";
    r.boot_id = "b";
    r.nonce = nonce;
    r.issued_at = 1000;
    r.pisecd_version = "0.1.0";
    const std::pair<const char*, const char*> paths[] = {{"kernel", "boot/vmlinuz"},
                                                        {"initramfs", "boot/initramfs"},
                                                        {"apkovl", "pi.apkovl.tar.gz"},
                                                        {"payload", "srv/app"},
                                                        {"pisecd", "usr/sbin/pisecd"}};
    for (auto [name, path] : paths) r.measurements[name] = {path, files.at(path)};
    for (const char* name : {"ruleset", "config", "manifest"}) r.measurements[name] = {std::nullopt, hex(c::sha256(name))};
    return r;
  }
  std::string nonce(v::Store& s, std::int64_t now, const std::string& id = "pi-1") {
    auto ans = v::challenge(s, settings, json{{"device_id", id}}.dump(), now);
    REQUIRE(ans.http_status == 200);
    return json::parse(ans.body)["nonce"];
  }
  a::Result send(v::Store& s, const a::Report& r, std::int64_t now, const c::SecretKey* key = nullptr) {
    auto ans = v::evidence(s, settings, a::seal_report(r, key ? *key : device.sec), now);
    REQUIRE(ans.http_status == 200);
    return a::open_result(ans.body, verifier.pub);
  }
};

bool mentions(const a::Result& r, const std::string& what) {
  for (const auto& d : r.differences)
    if (d.find(what) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("the store is created at the current schema version, in WAL mode, and reopens") {
  TempDb t;
  {
    v::Store s(t.path());
    CHECK(s.version() == v::Store::schema_version);
    sqlite3_stmt* q = nullptr;
    REQUIRE(sqlite3_prepare_v2(s.handle(), "PRAGMA journal_mode", -1, &q, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(q) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(q, 0))) == "wal");
    sqlite3_finalize(q);
    Fleet f;
    f.enroll(s);
  }
  v::Store again(t.path());
  CHECK(again.devices().size() == 1);
  sql(again, "PRAGMA user_version = 99");
  CHECK_THROWS_WITH(v::Store(t.path()), Catch::Contains("newer"));
}

TEST_CASE("enrolment replaces a device's expected values; one key cannot serve two devices") {
  TempDb t;
  v::Store s(t.path());
  Fleet f;
  f.enroll(s);
  f.files.erase("srv/app");
  f.files["srv/app2"] = hex(c::sha256("payload2"));
  f.enroll(s);
  auto e = s.expected("pi-1");
  CHECK(e.size() == 5);
  CHECK(e.contains("srv/app2"));
  CHECK_FALSE(e.contains("srv/app"));
  CHECK_THROWS_WITH(f.enroll(s, "pi-2"), Catch::Contains("already enrolled for device pi-1"));
  CHECK(s.revoke("pi-1"));
  CHECK(s.device("pi-1")->revoked);
  CHECK_FALSE(s.revoke("nobody"));
}

TEST_CASE("evidence: affirming, then each refusal with its own reason, all in the chained log") {
  TempDb t;
  v::Store s(t.path());
  Fleet f;
  f.enroll(s);
  const std::int64_t now = 5000;

  auto n1 = f.nonce(s, now);
  auto r1 = f.report(n1);
  auto ok = f.send(s, r1, now + 1);
  CHECK(ok.status == a::Status::affirming);
  CHECK(ok.nonce == n1);
  CHECK(ok.differences.empty());

  auto replay = f.send(s, r1, now + 2);
  CHECK(replay.status == a::Status::contraindicated);
  CHECK(mentions(replay, "already used"));

  auto r2 = f.report(f.nonce(s, now));
  r2.measurements["payload"].sha256 = hex(c::sha256("evil"));
  auto changed = f.send(s, r2, now + 1);
  CHECK(changed.status == a::Status::contraindicated);
  CHECK(mentions(changed, "payload (srv/app): sha256 expected"));

  auto late = f.send(s, f.report(f.nonce(s, now)), now + f.settings.nonce_ttl_s + 1);
  CHECK(mentions(late, "nonce expired"));

  auto unknown = f.send(s, f.report(std::string(64, 'c')), now);
  CHECK(mentions(unknown, "nonce unknown"));

  auto stranger = c::generate_keypair();
  auto foreign = f.send(s, f.report(f.nonce(s, now)), now, &stranger.sec);
  CHECK(mentions(foreign, "key not enrolled"));

  s.revoke("pi-1");
  auto revoked = f.send(s, f.report(f.nonce(s, now)), now);
  CHECK(mentions(revoked, "revoked"));

  CHECK(s.decisions().size() == 7);
  CHECK(s.verify_log().empty());
}

TEST_CASE("a nonce issued to another device is refused") {
  TempDb t;
  v::Store s(t.path());
  Fleet f, g;
  f.enroll(s);
  g.enroll(s, "pi-2");
  auto theirs = g.nonce(s, 100, "pi-2");
  auto r = f.send(s, f.report(theirs), 101);
  CHECK(r.status == a::Status::contraindicated);
  CHECK(mentions(r, "issued to another device (pi-2)"));
  CHECK(v::challenge(s, f.settings, R"({"device_id":"nobody"})", 100).http_status == 404);
  CHECK(v::challenge(s, f.settings, R"({"device_id":"pi-1","x":1})", 100).http_status == 400);
}

TEST_CASE("log verify names an edited, removed or reordered entry") {
  TempDb t;
  v::Store s(t.path());
  for (int i = 0; i < 5; ++i) s.record("pi-" + std::to_string(i), std::string(64, 'a'), v::NonceUse::none, 100 + i,
                                       a::Status::affirming, {});
  REQUIRE(s.verify_log().empty());

  SECTION("edited") {
    sql(s, "UPDATE decisions SET status = 'contraindicated' WHERE id = 3");
    auto p = s.verify_log();
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::StartsWith("entry 3: edited"));
  }
  SECTION("its digest edited") {
    sql(s, "UPDATE decisions SET sha256 = substr(sha256, 2) || '0' WHERE id = 2");
    auto p = s.verify_log();
    REQUIRE(!p.empty());
    CHECK_THAT(p[0], Catch::StartsWith("entry 2:"));
  }
  SECTION("removed") {
    sql(s, "DELETE FROM decisions WHERE id = 2");
    auto p = s.verify_log();
    REQUIRE(!p.empty());
    CHECK_THAT(p[0], Catch::Contains("entries 2..2") && Catch::StartsWith("entry 3"));
  }
  SECTION("removed from the end") {
    sql(s, "DELETE FROM decisions WHERE id = 5");
    auto p = s.verify_log();
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::StartsWith("entry 5:"));
  }
  SECTION("reordered") {
    sql(s, "UPDATE decisions SET id = -id WHERE id IN (2, 3); UPDATE decisions SET id = 5 + id WHERE id IN (-2, -3)");
    auto p = s.verify_log();
    REQUIRE(!p.empty());
    CHECK_THAT(p[0], Catch::StartsWith("entry 2:"));
  }
}
