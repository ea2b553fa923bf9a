#include "pisec/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <toml++/toml.h>

#include "pisec/control.hpp"
#include "pisec/firewall.hpp"
#include "pisec/logs.hpp"
#include "pisec/mux.hpp"
#include "pisec/sandbox.hpp"
#include "pisec/supervisor.hpp"
#include "pisec/util.hpp"

namespace pisec::config {

std::string Error::to_string() const {
  std::string out = file;
  if (line > 0) out += text::cat(':', line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + reason;
}

namespace {
// Character classes of the hand-written checks below (std::regex is not
// used: it links std::locale; see text::cat).
bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_word(char c) { return is_alpha(c) || is_digit(c) || c == '_'; }
bool all_of(std::string_view s, bool (*pred)(char)) { return std::all_of(s.begin(), s.end(), pred); }
}  // namespace

static std::string join_errors(const std::vector<Error>& errors) {
  std::string text;
  for (const auto& e : errors) {
    if (!text.empty()) text += '\n';
    text += e.to_string();
  }
  return text;
}

LoadError::LoadError(std::vector<Error> errors)
    : std::runtime_error(join_errors(errors)), errors_(std::move(errors)) {}

const char* to_string(OnFailure f) { return f == OnFailure::quarantine ? "quarantine" : "continue"; }
const char* to_string(RestartPolicy r) {
  switch (r) {
    case RestartPolicy::always: return "always";
    case RestartPolicy::on_failure: return "on-failure";
    case RestartPolicy::never: return "never";
  }
  return "?";
}

namespace {

// Reads one TOML table into a struct, remembering which keys it used so the
// rest can be reported as unknown. Every error carries file, line and key.
class TableReader {
 public:
  TableReader(const toml::table* table, std::string prefix, std::string file,
              std::vector<Error>& errors)
      : table_(table), prefix_(std::move(prefix)), file_(std::move(file)), errors_(errors) {}

  void fail(const std::string& key, const toml::node* node, std::string reason) {
    int line = node ? static_cast<int>(node->source().begin.line) : 0;
    errors_.push_back({file_, line, qualified(key), std::move(reason)});
  }

  std::string qualified(const std::string& key) const {
    return prefix_.empty() ? key : prefix_ + "." + key;
  }

  const toml::node* take(const std::string& key) {
    known_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }

  void boolean(const std::string& key, bool& out) {
    if (auto* n = take(key)) {
      if (auto v = n->value_exact<bool>()) out = *v;
      else fail(key, n, "must be true or false, got " + describe(*n));
    }
  }

  template <typename Int>
  void integer(const std::string& key, Int& out, long long min, long long max) {
    if (auto* n = take(key)) {
      auto v = n->value_exact<int64_t>();
      if (!v) return fail(key, n, "must be an integer, got " + describe(*n));
      if (*v < min || *v > max)
        return fail(key, n, "must be " + std::to_string(min) + "-" + std::to_string(max) +
                                ", got " + std::to_string(*v));
      out = static_cast<Int>(*v);
    }
  }

  void number(const std::string& key, double& out, double min, double max) {
    if (auto* n = take(key)) {
      std::optional<double> v = n->value_exact<double>();
      if (!v) {
        if (auto i = n->value_exact<int64_t>()) v = static_cast<double>(*i);
      }
      if (!v) return fail(key, n, "must be a number, got " + describe(*n));
      if (*v < min || *v > max) {
        return fail(key, n, text::cat("must be between ", min, " and ", max, ", got ", *v));
      }
      out = *v;
    }
  }

  // check returns an empty string when the value is fine, else the reason.
  void string(const std::string& key, std::string& out,
              const std::function<std::string(const std::string&)>& check = {}) {
    if (auto* n = take(key)) {
      auto v = n->value_exact<std::string>();
      if (!v) return fail(key, n, "must be a string, got " + describe(*n));
      if (check) {
        if (auto reason = check(*v); !reason.empty()) return fail(key, n, reason);
      }
      out = *v;
    }
  }

  void string_list(const std::string& key, std::vector<std::string>& out,
                   const std::function<std::string(const std::string&)>& check = {}) {
    if (auto* n = take(key)) {
      auto* arr = n->as_array();
      if (!arr) return fail(key, n, "must be an array of strings, got " + describe(*n));
      std::vector<std::string> values;
      bool ok = true;
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& item = *arr->get(i);
        auto v = item.value_exact<std::string>();
        std::string where = key + "[" + std::to_string(i) + "]";
        if (!v) {
          fail(where, &item, "must be a string, got " + describe(item));
          ok = false;
        } else if (check) {
          if (auto reason = check(*v); !reason.empty()) {
            fail(where, &item, reason);
            ok = false;
          }
        }
        if (v) values.push_back(*v);
      }
      if (ok) out = std::move(values);
    }
  }

  void string_map(const std::string& key, std::map<std::string, std::string>& out,
                  const std::function<std::string(const std::string&)>& check_key = {}) {
    if (auto* n = take(key)) {
      auto* t = n->as_table();
      if (!t) return fail(key, n, "must be a table of strings, got " + describe(*n));
      std::map<std::string, std::string> values;
      for (auto&& [k, v] : *t) {
        std::string name(k.str());
        auto s = v.value_exact<std::string>();
        if (!s) {
          fail(key + "." + name, &v, "must be a string, got " + describe(v));
          continue;
        }
        if (check_key) {
          if (auto reason = check_key(name); !reason.empty()) {
            fail(key + "." + name, &v, reason);
            continue;
          }
        }
        values[name] = *s;
      }
      out = std::move(values);
    }
  }

  // A size: bytes as an integer, or a string of digits with a binary unit
  // "K", "M" or "G" ("64M" = 64 MiB). 0 = unlimited; otherwise min..max bytes.
  void size(const std::string& key, std::uint64_t& out, std::uint64_t min, std::uint64_t max) {
    auto* n = take(key);
    if (!n) return;
    const std::string usage = "must be a size such as \"64M\" (K, M or G, binary) or a number of bytes";
    std::uint64_t bytes = 0;
    if (auto i = n->value_exact<int64_t>()) {
      if (*i < 0) return fail(key, n, usage + ", got " + describe(*n));
      bytes = static_cast<std::uint64_t>(*i);
    } else if (auto v = n->value_exact<std::string>()) {
      // 1-12 digits, then K, M, G or nothing.
      std::string_view digits = *v;
      const char unit = !digits.empty() && !is_digit(digits.back()) ? digits.back() : '\0';
      if (unit) digits.remove_suffix(1);
      if (digits.empty() || digits.size() > 12 || !all_of(digits, is_digit) ||
          (unit && unit != 'K' && unit != 'M' && unit != 'G'))
        return fail(key, n, usage + ", got " + describe(*n));
      const int shift = unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : 0;
      bytes = static_cast<std::uint64_t>(*text::to_int(digits)) << shift;  // at most 12 digits << 30: no overflow
    } else {
      return fail(key, n, usage + ", got " + describe(*n));
    }
    if (bytes != 0 && (bytes < min || bytes > max))
      return fail(key, n, "must be 0 (unlimited) or " + std::to_string(min >> 20) + "M-" +
                              std::to_string(max >> 30) + "G, got " + describe(*n));
    out = bytes;
  }

  template <typename Enum>
  void choice(const std::string& key, Enum& out,
              std::initializer_list<std::pair<const char*, Enum>> options) {
    if (auto* n = take(key)) {
      auto v = n->value_exact<std::string>();
      std::string allowed;
      for (auto& [name, value] : options) {
        if (v && *v == name) {
          out = value;
          return;
        }
        allowed += allowed.empty() ? "" : ", ";
        allowed += std::string("\"") + name + "\"";
      }
      fail(key, n, "must be one of " + allowed + ", got " + describe(*n));
    }
  }

  // Reports every key present in the table that no reader asked for.
  void reject_unknown(const std::set<std::string>& subtables = {}) {
    if (!table_) return;
    for (auto&& [k, v] : *table_) {
      std::string name(k.str());
      if (known_.count(name) || subtables.count(name)) continue;
      fail(name, &v, "unknown key");
    }
  }

  static std::string describe(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return text::cat('"', *n.value<std::string>(), '"');
      case toml::node_type::integer: return text::cat(*n.value<int64_t>());
      case toml::node_type::floating_point: return text::cat(*n.value<double>());
      case toml::node_type::boolean: return *n.value<bool>() ? "true" : "false";
      case toml::node_type::array: return "an array";
      case toml::node_type::table: return "a table";
      default: return "a date/time";
    }
  }

 private:
  const toml::table* table_;
  std::string prefix_;
  std::string file_;
  std::vector<Error>& errors_;
  std::set<std::string> known_;
};

std::string absolute_path(const std::string& v) {
  return (!v.empty() && v[0] == '/') ? "" : "must be an absolute path, got \"" + v + "\"";
}
std::string optional_absolute_path(const std::string& v) {
  return v.empty() ? "" : absolute_path(v);
}

std::string host_port(const std::string& v) {
  // "host", "host:port", "[v6]:port" — the name is resolved later.
  if (v.empty()) return "must not be empty";
  std::string port;
  if (v.front() == '[') {
    auto close = v.find(']');
    if (close == std::string::npos) return "unterminated '[' in \"" + v + "\"";
    if (close + 1 < v.size()) {
      if (v[close + 1] != ':') return "expected ':' after ']' in \"" + v + "\"";
      port = v.substr(close + 2);
    }
  } else if (std::count(v.begin(), v.end(), ':') == 1) {
    port = v.substr(v.find(':') + 1);
  }
  if (!port.empty() || v.back() == ':') {
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
        std::stoi(port) > 65535)
      return "port must be 1-65535 in \"" + v + "\"";
  }
  return "";
}

