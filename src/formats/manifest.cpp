// Streaming SHA-256 of files and the signed sha256sum-format manifest. Files
// under a manifest root are opened beneath it, never through a symlink.
// 64-bit file offsets and inode numbers on 32-bit ARM too: without them
// readdir/stat fail with EOVERFLOW (64-bit ext4 directory offsets, files > 2 GiB).
// Only this file's own POSIX calls see it; no off_t or struct stat crosses its API.
#define _FILE_OFFSET_BITS 64
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pisec/formats.hpp"
#include "pisec/util.hpp"

namespace pisec::crypto {
namespace {

constexpr std::string_view stamp_prefix = "created ";
constexpr std::size_t stamp_size = 8 + 20 + 1;  // "created YYYY-MM-DDTHH:MM:SSZ\n"
constexpr std::size_t hash_buffer_size = 64 * 1024;
constexpr int read_flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

// struct open_how and the RESOLVE_* bits of <linux/openat2.h> (Linux 5.6),
// which the armel sysroot's headers may lack; the ABI is fixed by its size.
struct OpenHow {
  std::uint64_t flags;
  std::uint64_t mode;
  std::uint64_t resolve;
};
static_assert(sizeof(OpenHow) == 24, "open_how v0 is 24 bytes");
constexpr std::uint64_t resolve_no_magiclinks = 0x02;
constexpr std::uint64_t resolve_no_symlinks = 0x04;
constexpr std::uint64_t resolve_beneath = 0x08;
#ifdef SYS_openat2
constexpr long sys_openat2 = SYS_openat2;
#else
constexpr long sys_openat2 = 437;  // one number on every architecture (unified table since Linux 5.1)
#endif

std::atomic<bool> openat2_missing{false};  // the kernel said ENOSYS once: walk from then on
std::atomic<bool> walk_forced{false};      // testing::force_component_walk

using Fd = util::UniqueFd;

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string errno_text(int err) { return std::strerror(err); }

// The O_NONBLOCK open (a FIFO must not block us) made it this far: refuse
// anything but a regular file, then read normally.
Fd regular_only(Fd fd, const std::string& shown) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw Error(shown + ": cannot stat (" + errno_text(errno) + ")");
  if (S_ISLNK(st.st_mode)) throw Error(shown + ": is a symbolic link (only regular files are accepted)");
  if (!S_ISREG(st.st_mode)) throw Error(shown + ": not a regular file");
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    throw Error(shown + ": fcntl failed (" + errno_text(errno) + ")");
  return fd;
}

// Why opening the last component failed.
[[noreturn]] void throw_open_error(const std::string& shown, int err) {
  if (err == ELOOP) throw Error(shown + ": is a symbolic link (only regular files are accepted)");
  if (err == ENOENT) throw Error(shown + ": missing (" + errno_text(err) + ")");
  if (err == EXDEV) throw Error(shown + ": path leaves the manifest root");
  throw Error(shown + ": cannot open (" + errno_text(err) + ")");
}

// Opens a standalone file (key, signature, manifest) without following a final symlink.
Fd open_regular(const std::string& path) {
  Fd fd(::open(path.c_str(), read_flags));
  if (fd.get() < 0) throw_open_error(path, errno);
  return regular_only(std::move(fd), path);
}

Fd open_root(const std::string& root) {
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) throw Error(root + ": cannot open the manifest root (" + errno_text(errno) + ")");
  return fd;
}

