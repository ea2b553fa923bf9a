// `pisecd clock-check`: run only the clock gate, never setting the clock.
// For operators ("would this box get a good time?") and the integration test.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/gates/clock.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

int cmd_clock_check(const Args& in) {
  Args args = in;
  std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  auto loaded = load_config(path);
  if (!loaded) return 1;
  const config::Config& cfg = *loaded;
  config::ClockGate gate_config = cfg.gates.clock;
  gate_config.set_clock = false;  // a check only: never step the clock, never write the state file

  boost::asio::io_context io;
  auto result = std::make_shared<clock::GateResult>();
  auto gate = clock::make_clock_gate(gate_config, 0, clock::system_clock(), result);
  std::optional<gates::Outcome> outcome;
  // The same bound the daemon's runner puts on the gate.
  boost::asio::steady_timer timeout(io, std::chrono::seconds(gate_config.timeout_s));
  timeout.async_wait([&](boost::system::error_code ec) {
    if (ec) return;
    gate->cancel();
    outcome = gates::Outcome{false, "timed out after " + std::to_string(gate_config.timeout_s) + " s"};
  });
  gate->start(io, [&](gates::Outcome o) {
    timeout.cancel();
    outcome = std::move(o);
  });
  io.run();
  if (!outcome) outcome = gates::Outcome{false, "no outcome"};
  text::out(text::cat("clock: ", (outcome->passed ? "passed" : "failed"), ": ", outcome->detail, '\n'));
  return outcome->passed ? 0 : 1;
}

}  // namespace pisec::cli
