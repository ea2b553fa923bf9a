// libFuzzer target for pisec-verifier's request handling: raw bytes through
// Beast's request parser with the server's limits, then verifier::handle()
// over a fresh in-memory store holding two enrolled devices, an outstanding
// nonce and a few decisions, so the challenge, the evidence checks and the
// fleet page (the admin token is set) are all reachable. Any input must end
// in a parse error or a response, never a crash (ASan/UBSan), and the page
// must never carry markup it did not write.
//
// Built with -DPISEC_FUZZ_MAKE_CORPUS (no -fsanitize=fuzzer) it is a program
// that prints one seed request, signed by the device key below, to stdout
// (and the verifier's answer to it on stderr): how
// tests/fuzz/corpus/verifier/evidence-* were made.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sqlite3.h>
#include <cstddef>
#include <cstdint>
#include <iostream>

#include "pisec/verifier.hpp"

namespace http = boost::beast::http;
namespace v = pisec::verifier;
namespace a = pisec::attest;
namespace c = pisec::crypto;

namespace {

// Test keys made for this target (pisecd keygen), nothing else uses them.
constexpr const char* device_pub =
    "untrusted comment: signify public key\nRWQLkqVqTGOWyrBLtDnIDCCsxA+a9EDgdaVXFR6fXla6tDyGBBQ3XVKV\n";
constexpr const char* device_sec =
    "untrusted comment: signify secret key\n"
    "RWRCSwAAAADuWbnOyLZ/JuUQFqYjkhVjqexCOwJpsJgLkqVqTGOWyjMm5GqlBOwT4O1X16VwDSXfrO8sRhi8hrD+qF3GTIvjsEu0OcgMIKzED5r0QOB1pVcVHp9eVrq0PIYEFDddUpU=\n";
constexpr const char* other_pub =
    "untrusted comment: signify public key\nRWQSfau8kGackRMrKeABTtpEgKNWkiePv9sL1NsiE3QLP0wj9v1d7N2k\n";
constexpr const char* verifier_sec =
    "untrusted comment: signify secret key\n"
    "RWRCSwAAAAARNISyWmL+3rA5ebK1IlxQsrh5dCNR8bOuZl0d/96+Mo+1G+d4X5OKMG5t93dWB5Nlw9/Xs8vu+hRQ2IBky0TbOnKJiCE8u1neoJU9Afr5FAHGUaCgbNY9bHWACWih0Ec=\n";
constexpr const char* admin_token = "fuzz-admin-token-0123456789";
constexpr std::int64_t now = 1'700'000'000;
const std::string nonce(64, '5');

std::string hex(std::string_view s) {
  const auto h = c::sha256(s);
  return c::to_hex(h.data(), h.size());
}

const std::map<std::string, std::string>& files() {
  static const std::map<std::string, std::string> f = {{"boot/vmlinuz", hex("kernel")},
                                                       {"boot/initramfs", hex("initramfs")},
                                                       {"pi.apkovl.tar.gz", hex("apkovl")},
                                                       {"srv/app", hex("payload")},
                                                       {"usr/sbin/pisecd", hex("pisecd")}};
  return f;
}

void populate(v::Store& s) {
  v::Device d;
  d.id = "pi-1";
  d.pubkey = device_pub;
  d.keynum = c::keynum_hex(c::parse_public_key(d.pubkey, "device").keynum);
  d.manifest_sha256 = hex("manifest");
  d.ruleset_sha256 = hex("ruleset");
  d.config_sha256 = hex("config");
  s.enroll(d, files());
  d.id = "pi-2";  // revoked
  d.pubkey = other_pub;
  d.keynum = c::keynum_hex(c::parse_public_key(d.pubkey, "other device").keynum);
  s.enroll(d, files());
  s.revoke("pi-2");
  s.add_nonce(nonce, "pi-1", now + 60, now);
  s.record("pi-1", std::string(64, 'a'), v::NonceUse::none, now - 10, a::Status::affirming, {},
           v::Origin::enrolled_key);
  s.record("pi-1", std::string(64, 'b'), v::NonceUse::none, now - 5, a::Status::contraindicated,
           {"report signed by a key not enrolled (<b>x</b>)", "payload (srv/app): sha256 expected a, got b"},
           v::Origin::unverified);
}

const v::Settings& settings() {
  static const v::Settings s = [] {
    v::Settings x;
    x.signing_key = c::parse_secret_key(verifier_sec, "verifier");
    x.admin_token = admin_token;
    return x;
  }();
  return s;
}

// The same state for every input: the populated store is built once and
// copied page by page over the working one (SQLite's backup API), far
// cheaper than creating and enrolling anew.
v::Store& fresh_store() {
  static v::Store pristine(":memory:");
  static const bool populated = (populate(pristine), true);
  (void)populated;
  static v::Store work(":memory:");
  sqlite3_backup* b = sqlite3_backup_init(work.handle(), "main", pristine.handle(), "main");
  if (b == nullptr || sqlite3_backup_step(b, -1) != SQLITE_DONE) __builtin_trap();
  if (sqlite3_backup_finish(b) != SQLITE_OK) __builtin_trap();
  return work;
}

}  // namespace

#ifndef PISEC_FUZZ_MAKE_CORPUS
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(8192);
  parser.body_limit(64 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  const auto& req = parser.get();
  v::Request r{std::string(req.method_string()), std::string(req.target()),
               std::string(req[http::field::authorization]), req.body()};
  v::Store& store = fresh_store();
  const v::Response res = v::handle(r, store, settings(), now);
  if (res.status < 200 || res.status > 599) __builtin_trap();
  if (res.status == 500) __builtin_trap();  // the store is healthy: any 500 is an exception nobody meant
  if (res.content_type.starts_with("text/html")) {
    // The page writes no element with attributes beyond its own, and no script.
    if (res.body.find("<script") != std::string::npos || res.body.find("<b>") != std::string::npos)
      __builtin_trap();
  }
  if (!store.verify_log().empty()) __builtin_trap();  // every decision appended whole
  return 0;
}
#else
int main(int argc, char** argv) {
  const std::string kind = argc > 1 ? argv[1] : "affirming";
  a::Report rep;
  rep.device_id = "pi-1";
  rep.boot_id = "fuzz-boot";
  rep.nonce = nonce;
  rep.issued_at = now;
  rep.pisecd_version = "0.1.0";
  const std::pair<const char*, const char*> paths[] = {{"kernel", "boot/vmlinuz"},
                                                      {"initramfs", "boot/initramfs"},
                                                      {"apkovl", "pi.apkovl.tar.gz"},
                                                      {"payload", "srv/app"},
                                                      {"pisecd", "usr/sbin/pisecd"}};
  for (auto [name, path] : paths) rep.measurements[name] = {path, files().at(path)};
  for (const char* name : {"ruleset", "config", "manifest"}) rep.measurements[name] = {std::nullopt, hex(name)};
  rep.gates = {{"integrity", "passed"}};
  if (kind == "changed") rep.measurements["payload"].sha256 = hex("evil");
  const std::string body = a::seal_report(rep, c::parse_secret_key(device_sec, "device"));
  std::cout << "POST /v1/evidence HTTP/1.1\r\nHost: verifier.test\r\nContent-Type: application/json\r\n"
            << "Content-Length: " << body.size() << "\r\n\r\n"
            << body;
  // What the verifier answers it, on stderr: the seed must reach the checks.
  std::cerr << v::handle({"POST", "/v1/evidence", "", body}, fresh_store(), settings(), now).body << '\n';
  return 0;
}
#endif
