// libFuzzer target for what the mux does with a request before it is relayed
// or answered: Beast's header parser with the mux's limits, then the routing
// and /debug/logs query reading on whatever target came through. Any input
// must end in a parse error or a route, never a crash (ASan/UBSan).
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "pisec/mux.hpp"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::request_parser<http::buffer_body> parser;
  parser.header_limit(16384);
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  parser.eager(false);
  boost::beast::error_code ec;
  std::size_t used = parser.put(boost::asio::buffer(data, size), ec);
  (void)used;
  if (!ec && parser.is_header_done()) {
    const auto& req = parser.get();
    pisec::mux::Request r = pisec::mux::classify(req.target());
    if (r.route == pisec::mux::Route::debug_logs && r.error.empty() && r.logs.n > pisec::mux::max_logs_n)
      __builtin_trap();  // the query reader must have refused it
    (void)req[http::field::authorization];
  }
  // The target on its own, with bytes a parser would refuse.
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  (void)pisec::mux::classify(raw);
  return 0;
}
