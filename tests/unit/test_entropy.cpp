#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <condition_variable>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>

#include "pisec/gates/entropy.hpp"

namespace fs = std::filesystem;
using namespace pisec::entropy;
using Block = std::array<std::uint8_t, fips_block_bytes>;

namespace {

// Deterministic "good" random data: SHA-256 in counter mode.
std::vector<std::uint8_t> good_stream(std::size_t bytes, std::uint64_t label = 1) {
  std::vector<std::uint8_t> out;
  out.reserve(bytes + 32);
  for (std::uint64_t counter = 0; out.size() < bytes; ++counter) {
    std::array<std::uint8_t, 16> in{};
    for (std::size_t i = 0; i < 8; ++i) {
      in[i] = static_cast<std::uint8_t>(label >> (8 * i));
      in[8 + i] = static_cast<std::uint8_t>(counter >> (8 * i));
    }
    std::array<std::uint8_t, 32> d{};
    unsigned int len = 0;
    REQUIRE(EVP_Digest(in.data(), in.size(), d.data(), &len, EVP_sha256(), nullptr) == 1);
    out.insert(out.end(), d.begin(), d.end());
  }
  out.resize(bytes);
  return out;
}

Block block_of(std::uint8_t byte) {
  Block b;
  b.fill(byte);
  return b;
}

Block block_from(const std::vector<std::uint8_t>& data, std::size_t index) {
  Block b;
  std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(index * fips_block_bytes), b.size(), b.begin());
  return b;
}