// The fallback for kernels without openat2: one component at a time, each
// opened with O_NOFOLLOW, so no symlink (magic links included) is ever followed
// and ".." never appears (manifest_path_problem refuses it).
Fd walk_beneath(int root_fd, std::string_view rel, const std::string& shown, int flags) {
  Fd dir(-1);
  int at = root_fd;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = rel.find('/', start);
    std::string comp(rel.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (comp.empty() || comp == "." || comp == "..")
      throw Error(shown + ": path is not normalised (empty, \".\" or \"..\" component)");
    if (slash == std::string_view::npos) {
      Fd fd(::openat(at, comp.c_str(), flags));
      if (fd.get() < 0) throw_open_error(shown, errno);
      return fd;
    }
    const std::string prefix(rel.substr(0, slash));
    Fd next(::openat(at, comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) {
      int err = errno;
      struct stat st {};
      // ENOTDIR or ELOOP, depending on the kernel, for a symlink: say which it was.
      if ((err == ENOTDIR || err == ELOOP) && ::fstatat(at, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode))
        throw Error(shown + ": symbolic link in path (" + prefix + "): paths must stay inside the manifest root");
      if (err == ENOENT) throw Error(shown + ": missing (" + errno_text(err) + ")");
      if (err == ENOTDIR) throw Error(shown + ": " + prefix + " is not a directory");
      throw Error(shown + ": cannot open " + prefix + " (" + errno_text(err) + ")");
    }
    dir = std::move(next);
    at = dir.get();
    start = slash + 1;
  }
}

// Opens rel (a manifest path) beneath root_fd: no symlink in any component, no
// escape by "..", mount tricks or magic links. openat2 does it in one call; on
// ELOOP the walk runs again only to name the link. Returns an O_NONBLOCK fd
// (or O_PATH, per flags) the caller must fstat.
Fd open_beneath(int root_fd, const std::string& rel, const std::string& shown, int flags) {
  if (!walk_forced.load() && !openat2_missing.load()) {
    OpenHow how{static_cast<std::uint64_t>(flags), 0, resolve_beneath | resolve_no_symlinks | resolve_no_magiclinks};
    Fd fd(static_cast<int>(::syscall(sys_openat2, root_fd, rel.c_str(), &how, sizeof how)));
    if (fd.get() >= 0) return fd;
    int err = errno;
    if (err != ENOSYS) {
      if (err != ELOOP) throw_open_error(shown, err);
      walk_beneath(root_fd, rel, shown, flags);  // throws the precise reason
      throw Error(shown + ": symbolic link in path: paths must stay inside the manifest root");
    }
    openat2_missing.store(true);
  }
  return walk_beneath(root_fd, rel, shown, flags);
}

Fd open_regular_beneath(int root_fd, const std::string& rel, const std::string& shown) {
  return regular_only(open_beneath(root_fd, rel, shown, read_flags), shown);
}

}  // namespace

// Hashes an open file through a fixed buffer.
Sha256 sha256_fd(int fd, const std::string& shown, const std::atomic<bool>* cancel) {
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("SHA-256 init failed in OpenSSL");
  std::vector<std::uint8_t> buf(hash_buffer_size);
  for (;;) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(shown + ": read error (" + errno_text(errno) + ")");
    }
    if (n == 0) break;
    if (EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(n)) != 1)
      throw Error("SHA-256 update failed in OpenSSL");
  }
  Sha256 h{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), h.data(), &len) != 1) throw Error("SHA-256 final failed in OpenSSL");
  return h;
}

