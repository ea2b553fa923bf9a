#pragma once
// Payload output capture: pipe bytes -> lines -> redaction -> bounded ring
// (+ optional copy to stderr/syslog). Redaction happens before a line is
// stored or printed anywhere. Single-threaded: everything runs on the
// daemon's event loop.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pisec/config.hpp"

namespace re2 {
class RE2;
}

namespace pisec::logs {

// mux: the /debug mux's request log (its stdout and stderr).
enum class Stream : std::uint8_t { payload_stdout, payload_stderr, daemon, mux };
// "stdout" / "stderr" / "pisecd" / "mux" (the names in NDJSON and `pisecd logs`).
const char* to_string(Stream);
std::optional<Stream> stream_from_string(std::string_view);

inline constexpr std::string_view redacted_marker = "[REDACTED]";
inline constexpr std::string_view truncated_marker = " [truncated]";

// Removes secrets from lines. Built-ins: Authorization header values,
// password/passwd/secret/token values (key=value, key: value, query strings,
// JSON), Bearer tokens, URL userinfo passwords, PEM private-key blocks (across
// lines); plus the configured regexes. Each match becomes "[REDACTED]".
// Every pattern, built-in or user's, is RE2 (bytes, Latin-1): matching is
// linear in the line, so no pattern can make a payload line stall the loop.
class Redactor {
 public:
  // Per-stream state: inside a PEM private-key block every line is redacted
  // until its END line.
  struct StreamState {
    bool in_private_key = false;
  };

  // Throws std::runtime_error naming the pattern if one does not compile
  // (the config loader has validated them already).
  explicit Redactor(const std::vector<std::string>& user_patterns = {});
  ~Redactor();
  Redactor(Redactor&&) noexcept;
  Redactor& operator=(Redactor&&) noexcept;

  std::string redact(std::string_view line, StreamState& state) const;
  // Bytes of the current line that were cut off by the line limit and are
  // stored nowhere (LineAssembler's on_cut): they only move the state, so a
  // BEGIN marker cut in half or dropped still hides the key lines after it.
  void follow_cut(std::string_view cut_window, StreamState& state) const;

 private:
  std::vector<std::unique_ptr<re2::RE2>> user_;
};

// RE2's reason why a redact pattern does not compile, or "" if it does (with
// the options the Redactor uses). RE2 has no backreferences or lookaround.
std::string pattern_error(const std::string& pattern);

// Bytes from a pipe -> complete lines. A line longer than max_line_bytes is
// cut there, marked with " [truncated]", and the rest of it up to the next
// newline is discarded. Control characters (except tab) become '?', so a
// payload cannot drive the operator's terminal; a trailing '\r' is dropped.
class LineAssembler {
 public:
  using LineFn = std::function<void(std::string_view line)>;
  // What a cut line loses, for the Redactor's state (follow_cut): the cut
  // bytes, each time preceded by up to cut_overlap bytes of the line before
  // them, so that a marker across the cut (or across two pieces) is whole in
  // one window.
  using CutFn = std::function<void(std::string_view window)>;
  static constexpr std::size_t cut_overlap = 128;  // > the longest built-in marker (67 bytes)

  explicit LineAssembler(std::size_t max_line_bytes);
  void feed(std::string_view bytes, const LineFn& on_line, const CutFn& on_cut = nullptr);
  // End of stream: emits a partial last line, if any, and resets.
  void finish(const LineFn& on_line);

 private:
  void emit(const LineFn& on_line);
  void drop(std::string_view dropped, const CutFn& on_cut);
  std::size_t max_;
  std::string partial_;
  bool truncated_ = false;  // current line was cut; discarding until '\n'
  std::string cut_context_;  // the last cut_overlap raw bytes of a cut line
};

struct Entry {
  std::uint64_t seq = 0;  // 1, 2, 3, ... never reused
  std::int64_t ts_ms = 0;  // unix time in ms (CLOCK_REALTIME when captured)
  Stream stream = Stream::payload_stdout;
  std::string text;  // already redacted
};

// Memory-bounded ring of entries, oldest evicted first.
class LogRing {
 public:
  using Listener = std::function<void(const Entry&)>;

  // Per-entry bookkeeping counted against the budget on top of the text:
  // the Entry itself plus the allocator's header for a heap-held string.
  static constexpr std::size_t entry_overhead = sizeof(Entry) + 16;

  explicit LogRing(std::size_t capacity_bytes);

  // Stores a line (cut to fit if it alone exceeds the capacity), evicting the
  // oldest entries as needed, then tells the listeners.
  const Entry& append(Stream stream, std::string_view text, std::int64_t ts_ms);

  std::vector<Entry> tail(std::size_t n) const;
  // Entries with seq > after_seq, oldest first, at most max_entries.
  std::vector<Entry> since(std::uint64_t after_seq, std::size_t max_entries = SIZE_MAX) const;

