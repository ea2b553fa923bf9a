#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "pisec/logs.hpp"

using namespace pisec::logs;

namespace {

std::string redact1(const Redactor& r, std::string_view line) {
  Redactor::StreamState st;
  return r.redact(line, st);
}

bool contains(const std::string& hay, std::string_view needle) { return hay.find(needle) != std::string::npos; }

// Sink that remembers what it was given.
struct MemorySink : Sink {
  std::vector<std::string>* lines;
  explicit MemorySink(std::vector<std::string>* l) : lines(l) {}
  void write(const Entry& e) override { lines->push_back(e.text); }
};

pisec::config::Logs small_config() {
  pisec::config::Logs cfg;
  cfg.ring_bytes = 64 * 1024;
  cfg.stderr_copy = false;
  cfg.max_line_bytes = 256;
  return cfg;
}

}  // namespace

TEST_CASE("built-in redaction hides passwords, tokens and authorization values", "[logs]") {
  Redactor r;
  SECTION("key=value and query strings") {
    auto out = redact1(r, "login user=bob password=hunter2 ok");
    CHECK_FALSE(contains(out, "hunter2"));
    CHECK(out == "login user=bob password=[REDACTED] ok");
    out = redact1(r, "GET /cb?code=1&access_token=abc.def&state=x HTTP/1.1");
    CHECK(out == "GET /cb?code=1&access_token=[REDACTED]&state=x HTTP/1.1");
    CHECK_FALSE(contains(redact1(r, "PASSWD = s3cr3t"), "s3cr3t"));
    CHECK_FALSE(contains(redact1(r, "client_secret: xyzzy"), "xyzzy"));
  }
  SECTION("JSON values, escaped quotes included") {
    auto out = redact1(r, R"({"user":"bob","password": "hun\"ter2","n":1})");
    CHECK_FALSE(contains(out, "hun"));
    CHECK(out == R"({"user":"bob","password": "[REDACTED]","n":1})");
    CHECK_FALSE(contains(redact1(r, R"({"token":123456})"), "123456"));
  }
  SECTION("Authorization header and bearer tokens") {
    auto out = redact1(r, "Authorization: Bearer abc");
    CHECK_FALSE(contains(out, "abc"));
    CHECK(out == "Authorization: [REDACTED]");
    out = redact1(r, R"({"authorization":"Basic dXNlcjpwYXNz","x":1})");
    CHECK_FALSE(contains(out, "dXNlcjpwYXNz"));
    CHECK(contains(out, R"("x":1)"));
    out = redact1(r, "calling upstream with bearer eyJhbGciOi.J9.sig-_~+/= done");
    CHECK(out == "calling upstream with bearer [REDACTED] done");
  }
  SECTION("URL userinfo") {
    auto out = redact1(r, "connecting to postgres://app:pa55w0rd@db:5432/x");
    CHECK(out == "connecting to postgres://app:[REDACTED]@db:5432/x");
  }
  SECTION("innocent lines are left alone") {
    for (std::string_view line : {"the password is wrong", "token count 5", "GET /index.html 200",
                                  "http://example.org:8080/path"})
      CHECK(redact1(r, line) == line);
  }
}

TEST_CASE("a PEM private key block is redacted across lines, per stream", "[logs]") {
  Redactor r;
  Redactor::StreamState a, b;
  CHECK(r.redact("-----BEGIN RSA PRIVATE KEY-----", a) == "-----BEGIN RSA PRIVATE KEY-----");
  CHECK(a.in_private_key);
  CHECK(r.redact("MIIEpAIBAAKCAQEAsecretbody", a) == "[REDACTED]");
  // Another stream is not affected by this one's state.
  CHECK(r.redact("plain line", b) == "plain line");
  CHECK(r.redact("Zm9vYmFyYmF6", a) == "[REDACTED]");
  CHECK(r.redact("tail-----END RSA PRIVATE KEY----- after", a) == "[REDACTED]-----END RSA PRIVATE KEY----- after");
  CHECK_FALSE(a.in_private_key);
  CHECK(r.redact("next line", a) == "next line");
  // The whole key on one line (JSON with \n escapes).
  auto one = r.redact(R"({"key":"-----BEGIN PRIVATE KEY-----\nMIIBVQ\n-----END PRIVATE KEY-----\n"})", b);
  CHECK_FALSE(contains(one, "MIIBVQ"));
  CHECK_FALSE(b.in_private_key);
  // A public key or certificate is not a secret.
  Redactor::StreamState c;
  CHECK(r.redact("-----BEGIN PUBLIC KEY-----", c) == "-----BEGIN PUBLIC KEY-----");
  CHECK_FALSE(c.in_private_key);
}

