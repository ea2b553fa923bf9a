// Spawning adapter: fork, drop to the payload's credentials, exec an
// unprivileged bwrap. Everything the child needs is prepared before fork();
// after it the child makes system calls only (the daemon may have threads).
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>

#include "pisec/sandbox.hpp"
#include "pisec/util.hpp"

namespace pisec::sandbox {

namespace {

// Fixed descriptor numbers in the child, named in bwrap's argv.
constexpr int child_seccomp_fd = 3;
constexpr int child_status_fd = 4;
constexpr int child_error_fd = 5;  // close-on-exec: EOF tells the parent exec worked
constexpr int child_report_fd = 6;  // builtin init's reap counts (see SandboxEnv)

int sys_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

int sys_pidfd_send_signal(int pidfd, int sig) {
#ifdef SYS_pidfd_send_signal
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
#else
  (void)pidfd;
  (void)sig;
  errno = ENOSYS;
  return -1;
#endif
}

std::string errno_text(int err) { return std::strerror(err); }

struct Pipe {
  UniqueFd read, write;
};

Pipe make_pipe() {
  std::array<int, 2> fds{};
  if (pipe2(fds.data(), O_CLOEXEC) != 0) throw SpawnError("pipe2: " + errno_text(errno));
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Moves fd to a number >= 10 so the child's dup2() onto 0..5 never collides.
UniqueFd high_fd(UniqueFd fd) {
  if (fd.get() >= 10) return fd;
  int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, 10);
  if (moved < 0) throw SpawnError("fcntl(F_DUPFD_CLOEXEC): " + errno_text(errno));
  return UniqueFd(moved);
}

void set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

std::string self_exe() {
  std::array<char, PATH_MAX> buf{};
  ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw SpawnError("readlink /proc/self/exe: " + errno_text(errno));
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

std::string find_tini() {
  for (const char* p : {"/sbin/tini", "/usr/bin/tini", "/usr/sbin/tini", "/bin/tini"})
    if (access(p, X_OK) == 0) return p;
  throw SpawnError("payload.init = \"tini\" but no tini binary found (/sbin/tini, /usr/bin/tini)");
}

rlim_t megabytes(int mb) {
  const auto bytes = static_cast<unsigned long long>(mb) * 1024ULL * 1024ULL;
  const auto max = static_cast<unsigned long long>(static_cast<rlim_t>(-1));
  return bytes >= max ? RLIM_INFINITY : static_cast<rlim_t>(bytes);
}

// What went wrong in the child, sent over the error pipe.
enum class ChildStep : int { dup, close_fds, rlimit, setgroups, setgid, setuid, verify, pdeathsig,
                             no_new_privs, exec, cgroup };
struct ChildError {
  int step;
  int err;
};

const char* step_name(int step) {
  switch (static_cast<ChildStep>(step)) {
    case ChildStep::dup: return "dup2 of the standard descriptors";
    case ChildStep::close_fds: return "closing inherited descriptors";
    case ChildStep::rlimit: return "setrlimit";
    case ChildStep::setgroups: return "setgroups (is pisecd root?)";
    case ChildStep::setgid: return "setresgid";
    case ChildStep::setuid: return "setresuid";
    case ChildStep::verify: return "credentials did not change";
    case ChildStep::pdeathsig: return "prctl(PR_SET_PDEATHSIG) / parent died";
    case ChildStep::no_new_privs: return "prctl(PR_SET_NO_NEW_PRIVS)";
    case ChildStep::exec: return "exec of bwrap";
    case ChildStep::cgroup: return "joining the payload's memory cgroup";
  }
  return "unknown step";
}

[[noreturn]] void child_fail(ChildStep step) {
  ChildError e{static_cast<int>(step), errno};
  ssize_t ignored = write(child_error_fd, &e, sizeof e);
  (void)ignored;
  _exit(127);
}

struct ChildPlan {
  const char* bwrap;
  char* const* argv;
  char* const* envp;
  pid_t parent;
  int fd_in, fd_out, fd_err, fd_seccomp, fd_status, fd_error, fd_report;
  int fd_cgroup_procs;  // -1: no memory cgroup to join
  int max_inherited_fd;
  uid_t uid;
  gid_t gid;
  std::array<std::pair<int, rlimit>, 4> limits;
  std::size_t limit_count;
};

// Runs in the forked child: system calls only.
[[noreturn]] void child_exec(const ChildPlan& c) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    signal(sig, SIG_DFL);
  }
  // Own session: terminal signals aimed at the daemon do not hit bwrap.
  setsid();

