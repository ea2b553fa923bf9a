// `pisecd attest [-c FILE] [--json] [--ruleset DIGEST] [--gate NAME=STATUS]...`:
// one attestation, now. Measures the boot files
// ([attestation] measure), the payload, this pisecd binary, the service
// ruleset as rendered from the configuration, the configuration file and the
// signed manifest; asks the verifier for a nonce; sends the signed report over
// HTTPS (attestation.ca_file pinned, host name checked); checks the answer's
// signature (attestation.verifier_key) and nonce; prints the verdict.
// Exit: 0 affirming, 1 warning, 2 contraindicated, 3 no answer (or nothing
// to send: a key, file or setting missing).
//
// The daemon runs it as a child for each round (src/boot/attester.cpp) with
// what only it knows: --ruleset, the digest of the ruleset the kernel holds
// as read back ("none" when none is applied), and --gate, how each gate
// ended. --json prints one object for it: {"verdict", "verifier_id",
// "differences", "detail"}.
#include <fcntl.h>
#include <unistd.h>

#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <chrono>
#include <climits>
#include <filesystem>
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <vector>

#include "pisec/attest_client.hpp"
#include "pisec/cli.hpp"
#include "pisec/firewall.hpp"
#include "pisec/formats.hpp"
#include "pisec/gates/clock.hpp"
#include "pisec/supervisor.hpp"
#include "pisec/util.hpp"
#include "pisec/version.hpp"

namespace pisec::cli {

namespace {

namespace fs = std::filesystem;

std::string hex(const crypto::Sha256& h) { return crypto::to_hex(h.data(), h.size()); }

// The path as the release manifest lists it: relative to the integrity root
// when under it, otherwise the absolute path without its leading '/'.
std::string manifest_path(const std::string& root, const std::string& path) {
  const fs::path rel = fs::path(path).lexically_relative(fs::path(root));
  const std::string r = rel.string();
  if (!r.empty() && r != "." && r.rfind("..", 0) != 0) return r;
  return fs::path(path).relative_path().string();
}

attest::Measurement file_measurement(const std::string& root, const std::string& path) {
  return {manifest_path(root, path), hex(crypto::sha256_file(path))};
}

// What the daemon knows that the configuration file cannot tell.
struct Facts {
  std::optional<std::string> ruleset;  // hex digest of the applied ruleset
  std::vector<attest::Gate> gates;
};

attest::Report measure(const config::Config& cfg, const std::string& device_id, const Facts& facts) {
  const auto& a = cfg.attestation;
  const std::string& root = cfg.gates.integrity.root;
  attest::Report r;
  r.device_id = device_id;
  r.issued_at =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  r.pisecd_version = build::version;
  try {
    r.boot_id = crypto::read_small_file("/proc/sys/kernel/random/boot_id", 256);
    while (!r.boot_id.empty() && r.boot_id.back() == '\n') r.boot_id.pop_back();
  } catch (const crypto::Error&) {
    r.boot_id = "unknown";
  }
  for (const char* name : {"kernel", "initramfs", "apkovl"}) {
    auto it = a.measure.find(name);
    if (it == a.measure.end()) throw std::runtime_error(std::string("attestation.measure.") + name + " is not set");
    r.measurements[name] = file_measurement(root, it->second);
  }
  if (cfg.payload.command.empty()) throw std::runtime_error("payload.command is empty: no payload to measure");
  r.measurements["payload"] = file_measurement(root, cfg.payload.rootfs + cfg.payload.command.front());
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("/proc/self/exe: " + ec.message());
  // The running binary itself: /proc/self/exe is a magic link to the executed
  // inode (even if the file was replaced since); sha256_file refuses links,
  // so it is opened here, following it, and hashed through the descriptor.
  util::UniqueFd exe(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (exe.get() < 0) throw std::runtime_error("/proc/self/exe: cannot be opened");
  r.measurements["pisecd"] = {manifest_path(root, self.string()), hex(crypto::sha256_fd(exe.get(), "/proc/self/exe"))};
  // The applied ruleset as the daemon read it back; run by hand, the service
  // ruleset as `pisecd firewall render` prints it.
  std::string ruleset = facts.ruleset ? *facts.ruleset
                                      : firewall::digest(firewall::build_service_ruleset(cfg.firewall, cfg.payload.uid));
  if (ruleset.rfind("sha256:", 0) == 0) ruleset.erase(0, 7);
  r.measurements["ruleset"] = {std::nullopt, ruleset};
  r.gates = facts.gates;
  r.measurements["config"] = {std::nullopt, hex(crypto::sha256_file(cfg.source_path))};
  r.measurements["manifest"] = {std::nullopt, hex(crypto::sha256_file(cfg.gates.integrity.manifest))};
  return r;
}

// The verifier's address, resolved with c-ares as the clock gate does
// (pisecd is a static glibc binary on musl: getaddrinfo has no NSS there).
std::string resolve(const std::string& host) {
  boost::asio::io_context io;
  clock::Resolver resolver(io);
  std::vector<std::string> addresses;
  std::string error = "no answer";
  resolver.resolve(host, [&](std::vector<std::string> a, std::string e) {
    addresses = std::move(a);
    error = std::move(e);
  });
  io.run_for(std::chrono::seconds(10));
  if (addresses.empty()) throw attest::NoAnswer("cannot resolve " + host + ": " + error);
  return addresses.front();
}

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

// --ruleset: "sha256:<hex>" or "<hex>", or "none" (nothing applied: the
// digest of no bytes, which no enrolled ruleset has).
std::string parse_ruleset_option(const std::string& v) {
  if (v == "none") return hex(crypto::sha256(std::string_view{}));
  std::string h = v.rfind("sha256:", 0) == 0 ? v.substr(7) : v;
  if (!attest::valid_sha256_hex(h)) throw UsageError("--ruleset wants sha256:<64 hex digits> or none, not " + v);
  return h;
}

// --gate NAME=STATUS, in the daemon's words (status: pending|running|passed|failed|skipped).
attest::Gate parse_gate_option(const std::string& v) {
  const auto eq = v.find('=');
  if (eq == 0 || eq == std::string::npos || eq + 1 == v.size() || v.size() > 64)
    throw UsageError("--gate wants NAME=STATUS, not " + v);
  for (char c : v)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '=' || c == '_' || c == '-'))
      throw UsageError("--gate wants NAME=STATUS of letters, digits, '_' and '-', not " + v);
  return {v.substr(0, eq), v.substr(eq + 1)};
}

void print_json(const std::string& verdict, const attest::Result* result, const std::string& detail) {
  nlohmann::json j = {{"verdict", verdict},
                      {"verifier_id", result ? result->verifier_id : ""},
                      {"differences", result ? result->differences : std::vector<std::string>{}},
                      {"detail", detail}};
  text::out(text::cat(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), '\n')); std::fflush(stdout);
}

}  // namespace