TEST_CASE("user regexes redact, also on long lines without crashing", "[logs]") {
  Redactor r({"card=[0-9]{4}-[0-9]{4}", "[a-z]+@example\\.org"});
  CHECK(redact1(r, "paid with card=1234-5678 by bob@example.org") == "paid with [REDACTED] by [REDACTED]");
  // libstdc++'s recursive matcher overflowed the stack on this in one go.
  Redactor letters({"[a-z]+"});
  std::string long_line(64 * 1024, 'q');
  CHECK(redact1(letters, long_line) == "[REDACTED]");
  CHECK_THROWS_WITH(Redactor({"(unclosed"}), Catch::Contains("(unclosed"));
}

TEST_CASE("a backtracking-prone user pattern runs in linear time on a long line", "[logs]") {
  // std::regex took exponential time here: 45 characters froze the daemon.
  Redactor r({"(a+)+$"});
  CHECK(redact1(r, std::string(44, 'a') + "b") == std::string(44, 'a') + "b");
  std::string line(100 * 1000, 'a');
  auto start = std::chrono::steady_clock::now();
  std::string out = redact1(r, line);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
  WARN("(a+)+$ on a 100 kB line of 'a': " << us << " us");
  CHECK(out == "[REDACTED]");
  CHECK(us < 5000000);
  // Patterns RE2 cannot run in linear time are refused, naming the pattern.
  CHECK_THROWS_WITH(Redactor({"(a)\\1"}), Catch::Contains("(a)\\1") && Catch::Contains("invalid escape"));
  CHECK(pattern_error("(a+)+$").empty());
  CHECK(pattern_error("(?=x)") == "invalid perl operator: (?=");
}

TEST_CASE("built-ins find a secret inside another one's key or value, and match bytes", "[logs]") {
  Redactor r;
  CHECK(redact1(r, R"(password=token="long value here")") == R"(password=[REDACTED]"[REDACTED]")");
  CHECK(redact1(r, "x password=\"sec\\") == "x password=\"[REDACTED]");
  CHECK(redact1(r, "PassWord: 'it''s' next") == "PassWord: '[REDACTED]''s' next");
  // Invalid UTF-8 is matched as bytes, not skipped.
  CHECK(redact1(r, "token=\xff\xfe\x80z rest") == "token=[REDACTED] rest");
  CHECK(redact1(r, "\xc3 bearer \xff" "abc") == "\xc3 bearer \xff" "abc");
  Redactor user({"caf\xc3\xa9=[0-9]+", "x.y"});
  CHECK(redact1(user, "caf\xc3\xa9=12 x\xffy") == "[REDACTED] [REDACTED]");
}

TEST_CASE("line assembler splits, truncates, sanitizes and flushes on EOF", "[logs]") {
  LineAssembler a(10);
  std::vector<std::string> lines;
  auto collect = [&](std::string_view l) { lines.emplace_back(l); };
  a.feed("hel", collect);
  CHECK(lines.empty());
  a.feed("lo\r\nwor", collect);
  a.feed("ld\n0123456789\n", collect);  // exactly 10 bytes: not truncated
  a.feed("0123456789ABCDEF", collect);  // too long: cut and marked at once
  a.feed("GHI\nnext\x1b[31m\n", collect);
  a.feed("partial", collect);
  a.finish(collect);
  REQUIRE(lines.size() == 6);
  CHECK(lines[0] == "hello");
  CHECK(lines[1] == "world");
  CHECK(lines[2] == "0123456789");
  CHECK(lines[3] == "0123456789 [truncated]");
  CHECK(lines[4] == "next?[31m");
  CHECK(lines[5] == "partial");
  // A multi-byte character is not cut in half.
  LineAssembler u(3);
  lines.clear();
  u.feed("ab\xc3\xa9z\nab\xc3\xa9\n", collect);
  REQUIRE(lines.size() == 2);
  CHECK(lines[1] == "ab [truncated]");
  LineAssembler fits(4);
  fits.feed("ab\xc3\xa9\n", collect);
  CHECK(lines.back() == "ab\xc3\xa9");
  CHECK(lines[0] == "ab [truncated]");
}

