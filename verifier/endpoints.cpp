// POST /v1/challenge and POST /v1/evidence, pure over the store.
#include <openssl/rand.h>

#include <nlohmann/json.hpp>

#include "pisec/util.hpp"
#include "pisec/verifier.hpp"

namespace pisec::verifier {
namespace {

using json = nlohmann::json;
using attest::Status;

// `why` may quote bytes of the request (a parser's message): made valid
// UTF-8 first, or the JSON dump throws and a 400 becomes a 500.
Answer error_answer(int code, const std::string& why) {
  return {code, json{{"error", text::valid_utf8(why)}}.dump()};
}

// The nonce to echo in a refusal: the report's, read without trusting it
// (a contraindicated answer grants nothing, and lets the device match it).
std::string claimed(const std::string& text, const char* key) {
  json j = json::parse(text, nullptr, false);
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return {};
}

constexpr std::string_view differs_marker = ": sha256 expected ";

void compare(const std::string& what, const std::string& expected, const std::string& got,
             std::vector<std::string>& contra) {
  if (expected != got) contra.push_back(what + std::string(differs_marker) + expected + ", got " + got);
}

}  // namespace

std::optional<std::string> differing_measurement(std::string_view difference) {
  const auto at = difference.find(differs_marker);
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  return std::string(difference.substr(0, at));
}

Answer challenge(Store& store, const Settings& s, std::string_view body, std::int64_t now) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || j.size() != 1 || !j.contains("device_id") || !j["device_id"].is_string())
    return error_answer(400, "expected {\"device_id\": \"...\"}");
  const std::string id = j["device_id"].get<std::string>();
  if (!attest::valid_device_id(id)) return error_answer(400, "device_id: must be 1-64 characters of [A-Za-z0-9._-]");
  if (!store.device(id)) return error_answer(404, "unknown device");
  if (store.outstanding_nonces(id, now) >= s.max_outstanding_nonces)
    return error_answer(429, "too many outstanding nonces for this device");
  std::array<std::uint8_t, 32> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) return error_answer(500, "no randomness");
  const std::string nonce = crypto::to_hex(raw.data(), raw.size());
  const std::int64_t expires = now + s.nonce_ttl_s;
  store.add_nonce(nonce, id, expires, now);
  return {200, json{{"nonce", nonce}, {"expires_at", expires}}.dump()};
}

Answer evidence(Store& store, const Settings& s, std::string_view body, std::int64_t now) {
  attest::Envelope env;
  try {
    env = attest::parse_envelope(body, "report");
  } catch (const attest::Error& e) {
    return error_answer(400, e.what());  // not evidence at all: no decision to record
  }
  attest::Result res;
  res.verifier_id = s.verifier_id;
  res.iat = now;
  res.nonce = claimed(env.text, "nonce");
  if (!attest::valid_nonce(res.nonce)) res.nonce.clear();
  std::vector<std::string> contra, warn;
  std::string device_id = claimed(env.text, "device_id");
  if (!attest::valid_device_id(device_id)) device_id = "(unknown)";
  NonceUse use = NonceUse::none;
  Origin origin = Origin::unverified;  // until the enrolled key has checked the signature

  const auto dev = store.device_by_keynum(crypto::keynum_hex(env.signature.keynum));
  std::optional<attest::Report> report;
  if (!dev) {
    contra.push_back("report signed by a key not enrolled (keynum " + crypto::keynum_hex(env.signature.keynum) + ")");
  } else if (dev->revoked) {
    device_id = dev->id;
    contra.push_back("device " + dev->id + " is revoked");
    try {  // refused either way; checked only so the refusal is filed as the device's own word or not
      attest::check_signature(env, crypto::parse_public_key(dev->pubkey, "enrolled key of " + dev->id));
      origin = Origin::enrolled_key;
    } catch (const std::exception&) {
    }
  } else {
    device_id = dev->id;
    try {
      const auto key = crypto::parse_public_key(dev->pubkey, "enrolled key of " + dev->id);
      attest::check_signature(env, key);
      origin = Origin::enrolled_key;
      report = attest::parse_report(env.text);
    } catch (const std::exception& e) {
      contra.push_back(std::string("report refused: ") + e.what());
    }
    if (report && report->device_id != dev->id) {
      contra.push_back("report names device " + report->device_id + " but is signed by the key of " + dev->id);
      report.reset();
    }
  }
  if (report) {
    use = NonceUse::consume;  // the nonce inside the signed report
    res.nonce = report->nonce;
    const auto expected = store.expected(dev->id);
    for (const auto& [name, m] : report->measurements) {
      if (!m.path) continue;
      auto it = expected.find(*m.path);
      if (it == expected.end())
        warn.push_back(name + " (" + *m.path + "): not in the enrolled manifest");
      else
        compare(name + " (" + *m.path + ")", it->second, m.sha256, contra);
    }
    compare("manifest", dev->manifest_sha256, report->measurements.at("manifest").sha256, contra);
    if (dev->ruleset_sha256)
      compare("ruleset", *dev->ruleset_sha256, report->measurements.at("ruleset").sha256, contra);
    else
      warn.push_back("ruleset not enrolled");
    if (dev->config_sha256)
      compare("config", *dev->config_sha256, report->measurements.at("config").sha256, contra);
    else
      warn.push_back("config not enrolled");
    for (const auto& g : report->gates)
      if (g.status == "failed") warn.push_back("gate " + g.name + " failed");
  }
  Status status = !contra.empty() ? Status::contraindicated : !warn.empty() ? Status::warning : Status::affirming;
  std::vector<std::string> differences = contra;
  differences.insert(differences.end(), warn.begin(), warn.end());
  Decision d = store.record(device_id, res.nonce, use, now, status, std::move(differences), origin);
  res.status = *attest::parse_status(d.status);
  res.differences = d.differences;
  return {200, attest::seal_result(res, s.signing_key)};
}

}  // namespace pisec::verifier
