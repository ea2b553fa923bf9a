#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/daemon.hpp"

namespace pisec::cli {

int cmd_run(const Args& in) {
  Args args = in;
  std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  return daemon::run(path);
}

}  // namespace pisec::cli
