#pragma once
// `pisecd run`: lockdown → gates → service ruleset → sandboxed payload under
// the watchdog, with the control socket answering throughout.
#include <string>

namespace pisec::daemon {

// Runs in the foreground until SIGTERM/SIGINT; returns the process exit code.
int run(const std::string& config_path);

}  // namespace pisec::daemon
