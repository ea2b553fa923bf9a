#pragma once
// Ed25519 keys and signatures in OpenBSD signify format, streaming SHA-256,
// and the signed artifact manifest (sha256sum format) the integrity gate
// checks. Everything goes through OpenSSL 3; nothing here needs root.
#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pisec::crypto {

// Any bad key, signature, manifest or file: the message names what, where and why.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown from hashing when the caller's cancel flag was set.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

// ---- base64 (strict: canonical, padded, no whitespace) ---------------------
std::string base64_encode(const std::uint8_t* data, std::size_t size);
// nullopt unless text is exactly what base64_encode would produce for some bytes.
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

std::string to_hex(const std::uint8_t* data, std::size_t size);

// ---- signify ---------------------------------------------------------------
using KeyNum = std::array<std::uint8_t, 8>;

struct PublicKey {
  KeyNum keynum{};
  std::array<std::uint8_t, 32> key{};
};

struct SecretKey {
  KeyNum keynum{};
  std::array<std::uint8_t, 64> key{};  // 32-byte seed followed by the 32-byte public key
};

struct Signature {
  KeyNum keynum{};
  std::array<std::uint8_t, 64> sig{};
};

std::string keynum_hex(const KeyNum& k);

// File texts: "untrusted comment: <comment>\n<base64>\n". `where` names the
// source (a path) in error messages. A public key that is a small-order point
// is refused ("public key is a small-order point"): it verifies forgeries.
PublicKey parse_public_key(std::string_view text, const std::string& where);
SecretKey parse_secret_key(std::string_view text, const std::string& where);
Signature parse_signature(std::string_view text, const std::string& where);
// `comment` is the text after "untrusted comment: " (no newline).
std::string format_public_key(const PublicKey& k, std::string_view comment = "signify public key");
std::string format_secret_key(const SecretKey& k, std::string_view comment = "signify secret key");
std::string format_signature(const Signature& s, std::string_view comment);

struct KeyPair {
  PublicKey pub;
  SecretKey sec;
};
KeyPair generate_keypair();
PublicKey public_half(const SecretKey& k);

Signature sign(const SecretKey& k, std::string_view message);
// Throws Error "signature made with key X, this is key Y" on a keynum mismatch,
// and Error on a small-order public key or R, or S >= L (libsodium's rules:
// OpenSSL alone accepts R = A = identity, S = 0 for every message); otherwise
// returns whether the Ed25519 signature over message is valid.
bool verify(const PublicKey& k, const Signature& s, std::string_view message);

// ---- SHA-256 -----------------------------------------------------------------
using Sha256 = std::array<std::uint8_t, 32>;
Sha256 sha256(std::string_view data);
// Streams the file through a fixed 64 KiB buffer. Opens with O_NOFOLLOW and
// refuses anything but a regular file. Throws Error (naming the path and the
// reason) or Cancelled when *cancel becomes true between buffers.
Sha256 sha256_file(const std::string& path, const std::atomic<bool>* cancel = nullptr);

// ---- manifest ------------------------------------------------------------------
// Plain "<64 lower-case hex>  <path>" lines, nothing else, so that both GNU
// `sha256sum --strict -c` and BusyBox `sha256sum -c` (Alpine) accept it
// unmodified in the root directory. Paths are relative to a root directory.
struct ManifestEntry {
  std::string path;
  Sha256 hash{};
};

struct Manifest {
  std::vector<ManifestEntry> entries;
};

// The release stamp: a one-line file "created YYYY-MM-DDTHH:MM:SSZ\n" that
// `manifest create` writes at the root and lists, so the signature covers the
// creation time (the clock gate's manifest floor) through its hash.
inline constexpr std::string_view release_stamp_name = "pisec-release";
std::string format_release_stamp(std::int64_t unix_seconds);
std::optional<std::int64_t> parse_release_stamp(std::string_view text);  // nullopt unless exactly that line

// Empty string if acceptable, otherwise why not (absolute, "..", newline, ...).
std::string manifest_path_problem(std::string_view path);
// Throws Error "<where>:<line>: <reason>" for the first line of any other shape
// (comments, "*" binary markers and upper-case hex included).
Manifest parse_manifest(std::string_view text, const std::string& where);
std::string format_manifest(const Manifest& m);

// Hashes `paths` (files, or directories walked in sorted order) and returns the
// manifest. Relative paths are taken relative to root; absolute ones must lie
// under it. Every path is opened beneath the root with no symlink in any
// component. With release_time, first writes <root>/pisec-release and lists it
// first. Throws Error on symlinks, special files, duplicates, bad names.
Manifest create_manifest(const std::string& root, const std::vector<std::string>& paths,
                         std::optional<std::int64_t> release_time);

// Reads the three files, checks the signature over exactly the manifest's
// bytes, then parses those same bytes. Throws Error on any problem.
struct SignedManifest {
  Manifest manifest;
  KeyNum keynum{};
};
SignedManifest load_signed_manifest(const std::string& manifest_path, const std::string& signature_path,
                                    const std::string& public_key_path);

struct FileProblem {
  std::string path;    // as listed in the manifest
  std::string reason;  // "missing (No such file or directory)", "sha256 mismatch (expected …, got …)"
  std::string to_string() const { return path + ": " + reason; }
};
// Hashes every entry under root (opened beneath it: a symlink in any component
// is a problem, never followed); returns one problem per bad file (empty = all
// good). `abbreviate` shortens hashes in reasons to 12 hex digits (status lines).
std::vector<FileProblem> check_files(const Manifest& m, const std::string& root,
                                     const std::atomic<bool>* cancel = nullptr, bool abbreviate = false);

// The signed release time, for the clock gate's floor (it runs before the
// integrity gate): checks the signature, finds the pisec-release entry, reads
// <root>/pisec-release and returns its time only if its SHA-256 matches the
// entry. nullopt if the manifest lists no stamp; Error on any mismatch.
std::optional<std::int64_t> signed_release_time(const std::string& manifest_path, const std::string& signature_path,
                                                const std::string& public_key_path, const std::string& root);
// The (path, hash) entries, for the arch gate. Throws Error if unreadable or malformed.
std::vector<ManifestEntry> manifest_entries(const std::string& manifest_path);

// File helpers shared with the CLI.
std::string read_small_file(const std::string& path, std::size_t max_bytes = 16 * 1024 * 1024);

namespace testing {
// Makes every open beneath a root use the component-by-component openat walk
// that kernels without openat2 (before 5.6) get, so tests cover both.
void force_component_walk(bool on);
bool kernel_has_openat2();
}  // namespace testing

}  // namespace pisec::crypto
