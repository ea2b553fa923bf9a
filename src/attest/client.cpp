// The device's HTTPS client for the attestation exchange (include/pisec/attest_client.hpp).
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include "../compat/openssl_asio.hpp"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>
#include <nlohmann/json.hpp>

#include "pisec/attest_client.hpp"

namespace pisec::attest {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

Url parse_https_url(const std::string& url) {
  constexpr std::string_view scheme = "https://";
  if (url.rfind(scheme, 0) != 0) throw Error("verifier URL: must start with https://, got \"" + url + "\"");
  std::string rest = url.substr(scheme.size());
  Url u;
  const auto slash = rest.find('/');
  if (slash != std::string::npos) {
    u.prefix = rest.substr(slash);
    rest.erase(slash);
    while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  }
  const auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    u.port = rest.substr(colon + 1);
    rest.erase(colon);
    if (u.port.empty() || u.port.size() > 5 || u.port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(u.port) < 1 || std::stoi(u.port) > 65535)
      throw Error("verifier URL: bad port in \"" + url + "\"");
  }
  if (rest.size() > 2 && rest.front() == '[' && rest.back() == ']') rest = rest.substr(1, rest.size() - 2);
  if (rest.empty()) throw Error("verifier URL: no host in \"" + url + "\"");
  u.host = rest;
  return u;
}

struct Client::Impl {
  asio::io_context io;
  ssl::context tls{ssl::context::tls_client};
  std::optional<beast::ssl_stream<beast::tcp_stream>> stream;
  beast::flat_buffer buffer;
  std::chrono::seconds timeout;
  std::string host_header;
};

Client::Client(const Url& url, const std::string& ca_file, std::chrono::seconds timeout,
               const std::string& connect_host)
    : impl_(std::make_unique<Impl>()), prefix_(url.prefix) {
  auto& s = *impl_;
  s.timeout = timeout;
  s.host_header = url.host;
  try {
    s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (ca_file.empty())
      s.tls.set_default_verify_paths();
    else
      s.tls.load_verify_file(ca_file);
    s.stream.emplace(s.io, s.tls);
    s.stream->set_verify_mode(ssl::verify_peer);
    s.stream->set_verify_callback(ssl::host_name_verification(url.host));
    // SSL_set_tlsext_host_name, spelled out: the macro's C cast trips -Wold-style-cast.
    if (SSL_ctrl(s.stream->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(url.host.c_str())) != 1)
      throw NoAnswer("cannot set the TLS server name");
    auto& lowest = beast::get_lowest_layer(*s.stream);
    lowest.expires_after(timeout);
    const std::string& where = connect_host.empty() ? url.host : connect_host;
    boost::system::error_code literal;
    const auto address = asio::ip::make_address(where, literal);
    if (!literal) {  // an IP literal needs no lookup (nor glibc's NSS in a static binary)
      lowest.connect(tcp::endpoint(address, static_cast<std::uint16_t>(std::stoi(url.port))));
    } else {
#if defined(PISEC_NO_GETADDRINFO)
      // The static build links no getaddrinfo (it would load NSS modules that
      // do not exist on the device): pisecd attest resolves with c-ares and
      // passes an address.
      throw NoAnswer("verifier " + url.host + ": \"" + where + "\" is not an IP address");
#else
      tcp::resolver resolver(s.io);
      lowest.connect(resolver.resolve(where, url.port));
#endif
    }
    s.stream->handshake(ssl::stream_base::client);
  } catch (const boost::system::system_error& e) {
    throw NoAnswer("verifier " + url.host + ":" + url.port + ": " + e.what());
  }
}

Client::~Client() = default;

std::pair<int, std::string> Client::post(const std::string& target, const std::string& body) {
  auto& s = *impl_;
  try {
    http::request<http::string_body> req{http::verb::post, prefix_ + target, 11};
    req.set(http::field::host, s.host_header);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    beast::get_lowest_layer(*s.stream).expires_after(s.timeout);
    http::write(*s.stream, req);
    http::response_parser<http::string_body> parser;
    parser.body_limit(max_envelope_bytes);
    http::read(*s.stream, s.buffer, parser);
    return {parser.get().result_int(), parser.get().body()};
  } catch (const boost::system::system_error& e) {
    throw NoAnswer(std::string(target) + ": " + e.what());
  }
}

std::string Client::challenge(const std::string& device_id) {
  auto [code, body] = post("/v1/challenge", json{{"device_id", device_id}}.dump());
  if (code != 200) throw NoAnswer("challenge: HTTP " + std::to_string(code) + " " + body.substr(0, 200));
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("nonce") || !j["nonce"].is_string() || !valid_nonce(j["nonce"].get<std::string>()))
    throw NoAnswer("challenge: no nonce in the answer");
  return j["nonce"].get<std::string>();
}

Result Client::evidence(const std::string& sealed_report, const std::string& nonce,
                        const crypto::PublicKey& verifier) {
  auto [code, body] = post("/v1/evidence", sealed_report);
  if (code != 200) throw NoAnswer("evidence: HTTP " + std::to_string(code) + " " + body.substr(0, 200));
  Result r;
  try {
    r = open_result(body, verifier);
  } catch (const Error& e) {
    throw NoAnswer(std::string("evidence: the answer is refused: ") + e.what());
  }
  if (r.nonce != nonce) throw NoAnswer("evidence: the answer is for another nonce");
  return r;
}

}  // namespace pisec::attest
