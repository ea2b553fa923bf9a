// `pisecd keygen` and `pisecd manifest create|sign|verify`.
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "pisec/cli.hpp"
#include "pisec/formats.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {
namespace {

using crypto::Error;

// Writes text to path. exclusive: refuse an existing file (keys are never
// overwritten); otherwise replace it, but never through a symlink.
void write_file(const std::string& path, const std::string& text, mode_t mode, bool exclusive) {
  int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
  int fd = ::open(path.c_str(), flags, mode);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST) throw Error(path + ": already exists, refusing to overwrite it");
    throw Error(path + ": cannot create (" + std::strerror(err) + ")");
  }
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      throw Error(path + ": write failed (" + std::strerror(err) + ")");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw Error(path + ": write failed (" + std::strerror(errno) + ")");
}

std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string require(Args& args, std::initializer_list<const char*> names, const char* what) {
  auto v = take_option(args, names);
  if (!v) throw UsageError(std::string("missing ") + *names.begin() + " " + what);
  return *v;
}

void no_positionals(const Args& args) {
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
}

// The release stamp's time: SOURCE_DATE_EPOCH makes manifests reproducible; otherwise now.
std::int64_t creation_time() {
  if (const char* sde = std::getenv("SOURCE_DATE_EPOCH"); sde && *sde) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(sde, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0) throw Error("SOURCE_DATE_EPOCH must be unix seconds, got " + std::string(sde));
    return v;
  }
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

int manifest_create(Args args) {
  std::string out = require(args, {"-o", "--output"}, "MANIFEST");
  std::string root = take_option(args, {"--root"}).value_or(".");
  reject_unknown_options(args);
  if (!args.empty() && args.front() == "--") args.erase(args.begin());
  if (args.empty()) throw UsageError("no PATH given");
  const std::int64_t created = creation_time();
  auto m = crypto::create_manifest(root, args, created);
  write_file(out, crypto::format_manifest(m), 0644, false);
  std::string stamp = root.empty() ? "." : root;
  stamp += stamp.back() == '/' ? "" : "/";
  stamp += crypto::release_stamp_name;
  text::out(text::cat(out, ": ", m.entries.size(), " files, release stamp ", stamp, " (created ", util::format_utc(created), ") listed first\n"));
  return 0;
}

int manifest_sign(Args args) {
  std::string sec_path = require(args, {"-s"}, "SECKEY");
  std::string manifest = require(args, {"-m"}, "MANIFEST");
  std::string sig_path = take_option(args, {"-x"}).value_or(manifest + ".sig");
  no_positionals(args);
  auto sec = crypto::parse_secret_key(crypto::read_small_file(sec_path, 4096), sec_path);
  std::string text = crypto::read_small_file(manifest);
  // Parse before signing: never sign something the gate would reject.
  crypto::parse_manifest(text, manifest);
  // signify's comment: "verify with NAME.pub" when the key is NAME.sec.
  std::string base = basename_of(sec_path);
  std::string comment = base.size() > 4 && base.compare(base.size() - 4, 4, ".sec") == 0
                            ? "verify with " + base.substr(0, base.size() - 4) + ".pub"
                            : "signature from pisecd key " + crypto::keynum_hex(sec.keynum);
  write_file(sig_path, crypto::format_signature(crypto::sign(sec, text), comment), 0644, false);
  text::out(text::cat(sig_path, ": signed with key ", crypto::keynum_hex(sec.keynum), '\n'));
  return 0;
}

int manifest_verify(Args args) {
  std::string pub = require(args, {"-p"}, "PUBKEY");
  std::string manifest = require(args, {"-m"}, "MANIFEST");
  std::string sig = take_option(args, {"-x"}).value_or(manifest + ".sig");
  std::string root = take_option(args, {"--root"}).value_or(".");
  no_positionals(args);
  crypto::SignedManifest sm;
  try {
    sm = crypto::load_signed_manifest(manifest, sig, pub);
  } catch (const Error& e) {
    text::err(text::cat("FAILED: ", e.what(), '\n'));
    return 1;
  }
  text::out(text::cat("signature OK: ", manifest, " signed by key ", crypto::keynum_hex(sm.keynum), '\n'));
  auto problems = crypto::check_files(sm.manifest, root);
  for (const auto& p : problems) text::err(text::cat("FAILED: ", p.to_string(), '\n'));
  if (!problems.empty()) {
    text::err(text::cat(problems.size(), " of ", sm.manifest.entries.size(), " files failed under ", root, '\n'));
    return 1;
  }
  text::out(text::cat(sm.manifest.entries.size(), " files verified under ", root, '\n'));
  return 0;
}

}  // namespace

int cmd_keygen(const Args& in) {
  Args args = in;
  std::string pub_path = require(args, {"-p"}, "PUB");
  std::string sec_path = require(args, {"-s"}, "SEC");
  no_positionals(args);
  if (::access(pub_path.c_str(), F_OK) == 0) throw Error(pub_path + ": already exists, refusing to overwrite it");
  auto kp = crypto::generate_keypair();
  write_file(sec_path, crypto::format_secret_key(kp.sec), 0600, true);
  try {
    write_file(pub_path, crypto::format_public_key(kp.pub), 0644, true);
  } catch (...) {
    ::unlink(sec_path.c_str());  // we just created it: no half key pairs
    throw;
  }
  text::out(text::cat("key ", crypto::keynum_hex(kp.pub.keynum), ": ", pub_path, ", ", sec_path, '\n'));
  return 0;
}

int cmd_manifest(const Args& in) {
  if (in.empty()) throw UsageError("missing subcommand (create, sign or verify)");
  Args rest(in.begin() + 1, in.end());
  const std::string& sub = in.front();
  if (sub == "create") return manifest_create(std::move(rest));
  if (sub == "sign") return manifest_sign(std::move(rest));
  if (sub == "verify") return manifest_verify(std::move(rest));
  throw UsageError("unknown subcommand \"" + sub + "\" (create, sign or verify)");
}

}  // namespace pisec::cli
