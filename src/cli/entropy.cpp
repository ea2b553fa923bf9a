// `pisecd entropy-check`: runs only the entropy gate, as the daemon would.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>

#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/gates/entropy.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

int cmd_entropy_check(const Args& in) {
  Args args = in;
  std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  std::optional<std::string> sysfs = take_option(args, {"--sysfs"});
  // For fake hwrng data on a real host: mix, but never claim credit for it.
  bool no_credit = take_flag(args, {"--no-credit"});
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());

  auto loaded = load_config(path);
  if (!loaded) return 1;
  const config::Config& cfg = *loaded;
  const auto& gate_cfg = cfg.gates.entropy;
  auto adapter = entropy::make_real_entropy_adapter();
  if (no_credit) adapter = entropy::make_no_credit_adapter(adapter);
  entropy::EntropyGateOptions options;
  if (sysfs) options.sysfs_root = *sysfs;

  boost::asio::io_context io;
  auto gate = entropy::make_entropy_gate(gate_cfg, adapter, options);
  std::optional<gates::Outcome> outcome;
  boost::asio::steady_timer timeout(io, std::chrono::seconds(gate_cfg.timeout_s));
  gate->start(io, [&](gates::Outcome o) {
    outcome = std::move(o);
    timeout.cancel();
  });
  timeout.async_wait([&](boost::system::error_code ec) {
    if (!ec) gate->cancel();
  });
  io.run();
  if (!outcome) {
    text::out(text::cat("entropy: failed: timed out after ", gate_cfg.timeout_s, " s\n"));
    return 1;
  }
  text::out(text::cat("entropy: ", (outcome->passed ? "passed" : "failed"), ": ", outcome->detail, '\n'));
  if (no_credit) text::out("entropy: --no-credit: everything was mixed in, nothing credited\n");
  return outcome->passed ? 0 : 1;
}

}  // namespace pisec::cli
