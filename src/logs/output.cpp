// Sinks, renderings and the Logger pipeline.
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "pisec/logs.hpp"
#include "pisec/util.hpp"

namespace pisec::logs {
namespace {

class StderrSink final : public Sink {
 public:
  explicit StderrSink(int fd) : fd_(fd) {}
  void write(const Entry& e) override {
    std::string out;
    out.reserve(e.text.size() + 24);
    if (e.stream == Stream::daemon) out += "pisecd: ";
    else if (e.stream == Stream::mux) out += "mux: ";
    else out.append("payload[").append(to_string(e.stream)).append("]: ");
    out += e.text;
    out += '\n';
    // One write per line so lines from several writers do not interleave.
    // Errors are ignored: losing the copy must not stop capture.
    (void)util::write_all(fd_, out);
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
      case Stream::mux: ::syslog(LOG_INFO, "mux: %s", e.text.c_str()); break;
    }
  }
};

std::int64_t system_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t monotonic_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
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
  std::string out = util::format_utc_ms(e.ts_ms);
  out.append(" ").append(to_string(e.stream)).append(": ").append(e.text);
  return out;
}

// ---- CopyLimiter -----------------------------------------------------------

CopyLimiter::CopyLimiter(std::size_t burst, std::int64_t interval_ms)
    : burst_(burst), interval_ms_(std::max<std::int64_t>(interval_ms, 1)) {}

CopyLimiter::Verdict CopyLimiter::line(std::size_t bytes, std::int64_t now_ms, std::string_view stream_name) {
  Verdict v;
  // A window starts with the first line after the previous one ran out, as
  // journald's; a clock stepping backwards (it should not) also starts one.
  if (!window_start_ || now_ms - *window_start_ >= interval_ms_ || now_ms < *window_start_) {
    v.summary = summary(now_ms, stream_name);
    window_start_ = now_ms;
    copied_ = 0;
  }
  if (copied_ < burst_) {
    ++copied_;
    v.copy = true;
  } else {
    ++suppressed_lines_;
    suppressed_bytes_ += bytes;
  }
  return v;
}

std::optional<std::string> CopyLimiter::due(std::int64_t now_ms, std::string_view stream_name) {
  if (!window_start_ || (now_ms - *window_start_ < interval_ms_ && now_ms >= *window_start_)) return std::nullopt;
  return summary(now_ms, stream_name);
}

std::optional<std::string> CopyLimiter::flush(std::int64_t now_ms, std::string_view stream_name) {
  return summary(now_ms, stream_name);
}

std::optional<std::string> CopyLimiter::summary(std::int64_t now_ms, std::string_view stream_name) {
  if (suppressed_lines_ == 0) return std::nullopt;
  // The span the count covers: the interval, or less when a stream ended early.
  std::int64_t span_ms = window_start_ ? std::min(now_ms - *window_start_, interval_ms_) : interval_ms_;
  std::string text = "suppressed " + std::to_string(suppressed_lines_) + " lines (" +
                     std::to_string(suppressed_bytes_) + " bytes) of payload output to stderr in the last " +
                     std::to_string((std::max<std::int64_t>(span_ms, 0) + 999) / 1000) + " s (payload " +
                     std::string(stream_name) + ", over logs.stderr_burst = " + std::to_string(burst_) +
                     "); `pisecd logs` has every line";
  suppressed_lines_ = suppressed_bytes_ = 0;
  return text;
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

Logger::Logger(const config::Logs& cfg, std::vector<std::unique_ptr<Sink>> sinks, Clock clock,
               Clock monotonic)
    : redactor_(cfg.redact),
      ring_(cfg.ring_bytes),
      sinks_(std::move(sinks)),
      clock_(clock ? std::move(clock) : Clock(system_now_ms)),
      monotonic_(monotonic ? std::move(monotonic) : Clock(monotonic_now_ms)),
      out_{LineAssembler(cfg.max_line_bytes), {}, CopyLimiter(cfg.stderr_burst, cfg.stderr_interval_s * 1000LL)},
      err_{LineAssembler(cfg.max_line_bytes), {}, CopyLimiter(cfg.stderr_burst, cfg.stderr_interval_s * 1000LL)},
      daemon_{LineAssembler(cfg.max_line_bytes), {}, CopyLimiter(cfg.stderr_burst, cfg.stderr_interval_s * 1000LL)},
      mux_{LineAssembler(cfg.max_line_bytes), {}, CopyLimiter(cfg.stderr_burst, cfg.stderr_interval_s * 1000LL)} {}

Logger::PerStream& Logger::per_stream(Stream s) {
  switch (s) {
    case Stream::payload_stdout: return out_;
    case Stream::payload_stderr: return err_;
    case Stream::mux: return mux_;
    case Stream::daemon: break;
  }
  return daemon_;
}

void Logger::store(Stream stream, std::string_view line, PerStream& ps) {
  std::string clean = redactor_.redact(line, ps.state);
  const Entry& e = ring_.append(stream, clean, clock_());
  if (sinks_.empty()) return;
  // pisecd's own lines are few and say what the daemon did: never limited.
  // A payload can print as fast as the pipe goes; on a diskless Pi its copy
  // would fill /var/log in RAM.
  if (stream == Stream::daemon) {
    for (auto& sink : sinks_) sink->write(e);
    return;
  }
  auto verdict = ps.limiter.line(e.text.size(), monotonic_(), to_string(stream));
  if (verdict.summary) copy_summary(*verdict.summary);
  if (verdict.copy)
    for (auto& sink : sinks_) sink->write(e);
}

// The summary goes to the sinks only: the ring lost nothing.
void Logger::copy_summary(const std::string& text) {
  Entry e;
  e.ts_ms = clock_();
  e.stream = Stream::daemon;
  e.text = text;
  for (auto& sink : sinks_) sink->write(e);
}

void Logger::feed(Stream stream, std::string_view bytes) {
  PerStream& ps = per_stream(stream);
  ps.assembler.feed(
      bytes, [&](std::string_view line) { store(stream, line, ps); },
      [&](std::string_view cut) { redactor_.follow_cut(cut, ps.state); });
}

void Logger::end_of_stream(Stream stream) {
  PerStream& ps = per_stream(stream);
  ps.assembler.finish([&](std::string_view line) { store(stream, line, ps); });
  ps.state = {};
  // Report now rather than at the next run's first line, which may never come.
  // The window goes on, so the next run cannot reset the limit by exiting.
  if (stream != Stream::daemon && !sinks_.empty())
    if (auto summary = ps.limiter.flush(monotonic_(), to_string(stream))) copy_summary(*summary);
}

void Logger::daemon_line(std::string_view text) {
  // A payload that flooded and went quiet gets its summary here at the latest.
  if (!sinks_.empty())
    for (Stream s : {Stream::payload_stdout, Stream::payload_stderr, Stream::mux})
      if (auto summary = per_stream(s).limiter.due(monotonic_(), to_string(s))) copy_summary(*summary);
  // Each daemon message is complete in itself: no PEM state carried over, and
  // embedded newlines become separate entries.
  daemon_.assembler.feed(text, [&](std::string_view line) { store(Stream::daemon, line, daemon_); });
  daemon_.assembler.finish([&](std::string_view line) { store(Stream::daemon, line, daemon_); });
  daemon_.state = {};
}

}  // namespace pisec::logs
