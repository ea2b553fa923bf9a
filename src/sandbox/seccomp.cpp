// The payload's seccomp filter: default allow, a deny list answered with
// EPERM. A deny list (not an allow list) leaves musl's time64 fallbacks alone
// on 32-bit ARM (moby #40769): unknown syscalls keep behaving as the kernel says.
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "pisec/sandbox.hpp"

namespace pisec::sandbox {

std::span<const char* const> builtin_seccomp_denies() {
  // Kernel-wide state, other processes' memory, and attack surface a web
  // payload never needs. bwrap needs mount/unshare for set-up, but installs
  // this filter only just before exec'ing our init, so they stay usable to it.
  // Constants, not strings on the heap: the daemon holds this list for life.
  static constexpr const char* names[] = {
      // mounts and root changes
      "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig",
      "fspick", "move_mount", "open_tree", "mount_setattr",
      // namespaces (clone's namespace flags are filtered separately)
      "unshare", "setns",
      // kernel code and reboot
      "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
      // other processes' memory
      "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
      // kernel attack surface
      "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
      "io_uring_register", "lookup_dcookie", "keyctl", "add_key", "request_key",
      // the clock belongs to the clock gate (time64 twins on 32-bit ARM)
      "clock_settime", "clock_settime64", "settimeofday", "stime", "adjtimex", "clock_adjtime",
      "clock_adjtime64",
      // host-wide resources
      "swapon", "swapoff", "acct", "quotactl", "nfsservctl", "vhangup",
      // file handles bypass path permission checks (the "shocker" escape)
      "open_by_handle_at", "name_to_handle_at",
      // the kernel log leaks addresses
      "syslog",
  };
  return names;
}

namespace {

struct SeccompCtx {
  scmp_filter_ctx ctx;
  explicit SeccompCtx(std::uint32_t def) : ctx(seccomp_init(def)) {
    if (!ctx) throw SeccompError("seccomp_init failed");
  }
  ~SeccompCtx() { seccomp_release(ctx); }
  SeccompCtx(const SeccompCtx&) = delete;
  SeccompCtx& operator=(const SeccompCtx&) = delete;
};

void check(int rc, const std::string& what) {
  if (rc < 0) throw SeccompError(what + ": " + std::strerror(-rc));
}

// Namespace flags a clone() may not carry (CLONE_NEWTIME shares bits with
// the exit signal in clone()'s flags, and needs a user namespace anyway).
constexpr std::uint64_t clone_namespace_flags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,
                                                   CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
                                                   CLONE_NEWCGROUP};

}  // namespace

std::string seccomp_name_error(const std::string& name) {
  if (seccomp_syscall_resolve_name(name.c_str()) != __NR_SCMP_ERROR) return "";
  return "unknown system call \"" + name + "\"";
}

SeccompPlan plan_seccomp(const std::vector<std::string>& extra) {
  SeccompPlan plan;
  auto deny = [&plan](std::string_view name, int nr) {
    if (std::find(plan.denied_syscalls.begin(), plan.denied_syscalls.end(), nr) !=
        plan.denied_syscalls.end())
      return;
    plan.denied_syscalls.push_back(nr);
    plan.denied_names.emplace_back(name);
  };
  for (const char* name : builtin_seccomp_denies()) {
    int nr = seccomp_syscall_resolve_name(name);
    // Negative: not a system call of this architecture (e.g. stime on ARM
    // EABI, clock_settime64 on x86-64). Nothing to deny.
    if (nr >= 0) deny(name, nr);
  }
  for (const auto& name : extra) {
    if (auto error = seccomp_name_error(name); !error.empty())
      throw SeccompError("payload.seccomp_deny: " + error);
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr < 0) {
      // Known to libseccomp, absent here: one config may serve ARM and x86-64.
      plan.warnings.push_back("payload.seccomp_deny: \"" + name +
                              "\" does not exist on this architecture; skipped");
      continue;
    }
    deny(name, nr);
  }
  return plan;
}

std::vector<std::uint8_t> compile_seccomp_bpf(const SeccompPlan& plan) {
  SeccompCtx f(SCMP_ACT_ALLOW);
  // Syscalls of another ABI (x86 int 0x80 on x86-64) would dodge the filter.
  // KILL_PROCESS needs kernel >= 4.14 (libseccomp asks the kernel; qemu-user
  // says no): fall back to killing the thread.
  if (seccomp_attr_set(f.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0)
    check(seccomp_attr_set(f.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL), "seccomp bad-arch action");
  for (std::size_t i = 0; i < plan.denied_syscalls.size(); ++i)
    check(seccomp_rule_add(f.ctx, SCMP_ACT_ERRNO(EPERM), plan.denied_syscalls[i], 0),
          "seccomp rule for " + plan.denied_names[i]);
  for (std::uint64_t flag : clone_namespace_flags)
    check(seccomp_rule_add(f.ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                           SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)),
          "seccomp rule for clone namespace flags");
  // clone3's flags sit behind a pointer seccomp cannot read: ENOSYS makes
  // glibc fall back to clone(), which is filtered above.
  int clone3 = seccomp_syscall_resolve_name("clone3");
  if (clone3 >= 0) check(seccomp_rule_add(f.ctx, SCMP_ACT_ERRNO(ENOSYS), clone3, 0), "clone3");
  // personality() stays allowed: it changes only the caller's own execution
  // domain (code that can call it already runs as the payload), and libseccomp
  // cannot say "0 or the query 0xffffffff" in one rule.

  int mfd = memfd_create("pisec-seccomp", MFD_CLOEXEC);
  if (mfd < 0) throw SeccompError(std::string("memfd_create: ") + std::strerror(errno));
  UniqueFd fd(mfd);
  check(seccomp_export_bpf(f.ctx, fd.get()), "seccomp_export_bpf");
  off_t size = lseek(fd.get(), 0, SEEK_END);
  if (size <= 0 || lseek(fd.get(), 0, SEEK_SET) != 0)
    throw SeccompError("seccomp_export_bpf produced no program");
  std::vector<std::uint8_t> bpf(static_cast<std::size_t>(size));
  std::size_t got = 0;
  while (got < bpf.size()) {
    ssize_t n = read(fd.get(), bpf.data() + got, bpf.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw SeccompError("reading the compiled seccomp program failed");
    got += static_cast<std::size_t>(n);
  }
  return bpf;
}

SeccompProgram compile_seccomp_program(const std::vector<std::string>& deny) {
  SeccompPlan plan = plan_seccomp(deny);
  SeccompProgram program;
  program.bpf = compile_seccomp_bpf(plan);
  program.deny = deny;
  program.warnings = std::move(plan.warnings);
  return program;
}

}  // namespace pisec::sandbox
