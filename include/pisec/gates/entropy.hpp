#pragma once
// The entropy gate: FIPS 140-2 tests on hardware RNG blocks, a seedrng-style
// seed file, and CRNG readiness. The decisions (FIPS verdicts, the seed file
// format, whether a source is rejected, whether the kernel already feeds the
// pool) are plain functions; every kernel effect goes through EntropyAdapter
// so the tests run without root and can see what was credited.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pisec/config.hpp"
#include "pisec/gates.hpp"

namespace pisec::entropy {

// ---------------------------------------------------------------------------
// FIPS 140-2 (section 4.9) statistical and continuous tests, as rng-tools runs
// them: on blocks of 20,000 bits. Bits are taken most significant bit first
// within each byte; nibbles high then low.

inline constexpr std::size_t fips_block_bytes = 2500;
using FipsBlock = std::span<const std::uint8_t, fips_block_bytes>;

enum class FipsTest { monobit, poker, runs, long_run, continuous };
inline constexpr std::size_t fips_test_count = 5;
const char* to_string(FipsTest);  // "monobit", "poker", "runs", "long run", "continuous"

// Monobit: passes when 9725 < ones < 10275.
bool monobit_passes(int ones);
// Poker: f[i] = count of nibble value i over the 5,000 nibbles. FIPS:
// X = (16/5000)·Σf² − 5000 must lie in (2.16, 46.17). Multiplying through by
// 5000/16: Σf² in (1563175, 1576928.125), i.e. Σf² in [1563176, 1576928]
// exactly. rng-tools (and we) use the open interval (1563176, 1576928): one
// value stricter at each end, integer-only, and never laxer than FIPS.
bool poker_passes(std::uint32_t sum_of_squares);
// Runs: counts of runs of length 1,2,3,4,5 and 6+, separately for 0-runs
// (index 0) and 1-runs (index 1); each must lie in its closed FIPS interval.
using RunCounts = std::array<std::array<int, 6>, 2>;
bool runs_pass(const RunCounts& runs);
// Long run: fails on a run (of zeros or ones) of 26 bits or more.
bool long_run_passes(int longest_run);

struct FipsResult {
  std::array<bool, fips_test_count> failed{};  // indexed by FipsTest
  // The statistics behind the verdicts.
  int ones = 0;
  std::uint32_t poker_sum = 0;  // Σf²
  RunCounts runs{};
  int longest_run = 0;

  bool failed_test(FipsTest t) const { return failed[static_cast<std::size_t>(t)]; }
  bool passed() const;
};

// Runs the four statistical tests on one block (no continuous test).
FipsResult fips_statistical_tests(FipsBlock block);

// The continuous test needs the previous output, across blocks too: this
// keeps the last 32-bit word and the last whole block. A block fails when any
// 32-bit word equals the word before it, or when the whole block equals the
// previous block (both are FIPS continuous tests, with n = 32 and n = 20,000;
// the second catches a source stuck repeating a 2,500-byte buffer).
class FipsTester {
 public:
  // FIPS 4.9: the first block after start-up is not used, only kept for
  // comparison. Call prime() with it before test().
  void prime(FipsBlock first_block);
  FipsResult test(FipsBlock block);
  bool primed() const { return primed_; }

