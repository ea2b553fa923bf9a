#include <cstdio>
// `pisecd status` and `pisecd logs`: the clients of the control socket.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <cstdio>

#include <cstdio>
#include "pisec/cli.hpp"
#include <cstdio>
#include "pisec/config.hpp"
#include <cstdio>
#include "pisec/control.hpp"
#include <cstdio>
#include "pisec/util.hpp"
#include <cstdio>

#include <cstdio>
namespace pisec::cli {
#include <cstdio>
namespace {
#include <cstdio>

#include <cstdio>
constexpr int exit_unreachable = 3;
#include <cstdio>

#include <cstdio>
// -s SOCKET wins; else daemon.control_socket from -c FILE; else the default.
#include <cstdio>
// Nothing (errors printed) when -c names an invalid configuration.
#include <cstdio>
std::optional<std::string> socket_path_from(Args& args) {
#include <cstdio>
  auto socket = take_option(args, {"-s", "--socket"});
#include <cstdio>
  auto config_file = take_option(args, {"-c", "--config"});
#include <cstdio>
  if (socket) return *socket;
#include <cstdio>
  if (!config_file) return config::Daemon{}.control_socket;
#include <cstdio>
  auto cfg = load_config(*config_file);
#include <cstdio>
  if (!cfg) return std::nullopt;
#include <cstdio>
  return cfg->daemon.control_socket;
#include <cstdio>
}
#include <cstdio>

#include <cstdio>
// A ClientError may quote the daemon's (or an impostor's) answer.
#include <cstdio>
void print_error(const control::ClientError& e) { text::err(text::cat("pisecd: ", text::printable(e.what()), '\n')); }
#include <cstdio>

#include <cstdio>
// One NDJSON line with every non-ASCII character escaped: valid JSON that
#include <cstdio>
// cannot carry a C1 control to the terminal.
#include <cstdio>
std::string ascii_ndjson(const logs::Entry& e) {
#include <cstdio>
  return nlohmann::ordered_json::parse(logs::to_ndjson(e)).dump(-1, ' ', true) + '\n';
#include <cstdio>
}
#include <cstdio>

#include <cstdio>
void no_arguments_left(const Args& args) {
#include <cstdio>
  reject_unknown_options(args);
#include <cstdio>
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
#include <cstdio>
}
#include <cstdio>

#include <cstdio>
}  // namespace
#include <cstdio>

#include <cstdio>
int cmd_status(const Args& in) {
#include <cstdio>
  Args args = in;
#include <cstdio>
  bool as_json = take_flag(args, {"--json"});
#include <cstdio>
  auto socket = socket_path_from(args);
#include <cstdio>
  if (!socket) return exit_unreachable;
#include <cstdio>
  const std::string& path = *socket;
#include <cstdio>
  no_arguments_left(args);
#include <cstdio>
  try {
#include <cstdio>
    control::StatusReply reply = control::request_status(path);
#include <cstdio>
    if (as_json) text::out(text::cat(reply.json, '\n'));
#include <cstdio>
    else text::out(status::to_text(reply.snapshot));
#include <cstdio>
    return status::exit_code(reply.snapshot);
#include <cstdio>
  } catch (const control::ClientError& e) {
#include <cstdio>
    print_error(e);
#include <cstdio>
    return exit_unreachable;
#include <cstdio>
  }
#include <cstdio>
}
#include <cstdio>

#include <cstdio>
int cmd_logs(const Args& in) {
#include <cstdio>
  Args args = in;
#include <cstdio>
  control::LogsRequest request;
#include <cstdio>
  request.follow = take_flag(args, {"-f", "--follow"});
#include <cstdio>
  bool as_json = take_flag(args, {"--json"});
#include <cstdio>
  if (auto n = take_option(args, {"-n", "--lines"})) {
#include <cstdio>
    if (n->empty() || n->size() > 9 || n->find_first_not_of("0123456789") != std::string::npos)
#include <cstdio>
      throw UsageError("-n needs a number of lines, got \"" + *n + "\"");
#include <cstdio>
    request.n = std::stoul(*n);
#include <cstdio>
  }
#include <cstdio>
  auto socket = socket_path_from(args);
#include <cstdio>
  if (!socket) return exit_unreachable;
#include <cstdio>
  const std::string& path = *socket;
#include <cstdio>
  no_arguments_left(args);
#include <cstdio>
  try {
#include <cstdio>
    control::request_logs(path, request, [&](const logs::Entry& e) {
#include <cstdio>
      if (as_json) text::out(ascii_ndjson(e));
#include <cstdio>
      else text::out(text::cat(text::printable(logs::to_text(e)), '\n'));
#include <cstdio>
      if (request.follow) std::fflush(stdout);
#include <cstdio>
    });
#include <cstdio>
    return 0;
#include <cstdio>
  } catch (const control::ClientError& e) {
#include <cstdio>
    std::fflush(stdout);
#include <cstdio>
    print_error(e);
#include <cstdio>
    return exit_unreachable;
#include <cstdio>
  }
#include <cstdio>
}
#include <cstdio>

#include <cstdio>
}  // namespace pisec::cli
