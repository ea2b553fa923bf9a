// SNTP decisions: packets, per-reply validation, source selection, the detail
// line. Plain functions over plain data; no I/O here.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "pisec/gates/clock.hpp"
#include "pisec/util.hpp"

namespace pisec::clock {

namespace {

constexpr std::int64_t ns_per_s = 1'000'000'000;
constexpr std::int64_t era_s = std::int64_t{1} << 32;

std::uint32_t load32(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint32_t>(b[at]) << 24 | static_cast<std::uint32_t>(b[at + 1]) << 16 |
         static_cast<std::uint32_t>(b[at + 2]) << 8 | static_cast<std::uint32_t>(b[at + 3]);
}

std::uint64_t load64(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint64_t>(load32(b, at)) << 32 | load32(b, at + 4);
}

// NTP short format (16.16) → seconds.
double short_to_s(std::uint32_t v) { return static_cast<double>(v) / 65536.0; }

std::string format_seconds(double s) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g", s);
  return buf;
}

std::string format_offset(std::int64_t ns) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%+.3f", static_cast<double>(ns) / 1e9);
  return buf;
}

std::string kiss_code_text(std::uint32_t id) {
  std::string code;
  for (int shift = 24; shift >= 0; shift -= 8) {
    auto c = static_cast<char>((id >> shift) & 0xff);
    if (c == '\0') break;
    code += (c >= 0x21 && c <= 0x7e) ? c : '?';
  }
  return code.empty() ? "?" : code;
}

// (a + b) / 2 without overflow when both are near ±2^62.
std::int64_t half_sum(std::int64_t a, std::int64_t b) { return a / 2 + b / 2 + (a % 2 + b % 2) / 2; }

}  // namespace

std::array<std::uint8_t, packet_size> build_request(std::uint64_t nonce) {
  std::array<std::uint8_t, packet_size> p{};
  p[0] = 0x23;  // LI 0, VN 4, mode 3 (client)
  for (int i = 0; i < 8; ++i) p[static_cast<std::size_t>(40 + i)] = static_cast<std::uint8_t>(nonce >> (56 - 8 * i));
  return p;
}

std::optional<Reply> parse_reply(std::span<const std::uint8_t> b) {
  if (b.size() < packet_size) return std::nullopt;
  Reply r;
  r.leap = b[0] >> 6;
  r.version = (b[0] >> 3) & 0x7;
  r.mode = b[0] & 0x7;
  r.stratum = b[1];
  r.root_delay = load32(b, 4);
  r.root_dispersion = load32(b, 8);
  r.reference_id = load32(b, 12);
  r.origin = load64(b, 24);
  r.receive = load64(b, 32);
  r.transmit = load64(b, 40);
  return r;
}

UnixNanos ntp_to_unix_ns(std::uint64_t ntp, std::int64_t floor_unix) {
  auto seconds = static_cast<std::int64_t>(ntp >> 32) - ntp_to_unix_s;  // era 0
  // Move by whole eras until within half an era of the floor.
  std::int64_t eras = (floor_unix - seconds + era_s / 2) / era_s;
  if (floor_unix - seconds + era_s / 2 < 0) eras -= 1;  // floor division
  seconds += eras * era_s;
  // Rounded to the nearest nanosecond, so unix → NTP → unix is exact.
  auto frac_ns = static_cast<std::int64_t>(
      ((ntp & 0xffffffffu) * static_cast<std::uint64_t>(ns_per_s) + (std::uint64_t{1} << 31)) >> 32);
  return seconds * ns_per_s + frac_ns;
}

std::uint64_t unix_ns_to_ntp(UnixNanos t) {
  std::int64_t s = t / ns_per_s;
  std::int64_t ns = t % ns_per_s;
  if (ns < 0) {
    ns += ns_per_s;
    s -= 1;
  }
  auto secs = static_cast<std::uint64_t>(s + ntp_to_unix_s) & 0xffffffffu;  // wraps per era
  auto frac = ((static_cast<std::uint64_t>(ns) << 32) + ns_per_s / 2) / static_cast<std::uint64_t>(ns_per_s);
  return secs << 32 | frac;
}

