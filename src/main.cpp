// pisecd: subcommand dispatch only. Each command lives with the module that owns it.
#include <malloc.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "pisec/cli.hpp"
#include "pisec/util.hpp"

namespace {

struct Entry {
  std::string_view name;
  pisec::cli::Command run;
  std::string_view usage;
};

constexpr Entry commands[] = {
    {"--version", pisec::cli::cmd_version, "pisecd --version"},
    {"run", pisec::cli::cmd_run, "pisecd run [-c FILE]"},
    {"check-config", pisec::cli::cmd_check_config, "pisecd check-config [-c FILE]"},
    {"init", pisec::cli::cmd_init, "pisecd init [--grace-ms N] -- CMD..."},
    {"sandbox-run", pisec::cli::cmd_sandbox_run, "pisecd sandbox-run [-c FILE] [--bwrap PATH]"},
    {"clock-check", pisec::cli::cmd_clock_check, "pisecd clock-check [-c FILE]"},
    {"keygen", pisec::cli::cmd_keygen, "pisecd keygen -p PUB -s SEC"},
    {"manifest", pisec::cli::cmd_manifest, "pisecd manifest create -o MANIFEST [--root DIR] PATH...  (also writes and lists DIR/pisec-release) | sign -s SECKEY -m MANIFEST [-x SIG] | verify -p PUBKEY -m MANIFEST [-x SIG] [--root DIR]"},
    {"elfcheck", pisec::cli::cmd_elfcheck, "pisecd elfcheck [--target armv6|host] FILE..."},
    {"firewall", pisec::cli::cmd_firewall, "pisecd firewall render [-c FILE] [--lockdown]  (apply|verify [-c FILE] [--lockdown]: operator/test aids, not pinned)"},
    {"entropy-check", pisec::cli::cmd_entropy_check, "pisecd entropy-check [-c FILE] [--no-credit] [--sysfs DIR]"},
    {"status", pisec::cli::cmd_status, "pisecd status [--json] [-s SOCKET | -c FILE]"},
    {"logs", pisec::cli::cmd_logs, "pisecd logs [-f] [-n N] [--json] [-s SOCKET | -c FILE]"},
    {"redact", pisec::cli::cmd_redact, "pisecd redact [-c FILE]  (stdin -> stdout, as logs would store it)"},
    {"attest", pisec::cli::cmd_attest, "pisecd attest [-c FILE] [--json] [--ruleset DIGEST] [--gate NAME=STATUS]...  (one attestation now; exit 0 affirming, 1 warning, 2 contraindicated, 3 no answer)"},
    {"mux", pisec::cli::cmd_mux, "pisecd mux [-c FILE] [--listen A:P] [--upstream A:P] [--token-sha256 HEX] [--KEY VALUE]...  (the /debug mux; the daemon starts it)"},
    {"mux-token", pisec::cli::cmd_mux_token, "pisecd mux-token  (a new bearer token and its [mux] token_sha256 line)"},
};

void print_usage(void (*print)(std::string_view)) {
  std::string text = "usage:\n";
  for (const auto& c : commands) text += pisec::text::cat("  ", c.usage, '\n');
  print(text);
}

// The device has 256–512 MB and the daemon idles for months: one malloc arena
// for every thread (a gate's worker thread would otherwise keep an arena of
// its own, whose touched pages stay dirty after the thread ends), blocks of
// 64 KiB and more mapped on their own, and free memory at the top of the
// heap given back from 64 KiB on (glibc's defaults grow both thresholds up
// to 32 MiB as larger blocks are freed). No fastbins: a freed small block
// joins its free neighbours at once, so the pages malloc_trim can give back
// after boot are whole (8 KiB less idle heap, measured on the host).
void tune_malloc() {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MXFAST, 0);
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024);
  mallopt(M_TOP_PAD, 16 * 1024);
}

// glibc keeps up to seven freed blocks of each small size in a per-thread
// cache that malloc_trim never empties: after boot, pages holding nothing
// else stay dirty for the daemon's life (24 of its 56 KiB of idle heap,
// measured on the host). glibc has no mallopt for that cache, only the
// GLIBC_TUNABLES variable it reads at exec, so `pisecd run` execs itself
// once, first thing, with the cache off. An operator's own tcache_count
// wins; if the exec fails (no /proc), the daemon runs with the cache.
// Sanitizer builds replace malloc: nothing to turn off there.
void exec_without_malloc_cache(char** argv) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  constexpr std::string_view key = "glibc.malloc.tcache_count";
  constexpr const char* again = "PISECD_EXEC_NAME";  // set for the second image only
  if (const char* name = std::getenv(again)) {
    // Exec'ing /proc/self/exe named the process "exe": give it its name back.
    ::prctl(PR_SET_NAME, name, 0, 0, 0);
    ::unsetenv(again);
    return;
  }
  const char* set = std::getenv("GLIBC_TUNABLES");
  const std::string before = set ? set : "";
  if (before.find(key) != std::string::npos) return;
  char name[17] = {};
  if (::prctl(PR_GET_NAME, name, 0, 0, 0) != 0) return;
  const std::string tunables = (before.empty() ? "" : before + ":") + std::string(key) + "=0";
  if (::setenv("GLIBC_TUNABLES", tunables.c_str(), 1) == 0 && ::setenv(again, name, 1) == 0)
    ::execv("/proc/self/exe", argv);
  ::unsetenv(again);
  if (set) ::setenv("GLIBC_TUNABLES", before.c_str(), 1);
  else ::unsetenv("GLIBC_TUNABLES");
#else
  (void)argv;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "run") exec_without_malloc_cache(argv);
  tune_malloc();
  if (argc < 2) {
    print_usage(pisec::text::err);
    return 2;
  }
  std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    print_usage(pisec::text::out);
    return 0;
  }
  for (const auto& c : commands) {
    if (c.name != name) continue;
    pisec::cli::Args args(argv + 2, argv + argc);
    try {
      return c.run(args);
    } catch (const pisec::cli::UsageError& e) {
      pisec::text::err(pisec::text::cat("pisecd ", name, ": ", e.what(), "\nusage: ", c.usage, '\n'));
      return 2;
    } catch (const std::exception& e) {
      pisec::text::err(pisec::text::cat("pisecd ", name, ": ", e.what(), '\n'));
      return 1;
    }
  }
  pisec::text::err(pisec::text::cat("pisecd: unknown command \"", name, "\"\n"));
  print_usage(pisec::text::err);
  return 2;
}
