// Reading the files elfcheck judges: regular files only (a FIFO or device
// would block or never end), with a size cap, optionally inside a root.
#include "file_io.hpp"

#include <elf.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pisec/elf.hpp"

namespace pisec::elf {

namespace detail {

namespace {

// Closes the descriptor on every return path.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

int open_in_root(int root_fd, const std::string& path, int flags) {
  if (root_fd < 0) return ::open(path.c_str(), flags);
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
  if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
  // Kernels before 5.6: resolve below the root without containing symlinks,
  // which is still right for the usual rootfs without absolute links.
  std::string relative = path.substr(std::min(path.find_first_not_of('/'), path.size()));
  return ::openat(root_fd, relative.empty() ? "." : relative.c_str(), flags);
}

ReadResult read_file(int root_fd, const std::string& path, std::size_t max_bytes, bool elf_only) {
  ReadResult r;
  // O_NONBLOCK: opening a FIFO must not hang the gate; it is refused below.
  Fd f{open_in_root(root_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)};
  if (f.fd < 0) {
    r.error = std::strerror(errno);
    return r;
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    r.error = std::strerror(errno);
    return r;
  }
  if (!S_ISREG(st.st_mode)) {
    r.error = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
    return r;
  }
  auto read_some = [&](std::size_t limit) {
    // Reads until EOF or limit bytes; false (with r.error) on an I/O error.
    while (r.bytes.size() < limit) {
      std::size_t have = r.bytes.size();
      std::size_t chunk = std::min<std::size_t>(limit - have, 1u << 20);
      r.bytes.resize(have + chunk);
      ssize_t n = ::read(f.fd, r.bytes.data() + have, chunk);
      if (n < 0 && errno == EINTR) {
        r.bytes.resize(have);
        continue;
      }
      if (n < 0) {
        r.error = std::strerror(errno);
        r.bytes.clear();
        return false;
      }
      r.bytes.resize(have + static_cast<std::size_t>(n));
      if (n == 0) break;
    }
    return true;
  };
  if (elf_only) {
    if (!read_some(SELFMAG)) return r;
    if (r.bytes.size() < SELFMAG || std::memcmp(r.bytes.data(), ELFMAG, SELFMAG) != 0) {
      r.not_elf = true;
      return r;
    }
  }
  if (static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
    r.error = "larger than the " + std::to_string(max_bytes) + "-byte limit";
    r.bytes.clear();
    return r;
  }
  // One byte over the cap tells a file that grew since fstat from one that fits.
  if (!read_some(max_bytes + 1)) return r;
  if (r.bytes.size() > max_bytes) {
    r.error = "larger than the " + std::to_string(max_bytes) + "-byte limit";
    r.bytes.clear();
  }
  return r;
}

}  // namespace detail

Verdict check_file(const std::string& path, Target target, std::size_t max_bytes, int root_fd) {
  auto r = detail::read_file(root_fd, path, max_bytes, false);
  if (!r.error.empty()) return {Status::unreadable, r.error, {}};
  return check_elf(r.bytes, target);
}

}  // namespace pisec::elf