  const std::array<std::pair<int, int>, 7> moves = {{{c.fd_error, child_error_fd},
                                                      {c.fd_report, child_report_fd},
                                                      {c.fd_in, 0},
                                                      {c.fd_out, 1},
                                                      {c.fd_err, 2},
                                                      {c.fd_seccomp, child_seccomp_fd},
                                                      {c.fd_status, child_status_fd}}};
  for (auto [from, to] : moves) {
    if (dup2(from, to) < 0) child_fail(ChildStep::dup);
  }
  if (fcntl(child_error_fd, F_SETFD, FD_CLOEXEC) < 0) child_fail(ChildStep::dup);
  // "0" moves the writer itself; done as root, before the inherited fds go.
  if (c.fd_cgroup_procs >= 0 && write(c.fd_cgroup_procs, "0", 1) != 1) child_fail(ChildStep::cgroup);
#ifdef SYS_close_range
  if (syscall(SYS_close_range, child_report_fd + 1, ~0U, 0) != 0)
#endif
  {
    for (int fd = child_report_fd + 1; fd <= c.max_inherited_fd; ++fd) close(fd);
  }

  for (std::size_t i = 0; i < c.limit_count; ++i) {
    if (setrlimit(c.limits[i].first, &c.limits[i].second) != 0)
      child_fail(ChildStep::rlimit);
  }

  // Groups first (needs root), then gid, then uid: after setresuid nothing
  // privileged is possible any more, which is the point.
  if (setgroups(1, &c.gid) != 0) child_fail(ChildStep::setgroups);
  if (setresgid(c.gid, c.gid, c.gid) != 0) child_fail(ChildStep::setgid);
  if (setresuid(c.uid, c.uid, c.uid) != 0) child_fail(ChildStep::setuid);
  {
    uid_t r, e, s;
    gid_t rg, eg, sg;
    gid_t groups[2];
    errno = EPERM;
    if (getresuid(&r, &e, &s) != 0 || r != c.uid || e != c.uid || s != c.uid)
      child_fail(ChildStep::verify);
    if (getresgid(&rg, &eg, &sg) != 0 || rg != c.gid || eg != c.gid || sg != c.gid)
      child_fail(ChildStep::verify);
    int n = getgroups(2, groups);
    if (n != 1 || groups[0] != c.gid) child_fail(ChildStep::verify);
  }
  // Credential changes clear the parent-death signal: set it afterwards, and
  // close the race with a parent that died already (bubblewrap #633).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(ChildStep::pdeathsig);
  if (getppid() != c.parent) {
    errno = ESRCH;
    child_fail(ChildStep::pdeathsig);
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(ChildStep::no_new_privs);
  execve(c.bwrap, c.argv, c.envp);
  child_fail(ChildStep::exec);
}

bool ppid_is(pid_t pid, pid_t parent) {
  bool is = false;
  text::for_each_line(util::read_text_file("/proc/" + std::to_string(pid) + "/status").value_or(""),
                      [&](std::string_view line) {
                        if (line.starts_with("PPid:")) {
                          auto w = text::words(line.substr(5));
                          is = w.size() == 1 && text::to_int(w[0]) == parent;
                        }
                      });
  return is;
}

bool send(int pidfd, pid_t pid, int sig) {
  if (pidfd >= 0) {
    if (sys_pidfd_send_signal(pidfd, sig) == 0) return true;
    if (errno != ENOSYS) return false;
  }
  return pid > 0 && kill(pid, sig) == 0;
}

}  // namespace

std::string check_user_namespaces() {
  auto read_int = [](const char* path) -> std::optional<long> {
    const std::string value = util::read_text_file(path).value_or("");  // the words below point into it
    auto w = text::words(value);
    if (w.empty()) return std::nullopt;
    return text::to_int(w[0]);
  };
  if (access("/proc/self/ns/user", F_OK) != 0)
    return "the kernel has no user namespaces (CONFIG_USER_NS is off); the unprivileged "
           "bwrap needs them";
  if (auto v = read_int("/proc/sys/user/max_user_namespaces"); v && *v == 0)
    return "user namespaces are disabled: sysctl user.max_user_namespaces = 0 (set it > 0)";
  if (auto v = read_int("/proc/sys/kernel/unprivileged_userns_clone"); v && *v == 0)
    return "unprivileged user namespaces are disabled: sysctl "
           "kernel.unprivileged_userns_clone = 0 (set it to 1)";
  if (auto v = read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); v && *v == 1)
    return "AppArmor restricts unprivileged user namespaces: sysctl "
           "kernel.apparmor_restrict_unprivileged_userns = 1 (set it to 0 or give bwrap a "
           "profile)";
  return "";
}

