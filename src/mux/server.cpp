// `pisecd mux`: one Asio loop, one coroutine per client connection.
//
// A connection reads one request header at a time (header_timeout from its
// first byte, idle_timeout between requests, max_header_bytes), then either
// relays it to the payload — headers and bodies streamed both ways through a
// fixed buffer, never held whole — or answers /debug/* itself after checking
// the bearer token. Each client connection keeps at most one upstream
// connection, reused while both sides keep alive.
#include <utility>  // before Boost.Asio with GCC 12 and C++20

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <array>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include "pisec/mux.hpp"
#include "pisec/net.hpp"
#include "pisec/util.hpp"

namespace pisec::mux {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;
// One stream type for every connection — the client's (TCP), the app's (TCP
// or a Unix socket) and the daemon's (Unix): each Beast operation is then
// compiled once, not once per socket type (issue 14: the mux was a tenth of
// the ARMv6 binary).
using generic = asio::generic::stream_protocol;
using error_code = boost::system::error_code;

// A connection: Beast's basic_stream (per-operation timeouts) behind a
// narrow waist. Beast's HTTP operations and Asio's composed reads and writes
// call read_some/write_some with their own buffer sequence and handler
// types, and basic_stream would compile its timed transfer and the socket's
// reactor operation anew for each pair (65 copies in the mux). Here the
// buffers are gathered into one array type and the handler is boxed behind
// one type, so the timed transfer is compiled once for reading and once for
// writing. Every operation completes on the connection's io_context, the one
// thread the mux runs, so the boxed handler is called directly.
class stream {
 public:
  using timed = beast::basic_stream<generic>;
  using executor_type = timed::executor_type;

  explicit stream(asio::io_context& io) : s_(io) {}
  explicit stream(generic::socket&& socket) : s_(std::move(socket)) {}

  executor_type get_executor() noexcept { return s_.get_executor(); }
  generic::socket& socket() noexcept { return s_.socket(); }
  bool is_open() const { return s_.socket().is_open(); }
  void expires_after(std::chrono::steady_clock::duration d) { s_.expires_after(d); }
  void expires_never() { s_.expires_never(); }
  void close() { s_.close(); }
  template <class Token>
  auto async_connect(const generic::endpoint& at, Token&& token) {
    return s_.async_connect(at, std::forward<Token>(token));
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          read_some(Buffers<asio::mutable_buffer>(b), Boxed(std::move(handler)));
        },
        token, buffers);
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          write_some(Buffers<asio::const_buffer>(b), Boxed(std::move(handler)));
        },
        token, buffers);
  }

 private:
  // Up to 16 buffers of a sequence (a partial read or write is allowed to
  // use fewer; the composed operations call again for the rest).
  template <class Buffer>
  struct Buffers {
    template <class Sequence>
    explicit Buffers(const Sequence& seq) {
      for (auto it = asio::buffer_sequence_begin(seq); it != asio::buffer_sequence_end(seq) && n < b.size(); ++it)
        if (Buffer one(*it); one.size() != 0) b[n++] = one;
    }
    const Buffer* begin() const { return b.data(); }
    const Buffer* end() const { return b.data() + n; }
    std::array<Buffer, 16> b{};
    std::size_t n = 0;
  };
  // A move-only completion handler behind one type.
  struct Boxed {
    struct Base {
      virtual ~Base() = default;
      virtual void call(error_code ec, std::size_t n) = 0;
    };
    template <class Handler>
    struct Impl final : Base {
      explicit Impl(Handler&& h) : handler(std::move(h)) {}
      void call(error_code ec, std::size_t n) override { std::move(handler)(ec, n); }
      Handler handler;
    };
    template <class Handler>
    explicit Boxed(Handler&& h) : box(std::make_unique<Impl<Handler>>(std::move(h))) {}
    void operator()(error_code ec, std::size_t n) {
      auto once = std::move(box);  // the call may start the next operation on this stream
      once->call(ec, n);
    }
    std::unique_ptr<Base> box;
  };
  void read_some(Buffers<asio::mutable_buffer> b, Boxed done) { s_.async_read_some(b, std::move(done)); }
  void write_some(Buffers<asio::const_buffer> b, Boxed done) { s_.async_write_some(b, std::move(done)); }

  timed s_;
};
using asio::awaitable;