namespace {

std::string read_fd(int fd, const std::string& shown, std::size_t max_bytes) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(shown + ": read error (" + errno_text(errno) + ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_bytes) throw Error(shown + ": larger than " + std::to_string(max_bytes) + " bytes");
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<Sha256> parse_hex_hash(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Sha256 h{};
  for (std::size_t i = 0; i < h.size(); ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    h[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return h;
}

std::string hash_hex(const Sha256& h, bool abbreviate) {
  std::string s = to_hex(h.data(), h.size());
  if (abbreviate) s = s.substr(0, 12) + "\u2026";
  return s;
}

std::string join_path(const std::string& root, const std::string& rel) {
  if (root.empty()) return rel;
  return root.back() == '/' ? root + rel : root + "/" + rel;
}

// Lexical normalisation: drops "." components and repeated slashes. Does not
// resolve "..": callers reject it.
std::string normalise(std::string_view p) {
  std::string out;
  bool absolute = !p.empty() && p.front() == '/';
  std::size_t i = 0;
  while (i <= p.size()) {
    std::size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view comp = p.substr(i, j - i);
    if (!comp.empty() && comp != ".") {
      if (!out.empty()) out += '/';
      out += comp;
    }
    i = j + 1;
  }
  return absolute ? "/" + out : out;
}

// Lists rel (a file, or a directory walked in sorted order) under the root.
// Entries are opened O_PATH beneath the root: nothing is followed, and no
// device is opened just to look at it.
void collect(int root_fd, const std::string& root, const std::string& rel, std::vector<std::string>& out) {
  const std::string full = rel.empty() ? root : join_path(root, rel);
  Fd fd = rel.empty() ? Fd(::openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC))
                      : open_beneath(root_fd, rel, full, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd.get() < 0) throw Error(full + ": cannot open (" + errno_text(errno) + ")");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw Error(full + ": cannot stat (" + errno_text(errno) + ")");
  if (S_ISLNK(st.st_mode)) throw Error(full + ": is a symbolic link (a manifest lists regular files only)");
  if (S_ISREG(st.st_mode)) {
    out.push_back(rel);
    return;
  }
  if (!S_ISDIR(st.st_mode)) throw Error(full + ": not a regular file or directory");
  Fd readable(::openat(fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (readable.get() < 0) throw Error(full + ": cannot open directory (" + errno_text(errno) + ")");
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(readable.get()), ::closedir);
  if (!dir) throw Error(full + ": cannot open directory (" + errno_text(errno) + ")");
  static_cast<void>(readable.release());  // the DIR owns it now
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(dir.get());
    if (!e) {
      // NULL is both "end" and "error": a silently short listing would leave files unsigned.
      if (errno != 0) throw Error(full + ": cannot read directory (" + errno_text(errno) + ")");
      break;
    }
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) collect(root_fd, root, rel.empty() ? n : rel + "/" + n, out);
}

// 1970-based day count → calendar, via C++20 chrono (no time_t: 32-bit on armel).

}  // namespace

Sha256 sha256(std::string_view data) {
  Sha256 h{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), h.data(), &len, EVP_sha256(), nullptr) != 1)
    throw Error("SHA-256 failed in OpenSSL");
  return h;
}

Sha256 sha256_file(const std::string& path, const std::atomic<bool>* cancel) {
  Fd fd = open_regular(path);
  return sha256_fd(fd.get(), path, cancel);
}

std::string manifest_path_problem(std::string_view p) {
  if (p.empty()) return "empty path";
  if (p.front() == '/') return "absolute path (paths must be relative to the manifest root)";
  if (p.find('\n') != std::string_view::npos || p.find('\r') != std::string_view::npos)
    return "path contains a line break (newline or carriage return)";
  if (p.find('\\') != std::string_view::npos) return "path contains a backslash";
  if (p.find('\0') != std::string_view::npos) return "path contains a NUL byte";
  std::size_t i = 0;
  while (i <= p.size()) {
    std::size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view comp = p.substr(i, j - i);
    if (comp == "..") return "path contains a \"..\" component";
    if (comp.empty() || comp == ".") return "path is not normalised (empty or \".\" component)";
    i = j + 1;
  }
  return "";
}

