// One copy each of the small system helpers (see pisec/util.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "pisec/util.hpp"

namespace pisec::util {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void write_file_atomic(int dir_fd, const std::string& name, std::string_view content, mode_t mode,
                       const std::string& shown) {
  const std::string tmp = name + ".tmp";
  auto fail = [&](const char* what, int err) {
    ::unlinkat(dir_fd, tmp.c_str(), 0);
    return std::runtime_error(shown + ": " + what + " (" + std::strerror(err) + ")");
  };
  // A stale temporary from an interrupted write: ours to remove (O_EXCL below).
  if (::unlinkat(dir_fd, tmp.c_str(), 0) != 0 && errno != ENOENT) {
    // A read-only file system says EROFS before it looks for the name: there
    // may be no stale temporary at all.
    if (errno == EROFS) throw std::runtime_error(shown + ": cannot write (" + std::strerror(errno) + ")");
    throw std::runtime_error(shown + ": cannot remove the stale " + tmp + " (" + std::strerror(errno) + ")");
  }
  UniqueFd fd(::openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) throw fail("cannot create a temporary file", errno);
  if (::fchmod(fd.get(), mode) != 0) throw fail("cannot set its mode", errno);  // the umask narrows, never widens
  if (!write_all(fd.get(), content)) throw fail("cannot write", errno);
  if (::fsync(fd.get()) != 0) throw fail("cannot fsync", errno);
  if (::close(fd.release()) != 0) throw fail("cannot close", errno);
  if (::renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) throw fail("cannot rename over it", errno);
  if (::fsync(dir_fd) != 0)
    throw std::runtime_error(shown + ": cannot fsync its directory (" + std::strerror(errno) + ")");
}

std::optional<std::string> read_text_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return text;
    text.append(buf, static_cast<std::size_t>(n));
  }
}

void write_file_atomic(const std::string& path, std::string_view content, mode_t mode) {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) throw std::runtime_error(path + ": cannot open its directory (" + std::strerror(errno) + ")");
  write_file_atomic(dfd.get(), name, content, mode, path);
}

std::string format_utc(std::int64_t t, bool iso) {
  using namespace std::chrono;
  std::int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
  std::int64_t secs = t - days * 86400;
  year_month_day ymd{sys_days{std::chrono::days{days}}};
  char buf[64];
  std::snprintf(buf, sizeof buf, iso ? "%04d-%02u-%02uT%02d:%02d:%02dZ" : "%04d-%02u-%02u %02d:%02d:%02d UTC",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(secs / 3600),
                static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60));
  return buf;
}

std::optional<std::int64_t> parse_utc(std::string_view s) {
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
    return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t len) -> int {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  int y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2), se = num(17, 2);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59)
    return std::nullopt;
  using namespace std::chrono;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  return std::int64_t{sys_days(ymd).time_since_epoch().count()} * 86400 + h * 3600 + mi * 60 + se;
}

std::string format_utc_ms(std::int64_t unix_ms) {
  std::int64_t secs = unix_ms / 1000, ms = unix_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::string s = format_utc(secs, true);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(ms));
  s.insert(s.size() - 1, frac);
  return s;
}

}  // namespace pisec::util
