// The clock gate: asks every configured server on the Asio loop, validates
// the replies, selects, then steps the clock (or only reports) and saves it.

#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "asio_includes.hpp"
#include "pisec/gates/clock.hpp"
#include "pisec/version.hpp"

namespace asio = boost::asio;
using asio::ip::udp;

namespace pisec::clock {

namespace {

constexpr std::int64_t ns_per_s = 1'000'000'000;
constexpr std::int64_t step_threshold_ns = 1'000'000;  // closer than 1 ms: leave the clock alone

std::uint64_t random_nonce() {
  std::uint64_t n = 0;
  // Non-blocking: the nonce only has to be unguessable off-path, and a gate
  // must not hang on an uninitialised CRNG (the entropy gate runs first anyway).
  if (getrandom(&n, sizeof n, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof n)) {
    std::random_device rd;
    n = static_cast<std::uint64_t>(rd()) << 32 | rd();
  }
  return n ? n : 1;  // a zero origin would match a server that echoes nothing
}

struct Sent {
  std::uint64_t nonce;
  UnixNanos t1;
  std::chrono::steady_clock::time_point sent_at;
};

struct Server {
  Server(asio::io_context& io, std::string configured) : name(std::move(configured)), socket(io), timer(io) {}
  std::string name;
  ServerName parsed;
  udp::endpoint endpoint;
  udp::socket socket;
  asio::steady_timer timer;
  bool resolved = false;
  int attempts = 0;
  std::vector<Sent> sent;
  std::array<std::uint8_t, 1024> buffer{};
  udp::endpoint from;
  std::string last_refusal;
  bool finished = false;
  SourceResult result;
};

class Run : public std::enable_shared_from_this<Run> {
 public:
  Run(asio::io_context& io, const config::ClockGate& config, std::int64_t extra_floor, ClockAdapter& clock,
      std::shared_ptr<GateResult> result, gates::Done done)
      : io_(io),
        config_(config),
        extra_floor_(extra_floor),
        clock_(clock),
        result_(std::move(result)),
        done_(std::move(done)),
        resolver_(io),
        deadline_(io) {}

  void start() {
    floor_ = compute_floor(build::clock_floor_unix, config_.state_file, extra_floor_);
    limits_.floor_unix = floor_.unix_s;
    limits_.max_root_distance_s = config_.max_root_distance_s;
    limits_.max_delay_s = static_cast<double>(config_.request_timeout_ms) / 1000.0;
    if (config_.servers.empty()) {
      asio::post(io_, [self = shared_from_this()] { self->conclude(); });
      return;
    }
    // Our own deadline a little inside the runner's, so the detail names the
    // servers that were slow instead of a bare "timed out".
    auto budget = std::chrono::milliseconds(static_cast<std::int64_t>(config_.timeout_s) * 900);
    deadline_.expires_after(budget);
    deadline_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->conclude();
    });
    for (const auto& name : config_.servers) servers_.push_back(std::make_unique<Server>(io_, name));
    for (std::size_t i = 0; i < servers_.size(); ++i) begin(i);
  }

  void cancel() {
    if (concluded_) return;
    concluded_ = true;  // done is not called after cancel()
    stop_all();
  }

 private:
  void begin(std::size_t i) {
    Server& s = *servers_[i];
    try {
      s.parsed = parse_server(s.name);
    } catch (const std::exception& e) {
      return finish(i, e.what());
    }
    resolver_.resolve(s.parsed.host, [self = shared_from_this(), i](std::vector<std::string> addresses,
                                                                    std::string error) {
      self->on_resolved(i, std::move(addresses), std::move(error));
    });
  }

  // Retried until the gate's deadline, never taken as an answer: pisecd starts
  // before networking, and DHCP may be slower than the gates before this one.
  void retry_later(std::size_t i, std::string why, void (Run::*step)(std::size_t)) {
    Server& s = *servers_[i];
    s.last_refusal = std::move(why);
    s.timer.expires_after(std::chrono::milliseconds(config_.request_timeout_ms));
    s.timer.async_wait([self = shared_from_this(), i, step](boost::system::error_code e) {
      if (!e && !self->concluded_ && !self->servers_[i]->finished) ((*self).*step)(i);
    });
  }

  void on_resolved(std::size_t i, std::vector<std::string> addresses, std::string error) {
    if (concluded_ || servers_[i]->finished) return;
    if (!error.empty()) return retry_later(i, error, &Run::begin);
    Server& s = *servers_[i];
    s.resolved = true;
    boost::system::error_code ec;
    auto address = asio::ip::make_address(addresses.front(), ec);
    if (ec) return finish(i, "bad address " + addresses.front());
    s.endpoint = udp::endpoint(address, s.parsed.port);
    s.socket.open(s.endpoint.protocol(), ec);
    if (ec) return finish(i, "cannot open socket: " + ec.message());
    receive(i);
    send_attempt(i);
  }