Manifest parse_manifest(std::string_view text, const std::string& where) {
  Manifest m;
  std::set<std::string, std::less<>> seen;
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    std::size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    auto fail = [&](const std::string& why) -> Error {
      return Error(where + ":" + std::to_string(line_no) + ": " + why);
    };
    // Only what both GNU `sha256sum --strict -c` and BusyBox `sha256sum -c`
    // accept; BusyBox counts comments and upper-case hex as failures.
    if (!line.empty() && line.front() == '#')
      throw fail("comment lines are not allowed (a manifest is plain \"<64 hex digits>  <path>\" lines)");
    if (line.size() < 67 || line.substr(64, 2) != "  ")
      throw fail("malformed line (want \"<64 hex digits>  <path>\")");
    auto hash = parse_hex_hash(line.substr(0, 64));
    if (!hash || to_hex(hash->data(), hash->size()) != line.substr(0, 64))
      throw fail("malformed line: hash is not 64 lower-case hex digits");
    std::string path(line.substr(66));
    if (auto why = manifest_path_problem(path); !why.empty()) throw fail(path + ": " + why);
    if (!seen.insert(path).second) throw fail(path + ": listed twice");
    m.entries.push_back({std::move(path), *hash});
  }
  if (m.entries.empty()) throw Error(where + ": manifest lists no files");
  return m;
}

std::string format_manifest(const Manifest& m) {
  std::string out;
  for (const auto& e : m.entries) {
    if (auto why = manifest_path_problem(e.path); !why.empty()) throw Error(e.path + ": " + why);
    out += to_hex(e.hash.data(), e.hash.size()) + "  " + e.path + "\n";
  }
  return out;
}

std::string format_release_stamp(std::int64_t unix_seconds) {
  return std::string(stamp_prefix) + util::format_utc(unix_seconds) + "\n";
}

std::optional<std::int64_t> parse_release_stamp(std::string_view text) {
  if (text.size() != stamp_size || text.substr(0, stamp_prefix.size()) != stamp_prefix || text.back() != '\n')
    return std::nullopt;
  return util::parse_utc(text.substr(stamp_prefix.size(), 20));
}

namespace {

// Replaces <root>/pisec-release by a new file (temporary name, then rename):
// never writes through a symlink or into a hard link already there.
void write_release_stamp(int root_fd, const std::string& root, std::int64_t unix_seconds) {
  const std::string name(release_stamp_name);
  try {
    util::write_file_atomic(root_fd, name, format_release_stamp(unix_seconds), 0644, join_path(root, name));
  } catch (const std::runtime_error& e) {
    throw Error(std::string(e.what()) + " (writing the release stamp)");
  }
}

}  // namespace

Manifest create_manifest(const std::string& root_in, const std::vector<std::string>& paths,
                         std::optional<std::int64_t> release_time) {
  if (paths.empty()) throw Error("no files given");
  std::string root = normalise(root_in.empty() ? "." : root_in);
  if (root.empty()) root = ".";
  Fd root_fd = open_root(root);
  std::vector<std::string> rels;
  if (release_time) {
    write_release_stamp(root_fd.get(), root, *release_time);
    rels.emplace_back(release_stamp_name);
  }
  for (const auto& given : paths) {
    std::string p = normalise(given);
    if (!p.empty() && p.front() == '/') {
      // Absolute: must be the root itself or lie under it (lexically).
      std::string prefix = root == "/" ? "/" : root + "/";
      if (root.front() != '/' || (p != root && p.compare(0, prefix.size(), prefix) != 0))
        throw Error(given + ": not under the manifest root " + root_in + " (use --root)");
      p = p == root ? "" : p.substr(prefix.size());
    }
    if (!p.empty())
      if (auto why = manifest_path_problem(p); !why.empty()) throw Error(given + ": " + why);
    collect(root_fd.get(), root, p, rels);  // "" walks the whole root
  }
  Manifest m;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < rels.size(); ++i) {
    const std::string& rel = rels[i];
    if (auto why = manifest_path_problem(rel); !why.empty()) throw Error(join_path(root, rel) + ": " + why);
    if (!seen.insert(rel).second) {
      if (release_time && rel == release_stamp_name) continue;  // just written; also found by a walk
      throw Error(rel + ": given twice");
    }
    const std::string shown = join_path(root, rel);
    Fd fd = open_regular_beneath(root_fd.get(), rel, shown);
    m.entries.push_back({rel, sha256_fd(fd.get(), shown, nullptr)});
  }
  return m;
}

