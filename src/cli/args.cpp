
#include <openssl/crypto.h>

#include "pisec/cli.hpp"
#include "pisec/config.hpp"
#include "pisec/version.hpp"
#include "pisec/util.hpp"

namespace pisec::cli {

std::optional<std::string> take_option(Args& args, std::initializer_list<const char*> names) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == "--") break;
    for (const char* name : names) {
      if (*it != name) continue;
      if (std::next(it) == args.end()) throw UsageError(std::string(name) + " needs a value");
      std::string value = *std::next(it);
      args.erase(it, it + 2);
      return value;
    }
  }
  return std::nullopt;
}

bool take_flag(Args& args, std::initializer_list<const char*> names) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == "--") break;
    for (const char* name : names) {
      if (*it == name) {
        args.erase(it);
        return true;
      }
    }
  }
  return false;
}

void reject_unknown_options(const Args& args) {
  for (const auto& a : args) {
    if (a == "--") return;
    if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option " + a);
  }
}

std::optional<config::Config> load_config(const std::string& path) {
  try {
    return config::load_file(path);
  } catch (const config::LoadError& e) {
    for (const auto& err : e.errors()) text::err(text::cat(err.to_string(), '\n'));
    return std::nullopt;
  }
}

int cmd_version(const Args&) {
  text::out(text::cat("pisecd ", build::version, " (", build::git_revision, ")\n", "clock floor: ", build::clock_floor_unix, " (unix seconds)\n", "openssl: ", OpenSSL_version(OPENSSL_VERSION), '\n'));
  return 0;
}

int cmd_check_config(const Args& in) {
  Args args = in;
  std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  try {
    // Nothing beyond the loader: run and SIGHUP reload call exactly this.
    config::load_file(path);
  } catch (const config::LoadError& e) {
    for (const auto& err : e.errors()) text::err(text::cat(err.to_string(), '\n'));
    text::err(text::cat(path, ": ", e.errors().size(), " error(s)\n"));
    return 1;
  }
  text::out(text::cat(path, ": OK\n"));
  return 0;
}

}  // namespace pisec::cli