TEST_CASE("ring keeps newest entries within its byte budget", "[logs]") {
  constexpr std::size_t budget = 256 * 1024;
  pisec::config::Logs cfg;
  cfg.ring_bytes = budget;
  cfg.stderr_copy = false;
  cfg.max_line_bytes = 4096;
  Logger logger(cfg, {}, [] { return std::int64_t{1700000000000}; });
  // 100 MB of output in 100-byte lines, fed in 64 KiB pipe-sized chunks.
  std::string chunk;
  std::uint64_t written = 0;
  std::size_t max_used = 0;
  const std::size_t total = 100u * 1000 * 1000;
  std::size_t fed = 0;
  while (fed < total) {
    chunk.clear();
    while (chunk.size() < 64 * 1024) {
      std::string n = std::to_string(++written);
      chunk += "line " + n + ' ' + std::string(94 - n.size(), 'x') + '\n';
    }
    logger.feed(Stream::payload_stdout, chunk);
    fed += chunk.size();
    max_used = std::max(max_used, logger.ring().bytes_used());
  }
  const LogRing& ring = logger.ring();
  CHECK(max_used <= budget);
  CHECK(ring.bytes_used() <= budget);
  CHECK(ring.size() > 0);
  CHECK(ring.last_seq() == written);
  CHECK(ring.dropped() + ring.size() == written);
  // Budget accounting covers every stored byte.
  std::size_t accounted = 0;
  for (const auto& e : ring.tail(ring.size())) accounted += LogRing::cost(e);
  CHECK(accounted == ring.bytes_used());
  auto last = ring.tail(1);
  REQUIRE(last.size() == 1);
  CHECK(last[0].text.rfind("line " + std::to_string(written) + ' ', 0) == 0);
  // The ring is used, not nearly empty: at least half full.
  CHECK(ring.bytes_used() > budget / 2);
}

TEST_CASE("ring tail, since and listeners", "[logs]") {
  LogRing ring(4096);
  std::vector<std::uint64_t> seen;
  auto id = ring.subscribe([&](const Entry& e) { seen.push_back(e.seq); });
  for (int i = 1; i <= 5; ++i) ring.append(Stream::payload_stderr, "l" + std::to_string(i), i);
  ring.unsubscribe(id);
  ring.append(Stream::payload_stdout, "l6", 6);
  CHECK(seen == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  auto t = ring.tail(2);
  REQUIRE(t.size() == 2);
  CHECK(t[0].text == "l5");
  CHECK(t[1].text == "l6");
  auto s = ring.since(3, 2);
  REQUIRE(s.size() == 2);
  CHECK(s[0].seq == 4);
  CHECK(s[1].seq == 5);
  CHECK(ring.since(6).empty());
  CHECK(ring.tail(100).size() == 6);
  // A line bigger than the whole ring is cut to fit instead of emptying it forever.
  ring.append(Stream::payload_stdout, std::string(10000, 'z'), 7);
  CHECK(ring.bytes_used() <= 4096);
  CHECK(ring.tail(1)[0].text.size() < 4096);
}

TEST_CASE("Logger redacts before the ring and the sinks see a line", "[logs]") {
  auto cfg = small_config();
  cfg.redact = {"ssn [0-9-]+"};
  std::vector<std::string> copied;
  std::vector<std::unique_ptr<Sink>> sinks;
  sinks.push_back(std::make_unique<MemorySink>(&copied));
  Logger logger(cfg, std::move(sinks), [] { return std::int64_t{42}; });
  logger.feed(Stream::payload_stdout, "db password=hunter2\nssn 123-45-6789\n-----BEGIN EC PRIVATE KEY-----\nAAAA");
  logger.feed(Stream::payload_stderr, "stderr ok\n");
  logger.feed(Stream::payload_stdout, "BBBB\n-----END EC PRIVATE KEY-----\nafter\nAuthorization: Bearer abc");
  logger.end_of_stream(Stream::payload_stdout);
  logger.daemon_line("payload started, token=xyz");
  auto all = logger.ring().tail(100);
  std::string everything;
  for (const auto& e : all) everything += to_ndjson(e);
  for (const auto& l : copied) everything += l;
  for (std::string_view secret : {"hunter2", "123-45-6789", "AAAA", "BBBB", "abc", "xyz"})
    CHECK_FALSE(contains(everything, secret));
  CHECK(copied.size() == all.size());
  REQUIRE(all.size() == 9);
  CHECK(all[3].stream == Stream::payload_stderr);
  CHECK(all[6].text == "after");
  CHECK(all[8].stream == Stream::daemon);
  CHECK(all[8].ts_ms == 42);
}

// Found by fuzz_redact: the line limit cut the BEGIN marker in half (or
// dropped it whole), the redactor never saw it, and the key body after it
// was stored in clear.
TEST_CASE("a PEM BEGIN marker cut off by the line limit still hides the key lines", "[logs]") {
  const std::string body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
  const std::string dropped_whole(40, 'x');  // the marker lies wholly beyond the cut
  for (std::string_view prefix : {std::string_view("key follows: "), std::string_view(), std::string_view(dropped_whole)}) {
    for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}}) {
      auto cfg = small_config();
      cfg.max_line_bytes = 20;  // cuts "-----BEGIN PRIVATE KEY-----" (27 bytes) or drops it
      Logger logger(cfg, {}, [] { return std::int64_t{0}; });
      const std::string out = std::string(prefix) + "-----BEGIN PRIVATE KEY-----\n" + body +
                              "\n-----END PRIVATE KEY-----\nafter\n";
      for (std::size_t at = 0; at < out.size(); at += piece)
        logger.feed(Stream::payload_stdout, std::string_view(out).substr(at, piece));
      auto all = logger.ring().tail(100);
      INFO("prefix \"" << prefix << "\", pieces of " << piece);
      REQUIRE(all.size() == 4);
      CHECK(all[1].text == "[REDACTED]");
      CHECK(all[3].text == "after");  // the END marker (kept, 25 bytes > 20, cut) ended the block
    }
  }
  // The END marker cut off: the block ends all the same.
  auto cfg = small_config();
  cfg.max_line_bytes = 10;
  Logger logger(cfg, {}, [] { return std::int64_t{0}; });
  logger.feed(Stream::payload_stdout, "-----BEGIN PRIVATE KEY-----\nsecretbody\nxx-----END PRIVATE KEY-----\nafter\n");
  auto all = logger.ring().tail(100);
  REQUIRE(all.size() == 4);
  CHECK(all[1].text == "[REDACTED]");
  CHECK(all[3].text == "after");
}

