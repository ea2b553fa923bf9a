// Reading the files elfcheck judges: regular files only (a FIFO or device
// would block or never end), with a size cap, optionally inside a root, and
// only the parts the parser asks for (pread).
#include "pisec/formats.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>


namespace pisec::elf {



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

FileReader::FileReader(int root_fd, const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang the gate; it is refused below.
  fd_.reset(open_in_root(root_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd_) {
    error_ = std::strerror(errno);
    return;
  }
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) {
    error_ = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error_ = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
  } else {
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
}

FileReader::~FileReader() = default;

std::string FileReader::size_error(std::size_t max_bytes) const {
  if (size_ <= max_bytes) return {};
  return "larger than the " + std::to_string(max_bytes) + "-byte limit";
}

std::vector<std::uint8_t> FileReader::head(std::size_t n) const {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(std::min<std::uint64_t>(n, size_)));
  if (!out.empty()) read(0, out);
  return out;
}

void FileReader::read(std::uint64_t offset, std::span<std::uint8_t> out) const {
  if (!error_.empty()) throw ReadError(error_);
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ReadError(std::strerror(errno));
    // The size came from fstat: a file cut short since then is not judged.
    if (n == 0) throw ReadError("file shrank while being read (was " + std::to_string(size_) + " bytes)");
    done += static_cast<std::size_t>(n);
  }
}

ReadResult read_file(int root_fd, const std::string& path, std::size_t max_bytes) {
  ReadResult r;
  FileReader f(root_fd, path);
  r.error = f.error();
  if (r.error.empty()) r.error = f.size_error(max_bytes);
  if (!r.error.empty()) return r;
  try {
    r.bytes = f.head(max_bytes);
  } catch (const ReadError& e) {
    r.error = e.what();
  }
  return r;
}



Verdict check_file(const std::string& path, Target target, std::size_t max_bytes, int root_fd) {
  FileReader file(root_fd, path);
  std::string error = file.error().empty() ? file.size_error(max_bytes) : file.error();
  if (!error.empty()) return {Status::unreadable, error, {}};
  return check_elf(file, target);
}

}  // namespace pisec::elf