int cmd_attest(const Args& in) {
  Args args = in;
  const std::string path = take_option(args, {"-c", "--config"}).value_or(config::default_path);
  const bool json = take_flag(args, {"--json"});
  Facts facts;
  if (auto r = take_option(args, {"--ruleset"})) facts.ruleset = parse_ruleset_option(*r);
  while (auto g = take_option(args, {"--gate"})) facts.gates.push_back(parse_gate_option(*g));
  reject_unknown_options(args);
  if (!args.empty()) throw UsageError("unexpected argument " + args.front());
  // Nothing to send: "no answer" (3), told the way the caller reads it.
  const auto nothing = [json](const std::string& why) {
    if (json) print_json("no_answer", nullptr, why);
    else text::err(text::cat("pisecd attest: ", why, '\n'));
    return 3;
  };
  // It reads root's files as their owner and opens one outgoing connection:
  // no capability serves that, and the TLS exchange with an outside server
  // should hold none (the daemon that runs it keeps a few).
  try {
    supervisor::drop_all_capabilities();
  } catch (const std::exception& e) {
    return nothing(e.what());
  }
  auto loaded = load_config(path);
  if (!loaded) return nothing("the configuration " + path + " does not load");
  const config::Config& cfg = *loaded;
  const auto& a = cfg.attestation;
  if (a.verifier_url.empty() || a.device_key.empty() || a.verifier_key.empty())
    return nothing("attestation.verifier_url, device_key and verifier_key must be set");
  const std::string device_id = a.device_id.empty() ? host_name() : a.device_id;
  attest::Result result;
  try {
    const auto key = crypto::parse_secret_key(crypto::read_small_file(a.device_key, 4096), a.device_key);
    const auto verifier = crypto::parse_public_key(crypto::read_small_file(a.verifier_key, 4096), a.verifier_key);
    attest::Report report = measure(cfg, device_id, facts);
    const attest::Url url = attest::parse_https_url(a.verifier_url);
    attest::Client client(url, a.ca_file, std::chrono::seconds(15), resolve(url.host));
    report.nonce = client.challenge(device_id);
    result = client.evidence(attest::seal_report(report, key), report.nonce, verifier);
  } catch (const attest::NoAnswer& e) {
    if (json) print_json("no_answer", nullptr, e.what());
    else text::out(text::cat("attestation: no answer (", e.what(), ")\n"));
    return 3;
  } catch (const std::exception& e) {
    return nothing(e.what());
  }
  if (json) {
    print_json(std::string(attest::status_name(result.status)), &result, "");
  } else {
    text::out(text::cat("attestation: ", attest::status_name(result.status), " (", result.verifier_id, ")\n"));
    for (const auto& d : result.differences) text::out(text::cat("  ", d, '\n'));
  }
  switch (result.status) {
    case attest::Status::affirming: return 0;
    case attest::Status::warning: return 1;
    case attest::Status::contraindicated: return 2;
  }
  return 2;
}

}  // namespace pisec::cli
