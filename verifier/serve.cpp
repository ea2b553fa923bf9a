// `pisec-verifier serve`: HTTPS (TLS 1.2+), one Asio loop, one coroutine per
// connection, the store used from that one thread. Each connection must
// finish its handshake and each request within request_timeout; bodies are
// bounded by max_body_bytes.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <iostream>

#include "pisec/net.hpp"
#include "pisec/verifier.hpp"

namespace pisec::verifier {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using error_code = boost::system::error_code;

auto with(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Server {
  const ServeOptions& opt;
  Store store;
  ssl::context tls{ssl::context::tls_server};
  std::size_t open = 0;
  std::uint64_t decisions = 0;
};

struct OpenCount {
  explicit OpenCount(std::size_t& n) : count(n) { ++count; }
  ~OpenCount() { --count; }
  OpenCount(const OpenCount&) = delete;
  OpenCount& operator=(const OpenCount&) = delete;
  std::size_t& count;
};

Response route(Server& s, const http::request<http::string_body>& req) {
  Request r{std::string(req.method_string()), std::string(req.target()),
            std::string(req[http::field::authorization]), req.body()};
  Response a = handle(r, s.store, s.opt.settings, unix_now());
  if (a.status == 200 && r.target == "/v1/evidence") ++s.decisions;
  return a;
}

awaitable<void> session(Server& s, tcp::socket socket) {
  OpenCount counted(s.open);
  beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), s.tls);
  const auto timeout = std::chrono::seconds(s.opt.request_timeout_s);
  error_code ec;
  beast::get_lowest_layer(stream).expires_after(timeout);
  co_await stream.async_handshake(ssl::stream_base::server, with(ec));
  if (ec) co_return;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(8192);
    parser.body_limit(s.opt.max_body_bytes);
    beast::get_lowest_layer(stream).expires_after(timeout);
    co_await http::async_read(stream, buffer, parser, with(ec));
    if (ec) {
      if (ec == http::error::body_limit || ec == http::error::header_limit) {
        http::response<http::string_body> res{http::status::payload_too_large, 11};
        res.body() = R"({"error":"request too large"})";
        res.keep_alive(false);
        res.prepare_payload();
        co_await http::async_write(stream, res, with(ec));
        // Lingering close, as nginx does: read (and drop) what the client is
        // still sending for a moment, or closing with unread data resets the
        // connection and the client may never see the 413.
        std::vector<char> sink(16384);
        std::size_t drained = 0;
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
        while (!ec && drained < (1u << 20)) drained += co_await stream.async_read_some(asio::buffer(sink), with(ec));
      }
      break;
    }
    const auto& req = parser.get();
    Response a = route(s, req);
    http::response<http::string_body> res{static_cast<http::status>(a.status), req.version()};
    res.set(http::field::server, "pisec-verifier");
    res.set(http::field::content_type, a.content_type);
    for (const auto& [name, value] : a.headers) res.set(name, value);
    res.keep_alive(req.keep_alive());
    res.body() = std::move(a.body);
    res.prepare_payload();
    co_await http::async_write(stream, res, with(ec));
    if (ec || !req.keep_alive()) break;
  }
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
  co_await stream.async_shutdown(with(ec));
}

awaitable<void> accept_loop(Server& s, tcp::acceptor& acceptor) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer pause(executor);
  while (auto accepted = co_await net::accept_next(acceptor, pause)) {
    tcp::socket socket = std::move(*accepted);
    error_code ec;
    if (s.open >= s.opt.max_connections) {
      socket.close(ec);
      continue;
    }
    asio::co_spawn(executor, session(s, std::move(socket)), asio::detached);
  }
}

}  // namespace

int serve(const ServeOptions& o) {
  asio::io_context io(1);
  Server s{o, Store(o.db)};
  s.tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  s.tls.use_certificate_chain_file(o.cert_file);
  s.tls.use_private_key_file(o.key_file, ssl::context::pem);
  tcp::endpoint at(asio::ip::make_address(o.listen_host), o.listen_port);
  tcp::acceptor acceptor = net::listen(io, at);
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const error_code&, int) { io.stop(); });
  asio::co_spawn(io, accept_loop(s, acceptor), asio::detached);
  std::cerr << "pisec-verifier: listening on " << acceptor.local_endpoint() << '\n';
  io.run();
  std::cerr << "pisec-verifier: stopped after " << s.decisions << " decisions\n";
  return 0;
}

}  // namespace pisec::verifier