 private:
  bool primed_ = false;
  std::uint32_t last_word_ = 0;
  std::array<std::uint8_t, fips_block_bytes> last_block_{};
};

// Failures counted by kind, for the gate's detail line.
struct FipsTally {
  int blocks_tested = 0;
  int blocks_failed = 0;
  std::array<int, fips_test_count> by_test{};
  void add(const FipsResult& r);
  int count(FipsTest t) const { return by_test[static_cast<std::size_t>(t)]; }
  std::string describe_failures() const;  // "poker 1, runs 2"; "" when none
};

// Whether the hardware RNG as a whole is rejected (none of its blocks are
// then credited). One failing block never rejects a source: healthy RNGs fail
// about one block in a thousand. A continuous-test failure does: a repeated
// 32-bit word from a good source has odds of about 1.5e-7 per block.
struct SourceVerdict {
  bool rejected = false;
  std::string reason;  // empty when accepted
};
SourceVerdict judge_hwrng(const FipsTally& tally, double max_block_failure_ratio);

// Credit for a passing hwrng block: 1 bit per byte (2,500 bits per block).
// rngd credits up to 8 bits/byte; we stay conservative, and since Linux 5.18
// the kernel caps any credit at the 256-bit pool anyway, so one passing block
// is already enough to initialise the CRNG.
inline constexpr int hwrng_credit_bits_per_block = static_cast<int>(fips_block_bytes);

// ---------------------------------------------------------------------------
// Kernel hw_random feeding: since about Linux 6.2 (quality defaulting to
// non-zero) the kernel's hwrng thread credits the current hw_random device
// itself; we then must not read /dev/hwrng a second time.

struct KernelHwrngFeed {
  bool feeds = false;
  std::string rng;  // rng_current, e.g. "bcm2835-rng"
  int quality = 0;  // per mille of entropy per bit the kernel credits
};
// Reads <sysfs_root>/class/misc/hw_random/rng_current and rng_quality
// (falling back to <sysfs_root>/module/rng_core/parameters/default_quality).
// Missing files mean "does not feed".
KernelHwrngFeed detect_kernel_hwrng_feed(const std::string& sysfs_root);
// True when path is the kernel's hw_random device (/dev/hwrng, misc 10:183):
// only that device is the one the kernel may already feed from.
bool is_kernel_hwrng_device(const std::string& path);

// ---------------------------------------------------------------------------
// The seed file. One file, replaced atomically, so there is never a moment
// with both a creditable and a non-creditable seed (seedrng's two files):
//
//   offset 0  8 bytes  magic "PISECSD1"
//   offset 8  1 byte   flags: bit 0 = creditable (written from an
//                      initialised CRNG: getrandom(GRND_NONBLOCK) succeeded)
//   offset 9  8 bytes  machine tag: first 8 bytes of SHA-256 of the board's
//                      serial number, all zero when unknown
//   offset 17 32–512   seed bytes
//
// A seed is credited only if it is marked creditable, its machine tag matches
// this board (an SD card cloned into another Pi restores the same seed: that
// copy must not be credited), and it was unlinked (and the directory synced)
// before use, so it can never be credited twice. A file without the magic is
// mixed in uncredited.

inline constexpr std::size_t seed_max_bytes = 512;
inline constexpr std::size_t seed_min_bytes = 32;
inline constexpr std::size_t seed_new_bytes = 512;  // seedrng's largest; costs nothing
inline constexpr std::size_t seed_header_bytes = 17;
using MachineTag = std::array<std::uint8_t, 8>;

struct SeedFile {
  bool creditable = false;
  MachineTag machine{};  // zero = unknown
  std::vector<std::uint8_t> seed;
};
MachineTag machine_tag(const std::string& machine_id);  // zero tag for ""
std::vector<std::uint8_t> encode_seed_file(const SeedFile& s);
// Never throws: unknown formats come back non-creditable with their bytes (at
// most seed_max_bytes) as the seed.
SeedFile decode_seed_file(std::span<const std::uint8_t> bytes);
// Whether a decoded seed may be credited on this machine.
bool seed_may_credit(const SeedFile& s, const MachineTag& this_machine);
// The new seed: random bytes whose last 32 are replaced by SHA-256 over a
// domain string, both clocks, the old seed and the new random bytes (as
// seedrng does with BLAKE2s), so a new seed drawn from a weak pool still
// carries the old seed's entropy.
std::vector<std::uint8_t> derive_new_seed(std::span<const std::uint8_t> old_seed,
                                          std::span<const std::uint8_t> fresh_random,
                                          std::int64_t realtime_ns, std::int64_t boottime_ns);

// ---------------------------------------------------------------------------
// Kernel effects. The real one uses getrandom(2), RNDADDENTROPY on
// /dev/random and a few /sys and /proc reads; tests inject a fake.

class EntropyAdapter {
 public:
  virtual ~EntropyAdapter() = default;
  // getrandom(GRND_NONBLOCK): true only when out was filled completely,
  // i.e. the CRNG is initialised. An empty out just probes readiness.
  virtual bool getrandom_nonblock(std::span<std::uint8_t> out) = 0;
  // Bytes even before the CRNG is ready (GRND_INSECURE, else /dev/urandom):
  // only for a seed that is then written as non-creditable.
  virtual void getrandom_insecure(std::span<std::uint8_t> out) = 0;
  // Blocks until the CRNG is ready (getrandom with flags 0). Called only on
  // the gate's worker thread.
  virtual void wait_crng_ready() = 0;
  // Mixes bytes (at most 2,500) into the pool and credits credit_bits
  // (RNDADDENTROPY, needs CAP_SYS_ADMIN); credit_bits 0 only mixes (a write
  // to /dev/random). Throws std::system_error.
  virtual void add_entropy(std::span<const std::uint8_t> bytes, int credit_bits) = 0;
  // Something that identifies this board and is not copied with its SD card:
  // the SoC serial number. Empty when unknown.
  virtual std::string machine_id() = 0;
};

std::shared_ptr<EntropyAdapter> make_real_entropy_adapter();
// Wraps an adapter so that nothing is ever credited (everything is mixed in
// without credit): for checking fake data on a real host without lying to
// its kernel.
std::shared_ptr<EntropyAdapter> make_no_credit_adapter(std::shared_ptr<EntropyAdapter> inner);

// ---------------------------------------------------------------------------
// The gate.

struct EntropyGateOptions {
  std::string sysfs_root = "/sys";  // tests point this at a temp dir
};

// Starts a worker thread that: consumes and mixes the seed file, writes the
// refreshed seed, reads 1 + hwrng_blocks blocks from hwrng (the first is the
// continuous test's reference), tests and credits them, then waits for the
// CRNG. Passes when the CRNG is ready and the hwrng (if configured and not
// already fed by the kernel) was not rejected. A null adapter means the real
// kernel. cancel() stops the worker between blocks; a worker stuck in a
// blocking read or getrandom finishes it and then touches nothing.
std::unique_ptr<gates::Gate> make_entropy_gate(const config::EntropyGate& cfg,
                                               std::shared_ptr<EntropyAdapter> adapter = nullptr,
                                               EntropyGateOptions options = {});

// The gate's work, synchronously, for the worker thread and for tests.
// `cancelled` is polled between steps.
gates::Outcome run_entropy_gate(const config::EntropyGate& cfg, EntropyAdapter& adapter,
                                const EntropyGateOptions& options,
                                const std::atomic<bool>* cancelled = nullptr);

}  // namespace pisec::entropy