std::string read_small_file(const std::string& path, std::size_t max_bytes) {
  Fd fd = open_regular(path);
  return read_fd(fd.get(), path, max_bytes);
}

SignedManifest load_signed_manifest(const std::string& manifest_path, const std::string& signature_path,
                                    const std::string& public_key_path) {
  PublicKey pub = parse_public_key(read_small_file(public_key_path, 4096), public_key_path);
  Signature sig = parse_signature(read_small_file(signature_path, 4096), signature_path);
  // One read: the bytes whose signature is checked are the bytes parsed.
  std::string text = read_small_file(manifest_path);
  bool good = false;
  try {
    good = verify(pub, sig, text);
  } catch (const Error& e) {
    throw Error(signature_path + ": " + e.what() + " (" + public_key_path + ")");
  }
  if (!good)
    throw Error(signature_path + ": signature verification failed: " + manifest_path +
                " was modified or the signature is corrupt");
  return {parse_manifest(text, manifest_path), pub.keynum};
}

std::vector<FileProblem> check_files(const Manifest& m, const std::string& root, const std::atomic<bool>* cancel,
                                     bool abbreviate) {
  std::vector<FileProblem> problems;
  Fd root_fd(-1);
  try {
    root_fd = open_root(root);
  } catch (const Error& err) {
    for (const auto& e : m.entries) problems.push_back({e.path, err.what()});
    return problems;
  }
  for (const auto& e : m.entries) {
    const std::string full = join_path(root, e.path);
    try {
      Fd fd = open_regular_beneath(root_fd.get(), e.path, full);
      Sha256 got = sha256_fd(fd.get(), full, cancel);
      if (got != e.hash)
        problems.push_back({e.path, "sha256 mismatch (expected " + hash_hex(e.hash, abbreviate) + ", got " +
                                        hash_hex(got, abbreviate) + ")"});
    } catch (const Error& err) {
      // The open names the full path; report it by its manifest name.
      std::string why = err.what();
      if (why.compare(0, full.size() + 2, full + ": ") == 0) why.erase(0, full.size() + 2);
      problems.push_back({e.path, why});
    }
  }
  return problems;
}

std::optional<std::int64_t> signed_release_time(const std::string& manifest_path, const std::string& signature_path,
                                                const std::string& public_key_path, const std::string& root) {
  const auto sm = load_signed_manifest(manifest_path, signature_path, public_key_path);
  auto entry = std::find_if(sm.manifest.entries.begin(), sm.manifest.entries.end(),
                            [](const ManifestEntry& e) { return e.path == release_stamp_name; });
  if (entry == sm.manifest.entries.end()) return std::nullopt;
  const std::string shown = join_path(root, std::string(release_stamp_name));
  Fd root_fd = open_root(root);
  Fd fd = open_regular_beneath(root_fd.get(), entry->path, shown);
  const std::string text = read_fd(fd.get(), shown, 256);
  // Nothing of the file is believed before its hash matches the signed entry.
  const Sha256 got = sha256(text);
  if (got != entry->hash)
    throw Error(shown + ": sha256 mismatch with the signed manifest (expected " + hash_hex(entry->hash, false) +
                ", got " + hash_hex(got, false) + ")");
  auto t = parse_release_stamp(text);
  if (!t) throw Error(shown + ": not a release stamp (want one line \"created YYYY-MM-DDTHH:MM:SSZ\")");
  return t;
}

std::vector<ManifestEntry> manifest_entries(const std::string& manifest_path) {
  return parse_manifest(read_small_file(manifest_path), manifest_path).entries;
}

namespace testing {

void force_component_walk(bool on) { walk_forced.store(on); }

bool kernel_has_openat2() {
  OpenHow how{O_PATH | O_CLOEXEC, 0, resolve_beneath};
  Fd fd(static_cast<int>(::syscall(sys_openat2, AT_FDCWD, ".", &how, sizeof how)));
  return fd.get() >= 0;
}

}  // namespace testing

}  // namespace pisec::crypto