TEST_CASE("NDJSON and text rendering", "[logs]") {
  Entry e{7, 1714564800123, Stream::payload_stderr, "he said \"hi\"\t\xff"};
  std::string line = to_ndjson(e);
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  CHECK(line.rfind(R"({"seq":7,"ts_ms":1714564800123,"stream":"stderr","line":"he said \"hi\"\t)", 0) == 0);
  Entry back = from_ndjson(line);
  CHECK(back.seq == 7);
  CHECK(back.ts_ms == 1714564800123);
  CHECK(back.stream == Stream::payload_stderr);
  CHECK(back.text == "he said \"hi\"\t\xef\xbf\xbd");  // invalid byte -> U+FFFD
  CHECK(to_text(e).rfind("2024-05-01T12:00:00.123Z stderr: he said", 0) == 0);
  CHECK_THROWS(from_ndjson(R"({"seq":1})"));
  CHECK_THROWS(from_ndjson(R"({"seq":1,"ts_ms":1,"stream":"bogus","line":""})"));
}

TEST_CASE("user regexes with optional parts and alternation", "[logs]") {
  Redactor r({"colou?r=[a-z]+", "x(y|z)=1"});
  CHECK(redact1(r, "color=red colour=blue") == "[REDACTED] [REDACTED]");
  CHECK(redact1(r, "xz=1") == "[REDACTED]");
}

TEST_CASE("stderr copy is prefixed per stream and carries only redacted text", "[logs]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  auto cfg = small_config();
  std::vector<std::unique_ptr<Sink>> sinks;
  sinks.push_back(make_stderr_sink(fds[1]));
  Logger logger(cfg, std::move(sinks), [] { return std::int64_t{1}; });
  logger.feed(Stream::payload_stderr, "auth failed for Authorization: Basic c2VjcmV0\n");
  logger.feed(Stream::payload_stdout, "listening on :8080\n");
  logger.daemon_line("payload exited with code 1");
  ::close(fds[1]);
  std::string copied;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) copied.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  CHECK(copied ==
        "payload[stderr]: auth failed for Authorization: [REDACTED]\n"
        "payload[stdout]: listening on :8080\n"
        "pisecd: payload exited with code 1\n");
}

namespace {
struct CopyRecorder : Sink {
  std::vector<Entry>* entries;
  explicit CopyRecorder(std::vector<Entry>* e) : entries(e) {}
  void write(const Entry& e) override { entries->push_back(e); }
};
}  // namespace