auto with(error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

constexpr std::chrono::seconds daemon_timeout{3};
constexpr std::size_t body_chunk = 8192;
constexpr std::uint32_t upstream_header_limit = 64 * 1024;
// Bodies are streamed, never held, so they need no limit. Not boost::none:
// Boost 1.74 compares a Content-Length against an empty optional as "over".
constexpr std::uint64_t no_body_limit = std::numeric_limits<std::uint64_t>::max();

// One request as the log and the metrics see it.
struct Exchange {
  std::string rid;     // X-Request-Id
  std::string source;  // the client's address
  int code = 0;        // the status sent (0: none, the connection broke first)
};

struct Mux {
  Mux(asio::io_context& io_, const Options& o)
      : io(io_), opt(o), limiter(o.auth_failure_limit, o.auth_failure_window) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&id_prefix), sizeof id_prefix) != 1) id_prefix = 0;
  }
  asio::io_context& io;
  Options opt;
  Counters counters;
  FailureLimiter limiter;
  std::uint64_t id_prefix = 0;
  std::uint64_t id_seq = 0;

  // Unique per process run: a random prefix and a counter.
  std::string request_id() {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(id_prefix),
                  static_cast<unsigned long long>(++id_seq));
    return buf;
  }
  // The mux's log: stderr, which the daemon keeps (redacted, like the
  // payload's output) in its log ring. One write per line, so lines never
  // interleave in the daemon's capture.
  static void log_line(std::string line) {
    line += '\n';
    [[maybe_unused]] ssize_t n = ::write(2, line.data(), line.size());
  }
  void note(const Exchange& ex, const std::string& what) { log_line(ex.rid + " " + what); }
  // Counts a request and logs it.
  void finished(const Exchange& ex, const char* cls, std::string_view method, std::string_view target) {
    ++counters.requests[{cls, ex.code}];
    std::string line = ex.rid + " " + ex.source + " \"";
    for (std::string_view part : {method, std::string_view(" "), target})
      for (char c : part) line += (c >= 0x20 && c < 0x7f && c != '"') ? c : '?';
    log_line(line + "\" " + std::to_string(ex.code));
  }
};

struct OpenConnection {
  explicit OpenConnection(Counters& c) : counters(c) { ++counters.open_connections; }
  ~OpenConnection() { --counters.open_connections; }
  OpenConnection(const OpenConnection&) = delete;
  OpenConnection& operator=(const OpenConnection&) = delete;
  Counters& counters;
};

bool is_disconnect(const error_code& ec) {
  return ec == asio::error::eof || ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == http::error::partial_message;
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// A whole small response; returns whether the connection may serve another request.
awaitable<bool> respond(Mux& m, stream& client, Exchange& ex, unsigned version, bool keep,
                        http::status status, std::string body = {},
                        const char* content_type = "text/plain; charset=utf-8", const Headers& extra = {}) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::server, "pisecd-mux");
  res.set("X-Request-Id", ex.rid);
  for (const auto& [k, v] : extra) res.set(k, v);
  if (!body.empty()) res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.keep_alive(keep);
  res.prepare_payload();
  error_code ec;
  client.expires_after(m.opt.idle_timeout);
  co_await http::async_write(client, res, with(ec));
  ex.code = static_cast<int>(status);
  co_return !ec && keep;
}

// ---- the daemon's read-only channel -------------------------------------------

awaitable<bool> daemon_connect(Mux& m, stream& s, const nlohmann::json& request) {
  error_code ec;
  s.expires_after(daemon_timeout);
  co_await s.async_connect(generic::endpoint(local::endpoint(m.opt.control_socket)), with(ec));
  if (ec) co_return false;
  std::string line = request.dump() + "\n";
  co_await asio::async_write(s, asio::buffer(line), with(ec));
  co_return !ec;
}

// Reads one line (without '\n') from `in`, reading more from s as needed.
awaitable<std::optional<std::string>> read_line(stream& s, std::string& in) {
  error_code ec;
  auto buffer = asio::dynamic_buffer(in, 1 << 20);
  std::size_t n = co_await asio::async_read_until(s, buffer, '\n', with(ec));
  if (ec) co_return std::nullopt;
  std::string line = in.substr(0, n - 1);
  in.erase(0, n);
  co_return line;
}

