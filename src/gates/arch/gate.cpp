// The arch gate: refuse a payload (or any ELF in the manifest) that the
// target CPU cannot run, before it crash-loops with "Illegal instruction".
#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>
#include <utility>  // before Boost.Asio with GCC 12 / C++20

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "pisec/formats.hpp"
#include "pisec/gates/arch.hpp"
#include "pisec/util.hpp"

namespace pisec::elf {

namespace {

constexpr int max_script_depth = 4;  // as many "#!" hops as Linux follows


bool is_regular_in_root(int root_fd, const std::string& path) {
  int fd = open_in_root(root_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// "#!/bin/sh -e\n…" → "/bin/sh"; nullopt if the bytes are not a script.
std::optional<std::string> script_interpreter(const std::vector<std::uint8_t>& bytes) {
  if (bytes.size() < 2 || bytes[0] != '#' || bytes[1] != '!') return std::nullopt;
  std::string line(bytes.begin() + 2, bytes.begin() + static_cast<std::ptrdiff_t>(
                                                           std::min<std::size_t>(bytes.size(), 256)));
  line = line.substr(0, line.find('\n'));
  std::size_t start = line.find_first_not_of(" \t");
  if (start == std::string::npos) return std::string();
  return line.substr(start, line.find_first_of(" \t", start) - start);
}

struct Tally {
  int runs = 0;
  int unknown_allowed = 0;
  std::vector<std::string> failures;
};

// Checks one ELF file; script/interpreter handling is the caller's.
void judge(const std::string& label, const Reader& file, const config::ArchGate& arch, Target target,
           Tally& t, Verdict* out = nullptr) {
  Verdict v = check_elf(file, target);
  if (out) *out = v;
  if (!v.acceptable(arch.allow_unknown)) {
    t.failures.push_back(label + ": " + describe(v, target));
  } else if (v.status == Status::cannot_judge) {
    ++t.unknown_allowed;
  } else {
    ++t.runs;
  }
}

void check_payload(const config::ArchGate& arch, const config::Payload& payload, Target target,
                   Tally& t) {
  if (payload.command.empty() || payload.command.front().empty()) {
    t.failures.push_back("payload.command is empty: nothing to check");
    return;
  }
  util::UniqueFd root;
  std::string root_name = "/";
  if (!payload.rootfs.empty()) {
    root_name = payload.rootfs;
    root.reset(::open(payload.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) {
      t.failures.push_back("payload.rootfs " + payload.rootfs + ": " + std::strerror(errno));
      return;
    }
  }
  // The config only admits an absolute command[0]: the file the sandbox execs.
  std::optional<std::string> path = payload.command.front();
  std::string label = "payload " + *path;
  for (int depth = 0;; ++depth) {
    FileReader file(root.get(), *path);
    std::string error = file.error().empty() ? file.size_error(default_max_file_bytes) : file.error();
    std::optional<std::string> interp;
    if (error.empty()) {
      try {
        interp = script_interpreter(file.head(256));
      } catch (const ReadError& e) {
        error = e.what();
      }
    }
    if (!error.empty()) {
      t.failures.push_back(label + ": cannot read: " + error);
      return;
    }
    if (!interp) {
      Verdict v;
      judge(label, file, arch, target, t, &v);
      if (v.status == Status::runs && !v.interpreter.empty() &&
          !is_regular_in_root(root.get(), v.interpreter))
        t.failures.push_back(label + ": needs program interpreter " + v.interpreter +
                             ", which is missing under " + root_name);
      return;
    }
    if (interp->empty() || depth == max_script_depth) {
      t.failures.push_back(label + ": script without a usable \"#!\" interpreter");
      return;
    }
    path = *interp;
    label += " -> " + *interp;
  }
}

void check_manifest(const config::ArchGate& arch, const config::IntegrityGate& integrity,
                    Target target, Tally& t) {
  // The same parser as the integrity gate: only the paths matter here, the
  // integrity gate owns checking the hashes.
  std::vector<std::string> paths;
  try {
    for (auto& entry : crypto::manifest_entries(integrity.manifest)) paths.push_back(std::move(entry.path));
  } catch (const crypto::Error& e) {
    t.failures.push_back(std::string("manifest: ") + e.what());
    return;
  }
  util::UniqueFd root;
  root.reset(::open(integrity.root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    t.failures.push_back("integrity.root " + integrity.root + ": " + std::strerror(errno));
    return;
  }
  for (const auto& rel : paths) {
    FileReader file(root.get(), rel);
    std::string error = file.error();
    if (error.empty()) {
      // Files that are not ELF (data, scripts, kernels) are not judged, whatever their size.
      try {
        auto magic = file.head(SELFMAG);
        if (magic.size() < SELFMAG || std::memcmp(magic.data(), ELFMAG, SELFMAG) != 0) continue;
      } catch (const ReadError& e) {
        error = e.what();
      }
    }
    if (error.empty()) error = file.size_error(default_max_file_bytes);
    if (!error.empty()) {
      t.failures.push_back(rel + ": cannot read: " + error);
      continue;
    }
    judge(rel, file, arch, target, t);
  }
}

class ArchGateImpl final : public gates::Gate {
 public:
  ArchGateImpl(config::ArchGate arch, config::Payload payload, config::IntegrityGate integrity)
      : arch_(std::move(arch)), payload_(std::move(payload)), integrity_(std::move(integrity)) {}

  std::string_view name() const override { return "arch"; }

  void start(boost::asio::io_context& io, gates::Done done) override {
    // The checks are quick file reads; run them on the loop, after start()
    // has returned, and drop the result if cancel() came first.
    boost::asio::post(io, [cancelled = cancelled_, arch = arch_, payload = payload_,
                           integrity = integrity_, done = std::move(done)] {
      if (*cancelled) return;
      gates::Outcome outcome = run_arch_checks(arch, payload, integrity);
      if (!*cancelled) done(std::move(outcome));
    });
  }

  void cancel() override { *cancelled_ = true; }

 private:
  config::ArchGate arch_;
  config::Payload payload_;
  config::IntegrityGate integrity_;
  std::shared_ptr<bool> cancelled_ = std::make_shared<bool>(false);
};

}  // namespace

gates::Outcome run_arch_checks(const config::ArchGate& arch, const config::Payload& payload,
                               const config::IntegrityGate& integrity) {
  auto target = parse_target(arch.target);
  if (!target) return {false, "gates.arch.target \"" + arch.target + "\" is not armv6 or host"};
  Tally t;
  check_payload(arch, payload, *target, t);
  if (integrity.enabled && !integrity.manifest.empty()) check_manifest(arch, integrity, *target, t);
  if (!t.failures.empty()) {
    std::string detail = t.failures.front();
    if (t.failures.size() > 1) detail += " (and " + std::to_string(t.failures.size() - 1) + " more)";
    return {false, detail};
  }
  std::string detail = std::to_string(t.runs) + (t.runs == 1 ? " ELF file runs on " : " ELF files run on ") +
                       target_name(*target);
  if (t.unknown_allowed > 0)
    detail += ", " + std::to_string(t.unknown_allowed) + " not judged (allow_unknown)";
  return {true, detail};
}

std::unique_ptr<gates::Gate> make_arch_gate(const config::ArchGate& arch,
                                            const config::Payload& payload,
                                            const config::IntegrityGate& integrity) {
  return std::make_unique<ArchGateImpl>(arch, payload, integrity);
}

}  // namespace pisec::elf
