// `pisecd firewall render|apply|verify`: the operator's view of the firewall.

#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/firewall.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

namespace {

int print_result(const firewall::ApplyResult& r, const char* what) {
  if (!r.verified) {
    text::err(text::cat("pisecd firewall: ", what, " FAILED: ", r.error, '\n'));
    for (std::size_t i = 1; i < r.differences.size(); ++i) text::err(text::cat("  ", r.differences[i], '\n'));
    return 1;
  }
  text::out(text::cat(what, ": verified ", r.digest, '\n'));
  return 0;
}

}  // namespace

int cmd_firewall(const Args& in) {
  Args args = in;
  if (args.empty()) throw UsageError("missing action (render, apply or verify)");
  std::string action = args.front();
  args.erase(args.begin());
  std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  bool lockdown = take_flag(args, {"--lockdown"});
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  if (action != "render" && action != "apply" && action != "verify")
    throw UsageError("unknown action \"" + action + "\"");

  auto loaded = load_config(path);
  if (!loaded) return 1;
  const config::Config& cfg = *loaded;
  const auto rs = lockdown ? firewall::build_lockdown_ruleset(cfg.firewall)
                           : firewall::build_service_ruleset(cfg.firewall, cfg.payload.uid);
  if (action == "render") {
    text::out(firewall::render_nft(rs));
    return 0;
  }
  if (action == "verify") return print_result(firewall::verify(rs), lockdown ? "lockdown ruleset" : "service ruleset");
  return print_result(firewall::apply(rs), lockdown ? "lockdown ruleset" : "service ruleset");
}

}  // namespace pisec::cli
