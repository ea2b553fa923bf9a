#pragma once
// Small helpers shared by several modules, one copy each.
#include <charconv>
#include <concepts>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pisec::text {

// Text assembly and output without iostreams. pisecd uses none of them: one
// std::ostringstream or std::cout links std::locale and every facet
// (money, time, wide characters), and with them glibc's wide printf and
// iconv tables, about 400 kB of the static ARMv6 binary (issue 14).
// cat() appends strings, characters, integers and floating point numbers
// (%g, as an ostream prints them by default); bool is refused, say what it means.
inline void append(std::string& s, std::string_view v) { s += v; }
inline void append(std::string& s, char c) { s += c; }
template <std::integral I>
  requires(!std::same_as<I, bool> && !std::same_as<I, char>)
void append(std::string& s, I v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, r.ptr);
}
void append(std::string& s, double v);
template <class... A>
std::string cat(const A&... a) {
  std::string s;
  (append(s, a), ...);
  return s;
}
// Writes all of `s` to standard output (buffered; flush with std::fflush) or
// standard error (unbuffered), through stdio.
void out(std::string_view s);
void err(std::string_view s);

// The whitespace-separated words of s (as `stream >> word` reads them),
// as views into s: s must outlive them.
std::vector<std::string_view> words(std::string_view s);
// s as a decimal integer, all of it, with an optional '-': nullopt otherwise.
std::optional<long long> to_int(std::string_view s);

// Calls f(line) for each line of s, as std::getline would: split at '\n',
// without the '\n'; a last line without one counts, an empty tail does not.
template <class F>
void for_each_line(std::string_view s, F&& f) {
  while (!s.empty()) {
    auto nl = s.find('\n');
    f(s.substr(0, nl));
    if (nl == std::string_view::npos) return;
    s.remove_prefix(nl + 1);
  }
}

// Bytes from outside (files, payload output, peers) made valid UTF-8: each
// ill-formed sequence (stray continuation byte, overlong form, surrogate,
// above U+10FFFF, cut short) becomes U+FFFD, one per maximal subpart as
// Unicode recommends - the same replacement nlohmann's
// error_handler_t::replace makes, so JSON and terminal agree.
std::string valid_utf8(std::string_view bytes);

// For a terminal: valid_utf8, and every control character - C0 (ESC, BEL,
// CR, LF included), DEL and C1 (U+0080-U+009F, which some terminals obey
// as CSI/OSC) - becomes '?', as the log line assembler does. Tab is kept.
// Apply it per field: a '\n' inside a detail must not forge a line.
std::string printable(std::string_view bytes);

}  // namespace pisec::text

#include <cstdint>
#include <optional>
#include <sys/types.h>

namespace pisec::util {

// An owned file descriptor, closed when it goes (one copy for every module).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Replaces dir_fd/name by a file holding exactly `content`, or leaves the old
// one: a fresh temporary (O_EXCL, never through a symlink or an existing hard
// link), written whole, fsynced, renamed over, then the directory fsynced so
// the rename survives a power cut (boot media get yanked). Throws
// std::runtime_error "<shown>: <what failed> (<errno text>)".
void write_file_atomic(int dir_fd, const std::string& name, std::string_view content, mode_t mode,
                       const std::string& shown);
// The same by path: the parent directory is opened first.
void write_file_atomic(const std::string& path, std::string_view content, mode_t mode);

// The whole of a small text file (/proc, /etc/group, cgroupfs), or nullopt
// when it cannot be opened.
std::optional<std::string> read_text_file(const std::string& path);

// UTC without gmtime: time_t is 32-bit on armel glibc (the Pi) and breaks in
// 2038. iso = "2026-11-22T10:00:00Z", otherwise "2026-11-22 10:00:00 UTC".
std::string format_utc(std::int64_t unix_seconds, bool iso = true);
// Exactly "YYYY-MM-DDTHH:MM:SSZ" (a real date, 1970 or later); nullopt otherwise.
std::optional<std::int64_t> parse_utc(std::string_view text);
// "…T…Z" with milliseconds: "2026-11-22T10:00:00.123Z".
std::string format_utc_ms(std::int64_t unix_ms);

// Writes all of s to fd, retrying short writes and EINTR; false (errno set)
// on the first error or a write of 0 bytes.
bool write_all(int fd, std::string_view s);

// Gives the main thread's stack pages below the caller's frame, less
// `margin` bytes, back to the kernel (they read as zeros when touched again);
// the bytes released. 0 on another thread or when /proc/self/maps says
// nothing of a "[stack]" holding the caller. The margin is for what runs
// below this function's frame while it works: its own locals, the maps
// walk, the madvise() call (a sanitizer's interceptor is larger still). 512
// bytes was too few: the host-asan daemon lost its return address.
std::size_t release_unused_stack(std::size_t margin = 4096);
// After a burst the daemon will not repeat soon (the boot sequence, a control
// request): malloc_trim(0) (free pages inside the heap, not only its top) and
// release_unused_stack().
void release_unused_memory();

}  // namespace pisec::util
