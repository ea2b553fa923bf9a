// FIPS 140-2 section 4.9 tests on 20,000-bit blocks, as rng-tools runs them.
#include <algorithm>
#include <cstring>

#include "pisec/gates/entropy.hpp"
#include "pisec/util.hpp"

namespace pisec::entropy {

namespace {

// FIPS 140-2 table for the runs test: lengths 1..5 and 6+, same for 0s and 1s.
constexpr std::array<std::array<int, 2>, 6> runs_bounds = {{
    {2315, 2685}, {1114, 1386}, {527, 723}, {240, 384}, {103, 209}, {103, 209}}};

constexpr int long_run_limit = 26;

std::uint32_t word_at(FipsBlock block, std::size_t i) {
  // Byte order is irrelevant to an equality test; big-endian keeps it readable.
  return (std::uint32_t{block[i]} << 24) | (std::uint32_t{block[i + 1]} << 16) |
         (std::uint32_t{block[i + 2]} << 8) | std::uint32_t{block[i + 3]};
}

}  // namespace

const char* to_string(FipsTest t) {
  switch (t) {
    case FipsTest::monobit: return "monobit";
    case FipsTest::poker: return "poker";
    case FipsTest::runs: return "runs";
    case FipsTest::long_run: return "long run";
    case FipsTest::continuous: return "continuous";
  }
  return "?";
}

bool monobit_passes(int ones) { return ones > 9725 && ones < 10275; }

bool poker_passes(std::uint32_t sum_of_squares) {
  return sum_of_squares > 1563176 && sum_of_squares < 1576928;
}

bool runs_pass(const RunCounts& runs) {
  for (const auto& by_length : runs)
    for (std::size_t len = 0; len < by_length.size(); ++len)
      if (by_length[len] < runs_bounds[len][0] || by_length[len] > runs_bounds[len][1]) return false;
  return true;
}

bool long_run_passes(int longest_run) { return longest_run < long_run_limit; }

bool FipsResult::passed() const {
  return std::none_of(failed.begin(), failed.end(), [](bool f) { return f; });
}

FipsResult fips_statistical_tests(FipsBlock block) {
  FipsResult r;
  std::array<std::uint32_t, 16> nibbles{};
  int current_bit = -1;
  int run_length = 0;
  auto end_run = [&] {
    if (run_length == 0) return;
    std::size_t index = static_cast<std::size_t>(std::min(run_length, 6) - 1);
    ++r.runs[static_cast<std::size_t>(current_bit)][index];
    r.longest_run = std::max(r.longest_run, run_length);
  };
  for (std::uint8_t byte : block) {
    ++nibbles[byte >> 4];
    ++nibbles[byte & 0x0f];
    for (int shift = 7; shift >= 0; --shift) {
      int bit = (byte >> shift) & 1;
      r.ones += bit;
      if (bit == current_bit) {
        ++run_length;
      } else {
        end_run();
        current_bit = bit;
        run_length = 1;
      }
    }
  }
  end_run();
  for (std::uint32_t f : nibbles) r.poker_sum += f * f;

  r.failed[static_cast<std::size_t>(FipsTest::monobit)] = !monobit_passes(r.ones);
  r.failed[static_cast<std::size_t>(FipsTest::poker)] = !poker_passes(r.poker_sum);
  r.failed[static_cast<std::size_t>(FipsTest::runs)] = !runs_pass(r.runs);
  r.failed[static_cast<std::size_t>(FipsTest::long_run)] = !long_run_passes(r.longest_run);
  return r;
}

void FipsTester::prime(FipsBlock first_block) {
  std::copy(first_block.begin(), first_block.end(), last_block_.begin());
  last_word_ = word_at(first_block, fips_block_bytes - 4);
  primed_ = true;
}

FipsResult FipsTester::test(FipsBlock block) {
  FipsResult r = fips_statistical_tests(block);
  bool repeated = false;
  if (primed_) repeated = std::equal(block.begin(), block.end(), last_block_.begin());
  std::uint32_t previous = last_word_;
  for (std::size_t i = 0; i < fips_block_bytes; i += 4) {
    std::uint32_t word = word_at(block, i);
    // Without a primed reference the first word has nothing to be compared with.
    if ((primed_ || i > 0) && word == previous) repeated = true;
    previous = word;
  }
  r.failed[static_cast<std::size_t>(FipsTest::continuous)] = repeated;
  last_word_ = previous;
  std::copy(block.begin(), block.end(), last_block_.begin());
  primed_ = true;
  return r;
}

void FipsTally::add(const FipsResult& r) {
  ++blocks_tested;
  if (!r.passed()) ++blocks_failed;
  for (std::size_t i = 0; i < fips_test_count; ++i)
    if (r.failed[i]) ++by_test[i];
}

std::string FipsTally::describe_failures() const {
  std::string out;
  const char* sep = "";
  for (std::size_t i = 0; i < fips_test_count; ++i) {
    if (by_test[i] == 0) continue;
    out += text::cat(sep, to_string(static_cast<FipsTest>(i)), ' ', by_test[i]);
    sep = ", ";
  }
  return out;
}

SourceVerdict judge_hwrng(const FipsTally& tally, double max_block_failure_ratio) {
  SourceVerdict v;
  if (tally.blocks_tested == 0) {
    v.rejected = true;
    v.reason = "no blocks tested";
  } else if (tally.count(FipsTest::continuous) > 0) {
    v.rejected = true;
    v.reason = "stuck source: continuous test failed in " +
               std::to_string(tally.count(FipsTest::continuous)) + " block(s)";
  } else if (tally.blocks_failed == tally.blocks_tested) {
    v.rejected = true;
    v.reason = "stuck source: every block failed";
  } else {
    double ratio = static_cast<double>(tally.blocks_failed) / static_cast<double>(tally.blocks_tested);
    if (ratio > max_block_failure_ratio) {
      std::string out;
      out += text::cat("failure rate ", tally.blocks_failed, '/', tally.blocks_tested, " above max_block_failure_ratio ", max_block_failure_ratio);
      v.rejected = true;
      v.reason = out;
    }
  }
  return v;
}

}  // namespace pisec::entropy