Verdict validate_reply(std::span<const std::uint8_t> bytes, const Exchange& ex, const Limits& limits) {
  Verdict v;
  auto refuse = [&](std::string why, bool spoofable = false) {
    v.refusal = std::move(why);
    v.spoofable = spoofable;
    return v;
  };
  auto r = parse_reply(bytes);
  if (!r) return refuse("short reply (" + std::to_string(bytes.size()) + " bytes, expected 48)", true);
  if (!ex.from_server) return refuse("reply from another address", true);
  if (r->origin != ex.nonce) return refuse("origin timestamp does not match", true);
  if (r->mode != 4) return refuse("mode " + std::to_string(r->mode) + ", expected 4");
  if (r->version != 3 && r->version != 4)
    return refuse("version " + std::to_string(r->version) + ", expected 3 or 4");
  // Kiss-o'-death before LI: a KoD usually carries LI 3 too, and the code matters.
  if (r->stratum == 0) {
    v.kiss_code = kiss_code_text(r->reference_id);
    return refuse("stratum 0 (kiss-o'-death " + v.kiss_code + ")");
  }
  if (r->stratum >= 16) return refuse("stratum " + std::to_string(r->stratum));
  if (r->leap == 3) return refuse("leap indicator 3 (unsynchronised)");
  if (r->transmit == 0) return refuse("zero transmit timestamp");
  if (r->receive == 0) return refuse("zero receive timestamp");
  double root_distance = short_to_s(r->root_delay) / 2 + short_to_s(r->root_dispersion);
  if (root_distance > limits.max_root_distance_s)
    return refuse("root distance " + format_seconds(root_distance) + " s > " +
                  format_seconds(limits.max_root_distance_s) + " s");

  UnixNanos t2 = ntp_to_unix_ns(r->receive, limits.floor_unix);
  UnixNanos t3 = ntp_to_unix_ns(r->transmit, limits.floor_unix);
  std::int64_t t3_s = t3 / ns_per_s;
  if (t3_s < limits.floor_unix)
    return refuse("time before floor (server says " + util::format_utc(t3_s, false) + ", floor " +
                  util::format_utc(limits.floor_unix, false) + ")");
  if (t3_s > limits.floor_unix + floor_horizon_s)
    return refuse("time beyond floor + 15 years (server says " + util::format_utc(t3_s, false) + ")");
  if (t3 < t2) return refuse("transmit timestamp before receive timestamp");
  // T2 and T3 come from the same server clock a moment apart: a reply that
  // puts days between them only moves the offset by half of that.
  std::int64_t hold_ns = t3 - t2;
  if (static_cast<double>(hold_ns) > limits.max_server_hold_s * 1e9)
    return refuse("server held the request " + format_seconds(static_cast<double>(hold_ns) / 1e9) +
                  " s (receive to transmit timestamp), more than " + format_seconds(limits.max_server_hold_s) +
                  " s");
  if (static_cast<double>(ex.rtt_ns) > limits.max_delay_s * 1e9)
    // A late answer, maybe to an earlier try: wait for a timely one.
    return refuse("round trip " + format_seconds(static_cast<double>(ex.rtt_ns) / 1e9) +
                      " s, longer than the " + format_seconds(limits.max_delay_s) + " s request timeout",
                  true);
  std::int64_t delay_ns = ex.rtt_ns - hold_ns;
  if (static_cast<double>(delay_ns) < -delay_tolerance_s * 1e9)
    return refuse("negative delay " + format_seconds(static_cast<double>(delay_ns) / 1e9) +
                  " s: the server claims to have held the request longer than our round trip");

  UnixNanos t1 = ex.t1;
  UnixNanos t4 = t1 + ex.rtt_ns;
  Sample s;
  s.offset_ns = half_sum(t2 - t1, t3 - t4);
  // Within the tolerance a slightly negative delay is rounding: count it as zero.
  s.delay_ns = std::max<std::int64_t>(0, delay_ns);
  s.root_distance_s = root_distance;
  s.stratum = r->stratum;
  v.sample = s;
  return v;
}

