// payload.max_memory: a cgroup v2 memory.max when the kernel offers a memory
// controller to the daemon's own cgroup, RLIMIT_AS otherwise. Parsing /proc
// is pure; prepare_memory_limit reads /proc and writes cgroupfs, nothing else.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pisec/sandbox.hpp"

namespace pisec::sandbox {

namespace {

bool has_word(std::string_view text, std::string_view word) {
  for (auto w : text::words(text))
    if (w == word) return true;
  return false;
}

// Writes the whole value in one write(): cgroupfs takes one value per write.
int write_value(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno;
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) return errno;
  return 0;
}

std::string mib(std::uint64_t bytes) {
  return bytes % (1 << 20) == 0 ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes) + " bytes";
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::optional<std::string> cgroup2_mount_point(std::string_view mountinfo) {
  // "36 25 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw": fields up
  // to " - ", then the filesystem type. Only a mount of the hierarchy's root.
  std::optional<std::string> found;
  text::for_each_line(mountinfo, [&](std::string_view line) {
    auto dash = line.find(" - ");
    if (found || dash == std::string_view::npos) return;
    auto before = text::words(line.substr(0, dash));
    auto after = text::words(line.substr(dash + 3));
    if (before.size() >= 5 && !after.empty() && after[0] == "cgroup2" && before[3] == "/") found = std::string(before[4]);
  });
  return found;
}

std::optional<std::string> cgroup2_own_path(std::string_view proc_self_cgroup) {
  std::optional<std::string> found;
  text::for_each_line(proc_self_cgroup, [&](std::string_view line) {
    if (!found && line.starts_with("0::/")) found = std::string(line.substr(3));
  });
  return found;
}

MemoryLimit prepare_memory_limit(std::uint64_t bytes, const std::string& cgroup_name, const CgroupProcFiles& proc) {
  MemoryLimit m;
  if (bytes == 0) return m;
  auto fallback = [&](const std::string& why) {
    MemoryLimit r;
    r.kind = MemoryLimit::Kind::rlimit_as;
    r.note = "max_memory " + mib(bytes) + ": enforced by RLIMIT_AS (no cgroup v2 memory.max: " + why + ")";
    return r;
  };
  auto mounts = util::read_text_file(proc.mountinfo);
  auto mount = mounts ? cgroup2_mount_point(*mounts) : std::nullopt;
  if (!mount) return fallback("no cgroup v2 hierarchy is mounted");
  auto own = util::read_text_file(proc.cgroup);
  auto path = own ? cgroup2_own_path(*own) : std::nullopt;
  if (!path) return fallback("this process is in no cgroup v2 group");
  const std::string dir = *mount + (*path == "/" ? "" : *path);
  const std::string controllers = trimmed(util::read_text_file(dir + "/cgroup.controllers").value_or(""));
  if (!has_word(controllers, "memory"))
    return fallback(dir + " is offered no memory controller (cgroup.controllers: \"" + controllers + "\")");
  if (!has_word(util::read_text_file(dir + "/cgroup.subtree_control").value_or(""), "memory")) {
    // Only possible where the daemon's group has no processes of its own
    // (the root group is exempt): a delegating parent should have done it.
    if (int err = write_value(dir + "/cgroup.subtree_control", "+memory"))
      return fallback("cannot enable memory in " + dir + "/cgroup.subtree_control: " + std::strerror(err));
  }
  const std::string group = dir + "/" + cgroup_name;
  if (::mkdir(group.c_str(), 0755) != 0 && errno != EEXIST)
    return fallback("mkdir " + group + ": " + std::strerror(errno));
  if (int err = write_value(group + "/memory.max", std::to_string(bytes)))
    return fallback(group + "/memory.max: " + std::strerror(err));
  // No swap to escape into, and the whole sandbox goes at once when it is hit.
  write_value(group + "/memory.swap.max", "0");
  write_value(group + "/memory.oom.group", "1");
  m.procs_fd.reset(::open((group + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  if (!m.procs_fd) return fallback(group + "/cgroup.procs: " + std::strerror(errno));
  m.kind = MemoryLimit::Kind::cgroup;
  m.group = group;
  m.note = "max_memory " + mib(bytes) + ": enforced by cgroup v2 memory.max in " + group;
  return m;
}

}  // namespace pisec::sandbox