// sun_path holds the socket path and its terminating NUL.
constexpr std::size_t max_socket_path = sizeof(sockaddr_un::sun_path) - 1;

std::string control_socket_check(const std::string& v) {
  if (auto reason = absolute_path(v); !reason.empty()) return reason;
  if (v.size() > max_socket_path)
    return "must be at most " + std::to_string(max_socket_path) + " bytes (the sun_path limit), got " +
           std::to_string(v.size());
  return "";
}

std::string admin_group_check(const std::string& v) {
  if (v.empty()) return "";
  try {
    control::resolve_admin_group(v);
    return "";
  } catch (const std::runtime_error& e) {
    return e.what();
  }
}

// The firewall module owns the entry syntax; its parsers judge every entry
// here, so run and reload refuse what check-config does, with a line number.
template <typename Parse>
std::function<std::string(const std::string&)> firewall_entry(Parse parse) {
  return [parse](const std::string& v) -> std::string {
    try {
      parse(v);
      return "";
    } catch (const firewall::EntryError& e) {
      return "\"" + v + "\": " + e.what();
    }
  };
}

std::string probe_check(const std::string& v) {
  try {
    supervisor::parse_probe(v);
    return "";
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
}

// HOST_NAME_MAX on Linux: sethostname() in the sandbox refuses more.
constexpr std::size_t max_hostname = 64;

std::string hostname_check(const std::string& v) {
  return v.size() <= max_hostname ? ""
                                  : "must be at most " + std::to_string(max_hostname) +
                                        " bytes (HOST_NAME_MAX), got " + std::to_string(v.size());
}

// The redactor's own engine (RE2) judges the syntax, so check-config and the
// daemon agree on what compiles.
std::string regex_check(const std::string& v) {
  std::string error = logs::pattern_error(v);
  return error.empty() ? "" : "invalid regex: " + error;
}

void read_gate_common(TableReader& r, GateCommon& g) {
  r.boolean("enabled", g.enabled);
  r.integer("timeout_s", g.timeout_s, 1, 3600);
  r.choice("on_failure", g.on_failure,
           {{"quarantine", OnFailure::quarantine}, {"continue", OnFailure::proceed}});
}

const toml::table* subtable(const toml::table& parent, const std::string& key,
                            const std::string& qualified, const std::string& file,
                            std::vector<Error>& errors) {
  const toml::node* n = parent.get(key);
  if (!n) return nullptr;
  if (auto* t = n->as_table()) return t;
  errors.push_back({file, static_cast<int>(n->source().begin.line), qualified,
                    "must be a table ([" + qualified + "])"});
  return nullptr;
}

Config build(const toml::table& root, const std::string& file) {
  Config c;
  c.source_path = file;
  std::vector<Error> errors;
  auto reader = [&](const toml::table* t, const std::string& name) {
    return TableReader(t, name, file, errors);
  };

  {
    auto r = reader(subtable(root, "daemon", "daemon", file, errors), "daemon");
    r.string("control_socket", c.daemon.control_socket, control_socket_check);
    r.string("admin_group", c.daemon.admin_group, admin_group_check);
    r.string("state_dir", c.daemon.state_dir, absolute_path);
    r.reject_unknown();
  }

  const toml::table* gates = subtable(root, "gates", "gates", file, errors);
  auto gate = [&](const char* name) {
    return gates ? subtable(*gates, name, std::string("gates.") + name, file, errors) : nullptr;
  };
  {
    auto r = reader(gate("entropy"), "gates.entropy");
    auto& g = c.gates.entropy;
    read_gate_common(r, g);
    r.string("hwrng", g.hwrng, optional_absolute_path);
    r.string("seed_file", g.seed_file, optional_absolute_path);
    r.integer("hwrng_blocks", g.hwrng_blocks, 1, 4096);
    r.number("max_block_failure_ratio", g.max_block_failure_ratio, 0.0, 1.0);
    r.reject_unknown();
  }
  {
    auto r = reader(gate("clock"), "gates.clock");
    auto& g = c.gates.clock;
    read_gate_common(r, g);
    r.string_list("servers", g.servers, host_port);
    r.integer("min_sources", g.min_sources, 1, 16);
    r.boolean("set_clock", g.set_clock);
    r.string("state_file", g.state_file, optional_absolute_path);
    r.integer("request_timeout_ms", g.request_timeout_ms, 10, 60000);
    r.integer("retries", g.retries, 0, 10);
    r.number("max_root_distance_s", g.max_root_distance_s, 0.001, 16.0);
    r.number("max_disagreement_s", g.max_disagreement_s, 0.001, 3600.0);
    r.reject_unknown();
    if (g.enabled && static_cast<int>(g.servers.size()) < g.min_sources)
      errors.push_back({file, 0, "gates.clock.servers",
                        "lists " + std::to_string(g.servers.size()) +
                            " server(s) but min_sources is " + std::to_string(g.min_sources)});
  }
  {
    auto r = reader(gate("integrity"), "gates.integrity");
    auto& g = c.gates.integrity;
    read_gate_common(r, g);
    r.string("manifest", g.manifest, optional_absolute_path);
    r.string("signature", g.signature, optional_absolute_path);
    r.string("public_key", g.public_key, optional_absolute_path);
    r.string("root", g.root, absolute_path);
    r.reject_unknown();
    if (g.signature.empty() && !g.manifest.empty()) g.signature = g.manifest + ".sig";
    if (g.enabled && (g.manifest.empty() || g.public_key.empty()))
      errors.push_back({file, 0, "gates.integrity",
                        "enabled but manifest or public_key is not set (set both, or enabled = false)"});
  }
  {
    auto r = reader(gate("arch"), "gates.arch");
    auto& g = c.gates.arch;
    read_gate_common(r, g);
    r.string("target", g.target, [](const std::string& v) {
      return (v == "armv6" || v == "host") ? "" : "must be \"armv6\" or \"host\", got \"" + v + "\"";
    });
    r.boolean("allow_unknown", g.allow_unknown);
    r.reject_unknown();
  }
  if (gates) {
    TableReader r(gates, "gates", file, errors);
    r.reject_unknown({"entropy", "clock", "integrity", "arch"});
  }

  {
    auto r = reader(subtable(root, "firewall", "firewall", file, errors), "firewall");
    auto& f = c.firewall;
    r.boolean("enabled", f.enabled);
    r.string("table", f.table, [](const std::string& v) -> std::string {
      const bool ok = !v.empty() && v.size() <= 32 && is_alpha(v[0]) && all_of(v, is_word);
      return ok ? "" : "must be 1-32 letters, digits or '_', starting with a letter";
    });
    r.integer("public_port", f.public_port, 1, 65535);
    r.integer("app_port", f.app_port, 1, 65535);
    r.integer("new_conn_rate", f.new_conn_rate, 1, 100000);
    r.integer("new_conn_burst", f.new_conn_burst, 1, 100000);
    r.integer("max_conn_per_source", f.max_conn_per_source, 1, 65535);
    r.integer("icmp_echo_rate", f.icmp_echo_rate, 1, 10000);
    r.string_list("egress", f.egress, firewall_entry(firewall::parse_egress));
    r.string_list("inbound", f.inbound, firewall_entry(firewall::parse_inbound));
    r.string_list("resolvers", f.resolvers, firewall_entry(firewall::parse_prefix));
    r.reject_unknown();
    if (f.public_port == f.app_port)
      errors.push_back({file, 0, "firewall.app_port", "must differ from public_port"});
  }

  {
    auto r = reader(subtable(root, "payload", "payload", file, errors), "payload");
    auto& p = c.payload;
    r.string_list("command", p.command);
    r.string("rootfs", p.rootfs, optional_absolute_path);
    r.string_list("ro_binds", p.ro_binds, absolute_path);
    r.string_list("rw_paths", p.rw_paths, absolute_path);
    r.integer("uid", p.uid, 1, 4294967294LL);
    r.integer("gid", p.gid, 1, 4294967294LL);
    r.string_map("env", p.env, [](const std::string& k) -> std::string {
      const bool ok = !k.empty() && !is_digit(k[0]) && all_of(k, is_word);
      return ok ? "" : "is not a valid environment variable name";
    });
    r.string("init", p.init, [](const std::string& v) -> std::string {
      if (v == "builtin" || v == "tini" || (!v.empty() && v[0] == '/')) return "";
      return "must be \"builtin\", \"tini\" or an absolute path, got \"" + v + "\"";
    });
    r.integer("stop_grace_ms", p.stop_grace_ms, 0, 600000);
    r.integer("max_processes", p.max_processes, 1, 65536);
    r.integer("max_open_files", p.max_open_files, 16, 1048576);
    r.integer("max_address_space_mb", p.max_address_space_mb, 0, 1048576);
    // Below a few MiB bwrap and the init cannot even start.
    r.size("max_memory", p.max_memory_bytes, 8ULL << 20, 1024ULL << 30);
    r.string_list("seccomp_deny", p.seccomp_deny, sandbox::seccomp_name_error);
    r.string("hostname", p.hostname, hostname_check);
    r.string("cwd", p.cwd, absolute_path);
    r.reject_unknown();
    if (p.command.empty())
      errors.push_back({file, 0, "payload.command", "must name the program to run"});
    else if (p.command[0].empty() || p.command[0][0] != '/')
      errors.push_back({file, 0, "payload.command", "program must be an absolute path, got \"" +
                                                        p.command[0] + "\""});
  }

  {
    auto r = reader(subtable(root, "watchdog", "watchdog", file, errors), "watchdog");
    auto& w = c.watchdog;
    r.choice("restart", w.restart,
             {{"always", RestartPolicy::always},
              {"on-failure", RestartPolicy::on_failure},
              {"never", RestartPolicy::never}});
    r.integer("backoff_initial_ms", w.backoff_initial_ms, 0, 3600000);
    r.integer("backoff_max_ms", w.backoff_max_ms, 0, 3600000);
    r.integer("burst", w.burst, 1, 1000);
    r.integer("burst_window_s", w.burst_window_s, 1, 86400);
    r.integer("healthy_after_s", w.healthy_after_s, 1, 86400);
    r.string("probe", w.probe, probe_check);
    r.integer("probe_interval_ms", w.probe_interval_ms, 100, 3600000);
    r.integer("probe_timeout_ms", w.probe_timeout_ms, 10, 600000);
    r.integer("probe_failures", w.probe_failures, 1, 100);
    r.string("hardware_device", w.hardware_device, optional_absolute_path);
    r.integer("hardware_timeout_s", w.hardware_timeout_s, 1, 600);
    r.reject_unknown();
    if (w.backoff_max_ms < w.backoff_initial_ms)
      errors.push_back({file, 0, "watchdog.backoff_max_ms", "must be >= backoff_initial_ms"});
    if (!w.probe.empty() && w.probe_timeout_ms >= w.probe_interval_ms)
      errors.push_back({file, 0, "watchdog.probe_timeout_ms", "must be less than probe_interval_ms"});
  }

  {
    auto r = reader(subtable(root, "logs", "logs", file, errors), "logs");
    auto& l = c.logs;
    r.integer("ring_bytes", l.ring_bytes, 4096, 64LL * 1024 * 1024);
    r.string_list("redact", l.redact, regex_check);
    r.boolean("stderr", l.stderr_copy);
    r.boolean("syslog", l.syslog);
    r.integer("max_line_bytes", l.max_line_bytes, 64, 65536);
    r.integer("stderr_burst", l.stderr_burst, 1, 1000000);
    r.integer("stderr_interval_s", l.stderr_interval_s, 1, 3600);
    r.reject_unknown();
  }

  {
    auto r = reader(subtable(root, "mux", "mux", file, errors), "mux");
    auto& m = c.mux;
    r.boolean("enabled", m.enabled);
    // Addresses only (the mux resolves no names): "127.0.0.1:8081", "[::1]:8081", "unix:/path".
    auto endpoint = [](const std::string& v) -> std::string {
      if (v.rfind("unix:", 0) == 0) return control_socket_check(v.substr(5));
      try {
        mux::parse_endpoint(v);
        return "";
      } catch (const std::invalid_argument& e) {
        return std::string(e.what()) + ", got \"" + v + "\"";
      }
    };
    r.string("listen", m.listen, endpoint);
    r.string("upstream", m.upstream, endpoint);
    r.string("token_sha256", m.token_sha256, [](const std::string& v) -> std::string {
      const bool ok = v.size() == 64 && all_of(v, [](char h) { return is_digit(h) || (h >= 'a' && h <= 'f'); });
      return v.empty() || ok ? "" : "must be 64 lowercase hex digits (sha256 of the token)";
    });
    r.integer("max_connections", m.max_connections, 1, 65536);
    r.integer("header_timeout_ms", m.header_timeout_ms, 100, 600000);
    r.integer("idle_timeout_ms", m.idle_timeout_ms, 100, 3600000);
    r.integer("max_header_bytes", m.max_header_bytes, 1024, 1048576);
    r.integer("auth_failure_limit", m.auth_failure_limit, 1, 100000);
    r.integer("auth_failure_window_s", m.auth_failure_window_s, 1, 86400);
    r.string("daemon_socket", m.daemon_socket, control_socket_check);
    r.integer("uid", m.uid, 1, 4294967294LL);
    r.integer("gid", m.gid, 1, 4294967294LL);
    r.reject_unknown();
    if (m.enabled && m.token_sha256.empty())
      errors.push_back({file, 0, "mux.token_sha256", "must be set when the mux is enabled"});
    if (m.enabled && m.uid == c.payload.uid)
      errors.push_back({file, 0, "mux.uid", "must differ from payload.uid (" + std::to_string(c.payload.uid) +
                                                "): the mux must not be able to touch the payload"});
    std::optional<mux::Endpoint> listen;
    try {
      listen = mux::parse_endpoint(m.listen);
    } catch (const std::invalid_argument&) {
    }
    if (m.enabled && listen && listen->kind != mux::Endpoint::Kind::tcp)
      errors.push_back({file, 0, "mux.listen", "must be address:port (the firewall redirects TCP to it)"});
    if (m.enabled && listen && listen->kind == mux::Endpoint::Kind::tcp) {
      if (listen->port < 1024)
        errors.push_back({file, 0, "mux.listen", "port must be 1024 or above: the mux runs without capabilities"});
      if (c.firewall.enabled && listen->port != c.firewall.app_port)
        errors.push_back({file, 0, "mux.listen",
                          "port must be firewall.app_port (" + std::to_string(c.firewall.app_port) +
                              "), where the public port is redirected; the payload then listens on mux.upstream"});
    }
  }

  {
    auto r = reader(subtable(root, "attestation", "attestation", file, errors), "attestation");
    auto& a = c.attestation;
    r.boolean("enabled", a.enabled);
    r.string("verifier_url", a.verifier_url, [](const std::string& v) -> std::string {
      return v.empty() || v.rfind("https://", 0) == 0 ? "" : "must be an https:// URL, got \"" + v + "\"";
    });
    r.string("ca_file", a.ca_file, optional_absolute_path);
    r.string("device_key", a.device_key, optional_absolute_path);
    r.string("device_id", a.device_id, [](const std::string& v) -> std::string {
      return v.size() <= 64 && std::all_of(v.begin(), v.end(), [](char ch) {
               return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-';
             })
                 ? ""
                 : "must be at most 64 characters of [A-Za-z0-9._-], got \"" + v + "\"";
    });
    r.string("verifier_key", a.verifier_key, optional_absolute_path);
    r.boolean("required", a.required);
    r.choice("on_no_answer", a.on_no_answer,
             {{"quarantine", OnFailure::quarantine}, {"continue", OnFailure::proceed}});
    r.string_map("measure", a.measure, [](const std::string& k) -> std::string {
      return k == "kernel" || k == "initramfs" || k == "apkovl" ? ""
                                                                 : "unknown file (kernel, initramfs or apkovl)";
    });
    for (const auto& [k, path] : a.measure)
      if (auto why = absolute_path(path); !why.empty()) errors.push_back({file, 0, "attestation.measure." + k, why});
    r.reject_unknown();
    if (a.enabled && (a.verifier_url.empty() || a.device_key.empty() || a.verifier_key.empty()))
      errors.push_back({file, 0, "attestation", "enabled but verifier_url, device_key or verifier_key is not set"});
  }

  {
    TableReader r(&root, "", file, errors);
    r.reject_unknown({"daemon", "gates", "firewall", "payload", "watchdog", "logs", "mux",
                      "attestation"});
  }

  if (!errors.empty()) throw LoadError(std::move(errors));
  return c;
}

std::string escape_nul(std::string_view text) {
  std::string out;
  for (char ch : text) out += ch == '\0' ? std::string("\\u0000") : std::string(1, ch);
  return out;
}

// toml++ accepts "\u0000", but execve, open and bwrap read C strings and
// would silently cut the value there ("/bin/sleep\u0000/x" runs /bin/sleep).
void find_nul_bytes(const toml::node& node, const std::string& where, const std::string& file,
                    std::vector<Error>& errors) {
  auto line = [](const toml::node& n) { return static_cast<int>(n.source().begin.line); };
  if (auto* table = node.as_table()) {
    for (auto&& [k, v] : *table) {
      std::string key = where.empty() ? escape_nul(k.str()) : where + "." + escape_nul(k.str());
      if (k.str().find('\0') != std::string_view::npos)
        errors.push_back({file, line(v), key, "key must not contain a NUL byte (\\u0000)"});
      find_nul_bytes(v, key, file, errors);
    }
  } else if (auto* array = node.as_array()) {
    for (std::size_t i = 0; i < array->size(); ++i)
      find_nul_bytes(*array->get(i), where + "[" + std::to_string(i) + "]", file, errors);
  } else if (auto v = node.value_exact<std::string>(); v && v->find('\0') != std::string::npos) {
    errors.push_back({file, line(node), where, "must not contain a NUL byte (\\u0000)"});
  }
}

// toml++ 3.3 reaches TOML_UNREACHABLE, i.e. undefined behaviour in a release
// build, on non-ASCII characters outside strings and after a line-ending
// backslash in a multi-line string (its generated whitespace table is wrong;
// found by fuzz_config). So before toml++ sees it, a file must be ASCII except
// in comments: non-ASCII text in a string is written as \uXXXX. This is only
// TOML's lexical layer (strings and comments), to tell a comment from a '#'
// inside a string; on malformed input it errs like toml++, which stops there.
std::optional<Error> non_ascii_outside_comments(std::string_view text, const std::string& file) {
  enum class In { code, basic, literal, ml_basic, ml_literal, comment } in = In::code;
  bool escaped = false;  // the previous byte was a backslash in a basic string
  int line = 1;
  std::size_t line_start = 0;
  auto at = [&text](std::size_t i, std::string_view s) { return text.substr(i, s.size()) == s; };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80 && in != In::comment) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", u);
      return Error{file, line, "",
                   "non-ASCII byte " + std::string(hex) + " at column " + std::to_string(i - line_start + 1) +
                       ": the configuration is ASCII outside comments (in a \"string\", write \\uXXXX)"};
    }
    if (c == '\n') {
      ++line;
      line_start = i + 1;
      escaped = false;
      // A single-line string cannot span lines: toml++ stops there.
      if (in == In::comment || in == In::basic || in == In::literal) in = In::code;
      continue;
    }
    if (escaped) {
      escaped = false;
      continue;
    }
    switch (in) {
      case In::comment: break;
      case In::code:
        if (c == '#') in = In::comment;
        else if (at(i, R"(""")")) in = In::ml_basic, i += 2;
        else if (at(i, "'''")) in = In::ml_literal, i += 2;
        else if (c == '"') in = In::basic;
        else if (c == '\'') in = In::literal;
        break;
      case In::basic:
        if (c == '\\') escaped = true;
        else if (c == '"') in = In::code;
        break;
      case In::ml_basic:
        if (c == '\\') escaped = true;
        else if (at(i, R"(""")")) in = In::code, i += 2;
        break;
      case In::literal:
        if (c == '\'') in = In::code;
        break;
      case In::ml_literal:
        if (at(i, "'''")) in = In::code, i += 2;
        break;
    }
  }
  return std::nullopt;
}

