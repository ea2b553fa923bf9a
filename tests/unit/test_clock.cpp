#include <utility>  // before Boost.Asio with GCC 12 / C++20

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "pisec/gates/clock.hpp"
#include "pisec/version.hpp"

using namespace pisec::clock;
namespace asio = boost::asio;

namespace {

constexpr std::int64_t s_ns = 1'000'000'000;
constexpr std::int64_t floor_2025 = 1735689600;  // 2025-01-01 00:00:00 UTC

UnixNanos real_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct ReplySpec {
  int leap = 0, version = 4, mode = 4, stratum = 2;
  double root_delay_s = 0.004, root_dispersion_s = 0.004;
  const char* reference = "TEST";
  std::uint64_t origin = 0;
  UnixNanos receive = 0, transmit = 0;  // unix ns; 0 = zero timestamp on the wire
};

void put32(std::array<std::uint8_t, 48>& p, std::size_t at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) p[at + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
void put64(std::array<std::uint8_t, 48>& p, std::size_t at, std::uint64_t v) {
  put32(p, at, static_cast<std::uint32_t>(v >> 32));
  put32(p, at + 4, static_cast<std::uint32_t>(v));
}

std::array<std::uint8_t, 48> make_reply(const ReplySpec& r) {
  std::array<std::uint8_t, 48> p{};
  p[0] = static_cast<std::uint8_t>(r.leap << 6 | r.version << 3 | r.mode);
  p[1] = static_cast<std::uint8_t>(r.stratum);
  put32(p, 4, static_cast<std::uint32_t>(r.root_delay_s * 65536));
  put32(p, 8, static_cast<std::uint32_t>(r.root_dispersion_s * 65536));
  for (std::size_t i = 0; i < 4; ++i) p[12 + i] = static_cast<std::uint8_t>(r.reference[i]);
  put64(p, 24, r.origin);
  put64(p, 32, r.receive ? unix_ns_to_ntp(r.receive) : 0);
  put64(p, 40, r.transmit ? unix_ns_to_ntp(r.transmit) : 0);
  return p;
}

// A server 100 s ahead of us, answering in 20 ms with 1 ms of processing.
struct Scenario {
  std::uint64_t nonce = 0x1122334455667788ULL;
  UnixNanos t1 = (floor_2025 + 86400) * s_ns;
  ReplySpec spec;
  Exchange ex;
  Limits limits{floor_2025, 5.0};
  Scenario() {
    spec.origin = nonce;
    spec.receive = t1 + 100 * s_ns + 10'000'000;
    spec.transmit = spec.receive + 1'000'000;
    ex.nonce = nonce;
    ex.t1 = t1;
    ex.rtt_ns = 20'000'000;
  }
  Verdict validate() const {
    auto bytes = make_reply(spec);
    return validate_reply(bytes, ex, limits);
  }
};

SourceResult good(const char* name, double offset_s, double distance_s = 0.01) {
  Sample s;
  s.offset_ns = static_cast<std::int64_t>(offset_s * 1e9);
  s.delay_ns = 0;
  s.root_distance_s = distance_s;
  s.stratum = 2;
  return {name, s, "", ""};
}

SourceResult bad(const char* name, const char* why) { return {name, std::nullopt, why, ""}; }

struct FakeClock : ClockAdapter {
  std::int64_t skew_ns = 0;  // fake = real + skew
  std::vector<UnixNanos> sets;
  UnixNanos realtime_ns() override { return real_now() + skew_ns; }
  void set_realtime_ns(UnixNanos t) override {
    sets.push_back(t);
    skew_ns = t - real_now();
  }
};

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/pisec-clock-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

// An in-process SNTP server on 127.0.0.1 for driving the gate on a real loop.
class TestServer {
 public:
  TestServer(asio::io_context& io, double offset_s, std::string fault = "", std::int64_t hold_ns = 1000)
      : socket_(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        offset_ns_(static_cast<std::int64_t>(offset_s * 1e9)),
        fault_(std::move(fault)),
        hold_ns_(hold_ns) {
    receive();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(socket_.local_endpoint().port()); }
  int requests = 0;

 private:
  void receive() {
    socket_.async_receive_from(asio::buffer(in_), peer_, [this](boost::system::error_code ec, std::size_t n) {
      if (ec) return;
      ++requests;
      if (n >= 48 && fault_ != "silent") {
        ReplySpec spec;
        for (std::size_t i = 0; i < 8; ++i) spec.origin = spec.origin << 8 | in_[40 + i];
        if (fault_ == "stratum16") spec.stratum = 16;
        spec.receive = real_now() + offset_ns_;
        spec.transmit = spec.receive + hold_ns_;
        out_ = make_reply(spec);
        socket_.send_to(asio::buffer(out_), peer_);
      }
      receive();
    });
  }
  asio::ip::udp::socket socket_;
  std::int64_t offset_ns_;
  std::string fault_;
  std::int64_t hold_ns_;
  std::array<std::uint8_t, 512> in_{};
  std::array<std::uint8_t, 48> out_{};
  asio::ip::udp::endpoint peer_;
};

pisec::config::ClockGate gate_config(std::vector<std::string> servers) {
  pisec::config::ClockGate c;
  c.servers = std::move(servers);
  c.min_sources = 2;
  c.set_clock = false;
  c.timeout_s = 5;
  c.request_timeout_ms = 200;
  c.retries = 1;
  return c;
}

struct GateRun {
  std::optional<pisec::gates::Outcome> outcome;
  std::chrono::milliseconds took{};
};

GateRun run_gate(asio::io_context& io, pisec::gates::Gate& gate) {
  GateRun r;
  auto start = std::chrono::steady_clock::now();
  gate.start(io, [&](pisec::gates::Outcome o) {
    r.outcome = std::move(o);
    r.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    io.stop();  // the test servers keep the loop busy otherwise
  });
  io.run_for(std::chrono::seconds(10));
  return r;
}

}  // namespace

TEST_CASE("client request is 0x23 and a nonce in the transmit timestamp, nothing else", "[clock]") {
  auto p = build_request(0x0102030405060708ULL);
  CHECK(p[0] == 0x23);
  for (std::size_t i = 1; i < 40; ++i) CHECK(p[i] == 0);
  for (std::size_t i = 0; i < 8; ++i) CHECK(p[40 + i] == i + 1);
}

TEST_CASE("a good reply gives offset and delay from T1..T4 with the monotonic round trip", "[clock]") {
  Scenario sc;
  auto v = sc.validate();
  REQUIRE(v.sample);
  CHECK(v.refusal.empty());
  // ((T2−T1)+(T3−T4))/2 = ((100.010) + (100.011 − 0.020))/2 = 100.0005 s
  CHECK(v.sample->offset_ns == 100'000'500'000);
  // (T4−T1)−(T3−T2) = 20 ms − 1 ms
  CHECK(v.sample->delay_ns == 19'000'000);
  CHECK(v.sample->stratum == 2);
  CHECK(v.sample->root_distance_s == Approx(0.006).margin(1e-4));
}

TEST_CASE("every validation rule refuses with its own reason", "[clock]") {
  std::set<std::string> reasons;
  auto refused = [&](Scenario& sc, const std::string& expect_prefix) {
    auto v = sc.validate();
    INFO(expect_prefix);
    REQUIRE_FALSE(v.sample);
    CHECK(v.refusal.rfind(expect_prefix, 0) == 0);
    reasons.insert(v.refusal);
    return v;
  };
  {
    Scenario sc;
    auto bytes = make_reply(sc.spec);
    auto v = validate_reply(std::span(bytes.data(), 40), sc.ex, sc.limits);
    CHECK(v.refusal == "short reply (40 bytes, expected 48)");
    CHECK(v.spoofable);
    reasons.insert(v.refusal);
  }
  {
    Scenario sc;
    sc.ex.from_server = false;
    CHECK(refused(sc, "reply from another address").spoofable);
  }
  {
    Scenario sc;
    sc.spec.origin ^= 1;
    auto v = refused(sc, "origin timestamp does not match");
    CHECK(v.refusal == "origin timestamp does not match");
    CHECK(v.spoofable);
  }
  {
    Scenario sc;
    sc.spec.mode = 3;
    CHECK(refused(sc, "mode 3, expected 4").refusal == "mode 3, expected 4");
  }
  {
    Scenario sc;
    sc.spec.version = 2;
    refused(sc, "version 2, expected 3 or 4");
  }
  {
    Scenario sc;
    sc.spec.stratum = 0;
    sc.spec.leap = 3;  // kiss-o'-death packets usually carry LI 3 as well
    sc.spec.reference = "RATE";
    auto v = refused(sc, "stratum 0 (kiss-o'-death RATE)");
    CHECK(v.kiss_code == "RATE");
    CHECK_FALSE(v.spoofable);
  }
  {
    Scenario sc;
    sc.spec.stratum = 16;
    CHECK(refused(sc, "stratum 16").refusal == "stratum 16");
  }
  {
    Scenario sc;
    sc.spec.leap = 3;
    CHECK(refused(sc, "leap indicator 3").refusal == "leap indicator 3 (unsynchronised)");
  }
  {
    Scenario sc;
    sc.spec.transmit = 0;
    refused(sc, "zero transmit timestamp");
  }
  {
    Scenario sc;
    sc.spec.root_dispersion_s = 7.2;
    sc.spec.root_delay_s = 0;
    CHECK(refused(sc, "root distance").refusal == "root distance 7.2 s > 5 s");
  }
  {
    Scenario sc;
    sc.spec.receive = sc.spec.transmit = 1'000'000'000 * s_ns;  // 2001
    auto v = refused(sc, "time before floor");
    CHECK(v.refusal.find("2001-09-09 01:46:40 UTC") != std::string::npos);
    CHECK(v.refusal.find("2025-01-01 00:00:00 UTC") != std::string::npos);
  }
  {
    Scenario sc;
    sc.spec.receive = sc.spec.transmit = (floor_2025 + 16LL * 366 * 86400) * s_ns;
    refused(sc, "time beyond floor + 15 years");
  }
  {
    Scenario sc;
    sc.spec.receive = sc.spec.transmit + 1'000'000;  // T2 after T3
    CHECK(refused(sc, "transmit timestamp before receive timestamp").refusal ==
          "transmit timestamp before receive timestamp");
  }
  {
    Scenario sc;
    sc.spec.receive = sc.spec.transmit - 3 * 86400 * s_ns;  // T2 three days before T3
    auto v = refused(sc, "server held the request");
    CHECK(v.refusal == "server held the request 2.59e+05 s (receive to transmit timestamp), more than 1 s");
  }
  {
    Scenario sc;
    sc.spec.receive = sc.spec.transmit - 500'000'000;  // held 0.5 s of a 20 ms round trip
    CHECK(refused(sc, "negative delay").refusal ==
          "negative delay -0.48 s: the server claims to have held the request longer than our round trip");
  }
  {
    Scenario sc;
    sc.ex.rtt_ns = 3 * s_ns;  // longer than the 2 s request timeout
    auto v = refused(sc, "round trip 3 s, longer than the 2 s request timeout");
    CHECK(v.spoofable);  // a late answer: keep waiting for a timely one
  }
  CHECK(reasons.size() == 16);
}

TEST_CASE("a reply with T3 a little after T2, within the round trip, is accepted", "[clock]") {
  Scenario sc;
  sc.spec.receive = sc.spec.transmit - 30'000'000;  // held 30 ms of a 20 ms round trip: rounding
  auto v = sc.validate();
  REQUIRE(v.sample);
  CHECK(v.sample->delay_ns == 0);
}

TEST_CASE("NTP eras unwrap relative to the floor", "[clock]") {
  constexpr std::int64_t era1_start = 4294967296LL - ntp_to_unix_s;  // 2036-02-07 06:28:16 UTC
  // Raw seconds 1000 are 1900 + 1000 s in era 0, but near a 2035 floor they are in era 1.
  std::uint64_t raw = 1000ULL << 32;
  CHECK(ntp_to_unix_ns(raw, era1_start - 86400) / s_ns == era1_start + 1000);
  CHECK(ntp_to_unix_ns(raw, floor_2025) / s_ns == era1_start + 1000);
  // A 2001 time stays in 2001 below a 2025 floor (and is refused as before it),
  // rather than being pushed 136 years ahead.
  std::uint64_t t2001 = static_cast<std::uint64_t>(1'000'000'000 + ntp_to_unix_s) << 32;
  CHECK(ntp_to_unix_ns(t2001, floor_2025) / s_ns == 1'000'000'000);
  // Fractions survive the round trip to the nanosecond.
  for (UnixNanos t : {floor_2025 * s_ns + 123'456'789, (era1_start + 5) * s_ns + 999'999'999}) {
    CHECK(ntp_to_unix_ns(unix_ns_to_ntp(t), floor_2025) == t);
  }
}

TEST_CASE("a falseticker is outvoted by two agreeing sources", "[clock]") {
  std::vector<SourceResult> r = {good("a", 100.0), good("b", 100.01), good("c", 1000.0)};
  auto sel = select_sources(r, 2, 0.5);
  REQUIRE(sel.ok);
  CHECK(sel.good == 3);
  CHECK(sel.agreeing == std::vector<std::size_t>{0, 1});
  CHECK(sel.falsetickers == std::vector<std::size_t>{2});
  CHECK(sel.offset_ns == 100'005'000'000);  // median of the two agreeing
  auto line = describe(r, sel, "clock stepped");
  CHECK(line == "2/3 sources agree, offset +100.005 s, clock stepped; ignored: c: falseticker (offset +1000.000 s)");
}

TEST_CASE("the chosen offset is the median of the agreeing sources", "[clock]") {
  std::vector<SourceResult> r = {good("a", 0.30), good("b", 0.10), good("c", 0.25), bad("d", "stratum 16")};
  auto sel = select_sources(r, 2, 0.5);
  REQUIRE(sel.ok);
  CHECK(sel.agreeing.size() == 3);
  CHECK(sel.offset_ns == 250'000'000);
  CHECK(describe(r, sel, "") == "3/3 sources agree, offset +0.250 s; ignored: d: stratum 16");
}

TEST_CASE("one server listed twice is one source", "[clock]") {
  auto at = [](SourceResult r, const char* address) {
    r.address = address;
    return r;
  };
  std::vector<SourceResult> twice = {at(good("a", 0.0), "10.0.0.1:123"), at(good("a again", 0.0), "10.0.0.1:123")};
  auto sel = select_sources(twice, 2, 0.5);
  CHECK_FALSE(sel.ok);
  CHECK(sel.reason == "1 good source of 2 needed (servers at one address count once)");
  twice.push_back(at(good("b", 0.0), "10.0.0.2:123"));
  sel = select_sources(twice, 2, 0.5);
  CHECK(sel.ok);
  CHECK(sel.distinct_agreeing == 2);
}

TEST_CASE("selection fails without enough good or agreeing sources", "[clock]") {
  SECTION("not enough good replies") {
    std::vector<SourceResult> r = {good("a", 0.0), bad("b", "stratum 16"), bad("c", "timeout")};
    auto sel = select_sources(r, 2, 0.5);
    CHECK_FALSE(sel.ok);
    CHECK(describe(r, sel, "") ==
          "1 good source of 2 needed (a: offset +0.000 s; b: stratum 16; c: timeout)");
  }
  SECTION("two sources that disagree") {
    std::vector<SourceResult> r = {good("a", 0.0), good("b", 100.0)};
    auto sel = select_sources(r, 2, 0.5);
    CHECK_FALSE(sel.ok);
    CHECK(sel.reason == "only 1 of 2 good sources agree, 2 needed");
  }
  SECTION("a tie is no majority") {
    std::vector<SourceResult> r = {good("a", 0.0), good("b", 0.1), good("c", 100.0), good("d", 100.1)};
    auto sel = select_sources(r, 2, 0.5);
    CHECK_FALSE(sel.ok);
    CHECK(sel.reason == "no majority: 2 of 4 good sources agree");
  }
  SECTION("max_disagreement_s is how far apart two exact sources may be") {
    std::vector<SourceResult> r = {good("a", 0.0, 0.0), good("b", 0.4, 0.0)};
    CHECK(select_sources(r, 2, 0.5).ok);
    CHECK_FALSE(select_sources(r, 2, 0.3).ok);
  }
  SECTION("a source with a long path still agrees within its distance") {
    std::vector<SourceResult> r = {good("a", 0.0, 0.01), good("b", 2.0, 1.8)};
    CHECK(select_sources(r, 2, 0.5).ok);
  }
}

TEST_CASE("server names: host, host:port, [v6]:port, bare IPv6", "[clock]") {
  CHECK(parse_server("pool.ntp.org").host == "pool.ntp.org");
  CHECK(parse_server("pool.ntp.org").port == 123);
  CHECK(parse_server("127.0.0.1:1123").port == 1123);
  CHECK(parse_server("127.0.0.1:1123").host == "127.0.0.1");
  CHECK(parse_server("[::1]:124").host == "::1");
  CHECK(parse_server("[::1]:124").port == 124);
  CHECK(parse_server("[fe80::1]").port == 123);
  CHECK(parse_server("2001:db8::1").host == "2001:db8::1");
  CHECK_THROWS_AS(parse_server("host:0"), std::invalid_argument);
  CHECK_THROWS_AS(parse_server("host:70000"), std::invalid_argument);
  CHECK_THROWS_AS(parse_server("[::1"), std::invalid_argument);
  CHECK_THROWS_AS(parse_server(":123"), std::invalid_argument);
}

TEST_CASE("the floor is the newest of build, state file and manifest", "[clock]") {
  TempDir dir;
  std::string state = dir.path + "/clock";
  SECTION("no state file: the build floor") {
    auto f = compute_floor(floor_2025, state, 0);
    CHECK(f.unix_s == floor_2025);
    CHECK(f.source == "build");
    CHECK(f.note.empty());
  }
  SECTION("a newer saved time wins, written atomically") {
    write_state_file(state, floor_2025 + 1000);
    CHECK(access((state + ".tmp").c_str(), F_OK) != 0);
    CHECK(read_state_file(state) == floor_2025 + 1000);
    auto f = compute_floor(floor_2025, state, 0);
    CHECK(f.unix_s == floor_2025 + 1000);
    CHECK(f.source == "state file");
    CHECK(compute_floor(floor_2025, state, floor_2025 + 2000).source == "manifest");
    CHECK(compute_floor(floor_2025 + 5000, state, 0).source == "build");
  }
  SECTION("a malformed or absurd state file is ignored and said so") {
    std::ofstream(state) << "yesterday\n";
    CHECK_THROWS_WITH(read_state_file(state), Catch::Contains("expected unix seconds"));
    auto f = compute_floor(floor_2025, state, 0);
    CHECK(f.unix_s == floor_2025);
    CHECK(f.note.find("state file ignored") != std::string::npos);
    write_state_file(state, floor_2025 + 20LL * 366 * 86400);
    auto g = compute_floor(floor_2025, state, 0);
    CHECK(g.unix_s == floor_2025);
    CHECK(g.note.find("more than 15 years") != std::string::npos);
  }
  SECTION("a saved time far past the build floor is ignored unless a signed manifest vouches for it") {
    std::int64_t ten_years = floor_2025 + 10LL * 365 * 86400;
    write_state_file(state, ten_years);
    auto f = compute_floor(floor_2025, state, 0);
    CHECK(f.unix_s == floor_2025);
    CHECK(f.source == "build");
    CHECK(f.note == "state file " + state + " ignored: " + std::to_string(ten_years) +
                        " is more than 400 days past the build floor (" + std::to_string(floor_2025) +
                        "); a newer signed manifest raises that bound");
    // A manifest signed a little before the saved time makes it believable.
    auto g = compute_floor(floor_2025, state, ten_years - 30 * 86400);
    CHECK(g.unix_s == ten_years);
    CHECK(g.source == "state file");
    CHECK(g.note.empty());
    // Within 400 days of the build floor a saved time is used as before.
    write_state_file(state, floor_2025 + 399LL * 86400);
    CHECK(compute_floor(floor_2025, state, 0).unix_s == floor_2025 + 399LL * 86400);
  }
}

TEST_CASE("raise_clock_to_floor only ever moves the clock forward", "[clock]") {
  FakeClock clock;
  clock.skew_ns = -real_now();  // the Pi without RTC: 1970
  CHECK(raise_clock_to_floor(clock, floor_2025));
  REQUIRE(clock.sets.size() == 1);
  CHECK(clock.sets[0] == floor_2025 * s_ns);
  FakeClock ahead;
  CHECK_FALSE(raise_clock_to_floor(ahead, floor_2025));
  CHECK(ahead.sets.empty());
}

TEST_CASE("the resolver answers IP literals and names from /etc/hosts", "[clock]") {
  asio::io_context io;
  Resolver resolver(io);
  std::vector<std::string> literal, local;
  std::string literal_error = "unset", local_error = "unset";
  resolver.resolve("127.0.0.9", [&](std::vector<std::string> a, std::string e) {
    literal = std::move(a);
    literal_error = std::move(e);
  });
  resolver.resolve("localhost", [&](std::vector<std::string> a, std::string e) {
    local = std::move(a);
    local_error = std::move(e);
  });
  io.run_for(std::chrono::seconds(10));
  CHECK(literal_error.empty());
  CHECK(literal == std::vector<std::string>{"127.0.0.9"});
  CHECK(local_error.empty());
  bool loopback = false;
  for (const auto& a : local) loopback = loopback || a == "127.0.0.1" || a == "::1";
  CHECK(loopback);
}

namespace {

// A one-name DNS server on 127.0.0.1 for the resolver: "ntp.pisec.test" has
// A 127.0.0.42 and no AAAA; anything else is NXDOMAIN.
class TestDns {
 public:
  explicit TestDns(asio::io_context& io)
      : socket_(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    receive();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(socket_.local_endpoint().port()); }
  int queries = 0;

 private:
  void receive() {
    socket_.async_receive_from(asio::buffer(in_), peer_, [this](boost::system::error_code ec, std::size_t n) {
      if (ec) return;
      if (n > 12) answer(n);
      receive();
    });
  }
  void answer(std::size_t n) {
    ++queries;
    // The question is the name (labels up to a zero byte), then type and class.
    std::size_t end = 12;
    std::string name;
    while (end < n && in_[end] != 0) {
      std::size_t len = in_[end];
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<const char*>(&in_[end + 1]), len);  // bytes as text
      end += len + 1;
    }
    end += 5;  // zero byte, QTYPE, QCLASS
    if (end > n) return;
    int qtype = in_[end - 4] << 8 | in_[end - 3];
    bool known = name == "ntp.pisec.test";
    bool with_answer = known && qtype == 1;
    out_.assign(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(end));
    out_[2] = 0x81;                       // response, recursion desired
    out_[3] = known ? 0x80 : 0x83;        // recursion available; NOERROR or NXDOMAIN
    out_[6] = 0;                          // ANCOUNT
    out_[7] = with_answer ? 1 : 0;
    out_[8] = out_[9] = out_[10] = out_[11] = 0;  // no authority, no additional
    if (with_answer) {
      const std::uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 42};
      out_.insert(out_.end(), std::begin(rr), std::end(rr));
    }
    socket_.send_to(asio::buffer(out_), peer_);
  }
  asio::ip::udp::socket socket_;
  std::array<std::uint8_t, 512> in_{};
  std::vector<std::uint8_t> out_;
  asio::ip::udp::endpoint peer_;
};

}  // namespace

TEST_CASE("the resolver asks a DNS server through c-ares sockets on the loop", "[clock]") {
  asio::io_context io;
  TestDns dns(io);
  Resolver resolver(io, dns.address());
  std::vector<std::string> found, missing;
  std::string found_error = "unset", missing_error = "unset";
  int answered = 0;
  resolver.resolve("ntp.pisec.test", [&](std::vector<std::string> a, std::string e) {
    found = std::move(a);
    found_error = std::move(e);
    if (++answered == 2) io.stop();
  });
  resolver.resolve("nothing.pisec.test", [&](std::vector<std::string> a, std::string e) {
    missing = std::move(a);
    missing_error = std::move(e);
    if (++answered == 2) io.stop();
  });
  io.run_for(std::chrono::seconds(10));
  CHECK(answered == 2);
  CHECK(dns.queries >= 2);
  CHECK(found_error.empty());
  CHECK(found == std::vector<std::string>{"127.0.0.42"});
  CHECK(missing.empty());
  CHECK(missing_error.rfind("cannot resolve: ", 0) == 0);
}

TEST_CASE("the gate steps a fake clock by the agreed offset and saves it", "[clock]") {
  asio::io_context io;
  TestServer a(io, 0), b(io, 0), c(io, 0);
  TempDir dir;
  auto cfg = gate_config({a.address(), b.address(), c.address()});
  cfg.set_clock = true;
  cfg.state_file = dir.path + "/clock";
  FakeClock clock;
  clock.skew_ns = -100 * s_ns;  // we are 100 s behind the servers
  auto result = std::make_shared<GateResult>();
  auto gate = make_clock_gate(cfg, 0, clock, result);
  CHECK(gate->name() == "clock");
  auto run = run_gate(io, *gate);
  REQUIRE(run.outcome);
  INFO(run.outcome->detail);
  CHECK(run.outcome->passed);
  CHECK(run.outcome->detail.rfind("3/3 sources agree, offset +", 0) == 0);
  CHECK(run.outcome->detail.find("clock stepped") != std::string::npos);
  CHECK(result->passed);
  CHECK(result->stepped);
  CHECK(std::llabs(result->offset_ns - 100 * s_ns) < 50'000'000);
  REQUIRE(clock.sets.size() == 1);
  CHECK(std::llabs(clock.sets[0] - real_now()) < 100'000'000);
  auto saved = read_state_file(cfg.state_file);
  REQUIRE(saved);
  CHECK(std::llabs(*saved - real_now() / s_ns) <= 2);
}

TEST_CASE("the gate ignores a falseticker and names unresponsive servers", "[clock]") {
  asio::io_context io;
  TestServer a(io, 100), b(io, 100), liar(io, 1000), silent(io, 0, "silent"), unsynced(io, 0, "stratum16");
  auto cfg = gate_config({a.address(), b.address(), liar.address(), silent.address(), unsynced.address()});
  FakeClock clock;
  auto result = std::make_shared<GateResult>();
  auto gate = make_clock_gate(cfg, 0, clock, result);
  auto run = run_gate(io, *gate);
  REQUIRE(run.outcome);
  INFO(run.outcome->detail);
  CHECK(run.outcome->passed);
  CHECK(run.outcome->detail.rfind("2/3 sources agree, offset +", 0) == 0);
  CHECK(std::llabs(result->offset_ns - 100 * s_ns) < 50'000'000);
  CHECK_FALSE(result->stepped);
  CHECK(run.outcome->detail.find("clock not set (set_clock = false)") != std::string::npos);
  // The offset as measured: +1000.0 s, or +999.999 s when a loaded machine
  // delays the reply by a millisecond or more.
  const auto liar_at = run.outcome->detail.find(liar.address() + ": falseticker (offset +");
  REQUIRE(liar_at != std::string::npos);
  const double liar_offset =
      std::stod(run.outcome->detail.substr(liar_at + liar.address().size() + std::string(": falseticker (offset +").size()));
  CHECK(std::abs(liar_offset - 1000.0) < 0.1);
  CHECK(run.outcome->detail.find(silent.address() + ": timeout") != std::string::npos);
  CHECK(run.outcome->detail.find(unsynced.address() + ": stratum 16") != std::string::npos);
  CHECK(silent.requests == 2);  // the first try and one retry
  CHECK(unsynced.requests == 1);  // an unsynchronised server is not asked again
  CHECK(clock.sets.empty());
}

TEST_CASE("the gate fails when too few sources answer, within its timeout", "[clock]") {
  asio::io_context io;
  TestServer a(io, 0), silent(io, 0, "silent");
  auto cfg = gate_config({a.address(), silent.address()});
  cfg.retries = 10;  // more tries than the gate's own time allows: its deadline cuts them off
  cfg.request_timeout_ms = 500;
  cfg.timeout_s = 2;
  FakeClock clock;
  auto gate = make_clock_gate(cfg, 0, clock);
  auto run = run_gate(io, *gate);
  REQUIRE(run.outcome);
  INFO(run.outcome->detail);
  CHECK_FALSE(run.outcome->passed);
  CHECK(run.outcome->detail.rfind("1 good source of 2 needed (", 0) == 0);
  CHECK(run.outcome->detail.find(silent.address() + ": timeout") != std::string::npos);
  CHECK(run.took < std::chrono::seconds(cfg.timeout_s));
}

TEST_CASE("a cancelled gate never calls done and leaves nothing on the loop", "[clock]") {
  asio::io_context io;
  auto cfg = gate_config({"127.0.0.1:9", "127.0.0.2:9"});
  FakeClock clock;
  auto gate = make_clock_gate(cfg, 0, clock);
  bool called = false;
  gate->start(io, [&](pisec::gates::Outcome) { called = true; });
  io.run_for(std::chrono::milliseconds(50));
  gate->cancel();
  auto start = std::chrono::steady_clock::now();
  io.restart();
  io.run();  // returns only once no timer or socket of the gate is pending
  CHECK_FALSE(called);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
}

TEST_CASE("the gate refuses every server behind the daemon's extra floor", "[clock]") {
  asio::io_context io;
  TestServer a(io, 0), b(io, 0);
  auto cfg = gate_config({a.address(), b.address()});
  cfg.set_clock = true;
  FakeClock clock;
  auto result = std::make_shared<GateResult>();
  std::int64_t manifest_time = real_now() / s_ns + 86400;  // signed "tomorrow"
  auto gate = make_clock_gate(cfg, manifest_time, clock, result);
  auto run = run_gate(io, *gate);
  REQUIRE(run.outcome);
  INFO(run.outcome->detail);
  CHECK_FALSE(run.outcome->passed);
  CHECK(run.outcome->detail.rfind("0 good sources of 2 needed (", 0) == 0);
  CHECK(run.outcome->detail.find(a.address() + ": time before floor") != std::string::npos);
  CHECK(result->floor.unix_s == manifest_time);
  CHECK(result->floor.source == "manifest");
  CHECK(clock.sets.empty());
}

TEST_CASE("one server 14 years ahead, listed twice, neither sets the clock nor the saved floor", "[clock]") {
  asio::io_context io;
  TestServer ahead(io, 14.0 * 365 * 86400);
  TempDir dir;
  auto cfg = gate_config({ahead.address(), ahead.address()});  // min_sources 2
  cfg.set_clock = true;
  cfg.state_file = dir.path + "/clock";
  FakeClock clock;
  auto gate = make_clock_gate(cfg, 0, clock);
  auto run = run_gate(io, *gate);
  REQUIRE(run.outcome);
  INFO(run.outcome->detail);
  CHECK_FALSE(run.outcome->passed);
  CHECK(run.outcome->detail.rfind("1 good source of 2 needed (servers at one address count once)", 0) == 0);
  CHECK(clock.sets.empty());
  CHECK_FALSE(read_state_file(cfg.state_file));
}

TEST_CASE("a single source may set the clock where policy allows, but not a floor years ahead", "[clock]") {
  asio::io_context io;
  TestServer ahead(io, 14.0 * 365 * 86400);
  TempDir dir;
  auto cfg = gate_config({ahead.address()});
  cfg.min_sources = 1;  // the operator allows one source today
  cfg.set_clock = true;
  cfg.state_file = dir.path + "/clock";
  FakeClock clock;
  auto gate = make_clock_gate(cfg, 0, clock);
  auto run = run_gate(io, *gate);
  REQUIRE(run.outcome);
  INFO(run.outcome->detail);
  CHECK(run.outcome->passed);
  CHECK(clock.sets.size() == 1);
  CHECK(run.outcome->detail.find("clock stepped; state file not saved: the time is more than 400 days past the "
                                 "build floor and signed manifest time") != std::string::npos);
  CHECK_FALSE(read_state_file(cfg.state_file));
}

TEST_CASE("a server whose receive timestamp lies days before its transmit timestamp is refused", "[clock]") {
  asio::io_context io;
  TestServer a(io, 0), b(io, 0), odd(io, 0, "", 3 * 86400 * s_ns);  // T3 = T2 + 3 days
  auto cfg = gate_config({a.address(), b.address(), odd.address()});
  FakeClock clock;
  auto gate = make_clock_gate(cfg, 0, clock);
  auto run = run_gate(io, *gate);
  REQUIRE(run.outcome);
  INFO(run.outcome->detail);
  CHECK(run.outcome->passed);
  CHECK(run.outcome->detail.rfind("2/2 sources agree", 0) == 0);
  CHECK(run.outcome->detail.find(odd.address() + ": server held the request") != std::string::npos);
}
