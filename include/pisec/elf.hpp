#pragma once
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
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "pisec/config.hpp"
#include "pisec/gates.hpp"

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

// The arch gate: the payload executable (command[0], resolved in the payload
// rootfs and PATH; a "#!" script's interpreter is checked instead) and, when
// the integrity gate is enabled with a manifest, every ELF file the manifest
// lists (paths relative to integrity.root). A dynamic payload's program
// interpreter must exist in the payload's root.
std::unique_ptr<gates::Gate> make_arch_gate(const config::ArchGate& arch,
                                            const config::Payload& payload,
                                            const config::IntegrityGate& integrity);

// The gate's decision as a plain function (what the Gate posts as its outcome).
gates::Outcome run_arch_checks(const config::ArchGate& arch, const config::Payload& payload,
                               const config::IntegrityGate& integrity);

}  // namespace pisec::elf