void set_bit(Block& b, std::size_t bit, bool value) {
  auto mask = static_cast<std::uint8_t>(0x80u >> (bit % 8));
  if (value) b[bit / 8] = static_cast<std::uint8_t>(b[bit / 8] | mask);
  else b[bit / 8] = static_cast<std::uint8_t>(b[bit / 8] & ~mask);
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pisec-entropy-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_file(const fs::path& p, std::span<const std::uint8_t> bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),  // NOLINT: byte I/O
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::vector<std::uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A kernel stand-in: the CRNG becomes ready once 256 bits were credited (as
// Linux 5.18+ does), or when a test says so; every mix is recorded.
class FakeKernel final : public EntropyAdapter {
 public:
  struct Mix {
    std::vector<std::uint8_t> bytes;
    int credit_bits;
  };

  bool getrandom_nonblock(std::span<std::uint8_t> out) override {
    std::lock_guard lock(m_);
    if (!ready_) return false;
    fill(out);
    return true;
  }
  void getrandom_insecure(std::span<std::uint8_t> out) override {
    std::lock_guard lock(m_);
    ++insecure_reads;
    fill(out);
  }
  void wait_crng_ready() override {
    std::unique_lock lock(m_);
    ++wait_calls;
    if (ready_on_wait) ready_ = true;
    cv_.wait(lock, [&] { return ready_ || released_; });
  }
  void add_entropy(std::span<const std::uint8_t> bytes, int credit_bits) override {
    if (on_add_entropy) on_add_entropy();
    if (add_error != 0) throw std::system_error(add_error, std::generic_category(), "RNDADDENTROPY");
    std::lock_guard lock(m_);
    mixes.push_back({{bytes.begin(), bytes.end()}, credit_bits});
    credited_bits += credit_bits;
    if (credited_bits >= 256) ready_ = true;
    cv_.notify_all();
  }
  std::string machine_id() override { return machine; }

  void set_ready(bool r) {
    std::lock_guard lock(m_);
    ready_ = r;
    cv_.notify_all();
  }
  void release() {
    std::lock_guard lock(m_);
    released_ = true;
    cv_.notify_all();
  }
  std::vector<Mix> credits() const {
    std::vector<Mix> out;
    for (const auto& m : mixes)
      if (m.credit_bits > 0) out.push_back(m);
    return out;
  }

  std::vector<Mix> mixes;
  int credited_bits = 0;
  int wait_calls = 0;
  int insecure_reads = 0;
  bool ready_on_wait = true;
  std::string machine = "board-0001";
  std::function<void()> on_add_entropy;
  int add_error = 0;  // errno add_entropy fails with, 0 = works

 private:
  void fill(std::span<std::uint8_t> out) {
    auto data = good_stream(out.size(), 1000 + counter_++);
    std::copy(data.begin(), data.end(), out.begin());
  }
  std::mutex m_;
  std::condition_variable cv_;
  bool ready_ = false;
  bool released_ = false;
  std::uint64_t counter_ = 0;
};

pisec::config::EntropyGate gate_config() {
  pisec::config::EntropyGate cfg;
  cfg.hwrng.clear();
  cfg.seed_file.clear();
  cfg.hwrng_blocks = 16;
  cfg.max_block_failure_ratio = 0.1;
  return cfg;
}

EntropyGateOptions options_for(const TempDir& dir) {
  EntropyGateOptions o;
  o.sysfs_root = (dir.path / "sys").string();  // empty: the kernel does not feed hw_random
  return o;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

// --- FIPS 140-2 tests ----------------------------------------------------

TEST_CASE("all-zero block fails monobit, poker, runs and long run", "[entropy]") {
  auto r = fips_statistical_tests(block_of(0x00));
  CHECK(r.ones == 0);
  CHECK(r.longest_run == 20000);
  CHECK(r.failed_test(FipsTest::monobit));
  CHECK(r.failed_test(FipsTest::poker));
  CHECK(r.failed_test(FipsTest::runs));
  CHECK(r.failed_test(FipsTest::long_run));
  CHECK_FALSE(r.passed());
}

TEST_CASE("alternating 0x55 block passes monobit but fails runs and poker", "[entropy]") {
  auto r = fips_statistical_tests(block_of(0x55));
  CHECK(r.ones == 10000);
  CHECK_FALSE(r.failed_test(FipsTest::monobit));
  CHECK(r.poker_sum == 5000u * 5000u);
  CHECK(r.failed_test(FipsTest::poker));
  CHECK(r.runs[0][0] == 10000);
  CHECK(r.runs[1][0] == 10000);
  CHECK(r.failed_test(FipsTest::runs));
  CHECK(r.longest_run == 1);
  CHECK_FALSE(r.failed_test(FipsTest::long_run));
}

TEST_CASE("a repeating 32-bit word fails the continuous test", "[entropy]") {
  Block b;
  for (std::size_t i = 0; i < b.size(); i += 4) {
    b[i] = 0xde; b[i + 1] = 0xad; b[i + 2] = 0xbe; b[i + 3] = 0xef;
  }
  FipsTester t;
  t.prime(block_from(good_stream(fips_block_bytes, 7), 0));
  CHECK(t.test(b).failed_test(FipsTest::continuous));
}

TEST_CASE("continuous test compares across blocks and whole blocks", "[entropy]") {
  auto data = good_stream(3 * fips_block_bytes, 9);
  Block a = block_from(data, 0);
  Block b = block_from(data, 1);
  Block c = block_from(data, 2);

  FipsTester t;
  t.prime(a);
  CHECK_FALSE(t.test(b).failed_test(FipsTest::continuous));
  // c starts with the word b ended with: a repeat across the block boundary.
  std::copy_n(b.end() - 4, 4, c.begin());
  CHECK(t.test(c).failed_test(FipsTest::continuous));
  // The same 2,500 bytes again: no two adjacent words equal, yet stuck.
  CHECK(t.test(c).failed_test(FipsTest::continuous));
  CHECK_FALSE(t.test(b).failed_test(FipsTest::continuous));
}

TEST_CASE("good CSPRNG output passes at least 99 of 100 blocks", "[entropy]") {
  auto data = good_stream(101 * fips_block_bytes, 42);
  FipsTester t;
  t.prime(block_from(data, 0));
  FipsTally tally;
  for (std::size_t i = 1; i <= 100; ++i) tally.add(t.test(block_from(data, i)));
  CHECK(tally.blocks_tested == 100);
  CHECK(tally.blocks_failed <= 1);
  CHECK(tally.count(FipsTest::continuous) == 0);
}

TEST_CASE("monobit boundaries: 9725 and 10275 ones fail, 9726 and 10274 pass", "[entropy]") {
  auto with_ones = [](std::size_t ones) {
    Block b = block_of(0x00);
    for (std::size_t i = 0; i < ones; ++i) set_bit(b, i, true);
    return fips_statistical_tests(b);
  };
  for (auto [ones, fails] : {std::pair{9725, true}, {9726, false}, {10274, false}, {10275, true}}) {
    auto r = with_ones(static_cast<std::size_t>(ones));
    INFO("ones = " << ones);
    CHECK(r.ones == ones);
    CHECK(r.failed_test(FipsTest::monobit) == fails);
    CHECK(monobit_passes(ones) == !fails);
  }
}

TEST_CASE("long run boundary: a run of 25 passes, 26 fails", "[entropy]") {
  for (bool run_of_ones : {true, false}) {
    for (int length : {25, 26}) {
      Block b = block_of(0x55);  // longest run 1
      const std::size_t start = 1000;
      for (std::size_t i = 0; i < static_cast<std::size_t>(length); ++i) set_bit(b, start + i, run_of_ones);
      set_bit(b, start - 1, !run_of_ones);
      set_bit(b, start + static_cast<std::size_t>(length), !run_of_ones);
      auto r = fips_statistical_tests(b);
      INFO("run of " << length << (run_of_ones ? " ones" : " zeros"));
      CHECK(r.longest_run == length);
      CHECK(r.failed_test(FipsTest::long_run) == (length >= 26));
    }
  }
  CHECK(long_run_passes(25));
  CHECK_FALSE(long_run_passes(26));
}

TEST_CASE("poker bounds are FIPS's X in (2.16, 46.17), one value stricter at each end", "[entropy]") {
  CHECK_FALSE(poker_passes(1563176));
  CHECK(poker_passes(1563177));
  CHECK(poker_passes(1576927));
  CHECK_FALSE(poker_passes(1576928));
  int disagreements = 0;
  for (std::uint32_t s = 1562000; s <= 1578000; ++s) {
    double x = 16.0 / 5000.0 * static_cast<double>(s) - 5000.0;
    bool fips = x > 2.16 && x < 46.17;
    if (fips != poker_passes(s)) {
      ++disagreements;
      CHECK(fips);  // we may only ever be stricter
      CHECK((s == 1563176 || s == 1576928));
    }
  }
  CHECK(disagreements == 2);
}

TEST_CASE("runs bounds are the closed FIPS intervals for both bit values", "[entropy]") {
  const std::array<std::array<int, 2>, 6> bounds = {
      {{2315, 2685}, {1114, 1386}, {527, 723}, {240, 384}, {103, 209}, {103, 209}}};
  RunCounts mid{};
  for (std::size_t bit = 0; bit < 2; ++bit)
    for (std::size_t len = 0; len < 6; ++len) mid[bit][len] = (bounds[len][0] + bounds[len][1]) / 2;
  CHECK(runs_pass(mid));
  for (std::size_t bit = 0; bit < 2; ++bit) {
    for (std::size_t len = 0; len < 6; ++len) {
      RunCounts r = mid;
      INFO("bit " << bit << " length index " << len);
      r[bit][len] = bounds[len][0];
      CHECK(runs_pass(r));
      r[bit][len] = bounds[len][0] - 1;
      CHECK_FALSE(runs_pass(r));
      r[bit][len] = bounds[len][1];
      CHECK(runs_pass(r));
      r[bit][len] = bounds[len][1] + 1;
      CHECK_FALSE(runs_pass(r));
    }
  }
}

TEST_CASE("hwrng verdict: a failure rate or a stuck source, never one block", "[entropy]") {
  FipsResult good;
  FipsResult poker_fail;
  poker_fail.failed[static_cast<std::size_t>(FipsTest::poker)] = true;
  FipsResult repeat;
  repeat.failed[static_cast<std::size_t>(FipsTest::continuous)] = true;

  FipsTally one_bad;
  for (int i = 0; i < 15; ++i) one_bad.add(good);
  one_bad.add(poker_fail);
  CHECK_FALSE(judge_hwrng(one_bad, 0.1).rejected);
  CHECK(one_bad.describe_failures() == "poker 1");

  FipsTally two_bad = one_bad;
  two_bad.add(poker_fail);  // 2/17 = 0.118 > 0.1
  CHECK(judge_hwrng(two_bad, 0.1).rejected);
  CHECK_FALSE(judge_hwrng(two_bad, 0.2).rejected);

  FipsTally single_bad;
  single_bad.add(poker_fail);
  CHECK(judge_hwrng(single_bad, 1.0).rejected);  // every block failed: stuck

  FipsTally one_repeat = one_bad;
  one_repeat.add(repeat);
  auto v = judge_hwrng(one_repeat, 0.5);
  CHECK(v.rejected);
  CHECK(contains(v.reason, "continuous"));

  FipsTally rare;  // about what a healthy RNG does: 1 in 1000
  for (int i = 0; i < 999; ++i) rare.add(good);
  rare.add(poker_fail);
  CHECK_FALSE(judge_hwrng(rare, 0.001).rejected);
}

// --- kernel hw_random feeding --------------------------------------------

TEST_CASE("kernel hw_random feeding is read from sysfs", "[entropy]") {
  TempDir dir;
  const std::string root = (dir.path / "sys").string();
  CHECK_FALSE(detect_kernel_hwrng_feed(root).feeds);  // nothing there

  write_text(dir.path / "sys/class/misc/hw_random/rng_current", "bcm2835-rng\n");
  write_text(dir.path / "sys/module/rng_core/parameters/default_quality", "0\n");
  CHECK_FALSE(detect_kernel_hwrng_feed(root).feeds);

  write_text(dir.path / "sys/module/rng_core/parameters/default_quality", "1024\n");
  auto f = detect_kernel_hwrng_feed(root);
  CHECK(f.feeds);
  CHECK(f.rng == "bcm2835-rng");
  CHECK(f.quality == 1024);

  // The device's own quality wins over the module default.
  write_text(dir.path / "sys/class/misc/hw_random/rng_quality", "0\n");
  CHECK_FALSE(detect_kernel_hwrng_feed(root).feeds);

  write_text(dir.path / "sys/class/misc/hw_random/rng_quality", "1000\n");
  write_text(dir.path / "sys/class/misc/hw_random/rng_current", "none\n");
  CHECK_FALSE(detect_kernel_hwrng_feed(root).feeds);

  CHECK(is_kernel_hwrng_device("/dev/hwrng"));
  CHECK_FALSE(is_kernel_hwrng_device((dir.path / "sys").string()));
}

// --- seed file format ----------------------------------------------------

TEST_CASE("seed file round-trips and unknown formats are never creditable", "[entropy]") {
  SeedFile s;
  s.creditable = true;
  s.machine = machine_tag("board-0001");
  s.seed = good_stream(512, 3);
  auto bytes = encode_seed_file(s);
  CHECK(bytes.size() == seed_header_bytes + 512);
  SeedFile back = decode_seed_file(bytes);
  CHECK(back.creditable);
  CHECK(back.machine == s.machine);
  CHECK(back.seed == s.seed);
  CHECK(seed_may_credit(back, machine_tag("board-0001")));
  CHECK_FALSE(seed_may_credit(back, machine_tag("board-0002")));  // cloned SD card
  CHECK_FALSE(seed_may_credit(back, machine_tag("")));

  s.creditable = false;
  CHECK_FALSE(seed_may_credit(decode_seed_file(encode_seed_file(s)), s.machine));

  auto raw = good_stream(600, 4);  // e.g. dd if=/dev/urandom: mixed, capped, not credited
  SeedFile foreign = decode_seed_file(raw);
  CHECK_FALSE(foreign.creditable);
  CHECK(foreign.seed.size() == 512);
  CHECK_FALSE(seed_may_credit(foreign, foreign.machine));

  s.seed.resize(31);
  CHECK_THROWS(encode_seed_file(s));
  CHECK(machine_tag("") == MachineTag{});
}

TEST_CASE("a new seed keeps the random bytes and folds the old seed into its tail", "[entropy]") {
  auto fresh = good_stream(512, 5);
  auto a = derive_new_seed(good_stream(512, 6), fresh, 1, 2);
  auto b = derive_new_seed(good_stream(512, 7), fresh, 1, 2);
  auto c = derive_new_seed(good_stream(512, 6), fresh, 1, 3);
  REQUIRE(a.size() == 512);
  CHECK(std::equal(a.begin(), a.end() - 32, fresh.begin()));
  CHECK_FALSE(std::equal(a.end() - 32, a.end(), fresh.end() - 32));
  CHECK(a != b);
  CHECK(a != c);
  CHECK(a == derive_new_seed(good_stream(512, 6), fresh, 1, 2));
}

// --- the gate --------------------------------------------------------------

TEST_CASE("entropy gate credits a good hwrng file block by block", "[entropy]") {
  TempDir dir;
  auto data = good_stream(17 * fips_block_bytes, 11);  // reference block + 16
  write_file(dir.path / "hwrng", data);
  auto cfg = gate_config();
  cfg.hwrng = (dir.path / "hwrng").string();
  FakeKernel kernel;

  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  INFO(out.detail);
  CHECK(out.passed);
  auto credits = kernel.credits();
  CHECK(credits.size() >= 15);
  CHECK(contains(out.detail, "hwrng 16 blocks: " + std::to_string(credits.size()) + " credited"));
  CHECK(contains(out.detail, "crng ready"));
  for (const auto& c : credits) {
    CHECK(c.credit_bits == 2500);
    REQUIRE(c.bytes.size() == fips_block_bytes);
    // Never the reference block; always one of the tested ones.
    CHECK(c.bytes != std::vector<std::uint8_t>(data.begin(), data.begin() + 2500));
    CHECK(std::search(data.begin(), data.end(), c.bytes.begin(), c.bytes.end()) != data.end());
  }
  CHECK(kernel.credits().front().bytes ==
        std::vector<std::uint8_t>(data.begin() + 2500, data.begin() + 5000));
}

TEST_CASE("entropy gate rejects an all-zero hwrng and counts every block", "[entropy]") {
  TempDir dir;
  write_file(dir.path / "hwrng", std::vector<std::uint8_t>(17 * fips_block_bytes, 0));
  auto cfg = gate_config();
  cfg.hwrng = (dir.path / "hwrng").string();
  FakeKernel kernel;
  kernel.set_ready(true);

  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  INFO(out.detail);
  CHECK_FALSE(out.passed);
  CHECK(kernel.credits().empty());
  CHECK(contains(out.detail, "rejected"));
  CHECK(contains(out.detail, "16 blocks, 16 failed"));
  CHECK(contains(out.detail, "monobit 16, poker 16, runs 16, long run 16, continuous 16"));
}

TEST_CASE("entropy gate rejects a source repeating one 2,500-byte block", "[entropy]") {
  TempDir dir;
  auto one = good_stream(fips_block_bytes, 12);
  std::vector<std::uint8_t> data;
  for (int i = 0; i < 17; ++i) data.insert(data.end(), one.begin(), one.end());
  write_file(dir.path / "hwrng", data);
  auto cfg = gate_config();
  cfg.hwrng = (dir.path / "hwrng").string();
  FakeKernel kernel;
  kernel.set_ready(true);

  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  INFO(out.detail);
  CHECK_FALSE(out.passed);
  CHECK(kernel.credits().empty());
  CHECK(contains(out.detail, "stuck source"));
  CHECK(contains(out.detail, "16 blocks, 16 failed (continuous 16)"));
}

TEST_CASE("entropy gate fails on a hwrng that is missing or runs dry", "[entropy]") {
  TempDir dir;
  auto cfg = gate_config();
  cfg.hwrng = (dir.path / "absent").string();
  FakeKernel kernel;
  kernel.set_ready(true);
  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  CHECK_FALSE(out.passed);
  CHECK(contains(out.detail, "absent: No such file or directory"));

  write_file(dir.path / "short", good_stream(5 * fips_block_bytes, 13));
  cfg.hwrng = (dir.path / "short").string();
  out = run_entropy_gate(cfg, kernel, options_for(dir));
  CHECK_FALSE(out.passed);
  CHECK(contains(out.detail, "end of data after 4 of 16 blocks"));
  CHECK(kernel.credits().empty());
}

TEST_CASE("entropy gate without hwrng passes on CRNG readiness alone", "[entropy]") {
  TempDir dir;
  FakeKernel kernel;
  SECTION("already ready") {
    kernel.set_ready(true);
    auto out = run_entropy_gate(gate_config(), kernel, options_for(dir));
    CHECK(out.passed);
    CHECK(out.detail == "crng ready");
    CHECK(kernel.wait_calls == 0);
  }
  SECTION("ready after a blocking wait") {
    auto out = run_entropy_gate(gate_config(), kernel, options_for(dir));
    CHECK(out.passed);
    CHECK(out.detail == "crng ready");
    CHECK(kernel.wait_calls == 1);
  }
  CHECK(kernel.mixes.empty());
}

TEST_CASE("entropy gate leaves a kernel-fed /dev/hwrng to the kernel", "[entropy]") {
  TempDir dir;
  write_text(dir.path / "sys/class/misc/hw_random/rng_current", "bcm2835-rng\n");
  write_text(dir.path / "sys/module/rng_core/parameters/default_quality", "1024\n");
  auto cfg = gate_config();
  cfg.hwrng = "/dev/hwrng";
  FakeKernel kernel;
  kernel.set_ready(true);
  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  CHECK(out.passed);
  CHECK(out.detail == "crng ready; hwrng: kernel already feeds the pool from bcm2835-rng (quality 1024)");
  CHECK(kernel.mixes.empty());
}

TEST_CASE("entropy gate consumes, credits and refreshes the seed file", "[entropy]") {
  TempDir dir;
  const fs::path seed_path = dir.path / "boot/pisec/seed";
  auto cfg = gate_config();
  cfg.seed_file = seed_path.string();
  FakeKernel kernel;
  kernel.set_ready(true);
  fs::create_directory(dir.path / "boot");  // the medium exists; pisec/ on it not yet

  // First boot: no seed yet (its directory neither); a creditable one is written.
  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  INFO(out.detail);
  CHECK(out.passed);
  CHECK((fs::status(seed_path.parent_path()).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK(contains(out.detail, "no seed at " + seed_path.string() + " (first boot?), refreshed"));
  REQUIRE(fs::exists(seed_path));
  CHECK((fs::status(seed_path).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
  CHECK_FALSE(fs::exists(seed_path.string() + ".tmp"));
  SeedFile first = decode_seed_file(read_file(seed_path));
  CHECK(first.creditable);
  CHECK(first.machine == machine_tag("board-0001"));
  CHECK(first.seed.size() == 512);
  CHECK(kernel.mixes.empty());

  // Next boot: the seed is gone from disk before it reaches the kernel, then credited.
  bool seed_on_disk_at_use = true;
  kernel.on_add_entropy = [&] { seed_on_disk_at_use = fs::exists(seed_path); };
  out = run_entropy_gate(cfg, kernel, options_for(dir));
  CHECK(out.passed);
  CHECK(contains(out.detail, "seed credited 512 bytes, refreshed"));
  CHECK_FALSE(seed_on_disk_at_use);
  REQUIRE(kernel.mixes.size() == 1);
  CHECK(kernel.mixes[0].bytes == first.seed);
  CHECK(kernel.mixes[0].credit_bits == 512 * 8);
  SeedFile second = decode_seed_file(read_file(seed_path));
  CHECK(second.creditable);
  CHECK(second.seed != first.seed);

  SECTION("the same medium in another board is mixed, not credited") {
    kernel.machine = "board-0002";
    out = run_entropy_gate(cfg, kernel, options_for(dir));
    CHECK(contains(out.detail, "seed mixed 512 bytes uncredited (written on another machine"));
    CHECK(kernel.mixes.back().bytes == second.seed);
    CHECK(kernel.mixes.back().credit_bits == 0);
  }
  SECTION("a seed not recorded as creditable is mixed, not credited") {
    second.creditable = false;
    write_file(seed_path, encode_seed_file(second));
    out = run_entropy_gate(cfg, kernel, options_for(dir));
    CHECK(contains(out.detail, "seed mixed 512 bytes uncredited (not recorded as creditable)"));
    CHECK(kernel.mixes.back().credit_bits == 0);
  }
}

TEST_CASE("when the kernel refuses entropy the seed is still refreshed, hwrng fails", "[entropy]") {
  TempDir dir;
  const fs::path seed_path = dir.path / "seed";
  auto cfg = gate_config();
  cfg.seed_file = seed_path.string();
  FakeKernel kernel;
  kernel.set_ready(true);
  REQUIRE(run_entropy_gate(cfg, kernel, options_for(dir)).passed);  // writes a seed
  auto old_seed = read_file(seed_path);

  kernel.add_error = EPERM;  // e.g. running without CAP_SYS_ADMIN
  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  INFO(out.detail);
  CHECK(out.passed);  // the CRNG is ready: the seed only adds, it is not required
  CHECK(contains(out.detail, "seed: RNDADDENTROPY: Operation not permitted, refreshed"));
  REQUIRE(fs::exists(seed_path));
  CHECK(read_file(seed_path) != old_seed);

  write_file(dir.path / "hwrng", good_stream(17 * fips_block_bytes, 15));
  cfg.hwrng = (dir.path / "hwrng").string();
  out = run_entropy_gate(cfg, kernel, options_for(dir));
  CHECK_FALSE(out.passed);
  CHECK(contains(out.detail, "crediting failed after 0 blocks: RNDADDENTROPY: Operation not permitted"));
}

TEST_CASE("a seed written before the CRNG was ready is rewritten creditable after", "[entropy]") {
  TempDir dir;
  const fs::path seed_path = dir.path / "seed";
  auto cfg = gate_config();
  cfg.seed_file = seed_path.string();
  FakeKernel kernel;  // not ready; the blocking wait makes it ready

  auto out = run_entropy_gate(cfg, kernel, options_for(dir));
  INFO(out.detail);
  CHECK(out.passed);
  CHECK(kernel.insecure_reads == 1);  // the first new seed: not creditable
  CHECK(kernel.wait_calls == 1);
  CHECK(decode_seed_file(read_file(seed_path)).creditable);
  CHECK(contains(out.detail, "refreshed"));
  CHECK_FALSE(contains(out.detail, "not creditable"));
}

TEST_CASE("entropy gate runs in a worker and reports on the io_context", "[entropy]") {
  TempDir dir;
  auto data = good_stream(17 * fips_block_bytes, 14);
  write_file(dir.path / "hwrng", data);
  auto cfg = gate_config();
  cfg.hwrng = (dir.path / "hwrng").string();
  auto kernel = std::make_shared<FakeKernel>();
  auto gate = make_entropy_gate(cfg, kernel, options_for(dir));
  CHECK(gate->name() == "entropy");

  boost::asio::io_context io;
  int calls = 0;
  pisec::gates::Outcome got;
  auto io_thread = std::this_thread::get_id();
  gate->start(io, [&](pisec::gates::Outcome o) {
    ++calls;
    got = std::move(o);
    CHECK((std::this_thread::get_id() == io_thread));
  });
  io.run();  // returns only once the worker posted its outcome
  CHECK(calls == 1);
  CHECK(got.passed);
  CHECK(contains(got.detail, "credited"));
  CHECK(kernel->credited_bits >= 15 * 2500);
}

TEST_CASE("cancelling the entropy gate stops waiting and never calls done", "[entropy]") {
  TempDir dir;
  auto kernel = std::make_shared<FakeKernel>();
  kernel->ready_on_wait = false;  // the CRNG never becomes ready
  auto gate = make_entropy_gate(gate_config(), kernel, options_for(dir));

  boost::asio::io_context io;
  int calls = 0;
  gate->start(io, [&](pisec::gates::Outcome) { ++calls; });
  boost::asio::steady_timer timeout(io, std::chrono::milliseconds(50));
  timeout.async_wait([&](boost::system::error_code) { gate->cancel(); });
  io.run();  // returns: the cancelled worker no longer holds the io_context
  CHECK(calls == 0);
  kernel->release();  // let the blocked worker finish; it must not post anything
  io.restart();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  io.poll();
  CHECK(calls == 0);
  CHECK(kernel->wait_calls == 1);
}