// One request, one JSON answer with "ok": true; nullopt if the daemon cannot be reached or refuses.
awaitable<std::optional<nlohmann::json>> daemon_ask(Mux& m, const nlohmann::json& request) {
  stream s(m.io);
  if (!co_await daemon_connect(m, s, request)) co_return std::nullopt;
  std::string in;
  auto line = co_await read_line(s, in);
  if (!line) co_return std::nullopt;
  auto reply = nlohmann::json::parse(*line, nullptr, false);
  if (reply.is_discarded() || !reply.is_object() || reply.value("ok", false) != true) co_return std::nullopt;
  co_return reply;
}

// ---- /debug/* -----------------------------------------------------------------

// Reads (and drops) what the client sends until it goes, then ends the follow.
// A free coroutine: GCC 12 miscompiles lambda coroutines that hold arrays.
awaitable<void> watch_client(generic::socket* socket, std::shared_ptr<stream> daemon,
                             std::shared_ptr<bool> done) {
  std::vector<char> sink(512);
  error_code ec;
  while (!ec) co_await socket->async_read_some(asio::buffer(sink), with(ec));
  if (!*done) daemon->close();
}

awaitable<bool> serve_logs(Mux& m, stream& client, unsigned version, bool keep,
                           const LogsQuery& q, Exchange& ex) {
  auto s = std::make_shared<stream>(m.io);
  std::string in;
  std::optional<std::string> head;
  // (Requests are built before co_await: GCC 12 rejects braced string
  // literals among a co_await expression's temporaries.)
  nlohmann::json request = {{"cmd", "logs"}, {"n", q.n}, {"follow", q.follow}};
  if (co_await daemon_connect(m, *s, request))
    head = co_await read_line(*s, in);
  auto header = head ? nlohmann::json::parse(*head, nullptr, false) : nlohmann::json();
  if (!header.is_object() || header.value("ok", false) != true)
    co_return co_await respond(m, client, ex, version, keep, http::status::service_unavailable,
                               "daemon unreachable\n");

  keep = keep && !q.follow;
  http::response<http::empty_body> res{http::status::ok, version};
  res.set(http::field::server, "pisecd-mux");
  res.set(http::field::content_type, "application/x-ndjson");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Request-Id", ex.rid);
  res.keep_alive(keep);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  error_code ec;
  client.expires_after(m.opt.idle_timeout);
  co_await http::async_write_header(client, sr, with(ec));
  if (ec) co_return false;
  ex.code = 200;

  // While following, nothing is written for as long as the payload is quiet:
  // a read on the client notices when it goes, and ends the follow.
  auto done = std::make_shared<bool>(false);
  if (q.follow) {
    s->expires_never();
    asio::co_spawn(m.io, watch_client(&client.socket(), s, done), asio::detached);
  }

  bool ended = false;
  while (!ended) {
    if (!q.follow) s->expires_after(daemon_timeout);
    auto buffer = asio::dynamic_buffer(in, 1 << 20);
    co_await asio::async_read_until(*s, buffer, '\n', with(ec));
    if (ec) break;
    std::string out;
    std::size_t start = 0, nl;
    while ((nl = in.find('\n', start)) != std::string::npos) {
      std::string_view line(in.data() + start, nl - start);
      start = nl + 1;
      // Entries start with "seq"; {"end":true} closes a dump; anything else
      // (an eviction notice) ends the stream too.
      if (line.rfind("{\"seq\":", 0) != 0) {
        ended = true;
        break;
      }
      out.append(line).push_back('\n');
    }
    in.erase(0, start);
    if (!out.empty()) {
      client.expires_after(m.opt.idle_timeout);
      co_await asio::async_write(client, http::make_chunk(asio::buffer(out)), with(ec));
      if (ec) break;
    }
  }
  *done = true;
  s->close();
  if (ec && !ended) co_return false;  // the daemon or the client went away mid-stream
  client.expires_after(m.opt.idle_timeout);
  co_await asio::async_write(client, http::make_chunk_last(), with(ec));
  co_return !ec && keep;
}