  std::uint64_t dropped() const { return dropped_; }   // entries evicted so far
  std::size_t bytes_used() const { return used_; }     // accounted bytes, <= capacity()
  std::size_t capacity() const { return capacity_; }
  std::size_t size() const { return entries_.size(); }
  std::uint64_t last_seq() const { return next_seq_ - 1; }  // 0 when empty so far
  std::uint64_t first_seq() const { return entries_.empty() ? next_seq_ : entries_.front().seq; }

  // Listeners are called synchronously from append(); unsubscribe before the
  // listener's owner goes away.
  std::uint64_t subscribe(Listener listener);
  void unsubscribe(std::uint64_t id);

  static std::size_t cost(const Entry& e) { return entry_overhead + e.text.capacity(); }

 private:
  std::size_t capacity_;
  std::size_t used_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t dropped_ = 0;
  std::deque<Entry> entries_;
  std::uint64_t next_listener_ = 1;
  std::map<std::uint64_t, Listener> listeners_;
};

// Where redacted lines are copied besides the ring.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void write(const Entry& entry) = 0;
};
// "payload[stdout]: line" / "pisecd: line" to fd (default 2), one write() per line.
std::unique_ptr<Sink> make_stderr_sink(int fd = 2);
// syslog(3), ident "pisecd", facility daemon; payload stderr at LOG_WARNING.
std::unique_ptr<Sink> make_syslog_sink();

// One entry as one NDJSON line (with '\n'):
// {"seq":1,"ts_ms":…,"stream":"stdout","line":"…"}. Invalid UTF-8 becomes U+FFFD.
std::string to_ndjson(const Entry& entry);
// Parses such a line; throws std::runtime_error on anything else.
Entry from_ndjson(std::string_view line);
// "2024-05-01T12:00:00.123Z stdout: line" (UTC; the device has no RTC zone).
std::string to_text(const Entry& entry);

// Caps the copy of one payload stream to the sinks the way journald's
// RateLimitIntervalSec/RateLimitBurst do: at most `burst` lines per interval;
// the rest is counted and reported once when a later interval starts. Plain
// data over times passed in: no timer of its own.
class CopyLimiter {
 public:
  CopyLimiter(std::size_t burst, std::int64_t interval_ms);
  struct Verdict {
    bool copy = false;
    // Set when an interval with suppressed lines has ended: report it first.
    std::optional<std::string> summary;
  };
  Verdict line(std::size_t bytes, std::int64_t now_ms, std::string_view stream_name);
  // The summary, if an interval with suppressed lines has ended by now.
  std::optional<std::string> due(std::int64_t now_ms, std::string_view stream_name);
  // The summary of what was suppressed so far (and forgets it), even if the
  // interval is still running: for the end of a stream.
  std::optional<std::string> flush(std::int64_t now_ms, std::string_view stream_name);

 private:
  std::optional<std::string> summary(std::int64_t now_ms, std::string_view stream_name);
  std::size_t burst_;
  std::int64_t interval_ms_;
  std::optional<std::int64_t> window_start_;
  std::size_t copied_ = 0;
  std::uint64_t suppressed_lines_ = 0, suppressed_bytes_ = 0;
};

// The whole pipeline the daemon owns: one assembler and redaction state per
// stream, the redactor, the ring and the configured sinks.
class Logger {
 public:
  using Clock = std::function<std::int64_t()>;  // ms; unix time, or monotonic

  // Sinks from cfg.stderr_copy / cfg.syslog.
  explicit Logger(const config::Logs& cfg);
  // Explicit sinks and clocks (tests). `clock` stamps entries (unix ms);
  // `monotonic` drives the copy rate limit (CLOCK_MONOTONIC when null).
  Logger(const config::Logs& cfg, std::vector<std::unique_ptr<Sink>> sinks, Clock clock,
         Clock monotonic = nullptr);

  // Bytes read from the payload's stdout or stderr pipe, or the mux's.
  void feed(Stream stream, std::string_view bytes);
  // The pipe reached EOF (payload exited): flush the partial line, reset the
  // stream's redaction state for the next run.
  void end_of_stream(Stream stream);
  // pisecd's own messages (redacted too), stream "pisecd".
  void daemon_line(std::string_view text);

  LogRing& ring() { return ring_; }
  const LogRing& ring() const { return ring_; }

 private:
  struct PerStream {
    LineAssembler assembler;
    Redactor::StreamState state;
    CopyLimiter limiter;
  };
  PerStream& per_stream(Stream s);
  void store(Stream stream, std::string_view line, PerStream& ps);
  void copy_summary(const std::string& text);

  Redactor redactor_;
  LogRing ring_;
  std::vector<std::unique_ptr<Sink>> sinks_;
  Clock clock_;
  Clock monotonic_;
  PerStream out_, err_, daemon_, mux_;
};

}  // namespace pisec::logs
