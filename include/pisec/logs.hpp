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
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "pisec/config.hpp"

namespace pisec::logs {

enum class Stream : std::uint8_t { payload_stdout, payload_stderr, daemon };
// "stdout" / "stderr" / "pisecd" (the names in NDJSON and `pisecd logs`).
const char* to_string(Stream);
std::optional<Stream> stream_from_string(std::string_view);

inline constexpr std::string_view redacted_marker = "[REDACTED]";
inline constexpr std::string_view truncated_marker = " [truncated]";

// Removes secrets from lines. Built-ins: Authorization header values,
// password/passwd/secret/token values (key=value, key: value, query strings,
// JSON), Bearer tokens, URL userinfo passwords, PEM private-key blocks (across
// lines); plus the configured ECMAScript regexes. Each match becomes
// "[REDACTED]".
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

  std::string redact(std::string_view line, StreamState& state) const;

 private:
  struct UserPattern {
    std::regex re;
    std::string required;  // literal every match starts with ("" = unknown)
  };
  std::vector<UserPattern> user_;
};

// The literal text every match of an ECMAScript pattern must begin with, or ""
// when that cannot be told simply (alternation, leading class or group, ...).
// Lets the redactor skip std::regex on lines that cannot match.
std::string required_prefix(std::string_view pattern);

// Bytes from a pipe -> complete lines. A line longer than max_line_bytes is
// cut there, marked with " [truncated]", and the rest of it up to the next
// newline is discarded. Control characters (except tab) become '?', so a
// payload cannot drive the operator's terminal; a trailing '\r' is dropped.
class LineAssembler {
 public:
  using LineFn = std::function<void(std::string_view line)>;

  explicit LineAssembler(std::size_t max_line_bytes);
  void feed(std::string_view bytes, const LineFn& on_line);
  // End of stream: emits a partial last line, if any, and resets.
  void finish(const LineFn& on_line);

 private:
  void emit(const LineFn& on_line);
  std::size_t max_;
  std::string partial_;
  bool truncated_ = false;  // current line was cut; discarding until '\n'
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

// The whole pipeline the daemon owns: one assembler and redaction state per
// stream, the redactor, the ring and the configured sinks.
class Logger {
 public:
  using Clock = std::function<std::int64_t()>;  // unix time in ms

  // Sinks from cfg.stderr_copy / cfg.syslog.
  explicit Logger(const config::Logs& cfg);
  // Explicit sinks and clock (tests).
  Logger(const config::Logs& cfg, std::vector<std::unique_ptr<Sink>> sinks, Clock clock);

  // Bytes read from the payload's stdout or stderr pipe.
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
  };
  PerStream& per_stream(Stream s);
  void store(Stream stream, std::string_view line, Redactor::StreamState& state);

  Redactor redactor_;
  LogRing ring_;
  std::vector<std::unique_ptr<Sink>> sinks_;
  Clock clock_;
  PerStream out_, err_, daemon_;
};

}  // namespace pisec::logs
