#pragma once
// `pisecd run`: lockdown → gates → service ruleset → sandboxed payload under
// the watchdog, with the control socket answering throughout.
#include "pisec/config.hpp"

namespace pisec::daemon {

// Runs in the foreground until SIGTERM/SIGINT; returns the process exit code.
int run(config::Config cfg);

}  // namespace pisec::daemon
