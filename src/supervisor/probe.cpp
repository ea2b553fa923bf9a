// The liveness probe's I/O: one HTTP GET or TCP connect, bounded in time.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>

#include "pisec/supervisor.hpp"

namespace pisec::supervisor {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

void probe_once(asio::io_context& io, const ProbeTarget& target, std::chrono::milliseconds timeout,
                std::function<void(bool ok, const std::string& why)> done) {
  auto stream = std::make_shared<beast::tcp_stream>(io);
  stream->expires_after(timeout);
  boost::system::error_code ec;
  // The config admits an IPv4 address or "localhost" only (no DNS here).
  auto addr = asio::ip::make_address(target.host == "localhost" ? "127.0.0.1" : target.host, ec);
  if (ec) return done(false, "probe host must be an IP address: " + target.host);
  asio::ip::tcp::endpoint ep(addr, target.port);
  stream->async_connect(ep, [stream, target, done = std::move(done)](boost::system::error_code cec) mutable {
    if (cec) return done(false, "connect: " + cec.message());
    if (target.kind == ProbeTarget::Kind::tcp) return done(true, "");
    auto req = std::make_shared<http::request<http::empty_body>>(http::verb::get, target.path, 11);
    req->set(http::field::host, target.host);
    req->set(http::field::user_agent, "pisecd-probe");
    http::async_write(*stream, *req, [stream, req, done = std::move(done)](boost::system::error_code wec,
                                                                          std::size_t) mutable {
      if (wec) return done(false, "write: " + wec.message());
      auto buf = std::make_shared<beast::flat_buffer>();
      auto res = std::make_shared<http::response<http::string_body>>();
      http::async_read(*stream, *buf, *res,
                       [stream, buf, res, done = std::move(done)](boost::system::error_code rec, std::size_t) {
                         if (rec) return done(false, "read: " + rec.message());
                         const int status = res->result_int();
                         done(status >= 200 && status < 400, "HTTP " + std::to_string(status));
                       });
    });
  });
}

}  // namespace pisec::supervisor
