// Streaming SHA-256 of files and the signed sha256sum-format manifest.
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
#include <unistd.h>

#include <openssl/evp.h>

#include "pisec/crypto.hpp"

namespace pisec::crypto {
namespace {

constexpr std::string_view header_prefix = "# pisec-manifest v1 created ";
constexpr std::size_t hash_buffer_size = 64 * 1024;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string errno_text(int err) { return std::strerror(err); }

// Opens a regular file for reading without following a final symlink and
// without blocking on a FIFO (O_NONBLOCK until fstat says it is regular).
Fd open_regular(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    int err = errno;
    if (err == ELOOP) throw Error(path + ": is a symbolic link (only regular files are accepted)");
    if (err == ENOENT) throw Error(path + ": missing (" + errno_text(err) + ")");
    throw Error(path + ": cannot open (" + errno_text(err) + ")");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw Error(path + ": cannot stat (" + errno_text(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    throw Error(path + ": fcntl failed (" + errno_text(errno) + ")");
  return fd;
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

void collect(const std::string& root, const std::string& rel, std::vector<std::string>& out) {
  const std::string full = join_path(root, rel);
  struct stat st {};
  if (::lstat(full.c_str(), &st) != 0) throw Error(full + ": cannot stat (" + errno_text(errno) + ")");
  if (S_ISLNK(st.st_mode)) throw Error(full + ": is a symbolic link (a manifest lists regular files only)");
  if (S_ISREG(st.st_mode)) {
    out.push_back(rel);
    return;
  }
  if (!S_ISDIR(st.st_mode)) throw Error(full + ": not a regular file or directory");
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(full.c_str()), ::closedir);
  if (!dir) throw Error(full + ": cannot open directory (" + errno_text(errno) + ")");
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
  for (const auto& n : names) collect(root, rel + "/" + n, out);
}

// 1970-based day count → calendar, via C++20 chrono (no time_t: 32-bit on armel).
std::int64_t days_from_civil(int y, unsigned m, unsigned d) {
  using namespace std::chrono;
  return sys_days(year{y} / month{m} / day{d}).time_since_epoch().count();
}

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
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("SHA-256 init failed in OpenSSL");
  std::vector<std::uint8_t> buf(hash_buffer_size);
  for (;;) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(path + ": read error (" + errno_text(errno) + ")");
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

std::string format_utc(std::int64_t t) {
  using namespace std::chrono;
  std::int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
  std::int64_t secs = t - days * 86400;
  year_month_day ymd{sys_days{std::chrono::days{days}}};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), static_cast<int>(secs / 3600),
                static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60));
  return buf;
}

std::optional<std::int64_t> parse_utc(std::string_view s) {
  // Exactly YYYY-MM-DDTHH:MM:SSZ.
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
  std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mo)},
                                  std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  return days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 + mi * 60 + se;
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
    if (!line.empty() && line.front() == '#') {
      if (line.substr(0, header_prefix.size()) == header_prefix) {
        if (line_no != 1) throw fail("manifest header must be the first line");
        m.created_at = parse_utc(line.substr(header_prefix.size()));
        if (!m.created_at) throw fail("bad creation time in header (want YYYY-MM-DDTHH:MM:SSZ)");
      }
      continue;  // other comments: sha256sum ignores them too
    }
    if (line.size() < 67 || (line.substr(64, 2) != "  " && line.substr(64, 2) != " *"))
      throw fail("malformed line (want \"<64 hex digits>  <path>\")");
    auto hash = parse_hex_hash(line.substr(0, 64));
    if (!hash) throw fail("malformed line: hash is not 64 hex digits");
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
  if (m.created_at) out += std::string(header_prefix) + format_utc(*m.created_at) + "\n";
  for (const auto& e : m.entries) {
    if (auto why = manifest_path_problem(e.path); !why.empty()) throw Error(e.path + ": " + why);
    out += to_hex(e.hash.data(), e.hash.size()) + "  " + e.path + "\n";
  }
  return out;
}

Manifest create_manifest(const std::string& root_in, const std::vector<std::string>& paths, std::int64_t created_at) {
  if (paths.empty()) throw Error("no files given");
  std::string root = normalise(root_in.empty() ? "." : root_in);
  if (root.empty()) root = ".";
  std::vector<std::string> rels;
  for (const auto& given : paths) {
    std::string p = normalise(given);
    if (!p.empty() && p.front() == '/') {
      // Absolute: must be the root itself or lie under it (lexically).
      std::string prefix = root == "/" ? "/" : root + "/";
      if (root.front() != '/' || (p != root && p.compare(0, prefix.size(), prefix) != 0))
        throw Error(given + ": not under the manifest root " + root_in + " (use --root)");
      p = p == root ? "" : p.substr(prefix.size());
    }
    if (p.empty()) {
      collect(root, "", rels);  // never reached for a file: the root is a directory
      continue;
    }
    if (auto why = manifest_path_problem(p); !why.empty()) throw Error(given + ": " + why);
    collect(root, p, rels);
  }
  Manifest m;
  m.created_at = created_at;
  std::set<std::string> seen;
  for (auto& rel : rels) {
    // collect("") yields "/name": strip the leading slash of the root walk.
    if (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
    if (auto why = manifest_path_problem(rel); !why.empty()) throw Error(join_path(root, rel) + ": " + why);
    if (!seen.insert(rel).second) throw Error(rel + ": given twice");
    m.entries.push_back({rel, sha256_file(join_path(root, rel))});
  }
  return m;
}

std::string read_small_file(const std::string& path, std::size_t max_bytes) {
  Fd fd = open_regular(path);
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(path + ": read error (" + errno_text(errno) + ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_bytes) throw Error(path + ": larger than " + std::to_string(max_bytes) + " bytes");
  }
  return out;
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
  for (const auto& e : m.entries) {
    const std::string full = join_path(root, e.path);
    try {
      Sha256 got = sha256_file(full, cancel);
      if (got != e.hash)
        problems.push_back({e.path, "sha256 mismatch (expected " + hash_hex(e.hash, abbreviate) + ", got " +
                                        hash_hex(got, abbreviate) + ")"});
    } catch (const Error& err) {
      // sha256_file names the full path; report it by its manifest name.
      std::string why = err.what();
      if (why.compare(0, full.size() + 2, full + ": ") == 0) why.erase(0, full.size() + 2);
      problems.push_back({e.path, why});
    }
  }
  return problems;
}

std::optional<std::int64_t> manifest_created_at(const std::string& manifest_path) {
  try {
    return parse_manifest(read_small_file(manifest_path), manifest_path).created_at;
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::optional<std::int64_t> signed_manifest_created_at(const std::string& manifest_path,
                                                       const std::string& signature_path,
                                                       const std::string& public_key_path) {
  return load_signed_manifest(manifest_path, signature_path, public_key_path).manifest.created_at;
}

std::vector<ManifestEntry> manifest_entries(const std::string& manifest_path) {
  return parse_manifest(read_small_file(manifest_path), manifest_path).entries;
}

}  // namespace pisec::crypto
