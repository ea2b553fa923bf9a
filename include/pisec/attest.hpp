#pragma once
// The attestation protocol (PRODUCT.md, "Attestation (pinned shape)"), pure:
// the device's measurement report, the verifier's EAR-shaped result, their
// canonical JSON and the signed envelopes both travel in. No I/O here; the
// device side and pisec-verifier share it.
//
// Canonical JSON: one object, keys sorted, no whitespace, UTF-8, exactly what
// nlohmann::json::dump() produces. A text is accepted only if parsing it and
// dumping it again gives the same bytes, so there is one spelling of each
// report and the signature covers exactly what is read.
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pisec/formats.hpp"

namespace pisec::attest {

// Any refused report, result or envelope: the message names the field and why.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The measurement names, in report order. The first five are files with a
// path (as listed in the release manifest); the last three are digests of
// things the device holds in memory (applied ruleset, configuration) or the
// signed manifest itself, and carry no path.
inline constexpr std::array<std::string_view, 8> measurement_names = {
    "kernel", "initramfs", "apkovl", "payload", "pisecd", "ruleset", "config", "manifest"};
bool measurement_has_path(std::string_view name);

inline constexpr std::size_t min_nonce_hex = 32;
inline constexpr std::size_t max_nonce_hex = 128;
// Envelopes larger than this are refused before they are parsed.
inline constexpr std::size_t max_envelope_bytes = 64 * 1024;

struct Measurement {
  std::optional<std::string> path;  // relative, as in the manifest; absent for ruleset/config/manifest
  std::string sha256;               // 64 lower-case hex digits
  bool operator==(const Measurement&) const = default;
};

struct Gate {
  std::string name;
  std::string status;
  bool operator==(const Gate&) const = default;
};

struct Report {
  std::string device_id;  // 1-64 of [A-Za-z0-9._-]
  std::string boot_id;
  std::string nonce;  // lower-case hex, min_nonce_hex..max_nonce_hex digits
  std::int64_t issued_at = 0;
  std::string pisecd_version;
  std::map<std::string, Measurement> measurements;  // every name in measurement_names
  std::vector<Gate> gates;
  bool operator==(const Report&) const = default;
};

enum class Status { affirming, warning, contraindicated };
std::string_view status_name(Status s);
std::optional<Status> parse_status(std::string_view name);

struct Result {
  Status status = Status::contraindicated;
  std::string verifier_id;
  std::int64_t iat = 0;
  std::string nonce;  // the report's nonce
  std::vector<std::string> differences;
  bool operator==(const Result&) const = default;
};

// Checks used by the parsers, exposed for the CLI and the verifier.
bool valid_device_id(std::string_view id);
bool valid_nonce(std::string_view nonce);
bool valid_sha256_hex(std::string_view hex);

// Canonical text of a report or result. Throws Error (naming the field) if
// the value would not parse back (bad device id, short nonce, ...).
std::string to_json(const Report& r);
std::string to_json(const Result& r);
// Strict parse: canonical, every field present with its type, no other field.
// Throws Error "report: <field>: <reason>" / "result: ...".
Report parse_report(std::string_view text);
Result parse_result(std::string_view text);

// An envelope: {"<body key>": "<canonical text>", "signature": "<base64 signify blob>"}.
// The blob is the second line of a signify .sig file: "Ed", keynum, signature.
struct Envelope {
  std::string text;  // the signed bytes
  crypto::Signature signature;
};
// Shape only: no signature check. `body_key` is "report" or "result".
// Throws Error on anything but exactly those two string fields.
Envelope parse_envelope(std::string_view wire, std::string_view body_key);
std::string format_envelope(const Envelope& e, std::string_view body_key);

// Signs to_json(r) with the device's (or verifier's) key; returns the wire text.
std::string seal_report(const Report& r, const crypto::SecretKey& key);
std::string seal_result(const Result& r, const crypto::SecretKey& key);
// Verifies the signature over the exact body bytes first (Error "signature:
// ..." if it is not by `key`), then parses strictly.
Report open_report(std::string_view wire, const crypto::PublicKey& key);
Result open_result(std::string_view wire, const crypto::PublicKey& key);
// The signature check alone, on an already parsed envelope: throws Error.
void check_signature(const Envelope& e, const crypto::PublicKey& key);

}  // namespace pisec::attest
