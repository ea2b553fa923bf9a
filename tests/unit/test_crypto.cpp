#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include "pisec/formats.hpp"
#include "pisec/util.hpp"

namespace c = pisec::crypto;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pisec-crypto-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& rel, const std::string& content) const {
    fs::path p = path / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  std::string str() const { return path.string(); }
};

std::vector<std::uint8_t> unhex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

// Re-encodes the decoded payload of a signify file after `edit` changes it.
std::string edit_payload(const std::string& file_text, const std::function<void(std::vector<std::uint8_t>&)>& edit) {
  auto nl = file_text.find('\n');
  auto b64 = file_text.substr(nl + 1, file_text.size() - nl - 2);
  auto bytes = c::base64_decode(b64);
  REQUIRE(bytes);
  edit(*bytes);
  return file_text.substr(0, nl + 1) + c::base64_encode(bytes->data(), bytes->size()) + "\n";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c::Error& e) {
    return e.what();
  }
  FAIL("no error thrown");
  return {};
}

}  // namespace

TEST_CASE("base64 round-trips and rejects anything non-canonical", "[crypto]") {
  for (std::size_t n = 1; n <= 40; ++n) {
    std::vector<std::uint8_t> data(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<std::uint8_t>(i * 37 + n);
    auto text = c::base64_encode(data.data(), data.size());
    CHECK(text.size() == 4 * ((n + 2) / 3));
    auto back = c::base64_decode(text);
    REQUIRE(back);
    CHECK(*back == data);  // EVP_DecodeBlock's padding bytes are gone
  }
  CHECK(c::base64_decode("QQ==") == std::vector<std::uint8_t>{'A'});
  CHECK_FALSE(c::base64_decode(""));
  CHECK_FALSE(c::base64_decode("QQ="));     // length not a multiple of 4
  CHECK_FALSE(c::base64_decode("QR=="));    // unused bits set: not canonical
  CHECK_FALSE(c::base64_decode("Q==="));
  CHECK_FALSE(c::base64_decode("=QQ="));
  CHECK_FALSE(c::base64_decode(" QQ=="));   // whitespace EVP_DecodeBlock would skip
  CHECK_FALSE(c::base64_decode("QQ==\n"));
  CHECK_FALSE(c::base64_decode("QU!B"));
  CHECK_FALSE(c::base64_decode("QUJD-A=="));
}

TEST_CASE("Ed25519 through OpenSSL matches the RFC 8032 test vector signify also uses", "[crypto]") {
  c::SecretKey k;
  auto seed = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  std::copy(seed.begin(), seed.end(), k.key.begin());
  auto pub = c::public_half(k);
  CHECK(c::to_hex(pub.key.data(), 32) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  auto sig = c::sign(k, "");
  CHECK(c::to_hex(sig.sig.data(), 64) ==
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe"
        "24655141438e7a100b");
  CHECK(c::verify(pub, sig, ""));
}

TEST_CASE("keys and signatures round-trip through the signify text format", "[crypto]") {
  auto kp = c::generate_keypair();
  auto pub_text = c::format_public_key(kp.pub);
  auto sec_text = c::format_secret_key(kp.sec);
  CHECK(pub_text.rfind("untrusted comment: signify public key\n", 0) == 0);
  CHECK(sec_text.rfind("untrusted comment: signify secret key\n", 0) == 0);
  CHECK(pub_text.size() == 38 + 56 + 1);  // 42 bytes -> 56 base64 chars, as signify writes

  auto pub = c::parse_public_key(pub_text, "k.pub");
  auto sec = c::parse_secret_key(sec_text, "k.sec");
  CHECK(pub.keynum == kp.pub.keynum);
  CHECK(pub.key == kp.pub.key);
  CHECK(sec.key == kp.sec.key);

  std::string msg = "0123  payload/app\n";
  auto sig_text = c::format_signature(c::sign(sec, msg), "verify with k.pub");
  CHECK(sig_text.rfind("untrusted comment: verify with k.pub\n", 0) == 0);
  auto sig = c::parse_signature(sig_text, "M.sig");
  CHECK(sig.keynum == kp.pub.keynum);
  CHECK(c::verify(pub, sig, msg));

  SECTION("a flipped byte in the message fails") {
    std::string bad = msg;
    bad[0] ^= 1;
    CHECK_FALSE(c::verify(pub, sig, bad));
  }
  SECTION("a flipped byte in the signature fails") {
    auto flipped = c::parse_signature(edit_payload(sig_text, [](auto& b) { b[40] ^= 0x80; }), "M.sig");
    CHECK_FALSE(c::verify(pub, flipped, msg));
  }
  SECTION("a signature by another key names both keys") {
    auto other = c::generate_keypair();
    auto e = error_of([&] { c::verify(other.pub, sig, msg); });
    CHECK(e == "signature made with key " + c::keynum_hex(kp.pub.keynum) + ", this is key " +
                   c::keynum_hex(other.pub.keynum));
  }
  SECTION("same keynum but a different key fails") {
    auto other = c::generate_keypair();
    other.pub.keynum = kp.pub.keynum;
    CHECK_FALSE(c::verify(other.pub, sig, msg));
  }
}

namespace {

// Every encoding libsodium refuses as a small-order point: 7 values of y, each
// also with the x sign bit (top bit of the last byte) set.
std::vector<std::array<std::uint8_t, 32>> small_order_encodings() {
  std::vector<std::string> ys = {
      std::string(64, '0'),
      "01" + std::string(62, '0'),
      "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
      "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
      "ec" + std::string(60, 'f') + "7f",  // p - 1
      "ed" + std::string(60, 'f') + "7f",  // p
      "ee" + std::string(60, 'f') + "7f",  // p + 1
  };
  std::vector<std::array<std::uint8_t, 32>> out;
  for (const auto& hex : ys) {
    auto bytes = unhex(hex);
    REQUIRE(bytes.size() == 32);
    std::array<std::uint8_t, 32> a{};
    std::copy(bytes.begin(), bytes.end(), a.begin());
    out.push_back(a);
    a[31] |= 0x80;
    out.push_back(a);
  }
  return out;
}

// "OK", "bad signature" or the error verify threw.
std::string verify_outcome(const c::PublicKey& k, const c::Signature& s, std::string_view msg) {
  try {
    return c::verify(k, s, msg) ? "OK" : "bad signature";
  } catch (const c::Error& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("small-order public keys and R values and S at or above L are refused", "[crypto]") {
  // The forgery: A = identity, R = identity, S = 0 "verifies" every message in
  // OpenSSL, since S*B - k*A = identity = R whatever k is.
  c::PublicKey identity;
  identity.keynum = {1, 2, 3, 4, 5, 6, 7, 8};
  identity.key[0] = 0x01;
  c::Signature forged;
  forged.keynum = identity.keynum;
  forged.sig[0] = 0x01;  // R = identity, S = 0
  CHECK(verify_outcome(identity, forged, "payload v1\n") == "public key is a small-order point");
  CHECK(verify_outcome(identity, forged, "anything else at all") == "public key is a small-order point");
  CHECK_THAT(error_of([&] { c::parse_public_key(c::format_public_key(identity), "k.pub"); }),
             Catch::StartsWith("k.pub: public key is a small-order point"));

  auto kp = c::generate_keypair();
  const std::string msg = "0123  payload/app\n";
  for (const auto& enc : small_order_encodings()) {
    INFO("encoding " << c::to_hex(enc.data(), 32));
    c::PublicKey bad = identity;
    bad.key = enc;
    CHECK_THAT(error_of([&] { c::parse_public_key(c::format_public_key(bad), "k.pub"); }),
               Catch::Contains("public key is a small-order point"));
    CHECK(verify_outcome(bad, forged, msg) == "public key is a small-order point");
    c::Signature small_r = c::sign(kp.sec, msg);
    std::copy(enc.begin(), enc.end(), small_r.sig.begin());
    CHECK(verify_outcome(kp.pub, small_r, msg) == "signature R is a small-order point");
  }

  // S + L (and L itself) is the same signature in another spelling: refused.
  auto good = c::sign(kp.sec, msg);
  REQUIRE(verify_outcome(kp.pub, good, msg) == "OK");
  auto order = unhex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
  auto plus_l = good;
  unsigned carry = 0;
  for (std::size_t i = 0; i < 32; ++i) {
    unsigned sum = unsigned{plus_l.sig[32 + i]} + order[i] + carry;
    plus_l.sig[32 + i] = static_cast<std::uint8_t>(sum);
    carry = sum >> 8;
  }
  REQUIRE(carry == 0);
  CHECK(verify_outcome(kp.pub, plus_l, msg) == "signature S is not below the group order L");
  auto exactly_l = good;
  std::copy(order.begin(), order.end(), exactly_l.sig.begin() + 32);
  CHECK(verify_outcome(kp.pub, exactly_l, msg) == "signature S is not below the group order L");
  // S = L - 1 passes the range check and fails only as a wrong signature.
  auto below = exactly_l;
  below.sig[32] = static_cast<std::uint8_t>(below.sig[32] - 1);
  CHECK(verify_outcome(kp.pub, below, msg) == "bad signature");
}

TEST_CASE("malformed signify files are refused with the reason", "[crypto]") {
  auto kp = c::generate_keypair();
  auto pub_text = c::format_public_key(kp.pub);
  auto sec_text = c::format_secret_key(kp.sec);
  auto sig_text = c::format_signature(c::sign(kp.sec, "m"), "verify with k.pub");
  auto pub_err = [](const std::string& t) { return error_of([&] { c::parse_public_key(t, "k.pub"); }); };
  auto sec_err = [](const std::string& t) { return error_of([&] { c::parse_secret_key(t, "k.sec"); }); };
  auto sig_err = [](const std::string& t) { return error_of([&] { c::parse_signature(t, "M.sig"); }); };

  CHECK_THAT(pub_err("trusted comment: x\n" + pub_text.substr(pub_text.find('\n') + 1)),
             Catch::Contains("k.pub: not a signify public key: first line must start with \"untrusted comment: \""));
  CHECK_THAT(pub_err(pub_text.substr(0, pub_text.size() - 1)), Catch::Contains("not terminated by a newline"));
  CHECK_THAT(pub_err(pub_text + "extra\n"), Catch::Contains("unexpected data after the base64 line"));
  CHECK_THAT(pub_err("untrusted comment: x\n"), Catch::Contains("not terminated by a newline"));
  std::string bad_b64 = pub_text;
  bad_b64[pub_text.find('\n') + 5] = '*';
  CHECK_THAT(pub_err(bad_b64), Catch::Contains("k.pub: not a signify public key: second line is not valid base64"));
  // A signature is not a public key: the length gives it away.
  CHECK_THAT(pub_err(sig_text), Catch::Contains("decodes to 74 bytes, expected 42"));
  CHECK_THAT(sig_err(pub_text), Catch::Contains("M.sig: not a signify signature: decodes to 42 bytes, expected 74"));
  CHECK_THAT(sig_err(edit_payload(sig_text, [](auto& b) { b.pop_back(); })), Catch::Contains("decodes to 73 bytes"));
  CHECK_THAT(pub_err(edit_payload(pub_text, [](auto& b) { b[1] = 'C'; })),
             Catch::Contains("algorithm \"EC\" is not supported"));
  CHECK_THAT(sig_err(edit_payload(sig_text, [](auto& b) { b[0] = 'X'; })),
             Catch::Contains("algorithm \"Xd\" is not supported"));

  SECTION("secret key checks") {
    CHECK_THAT(sec_err(edit_payload(sec_text, [](auto& b) { b[2] = 'X'; })),
               Catch::Contains("unknown key derivation \"XK\""));
    auto encrypted = sec_err(edit_payload(sec_text, [](auto& b) { b[7] = 42; }));
    CHECK_THAT(encrypted, Catch::Contains("protected by a passphrase (bcrypt_pbkdf, 42 rounds)"));
    CHECK_THAT(encrypted, Catch::Contains("signify-openbsd -G -n"));
    CHECK_THAT(encrypted, Catch::Contains("pisecd keygen"));
    CHECK_THAT(sec_err(edit_payload(sec_text, [](auto& b) { b[24] ^= 1; })), Catch::Contains("checksum mismatch"));
    CHECK_THAT(sec_err(edit_payload(sec_text, [](auto& b) { b[50] ^= 1; })), Catch::Contains("checksum mismatch"));
    CHECK_THAT(sec_err(pub_text), Catch::Contains("decodes to 42 bytes, expected 104"));
  }
}

TEST_CASE("UTC timestamps format and parse without time_t", "[crypto]") {
  CHECK(pisec::util::format_utc(0) == "1970-01-01T00:00:00Z");
  CHECK(pisec::util::format_utc(1795341600) == "2026-11-22T10:00:00Z");
  CHECK(pisec::util::parse_utc("2026-11-22T10:00:00Z") == 1795341600);
  // Past 2038: time_t is 32-bit on the armel build.
  CHECK(pisec::util::parse_utc("2040-02-29T23:59:59Z") == 2214172799);
  CHECK(pisec::util::format_utc(2214172799) == "2040-02-29T23:59:59Z");
  CHECK_FALSE(pisec::util::parse_utc("2026-02-30T00:00:00Z"));
  CHECK_FALSE(pisec::util::parse_utc("2026-11-22 10:00:00Z"));
  CHECK_FALSE(pisec::util::parse_utc("2026-11-22T24:00:00Z"));
  CHECK_FALSE(pisec::util::parse_utc("2026-11-22T10:00:00"));
}

TEST_CASE("manifest parsing names the bad line", "[crypto]") {
  const std::string h1(64, 'a'), h2(64, 'b');
  auto m = c::parse_manifest(h1 + "  kernel\n" + h2 + "  payload/app\n", "M");
  REQUIRE(m.entries.size() == 2);
  CHECK(m.entries[1].path == "payload/app");
  CHECK(m.entries[1].hash[0] == 0xbb);
  CHECK(c::parse_manifest(h1 + "  a", "M").entries.size() == 1);  // plain sha256sum output, no newline at end

  auto err = [&](const std::string& text) { return error_of([&] { c::parse_manifest(text, "M"); }); };
  CHECK(err(h1 + "  a\n" + h1 + " b\n") == "M:2: malformed line (want \"<64 hex digits>  <path>\")");
  CHECK(err(h1 + "  a\n\n") == "M:2: malformed line (want \"<64 hex digits>  <path>\")");
  CHECK(err(h1 + "  a\n" + h1.substr(1) + "g  b\n") == "M:2: malformed line: hash is not 64 lower-case hex digits");
  CHECK(err(h1 + "  a\n" + h1 + "  a\n") == "M:2: a: listed twice");
  CHECK_THAT(err(h1 + "  /etc/passwd\n"), Catch::StartsWith("M:1: /etc/passwd: absolute path"));
  CHECK_THAT(err(h1 + "  a/../../etc/passwd\n"), Catch::StartsWith("M:1: a/../../etc/passwd: path contains a \"..\""));
  CHECK_THAT(err(h1 + "  a\\b\n"), Catch::Contains("backslash"));
  CHECK_THAT(err(h1 + "  a\r\n"), Catch::Contains("line break"));
  CHECK_THAT(err(h1 + "  a//b\n"), Catch::Contains("not normalised"));
  CHECK(err("# only a comment\n") ==
        "M:1: comment lines are not allowed (a manifest is plain \"<64 hex digits>  <path>\" lines)");
}

TEST_CASE("the manifest has one shape only: no comments, binary markers or upper-case hex", "[crypto]") {
  // BusyBox sha256sum -c fails on each of these; GNU accepts some of them.
  const std::string h(64, 'a');
  auto err = [&](const std::string& text) { return error_of([&] { c::parse_manifest(text, "M"); }); };
  CHECK_THAT(err("# pisec-manifest v1 created 2026-11-22T10:00:00Z\n" + h + "  a\n"),
             Catch::StartsWith("M:1: comment lines are not allowed"));
  CHECK_THAT(err(h + "  a\n# a comment\n"), Catch::StartsWith("M:2: comment lines are not allowed"));
  CHECK_THAT(err(h + "  a\n#\n"), Catch::StartsWith("M:2: comment lines are not allowed"));
  CHECK(err(h + " *a\n") == "M:1: malformed line (want \"<64 hex digits>  <path>\")");
  CHECK(err(std::string(64, 'A') + "  a\n") == "M:1: malformed line: hash is not 64 lower-case hex digits");
  // What format_manifest writes parses back unchanged and has no other line.
  c::Manifest m{{{"pisec-release", c::sha256("x")}, {"payload/app", c::sha256("y")}}};
  auto text = c::format_manifest(m);
  CHECK(text == c::to_hex(m.entries[0].hash.data(), 32) + "  pisec-release\n" +
                    c::to_hex(m.entries[1].hash.data(), 32) + "  payload/app\n");
  CHECK(c::parse_manifest(text, "M").entries.size() == 2);
}

TEST_CASE("manifests are created, signed, loaded and checked file by file", "[crypto]") {
  TempDir d;
  d.file("root/kernel", std::string(200000, 'k'));
  d.file("root/payload/app", "app v1\n");
  d.file("root/payload/lib/x.so", "lib\n");
  const std::string root = d.str() + "/root";

  auto m = c::create_manifest(root, {"kernel", "payload"}, 1795341600);
  REQUIRE(m.entries.size() == 4);
  CHECK(m.entries[0].path == "pisec-release");  // written first, then listed first
  CHECK(c::read_small_file(root + "/pisec-release") == "created 2026-11-22T10:00:00Z\n");
  CHECK(m.entries[0].hash == c::sha256("created 2026-11-22T10:00:00Z\n"));
  CHECK(m.entries[2].path == "payload/app");
  CHECK(m.entries[3].path == "payload/lib/x.so");
  CHECK(m.entries[2].hash == c::sha256("app v1\n"));
  // Walking the whole root finds the stamp too: still listed once.
  auto whole = c::create_manifest(root, {"."}, 1795341600);
  CHECK(whole.entries.size() == 4);
  CHECK(whole.entries[0].path == "pisec-release");
  // An absolute path under the root is listed relative to it; no stamp without a time.
  auto one = c::create_manifest(root, {root + "/./payload/app"}, std::nullopt);
  REQUIRE(one.entries.size() == 1);
  CHECK(one.entries[0].path == "payload/app");
  CHECK_THAT(error_of([&] { c::create_manifest(root, {"/etc/hostname"}, std::nullopt); }),
             Catch::Contains("not under the manifest root"));
  CHECK_THAT(error_of([&] { c::create_manifest(root, {"../x"}, std::nullopt); }), Catch::Contains("\"..\""));
  CHECK_THAT(error_of([&] { c::create_manifest(root, {"kernel", "./kernel"}, std::nullopt); }),
             Catch::Contains("kernel: given twice"));
  CHECK(::symlink("kernel", (root + "/link").c_str()) == 0);
  CHECK_THAT(error_of([&] { c::create_manifest(root, {"link"}, std::nullopt); }), Catch::Contains("symbolic link"));
  fs::remove(root + "/link");

  auto text = c::format_manifest(m);
  CHECK(text.find('#') == std::string::npos);
  CHECK(text.rfind(c::to_hex(m.entries[0].hash.data(), 32) + "  pisec-release\n", 0) == 0);
  CHECK(text.find(c::to_hex(m.entries[2].hash.data(), 32) + "  payload/app\n") != std::string::npos);
  auto manifest = d.file("M", text);

  auto kp = c::generate_keypair();
  auto pub = d.file("k.pub", c::format_public_key(kp.pub));
  auto sig = d.file("M.sig", c::format_signature(c::sign(kp.sec, text), "verify with k.pub"));

  auto sm = c::load_signed_manifest(manifest, sig, pub);
  CHECK(sm.keynum == kp.pub.keynum);
  CHECK(c::check_files(sm.manifest, root).empty());
  CHECK(c::signed_release_time(manifest, sig, pub, root) == 1795341600);
  CHECK(c::manifest_entries(manifest).size() == 4);

  SECTION("a flipped byte in the manifest fails the signature") {
    std::string bad = text;
    bad[bad.size() - 3] ^= 1;
    d.file("M", bad);
    CHECK_THAT(error_of([&] { c::load_signed_manifest(manifest, sig, pub); }),
               Catch::Contains("signature verification failed") && Catch::Contains(manifest));
  }
  SECTION("a changed file is named with both hashes") {
    d.file("root/payload/app", "app v2\n");
    auto problems = c::check_files(sm.manifest, root);
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].path == "payload/app");
    auto want = c::sha256("app v1\n"), got = c::sha256("app v2\n");
    CHECK(problems[0].to_string() == "payload/app: sha256 mismatch (expected " + c::to_hex(want.data(), 32) +
                                         ", got " + c::to_hex(got.data(), 32) + ")");
    auto short_form = c::check_files(sm.manifest, root, nullptr, true);
    CHECK(short_form[0].reason == "sha256 mismatch (expected " + c::to_hex(want.data(), 32).substr(0, 12) +
                                      "\u2026, got " + c::to_hex(got.data(), 32).substr(0, 12) + "\u2026)");
  }
  SECTION("missing files, symlinks and FIFOs are named, not followed or waited on") {
    bool walk = GENERATE(false, true);
    INFO("component walk forced: " << walk);
    c::testing::force_component_walk(walk);
    fs::remove(root + "/kernel");
    fs::remove(root + "/payload/lib/x.so");
    REQUIRE(::mkfifo((root + "/payload/lib/x.so").c_str(), 0600) == 0);
    fs::remove(root + "/payload/app");
    REQUIRE(::symlink("/etc/hostname", (root + "/payload/app").c_str()) == 0);
    auto problems = c::check_files(sm.manifest, root);
    c::testing::force_component_walk(false);
    REQUIRE(problems.size() == 3);
    CHECK(problems[0].to_string() == "kernel: missing (No such file or directory)");
    CHECK(problems[1].to_string() == "payload/app: is a symbolic link (only regular files are accepted)");
    CHECK(problems[2].to_string() == "payload/lib/x.so: not a regular file");
  }
  SECTION("a set cancel flag stops hashing") {
    std::atomic<bool> cancel{true};
    CHECK_THROWS_AS(c::check_files(sm.manifest, root, &cancel), c::Cancelled);
  }
}

TEST_CASE("the release time is believed only when the stamp's hash matches the signed entry", "[crypto]") {
  TempDir d;
  d.file("root/payload/app", "app v1\n");
  const std::string root = d.str() + "/root";
  auto kp = c::generate_keypair();
  auto pub = d.file("k.pub", c::format_public_key(kp.pub));
  auto sign_manifest = [&](const c::Manifest& m) {
    auto text = c::format_manifest(m);
    d.file("M", text);
    d.file("M.sig", c::format_signature(c::sign(kp.sec, text), "verify with k.pub"));
  };
  const std::string manifest = d.str() + "/M", sig = d.str() + "/M.sig";
  auto release_time = [&] { return c::signed_release_time(manifest, sig, pub, root); };
  sign_manifest(c::create_manifest(root, {"payload"}, 1795341600));
  REQUIRE(release_time() == 1795341600);

  SECTION("a stamp edited after signing gives no floor, naming the file and both hashes") {
    // A later time, well formed: exactly what would lock the clock out.
    d.file("root/pisec-release", "created 2036-11-22T10:00:00Z\n");
    auto e = error_of([&] { release_time(); });
    CHECK_THAT(e, Catch::StartsWith(root + "/pisec-release: sha256 mismatch with the signed manifest (expected " +
                                    c::to_hex(c::sha256("created 2026-11-22T10:00:00Z\n").data(), 32) + ", got " +
                                    c::to_hex(c::sha256("created 2036-11-22T10:00:00Z\n").data(), 32) + ")"));
  }
  SECTION("a stamp replaced by a symlink or removed gives no floor") {
    d.file("elsewhere", "created 2026-11-22T10:00:00Z\n");
    fs::remove(root + "/pisec-release");
    CHECK_THAT(error_of([&] { release_time(); }), Catch::Contains("pisec-release: missing"));
    REQUIRE(::symlink((d.str() + "/elsewhere").c_str(), (root + "/pisec-release").c_str()) == 0);
    CHECK_THAT(error_of([&] { release_time(); }), Catch::Contains("pisec-release: is a symbolic link"));
  }
  SECTION("a signed stamp that is not one line of time is refused after the hash check") {
    d.file("root/pisec-release", "created soon\n");
    sign_manifest({{{"pisec-release", c::sha256("created soon\n")}}});
    CHECK_THAT(error_of([&] { release_time(); }), Catch::Contains("pisec-release: not a release stamp"));
  }
  SECTION("an unsigned change to the manifest gives no floor") {
    d.file("M", c::read_small_file(manifest) + std::string(64, '0') + "  x\n");
    CHECK_THAT(error_of([&] { release_time(); }), Catch::Contains("signature verification failed"));
  }
  SECTION("a manifest without a stamp has no floor, and no error") {
    sign_manifest(c::create_manifest(root, {"payload"}, std::nullopt));
    CHECK_FALSE(release_time());
  }
  CHECK(c::parse_release_stamp("created 2026-11-22T10:00:00Z\n") == 1795341600);
  CHECK_FALSE(c::parse_release_stamp("created 2026-11-22T10:00:00Z"));
  CHECK_FALSE(c::parse_release_stamp("created 2026-11-22T10:00:00Z\n\n"));
  CHECK_FALSE(c::parse_release_stamp("# created 2026-11-22T10:00:0Z\n"));
}

TEST_CASE("a symlinked directory inside the root is never followed", "[crypto]") {
  // sub -> /etc: the manifest line "sub/hostname" names a file outside the root.
  REQUIRE(fs::is_regular_file("/etc/hostname"));
  const bool walk = GENERATE(false, true);
  if (!walk && !c::testing::kernel_has_openat2()) {
    WARN("this kernel has no openat2: only the component walk is tested");
    return;
  }
  INFO("component walk forced: " << walk);
  c::testing::force_component_walk(walk);
  struct Reset {
    ~Reset() { c::testing::force_component_walk(false); }
  } reset;

  TempDir d;
  d.file("root/payload/app", "app v1\n");
  const std::string root = d.str() + "/root";
  REQUIRE(::symlink("/etc", (root + "/sub").c_str()) == 0);
  fs::create_directories(root + "/payload/deep");
  REQUIRE(::symlink("/etc", (root + "/payload/deep/etc").c_str()) == 0);
  const auto outside = c::sha256(c::read_small_file("/etc/hostname"));

  c::Manifest m{{{"payload/app", c::sha256("app v1\n")}, {"sub/hostname", outside},
                 {"payload/deep/etc/hostname", outside}}};
  auto problems = c::check_files(m, root);
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].to_string() ==
        "sub/hostname: symbolic link in path (sub): paths must stay inside the manifest root");
  CHECK(problems[1].to_string() == "payload/deep/etc/hostname: symbolic link in path (payload/deep/etc): paths "
                                   "must stay inside the manifest root");

  CHECK(error_of([&] { c::create_manifest(root, {"sub/hostname"}, std::nullopt); }) ==
        root + "/sub/hostname: symbolic link in path (sub): paths must stay inside the manifest root");
  CHECK_THAT(error_of([&] { c::create_manifest(root, {"sub"}, std::nullopt); }),
             Catch::StartsWith(root + "/sub: is a symbolic link"));
  CHECK_THAT(error_of([&] { c::create_manifest(root, {"payload"}, std::nullopt); }),
             Catch::StartsWith(root + "/payload/deep/etc: is a symbolic link"));
  // The walk itself still lists and checks a clean tree.
  fs::remove(root + "/payload/deep/etc");
  auto clean = c::create_manifest(root, {"payload"}, std::nullopt);
  REQUIRE(clean.entries.size() == 1);
  CHECK(c::check_files(clean, root).empty());
}

TEST_CASE("sha256_file streams large files and matches the one-shot digest", "[crypto]") {
  TempDir d;
  std::string data(3 * 65536 + 123, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 % 251);
  auto path = d.file("big", data);
  CHECK(c::sha256_file(path) == c::sha256(data));
  CHECK(c::to_hex(c::sha256("abc").data(), 32) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
