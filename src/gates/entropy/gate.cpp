// The entropy gate: seed file, hardware RNG, CRNG readiness — in a worker
// thread, because reading /dev/hwrng and waiting for the CRNG both block.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "seed_store.hpp"
#include "pisec/gates/entropy.hpp"
#include "pisec/util.hpp"

namespace pisec::entropy {

namespace {

std::int64_t clock_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<std::int64_t>(ts.tv_nsec);
}

bool is_cancelled(const std::atomic<bool>* cancelled) {
  return cancelled != nullptr && cancelled->load();
}

// --- seed ----------------------------------------------------------------

struct SeedWork {
  std::unique_ptr<SeedStore> store;
  std::vector<std::uint8_t> old_seed;
  MachineTag tag{};
  bool written_creditable = false;
  bool written = false;
  std::string note;
};

// Consumes the old seed, mixes it in (credited only if allowed), writes the
// next one. Seed trouble never fails the gate: it only means less credit.
void use_seed(const std::string& path, EntropyAdapter& adapter, SeedWork& w) {
  std::string note;
  try {
    w.store = std::make_unique<SeedStore>(path);
    w.tag = machine_tag(adapter.machine_id());
    ConsumedSeed c = w.store->consume();
    if (!c.found) {
      note += text::cat("no seed at ", path, " (first boot?)");
    } else {
      SeedFile s = decode_seed_file(c.raw);
      w.old_seed = s.seed;
      bool credit = c.removed && seed_may_credit(s, w.tag);
      try {
        if (!s.seed.empty()) adapter.add_entropy(s.seed, credit ? static_cast<int>(s.seed.size() * 8) : 0);
      } catch (const std::exception& e) {
        // Still refresh below: the old seed is already gone from disk.
        w.note = "seed: " + std::string(e.what());
        return;
      }
      note += text::cat("seed ", (credit ? "credited " : "mixed "), s.seed.size(), " bytes");
      if (!credit) {
        if (!c.removed) note += text::cat(" uncredited (could not consume it: ", c.remove_error, ")");
        else if (!s.creditable) note += " uncredited (not recorded as creditable)";
        else if (s.machine != w.tag) note += " uncredited (written on another machine: cloned medium?)";
        else note += " uncredited";
      }
    }
  } catch (const std::exception& e) {
    note += text::cat("seed: ", e.what());
    w.note = note;
    w.store.reset();
    return;
  }
  w.note = note;
}

// Writes the next seed; creditable only when getrandom(GRND_NONBLOCK) filled
// it, i.e. it came from an initialised CRNG.
void refresh_seed(EntropyAdapter& adapter, SeedWork& w) {
  if (!w.store) return;
  try {
    std::vector<std::uint8_t> fresh(seed_new_bytes);
    bool creditable = adapter.getrandom_nonblock(fresh);
    if (!creditable) adapter.getrandom_insecure(fresh);
    SeedFile next;
    next.creditable = creditable;
    next.machine = w.tag;
    next.seed = derive_new_seed(w.old_seed, fresh, clock_ns(CLOCK_REALTIME), clock_ns(CLOCK_BOOTTIME));
    w.store->write(next);
    w.written = true;
    w.written_creditable = creditable;
  } catch (const std::exception& e) {
    w.written = false;
    w.note += std::string(w.note.empty() ? "" : ", ") + "seed refresh failed: " + e.what();
  }
}

// --- hwrng ---------------------------------------------------------------

// Reads exactly out.size() bytes; false at end of data.
bool read_block(int fd, std::span<std::uint8_t> out, const std::string& path) {
  std::size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "read " + path);
    if (n == 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

struct HwrngResult {
  bool ok = true;
  std::string note;
};

HwrngResult use_hwrng(const config::EntropyGate& cfg, EntropyAdapter& adapter,
                      const std::atomic<bool>* cancelled) {
  HwrngResult r;
  int fd = ::open(cfg.hwrng.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.ok = false;
    r.note = "hwrng " + cfg.hwrng + ": " + std::strerror(errno);
    return r;
  }
  FipsTester tester;
  FipsTally tally;
  std::vector<std::array<std::uint8_t, fips_block_bytes>> passing;
  std::array<std::uint8_t, fips_block_bytes> block{};
  std::string read_problem;
  try {
    // FIPS 4.9: the first block after start-up is only the continuous test's reference.
    if (!read_block(fd, block, cfg.hwrng)) {
      read_problem = "no data";
    } else {
      tester.prime(block);
      for (int i = 0; i < cfg.hwrng_blocks && !is_cancelled(cancelled); ++i) {
        if (!read_block(fd, block, cfg.hwrng)) {
          read_problem = "end of data after " + std::to_string(i) + " of " +
                         std::to_string(cfg.hwrng_blocks) + " blocks";
          break;
        }
        FipsResult res = tester.test(block);
        tally.add(res);
        if (res.passed()) passing.push_back(block);
      }
    }
  } catch (const std::exception& e) {
    read_problem = e.what();
  }
  ::close(fd);
  std::string note;
  if (!read_problem.empty()) {
    // A configured source that cannot deliver is not trusted for anything.
    r.ok = false;
    note += text::cat("hwrng ", cfg.hwrng, ": ", read_problem);
    r.note = note;
    return r;
  }
  if (is_cancelled(cancelled)) {
    r.ok = false;
    r.note = "cancelled";
    return r;
  }
  SourceVerdict verdict = judge_hwrng(tally, cfg.max_block_failure_ratio);
  std::string failures = tally.describe_failures();
  if (verdict.rejected) {
    r.ok = false;
    note += text::cat("hwrng ", cfg.hwrng, " rejected (", verdict.reason, "): ", tally.blocks_tested, " blocks, ", tally.blocks_failed, " failed");
    if (!failures.empty()) note += text::cat(" (", failures, ")");
    r.note = note;
    return r;
  }
  // Credit only once the source as a whole is accepted.
  int credited = 0;
  try {
    for (const auto& good : passing) {
      adapter.add_entropy(good, hwrng_credit_bits_per_block);
      ++credited;
    }
  } catch (const std::exception& e) {
    r.ok = false;
    r.note = "hwrng " + cfg.hwrng + ": crediting failed after " + std::to_string(credited) +
             " blocks: " + e.what();
    return r;
  }
  note += text::cat("hwrng ", tally.blocks_tested, " blocks: ", credited, " credited, ", tally.blocks_failed, " failed");
  if (!failures.empty()) note += text::cat(" (", failures, ")");
  r.note = note;
  return r;
}

}  // namespace

gates::Outcome run_entropy_gate(const config::EntropyGate& cfg, EntropyAdapter& adapter,
                                const EntropyGateOptions& options,
                                const std::atomic<bool>* cancelled) {
  gates::Outcome out;
  std::vector<std::string> notes;

  // Seed first, as seedrng does at boot: it is the cheapest entropy we have.
  SeedWork seed;
  if (!cfg.seed_file.empty()) {
    use_seed(cfg.seed_file, adapter, seed);
    refresh_seed(adapter, seed);
  }
  if (is_cancelled(cancelled)) return {false, "cancelled"};

  HwrngResult hw;
  if (!cfg.hwrng.empty()) {
    KernelHwrngFeed feed;
    if (is_kernel_hwrng_device(cfg.hwrng)) feed = detect_kernel_hwrng_feed(options.sysfs_root);
    if (feed.feeds) {
      hw.note = "hwrng: kernel already feeds the pool from " + feed.rng + " (quality " +
                std::to_string(feed.quality) + ")";
    } else {
      hw = use_hwrng(cfg, adapter, cancelled);
    }
  }
  if (is_cancelled(cancelled)) return {false, "cancelled"};

  bool crng_ready = adapter.getrandom_nonblock({});
  if (hw.ok && !crng_ready) {
    adapter.wait_crng_ready();
    if (is_cancelled(cancelled)) return {false, "cancelled"};
    crng_ready = true;
    // The seed written before may have come from an uninitialised pool: now it can be creditable.
    if (seed.written && !seed.written_creditable) refresh_seed(adapter, seed);
  }

  std::string crng = crng_ready ? "crng ready" : "crng not ready";
  notes.push_back(crng);
  if (!hw.note.empty()) notes.push_back(hw.note);
  if (!seed.note.empty() || seed.written) {
    std::string s = seed.note;
    if (seed.written)
      s += std::string(s.empty() ? "seed " : ", ") +
           (seed.written_creditable ? "refreshed" : "refreshed (not creditable)");
    notes.push_back(s);
  }
  out.passed = crng_ready && hw.ok;
  for (std::size_t i = 0; i < notes.size(); ++i) out.detail += (i ? "; " : "") + notes[i];
  return out;
}

namespace {

class EntropyGateImpl final : public gates::Gate {
 public:
  EntropyGateImpl(config::EntropyGate cfg, std::shared_ptr<EntropyAdapter> adapter,
                  EntropyGateOptions options)
      : cfg_(std::move(cfg)), adapter_(std::move(adapter)), options_(std::move(options)) {}
  ~EntropyGateImpl() override { cancel(); }

  std::string_view name() const override { return "entropy"; }

  void start(boost::asio::io_context& io, gates::Done done) override {
    worker_.start(
        io,
        [cfg = cfg_, adapter = adapter_, options = options_](const std::atomic<bool>* cancelled) {
          try {
            return run_entropy_gate(cfg, *adapter, options, cancelled);
          } catch (const std::exception& e) {
            return gates::Outcome{false, std::string("entropy: ") + e.what()};
          }
        },
        std::move(done));
  }

  // The worker cannot be interrupted inside read() or getrandom(); after this
  // it stops at its next check and never touches the io_context again.
  void cancel() override { worker_.cancel(); }

 private:
  config::EntropyGate cfg_;
  std::shared_ptr<EntropyAdapter> adapter_;
  EntropyGateOptions options_;
  gates::Worker worker_;
};

}  // namespace

std::unique_ptr<gates::Gate> make_entropy_gate(const config::EntropyGate& cfg,
                                               std::shared_ptr<EntropyAdapter> adapter,
                                               EntropyGateOptions options) {
  if (!adapter) adapter = make_real_entropy_adapter();
  return std::make_unique<EntropyGateImpl>(cfg, std::move(adapter), std::move(options));
}

}  // namespace pisec::entropy