Selection select_sources(const std::vector<SourceResult>& results, int min_sources,
                         double max_disagreement_s) {
  Selection sel;
  struct Edge {
    std::int64_t at;
    int kind;  // 0 = start, 1 = end: starts sort first, so touching intervals intersect
    std::size_t index;
  };
  std::vector<Edge> edges;
  std::vector<std::pair<std::int64_t, std::int64_t>> interval(results.size());
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (!results[i].sample) continue;
    ++sel.good;
    const Sample& s = *results[i].sample;
    auto half = static_cast<std::int64_t>(std::llround((s.distance_s() + max_disagreement_s / 2) * 1e9));
    interval[i] = {s.offset_ns - half, s.offset_ns + half};
    edges.push_back({interval[i].first, 0, i});
    edges.push_back({interval[i].second, 1, i});
  }
  std::sort(edges.begin(), edges.end(),
            [](const Edge& a, const Edge& b) { return a.at != b.at ? a.at < b.at : a.kind < b.kind; });
  int depth = 0, best = 0;
  std::int64_t best_point = 0;
  for (const auto& e : edges) {
    depth += e.kind == 0 ? 1 : -1;
    if (depth > best) {
      best = depth;
      best_point = e.at;
    }
  }
  std::vector<std::int64_t> offsets;
  // One server listed twice (or two names for one address) is one source.
  std::vector<std::string> good_addresses, agreeing_addresses;
  auto add_distinct = [](std::vector<std::string>& seen, const SourceResult& r) {
    if (r.address.empty() || std::find(seen.begin(), seen.end(), r.address) == seen.end())
      seen.push_back(r.address);
  };
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (!results[i].sample) continue;
    add_distinct(good_addresses, results[i]);
    if (best > 0 && interval[i].first <= best_point && best_point <= interval[i].second) {
      sel.agreeing.push_back(i);
      add_distinct(agreeing_addresses, results[i]);
      offsets.push_back(results[i].sample->offset_ns);
    } else {
      sel.falsetickers.push_back(i);
    }
  }
  sel.distinct_agreeing = agreeing_addresses.size();
  std::string same_address = good_addresses.size() < sel.good ? " (servers at one address count once)" : "";
  auto need = static_cast<std::size_t>(std::max(min_sources, 1));
  auto plural = [](std::size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
  };
  if (good_addresses.size() < need) {
    sel.reason = plural(good_addresses.size(), "good source") + " of " + std::to_string(need) + " needed" +
                 same_address;
  } else if (sel.distinct_agreeing < need) {
    sel.reason = "only " + std::to_string(sel.distinct_agreeing) + " of " + plural(good_addresses.size(), "good source") +
                 " agree, " + std::to_string(need) + " needed" + same_address;
  } else if (sel.agreeing.size() * 2 <= sel.good) {
    sel.reason = "no majority: " + std::to_string(sel.agreeing.size()) + " of " +
                 plural(sel.good, "good source") + " agree";
  } else {
    std::sort(offsets.begin(), offsets.end());
    std::size_t n = offsets.size();
    sel.offset_ns = n % 2 ? offsets[n / 2] : half_sum(offsets[n / 2 - 1], offsets[n / 2]);
    sel.ok = true;
  }
  return sel;
}

std::string describe(const std::vector<SourceResult>& results, const Selection& sel, const std::string& action) {
  std::vector<std::string> notes;
  if (sel.ok) {
    for (std::size_t i : sel.falsetickers)
      notes.push_back(results[i].server + ": falseticker (offset " + format_offset(results[i].sample->offset_ns) +
                      " s)");
  } else {
    // Without a chosen time nobody is a falseticker: show what each good source said.
    for (const auto& r : results)
      if (r.sample) notes.push_back(r.server + ": offset " + format_offset(r.sample->offset_ns) + " s");
  }
  for (const auto& r : results)
    if (!r.sample) notes.push_back(r.server + ": " + r.refusal);
  std::string joined;
  for (const auto& n : notes) joined += (joined.empty() ? "" : "; ") + n;

  if (!sel.ok) return sel.reason + (joined.empty() ? "" : " (" + joined + ")");
  std::string line = std::to_string(sel.agreeing.size()) + "/" + std::to_string(sel.good) +
                     " sources agree, offset " + format_offset(sel.offset_ns) + " s";
  if (!action.empty()) line += ", " + action;
  if (!joined.empty()) line += "; ignored: " + joined;
  return line;
}

ServerName parse_server(const std::string& text) {
  ServerName s;
  std::string port;
  if (text.empty()) throw std::invalid_argument("empty server name");
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos) throw std::invalid_argument("unterminated '[' in \"" + text + "\"");
    s.host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') throw std::invalid_argument("expected ':' after ']' in \"" + text + "\"");
      port = text.substr(close + 2);
      if (port.empty()) throw std::invalid_argument("missing port in \"" + text + "\"");
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    s.host = text.substr(0, text.find(':'));
    port = text.substr(text.find(':') + 1);
    if (port.empty()) throw std::invalid_argument("missing port in \"" + text + "\"");
  } else {
    s.host = text;  // a name, or a bare IPv6 literal
  }
  if (s.host.empty()) throw std::invalid_argument("missing host in \"" + text + "\"");
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("port must be 1-65535 in \"" + text + "\"");
    int p = std::stoi(port);
    if (p < 1 || p > 65535) throw std::invalid_argument("port must be 1-65535 in \"" + text + "\"");
    s.port = static_cast<std::uint16_t>(p);
  }
  return s;
}

}  // namespace pisec::clock
