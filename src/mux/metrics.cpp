// /debug/metrics: Prometheus text exposition format 0.0.4.
#include <cstdio>

#include "pisec/mux.hpp"
#include "pisec/util.hpp"

namespace pisec::mux {
namespace {

std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string seconds(std::int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
  return buf;
}

class Writer {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += text::cat("# HELP ", name, ' ', help, "\n# TYPE ", name, ' ', type, '\n');
  }
  template <class V>
  void sample(const char* name, const std::string& labels, const V& value) {
    out_ += name;
    if (!labels.empty()) out_ += text::cat('{', labels, '}');
    out_ += text::cat(' ', value, '\n');
  }
  // A family of one sample without labels.
  template <class V>
  void single(const char* name, const char* type, const char* help, const V& value) {
    family(name, type, help);
    sample(name, "", value);
  }
  std::string str() const { return out_; }

 private:
  std::string out_;
};

std::string label(const char* key, std::string_view value) {
  return std::string(key) + "=\"" + label_value(value) + "\"";
}

}  // namespace

std::string render_metrics(const status::Snapshot& s, const DaemonMetrics& d, const Counters& c) {
  Writer w;
  w.family("pisecd_state", "gauge", "1 for the daemon's current state (lockdown, gating, running, degraded, quarantined, stopping).");
  for (const char* st : {"lockdown", "gating", "running", "degraded", "quarantined", "stopping"})
    w.sample("pisecd_state", label("state", st), s.state == st ? 1 : 0);
  w.single("pisecd_uptime_seconds", "gauge", "Seconds since the daemon started.", seconds(s.uptime_ms));

  w.family("pisecd_gate_status", "gauge", "1 for each boot gate's current status.");
  for (const auto& g : s.gates)
    for (const char* st : {"pending", "running", "passed", "failed", "skipped"})
      w.sample("pisecd_gate_status", label("gate", g.name) + "," + label("status", st), g.status == st ? 1 : 0);
  w.family("pisecd_gate_duration_seconds", "gauge", "How long each boot gate ran.");
  for (const auto& g : s.gates) w.sample("pisecd_gate_duration_seconds", label("gate", g.name), seconds(g.duration_ms));

  w.single("pisecd_firewall_verified", "gauge", "1 when the ruleset in the kernel was read back and matched.", s.firewall.verified ? 1 : 0);
  w.family("pisecd_firewall_mode", "gauge", "1 for the ruleset mode in force (none, lockdown, service).");
  for (const char* m : {"none", "lockdown", "service"})
    w.sample("pisecd_firewall_mode", label("mode", m), s.firewall.mode == m ? 1 : 0);

  w.family("pisecd_firewall_rule_packets_total", "counter",
           "Packets matched by each counted firewall rule (chain, index as `pisecd firewall render` lists it).");
  for (const auto& r : d.rules)
    w.sample("pisecd_firewall_rule_packets_total", label("chain", r.chain) + "," + label("rule", std::to_string(r.index)),
             r.packets);
  w.family("pisecd_firewall_rule_bytes_total", "counter", "Bytes matched by each counted firewall rule.");
  for (const auto& r : d.rules)
    w.sample("pisecd_firewall_rule_bytes_total", label("chain", r.chain) + "," + label("rule", std::to_string(r.index)),
             r.bytes);

  w.family("pisecd_payload_state", "gauge", "1 for the payload's current state.");
  for (const char* st : {"stopped", "starting", "running", "backoff", "quarantined"})
    w.sample("pisecd_payload_state", label("state", st), s.payload.state == st ? 1 : 0);
  w.single("pisecd_payload_restarts_total", "counter", "Payload restarts since the daemon started.", s.payload.restarts);
  w.single("pisecd_reaped_orphans_total", "counter", "Orphaned processes reaped by the daemon and the sandbox init.", s.reaped_orphans);

  w.single("pisecd_log_ring_used_bytes", "gauge", "Bytes of the payload log ring in use.", d.ring_bytes_used);
  w.single("pisecd_log_ring_capacity_bytes", "gauge", "Size of the payload log ring.", d.ring_bytes_limit);
  w.single("pisecd_log_lines_dropped_total", "counter", "Log lines evicted from the ring to make room.", d.lines_dropped);

  w.family("pisecd_mux_requests_total", "counter", "Requests answered by the mux, by class (app, debug) and status code.");
  for (const auto& [key, n] : c.requests)
    w.sample("pisecd_mux_requests_total", label("class", key.first) + "," + label("code", std::to_string(key.second)), n);
  w.single("pisecd_mux_open_connections", "gauge", "Client connections open now.", c.open_connections);
  w.single("pisecd_mux_connections_total", "counter", "Client connections accepted.", c.connections_total);
  w.single("pisecd_mux_connections_refused_total", "counter", "Client connections closed at once because max_connections were open.", c.connections_refused);
  w.single("pisecd_mux_auth_failures_total", "counter", "/debug/ requests without a valid bearer token.", c.auth_failures);
  return w.str();
}

}  // namespace pisec::mux
