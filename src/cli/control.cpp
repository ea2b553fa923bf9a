// `pisecd status` and `pisecd logs`: the clients of the control socket.
#include <iostream>
#include <nlohmann/json.hpp>

#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/control.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {
namespace {

constexpr int exit_unreachable = 3;

// -s SOCKET wins; else daemon.control_socket from -c FILE; else the default.
// Nothing (errors printed) when -c names an invalid configuration.
std::optional<std::string> socket_path_from(Args& args) {
  auto socket = take_option(args, {"-s", "--socket"});
  auto config_file = take_option(args, {"-c", "--config"});
  if (socket) return *socket;
  if (!config_file) return config::Daemon{}.control_socket;
  auto cfg = load_config(*config_file);
  if (!cfg) return std::nullopt;
  return cfg->daemon.control_socket;
}

// A ClientError may quote the daemon's (or an impostor's) answer.
void print_error(const control::ClientError& e) { std::cerr << "pisecd: " << text::printable(e.what()) << '\n'; }

// One NDJSON line with every non-ASCII character escaped: valid JSON that
// cannot carry a C1 control to the terminal.
std::string ascii_ndjson(const logs::Entry& e) {
  return nlohmann::ordered_json::parse(logs::to_ndjson(e)).dump(-1, ' ', true) + '\n';
}

void no_arguments_left(const Args& args) {
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
}

}  // namespace

int cmd_status(const Args& in) {
  Args args = in;
  bool as_json = take_flag(args, {"--json"});
  auto socket = socket_path_from(args);
  if (!socket) return exit_unreachable;
  const std::string& path = *socket;
  no_arguments_left(args);
  try {
    control::StatusReply reply = control::request_status(path);
    if (as_json) std::cout << reply.json << '\n';
    else std::cout << status::to_text(reply.snapshot);
    return status::exit_code(reply.snapshot);
  } catch (const control::ClientError& e) {
    print_error(e);
    return exit_unreachable;
  }
}

int cmd_logs(const Args& in) {
  Args args = in;
  control::LogsRequest request;
  request.follow = take_flag(args, {"-f", "--follow"});
  bool as_json = take_flag(args, {"--json"});
  if (auto n = take_option(args, {"-n", "--lines"})) {
    if (n->empty() || n->size() > 9 || n->find_first_not_of("0123456789") != std::string::npos)
      throw UsageError("-n needs a number of lines, got \"" + *n + "\"");
    request.n = std::stoul(*n);
  }
  auto socket = socket_path_from(args);
  if (!socket) return exit_unreachable;
  const std::string& path = *socket;
  no_arguments_left(args);
  try {
    control::request_logs(path, request, [&](const logs::Entry& e) {
      if (as_json) std::cout << ascii_ndjson(e);
      else std::cout << text::printable(logs::to_text(e)) << '\n';
      if (request.follow) std::cout.flush();
    });
    return 0;
  } catch (const control::ClientError& e) {
    std::cout.flush();
    print_error(e);
    return exit_unreachable;
  }
}

}  // namespace pisec::cli
