// The attestation report, result and envelopes (include/pisec/attest.hpp).
#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "pisec/attest.hpp"

namespace pisec::attest {
namespace {

using json = nlohmann::json;

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

[[noreturn]] void fail(std::string_view what, std::string_view field, std::string_view why) {
  throw Error(std::string(what) + ": " + std::string(field) + ": " + std::string(why));
}

// Parses `text` as one JSON object that is exactly its own canonical dump.
json parse_canonical(std::string_view text, std::string_view what) {
  if (text.size() > max_envelope_bytes) fail(what, "(text)", "larger than " + std::to_string(max_envelope_bytes) + " bytes");
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) fail(what, "(text)", "not valid JSON");
  if (!j.is_object()) fail(what, "(text)", "not a JSON object");
  std::string again;
  try {
    again = j.dump();
  } catch (const json::exception&) {
    fail(what, "(text)", "not valid UTF-8");
  }
  if (again != text) fail(what, "(text)", "not canonical JSON (keys sorted, no whitespace, one spelling)");
  return j;
}

// Refuses any key of `obj` not in `allowed`, and any missing one.
void exact_keys(const json& obj, std::initializer_list<std::string_view> allowed, std::string_view what,
                std::string_view prefix) {
  for (const auto& [k, v] : obj.items())
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      fail(what, std::string(prefix) + k, "unknown field");
  for (std::string_view k : allowed)
    if (!obj.contains(k)) fail(what, std::string(prefix) + std::string(k), "missing");
}

std::string get_string(const json& obj, std::string_view key, std::string_view what, std::string_view prefix = {}) {
  const json& v = obj.at(key);
  if (!v.is_string()) fail(what, std::string(prefix) + std::string(key), "must be a string");
  return v.get<std::string>();
}

std::int64_t get_time(const json& obj, std::string_view key, std::string_view what) {
  const json& v = obj.at(key);
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      fail(what, key, "out of range");
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer()) fail(what, key, "must not be negative");
  fail(what, key, "must be an integer (unix seconds)");
}

constexpr std::string_view report_what = "report";
constexpr std::string_view result_what = "result";

void check_report(const Report& r) {
  if (!valid_device_id(r.device_id)) fail(report_what, "device_id", "must be 1-64 characters of [A-Za-z0-9._-]");
  if (!valid_nonce(r.nonce))
    fail(report_what, "nonce",
         "must be " + std::to_string(min_nonce_hex) + "-" + std::to_string(max_nonce_hex) + " lower-case hex digits");
  if (r.issued_at < 0) fail(report_what, "issued_at", "must not be negative");
  for (std::string_view name : measurement_names)
    if (!r.measurements.contains(std::string(name)))
      fail(report_what, "measurements." + std::string(name), "missing");
  for (const auto& [name, m] : r.measurements) {
    const std::string field = "measurements." + name;
    if (std::find(measurement_names.begin(), measurement_names.end(), name) == measurement_names.end())
      fail(report_what, field, "unknown measurement");
    if (!valid_sha256_hex(m.sha256)) fail(report_what, field + ".sha256", "must be 64 lower-case hex digits");
    if (measurement_has_path(name)) {
      if (!m.path) fail(report_what, field + ".path", "missing");
      if (auto why = crypto::manifest_path_problem(*m.path); !why.empty())
        fail(report_what, field + ".path", why);
    } else if (m.path) {
      fail(report_what, field + ".path", "unknown field (no path for " + name + ")");
    }
  }
  for (std::size_t i = 0; i < r.gates.size(); ++i)
    if (r.gates[i].name.empty()) fail(report_what, "gates[" + std::to_string(i) + "].name", "empty");
}

void check_result(const Result& r) {
  if (r.verifier_id.empty()) fail(result_what, "ear.verifier-id", "empty");
  if (r.iat < 0) fail(result_what, "iat", "must not be negative");
}

}  // namespace

bool measurement_has_path(std::string_view name) {
  return name != "ruleset" && name != "config" && name != "manifest";
}

std::string_view status_name(Status s) {
  switch (s) {
    case Status::affirming: return "affirming";
    case Status::warning: return "warning";
    case Status::contraindicated: return "contraindicated";
  }
  return "contraindicated";
}

std::optional<Status> parse_status(std::string_view name) {
  for (Status s : {Status::affirming, Status::warning, Status::contraindicated})
    if (status_name(s) == name) return s;
  return std::nullopt;
}

bool valid_device_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

bool valid_nonce(std::string_view nonce) {
  return nonce.size() >= min_nonce_hex && nonce.size() <= max_nonce_hex && nonce.size() % 2 == 0 &&
         std::all_of(nonce.begin(), nonce.end(), is_lower_hex);
}

bool valid_sha256_hex(std::string_view hex) {
  return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), is_lower_hex);
}

std::string to_json(const Report& r) {
  check_report(r);
  json measurements = json::object();
  for (const auto& [name, m] : r.measurements) {
    // On the wire "sha256:<hex>", as PRODUCT.md pins the measurements.
    json e = {{"sha256", "sha256:" + m.sha256}};
    if (m.path) e["path"] = *m.path;
    measurements[name] = std::move(e);
  }
  json gates = json::array();
  for (const auto& g : r.gates) gates.push_back({{"name", g.name}, {"status", g.status}});
  json j = {{"device_id", r.device_id}, {"boot_id", r.boot_id},
            {"nonce", r.nonce},         {"issued_at", r.issued_at},
            {"pisecd_version", r.pisecd_version}, {"measurements", std::move(measurements)},
            {"gates", std::move(gates)}};
  try {
    return j.dump();
  } catch (const json::exception&) {
    throw Error("report: a string field is not valid UTF-8");
  }
}

