// Which requests are the mux's (/debug/*) and which are the app's, and the
// /debug/logs query. Decided on a normalised copy of the path, so that no
// spelling of /debug/ (percent-encoding, dot segments, doubled or back
// slashes, case, ";params") reaches the app, and none of the app's paths is
// taken for a debug request.
#include <cctype>
#include <charconv>
#include <string>
#include <vector>

#include "pisec/mux.hpp"

namespace pisec::mux {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoded (a malformed escape stays as it is), lower-cased path.
std::string decode_lower(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%' && i + 2 < path.size()) {
      int hi = hex_value(path[i + 1]), lo = hex_value(path[i + 2]);
      if (hi >= 0 && lo >= 0) {
        c = static_cast<char>(hi * 16 + lo);
        i += 2;
      }
    }
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// The path's segments after decoding, with '\' taken as '/', ";params"
// dropped, empty and "." segments skipped and ".." applied.
std::vector<std::string> segments(std::string_view raw_path) {
  std::string path = decode_lower(raw_path);
  std::vector<std::string> out;
  std::string seg;
  auto flush = [&] {
    auto semi = seg.find(';');
    if (semi != std::string::npos) seg.resize(semi);
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
    } else if (!seg.empty() && seg != ".") {
      out.push_back(seg);
    }
    seg.clear();
  };
  for (char c : path) {
    if (c == '/' || c == '\\') flush();
    else seg += c;
  }
  flush();
  return out;
}

std::string parse_logs_query(std::string_view query, LogsQuery& q) {
  bool seen_n = false, seen_follow = false;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (key == "n") {
      if (seen_n) return "n given twice";
      seen_n = true;
      std::size_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || value.empty() || n > max_logs_n)
        return "n must be a whole number from 0 to " + std::to_string(max_logs_n);
      q.n = n;
    } else if (key == "follow") {
      if (seen_follow) return "follow given twice";
      seen_follow = true;
      if (value == "1" || value == "true") q.follow = true;
      else if (value == "0" || value == "false") q.follow = false;
      else return "follow must be 1 or 0";
    } else {
      return "unknown parameter (n and follow are known)";
    }
  }
  return "";
}

}  // namespace

Request classify(std::string_view target) {
  Request r;
  // Absolute form ("http://host/path"): route by its path.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size()) {
      std::string head(target.substr(0, scheme.size()));
      for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (head == scheme) {
        auto slash = target.find('/', scheme.size());
        target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
        break;
      }
    }
  }
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query = qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);
  auto segs = segments(path);
  if (segs.empty() || segs[0] != "debug") return r;  // the app's
  r.route = Route::debug_unknown;
  if (segs.size() != 2) return r;
  if (segs[1] == "status") r.route = Route::debug_status;
  else if (segs[1] == "metrics") r.route = Route::debug_metrics;
  else if (segs[1] == "logs") {
    r.route = Route::debug_logs;
    r.error = parse_logs_query(query, r.logs);
  }
  return r;
}

}  // namespace pisec::mux
