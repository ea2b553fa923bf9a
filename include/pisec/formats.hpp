#pragma once
// The file formats the gates and the CLI share, parsed in one place each:
// signify keys and signatures, the signed sha256sum-format manifest (crypto),
// and ELF/ARM build attributes/Go build info (elf).
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pisec/util.hpp"

// ---- signify and the manifest ----------------------------------------
// Ed25519 keys and signatures in OpenBSD signify format, streaming SHA-256,
// and the signed artifact manifest (sha256sum format) the integrity gate
// checks. Everything goes through OpenSSL 3; nothing here needs root.

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
// The same over a descriptor already open (read to its end from where it
// stands); `shown` names it in errors.
Sha256 sha256_fd(int fd, const std::string& shown, const std::atomic<bool>* cancel = nullptr);

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

// ---- ELF ------------------------------------------------------------
// elfcheck and the arch gate: can the Pi 1B's ARM1176JZF-S (ARMv6KZ, VFPv2,
// Thumb-1 only, no NEON) run this ELF file? Decided from the ELF header, the
// .ARM.attributes build attributes and, for Go programs (which carry no
// attributes), the GOARM setting in the Go build info.
//
// Float ABI: the CPU runs both soft-float and hard-float (VFP register)
// calling conventions, so the float ABI alone never refuses a file; it is
// reported. What a hard-float *dynamic* binary really needs is its program
// interpreter (e.g. /lib/ld-linux-armhf.so.3) in the userland it runs on; the
// arch gate checks that the payload's interpreter exists under its root, which
// is where an armhf-on-armel (or glibc-on-musl) mismatch shows up.

namespace pisec::elf {

// armv6: the Pi 1B. host: the machine this pisecd was built for (on an ARM
// build that is armv6 too), so the daemon and its tests work anywhere.
enum class Target { armv6, host };

// "armv6" / "host" → Target; nullopt for anything else.
std::optional<Target> parse_target(std::string_view name);

enum class Status {
  runs,          // the target can run it
  refused,       // it asks for more than the target has, or is for another machine
  cannot_judge,  // a valid ARM ELF without build attributes or Go build info
  malformed,     // not an ELF file, or a damaged one
  unreadable,    // the file could not be opened or read (or is too big)
};

struct Verdict {
  Verdict() = default;
  Verdict(Status s, std::string why, std::string interp = {}, std::string built_for = {})
      : status(s), detail(std::move(why)), interpreter(std::move(interp)), profile(std::move(built_for)) {}

  Status status = Status::malformed;
  // runs: the profile it needs, e.g. "ARMv6KZ, VFPv2, Thumb-1, soft-float";
  // otherwise the reason, e.g. "Tag_CPU_arch v7 (ARMv7) is above ARMv6KZ".
  std::string detail;
  std::string interpreter;  // PT_INTERP of a dynamic executable; empty if static
  std::string profile;      // what the file was built for, also when refused