Config parse(std::string_view text, const std::string& name) {
  if (auto error = non_ascii_outside_comments(text, name)) throw LoadError({*error});
  try {
    toml::table root = toml::parse(text, name);
    // Checked first and alone: the other checks would echo the value back.
    std::vector<Error> nul_errors;
    find_nul_bytes(root, "", name, nul_errors);
    if (!nul_errors.empty()) throw LoadError(std::move(nul_errors));
    return build(root, name);
  } catch (const toml::parse_error& e) {
    throw LoadError({{name, static_cast<int>(e.source().begin.line), "",
                      "TOML syntax: " + std::string(e.description())}});
  }
}

}  // namespace

Config load_string(std::string_view toml_text, const std::string& display_name) {
  return parse(toml_text, display_name);
}

Config load_file(const std::string& path) {
  auto refuse = [&path](std::string reason) { throw LoadError({{path, 0, "", std::move(reason)}}); };
  // O_NONBLOCK: opening a FIFO must not wait for a writer. Only a regular
  // file is read (a directory, /dev/zero or a pipe is a mistake, not a config).
  util::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd) refuse(std::string("cannot read: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) refuse(std::string("cannot inspect: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) refuse("not a regular file");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    refuse(std::string("cannot read: ") + std::strerror(errno));
  // One byte past the limit tells "too large" from "exactly the limit",
  // whatever st_size said (the file may grow while we read).
  std::string text(max_file_bytes + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) refuse(std::string("cannot read: ") + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > max_file_bytes) refuse("larger than " + std::to_string(max_file_bytes) + " bytes");
  text.resize(got);
  return parse(text, path);
}

}  // namespace pisec::config
