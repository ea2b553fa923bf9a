// The seed file format and the new-seed derivation (pure), plus the file
// handling seedrng taught us: lock the directory, unlink and sync before use,
// replace atomically.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "seed_store.hpp"
#include "pisec/util.hpp"
#include "pisec/gates/entropy.hpp"

namespace pisec::entropy {

namespace {

constexpr std::array<std::uint8_t, 8> seed_magic = {'P', 'I', 'S', 'E', 'C', 'S', 'D', '1'};
constexpr std::uint8_t flag_creditable = 0x01;

using Digest = std::array<std::uint8_t, 32>;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
      throw std::runtime_error("SHA-256: OpenSSL digest init failed");
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void add(const void* data, std::size_t n) {
    if (EVP_DigestUpdate(ctx_, data, n) != 1) throw std::runtime_error("SHA-256: update failed");
  }
  void add_u64(std::uint64_t v) {
    std::array<std::uint8_t, 8> le{};
    for (std::size_t i = 0; i < 8; ++i) le[i] = static_cast<std::uint8_t>(v >> (8 * i));
    add(le.data(), le.size());
  }
  Digest finish() {
    Digest d{};
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_, d.data(), &len) != 1 || len != d.size())
      throw std::runtime_error("SHA-256: final failed");
    return d;
  }

 private:
  EVP_MD_CTX* ctx_;
};

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

MachineTag machine_tag(const std::string& machine_id) {
  MachineTag tag{};
  if (machine_id.empty()) return tag;
  Sha256 h;
  static constexpr char domain[] = "pisecd machine tag v1";
  h.add(domain, sizeof domain);  // with its NUL, to separate it from the id
  h.add(machine_id.data(), machine_id.size());
  Digest d = h.finish();
  std::copy_n(d.begin(), tag.size(), tag.begin());
  return tag;
}

std::vector<std::uint8_t> encode_seed_file(const SeedFile& s) {
  if (s.seed.size() < seed_min_bytes || s.seed.size() > seed_max_bytes)
    throw std::invalid_argument("seed must be 32-512 bytes, got " + std::to_string(s.seed.size()));
  std::vector<std::uint8_t> out(seed_magic.begin(), seed_magic.end());
  out.push_back(s.creditable ? flag_creditable : 0);
  out.insert(out.end(), s.machine.begin(), s.machine.end());
  out.insert(out.end(), s.seed.begin(), s.seed.end());
  return out;
}

SeedFile decode_seed_file(std::span<const std::uint8_t> bytes) {
  SeedFile s;
  bool has_header = bytes.size() >= seed_header_bytes + seed_min_bytes &&
                    std::equal(seed_magic.begin(), seed_magic.end(), bytes.begin());
  if (!has_header) {
    // Not ours: still worth mixing in, never worth crediting.
    auto n = std::min(bytes.size(), seed_max_bytes);
    s.seed.assign(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    return s;
  }
  s.creditable = (bytes[8] & flag_creditable) != 0;
  std::copy_n(bytes.begin() + 9, s.machine.size(), s.machine.begin());
  auto body = bytes.subspan(seed_header_bytes);
  auto n = std::min(body.size(), seed_max_bytes);
  s.seed.assign(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(n));
  return s;
}

bool seed_may_credit(const SeedFile& s, const MachineTag& this_machine) {
  return s.creditable && s.seed.size() >= seed_min_bytes && s.machine == this_machine;
}

std::vector<std::uint8_t> derive_new_seed(std::span<const std::uint8_t> old_seed,
                                          std::span<const std::uint8_t> fresh_random,
                                          std::int64_t realtime_ns, std::int64_t boottime_ns) {
  if (fresh_random.size() < seed_min_bytes)
    throw std::invalid_argument("fresh random input shorter than 32 bytes");
  Sha256 h;
  static constexpr char domain[] = "pisecd seed v1";
  h.add(domain, sizeof domain);
  h.add_u64(static_cast<std::uint64_t>(realtime_ns));
  h.add_u64(static_cast<std::uint64_t>(boottime_ns));
  h.add_u64(old_seed.size());
  h.add(old_seed.data(), old_seed.size());
  h.add_u64(fresh_random.size());
  h.add(fresh_random.data(), fresh_random.size());
  Digest d = h.finish();
  std::vector<std::uint8_t> out(fresh_random.begin(), fresh_random.end());
  std::copy(d.begin(), d.end(), out.end() - static_cast<std::ptrdiff_t>(d.size()));
  return out;
}

// --- SeedStore ---------------------------------------------------------------

SeedStore::SeedStore(const std::string& path) : path_(path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 == path.size())
    throw std::invalid_argument("seed_file must be an absolute file path: " + path);
  std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  name_ = path.substr(slash + 1);
  // First boot on a fresh boot medium: the directory may not exist yet.
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("mkdir " + dir);
  dirfd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd_ < 0) throw_errno("open " + dir);
  // seedrng locks the directory: two instances must not both use one seed.
  while (::flock(dirfd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      int e = errno;
      ::close(dirfd_);
      errno = e;
      throw_errno("flock " + dir);
    }
  }
}

SeedStore::~SeedStore() {
  if (dirfd_ >= 0) ::close(dirfd_);  // releases the flock
}

ConsumedSeed SeedStore::consume() {
  ConsumedSeed c;
  int fd = ::openat(dirfd_, name_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return c;
    throw_errno("open " + path_);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(path_ + ": not a regular file");
  }
  c.found = true;
  c.raw.resize(seed_header_bytes + seed_max_bytes);
  std::size_t got = 0;
  while (got < c.raw.size()) {
    ssize_t n = ::read(fd, c.raw.data() + got, c.raw.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      errno = e;
      throw_errno("read " + path_);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  c.raw.resize(got);
  // Remove it, durably, before it is used: a seed must never be credited twice.
  if (::unlinkat(dirfd_, name_.c_str(), 0) != 0) {
    c.remove_error = "unlink " + path_ + ": " + std::strerror(errno);
  } else if (::fsync(dirfd_) != 0) {
    c.remove_error = "fsync directory of " + path_ + ": " + std::strerror(errno);
  } else {
    c.removed = true;
  }
  return c;
}

void SeedStore::write(const SeedFile& s) {
  std::vector<std::uint8_t> bytes = encode_seed_file(s);
  const std::string_view content(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  util::write_file_atomic(dirfd_, name_, content, 0600, path_);
}

}  // namespace pisec::entropy