Spawned spawn(const config::Payload& payload, const SpawnOptions& options) {
  Spawned s;
  SeccompProgram fresh;
  const SeccompProgram* program = options.seccomp;
  if (program == nullptr || program->deny != payload.seccomp_deny) {
    fresh = compile_seccomp_program(payload.seccomp_deny);
    program = &fresh;
  }
  s.warnings = program->warnings;
  const std::vector<std::uint8_t>& bpf = program->bpf;

  // bwrap reads the program from the fd's current offset: write, rewind.
  UniqueFd seccomp(memfd_create("pisec-seccomp", MFD_CLOEXEC));
  if (!seccomp) throw SpawnError("memfd_create: " + errno_text(errno));
  if (write(seccomp.get(), bpf.data(), bpf.size()) != static_cast<ssize_t>(bpf.size()) ||
      lseek(seccomp.get(), 0, SEEK_SET) != 0)
    throw SpawnError("writing the seccomp program: " + errno_text(errno));

  SandboxEnv env;
  env.bwrap_path = options.bwrap_path;
  env.seccomp_fd = child_seccomp_fd;
  env.json_status_fd = child_status_fd;
  env.init_report_fd = payload.init == "builtin" ? child_report_fd : -1;
  env.require_cgroup_namespace = options.require_cgroup_namespace;
  env.disable_userns = options.disable_userns;
  env.init_host_path = options.init_host_path;
  if (env.init_host_path.empty()) {
    if (payload.init == "builtin") env.init_host_path = self_exe();
    else if (payload.init == "tini") env.init_host_path = find_tini();
  }
  std::vector<std::string> bwrap_argv = build_bwrap_argv(payload, env);

  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull) throw SpawnError("open /dev/null: " + errno_text(errno));
  Pipe out = make_pipe(), err = make_pipe(), status = make_pipe(), error = make_pipe(),
       report = make_pipe();

  UniqueFd c_in = high_fd(std::move(devnull)), c_out = high_fd(std::move(out.write)),
           c_err = high_fd(std::move(err.write)), c_seccomp = high_fd(std::move(seccomp)),
           c_status = high_fd(std::move(status.write)), c_error = high_fd(std::move(error.write)),
           c_report = high_fd(std::move(report.write));

  std::vector<char*> argv;
  for (auto& a : bwrap_argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::array<char*, 1> envp{nullptr};

  ChildPlan c{};
  c.bwrap = options.bwrap_path.c_str();
  c.argv = argv.data();
  c.envp = envp.data();
  c.parent = getpid();
  c.fd_in = c_in.get();
  c.fd_out = c_out.get();
  c.fd_err = c_err.get();
  c.fd_seccomp = c_seccomp.get();
  c.fd_status = c_status.get();
  c.fd_error = c_error.get();
  c.fd_report = c_report.get();
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  c.max_inherited_fd = nofile.rlim_cur == RLIM_INFINITY || nofile.rlim_cur > 65536
                           ? 65536
                           : static_cast<int>(nofile.rlim_cur);
  c.uid = payload.uid;
  c.gid = payload.gid;
  auto limit = [&c](int resource, rlim_t value) {
    c.limits[c.limit_count++] = {resource, rlimit{value, value}};
  };
  limit(RLIMIT_NOFILE, static_cast<rlim_t>(payload.max_open_files));
  // Counted per real uid across the host: right for a dedicated payload uid.
  // bwrap's two processes and the init count too.
  limit(RLIMIT_NPROC, static_cast<rlim_t>(payload.max_processes));
  limit(RLIMIT_CORE, 0);
  MemoryLimit memory = prepare_memory_limit(payload.max_memory_bytes, options.memory_cgroup);
  if (!memory.note.empty()) s.warnings.push_back(memory.note);
  rlim_t address_space = payload.max_address_space_mb > 0 ? megabytes(payload.max_address_space_mb) : RLIM_INFINITY;
  if (memory.kind == MemoryLimit::Kind::rlimit_as &&
      payload.max_memory_bytes < static_cast<std::uint64_t>(address_space))  // rlim_t is 32-bit on armel
    address_space = static_cast<rlim_t>(payload.max_memory_bytes);
  if (address_space != RLIM_INFINITY) limit(RLIMIT_AS, address_space);
  UniqueFd c_cgroup = memory.procs_fd ? high_fd(std::move(memory.procs_fd)) : UniqueFd();
  c.fd_cgroup_procs = c_cgroup ? c_cgroup.get() : -1;

  pid_t pid = fork();
  if (pid < 0) throw SpawnError("fork: " + errno_text(errno));
  if (pid == 0) child_exec(c);

  s.pid = pid;
  c_error.reset();  // our copy: EOF on the read end now means exec happened
  ChildError ce{};
  ssize_t n;
  do {
    n = read(error.read.get(), &ce, sizeof ce);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    throw SpawnError(std::string("starting the sandbox: ") + step_name(ce.step) + ": " +
                     errno_text(ce.err));
  }
  s.pidfd.reset(sys_pidfd_open(pid));  // -1 on kernels before 5.3: kill() fallback
  s.stdout_fd = std::move(out.read);
  s.stderr_fd = std::move(err.read);
  s.status_fd = std::move(status.read);
  s.report_fd = std::move(report.read);
  set_nonblocking(s.report_fd.get());
  set_nonblocking(s.stdout_fd.get());
  set_nonblocking(s.stderr_fd.get());
  set_nonblocking(s.status_fd.get());
  return s;
}