awaitable<bool> serve_debug(Mux& m, stream& client, http::request_parser<http::buffer_body>& parser,
                            const Request& r, Exchange& ex) {
  auto& req = parser.get();
  const unsigned v = req.version();
  const bool has_body = !parser.is_done();
  const bool keep = req.keep_alive() && !has_body;  // an unread body cannot stay on the connection
  const auto now = FailureLimiter::Clock::now();
  // (Header lists are built before co_await: GCC 12 rejects braced string
  // literals among a co_await expression's temporaries.)
  if (m.limiter.blocked(ex.source, now)) {
    const Headers retry = {{"Retry-After", std::to_string(m.opt.auth_failure_window.count())}};
    co_return co_await respond(m, client, ex, v, keep, http::status::too_many_requests, {}, "", retry);
  }
  if (!bearer_matches(req[http::field::authorization], m.opt.token)) {
    m.limiter.failed(ex.source, now);
    ++m.counters.auth_failures;
    const Headers challenge = {{"WWW-Authenticate", "Bearer"}};
    co_return co_await respond(m, client, ex, v, keep, http::status::unauthorized, {}, "", challenge);
  }
  if (req.method() != http::verb::get) {
    const Headers allow = {{"Allow", "GET"}};
    co_return co_await respond(m, client, ex, v, keep, http::status::method_not_allowed,
                               "only GET\n", "text/plain; charset=utf-8", allow);
  }
  if (has_body)
    co_return co_await respond(m, client, ex, v, false, http::status::bad_request,
                               "a /debug/ request has no body\n");
  switch (r.route) {
    case Route::debug_logs:
      if (!r.error.empty())
        co_return co_await respond(m, client, ex, v, keep, http::status::bad_request, r.error + "\n");
      co_return co_await serve_logs(m, client, v, keep, r.logs, ex);
    case Route::debug_status: {
      const nlohmann::json request = {{"cmd", "status"}};
      auto reply = co_await daemon_ask(m, request);
      if (!reply || !reply->contains("status"))
        co_return co_await respond(m, client, ex, v, keep, http::status::service_unavailable,
                                   "daemon unreachable\n");
      co_return co_await respond(m, client, ex, v, keep, http::status::ok,
                                 (*reply)["status"].dump(-1, ' ', true) + "\n", "application/json");
    }
    case Route::debug_metrics: {
      const nlohmann::json status_request = {{"cmd", "status"}}, metrics_request = {{"cmd", "metrics"}};
      auto st = co_await daemon_ask(m, status_request);
      auto dm = co_await daemon_ask(m, metrics_request);
      status::Snapshot snapshot;
      DaemonMetrics daemon;
      bool answered = st && dm;
      if (answered) {
        try {
          snapshot = status::from_json((*st)["status"].dump());
          const auto& d = (*dm)["metrics"];
          daemon.ring_bytes_used = d.at("ring_bytes_used").get<std::uint64_t>();
          daemon.ring_bytes_limit = d.at("ring_bytes_capacity").get<std::uint64_t>();
          daemon.lines_dropped = d.at("lines_dropped").get<std::uint64_t>();
          for (const auto& rule : d.at("rules"))
            daemon.rules.push_back({rule.at("chain").get<std::string>(), rule.at("index").get<std::size_t>(),
                                    rule.at("packets").get<std::uint64_t>(), rule.at("bytes").get<std::uint64_t>()});
        } catch (const std::exception&) {
          answered = false;
        }
      }
      if (!answered)
        co_return co_await respond(m, client, ex, v, keep, http::status::service_unavailable,
                                   "daemon unreachable\n");
      std::string text = render_metrics(snapshot, daemon, m.counters);
      co_return co_await respond(m, client, ex, v, keep, http::status::ok, std::move(text),
                                 "text/plain; version=0.0.4; charset=utf-8");
    }
    default:
      co_return co_await respond(m, client, ex, v, keep, http::status::not_found, "no such endpoint\n");
  }
}

// ---- the app ------------------------------------------------------------------

struct Upstream {
  std::optional<stream> conn;
  beast::flat_buffer buffer;
  bool open() const { return conn && conn->is_open(); }
  void reset() {
    conn.reset();
    buffer.clear();
  }
};

generic::endpoint upstream_endpoint(const Endpoint& e) {
  if (e.kind == Endpoint::Kind::tcp)
    return tcp::endpoint(asio::ip::make_address(e.host == "localhost" ? "127.0.0.1" : e.host), e.port);
  return local::endpoint(e.path);
}