  bool acceptable(bool allow_unknown) const {
    return status == Status::runs || (allow_unknown && status == Status::cannot_judge);
  }
};

// One line for a person: "runs on ARMv6 (…)", "does not run on ARMv6: …",
// "cannot judge whether it runs on ARMv6: …", "not a valid ELF file: …",
// "cannot read: …".
std::string describe(const Verdict& verdict, Target target);
// "ARMv6" or "this host (x86-64)".
std::string target_name(Target target);

// Thrown by the parsers below for damaged input; check_elf turns it into
// Status::malformed.
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The aeabi build attributes of a whole file (Tag_File); absent tags stay
// nullopt. Tag_Section/Tag_Symbol subsections are skipped: they only narrow
// what the file-level attributes already claim.
struct ArmAttributes {
  std::optional<std::uint32_t> cpu_arch;          // Tag_CPU_arch (6)
  std::optional<std::uint32_t> cpu_arch_profile;  // Tag_CPU_arch_profile (7): 'A','R','M','S'
  std::optional<std::uint32_t> thumb_isa_use;     // Tag_THUMB_ISA_use (9)
  std::optional<std::uint32_t> fp_arch;           // Tag_FP_arch (10)
  std::optional<std::uint32_t> wmmx_arch;         // Tag_WMMX_arch (11)
  std::optional<std::uint32_t> advanced_simd;     // Tag_Advanced_SIMD_arch (12)
  std::optional<std::uint32_t> vfp_args;          // Tag_ABI_VFP_args (28)
  std::optional<std::uint32_t> fp_hp_extension;   // Tag_FP_HP_extension (36)
  std::optional<std::uint32_t> mp_extension;      // Tag_MPextension_use (42)
  std::optional<std::uint32_t> div_use;           // Tag_DIV_use (44)
  std::optional<std::uint32_t> mve_arch;          // Tag_MVE_arch (48)
  std::optional<std::uint32_t> t2ee_use;          // Tag_T2EE_use (66)
  std::optional<std::uint32_t> virtualization;    // Tag_Virtualization_use (68)
  std::string cpu_name;                           // Tag_CPU_name (5)
  bool has_aeabi = false;                         // an "aeabi" subsection was present
};

// Parses the contents of a .ARM.attributes section. Throws FormatError.
ArmAttributes parse_arm_attributes(std::span<const std::uint8_t> section);

struct GoBuildInfo {
  std::string go_version;  // "go1.19.8"
  std::string goarm;       // value of "build\tGOARM=…" ("6", "7", "6,softfloat"); empty if absent
  std::string goarch;      // "arm", "amd64", …; empty if absent
};

// Parses the contents of a .go.buildinfo section (Go 1.18+ inline format).
// Returns nullopt for the pre-1.18 pointer format; throws FormatError on damage.
std::optional<GoBuildInfo> parse_go_buildinfo(std::span<const std::uint8_t> section);

// Random access to one file's bytes. The parser reads the ELF header, the
// header tables and the few sections it judges by, never the whole file, so
// its memory does not grow with the file (pread on a descriptor; a span in the
// unit tests and the fuzzer).
class Reader {
 public:
  virtual ~Reader() = default;
  virtual std::uint64_t size() const = 0;
  // Fills out with the bytes at offset; callers keep offset + out.size() <= size().
  // Throws ReadError when they cannot be read.
  virtual void read(std::uint64_t offset, std::span<std::uint8_t> out) const = 0;
};

// An I/O failure under a Reader (the file shrank, EIO): check_elf turns it
// into Status::unreadable.
struct ReadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A Reader over bytes already in memory (which must outlive it).
class MemoryReader final : public Reader {
 public:
  explicit MemoryReader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  void read(std::uint64_t offset, std::span<std::uint8_t> out) const override;

 private:
  std::span<const std::uint8_t> bytes_;
};

// The most elfcheck reads of one section (.ARM.attributes, .go.buildinfo; both
// are a few KiB at most in real files): a larger one is refused as malformed
// rather than read.
inline constexpr std::size_t max_section_bytes = 1u * 1024 * 1024;
// PT_INTERP is a path: the kernel refuses one longer than PATH_MAX.
inline constexpr std::size_t max_interpreter_bytes = 4096;

// The whole decision over one file. Never throws for bad input.
Verdict check_elf(const Reader& file, Target target);
Verdict check_elf(std::span<const std::uint8_t> bytes, Target target);

// A sanity bound on the files judged; memory no longer depends on it (only
// headers and a few small sections are read).
inline constexpr std::size_t default_max_file_bytes = 128u * 1024 * 1024;

// Reads a regular file (refusing FIFOs, devices, directories and anything over
// max_bytes) and checks it; what stops it being read is Status::unreadable.
// root_fd, if >= 0, is a directory that the path (absolute or relative, and
// any symlinks on the way) is resolved inside, as the payload sees its rootfs.
Verdict check_file(const std::string& path, Target target,
                   std::size_t max_bytes = default_max_file_bytes, int root_fd = -1);

// File access shared by check_file and the arch gate.
// Opens path read-only. With root_fd >= 0 the path, ".." and symlinks are
// resolved inside that directory (openat2 RESOLVE_IN_ROOT), as a process
// chrooted there would see them. Returns -1 with errno set.
int open_in_root(int root_fd, const std::string& path, int flags);

// A regular file read with pread, only where the parser asks: judging a
// 100 MB ELF costs its headers, not 100 MB. FIFOs and devices are refused
// (they would block or never end).
class FileReader final : public Reader {
 public:
  FileReader(int root_fd, const std::string& path);
  ~FileReader() override;
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // Empty once open: "No such file or directory", "is a directory", …
  const std::string& error() const { return error_; }
  // "larger than the N-byte limit", or empty.
  std::string size_error(std::size_t max_bytes) const;
  // The first min(n, size()) bytes: a "#!" line, the ELF magic.
  std::vector<std::uint8_t> head(std::size_t n) const;

  std::uint64_t size() const override { return size_; }
  void read(std::uint64_t offset, std::span<std::uint8_t> out) const override;

 private:
  util::UniqueFd fd_;
  std::uint64_t size_ = 0;
  std::string error_;
};

struct ReadResult {
  std::string error;                // empty on success: "No such file or directory", …
  std::vector<std::uint8_t> bytes;  // the whole file (when read)
};

// Reads a whole regular file of at most max_bytes (the manifest, not ELF files).
ReadResult read_file(int root_fd, const std::string& path, std::size_t max_bytes);

}  // namespace pisec::elf
