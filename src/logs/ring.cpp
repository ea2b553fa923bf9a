// Line assembly and the bounded ring.
#include <algorithm>
#include <cstring>

#include "pisec/logs.hpp"

namespace pisec::logs {

const char* to_string(Stream s) {
  switch (s) {
    case Stream::payload_stdout: return "stdout";
    case Stream::payload_stderr: return "stderr";
    case Stream::daemon: return "pisecd";
    case Stream::mux: return "mux";
  }
  return "?";
}

std::optional<Stream> stream_from_string(std::string_view s) {
  if (s == "stdout") return Stream::payload_stdout;
  if (s == "stderr") return Stream::payload_stderr;
  if (s == "pisecd") return Stream::daemon;
  if (s == "mux") return Stream::mux;
  return std::nullopt;
}

// ---- LineAssembler ---------------------------------------------------------

LineAssembler::LineAssembler(std::size_t max_line_bytes) : max_(std::max<std::size_t>(max_line_bytes, 1)) {
  partial_.reserve(std::min<std::size_t>(max_, 256));
}

void LineAssembler::feed(std::string_view bytes, const LineFn& on_line, const CutFn& on_cut) {
  while (!bytes.empty()) {
    const void* nl_ptr = std::memchr(bytes.data(), '\n', bytes.size());
    std::size_t seg_len = nl_ptr ? static_cast<std::size_t>(static_cast<const char*>(nl_ptr) - bytes.data())
                                 : bytes.size();
    std::string_view seg = bytes.substr(0, seg_len);
    if (truncated_) {
      drop(seg, on_cut);
    } else {
      std::size_t room = max_ - partial_.size();
      partial_.append(seg.substr(0, room));
      if (seg.size() > room) {
        // The raw bytes before the cut (with a character dropped below).
        cut_context_.assign(
            std::string_view(partial_).substr(partial_.size() - std::min(partial_.size(), cut_overlap)));
        // Cut at a UTF-8 character boundary: if the first byte left out is a
        // continuation byte, drop the partial character already taken.
        auto is_cont = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
        std::size_t cut = partial_.size();
        if (is_cont(seg[room])) {
          std::size_t back = cut;
          while (back > 0 && cut - back < 3 && is_cont(partial_[back - 1])) --back;
          if (back > 0 && (static_cast<unsigned char>(partial_[back - 1]) & 0xC0) == 0xC0) cut = back - 1;
        }
        partial_.resize(cut);
        partial_.append(truncated_marker);
        emit(on_line);
        truncated_ = true;
        drop(seg.substr(room), on_cut);
      }
    }
    if (!nl_ptr) break;
    if (!truncated_) emit(on_line);
    truncated_ = false;
    cut_context_.clear();
    bytes.remove_prefix(seg_len + 1);
  }
}

void LineAssembler::finish(const LineFn& on_line) {
  if (!truncated_ && !partial_.empty()) emit(on_line);
  partial_.clear();
  truncated_ = false;
  cut_context_.clear();
}

void LineAssembler::drop(std::string_view dropped, const CutFn& on_cut) {
  if (!on_cut || dropped.empty()) return;
  std::string window = cut_context_;
  window.append(dropped);
  on_cut(window);
  cut_context_.assign(std::string_view(window).substr(window.size() - std::min(window.size(), cut_overlap)));
}

void LineAssembler::emit(const LineFn& on_line) {
  if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
  for (char& c : partial_) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) c = '?';
  }
  on_line(partial_);
  partial_.clear();
}

// ---- LogRing ---------------------------------------------------------------

LogRing::LogRing(std::size_t capacity_bytes) : capacity_(capacity_bytes) {}

const Entry& LogRing::append(Stream stream, std::string_view text, std::int64_t ts_ms) {
  // A single line larger than the whole ring is cut so that it fits.
  const std::size_t max_text = capacity_ > entry_overhead + truncated_marker.size()
                                   ? capacity_ - entry_overhead - truncated_marker.size()
                                   : 0;
  Entry e;
  e.seq = next_seq_++;
  e.ts_ms = ts_ms;
  e.stream = stream;
  if (text.size() > max_text) {
    e.text.reserve(max_text + truncated_marker.size());
    e.text.append(text.substr(0, max_text));
    e.text.append(truncated_marker);
  } else {
    e.text.assign(text);
  }
  const std::size_t c = cost(e);
  while (!entries_.empty() && used_ + c > capacity_) {
    used_ -= cost(entries_.front());
    entries_.pop_front();
    ++dropped_;
  }
  used_ += c;
  entries_.push_back(std::move(e));
  const Entry& stored = entries_.back();
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    auto current = it++;  // a listener may unsubscribe itself
    current->second(stored);
  }
  return stored;
}

std::vector<Entry> LogRing::tail(std::size_t n) const {
  n = std::min(n, entries_.size());
  return {entries_.end() - static_cast<std::ptrdiff_t>(n), entries_.end()};
}

std::vector<Entry> LogRing::since(std::uint64_t after_seq, std::size_t max_entries) const {
  if (entries_.empty() || after_seq >= entries_.back().seq) return {};
  std::uint64_t first = entries_.front().seq;
  // Seqs are contiguous in the deque, so the start is an index computation.
  std::size_t skip = after_seq < first ? 0 : static_cast<std::size_t>(after_seq - first + 1);
  std::size_t count = std::min(max_entries, entries_.size() - skip);
  auto b = entries_.begin() + static_cast<std::ptrdiff_t>(skip);
  return {b, b + static_cast<std::ptrdiff_t>(count)};
}

std::uint64_t LogRing::subscribe(Listener listener) {
  std::uint64_t id = next_listener_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void LogRing::unsubscribe(std::uint64_t id) { listeners_.erase(id); }

}  // namespace pisec::logs
