#pragma once
// File access shared by check_file and the arch gate (private to src/elf).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pisec/elf.hpp"
#include "pisec/util.hpp"

namespace pisec::elf::detail {

// Opens path read-only. With root_fd >= 0 the path, ".." and symlinks are
// resolved inside that directory (openat2 RESOLVE_IN_ROOT), as a process
// chrooted there would see them. Returns -1 with errno set.
int open_in_root(int root_fd, const std::string& path, int flags);

// A regular file read with pread, only where the parser asks: judging a
// 100 MB ELF costs its headers, not 100 MB. FIFOs and devices are refused
// (they would block or never end).
class FileReader final : public Reader {
 public:
  FileReader(int root_fd, const std::string& path);
  ~FileReader() override;
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // Empty once open: "No such file or directory", "is a directory", …
  const std::string& error() const { return error_; }
  // "larger than the N-byte limit", or empty.
  std::string size_error(std::size_t max_bytes) const;
  // The first min(n, size()) bytes: a "#!" line, the ELF magic.
  std::vector<std::uint8_t> head(std::size_t n) const;

  std::uint64_t size() const override { return size_; }
  void read(std::uint64_t offset, std::span<std::uint8_t> out) const override;

 private:
  util::UniqueFd fd_;
  std::uint64_t size_ = 0;
  std::string error_;
};

struct ReadResult {
  std::string error;                // empty on success: "No such file or directory", …
  std::vector<std::uint8_t> bytes;  // the whole file (when read)
};

// Reads a whole regular file of at most max_bytes (the manifest, not ELF files).
ReadResult read_file(int root_fd, const std::string& path, std::size_t max_bytes);

}  // namespace pisec::elf::detail
