#pragma once
// The payload sandbox: [payload] intent -> bubblewrap argv (pure), the seccomp
// deny list (libseccomp, native arch), the spawn adapter (fork, drop to the
// payload's uid, exec an unprivileged bwrap), bwrap's --json-status-fd records,
// and the tiny init (`pisecd init`) that runs as PID 1 inside the sandbox.
//
// Process tree of one payload (host view):
//   pisecd (subreaper) -> bwrap [Spawned::pid, our child, uid = payload uid]
//                           -> pisecd init [PID 1 of the sandbox's pid ns,
//                              host pid from the status fd's "child-pid"]
//                                -> command (own process group) -> ...
// bwrap never forwards signals (bubblewrap #369): signal the init, which
// forwards to the command's process group. SIGKILL of the init kills the whole
// pid namespace; bwrap then exits and the daemon reaps it.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pisec/config.hpp"
#include "pisec/util.hpp"

namespace pisec::sandbox {

// Where the init binary (pisecd itself, or tini) is bound read-only inside the
// sandbox. Under /dev because bwrap's --dev is a fresh tmpfs in both root
// modes: a read-only rootfs could not get a new mount point.
inline constexpr const char* init_path_in_sandbox = "/dev/.pisec/init";
// PATH given to the payload when [payload] env does not declare one.
inline constexpr const char* default_path_env =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// What the argv needs that is not configuration.
struct SandboxEnv {
  std::string bwrap_path = "/usr/bin/bwrap";
  // Host path of the init binary bound at init_path_in_sandbox: the pisecd
  // binary for init = "builtin", the tini binary for init = "tini"; unused
  // when init is a path (that path must exist inside the sandbox).
  std::string init_host_path;
  int seccomp_fd = -1;      // compiled BPF for --seccomp; -1 = none (tests only)
  int json_status_fd = -1;  // --json-status-fd; -1 = none
  // true: --unshare-cgroup (fail if missing); false: --unshare-cgroup-try.
  bool require_cgroup_namespace = false;
  // bwrap >= 0.8 --disable-userns: the payload cannot make user namespaces.
  bool disable_userns = true;
  int init_grace_ms = 1000;  // builtin init: leftovers' SIGTERM->exit grace
  // builtin init: fd on which it reports how many orphans it reaped, so the
  // daemon's reaped_orphans counts reaping inside the pid namespace too.
  int init_report_fd = -1;
};

// The complete argv (argv[0] = env.bwrap_path). Pure; the order is the order
// bwrap applies the mounts in.
std::vector<std::string> build_bwrap_argv(const config::Payload& payload, const SandboxEnv& env);

// ---- seccomp ------------------------------------------------------------

// The built-in deny list (answered with EPERM), by name, for documentation
// and tests. Names absent on the running architecture are skipped.
std::span<const char* const> builtin_seccomp_denies();

struct SeccompPlan {
  std::vector<int> denied_syscalls;  // resolved numbers, native arch
  std::vector<std::string> denied_names;
  std::vector<std::string> warnings;  // e.g. user names absent on this arch
};

// Resolves the built-in list plus `extra` (the config's seccomp_deny). A name
// libseccomp does not know on any architecture throws SeccompError naming it;
// a name that exists only on other architectures is skipped with a warning.
SeccompPlan plan_seccomp(const std::vector<std::string>& extra);
// Empty when libseccomp knows `name` (on some architecture), else the reason
// plan_seccomp would throw. The config loader checks seccomp_deny with it.
std::string seccomp_name_error(const std::string& name);

// Compiles the plan into classic BPF for the native architecture (default
// allow; denies -> EPERM; clone with namespace flags -> EPERM; clone3 ->
// ENOSYS so libc falls back to clone; other architectures -> kill).
std::vector<std::uint8_t> compile_seccomp_bpf(const SeccompPlan& plan);

// A compiled program and the deny list it was compiled for: spawn() reuses
// it while the payload's seccomp_deny is that list, instead of making
// libseccomp's hundreds of short-lived allocations on every start.
struct SeccompProgram {
  std::vector<std::string> deny;      // the seccomp_deny it was compiled for
  std::vector<std::uint8_t> bpf;      // compile_seccomp_bpf(plan_seccomp(deny))
  std::vector<std::string> warnings;  // plan_seccomp's
};
SeccompProgram compile_seccomp_program(const std::vector<std::string>& deny);

struct SeccompError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- host support ---------------------------------------------------------

// Empty when an unprivileged process may create a user namespace (needed by
// the unprivileged bwrap); otherwise what is missing and how to fix it.
std::string check_user_namespaces();

// ---- spawning (kernel adapter) ----------------------------------------------

using UniqueFd = util::UniqueFd;

// ---- memory limit (kernel adapter) ----------------------------------------------

// How payload.max_memory is enforced for one spawn.
struct MemoryLimit {
  enum class Kind { none, cgroup, rlimit_as };
  Kind kind = Kind::none;
  std::string group;  // Kind::cgroup: the payload's own cgroup directory
  UniqueFd procs_fd;  // Kind::cgroup: its cgroup.procs, open for the child to join
  std::string note;   // for the log: the mechanism, and why not the cgroup
};

// With a cgroup v2 memory controller available to the daemon's own cgroup
// (in its subtree_control, or enabled there now), makes the child group
// cgroup_name with memory.max = bytes (swap 0, oom.group 1); otherwise says
// why and falls back to RLIMIT_AS. bytes == 0: Kind::none.
// The /proc files it reads (tests point them at a fake cgroupfs in a temp dir).
struct CgroupProcFiles {
  std::string mountinfo = "/proc/self/mountinfo";
  std::string cgroup = "/proc/self/cgroup";
};
MemoryLimit prepare_memory_limit(std::uint64_t bytes, const std::string& cgroup_name,
                                 const CgroupProcFiles& proc = {});
// Pure helpers: the cgroup2 mount of the hierarchy's root from
// /proc/self/mountinfo, and the "0::" path from /proc/self/cgroup.
std::optional<std::string> cgroup2_mount_point(std::string_view mountinfo);
std::optional<std::string> cgroup2_own_path(std::string_view proc_self_cgroup);

struct SpawnOptions {
  std::string bwrap_path = "/usr/bin/bwrap";
  // pisecd binary for init = "builtin" (default: /proc/self/exe resolved);
  // the tini binary for init = "tini" (default: first of /sbin/tini,
  // /usr/bin/tini, /usr/sbin/tini).
  std::string init_host_path;
  bool require_cgroup_namespace = false;
  bool disable_userns = true;
  // The child cgroup made for payload.max_memory, under the daemon's own.
  std::string memory_cgroup = "pisecd-payload";
  // Used when its deny list is the payload's seccomp_deny; compiled afresh
  // otherwise (or when null).
  const SeccompProgram* seccomp = nullptr;
};

// A running sandbox. All fds are O_CLOEXEC; the pipe read ends are
// non-blocking so they can be handed to Asio.
struct Spawned {
  pid_t pid = -1;     // bwrap: the daemon's direct child; reap it
  UniqueFd pidfd;     // pidfd of bwrap (poll: readable when it exited)
  UniqueFd stdout_fd;  // payload stdout (read end)
  UniqueFd stderr_fd;  // payload stderr and bwrap's own messages (read end)
  UniqueFd status_fd;  // bwrap --json-status-fd (read end); EOF when bwrap exits
  UniqueFd report_fd;  // builtin init's "reaped N" lines (read end); EOF when it exits
  pid_t init_pid = -1;  // host pid of the sandbox init, once adopted
  UniqueFd init_pidfd;  // pidfd of the sandbox init, once adopted
  std::vector<std::string> warnings;  // for the log: seccomp plan warnings, how max_memory is enforced
};

struct SpawnError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Forks from the calling thread (bwrap's --die-with-parent follows THIS
// thread: call it from the daemon's long-lived event-loop thread), drops to
// the payload's uid/gid, and execs bwrap. Returns once bwrap is exec'd; throws
// SpawnError naming the step that failed (nothing left running).
Spawned spawn(const config::Payload& payload, const SpawnOptions& options);

// Call with the "child-pid" from the status fd: opens a pidfd on the sandbox
// init and checks it is bwrap's child (so a recycled pid is never signalled).
bool adopt_sandbox_init(Spawned& s, pid_t child_pid);

// Delivers sig to the payload: via the adopted init, which forwards it to the
// command's process group. SIGKILL kills the whole sandbox (init + bwrap).
// False when it could not be delivered (e.g. init not adopted yet for a
// non-SIGKILL signal, or everything already gone).
bool signal_payload(const Spawned& s, int sig);

// Blocking stop for the foreground CLI and tests (the daemon uses its timers
// instead): SIGTERM, wait up to grace, SIGKILL, reap bwrap. Returns bwrap's
// wait status.
int stop_and_reap(Spawned& s, std::chrono::milliseconds grace);

// ---- bwrap --json-status-fd records -----------------------------------------

struct StatusEvent {
  enum class Kind { child_pid, exit_code } kind;
  long value = 0;
};

// Incremental parser: feed raw bytes as they arrive; complete records
// (one JSON object per line) come out. Unknown records are ignored; a
// malformed line throws std::runtime_error naming it.
class StatusFdParser {
 public:
  std::vector<StatusEvent> feed(std::string_view bytes);
  std::vector<StatusEvent> finish();  // at EOF: parse a last unterminated line

 private:
  std::string pending_;
};

// How bwrap's run ended, from its wait status and the status records.
struct SandboxExit {
  // true: bwrap failed before the payload ran (no "exit-code" record; #257).
  bool setup_failed = false;
  int code = 0;    // payload exit code (valid when !setup_failed && signal == 0)
  int signal = 0;  // payload (init) killed by this signal, or bwrap itself
};
SandboxExit classify_exit(int bwrap_wait_status, std::optional<long> exit_code_record);

// ---- the init (pisecd init) -------------------------------------------------

// Signals the init forwards to the command's process group.
const std::vector<int>& init_forwarded_signals();
// Exit status of the init for a child wait status: code, or 128+signal.
int exit_status_for(int wait_status);

// Parses the builtin init's report lines ("reaped N", N cumulative) and
// returns the highest N seen in `bytes`, or -1 if none. Cumulative totals mean
// a dropped write (full pipe) loses nothing.
long parse_init_report(std::string_view bytes);

// `pisecd init [--grace-ms N] [--report-fd FD] -- CMD...`, its options parsed
// (src/cli/sandbox.cpp): runs command as the init's child; returns the exit status.
struct InitOptions {
  long grace_ms = 1000;  // leftovers get SIGKILL this long after the command exits
  int report_fd = -1;    // where "reaped N" lines go, or -1
  std::vector<std::string> command;
};
int run_init(const InitOptions& options);

}  // namespace pisec::sandbox
