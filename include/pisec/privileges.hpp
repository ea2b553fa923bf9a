#pragma once
// What the daemon keeps of root once set-up is done, and dropping the rest.
#include <string>
#include <vector>

namespace pisec::supervisor {

// Capabilities the running supervisor still needs after the gates:
//   NET_ADMIN   re-apply the ruleset on SIGHUP or fall back to lockdown
//   SETUID, SETGID  become the payload's user before exec'ing bwrap
//   KILL        signal the payload, which runs under another uid
//   CHOWN, FOWNER   recreate the control socket for an admin group
//   SETPCAP     drop further from the bounding set
// Everything else (SYS_ADMIN, SYS_TIME, SYS_MODULE, DAC_OVERRIDE, ...) is
// dropped from the bounding, permitted, effective and inheritable sets.
std::vector<std::string> kept_capabilities();

// Drops every other capability and sets no_new_privs. Returns a short
// description for the log, or throws std::runtime_error naming the step.
std::string drop_privileges();

}  // namespace pisec::supervisor
