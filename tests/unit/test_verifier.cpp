#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "pisec/util.hpp"
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
                                       a::Status::affirming, {}, v::Origin::enrolled_key);
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

namespace {

v::Request get(const std::string& target, const std::string& authorization = "") {
  return {"GET", target, authorization, ""};
}

std::string header(const v::Response& r, const std::string& name) {
  for (const auto& [n, value] : r.headers)
    if (n == name) return value;
  return {};
}

std::string basic(const std::string& user_pass) {
  return "Basic " + c::base64_encode(reinterpret_cast<const std::uint8_t*>(user_pass.data()), user_pass.size());
}

// The <tr> of one device on the page.
std::string row(const std::string& page, const std::string& id) {
  const auto at = page.find("<tr data-device=\"" + id + "\">");
  if (at == std::string::npos) return {};
  return page.substr(at, page.find("</tr>", at) - at);
}

const std::string token = "0123456789abcdef-admin";

}  // namespace

TEST_CASE("routing: unknown path 404, wrong method 405 with Allow, the fleet page 404 without a token") {
  TempDb t;
  v::Store s(t.path());
  Fleet f;
  f.enroll(s);
  CHECK(v::handle(get("/nothing"), s, f.settings, 100).status == 404);
  CHECK(v::handle({"POST", "/v1/nothing", "", "{}"}, s, f.settings, 100).status == 404);
  auto wrong = v::handle(get("/v1/evidence"), s, f.settings, 100);
  CHECK(wrong.status == 405);
  CHECK(header(wrong, "Allow") == "POST");
  auto challenge = v::handle({"POST", "/v1/challenge", "", R"({"device_id":"pi-1"})"}, s, f.settings, 100);
  CHECK(challenge.status == 200);
  CHECK(challenge.content_type == "application/json");
  CHECK(json::parse(challenge.body).contains("nonce"));
  // No --admin-token-file: the page does not exist, whatever is presented.
  CHECK(v::handle(get("/", "Bearer " + token), s, f.settings, 100).status == 404);
  f.settings.admin_token = token;
  auto post = v::handle({"POST", "/", "Bearer " + token, ""}, s, f.settings, 100);
  CHECK(post.status == 405);
  CHECK(header(post, "Allow") == "GET");
}

TEST_CASE("the fleet page answers only with the admin token, as Bearer or Basic password") {
  TempDb t;
  v::Store s(t.path());
  Fleet f;
  f.enroll(s);
  f.settings.admin_token = token;
  const std::vector<std::string> refusals = {"", "Bearer " + token.substr(1), "Bearer " + token + "x",
                                            "Bearer", "Token " + token, basic("admin:" + token.substr(0, 10)),
                                            basic(token), "Basic !!!!", "Basic " + token};
  for (const std::string& refused : refusals) {
    INFO("Authorization: " << refused);
    auto r = v::handle(get("/", refused), s, f.settings, 100);
    CHECK(r.status == 401);
    CHECK_THAT(header(r, "WWW-Authenticate"), Catch::StartsWith("Basic realm="));
    CHECK(r.body.find("pi-1") == std::string::npos);
  }
  const std::vector<std::string> acceptances = {"Bearer " + token, "bearer " + token, basic("admin:" + token),
                                               basic(":" + token)};
  for (const std::string& accepted : acceptances) {
    INFO("Authorization: " << accepted);
    auto r = v::handle(get("/", accepted), s, f.settings, 100);
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "text/html; charset=utf-8");
    CHECK(header(r, "Cache-Control") == "no-store");
    CHECK_THAT(header(r, "Content-Security-Policy"),
               Catch::StartsWith("default-src 'none'; style-src 'sha256-") && Catch::Contains("frame-ancestors 'none'"));
    CHECK(header(r, "X-Content-Type-Options") == "nosniff");
    CHECK(r.body.find("data-device=\"pi-1\"") != std::string::npos);
  }
}

TEST_CASE("the page's style is the one the CSP hash allows, and it loads nothing else") {
  TempDb t;
  v::Store s(t.path());
  Fleet f;
  f.settings.admin_token = token;
  auto r = v::handle(get("/", "Bearer " + token), s, f.settings, 100);
  REQUIRE(r.status == 200);
  const auto from = r.body.find("<style>") + 7;
  const auto style = r.body.substr(from, r.body.find("</style>") - from);
  const auto h = c::sha256(style);
  CHECK_THAT(header(r, "Content-Security-Policy"), Catch::Contains("'sha256-" + c::base64_encode(h.data(), h.size()) + "'"));
  for (const char* absent : {"<script", "src=", "href=", "url(", "@import", "<link", "<img"}) {
    INFO(absent);
    CHECK(r.body.find(absent) == std::string::npos);
  }
}

