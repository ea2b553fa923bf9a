#pragma once
// The TCP listening side the mux and pisec-verifier share (header-only, Boost.Asio
// C++20 coroutines): open a listening socket, accept the next connection.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/asio.hpp>
#include <boost/asio/redirect_error.hpp>
#include <chrono>
#include <optional>

namespace pisec::net {

// Bound and listening, SO_REUSEADDR set. Throws boost::system::system_error.
inline boost::asio::ip::tcp::acceptor listen(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& at) {
  boost::asio::ip::tcp::acceptor acceptor(io);
  acceptor.open(at.protocol());
  acceptor.set_option(boost::asio::socket_base::reuse_address(true));
  acceptor.bind(at);
  acceptor.listen(boost::asio::socket_base::max_listen_connections);
  return acceptor;
}

// The next connection; nullopt once the acceptor is closed. Any other accept
// error (out of fds, most likely) waits 100 ms on `pause` instead of spinning.
inline boost::asio::awaitable<std::optional<boost::asio::ip::tcp::socket>> accept_next(
    boost::asio::ip::tcp::acceptor& acceptor, boost::asio::steady_timer& pause) {
  for (;;) {
    boost::system::error_code ec;
    auto socket = co_await acceptor.async_accept(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec == boost::asio::error::operation_aborted) co_return std::nullopt;
    if (!ec) co_return std::move(socket);
    pause.expires_after(std::chrono::milliseconds(100));
    co_await pause.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  }
}

}  // namespace pisec::net