TEST_CASE("the copy to stderr/syslog is rate-limited per stream; the ring keeps every line", "[logs]") {
  auto cfg = small_config();
  cfg.ring_bytes = 4 * 1024 * 1024;
  cfg.stderr_burst = 1000;
  cfg.stderr_interval_s = 30;
  std::vector<Entry> copied;
  std::vector<std::unique_ptr<Sink>> sinks;
  sinks.push_back(std::make_unique<CopyRecorder>(&copied));
  std::int64_t mono = 5000000;
  Logger logger(cfg, std::move(sinks), [] { return std::int64_t{1700000000000}; }, [&] { return mono; });
  std::string chunk;
  std::size_t suppressed_bytes = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string line = "line " + std::to_string(i) + " password=hunter2";
    chunk += line + '\n';
    if (i >= 1000) suppressed_bytes += std::string("line " + std::to_string(i) + " password=[REDACTED]").size();
    if (i % 100 == 99) {
      logger.feed(Stream::payload_stdout, chunk);
      chunk.clear();
      mono += 5;  // 5,000 lines within 250 ms
    }
  }
  logger.feed(Stream::payload_stderr, "stderr has its own budget\n");
  logger.daemon_line("pisecd's own lines are never limited");
  REQUIRE(copied.size() == 1002);
  CHECK(copied[999].text == "line 999 password=[REDACTED]");
  CHECK(copied[1000].text == "stderr has its own budget");
  CHECK(copied[1001].stream == Stream::daemon);
  CHECK(logger.ring().size() == 5002);
  CHECK(logger.ring().dropped() == 0);
  CHECK(logger.ring().tail(3)[0].text == "line 4999 password=[REDACTED]");

  // Still inside the interval: nothing more is copied, and no summary yet.
  mono += 20000;
  logger.feed(Stream::payload_stdout, "line 5000\n");
  suppressed_bytes += std::string("line 5000").size();
  CHECK(copied.size() == 1002);
  // The next interval: one summary, then the line itself.
  mono += 10000;
  logger.feed(Stream::payload_stdout, "next interval\n");
  REQUIRE(copied.size() == 1004);
  CHECK(copied[1002].stream == Stream::daemon);
  CHECK(copied[1002].seq == 0);  // not a ring entry
  CHECK(copied[1002].text.rfind("suppressed 4001 lines (" + std::to_string(suppressed_bytes) +
                                    " bytes) of payload output to stderr in the last 30 s (payload stdout",
                                0) == 0);
  CHECK(copied[1003].text == "next interval");
  CHECK(logger.ring().size() == 5004);
  int summaries = 0;
  for (const auto& e : copied) summaries += contains(e.text, "suppressed") ? 1 : 0;
  CHECK(summaries == 1);
}

TEST_CASE("the suppressed-lines summary is written when the stream ends or the daemon speaks", "[logs]") {
  auto cfg = small_config();
  cfg.stderr_burst = 3;
  cfg.stderr_interval_s = 10;
  std::vector<Entry> copied;
  std::vector<std::unique_ptr<Sink>> sinks;
  sinks.push_back(std::make_unique<CopyRecorder>(&copied));
  std::int64_t mono = 0;
  Logger logger(cfg, std::move(sinks), [] { return std::int64_t{1}; }, [&] { return mono; });
  logger.feed(Stream::payload_stderr, "a\nb\nc\nd\ne\n");
  mono = 2000;
  logger.end_of_stream(Stream::payload_stderr);
  REQUIRE(copied.size() == 4);
  CHECK(copied[3].text.rfind("suppressed 2 lines (2 bytes) of payload output to stderr in the last 2 s", 0) == 0);
  // The next run does not get a fresh budget within the same interval.
  logger.feed(Stream::payload_stderr, "f\ng\n");
  CHECK(copied.size() == 4);
  // A quiet payload: the daemon's next line brings the summary once the interval is over.
  mono = 9000;
  logger.daemon_line("still early");
  CHECK(copied.size() == 5);
  mono = 10000;
  logger.daemon_line("payload restarted");
  REQUIRE(copied.size() == 7);
  CHECK(copied[5].text.rfind("suppressed 2 lines (2 bytes) of payload output to stderr in the last 10 s", 0) == 0);
  CHECK(copied[6].text == "payload restarted");
  logger.feed(Stream::payload_stderr, "h\n");
  REQUIRE(copied.size() == 8);
  CHECK(copied[7].text == "h");
}