std::string to_json(const Result& r) {
  check_result(r);
  json j = {{"ear.status", status_name(r.status)}, {"ear.verifier-id", r.verifier_id}, {"iat", r.iat},
            {"nonce", r.nonce}, {"differences", r.differences}};
  try {
    return j.dump();
  } catch (const json::exception&) {
    throw Error("result: a string field is not valid UTF-8");
  }
}

Report parse_report(std::string_view text) {
  const auto w = report_what;
  json j = parse_canonical(text, w);
  exact_keys(j, {"device_id", "boot_id", "nonce", "issued_at", "pisecd_version", "measurements", "gates"}, w, "");
  Report r;
  r.device_id = get_string(j, "device_id", w);
  r.boot_id = get_string(j, "boot_id", w);
  r.nonce = get_string(j, "nonce", w);
  r.issued_at = get_time(j, "issued_at", w);
  r.pisecd_version = get_string(j, "pisecd_version", w);
  const json& ms = j.at("measurements");
  if (!ms.is_object()) fail(w, "measurements", "must be an object");
  for (const auto& [name, m] : ms.items()) {
    const std::string field = "measurements." + name;
    if (!m.is_object()) fail(w, field, "must be an object");
    const bool has_path = measurement_has_path(name);
    if (has_path && m.contains("path"))
      exact_keys(m, {"path", "sha256"}, w, field + ".");
    else
      exact_keys(m, {"sha256"}, w, field + ".");
    Measurement out;
    out.sha256 = get_string(m, "sha256", w, field + ".");
    if (out.sha256.rfind("sha256:", 0) != 0) fail(w, field + ".sha256", "must be \"sha256:\" and 64 lower-case hex digits");
    out.sha256.erase(0, 7);
    if (m.contains("path")) out.path = get_string(m, "path", w, field + ".");
    r.measurements.emplace(name, std::move(out));
  }
  const json& gs = j.at("gates");
  if (!gs.is_array()) fail(w, "gates", "must be an array");
  for (std::size_t i = 0; i < gs.size(); ++i) {
    const std::string field = "gates[" + std::to_string(i) + "]";
    if (!gs[i].is_object()) fail(w, field, "must be an object");
    exact_keys(gs[i], {"name", "status"}, w, field + ".");
    r.gates.push_back({get_string(gs[i], "name", w, field + "."), get_string(gs[i], "status", w, field + ".")});
  }
  check_report(r);
  return r;
}

Result parse_result(std::string_view text) {
  const auto w = result_what;
  json j = parse_canonical(text, w);
  exact_keys(j, {"ear.status", "ear.verifier-id", "iat", "nonce", "differences"}, w, "");
  Result r;
  auto st = parse_status(get_string(j, "ear.status", w));
  if (!st) fail(w, "ear.status", "must be affirming, warning or contraindicated");
  r.status = *st;
  r.verifier_id = get_string(j, "ear.verifier-id", w);
  r.iat = get_time(j, "iat", w);
  r.nonce = get_string(j, "nonce", w);
  const json& ds = j.at("differences");
  if (!ds.is_array()) fail(w, "differences", "must be an array");
  for (std::size_t i = 0; i < ds.size(); ++i) {
    if (!ds[i].is_string()) fail(w, "differences[" + std::to_string(i) + "]", "must be a string");
    r.differences.push_back(ds[i].get<std::string>());
  }
  check_result(r);
  return r;
}

Envelope parse_envelope(std::string_view wire, std::string_view body_key) {
  const std::string what = std::string(body_key) + " envelope";
  if (wire.size() > max_envelope_bytes)
    fail(what, "(text)", "larger than " + std::to_string(max_envelope_bytes) + " bytes");
  json j = json::parse(wire, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(what, "(text)", "not a JSON object");
  exact_keys(j, {body_key, "signature"}, what, "");
  Envelope e;
  e.text = get_string(j, body_key, what);
  const std::string b64 = get_string(j, "signature", what);
  try {
    e.signature = crypto::parse_signature("untrusted comment: \n" + b64 + "\n", "signature");
  } catch (const crypto::Error& err) {
    fail(what, "signature", err.what());
  }
  return e;
}

std::string format_envelope(const Envelope& e, std::string_view body_key) {
  const std::string file = crypto::format_signature(e.signature, "");
  // The second line of the .sig file, without its newline.
  const auto nl = file.find('\n');
  const std::string b64 = file.substr(nl + 1, file.size() - nl - 2);
  json j = {{std::string(body_key), e.text}, {"signature", b64}};
  try {
    return j.dump();
  } catch (const json::exception&) {
    fail(std::string(body_key) + " envelope", body_key, "not valid UTF-8");
  }
}

void check_signature(const Envelope& e, const crypto::PublicKey& key) {
  bool ok = false;
  try {
    ok = crypto::verify(key, e.signature, e.text);
  } catch (const crypto::Error& err) {
    throw Error(std::string("signature: ") + err.what());
  }
  if (!ok) throw Error("signature: does not verify with key " + crypto::keynum_hex(key.keynum));
}

std::string seal_report(const Report& r, const crypto::SecretKey& key) {
  std::string text = to_json(r);
  return format_envelope({text, crypto::sign(key, text)}, "report");
}

std::string seal_result(const Result& r, const crypto::SecretKey& key) {
  std::string text = to_json(r);
  return format_envelope({text, crypto::sign(key, text)}, "result");
}

Report open_report(std::string_view wire, const crypto::PublicKey& key) {
  Envelope e = parse_envelope(wire, "report");
  check_signature(e, key);
  return parse_report(e.text);
}

Result open_result(std::string_view wire, const crypto::PublicKey& key) {
  Envelope e = parse_envelope(wire, "result");
  check_signature(e, key);
  return parse_result(e.text);
}

}  // namespace pisec::attest
