// Built into every executable of the host-asan preset only (PISEC_SANITIZE):
// the sanitizers' settings for pisecd and its tests, compiled in so that
// ctest, the integration scripts and the processes they start need no
// environment. An ASAN_OPTIONS/UBSAN_OPTIONS in the environment still wins.

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

}
