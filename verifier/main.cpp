// pisec-verifier: enroll, revoke, list, log verify, serve.
#include <chrono>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "pisec/verifier.hpp"

namespace v = pisec::verifier;
namespace c = pisec::crypto;

namespace {

constexpr const char* usage =
    "usage: pisec-verifier enroll --db DB --device-id ID --pubkey FILE --expect MANIFEST\n"
    "                             [--expect-signature SIG --release-key PUB]\n"
    "                             [--expect-ruleset SHA256] [--expect-config SHA256]\n"
    "       pisec-verifier revoke --db DB --device-id ID\n"
    "       pisec-verifier list --db DB\n"
    "       pisec-verifier log verify --db DB\n"
    "       pisec-verifier serve --db DB --listen ADDR:PORT --cert PEM --key PEM --signing-key SIGNIFY_SEC\n"
    "                            [--nonce-ttl-s 60] [--verifier-id NAME] [--admin-token-file FILE]\n";

struct Usage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --name value pairs; every name must be in `allowed`.
std::map<std::string, std::string> options(int argc, char** argv, int from, std::initializer_list<const char*> allowed) {
  std::map<std::string, std::string> out;
  for (int i = from; i < argc; i += 2) {
    std::string name = argv[i];
    bool known = false;
    for (const char* a : allowed) known = known || name == a;
    if (!known) throw Usage("unknown option " + name);
    if (i + 1 >= argc) throw Usage(name + " needs a value");
    out[name] = argv[i + 1];
  }
  return out;
}

std::string need(const std::map<std::string, std::string>& o, const std::string& name) {
  auto it = o.find(name);
  if (it == o.end()) throw Usage(name + " is required");
  return it->second;
}

std::optional<std::string> digest_option(const std::map<std::string, std::string>& o, const std::string& name) {
  auto it = o.find(name);
  if (it == o.end()) return std::nullopt;
  if (!pisec::attest::valid_sha256_hex(it->second)) throw Usage(name + " must be 64 lower-case hex digits");
  return it->second;
}

std::int64_t now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int enroll(const std::map<std::string, std::string>& o) {
  v::Device d;
  d.id = need(o, "--device-id");
  if (!pisec::attest::valid_device_id(d.id)) throw Usage("--device-id must be 1-64 characters of [A-Za-z0-9._-]");
  const std::string pub_path = need(o, "--pubkey");
  d.pubkey = c::read_small_file(pub_path, 4096);
  d.keynum = c::keynum_hex(c::parse_public_key(d.pubkey, pub_path).keynum);
  const std::string manifest_path = need(o, "--expect");
  const std::string manifest_text = c::read_small_file(manifest_path);
  c::Manifest m;
  if (o.contains("--expect-signature") || o.contains("--release-key"))
    m = c::load_signed_manifest(manifest_path, need(o, "--expect-signature"), need(o, "--release-key")).manifest;
  else
    m = c::parse_manifest(manifest_text, manifest_path);
  const auto h = c::sha256(manifest_text);
  d.manifest_sha256 = c::to_hex(h.data(), h.size());
  d.ruleset_sha256 = digest_option(o, "--expect-ruleset");
  d.config_sha256 = digest_option(o, "--expect-config");
  d.enrolled_at = now();
  std::map<std::string, std::string> expected;
  for (const auto& e : m.entries) expected[e.path] = c::to_hex(e.hash.data(), e.hash.size());
  v::Store store(need(o, "--db"));
  store.enroll(d, expected);
  std::cout << "enrolled " << d.id << " (key " << d.keynum << ", " << expected.size() << " files, manifest "
            << d.manifest_sha256.substr(0, 12) << ")\n";
  return 0;
}

int list(v::Store& store) {
  std::map<std::string, v::Decision> last;
  for (auto& d : store.last_authenticated()) last[d.device_id] = d;  // never a forged report's verdict
  for (const auto& d : store.devices()) {
    std::cout << d.id << "\tkey " << d.keynum << (d.revoked ? "\trevoked" : "\tenrolled") << "\tmanifest "
              << d.manifest_sha256.substr(0, 12);
    if (auto it = last.find(d.id); it != last.end())
      std::cout << "\tlast " << it->second.status << " at " << it->second.at;
    std::cout << '\n';
  }
  return 0;
}

int log_verify(v::Store& store) {
  const auto problems = store.verify_log();
  for (const auto& p : problems) std::cout << "log: " << p << '\n';
  if (!problems.empty()) return 1;
  std::cout << "log: " << store.decisions().size() << " entries, chain intact\n";
  return 0;
}

int serve(const std::map<std::string, std::string>& o) {
  v::ServeOptions s;
  s.db = need(o, "--db");
  const std::string listen = need(o, "--listen");
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw Usage("--listen must be ADDR:PORT");
  s.listen_host = listen.substr(0, colon);
  if (s.listen_host.size() > 2 && s.listen_host.front() == '[') s.listen_host = s.listen_host.substr(1, s.listen_host.size() - 2);
  const int port = std::stoi(listen.substr(colon + 1));
  if (port < 0 || port > 65535) throw Usage("--listen: bad port");
  s.listen_port = static_cast<std::uint16_t>(port);
  s.cert_file = need(o, "--cert");
  s.key_file = need(o, "--key");
  const std::string sec = need(o, "--signing-key");
  s.settings.signing_key = c::parse_secret_key(c::read_small_file(sec, 4096), sec);
  if (o.contains("--nonce-ttl-s")) s.settings.nonce_ttl_s = std::stoll(o.at("--nonce-ttl-s"));
  if (s.settings.nonce_ttl_s < 1 || s.settings.nonce_ttl_s > 3600) throw Usage("--nonce-ttl-s must be 1..3600");
  if (o.contains("--verifier-id")) s.settings.verifier_id = o.at("--verifier-id");
  if (o.contains("--admin-token-file")) s.settings.admin_token = v::load_admin_token(o.at("--admin-token-file"));
  return v::serve(s);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "enroll")
      return enroll(options(argc, argv, 2,
                           {"--db", "--device-id", "--pubkey", "--expect", "--expect-signature", "--release-key",
                            "--expect-ruleset", "--expect-config"}));
    if (cmd == "revoke") {
      auto o = options(argc, argv, 2, {"--db", "--device-id"});
      v::Store store(need(o, "--db"));
      if (!store.revoke(need(o, "--device-id"))) {
        std::cerr << "pisec-verifier: no such device " << o["--device-id"] << '\n';
        return 1;
      }
      std::cout << "revoked " << o["--device-id"] << '\n';
      return 0;
    }
    if (cmd == "list") {
      auto o = options(argc, argv, 2, {"--db"});
      v::Store store(need(o, "--db"));
      return list(store);
    }
    if (cmd == "log" && argc > 2 && std::string(argv[2]) == "verify") {
      auto o = options(argc, argv, 3, {"--db"});
      v::Store store(need(o, "--db"));
      return log_verify(store);
    }
    if (cmd == "serve")
      return serve(options(argc, argv, 2,
                           {"--db", "--listen", "--cert", "--key", "--signing-key", "--nonce-ttl-s", "--verifier-id",
                            "--admin-token-file"}));
    std::cerr << usage;
    return 2;
  } catch (const Usage& e) {
    std::cerr << "pisec-verifier: " << e.what() << '\n' << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "pisec-verifier: " << e.what() << '\n';
    return 1;
  }
}
