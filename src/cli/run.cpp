
#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/boot.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

int cmd_run(const Args& in) {
  Args args = in;
  std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  auto cfg = load_config(path);
  if (!cfg) {
    text::err("pisecd: refusing to start with an invalid configuration\n");
    return 1;
  }
  return daemon::run(std::move(*cfg));
}

}  // namespace pisec::cli