TEST_CASE("the fleet page shows each device's last authenticated report; forged ones only as refused") {
  TempDb t;
  v::Store s(t.path());
  Fleet f, g, h;
  f.enroll(s);
  g.enroll(s, "pi-2");
  h.enroll(s, "pi-3");
  s.revoke("pi-3");
  const std::int64_t now = 1'700'000'000;

  REQUIRE(f.send(s, f.report(f.nonce(s, now)), now + 1).status == a::Status::affirming);
  // pi-2: its own key, a changed payload.
  auto r2 = g.report(g.nonce(s, now, "pi-2"));
  r2.device_id = "pi-2";
  r2.measurements["payload"].sha256 = hex(c::sha256("evil"));
  REQUIRE(g.send(s, r2, now + 2).status == a::Status::contraindicated);
  // A stranger's key claims to be pi-1, with a changed payload: refused, and not pi-1's state.
  auto stranger = c::generate_keypair();
  auto forged = f.report(f.nonce(s, now));
  forged.measurements["payload"].sha256 = hex(c::sha256("evil"));
  REQUIRE(f.send(s, forged, now + 3, &stranger.sec).status == a::Status::contraindicated);
  // pi-1's keynum copied into a stranger's signature: the signature fails, also not pi-1's state.
  auto copied = stranger.sec;
  copied.keynum = f.device.sec.keynum;
  REQUIRE(f.send(s, f.report(f.nonce(s, now)), now + 4, &copied).status == a::Status::contraindicated);
  // Markup in what a refused report carries is shown as text.
  s.record("pi-1", std::string(64, 'b'), v::NonceUse::none, now + 5, a::Status::contraindicated,
           {"<script>alert(1)</script> & \"quoted\" 'single'"}, v::Origin::unverified);

  const std::string page = v::fleet_page(s, now + 10);
  const auto pi1 = row(page, "pi-1"), pi2 = row(page, "pi-2"), pi3 = row(page, "pi-3");
  INFO(page);
  CHECK_THAT(pi1, Catch::Contains("<td class=\"at\">2023-11-14 22:13:21 UTC</td>") &&
                      Catch::Contains("<td class=\"verdict affirming\">affirming</td>") &&
                      Catch::Contains("<td class=\"differs\">none</td>"));
  CHECK_THAT(pi2, Catch::Contains("<td class=\"verdict contraindicated\">contraindicated</td>") &&
                      Catch::Contains("<td class=\"differs\"><ul><li>payload (srv/app)</li></ul></td>"));
  CHECK_THAT(pi3, Catch::Contains("<td class=\"enrolment\">revoked</td>") &&
                      Catch::Contains("<td class=\"at\">never</td>"));
  CHECK_THAT(page, Catch::Contains("<p id=\"refused-count\">3 refused"));
  CHECK_THAT(page, Catch::Contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &#39;single&#39;"));
  CHECK(page.find("<script>") == std::string::npos);
  CHECK_THAT(page, Catch::Contains("report signed by a key not enrolled") &&
                       Catch::Contains("report refused: "));
  CHECK(s.verify_log().empty());

  // `list` and the page agree: a forged report never becomes a device's last verdict.
  auto last = s.last_authenticated();
  REQUIRE(last.size() == 2);
  CHECK(last[0].device_id == "pi-1");
  CHECK(last[0].status == "affirming");
  CHECK(last[1].device_id == "pi-2");
}

TEST_CASE("html_escape: markup as text, bytes made valid UTF-8, controls replaced") {
  CHECK(v::html_escape("a<b>&\"'") == "a&lt;b&gt;&amp;&quot;&#39;");
  CHECK(v::html_escape("\xff\x1b[31m") == "\xEF\xBF\xBD?[31m");
  CHECK(v::html_escape("pi-1") == "pi-1");
}

TEST_CASE("differing_measurement names the measurement of a digest difference only") {
  CHECK(v::differing_measurement("payload (srv/app): sha256 expected aa, got bb") == "payload (srv/app)");
  CHECK(v::differing_measurement("ruleset: sha256 expected aa, got bb") == "ruleset");
  CHECK_FALSE(v::differing_measurement("ruleset not enrolled"));
  CHECK_FALSE(v::differing_measurement(": sha256 expected aa, got bb"));
}

TEST_CASE("a version 1 store migrates: its log still verifies, its entries are on neither list") {
  TempDb t;
  {
    v::Store s(t.path());
    sql(s, "DROP INDEX decisions_authenticated; ALTER TABLE decisions DROP COLUMN authenticated; "
           "PRAGMA user_version = 1");
    v::Decision d;
    d.id = 1;
    d.device_id = "pi-1";
    d.at = 100;
    d.status = "affirming";
    d.nonce = std::string(64, 'a');
    d.prev_sha256 = std::string(64, '0');
    d.sha256 = v::entry_digest(d);
    sql(s, "INSERT INTO decisions (id, device_id, at, status, nonce, differences, prev_sha256, sha256) VALUES (1, "
           "'pi-1', 100, 'affirming', '" + d.nonce + "', '[]', '" + d.prev_sha256 + "', '" + d.sha256 + "'); "
           "UPDATE chain_head SET last_id = 1, last_sha256 = '" + d.sha256 + "'");
  }
  v::Store s(t.path());
  CHECK(s.version() == 2);
  CHECK(s.verify_log().empty());
  CHECK_FALSE(s.decisions().at(0).authenticated.has_value());
  CHECK(s.last_authenticated().empty());
  CHECK(s.unauthenticated_count() == 0);
  s.record("pi-1", std::string(64, 'c'), v::NonceUse::none, 101, a::Status::affirming, {}, v::Origin::enrolled_key);
  CHECK(s.verify_log().empty());
  // The new flag is inside the digest: flipping it is an edit.
  sql(s, "UPDATE decisions SET authenticated = 0 WHERE id = 2");
  REQUIRE(s.verify_log().size() == 1);
  CHECK_THAT(s.verify_log()[0], Catch::StartsWith("entry 2: edited"));
}

TEST_CASE("the admin token file: one line of 16+ printable characters, not open to every user") {
  TempDb t;
  const auto path = (t.dir / "token").string();
  auto write = [&](const std::string& text, fs::perms p) {
    pisec::util::write_file_atomic(path, text, 0600);
    fs::permissions(path, p);
  };
  write(token + "\n", fs::perms::owner_read | fs::perms::owner_write);
  CHECK(v::load_admin_token(path) == token);
  write("short\n", fs::perms::owner_read);
  CHECK_THROWS_WITH(v::load_admin_token(path), Catch::Contains("16-256 printable"));
  write("with a space in the token\n", fs::perms::owner_read);
  CHECK_THROWS_WITH(v::load_admin_token(path), Catch::Contains("16-256 printable"));
  write(token + "\n", fs::perms::owner_read | fs::perms::others_read);
  CHECK_THROWS_WITH(v::load_admin_token(path), Catch::Contains("chmod 600"));
  CHECK_THROWS_WITH(v::load_admin_token((t.dir / "missing").string()), Catch::Contains("cannot read"));
}

TEST_CASE("a revoked device's own signed report is filed as its word; a stranger's is not") {
  TempDb t;
  v::Store s(t.path());
  Fleet f;
  f.enroll(s);
  s.revoke("pi-1");
  auto own = f.send(s, f.report(f.nonce(s, 100)), 101);
  CHECK(own.status == a::Status::contraindicated);
  CHECK(mentions(own, "device pi-1 is revoked"));
  auto copied = c::generate_keypair().sec;
  copied.keynum = f.device.sec.keynum;
  CHECK(f.send(s, f.report(f.nonce(s, 100)), 102, &copied).status == a::Status::contraindicated);
  const auto all = s.decisions();
  REQUIRE(all.size() == 2);
  CHECK(all[0].authenticated == std::optional<bool>(true));
  CHECK(all[1].authenticated == std::optional<bool>(false));
  REQUIRE(s.last_authenticated().size() == 1);
  CHECK(s.last_authenticated()[0].id == all[0].id);
  CHECK(s.unauthenticated_count() == 1);
}

TEST_CASE("bytes that are not UTF-8 in a refused request or a difference never turn into a 500") {
  // Found by fuzz_verifier: a signature blob whose algorithm bytes are not
  // UTF-8 is quoted in the parser's message; dumping that as JSON threw.
  TempDb t;
  v::Store s(t.path());
  Fleet f;
  f.enroll(s);
  json env = json::parse(a::seal_report(f.report(f.nonce(s, 100)), f.device.sec));
  std::vector<std::uint8_t> blob(74, 0x41);
  blob[0] = 0x47;
  blob[1] = 0x9e;
  env["signature"] = c::base64_encode(blob.data(), blob.size());
  auto r = v::handle({"POST", "/v1/evidence", "", env.dump()}, s, f.settings, 101);
  CHECK(r.status == 400);
  const json body = json::parse(r.body);
  CHECK_THAT(body["error"].get<std::string>(), Catch::Contains("algorithm \"G\xEF\xBF\xBD\""));

  auto d = s.record("pi-1", std::string(64, 'a'), v::NonceUse::none, 102, a::Status::contraindicated,
                    {"report refused: \xff\xfe"}, v::Origin::enrolled_key);
  CHECK(d.differences.at(0) == "report refused: \xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(s.decisions().at(0).differences == d.differences);
  CHECK(s.verify_log().empty());
}
