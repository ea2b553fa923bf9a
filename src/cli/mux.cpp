// `pisecd mux` (the process the daemon supervises) and `pisecd mux-token`.
#include <openssl/rand.h>


#include "pisec/cli.hpp"
#include "pisec/formats.hpp"
#include "pisec/mux.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

// -c FILE reads [mux] from a configuration; --flags (as mux::to_args writes
// them, which is how the daemon starts it) set or override single keys.
int cmd_mux(const Args& in) {
  Args args = in;
  auto config_file = take_option(args, {"-c", "--config"});
  config::Mux settings;
  std::string source = "command line";
  if (config_file) {
    auto cfg = load_config(*config_file);
    if (!cfg) return 1;
    settings = cfg->mux;
    source = cfg->source_path;
  }
  mux::Options options;
  try {
    mux::apply_args(args, settings);
    options = mux::Options::from_config(settings);
  } catch (const std::invalid_argument& e) {
    text::err(text::cat("pisecd mux: ", source, ": ", e.what(), '\n'));
    return 1;
  }
  return mux::run(options);
}

int cmd_mux_token(const Args& in) {
  Args args = in;
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    text::err("pisecd mux-token: no randomness available\n");
    return 1;
  }
  const std::string token = crypto::to_hex(raw, sizeof raw);
  const auto digest = crypto::sha256(token);
  text::out(text::cat("token: ", token, "\n", "# in pisecd.toml, [mux]:\n", "token_sha256 = \"", crypto::to_hex(digest.data(), digest.size()), "\"\n"));
  return 0;
}

}  // namespace pisec::cli
