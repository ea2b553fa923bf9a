#include <utility>  // before Boost.Asio with GCC 12 / C++20

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <optional>

#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include "pisec/formats.hpp"
#include "pisec/gates/integrity.hpp"

namespace c = pisec::crypto;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  fs::path dir;
  pisec::config::IntegrityGate cfg;
  c::KeyPair kp = c::generate_keypair();

  Fixture() {
    std::string tmpl = (fs::temp_directory_path() / "pisec-integrity-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    write("root/boot/vmlinuz", "kernel image");
    write("root/payload/app", "app v1");
    cfg.root = (dir / "root").string();
    cfg.manifest = (dir / "MANIFEST").string();
    cfg.signature = cfg.manifest + ".sig";
    cfg.public_key = (dir / "k.pub").string();
    write("k.pub", c::format_public_key(kp.pub));
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void write(const std::string& rel, const std::string& content) const {
    fs::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel, std::ios::binary | std::ios::trunc) << content;
  }
  void sign_manifest_of(const std::vector<std::string>& paths) {
    auto text = c::format_manifest(c::create_manifest(cfg.root, paths, 1795341600));
    write("MANIFEST", text);
    write("MANIFEST.sig", c::format_signature(c::sign(kp.sec, text), "verify with k.pub"));
  }
  // Runs the gate to completion on an io_context; nullopt if done never came.
  std::optional<pisec::gates::Outcome> run_gate(bool cancel_at_once = false) const {
    boost::asio::io_context io;
    auto gate = pisec::gates::make_integrity_gate(cfg);
    CHECK(gate->name() == "integrity");
    std::optional<pisec::gates::Outcome> result;
    gate->start(io, [&](pisec::gates::Outcome o) { result = std::move(o); });
    if (cancel_at_once) gate->cancel();
    io.run();  // returns only once the worker has finished or given up
    return result;
  }
};

// Bytes this process has read through read(2) so far (all threads).
long long bytes_read_so_far() {
  std::ifstream io("/proc/self/io");
  std::string key;
  long long value = 0;
  while (io >> key >> value)
    if (key == "rchar:") return value;
  return -1;
}

}  // namespace

TEST_CASE("integrity gate passes on a correctly signed manifest", "[integrity]") {
  Fixture f;
  f.sign_manifest_of({"boot", "payload"});
  auto out = f.run_gate();
  REQUIRE(out);
  CHECK(out->passed);
  // boot/vmlinuz, payload/app and the release stamp create_manifest wrote.
  CHECK(out->detail == "manifest signed by key " + c::keynum_hex(f.kp.pub.keynum) + ", 3 files verified");
}

TEST_CASE("integrity gate fails on a tampered release stamp and on a symlinked directory", "[integrity]") {
  Fixture f;
  f.sign_manifest_of({"boot", "payload"});
  SECTION("stamp edited") {
    f.write("root/pisec-release", "created 2036-01-01T00:00:00Z\n");
    auto out = f.run_gate();
    REQUIRE(out);
    CHECK_FALSE(out->passed);
    CHECK_THAT(out->detail, Catch::StartsWith("pisec-release: sha256 mismatch"));
  }
  SECTION("payload replaced by a symlink to a directory with the same files outside the root") {
    fs::rename(f.dir / "root/payload", f.dir / "outside");
    fs::create_symlink(f.dir / "outside", f.dir / "root/payload");
    auto out = f.run_gate();
    REQUIRE(out);
    CHECK_FALSE(out->passed);
    CHECK(out->detail == "payload/app: symbolic link in path (payload): paths must stay inside the manifest root");
  }
}

TEST_CASE("integrity gate fails naming the modified file", "[integrity]") {
  Fixture f;
  f.sign_manifest_of({"boot", "payload"});
  f.write("root/payload/app", "app v2 (tampered)");
  auto out = f.run_gate();
  REQUIRE(out);
  CHECK_FALSE(out->passed);
  auto want = c::sha256("app v1"), got = c::sha256("app v2 (tampered)");
  CHECK(out->detail == "payload/app: sha256 mismatch (expected " + c::to_hex(want.data(), 32).substr(0, 12) +
                           "\u2026, got " + c::to_hex(got.data(), 32).substr(0, 12) + "\u2026)");
}

TEST_CASE("integrity gate fails on a bad signature, a wrong key or a missing file", "[integrity]") {
  Fixture f;
  f.sign_manifest_of({"boot", "payload"});
  SECTION("manifest edited after signing") {
    std::string text = c::read_small_file(f.cfg.manifest);
    text += "# harmless-looking comment\n";
    f.write("MANIFEST", text);
    auto out = f.run_gate();
    REQUIRE(out);
    CHECK_FALSE(out->passed);
    CHECK_THAT(out->detail, Catch::Contains("signature verification failed"));
  }
  SECTION("signed by another key") {
    auto other = c::generate_keypair();
    f.write("k.pub", c::format_public_key(other.pub));
    auto out = f.run_gate();
    REQUIRE(out);
    CHECK_FALSE(out->passed);
    CHECK_THAT(out->detail, Catch::Contains("signature made with key " + c::keynum_hex(f.kp.pub.keynum) +
                                            ", this is key " + c::keynum_hex(other.pub.keynum)));
  }
  SECTION("two files gone") {
    fs::remove(f.dir / "root/boot/vmlinuz");
    fs::remove(f.dir / "root/payload/app");
    auto out = f.run_gate();
    REQUIRE(out);
    CHECK_FALSE(out->passed);
    CHECK(out->detail == "boot/vmlinuz: missing (No such file or directory) (and 1 more files failed)");
  }
}

TEST_CASE("cancelling the integrity gate stops the worker early and drops the result", "[integrity]") {
  Fixture f;
  // A sparse 1 GiB file: cheap to create, slow to hash in full (seconds, more under qemu).
  constexpr long long size = 1LL << 30;
  {
    std::ofstream(f.dir / "root/payload/big");
  }
  fs::resize_file(f.dir / "root/payload/big", size);
  auto text = c::format_manifest(c::Manifest{{{"payload/big", c::Sha256{}}}});
  f.write("MANIFEST", text);
  f.write("MANIFEST.sig", c::format_signature(c::sign(f.kp.sec, text), "verify with k.pub"));

  long long before = bytes_read_so_far();
  REQUIRE(before >= 0);
  auto out = f.run_gate(/*cancel_at_once=*/true);
  long long read = bytes_read_so_far() - before;
  CHECK_FALSE(out);          // done is never called after cancel()
  CHECK(read < size / 4);    // the worker stopped long before the end of the file
}