  void send_attempt(std::size_t i) {
    Server& s = *servers_[i];
    if (s.attempts > config_.retries) {
      return finish(i, s.last_refusal.empty() ? "timeout" : s.last_refusal);
    }
    ++s.attempts;
    Sent sent{random_nonce(), 0, {}};
    auto request = build_request(sent.nonce);
    try {
      sent.t1 = clock_.realtime_ns();
    } catch (const std::exception& e) {
      return finish(i, e.what());
    }
    sent.sent_at = std::chrono::steady_clock::now();
    s.sent.push_back(sent);
    boost::system::error_code ec;
    s.socket.send_to(asio::buffer(request), s.endpoint, 0, ec);  // UDP: returns at once
    if (ec) {  // e.g. no route yet: nothing was asked, so no attempt is used up
      s.sent.pop_back();
      --s.attempts;
      return retry_later(i, "send failed: " + ec.message(), &Run::send_attempt);
    }
    s.timer.expires_after(std::chrono::milliseconds(config_.request_timeout_ms));
    s.timer.async_wait([self = shared_from_this(), i](boost::system::error_code e) {
      if (!e && !self->concluded_ && !self->servers_[i]->finished) self->send_attempt(i);
    });
  }

  void receive(std::size_t i) {
    Server& s = *servers_[i];
    s.socket.async_receive_from(asio::buffer(s.buffer), s.from,
                                [self = shared_from_this(), i](boost::system::error_code ec, std::size_t n) {
                                  self->on_receive(i, ec, n);
                                });
  }

  void on_receive(std::size_t i, boost::system::error_code ec, std::size_t n) {
    auto received_at = std::chrono::steady_clock::now();
    if (concluded_ || servers_[i]->finished || ec == asio::error::operation_aborted) return;
    Server& s = *servers_[i];
    if (ec == asio::error::connection_refused) {
      // An ICMP port unreachable: transient (or forged), so keep listening.
      s.last_refusal = "port unreachable";
      return receive(i);
    }
    if (ec) return finish(i, "receive failed: " + ec.message());
    if (s.sent.empty()) return receive(i);  // stray packet before our first request
    std::span<const std::uint8_t> bytes(s.buffer.data(), n);
    // Pair the reply with the request it answers, so a late answer to an
    // earlier try still gets its own send time.
    const Sent* match = &s.sent.back();
    if (auto reply = parse_reply(bytes)) {
      for (const auto& sent : s.sent)
        if (sent.nonce == reply->origin) match = &sent;
    }
    Exchange ex;
    ex.nonce = match->nonce;
    ex.t1 = match->t1;
    ex.rtt_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(received_at - match->sent_at).count();
    ex.from_server = s.from == s.endpoint;
    Verdict v = validate_reply(bytes, ex, limits_);
    if (v.sample) {
      s.result.sample = v.sample;
      return finish(i, "");
    }
    if (v.spoofable) {
      s.last_refusal = v.refusal;  // maybe forged or stale: the real answer may still come
      return receive(i);
    }
    // The server itself said no: retrying will not change its mind, and a
    // kiss-o'-death asks us to stop asking.
    finish(i, v.kiss_code.empty() ? v.refusal : v.refusal + ", backed off");
  }

  void finish(std::size_t i, std::string refusal) {
    Server& s = *servers_[i];
    if (s.finished) return;
    s.finished = true;
    s.result.server = s.name;
    if (!s.result.sample) s.result.refusal = std::move(refusal);
    boost::system::error_code ignored;
    s.timer.cancel();
    s.socket.close(ignored);
    for (const auto& other : servers_)
      if (!other->finished) return;
    conclude();
  }

  void stop_all() {
    deadline_.cancel();
    resolver_.cancel();
    boost::system::error_code ignored;
    for (auto& s : servers_) {
      s->timer.cancel();
      s->socket.close(ignored);
    }
  }

