// [mux] to the mux's options, and endpoint strings to endpoints.
#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <stdexcept>

#include "pisec/mux.hpp"

namespace pisec::mux {

Endpoint parse_endpoint(std::string_view text) {
  Endpoint e;
  if (text.rfind("unix:", 0) == 0) {
    e.kind = Endpoint::Kind::unix_socket;
    e.path = std::string(text.substr(5));
    if (e.path.empty() || e.path[0] != '/') throw std::invalid_argument("unix socket path must be absolute");
    return e;
  }
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw std::invalid_argument("expected [address]:port");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) throw std::invalid_argument("expected address:port or unix:/path");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || end != port.data() + port.size() || value < 1 || value > 65535)
    throw std::invalid_argument("port must be 1-65535");
  e.port = static_cast<std::uint16_t>(value);
  e.host = std::string(host);
  // No DNS here: an address, or "localhost" for 127.0.0.1.
  boost::system::error_code bad;
  boost::asio::ip::make_address(e.host == "localhost" ? "127.0.0.1" : e.host, bad);
  if (bad) throw std::invalid_argument("\"" + e.host + "\" is not an IP address");
  return e;
}

Options Options::from_config(const config::Mux& m) {
  Options o;
  auto endpoint = [](const std::string& key, const std::string& value) {
    try {
      return parse_endpoint(value);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("mux." + key + ": " + e.what());
    }
  };
  o.listen = endpoint("listen", m.listen);
  if (o.listen.kind != Endpoint::Kind::tcp) throw std::invalid_argument("mux.listen: must be address:port");
  o.upstream = endpoint("upstream", m.upstream);
  auto token = parse_token_digest(m.token_sha256);
  if (!token) throw std::invalid_argument("mux.token_sha256: must be 64 lowercase hex digits");
  o.token = *token;
  o.control_socket = m.daemon_socket;
  o.max_connections = static_cast<std::size_t>(m.max_connections);
  o.header_timeout = std::chrono::milliseconds(m.header_timeout_ms);
  o.idle_timeout = std::chrono::milliseconds(m.idle_timeout_ms);
  o.max_header_bytes = static_cast<std::size_t>(m.max_header_bytes);
  o.auth_failure_limit = static_cast<std::size_t>(m.auth_failure_limit);
  o.auth_failure_window = std::chrono::seconds(m.auth_failure_window_s);
  return o;
}

}  // namespace pisec::mux

namespace pisec::mux {
namespace {

struct IntFlag {
  const char* flag;
  int config::Mux::*field;
};
constexpr IntFlag int_flags[] = {
    {"--max-connections", &config::Mux::max_connections},
    {"--header-timeout-ms", &config::Mux::header_timeout_ms},
    {"--idle-timeout-ms", &config::Mux::idle_timeout_ms},
    {"--max-header-bytes", &config::Mux::max_header_bytes},
    {"--auth-failure-limit", &config::Mux::auth_failure_limit},
    {"--auth-failure-window-s", &config::Mux::auth_failure_window_s},
};
struct StringFlag {
  const char* flag;
  std::string config::Mux::*field;
};
constexpr StringFlag string_flags[] = {
    {"--listen", &config::Mux::listen},
    {"--upstream", &config::Mux::upstream},
    {"--token-sha256", &config::Mux::token_sha256},
    {"--daemon-socket", &config::Mux::daemon_socket},
};

}  // namespace

std::vector<std::string> to_args(const config::Mux& mux) {
  std::vector<std::string> out;
  for (const auto& f : string_flags) {
    out.emplace_back(f.flag);
    out.push_back(mux.*f.field);
  }
  for (const auto& f : int_flags) {
    out.emplace_back(f.flag);
    out.push_back(std::to_string(mux.*f.field));
  }
  return out;
}

void apply_args(const std::vector<std::string>& args, config::Mux& mux) {
  for (std::size_t i = 0; i < args.size(); i += 2) {
    const std::string& flag = args[i];
    if (i + 1 >= args.size()) throw std::invalid_argument(flag + " needs a value");
    const std::string& value = args[i + 1];
    bool known = false;
    for (const auto& f : string_flags)
      if (flag == f.flag) {
        mux.*f.field = value;
        known = true;
      }
    for (const auto& f : int_flags)
      if (flag == f.flag) {
        int n = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc{} || end != value.data() + value.size() || n < 1)
          throw std::invalid_argument(flag + " must be a positive whole number, got \"" + value + "\"");
        mux.*f.field = n;
        known = true;
      }
    if (!known) throw std::invalid_argument("unknown option " + flag);
  }
}

}  // namespace pisec::mux
