// Sinks, renderings and the Logger pipeline.
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "pisec/logs.hpp"

namespace pisec::logs {
namespace {

class StderrSink final : public Sink {
 public:
  explicit StderrSink(int fd) : fd_(fd) {}
  void write(const Entry& e) override {
    std::string out;
    out.reserve(e.text.size() + 24);
    if (e.stream == Stream::daemon) out += "pisecd: ";
    else out.append("payload[").append(to_string(e.stream)).append("]: ");
    out += e.text;
    out += '\n';
    // One write per line so lines from several writers do not interleave.
    // Errors are ignored: losing the copy must not stop capture.
    std::size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::write(fd_, out.data() + off, out.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
  }

 private:
  int fd_;
};

class SyslogSink final : public Sink {
 public:
  SyslogSink() { ::openlog("pisecd", LOG_PID | LOG_NDELAY, LOG_DAEMON); }
  ~SyslogSink() override { ::closelog(); }
  SyslogSink(const SyslogSink&) = delete;
  SyslogSink& operator=(const SyslogSink&) = delete;
  void write(const Entry& e) override {
    switch (e.stream) {
      case Stream::payload_stdout: ::syslog(LOG_INFO, "payload[stdout]: %s", e.text.c_str()); break;
      case Stream::payload_stderr: ::syslog(LOG_WARNING, "payload[stderr]: %s", e.text.c_str()); break;
      case Stream::daemon: ::syslog(LOG_NOTICE, "%s", e.text.c_str()); break;
    }
  }
};

std::int64_t system_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::unique_ptr<Sink> make_stderr_sink(int fd) { return std::make_unique<StderrSink>(fd); }
std::unique_ptr<Sink> make_syslog_sink() { return std::make_unique<SyslogSink>(); }

std::string to_ndjson(const Entry& e) {
  nlohmann::ordered_json j = {
      {"seq", e.seq}, {"ts_ms", e.ts_ms}, {"stream", to_string(e.stream)}, {"line", e.text}};
  std::string out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += '\n';
  return out;
}

Entry from_ndjson(std::string_view line) {
  try {
    auto j = nlohmann::json::parse(line);
    Entry e;
    e.seq = j.at("seq").get<std::uint64_t>();
    e.ts_ms = j.at("ts_ms").get<std::int64_t>();
    auto stream = stream_from_string(j.at("stream").get<std::string>());
    if (!stream) throw std::runtime_error("unknown stream \"" + j.at("stream").get<std::string>() + "\"");
    e.stream = *stream;
    e.text = j.at("line").get<std::string>();
    return e;
  } catch (const nlohmann::json::exception& ex) {
    throw std::runtime_error(std::string("malformed log entry: ") + ex.what());
  }
}

std::string to_text(const Entry& e) {
  std::int64_t secs = e.ts_ms / 1000, ms = e.ts_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[48];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  std::string out = stamp;
  out.append(" ").append(to_string(e.stream)).append(": ").append(e.text);
  return out;
}

// ---- Logger ----------------------------------------------------------------

namespace {
std::vector<std::unique_ptr<Sink>> sinks_from(const config::Logs& cfg) {
  std::vector<std::unique_ptr<Sink>> sinks;
  if (cfg.stderr_copy) sinks.push_back(make_stderr_sink());
  if (cfg.syslog) sinks.push_back(make_syslog_sink());
  return sinks;
}
}  // namespace

Logger::Logger(const config::Logs& cfg) : Logger(cfg, sinks_from(cfg), system_now_ms) {}

Logger::Logger(const config::Logs& cfg, std::vector<std::unique_ptr<Sink>> sinks, Clock clock)
    : redactor_(cfg.redact),
      ring_(cfg.ring_bytes),
      sinks_(std::move(sinks)),
      clock_(clock ? std::move(clock) : Clock(system_now_ms)),
      out_{LineAssembler(cfg.max_line_bytes), {}},
      err_{LineAssembler(cfg.max_line_bytes), {}},
      daemon_{LineAssembler(cfg.max_line_bytes), {}} {}

Logger::PerStream& Logger::per_stream(Stream s) {
  switch (s) {
    case Stream::payload_stdout: return out_;
    case Stream::payload_stderr: return err_;
    case Stream::daemon: break;
  }
  return daemon_;
}

void Logger::store(Stream stream, std::string_view line, Redactor::StreamState& state) {
  std::string clean = redactor_.redact(line, state);
  const Entry& e = ring_.append(stream, clean, clock_());
  for (auto& sink : sinks_) sink->write(e);
}

void Logger::feed(Stream stream, std::string_view bytes) {
  PerStream& ps = per_stream(stream);
  ps.assembler.feed(bytes, [&](std::string_view line) { store(stream, line, ps.state); });
}

void Logger::end_of_stream(Stream stream) {
  PerStream& ps = per_stream(stream);
  ps.assembler.finish([&](std::string_view line) { store(stream, line, ps.state); });
  ps.state = {};
}

void Logger::daemon_line(std::string_view text) {
  // Each daemon message is complete in itself: no PEM state carried over, and
  // embedded newlines become separate entries.
  daemon_.assembler.feed(text, [&](std::string_view line) { store(Stream::daemon, line, daemon_.state); });
  daemon_.assembler.finish([&](std::string_view line) { store(Stream::daemon, line, daemon_.state); });
  daemon_.state = {};
}

}  // namespace pisec::logs