  void conclude() {
    if (concluded_) return;
    concluded_ = true;
    stop_all();
    std::vector<SourceResult> results;
    for (auto& s : servers_) {
      if (!s->finished) {
        s->result.server = s->name;
        s->result.refusal = s->last_refusal.empty()
                                ? (s->resolved ? "timeout" : "timeout resolving " + s->parsed.host)
                                : s->last_refusal + " (then timeout)";
      }
      if (s->resolved)
        s->result.address = s->endpoint.address().to_string() + ":" + std::to_string(s->endpoint.port());
      results.push_back(s->result);
    }
    Selection sel = select_sources(results, config_.min_sources, config_.max_disagreement_s);
    gates::Outcome outcome;
    GateResult gate_result;
    gate_result.floor = floor_;
    std::string action;
    if (sel.ok) {
      outcome.passed = true;
      gate_result.offset_ns = sel.offset_ns;
      action = apply(sel.offset_ns, sel.distinct_agreeing, outcome.passed, gate_result.stepped);
    }
    outcome.detail = describe(results, sel, action);
    if (!sel.ok && !action.empty()) outcome.detail += "; " + action;
    if (!floor_.note.empty()) outcome.detail += "; " + floor_.note;
    gate_result.passed = outcome.passed;
    if (result_) *result_ = gate_result;
    asio::post(io_, [done = std::move(done_), outcome = std::move(outcome)]() mutable { done(std::move(outcome)); });
  }

  // Steps the clock when configured to; returns the words for the detail line.
  std::string apply(std::int64_t offset_ns, std::size_t sources, bool& passed, bool& stepped) {
    try {
      UnixNanos now = clock_.realtime_ns();
      UnixNanos corrected = now + offset_ns;
      if (corrected / ns_per_s < floor_.unix_s) {
        passed = false;
        return "refused: result is before the floor (" + floor_.source + ")";
      }
      if (!config_.set_clock) return "clock not set (set_clock = false)";
      std::string words = "clock within 1 ms, not stepped";
      if (std::llabs(offset_ns) >= step_threshold_ns) {
        clock_.set_realtime_ns(clock_.realtime_ns() + offset_ns);
        stepped = true;
        words = "clock stepped";
      }
      if (!config_.state_file.empty()) {
        // The saved time becomes the next boot's floor: only a result the full
        // policy agreed on, and never further ahead than compute_floor trusts.
        std::int64_t now_s = clock_.realtime_ns() / ns_per_s;
        std::int64_t signed_floor = std::max<std::int64_t>(build::clock_floor_unix, extra_floor_);
        if (sources < static_cast<std::size_t>(std::max(config_.min_sources, 1))) {
          words += "; state file not saved: " + std::to_string(sources) + " source(s), min_sources is " +
                   std::to_string(config_.min_sources);
        } else if (now_s > signed_floor + max_saved_ahead_s) {
          words += "; state file not saved: the time is more than " + std::to_string(max_saved_ahead_s / 86400) +
                   " days past the build floor and signed manifest time";
        } else {
          try {
            write_state_file(config_.state_file, now_s);
          } catch (const std::exception& e) {
            words += "; state file not saved: " + std::string(e.what());
          }
        }
      }
      return words;
    } catch (const std::exception& e) {
      passed = false;
      return std::string("cannot set the clock: ") + e.what();
    }
  }

  asio::io_context& io_;
  config::ClockGate config_;
  std::int64_t extra_floor_;
  ClockAdapter& clock_;
  std::shared_ptr<GateResult> result_;
  gates::Done done_;
  Resolver resolver_;
  asio::steady_timer deadline_;
  Floor floor_;
  Limits limits_;
  std::vector<std::unique_ptr<Server>> servers_;
  bool concluded_ = false;
};

class ClockGateImpl final : public gates::Gate {
 public:
  ClockGateImpl(const config::ClockGate& config, std::int64_t extra_floor, ClockAdapter& clock,
                std::shared_ptr<GateResult> result)
      : config_(config), extra_floor_(extra_floor), clock_(clock), result_(std::move(result)) {}
  ~ClockGateImpl() override { cancel(); }

  std::string_view name() const override { return "clock"; }

  void start(asio::io_context& io, gates::Done done) override {
    cancel();
    run_ = std::make_shared<Run>(io, config_, extra_floor_, clock_, result_, std::move(done));
    run_->start();
  }

  void cancel() override {
    if (run_) run_->cancel();
  }

 private:
  config::ClockGate config_;
  std::int64_t extra_floor_;
  ClockAdapter& clock_;
  std::shared_ptr<GateResult> result_;
  std::shared_ptr<Run> run_;
};

}  // namespace

std::unique_ptr<gates::Gate> make_clock_gate(const config::ClockGate& config, std::int64_t extra_floor_unix,
                                             ClockAdapter& clock, std::shared_ptr<GateResult> result) {
  return std::make_unique<ClockGateImpl>(config, extra_floor_unix, clock, std::move(result));
}

}  // namespace pisec::clock
