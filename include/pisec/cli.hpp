#pragma once
// Small helpers shared by the subcommands: argument scanning and the
// signature every subcommand has. main.cpp only dispatches.
#include <optional>

#include "pisec/config.hpp"
#include <stdexcept>
#include <string>
#include <vector>

namespace pisec::cli {

using Args = std::vector<std::string>;
using Command = int (*)(const Args& args);

// Thrown for bad command-line usage; main prints it with the usage line, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Removes "-x VALUE" (or "--long VALUE") from args and returns VALUE.
std::optional<std::string> take_option(Args& args, std::initializer_list<const char*> names);
// Removes a bare flag and reports whether it was present.
bool take_flag(Args& args, std::initializer_list<const char*> names);
// Loads the configuration for a subcommand. On failure prints every error
// ("file:line: key: reason") to stderr and returns nothing.
std::optional<config::Config> load_config(const std::string& path);
// After options are taken, rejects anything left that starts with '-'.
void reject_unknown_options(const Args& args);

int cmd_version(const Args& args);
int cmd_check_config(const Args& args);
int cmd_run(const Args& args);  // src/cli/run.cpp
int cmd_init(const Args& args);
int cmd_sandbox_run(const Args& args);
int cmd_clock_check(const Args& args);  // src/cli/clock.cpp
int cmd_keygen(const Args& args);    // src/cli/manifest.cpp
int cmd_manifest(const Args& args);  // src/cli/manifest.cpp
int cmd_elfcheck(const Args& args);
int cmd_firewall(const Args& args);
int cmd_entropy_check(const Args& args);
int cmd_status(const Args& args);
int cmd_logs(const Args& args);
int cmd_redact(const Args& args);
int cmd_attest(const Args& args);  // src/cli/attest.cpp
int cmd_mux(const Args& args);        // src/cli/mux.cpp
int cmd_mux_token(const Args& args);

}  // namespace pisec::cli
