#pragma once
// Seed file handling for the entropy gate (private to src/gates). Holds an
// exclusive flock on the seed's directory for its lifetime, as seedrng does.
#include <cstdint>
#include <string>
#include <vector>

#include "pisec/gates/entropy.hpp"

namespace pisec::entropy {

struct ConsumedSeed {
  bool found = false;
  bool removed = false;        // unlinked and the directory fsynced
  std::string remove_error;    // why not, when found && !removed
  std::vector<std::uint8_t> raw;  // file contents (at most header + 512 bytes)
};

class SeedStore {
 public:
  // Creates the directory (0700) if missing, opens and locks it. Throws.
  explicit SeedStore(const std::string& path);
  ~SeedStore();
  SeedStore(const SeedStore&) = delete;
  SeedStore& operator=(const SeedStore&) = delete;

  // Reads the seed, then unlinks it and fsyncs the directory. Throws only when
  // the file exists but cannot be read.
  ConsumedSeed consume();
  // tmp + fsync + rename + fsync(dir), mode 0600. Throws std::system_error.
  void write(const SeedFile& s);

 private:
  std::string path_;
  std::string name_;
  int dirfd_ = -1;
};

}  // namespace pisec::entropy
