// pisecd: subcommand dispatch only. Each command lives with the module that owns it.
#include <malloc.h>

#include <cstring>
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
// to 32 MiB as larger blocks are freed).
void tune_malloc() {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024);
  mallopt(M_TOP_PAD, 16 * 1024);
}

}  // namespace

int main(int argc, char** argv) {
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
