// [payload] -> bwrap argv: the one place that turns sandbox intent into flags.
#include <algorithm>
#include <string>
#include <vector>

#include "pisec/sandbox.hpp"

namespace pisec::sandbox {

std::vector<std::string> build_bwrap_argv(const config::Payload& p, const SandboxEnv& env) {
  std::vector<std::string> a;
  auto add = [&a](std::initializer_list<std::string> words) {
    a.insert(a.end(), words.begin(), words.end());
  };
  a.push_back(env.bwrap_path);

  // bwrap runs as the payload's uid already (spawn drops to it); it builds a
  // user namespace mapping that uid to itself, so the payload is never root
  // on the host (file permissions and nftables `meta skuid` apply).
  add({"--unshare-user", "--uid", std::to_string(p.uid), "--gid", std::to_string(p.gid)});
  if (env.disable_userns) add({"--disable-userns"});
  add({"--unshare-pid", "--unshare-ipc", "--unshare-uts"});
  add({env.require_cgroup_namespace ? "--unshare-cgroup" : "--unshare-cgroup-try"});
  // No --unshare-net: host network, confined by the firewall.
  add({"--die-with-parent", "--new-session", "--cap-drop", "ALL"});
  // Our init is PID 1 itself: bwrap's reaper would swallow signals and hide
  // the command's pid (#553); with --as-pid-1 "child-pid" is the init.
  add({"--as-pid-1"});

  add({"--clearenv"});
  for (const auto& [key, value] : p.env) add({"--setenv", key, value});
  if (!p.env.count("PATH")) add({"--setenv", "PATH", default_path_env});
  add({"--hostname", p.hostname});

  // Read-only root: a payload rootfs, or read-only binds of host directories
  // (the config must bind everything the command needs, its own directory too).
  // bwrap mounts in argv order and a later mount hides what lies under it, so
  // the fresh /proc, /dev and /tmp come first and the binds go on top (a bind
  // under /tmp stays visible), parents before children.
  if (!p.rootfs.empty()) add({"--ro-bind", p.rootfs, "/"});
  add({"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
  if (p.rootfs.empty()) {
    std::vector<std::string> binds = p.ro_binds;
    std::stable_sort(binds.begin(), binds.end(), [](const std::string& x, const std::string& y) {
      return std::count(x.begin(), x.end(), '/') < std::count(y.begin(), y.end(), '/');
    });
    for (const auto& dir : binds) add({"--ro-bind", dir, dir});
  }
  // Writable paths must exist on the host; with a rootfs the mount point must
  // also exist inside it (the root is read-only, bwrap cannot create it).
  for (const auto& dir : p.rw_paths) add({"--bind", dir, dir});

  const bool bound_init = p.init == "builtin" || p.init == "tini";
  if (bound_init) add({"--ro-bind", env.init_host_path, init_path_in_sandbox});
  // bwrap's root is a writable tmpfs holding the bind mount points: seal it.
  if (p.rootfs.empty()) add({"--remount-ro", "/"});

  if (env.seccomp_fd >= 0) add({"--seccomp", std::to_string(env.seccomp_fd)});
  if (env.json_status_fd >= 0) add({"--json-status-fd", std::to_string(env.json_status_fd)});
  add({"--chdir", p.cwd});

  add({"--"});
  if (p.init == "builtin") {
    add({init_path_in_sandbox, "init", "--grace-ms", std::to_string(env.init_grace_ms)});
    if (env.init_report_fd >= 0) add({"--report-fd", std::to_string(env.init_report_fd)});
    add({"--"});
  } else if (p.init == "tini") {
    // -g: forward signals to the child's process group, like ours.
    add({init_path_in_sandbox, "-g", "--"});
  } else {
    add({p.init, "--"});
  }
  a.insert(a.end(), p.command.begin(), p.command.end());
  return a;
}

}  // namespace pisec::sandbox
