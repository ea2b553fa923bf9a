// Request routing and the fleet page, without sockets: serve.cpp turns bytes
// into a Request and a Response back into bytes, so this file can be fuzzed
// and unit-tested over a store alone.
#include <openssl/crypto.h>
#include <sys/stat.h>

#include <cctype>
#include <iostream>

#include "pisec/util.hpp"
#include "pisec/verifier.hpp"

namespace pisec::verifier {
namespace {

constexpr std::size_t refused_rows = 20;

// The page's only style. Its hash is the CSP's style-src: no other style,
// and no script, image, font or frame, may load.
constexpr std::string_view page_style =
    "body{font-family:'DejaVu Sans',sans-serif;margin:1.5em;color:#111}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}td.differs,td.notes{font-family:'DejaVu Sans Mono',monospace;font-size:.85em;"
    "word-break:break-all;max-width:40em}"
    ".affirming{background:#d7f5d7}.warning{background:#fff3c4}.contraindicated{background:#f8d0d0}"
    "ul{margin:0;padding-left:1.2em}";

std::string content_security_policy() {
  static const std::string csp = [] {
    const auto h = crypto::sha256(page_style);
    return "default-src 'none'; style-src 'sha256-" + crypto::base64_encode(h.data(), h.size()) +
           "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  }();
  return csp;
}

Response json_response(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Response error_response(int status, std::string_view why) {
  return json_response(status, std::string(R"({"error":")") + std::string(why) + "\"}");
}

Response method_not_allowed(const char* allow) {
  Response r = error_response(405, std::string("only ") + allow);
  r.headers.emplace_back("Allow", allow);
  return r;
}

bool iequals_prefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  return true;
}

// The token an Authorization header presents: "Bearer T", or "Basic
// base64(user:T)" (any user name) for browsers, which cannot send a bearer.
std::optional<std::string> presented_token(std::string_view auth) {
  if (iequals_prefix(auth, "bearer ")) return std::string(auth.substr(7));
  if (iequals_prefix(auth, "basic ")) {
    const auto raw = crypto::base64_decode(auth.substr(6));
    if (!raw) return std::nullopt;
    const std::string pair(raw->begin(), raw->end());
    const auto colon = pair.find(':');
    if (colon == std::string::npos) return std::nullopt;
    return pair.substr(colon + 1);
  }
  return std::nullopt;
}

// Compares digests, so neither the content nor the length of the token
// shows in the time taken.
bool token_matches(const std::string& presented, const std::string& token) {
  const auto a = crypto::sha256(presented);
  const auto b = crypto::sha256(token);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool is_status(const std::string& s) { return s == "affirming" || s == "warning" || s == "contraindicated"; }

std::string verdict_cell(const std::string& status) {
  const std::string e = html_escape(status);
  return is_status(status) ? "<td class=\"verdict " + e + "\">" + e + "</td>" : "<td class=\"verdict\">" + e + "</td>";
}

std::string list_cell(const char* cls, const std::vector<std::string>& items, const char* none) {
  std::string out = std::string("<td class=\"") + cls + "\">";
  if (items.empty()) return out + none + "</td>";
  out += "<ul>";
  for (const auto& i : items) out += "<li>" + html_escape(i) + "</li>";
  return out + "</ul></td>";
}

Response fleet(const Request& req, Store& store, const Settings& s, std::int64_t now) {
  if (!s.admin_token) return error_response(404, "no such endpoint");  // the page is off: nothing to find
  if (req.method != "GET") return method_not_allowed("GET");
  const auto presented = presented_token(req.authorization);
  if (!presented || !token_matches(*presented, *s.admin_token)) {
    Response r = error_response(401, "the fleet page needs the admin token");
    r.headers.emplace_back("WWW-Authenticate", R"(Basic realm="pisec-verifier", charset="UTF-8")");
    return r;
  }
  Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body = fleet_page(store, now);
  r.headers = {{"Content-Security-Policy", content_security_policy()},
               {"Cache-Control", "no-store"},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               {"X-Frame-Options", "DENY"}};
  return r;
}

}  // namespace

std::string html_escape(std::string_view text) {
  const std::string clean = text::printable(text);
  std::string out;
  out.reserve(clean.size());
  for (char c : clean) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string fleet_page(Store& store, std::int64_t now) {
  std::map<std::string, Decision> last;
  for (auto& d : store.last_authenticated()) last.emplace(d.device_id, std::move(d));
  const auto devices = store.devices();

  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pisec-verifier: fleet</title><style>";
  h += page_style;
  h += "</style></head><body>\n<h1>Fleet</h1>\n<p>";
  h += std::to_string(devices.size()) + " enrolled device(s); page made " + util::format_utc(now, false) +
       ". Each row shows only reports signed by that device's enrolled key.</p>\n";
  h += "<table id=\"devices\"><thead><tr><th>Device</th><th>Enrolment</th><th>Last report (UTC)</th>"
       "<th>Last verdict</th><th>Measurements that differ</th><th>Other findings</th></tr></thead><tbody>\n";
  for (const auto& d : devices) {
    const std::string id = html_escape(d.id);
    h += "<tr data-device=\"" + id + "\"><td class=\"device\">" + id + "</td><td class=\"enrolment\">" +
         (d.revoked ? "revoked" : "enrolled") + "</td>";
    auto it = last.find(d.id);
    if (it == last.end()) {
      h += "<td class=\"at\">never</td><td class=\"verdict\">none</td><td class=\"differs\">-</td>"
           "<td class=\"notes\">-</td></tr>\n";
      continue;
    }
    const Decision& dec = it->second;
    std::vector<std::string> differs, notes;
    for (const auto& x : dec.differences) {
      if (auto m = differing_measurement(x)) differs.push_back(*m);
      else notes.push_back(x);
    }
    h += "<td class=\"at\">" + html_escape(util::format_utc(dec.at, false)) + "</td>" + verdict_cell(dec.status);
    h += list_cell("differs", differs, "none") + list_cell("notes", notes, "-") + "</tr>\n";
  }
  h += "</tbody></table>\n";

  const auto refused_count = store.unauthenticated_count();
  const auto refused = store.recent_unauthenticated(refused_rows);
  h += "<h2>Refused reports not signed by the enrolled key</h2>\n<p id=\"refused-count\">" +
       std::to_string(refused_count) +
       " refused (a key not enrolled, or a signature the enrolled key does not verify); the "
       "device named is only what the report claims.";
  if (refused_count > static_cast<std::int64_t>(refused.size()))
    h += " The newest " + std::to_string(refused.size()) + " below.";
  h += "</p>\n";
  if (!refused.empty()) {
    h += "<table id=\"refused\"><thead><tr><th>At (UTC)</th><th>Claimed device</th><th>Verdict</th>"
         "<th>Why</th></tr></thead><tbody>\n";
    for (const auto& d : refused) {
      h += "<tr><td class=\"at\">" + html_escape(util::format_utc(d.at, false)) + "</td><td class=\"device\">" +
           html_escape(d.device_id) + "</td>" + verdict_cell(d.status) + list_cell("notes", d.differences, "-") +
           "</tr>\n";
    }
    h += "</tbody></table>\n";
  }
  h += "</body></html>\n";
  return h;
}

Response handle(const Request& req, Store& store, const Settings& s, std::int64_t now) {
  try {
    if (req.target == "/") return fleet(req, store, s, now);
    const bool is_challenge = req.target == "/v1/challenge", is_evidence = req.target == "/v1/evidence";
    if (!is_challenge && !is_evidence) return error_response(404, "no such endpoint");
    if (req.method != "POST") return method_not_allowed("POST");
    const Answer a = is_challenge ? challenge(store, s, req.body, now) : evidence(store, s, req.body, now);
    return json_response(a.http_status, a.body);
  } catch (const std::exception& e) {
    std::cerr << "pisec-verifier: " << text::printable(req.target) << ": " << e.what() << '\n';
    return error_response(500, "internal error");
  }
}

std::string load_admin_token(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(path + ": cannot read the admin token file");
  if ((st.st_mode & S_IRWXO) != 0)
    throw Error(path + ": the admin token file is open to every user; chmod 600 it (or 640)");
  std::string t = crypto::read_small_file(path, 4096);
  if (!t.empty() && t.back() == '\n') t.pop_back();
  bool printable = t.size() >= 16 && t.size() <= 256;
  for (char c : t) printable = printable && c > 0x20 && c < 0x7f;
  if (!printable)
    throw Error(path + ": the admin token must be one line of 16-256 printable ASCII characters without spaces "
                       "(e.g. openssl rand -hex 32 > " + path + ")");
  return t;
}

}  // namespace pisec::verifier
