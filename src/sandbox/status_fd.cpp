// bwrap --json-status-fd: one JSON object per line. "child-pid" comes first
// (written before set-up finishes, #634); "exit-code" only when the sandboxed
// command really ran and exited, which is how bwrap's own failures are told
// apart from the payload's exit codes (#257).
#include <sys/wait.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "pisec/sandbox.hpp"

namespace pisec::sandbox {

namespace {

void parse_line(std::string_view line, std::vector<StatusEvent>& out) {
  auto first = line.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return;
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw std::runtime_error("bwrap status fd: not a JSON object: \"" + std::string(line) + "\"");
  auto number = [&j, line](const char* key) {
    const auto& v = j.at(key);
    if (!v.is_number_integer())
      throw std::runtime_error(std::string("bwrap status fd: \"") + key +
                               "\" is not an integer in \"" + std::string(line) + "\"");
    return v.get<long>();
  };
  if (j.contains("child-pid")) out.push_back({StatusEvent::Kind::child_pid, number("child-pid")});
  if (j.contains("exit-code")) out.push_back({StatusEvent::Kind::exit_code, number("exit-code")});
}

}  // namespace

std::vector<StatusEvent> StatusFdParser::feed(std::string_view bytes) {
  std::vector<StatusEvent> out;
  pending_.append(bytes);
  std::size_t start = 0;
  for (std::size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1)
    parse_line(std::string_view(pending_).substr(start, nl - start), out);
  pending_.erase(0, start);
  return out;
}

std::vector<StatusEvent> StatusFdParser::finish() {
  std::vector<StatusEvent> out;
  std::string rest;
  rest.swap(pending_);
  parse_line(rest, out);
  return out;
}

SandboxExit classify_exit(int status, std::optional<long> exit_code_record) {
  SandboxExit e;
  if (!exit_code_record) {
    // bwrap never reported the command's exit: it failed (or was killed)
    // before or during set-up, or was killed before it could write it.
    e.setup_failed = true;
    if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
    else if (WIFEXITED(status)) e.code = WEXITSTATUS(status);
    return e;
  }
  // bwrap reports a killed command as 128+signal, like a shell.
  long code = *exit_code_record;
  if (code > 128 && code < 128 + 65) e.signal = static_cast<int>(code - 128);
  else e.code = static_cast<int>(code);
  return e;
}

}  // namespace pisec::sandbox
