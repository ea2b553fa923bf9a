#pragma once
// File access shared by check_file and the arch gate (private to src/elf).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pisec::elf::detail {

// Opens path read-only. With root_fd >= 0 the path, ".." and symlinks are
// resolved inside that directory (openat2 RESOLVE_IN_ROOT), as a process
// chrooted there would see them. Returns -1 with errno set.
int open_in_root(int root_fd, const std::string& path, int flags);

struct ReadResult {
  std::string error;                // empty on success: "No such file or directory", …
  std::vector<std::uint8_t> bytes;  // the whole file (when read)
  bool not_elf = false;             // elf_only and the file does not start with \x7fELF
};

// Reads a regular file of at most max_bytes. With elf_only, a file that does
// not start with the ELF magic is reported as not_elf without reading the rest
// (or applying the size cap: kernels and archives may be large).
ReadResult read_file(int root_fd, const std::string& path, std::size_t max_bytes, bool elf_only);

}  // namespace pisec::elf::detail
