// Built into every executable of the host-asan preset only (PISEC_SANITIZE):
// the sanitizers' settings for pisecd and its tests, compiled in so that
// ctest, the integration scripts and the processes they start need no
// environment. An ASAN_OPTIONS/UBSAN_OPTIONS in the environment still wins.
#include <sys/prctl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" {

// Called by the ASan runtime before main.
const char* __asan_default_options();
const char* __asan_default_options() {
  // Off by default, cheap at this size: use of a stack frame after its
  // function returned (Asio handlers capture references), and globals read
  // before their constructor ran (static tables across translation units).
  return "detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1";
}

// Called by the UBSan runtime: a stack trace with every report, so a failure
// in an integration test's daemon says where without a rerun.
const char* __ubsan_default_options();
const char* __ubsan_default_options() { return "print_stacktrace=1"; }

// Called by LeakSanitizer at exit, before its check. The check ptrace-attaches
// to the process's threads, which cannot work in a process that gave up its
// uid or capabilities (not dumpable: the mux, `pisecd attest`, the sandbox's
// init) or runs under the payload's seccomp filter (ptrace denied): LSan
// would call that a fatal error and change the exit status the tests check.
// Leaks are still checked everywhere else: the daemon, the CLI, the unit tests.
int __lsan_is_turned_off();
int __lsan_is_turned_off() {
  if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1) return 1;
  std::FILE* status = std::fopen("/proc/self/status", "re");
  if (status == nullptr) return 1;  // cannot tell: do not risk a false failure
  int off = 0;
  char line[256];
  while (std::fgets(line, static_cast<int>(sizeof line), status) != nullptr)
    if (std::strncmp(line, "Seccomp:", 8) == 0) off = std::strtol(line + 8, nullptr, 10) != 0;
  std::fclose(status);
  return off;
}

}
