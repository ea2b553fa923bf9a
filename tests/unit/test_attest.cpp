#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "pisec/attest.hpp"
#include "pisec/attest_client.hpp"

namespace a = pisec::attest;
namespace c = pisec::crypto;
using json = nlohmann::json;

namespace {

std::string hex64(char digit) { return std::string(64, digit); }

a::Report sample_report() {
  a::Report r;
  r.device_id = "pi-kitchen.01";
  r.boot_id = "3f1c2a9e-0000-4000-8000-000000000001";
  r.nonce = std::string(64, 'a');
  r.issued_at = 1790000000;
  r.pisecd_version = "0.1.0";
  const char* paths[] = {"boot/vmlinuz-rpi", "boot/initramfs-rpi", "pi.apkovl.tar.gz", "srv/app", "usr/sbin/pisecd"};
  std::size_t i = 0;
  for (std::string_view name : a::measurement_names) {
    a::Measurement m;
    m.sha256 = hex64(static_cast<char>('0' + i));
    if (a::measurement_has_path(name)) m.path = paths[i];
    r.measurements.emplace(std::string(name), m);
    ++i;
  }
  r.gates = {{"entropy", "passed"}, {"clock", "passed"}, {"integrity", "passed"}, {"arch", "skipped"}};
  return r;
}

// Re-signs an edited report text, so only the edit is judged.
std::string sealed_text(const std::string& text, const c::SecretKey& key) {
  return a::format_envelope({text, c::sign(key, text)}, "report");
}

std::string refusal(const std::string& text) {
  try {
    a::parse_report(text);
  } catch (const a::Error& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("a report round-trips through canonical JSON and a signed envelope") {
  auto kp = c::generate_keypair();
  const a::Report r = sample_report();
  const std::string text = a::to_json(r);
  CHECK(text.find(' ') == std::string::npos);
  CHECK(text.rfind("{\"boot_id\":", 0) == 0);  // keys sorted
  CHECK(a::parse_report(text) == r);
  const std::string wire = a::seal_report(r, kp.sec);
  CHECK(a::open_report(wire, kp.pub) == r);
  // The envelope's signature is the second line of a signify .sig file.
  auto env = json::parse(wire);
  auto sig = c::parse_signature("untrusted comment: x\n" + env["signature"].get<std::string>() + "\n", "t");
  CHECK(c::verify(kp.pub, sig, env["report"].get<std::string>()));
}

TEST_CASE("a report signed by another key, or altered after signing, is refused") {
  auto kp = c::generate_keypair();
  auto other = c::generate_keypair();
  const std::string wire = a::seal_report(sample_report(), other.sec);
  CHECK_THROWS_WITH(a::open_report(wire, kp.pub), Catch::Contains("signature:"));

  auto env = json::parse(a::seal_report(sample_report(), kp.sec));
  std::string text = env["report"];
  text.replace(text.find("0.1.0"), 5, "0.1.1");
  env["report"] = text;
  CHECK_THROWS_WITH(a::open_report(env.dump(), kp.pub), Catch::Contains("does not verify"));
}

TEST_CASE("non-canonical reports are refused even when correctly signed") {
  auto kp = c::generate_keypair();
  const std::string text = a::to_json(sample_report());
  // Whitespace, reordered keys and a duplicate key all have another spelling.
  std::string spaced = text;
  spaced.insert(1, " ");
  CHECK_THROWS_WITH(a::open_report(sealed_text(spaced, kp.sec), kp.pub), Catch::Contains("not canonical"));
  json j = json::parse(text);
  std::string reordered = "{\"nonce\":" + j["nonce"].dump() + "," + text.substr(1);
  CHECK_THAT(refusal(reordered), Catch::Contains("not canonical"));
  CHECK_THAT(refusal(json::parse(text).dump(2)), Catch::Contains("not canonical"));
  CHECK_THAT(refusal("[1]"), Catch::Contains("not a JSON object"));
  CHECK_THAT(refusal("{"), Catch::Contains("not valid JSON"));
}

TEST_CASE("extra, missing and mistyped fields are refused, naming the field") {
  json j = json::parse(a::to_json(sample_report()));
  auto with = [&](auto edit) {
    json k = j;
    edit(k);
    return refusal(k.dump());
  };
  CHECK_THAT(with([](json& k) { k["extra"] = 1; }), Catch::Contains("extra: unknown field"));
  CHECK_THAT(with([](json& k) { k.erase("boot_id"); }), Catch::Contains("boot_id: missing"));
  CHECK_THAT(with([](json& k) { k["issued_at"] = "1790000000"; }), Catch::Contains("issued_at: must be an integer"));
  CHECK_THAT(with([](json& k) { k["issued_at"] = 1.5; }), Catch::Contains("issued_at: must be an integer"));
  CHECK_THAT(with([](json& k) { k["issued_at"] = -1; }), Catch::Contains("issued_at: must not be negative"));
  CHECK_THAT(with([](json& k) { k["device_id"] = 7; }), Catch::Contains("device_id: must be a string"));
  CHECK_THAT(with([](json& k) { k["device_id"] = "a b"; }), Catch::Contains("device_id: must be 1-64"));
  CHECK_THAT(with([](json& k) { k["device_id"] = std::string(65, 'x'); }), Catch::Contains("device_id"));
  CHECK_THAT(with([](json& k) { k["nonce"] = std::string(30, 'a'); }), Catch::Contains("nonce: must be"));
  CHECK_THAT(with([](json& k) { k["nonce"] = std::string(64, 'A'); }), Catch::Contains("nonce: must be"));
  CHECK_THAT(with([](json& k) { k["measurements"].erase("payload"); }),
             Catch::Contains("measurements.payload: missing"));
  CHECK_THAT(with([](json& k) { k["measurements"]["bootloader"] = {{"sha256", "sha256:" + hex64('1')}}; }),
             Catch::Contains("measurements.bootloader: unknown measurement"));
  CHECK_THAT(with([](json& k) { k["measurements"]["payload"]["sha256"] = "sha256:" + hex64('A'); }),
             Catch::Contains("measurements.payload.sha256"));
  // PRODUCT.md pins "sha256:" digests: bare hex is refused.
  CHECK_THAT(with([](json& k) { k["measurements"]["payload"]["sha256"] = hex64('a'); }),
             Catch::Contains("measurements.payload.sha256: must be \"sha256:\""));
  CHECK_THAT(with([](json& k) { k["measurements"]["payload"].erase("path"); }),
             Catch::Contains("measurements.payload.path: missing"));
  CHECK_THAT(with([](json& k) { k["measurements"]["payload"]["path"] = "/srv/app"; }),
             Catch::Contains("measurements.payload.path"));
  CHECK_THAT(with([](json& k) { k["measurements"]["ruleset"]["path"] = "x"; }),
             Catch::Contains("measurements.ruleset.path: unknown field"));
  CHECK_THAT(with([](json& k) { k["measurements"]["config"]["mode"] = "x"; }),
             Catch::Contains("measurements.config.mode: unknown field"));
  CHECK_THAT(with([](json& k) { k["gates"] = json::object(); }), Catch::Contains("gates: must be an array"));
  CHECK_THAT(with([](json& k) { k["gates"][0]["why"] = ""; }), Catch::Contains("gates[0].why: unknown field"));
  CHECK_THAT(with([](json& k) { k["gates"][1]["status"] = true; }),
             Catch::Contains("gates[1].status: must be a string"));
  CHECK_THROWS_WITH(
      [] {
        auto r = sample_report();
        r.nonce = "abcd";
        return a::to_json(r);
      }(),
      Catch::Contains("nonce"));
}

TEST_CASE("envelopes have exactly two string fields and a signify Ed25519 blob") {
  auto kp = c::generate_keypair();
  json env = json::parse(a::seal_report(sample_report(), kp.sec));
  auto refused = [](const json& e) {
    try {
      a::parse_envelope(e.dump(), "report");
    } catch (const a::Error& err) {
      return std::string(err.what());
    }
    return std::string("accepted");
  };
  json e = env;
  e["extra"] = "";
  CHECK_THAT(refused(e), Catch::Contains("extra: unknown field"));
  e = env;
  e.erase("signature");
  CHECK_THAT(refused(e), Catch::Contains("signature: missing"));
  e = env;
  e["signature"] = "AAAA";
  CHECK_THAT(refused(e), Catch::Contains("signature"));
  e = env;
  e["report"] = json::parse(e["report"].get<std::string>());
  CHECK_THAT(refused(e), Catch::Contains("report: must be a string"));
  CHECK_THROWS_AS(a::parse_envelope(std::string(a::max_envelope_bytes + 1, ' '), "report"), a::Error);
  // Found by fuzz_attest: a body that is not UTF-8 cannot be put in an envelope.
  CHECK_THROWS_AS(a::format_envelope({"\xc9(", c::sign(kp.sec, "\xc9(")}, "report"), a::Error);
}

TEST_CASE("an EAR result round-trips and is refused when tampered or mistyped") {
  auto kp = c::generate_keypair();
  a::Result r;
  r.status = a::Status::warning;
  r.verifier_id = "pisec-verifier@test";
  r.iat = 1790000001;
  r.nonce = std::string(64, 'b');
  r.differences = {"ruleset not enrolled"};
  const std::string text = a::to_json(r);
  CHECK(text.rfind("{\"differences\":", 0) == 0);
  CHECK(text.find("\"ear.status\":\"warning\"") != std::string::npos);
  const std::string wire = a::seal_result(r, kp.sec);
  CHECK(a::open_result(wire, kp.pub) == r);
  CHECK_THROWS_WITH(a::open_result(wire, c::generate_keypair().pub), Catch::Contains("signature"));
  json j = json::parse(text);
  j["ear.status"] = "fine";
  CHECK_THROWS_WITH(a::parse_result(j.dump()), Catch::Contains("ear.status"));
  j = json::parse(text);
  j["differences"] = {1};
  CHECK_THROWS_WITH(a::parse_result(j.dump()), Catch::Contains("differences[0]: must be a string"));
  // A report envelope is not a result envelope.
  CHECK_THROWS_AS(a::open_result(a::seal_report(sample_report(), kp.sec), kp.pub), a::Error);
}

TEST_CASE("the verifier URL is https with an optional port and path prefix") {
  auto u = a::parse_https_url("https://verifier.example:8443/fleet/");
  CHECK(u.host == "verifier.example");
  CHECK(u.port == "8443");
  CHECK(u.prefix == "/fleet");
  u = a::parse_https_url("https://[2001:db8::1]");
  CHECK(u.host == "2001:db8::1");
  CHECK(u.port == "443");
  CHECK(u.prefix.empty());
  CHECK_THROWS_AS(a::parse_https_url("http://v.test"), a::Error);
  CHECK_THROWS_AS(a::parse_https_url("https://v.test:0"), a::Error);
  CHECK_THROWS_AS(a::parse_https_url("https://v.test:99999"), a::Error);
  CHECK_THROWS_AS(a::parse_https_url("https://:8443"), a::Error);
}
