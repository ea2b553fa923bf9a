#include "pisec/control.hpp"

#include "pisec/util.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace pisec::status {

using nlohmann::json;

std::string to_json(const Snapshot& s) {
  json gates = json::array();
  for (const auto& g : s.gates)
    gates.push_back({{"name", g.name}, {"status", g.status}, {"detail", g.detail},
                     {"duration_ms", g.duration_ms}});
  json j = {
      {"version", s.version},
      {"state", s.state},
      {"uptime_ms", s.uptime_ms},
      {"gates", gates},
      {"firewall",
       {{"mode", s.firewall.mode}, {"verified", s.firewall.verified}, {"digest", s.firewall.digest}}},
      {"payload",
       {{"state", s.payload.state},
        {"pid", s.payload.pid},
        {"restarts", s.payload.restarts},
        {"last_exit",
         {{"code", s.payload.last_exit.code},
          {"signal", s.payload.last_exit.signal},
          {"at_ms", s.payload.last_exit.at_ms}}}}},
      {"reaped_orphans", s.reaped_orphans},
      {"reload", {{"result", s.reload.result}, {"detail", s.reload.detail}, {"at_ms", s.reload.at_ms}}},
  };
  if (s.mux.enabled)
    j["mux"] = {{"state", s.mux.state},
                {"pid", s.mux.pid},
                {"restarts", s.mux.restarts},
                {"last_exit",
                 {{"code", s.mux.last_exit.code},
                  {"signal", s.mux.last_exit.signal},
                  {"at_ms", s.mux.last_exit.at_ms}}}};
  if (s.attestation.enabled)
    j["attestation"] = {{"verdict", s.attestation.verdict},
                        {"verifier_id", s.attestation.verifier_id},
                        {"differences", s.attestation.differences},
                        {"detail", s.attestation.detail},
                        {"at_ms", s.attestation.at_ms},
                        {"rounds", s.attestation.rounds}};
  // Details quote files and payload output: invalid UTF-8 must not make the
  // whole answer fail (a tampered card would look like a dead daemon).
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Snapshot from_json(const std::string& text) {
  try {
    json j = json::parse(text);
    Snapshot s;
    s.version = j.at("version").get<std::string>();
    s.state = j.at("state").get<std::string>();
    s.uptime_ms = j.at("uptime_ms").get<std::int64_t>();
    for (const auto& g : j.at("gates"))
      s.gates.push_back({g.at("name").get<std::string>(), g.at("status").get<std::string>(),
                         g.at("detail").get<std::string>(), g.at("duration_ms").get<std::int64_t>()});
    const auto& f = j.at("firewall");
    s.firewall = {f.at("mode").get<std::string>(), f.at("verified").get<bool>(),
                  f.at("digest").get<std::string>()};
    const auto& p = j.at("payload");
    s.payload.state = p.at("state").get<std::string>();
    s.payload.pid = p.at("pid").get<int>();
    s.payload.restarts = p.at("restarts").get<int>();
    const auto& e = p.at("last_exit");
    s.payload.last_exit = {e.at("code").get<int>(), e.at("signal").get<int>(),
                           e.at("at_ms").get<std::int64_t>()};
    s.reaped_orphans = j.at("reaped_orphans").get<std::int64_t>();
    if (j.contains("reload")) {  // not pinned: older daemons do not send it
      const auto& r = j.at("reload");
      s.reload = {r.at("result").get<std::string>(), r.at("detail").get<std::string>(),
                  r.at("at_ms").get<std::int64_t>()};
    }
    if (j.contains("mux")) {  // only with [mux] enabled
      const auto& m = j.at("mux");
      s.mux.enabled = true;
      s.mux.state = m.at("state").get<std::string>();
      s.mux.pid = m.at("pid").get<int>();
      s.mux.restarts = m.at("restarts").get<int>();
      const auto& me = m.at("last_exit");
      s.mux.last_exit = {me.at("code").get<int>(), me.at("signal").get<int>(), me.at("at_ms").get<std::int64_t>()};
    }
    if (j.contains("attestation")) {  // only with [attestation] enabled
      const auto& a = j.at("attestation");
      s.attestation.enabled = true;
      s.attestation.verdict = a.at("verdict").get<std::string>();
      s.attestation.verifier_id = a.at("verifier_id").get<std::string>();
      s.attestation.differences = a.at("differences").get<std::vector<std::string>>();
      s.attestation.detail = a.at("detail").get<std::string>();
      s.attestation.at_ms = a.at("at_ms").get<std::int64_t>();
      s.attestation.rounds = a.at("rounds").get<int>();
    }
    return s;
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("malformed status JSON: ") + e.what());
  }
}

int exit_code(const Snapshot& s) {
  if (s.state == "quarantined" || s.payload.state == "quarantined") return 2;
  if (s.state == "running" && s.payload.state == "running") return 0;
  return 1;
}

std::string to_text(const Snapshot& s) {
  // Every string field through printable: none may drive the terminal or
  // start a line of its own.
  const auto p = [](const std::string& field) { return text::printable(field); };
  std::string out;
  out += text::cat("pisecd ", p(s.version), ": ", p(s.state), " (up ", s.uptime_ms / 1000, " s)\n");
  for (const auto& g : s.gates) {
    out += text::cat("  gate ", p(g.name), ": ", p(g.status));
    if (!g.detail.empty()) out += text::cat(" — ", p(g.detail));
    out += text::cat(" (", g.duration_ms, " ms)\n");
  }
  out += text::cat("  firewall: ", p(s.firewall.mode), (s.firewall.verified ? ", verified" : ", not verified"));
  if (!s.firewall.digest.empty()) out += text::cat(", ", p(s.firewall.digest));
  out += text::cat("\n  payload: ", p(s.payload.state));
  if (s.payload.pid > 0) out += text::cat(", pid ", s.payload.pid);
  out += text::cat(", ", s.payload.restarts, " restart(s)");
  if (s.payload.last_exit.at_ms > 0) {
    out += ", last exit ";
    if (s.payload.last_exit.signal) out += text::cat("signal ", s.payload.last_exit.signal);
    else out += text::cat("code ", s.payload.last_exit.code);
  }
  if (s.mux.enabled) {
    out += text::cat("\n  mux: ", p(s.mux.state));
    if (s.mux.pid > 0) out += text::cat(", pid ", s.mux.pid);
    out += text::cat(", ", s.mux.restarts, " restart(s)");
  }
  if (s.attestation.enabled) {
    out += text::cat("\n  attestation: ", p(s.attestation.verdict));
    if (!s.attestation.verifier_id.empty()) out += text::cat(" from ", p(s.attestation.verifier_id));
    if (!s.attestation.detail.empty()) out += text::cat(" — ", p(s.attestation.detail));
    for (const auto& d : s.attestation.differences) out += text::cat("\n    differs: ", p(d));
  }
  out += text::cat("\n  reaped orphans: ", s.reaped_orphans, '\n');
  if (s.reload.result != "none") {
    out += text::cat("  last reload: ", p(s.reload.result));
    if (!s.reload.detail.empty()) out += text::cat(" — ", p(s.reload.detail));
    out += text::cat('\n');
  }
  return out;
}

}  // namespace pisec::status