awaitable<bool> proxy(Mux& m, stream& client, beast::flat_buffer& cbuf,
                      http::request_parser<http::buffer_body>& parser, Exchange& ex, Upstream& up) {
  auto& req = parser.get();
  const unsigned v = req.version();
  const bool has_body = !parser.is_done();
  error_code ec;

  // "Expect: 100-continue" is answered here, as nginx does, and not passed on:
  // the payload then never sends an interim response we would have to relay.
  if (beast::iequals(req[http::field::expect], "100-continue")) {
    req.erase(http::field::expect);
    http::response<http::empty_body> cont{http::status::continue_, v};
    client.expires_after(m.opt.idle_timeout);
    co_await http::async_write(client, cont, with(ec));
    if (ec) co_return false;
  }
  std::string forwarded(req["X-Forwarded-For"]);
  req.set("X-Forwarded-For", forwarded.empty() ? ex.source : forwarded + ", " + ex.source);
  req.set("X-Request-Id", ex.rid);

  std::array<char, body_chunk> body;
  std::optional<http::response_parser<http::buffer_body>> rp;
  // A kept-alive upstream connection may have been closed by the payload in
  // the meantime: a request without a body is tried once more on a new one.
  for (int attempt = 0;; ++attempt) {
    const bool reused = up.open();
    if (!reused) {
      up.reset();
      up.conn.emplace(m.io);
      up.conn->expires_after(m.opt.header_timeout);
      co_await up.conn->async_connect(upstream_endpoint(m.opt.upstream), with(ec));
      if (ec) {
        up.reset();
        co_return co_await respond(m, client, ex, v, req.keep_alive() && !has_body,
                                   http::status::service_unavailable, "payload unavailable\n");
      }
    }
    http::request_serializer<http::buffer_body> sr{req};
    do {
      if (!parser.is_done()) {
        req.body().data = body.data();
        req.body().size = body.size();
        client.expires_after(m.opt.idle_timeout);
        co_await http::async_read(client, cbuf, parser, with(ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {  // the client went away or broke off mid-body
          up.reset();
          co_return false;
        }
        req.body().size = body.size() - req.body().size;
        req.body().data = body.data();
        req.body().more = !parser.is_done();
      } else {
        req.body().data = nullptr;
        req.body().size = 0;
        req.body().more = false;
      }
      up.conn->expires_after(m.opt.idle_timeout);
      co_await http::async_write(*up.conn, sr, with(ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) break;
    } while (!parser.is_done() && !sr.is_done());

    if (!ec) {
      rp.emplace();
      rp->header_limit(upstream_header_limit);
      rp->body_limit(no_body_limit);
      if (req.method() == http::verb::head) rp->skip(true);
      up.conn->expires_after(m.opt.idle_timeout);
      co_await http::async_read_header(*up.conn, up.buffer, *rp, with(ec));
      // Interim responses other than 101 are not for the client.
      while (!ec && rp->get().result_int() / 100 == 1 && rp->get().result_int() != 101) {
        rp.emplace();
        rp->header_limit(upstream_header_limit);
        rp->body_limit(no_body_limit);
        if (req.method() == http::verb::head) rp->skip(true);
        co_await http::async_read_header(*up.conn, up.buffer, *rp, with(ec));
      }
    }
    if (!ec) break;
    up.reset();
    if (reused && attempt == 0 && !has_body && is_disconnect(ec)) continue;
    m.note(ex, "payload connection failed: " + ec.message());
    co_return co_await respond(m, client, ex, v, req.keep_alive() && parser.is_done(), http::status::bad_gateway,
                               "payload connection failed\n");
  }

  auto& res = rp->get();
  const int code = res.result_int();
  if (code == 101) {  // no protocol upgrades through the mux
    up.reset();
    co_return co_await respond(m, client, ex, v, false, http::status::bad_gateway,
                               "protocol upgrade refused\n");
  }
  const bool upstream_keep = res.keep_alive() && !rp->need_eof();
  const bool client_keep = req.keep_alive() && !rp->need_eof();
  res.set("X-Request-Id", ex.rid);
  res.keep_alive(client_keep);
  ex.code = code;
  http::response_serializer<http::buffer_body> rsr{res};
  do {
    if (!rp->is_done()) {
      res.body().data = body.data();
      res.body().size = body.size();
      up.conn->expires_after(m.opt.idle_timeout);
      co_await http::async_read(*up.conn, up.buffer, *rp, with(ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {  // the payload broke off mid-response: the client's copy is cut, so close
        up.reset();
        co_return false;
      }
      res.body().size = body.size() - res.body().size;
      res.body().data = body.data();
      res.body().more = !rp->is_done();
    } else {
      res.body().data = nullptr;
      res.body().size = 0;
      res.body().more = false;
    }
    client.expires_after(m.opt.idle_timeout);
    co_await http::async_write(client, rsr, with(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      up.reset();
      co_return false;
    }
  } while (!rp->is_done() && !rsr.is_done());
  if (!upstream_keep) up.reset();
  co_return client_keep;
}

// ---- connections ----------------------------------------------------------------

awaitable<void> session(Mux& m, tcp::socket socket) {
  OpenConnection open(m.counters);
  error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec) co_return;
  auto address = peer.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  const std::string source = address.to_string();
  const generic protocol(socket.local_endpoint(ec).protocol());
  if (ec) co_return;
  generic::socket raw(m.io);
  const auto fd = socket.release(ec);
  if (ec) co_return;
  raw.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    co_return;
  }
  stream client(std::move(raw));
  beast::flat_buffer buffer;
  Upstream up;
  bool first = true;
  for (;;) {
    // Waiting for a request is idle time; once it starts, the whole header
    // must arrive within header_timeout (slow senders are cut off).
    if (buffer.size() == 0) {
      client.expires_after(first ? m.opt.header_timeout : m.opt.idle_timeout);
      std::size_t n = co_await client.async_read_some(buffer.prepare(1024), with(ec));
      if (ec) break;
      buffer.commit(n);
    }
    client.expires_after(m.opt.header_timeout);
    http::request_parser<http::buffer_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(m.opt.max_header_bytes));
    parser.body_limit(no_body_limit);
    co_await http::async_read_header(client, buffer, parser, with(ec));
    Exchange ex{m.request_id(), source, 0};
    if (ec) {
      if (ec == http::error::header_limit)
        co_await respond(m, client, ex, 11, false, http::status::request_header_fields_too_large,
                         "request header too large\n");
      else if (ec != beast::error::timeout && !is_disconnect(ec) && ec != asio::error::operation_aborted)
        co_await respond(m, client, ex, 11, false, http::status::bad_request, "bad request\n");
      if (ex.code) m.finished(ex, "app", "-", "-");
      break;
    }
    first = false;
    const Request r = classify(parser.get().target());
    // Kept for the log line: the relay rewrites the request's header.
    const std::string method(parser.get().method_string()), target(parser.get().target());
    bool keep;
    if (r.route != Route::app)
      keep = co_await serve_debug(m, client, parser, r, ex);
    else
      keep = co_await proxy(m, client, buffer, parser, ex, up);
    m.finished(ex, r.route == Route::app ? "app" : "debug", method, target);
    if (!keep) break;
  }
  client.socket().shutdown(generic::socket::shutdown_send, ec);
}

awaitable<void> accept_loop(Mux& m, tcp::acceptor& acceptor) {
  asio::steady_timer pause(m.io);
  while (auto accepted = co_await net::accept_next(acceptor, pause)) {
    tcp::socket socket = std::move(*accepted);
    error_code ec;
    ++m.counters.connections_total;
    if (m.counters.open_connections >= m.opt.max_connections) {
      ++m.counters.connections_refused;
      static constexpr char busy[] =
          "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
      socket.non_blocking(true, ec);
      socket.write_some(asio::buffer(busy, sizeof busy - 1), ec);
      socket.close(ec);
      continue;
    }
    asio::co_spawn(m.io, session(m, std::move(socket)), asio::detached);
  }
}

// Room for every connection's client and upstream sockets.
void raise_fd_limit(std::size_t max_connections) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t want = static_cast<rlim_t>(2 * max_connections + 64);
  if (lim.rlim_cur < want) {
    lim.rlim_cur = std::min(want, lim.rlim_max);
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < want)
    text::err(text::cat("pisecd mux: warning: open-file limit ", lim.rlim_cur, " is below the ", want,
                        " that max_connections = ", max_connections, " needs\n"));
}

}  // namespace

int run(const Options& options) {
  asio::io_context io(1);
  Mux m(io, options);
  raise_fd_limit(options.max_connections);
  tcp::endpoint listen_at(asio::ip::make_address(options.listen.host), options.listen.port);
  tcp::acceptor acceptor = net::listen(io, listen_at);
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const error_code&, int) { io.stop(); });
  asio::co_spawn(io, accept_loop(m, acceptor), asio::detached);
  const std::string address = listen_at.address().to_string();
  const std::string app = options.upstream.kind == Endpoint::Kind::tcp
                              ? text::cat(options.upstream.host, ':', options.upstream.port)
                              : "unix:" + options.upstream.path;
  text::err(text::cat("pisecd mux: listening on ", listen_at.address().is_v6() ? '[' + address + ']' : address, ':',
                      listen_at.port(), ", app at ", app, '\n'));
  io.run();
  return 0;
}

}  // namespace pisec::mux
