// The kernel clock adapter, the saved-timestamp state file and the floor.
#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <system_error>

#include "pisec/gates/clock.hpp"
#include "pisec/util.hpp"

namespace pisec::clock {

namespace {

constexpr std::int64_t ns_per_s = 1'000'000'000;

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The kernel's struct __kernel_timespec: 64-bit fields on every architecture.
struct KernelTimespec64 {
  std::int64_t tv_sec;
  std::int64_t tv_nsec;
};

class SystemClock final : public ClockAdapter {
 public:
  UnixNanos realtime_ns() override {
    if constexpr (sizeof(time_t) < 8) {
#ifdef SYS_clock_gettime64
      // armel glibc 2.36 keeps a 32-bit time_t unless every module builds with
      // _TIME_BITS=64; the time64 syscall sidesteps 2038 for this one call.
      KernelTimespec64 ts{};
      if (syscall(SYS_clock_gettime64, CLOCK_REALTIME, &ts) == 0) return ts.tv_sec * ns_per_s + ts.tv_nsec;
      if (errno != ENOSYS) throw_errno("clock_gettime64(CLOCK_REALTIME)");
#endif
    }
    timespec ts{};
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) throw_errno("clock_gettime(CLOCK_REALTIME)");
    return static_cast<std::int64_t>(ts.tv_sec) * ns_per_s + ts.tv_nsec;
  }

  void set_realtime_ns(UnixNanos t) override {
    std::int64_t sec = t / ns_per_s;
    std::int64_t nsec = t % ns_per_s;
    if (nsec < 0) {
      nsec += ns_per_s;
      sec -= 1;
    }
    if constexpr (sizeof(time_t) < 8) {
#ifdef SYS_clock_settime64
      KernelTimespec64 ts{sec, nsec};
      if (syscall(SYS_clock_settime64, CLOCK_REALTIME, &ts) == 0) return;
      if (errno != ENOSYS) throw_errno("clock_settime64(CLOCK_REALTIME)");
#endif
      if (sec > INT32_MAX || sec < INT32_MIN)
        throw std::system_error(EOVERFLOW, std::generic_category(), "clock_settime: time beyond 2038 needs time64");
    }
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(sec);
    ts.tv_nsec = static_cast<long>(nsec);
    if (clock_settime(CLOCK_REALTIME, &ts) != 0) throw_errno("clock_settime(CLOCK_REALTIME)");
  }
};

}  // namespace

ClockAdapter& system_clock() {
  static SystemClock clock;
  return clock;
}

bool raise_clock_to_floor(ClockAdapter& clock, std::int64_t floor_unix) {
  UnixNanos floor_ns = floor_unix * ns_per_s;
  if (clock.realtime_ns() >= floor_ns) return false;
  clock.set_realtime_ns(floor_ns);
  return true;
}

std::optional<std::int64_t> read_state_file(const std::string& path) {
  auto text = util::read_text_file(path);
  if (!text) {
    if (errno == ENOENT) return std::nullopt;
    throw std::runtime_error(path + ": cannot read: " + std::generic_category().message(errno));
  }
  std::string s = std::move(*text);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || value < 0)
    throw std::runtime_error(path + ": expected unix seconds, got \"" + s.substr(0, 40) + "\"");
  return value;
}

void write_state_file(const std::string& path, std::int64_t unix_s) {
  util::write_file_atomic(path, std::to_string(unix_s) + "\n", 0644);
}

Floor compute_floor(std::int64_t build_floor_unix, const std::string& state_file,
                    std::int64_t extra_floor_unix) {
  Floor f;
  f.unix_s = build_floor_unix;
  f.source = "build";
  if (!state_file.empty()) {
    try {
      if (auto saved = read_state_file(state_file)) {
        std::int64_t signed_floor = std::max(build_floor_unix, extra_floor_unix);
        if (*saved > build_floor_unix + floor_horizon_s) {
          f.note = "state file " + state_file + " ignored: " + std::to_string(*saved) +
                   " is more than 15 years past the build floor";
        } else if (*saved > signed_floor + max_saved_ahead_s) {
          // One bad result saved here must not lock out the right time on every boot.
          f.note = "state file " + state_file + " ignored: " + std::to_string(*saved) + " is more than " +
                   std::to_string(max_saved_ahead_s / 86400) + " days past the " +
                   (extra_floor_unix > build_floor_unix ? "signed manifest time" : "build floor") + " (" +
                   std::to_string(signed_floor) + "); a newer signed manifest raises that bound";
        } else if (*saved > f.unix_s) {
          f.unix_s = *saved;
          f.source = "state file";
        }
      }
    } catch (const std::exception& e) {
      f.note = std::string("state file ignored: ") + e.what();
    }
  }
  if (extra_floor_unix > f.unix_s) {
    f.unix_s = extra_floor_unix;
    f.source = "manifest";
  }
  return f;
}

}  // namespace pisec::clock