bool adopt_sandbox_init(Spawned& s, pid_t child_pid) {
  if (child_pid <= 0) return false;
  UniqueFd fd(sys_pidfd_open(child_pid));
  // Checked after the pidfd pins the process: a recycled pid has another parent.
  if (!ppid_is(child_pid, s.pid)) return false;
  s.init_pid = child_pid;
  s.init_pidfd = std::move(fd);
  return true;
}

bool signal_payload(const Spawned& s, int sig) {
  if (s.init_pid > 0 && send(s.init_pidfd.get(), s.init_pid, sig)) return true;
  // Without an init to aim at, only SIGKILL has a sure meaning: kill bwrap,
  // whose parent-death signal takes the sandbox's pid namespace down.
  if (sig == SIGKILL) return send(s.pidfd.get(), s.pid, SIGKILL);
  return false;
}

namespace {

bool wait_exit(const Spawned& s, std::chrono::milliseconds timeout) {
  if (!s.pidfd) {
    // No pidfd: poll waitid without reaping, in small steps (CLI only).
    for (auto left = timeout; left.count() > 0; left -= std::chrono::milliseconds(20)) {
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(s.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == s.pid)
        return true;
      usleep(20000);
    }
    return false;
  }
  pollfd p{s.pidfd.get(), POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

}  // namespace

int stop_and_reap(Spawned& s, std::chrono::milliseconds grace) {
  if (!signal_payload(s, SIGTERM) || !wait_exit(s, grace)) {
    signal_payload(s, SIGKILL);
    if (!wait_exit(s, std::chrono::milliseconds(2000))) send(s.pidfd.get(), s.pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(s.pid, &status, 0) < 0 && errno == EINTR) {
  }
  s.init_pidfd.reset();
  s.init_pid = -1;
  return status;
}

}  // namespace pisec::sandbox
